"""Discrete-time DDPM noise schedules and the respacing used to sample with fewer steps."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def make_betas(schedule: str, timesteps: int) -> np.ndarray:
    """β_1..β_T (float64). ``linear``: Ho et al. (1e-4 → 0.02, rescaled to T); ``cosine``: Nichol & Dhariwal eq. 17."""
    if schedule == "linear":
        scale = 1000.0 / timesteps
        return np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64)
    if schedule == "cosine":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - alpha_bar((i + 1) / timesteps) / alpha_bar(i / timesteps), 0.999)
                         for i in range(timesteps)], dtype=np.float64)
    raise ValueError(f"unknown noise schedule {schedule!r}; accepted: ['cosine', 'linear']")


@dataclass(frozen=True)
class Schedule:
    """ᾱ_t for t = 0..T-1 (index t means the (t+1)-th noising step; t = T-1 is nearly pure noise)."""

    alphas_cumprod: np.ndarray  # (T,) float64

    @classmethod
    def from_spec(cls, schedule: str, timesteps: int) -> Schedule:
        return cls(np.cumprod(1.0 - make_betas(schedule, timesteps)))

    @property
    def timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def respaced(self, steps: int) -> np.ndarray:
        """``steps`` timestep indices, evenly spaced over 0..T-1, ascending (DiT/improved-DDPM respacing)."""
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"sampling steps {steps} must be in [1, {self.timesteps}]")
        return np.unique(np.round(np.linspace(0, self.timesteps - 1, steps)).astype(np.int64))

    def coefficients(self, t: torch.Tensor, dtype: torch.dtype = torch.float32, ndim: int = 2
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(√ᾱ_t, √(1-ᾱ_t)) for integer timesteps ``t`` (B,), each shaped (B, 1, ..., 1) with ``ndim`` dimensions
        so they broadcast against data x of that rank ((B, D) vectors: 2; (B, C, H, W) images: 4)."""
        abar = torch.as_tensor(self.alphas_cumprod, device=t.device)[t]
        shape = (-1,) + (1,) * (ndim - 1)
        return abar.sqrt().to(dtype).reshape(shape), (1 - abar).sqrt().to(dtype).reshape(shape)

"""Discrete-time DDPM noise schedules, MDM's per-resolution shift, and the respacing used to sample with fewer steps.

MDM's shifted schedule (ml-mdm, ``ml_mdm/samplers.py``: ``Sampler.get_schedule_shifted`` and
``NestedSampler.get_gammas``; on in ``configs/models/cc12m_256x256.yaml``: ``schedule_shifted: true``): every nested
level shares the timestep t, and the level at resolution r has its signal-to-noise ratio divided by
s = (r / r_min)^p, r_min the innermost resolution, p ``diffusion.schedule_shifted_power`` (ml-mdm's default 1), so
ᾱ_r(t) = ᾱ(t) / (ᾱ(t) + s (1 - ᾱ(t))). A 256 px level over a 64 px base sees SNR / 4 at every t.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


def level_snr_divisor(levels: Sequence[tuple[int, int]], power: float) -> np.ndarray:
    """Per-element SNR divisor s (D,) float64 of a flat multi-resolution vector.

    ``levels``: (elements, resolution) of each nested level in the vector's order (outermost first, as
    :meth:`kaleido.models.image_denoiser.ImageDenoiser.pack` lays them out); each element of a level at resolution r
    gets s = (r / r_min)^power (ml-mdm's ``scale_factor ** schedule_shifted_power``).
    """
    if not levels:
        raise ValueError("a shifted schedule needs at least one level")
    if power <= 0:
        raise ValueError(f"schedule_shifted_power must be > 0, got {power}")
    base = min(r for _, r in levels)
    return np.concatenate([np.full(n, (r / base) ** power, dtype=np.float64) for n, r in levels])


@dataclass(frozen=True, eq=False)
class Schedule:
    """ᾱ_t for t = 0..T-1 (index t means the (t+1)-th noising step; t = T-1 is nearly pure noise).

    ``snr_divisor`` (D,), when set, shifts each data element's schedule (:func:`level_snr_divisor`):
    :meth:`coefficients` then returns per-element (B, D) coefficients, while ``alphas_cumprod`` stays the base
    (unshifted, s = 1) schedule the samplers walk (:func:`in_base_space`).
    """

    alphas_cumprod: np.ndarray  # (T,) float64
    snr_divisor: np.ndarray | None = None  # (D,) float64 >= 1, or None: every element on alphas_cumprod

    @classmethod
    def from_spec(cls, schedule: str, timesteps: int) -> Schedule:
        return cls(np.cumprod(1.0 - make_betas(schedule, timesteps)))

    @classmethod
    def for_model(cls, diffusion: dict, levels: Sequence[tuple[int, int]] | None) -> Schedule:
        """The schedule of a ``diffusion:`` config block for a model whose flat vector has nested ``levels``
        ((elements, resolution) each; None for plain vectors), shifted per level when ``schedule_shifted``."""
        base = cls.from_spec(diffusion["schedule"], diffusion["timesteps"])
        if not diffusion.get("schedule_shifted", False):
            return base
        if not levels:
            raise ValueError("diffusion.schedule_shifted: true shifts the schedule per nested resolution level; this "
                             "model's data has no levels (use an image architecture, or schedule_shifted: false)")
        return cls(base.alphas_cumprod, level_snr_divisor(levels, float(diffusion.get("schedule_shifted_power", 1.0))))

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
        so they broadcast against data x of that rank ((B, D) vectors: 2; (B, C, H, W) images: 4). A shifted
        schedule gives (B, D) per-element coefficients (flat vectors only)."""
        abar = torch.as_tensor(self.alphas_cumprod, device=t.device)[t]
        if self.snr_divisor is not None:
            if ndim != 2:
                raise ValueError(f"a shifted schedule applies to flat (B, D) vectors, got ndim={ndim}")
            abar = shifted_alphas_cumprod(abar[:, None], torch.as_tensor(self.snr_divisor, device=t.device))
            return abar.sqrt().to(dtype), (1 - abar).sqrt().to(dtype)
        shape = (-1,) + (1,) * (ndim - 1)
        return abar.sqrt().to(dtype).reshape(shape), (1 - abar).sqrt().to(dtype).reshape(shape)


def shifted_alphas_cumprod(abar: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """ᾱ' with SNR' = SNR / s: ᾱ / (ᾱ + s (1 - ᾱ)) (broadcast of ``abar`` and ``divisor``, float64 in, float64 out)."""
    return abar / (abar + divisor * (1.0 - abar))


EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def in_base_space(schedule: Schedule, eps_fn: EpsFn, clip_x0: float | None, device: torch.device,
                  dtype: torch.dtype = torch.float32
                  ) -> tuple[EpsFn, torch.Tensor | float | None, Callable[[torch.Tensor], torch.Tensor]]:
    """Run any sampler of the base schedule on a shifted one, exactly.

    A Gaussian diffusion is fixed by its SNR(t) up to a per-time scale: level element i with divisor s_i has
    x_t = c_i(t) y_t, where y_t = √ᾱ (x_0 / √s_i) + √(1-ᾱ) ε follows the base schedule and
    c_i(t) = √(1-ᾱ'_i) / √(1-ᾱ). The noise ε is the same in both, so DDPM's posterior, DDIM's update and the
    probability-flow ODE of y are those of x rescaled (Kingma et al. 2021, §3 "equivalence of diffusion
    specifications"). Returns (ε̂ as a function of (y_t, t), the clamp bound of ŷ_0 (clip_x0 / √s, (1, D) on
    ``device`` in the samples' ``dtype``), and the map y_0 -> x_0). With an unshifted schedule everything passes
    through unchanged.
    """
    if schedule.snr_divisor is None:
        return eps_fn, clip_x0, lambda y: y
    divisor = torch.as_tensor(schedule.snr_divisor, device=device)
    abar_all = torch.as_tensor(schedule.alphas_cumprod, device=device)

    def eps_y(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = abar_all[t][:, None]
        scale = ((1.0 - shifted_alphas_cumprod(abar, divisor)) / (1.0 - abar)).sqrt()  # c(t) (B, D)
        return eps_fn(scale.to(y.dtype) * y, t)

    root = divisor.sqrt()[None]  # (1, D) float64
    clip = None if clip_x0 is None else (clip_x0 / root).to(dtype)
    return eps_y, clip, lambda y: y * root.to(y.dtype)

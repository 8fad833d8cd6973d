"""Samplers (picked by ``sampler.name``, registered in :data:`kaleido.diffusion.SAMPLERS`): ancestral DDPM, DDIM and
Heun's 2nd-order ODE solver.

All walk the respaced timestep grid of :meth:`Schedule.respaced` and evaluate the network only at grid timesteps
(the discrete-time network knows no other t), so the three share one ``eps_fn`` and one guidance code path.

- ``ddpm``: ancestral sampling, posterior variance β̃ (Ho et al. 2020; :mod:`kaleido.diffusion.ddpm`).
- ``ddim``: x_{t'} = √ᾱ' x̂_0 + √(1-ᾱ'-σ²) ε̂ + σ z with σ = η √((1-ᾱ')/(1-ᾱ)) √(1-ᾱ/ᾱ') (Song et al. 2021,
  eq. 12/16); ``eta`` = 0 is the deterministic probability-flow discretisation, 1 matches DDPM's variance.
- ``heun``: the probability-flow ODE in the variance-exploding form x̃ = x/√ᾱ, σ = √((1-ᾱ)/ᾱ), where
  dx̃/dσ = ε̂(x̃/√(1+σ²), t(σ)); Heun's trapezoidal corrector between grid points and an Euler step to σ = 0 (Karras
  et al. 2022, Alg. 1 with their discretisation replaced by the grid), 2·steps - 2 network evaluations. The first
  step, from σ_T (≈ 2e4 for the cosine schedule, where EDM starts at 80), is Euler too: there x̃ ≈ σ ε, the slope is
  constant up to O(σ_data²/σ²) until the last few percent of the step, and the trapezoid's average of two slopes
  over a span of 2e4 costs more than it corrects (tested against the closed form of Gaussian data).

``clip_x0`` clamps x̂_0 (ADM's ``clip_denoised``) and recomputes ε̂ from it, so every sampler stays in the data
range of bounded data (images in [-1, 1]).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from kaleido.diffusion import SAMPLERS
from kaleido.diffusion.ddpm import EpsFn, NoiseFn, ddpm_sample, predicted_x0
from kaleido.diffusion.schedule import Schedule

__all__ = ["ddim_sample", "ddpm_sample", "heun_sample", "run_sampler"]


def _timestep(x: torch.Tensor, t: int) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)


def _eps_from_x0(x: torch.Tensor, x0: torch.Tensor, ab: float) -> torch.Tensor:
    return (x - ab**0.5 * x0) / (1.0 - ab) ** 0.5


def ddim_sample(eps_fn: EpsFn, schedule: Schedule, steps: int, noise_fn: NoiseFn, progress: bool = False,
                clip_x0: float | torch.Tensor | None = None, eta: float = 0.0) -> torch.Tensor:
    """DDIM from x_T = noise_fn(steps) over the respaced grid; step k's fresh noise (η > 0) is noise_fn(k)."""
    grid = schedule.respaced(steps)
    abar = schedule.alphas_cumprod[grid]
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    x = noise_fn(len(grid))
    for k in tqdm(range(len(grid) - 1, -1, -1), desc="ddim", disable=not progress, leave=False):
        ab, ab_prev = float(abar[k]), float(abar_prev[k])
        eps = eps_fn(x, _timestep(x, int(grid[k])))
        x0 = predicted_x0(x, eps, ab, clip_x0)
        if clip_x0 is not None:
            eps = _eps_from_x0(x, x0, ab)
        sigma = eta * ((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)) ** 0.5
        x = ab_prev**0.5 * x0 + max(1.0 - ab_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0 and k > 0:
            x = x + sigma * noise_fn(k)
    return x


def heun_sample(eps_fn: EpsFn, schedule: Schedule, steps: int, noise_fn: NoiseFn, progress: bool = False,
                clip_x0: float | torch.Tensor | None = None) -> torch.Tensor:
    """Heun's method on the probability-flow ODE from x_T = noise_fn(steps) (deterministic after x_T)."""
    grid = schedule.respaced(steps)
    abar = schedule.alphas_cumprod[grid]
    sigmas = ((1.0 - abar) / abar) ** 0.5

    def slope(x_ve: torch.Tensor, k: int) -> torch.Tensor:
        """dx̃/dσ at grid point k: ε̂ of the VP input x̃ √ᾱ (after clamping x̂_0 = x̃ - σ ε̂ if asked)."""
        ab = float(abar[k])
        eps = eps_fn(x_ve * ab**0.5, _timestep(x_ve, int(grid[k])))
        if clip_x0 is None:
            return eps
        x0 = (x_ve - float(sigmas[k]) * eps).clamp(-clip_x0, clip_x0)
        return (x_ve - x0) / float(sigmas[k])

    x = noise_fn(len(grid)) / float(abar[-1]) ** 0.5
    for k in tqdm(range(len(grid) - 1, -1, -1), desc="heun", disable=not progress, leave=False):
        sigma, sigma_next = float(sigmas[k]), (float(sigmas[k - 1]) if k > 0 else 0.0)
        d = slope(x, k)
        x_next = x + (sigma_next - sigma) * d
        if 0 < k < len(grid) - 1:  # trapezoidal correction, except on the first and the last step (see module doc)
            x_next = x + (sigma_next - sigma) * 0.5 * (d + slope(x_next, k - 1))
        x = x_next
    return x


def run_sampler(name: str, eps_fn: EpsFn, schedule: Schedule, steps: int, noise_fn: NoiseFn,
                options: dict[str, Any], progress: bool = False, clip_x0: float | torch.Tensor | None = None
                ) -> torch.Tensor:
    """Sample with the registered sampler ``name``; ``options`` are its own settings (``eta``)."""
    return SAMPLERS.get(name)(eps_fn, schedule, steps, noise_fn, progress=progress, clip_x0=clip_x0, **options)

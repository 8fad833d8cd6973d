"""Ancestral DDPM sampling on a respaced timestep grid (Ho et al. 2020 eq. 6-7; Nichol & Dhariwal 2021 §4)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from kaleido.diffusion.schedule import Schedule

#: eps_fn(x_t (B, D), t (B,) int64 timestep on the training grid) -> ε̂ (B, D), guidance already applied.
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: noise_fn(k) -> (B, D) standard normals for sampling step k (k = len(steps) for x_T).
NoiseFn = Callable[[int], torch.Tensor]


def predicted_x0(x: torch.Tensor, eps: torch.Tensor, abar: float, clip_x0: float | torch.Tensor | None
                 ) -> torch.Tensor:
    """x̂_0 = (x_t - √(1-ᾱ) ε̂) / √ᾱ, clamped to [-clip_x0, clip_x0] when given (a float, or a per-element bound
    broadcast against x)."""
    x0 = (x - (1.0 - abar) ** 0.5 * eps) / abar**0.5
    return x0 if clip_x0 is None else x0.clamp(-clip_x0, clip_x0)


def ddpm_sample(eps_fn: EpsFn, schedule: Schedule, steps: int, noise_fn: NoiseFn, progress: bool = False,
                clip_x0: float | torch.Tensor | None = None) -> torch.Tensor:
    """Draw x_0 (B, D) from x_T = noise_fn(steps) with ``steps`` ancestral steps (posterior variance β̃).

    With ``steps < T`` the chain uses the respaced ᾱ of the chosen timesteps, as in improved DDPM.
    ``clip_x0``: clamp the predicted x̂_0 to [-clip_x0, clip_x0] before the posterior mean (ADM's
    ``clip_denoised``), for bounded data such as images in [-1, 1]. Needed with ε-prediction: the cosine schedule
    ends at ᾱ_T ≈ 2e-9, where x̂_0 = (x_t - √(1-ᾱ) ε̂) / √ᾱ multiplies any error of ε̂ by ~2e4.
    """
    grid = schedule.respaced(steps)
    abar = schedule.alphas_cumprod[grid]
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    x = noise_fn(len(grid))
    for k in tqdm(range(len(grid) - 1, -1, -1), desc="ddpm", disable=not progress, leave=False):
        t = torch.full((x.shape[0],), int(grid[k]), dtype=torch.int64, device=x.device)
        eps = eps_fn(x, t)
        ab, ab_prev = float(abar[k]), float(abar_prev[k])
        beta = 1.0 - ab / ab_prev
        x0 = predicted_x0(x, eps, ab, clip_x0)
        # posterior mean of q(x_{t-1} | x_t, x_0), Ho et al. eq. 7
        mean = (ab_prev**0.5 * beta / (1.0 - ab)) * x0 + ((1.0 - beta) ** 0.5 * (1.0 - ab_prev) / (1.0 - ab)) * x
        if k > 0:
            x = mean + (beta * (1.0 - ab_prev) / (1.0 - ab)) ** 0.5 * noise_fn(k)
        else:
            x = mean
    return x

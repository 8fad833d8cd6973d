"""The denoising objective: noise x_0 to x_t and regress the network's ε or v output (simple MSE, Ho et al. eq. 14)."""

from __future__ import annotations

import torch

from kaleido.diffusion.schedule import Schedule

PREDICTIONS = ("eps", "v")
#: what the loss regresses: the network's own output parameterisation, or ε̂ converted from it (ml-mdm's 256 px
#: configs predict v and take the loss on ε: ``prediction_type: V_PREDICTION``, ``loss_target_type: DDPM``)
LOSS_TARGETS = ("prediction", "eps")


def diffusion_target(prediction: str, x0: torch.Tensor, noise: torch.Tensor, sqrt_ab: torch.Tensor,
                     sqrt_1mab: torch.Tensor) -> torch.Tensor:
    """ε, or v = √ᾱ ε − √(1-ᾱ) x_0 (Salimans & Ho 2022)."""
    if prediction == "eps":
        return noise
    if prediction == "v":
        return sqrt_ab * noise - sqrt_1mab * x0
    raise ValueError(f"unknown prediction {prediction!r}; accepted: {list(PREDICTIONS)}")


def loss_pair(prediction: str, loss_target: str, output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor,
              x_t: torch.Tensor, sqrt_ab: torch.Tensor, sqrt_1mab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(what is compared, what it is compared with) for the diffusion loss, all shaped like x0 (B, ...).

    ``loss_target`` "prediction": the output against its own target (:func:`diffusion_target`); "eps": ε̂ from the
    output (:func:`output_to_eps`) against the noise. For v, ε̂ - ε = √ᾱ (v̂ - v): the ε loss is the v loss weighted
    by ᾱ_t.
    """
    if loss_target == "prediction":
        return output, diffusion_target(prediction, x0, noise, sqrt_ab, sqrt_1mab)
    if loss_target == "eps":
        return output_to_eps(prediction, output, x_t, sqrt_ab, sqrt_1mab), noise
    raise ValueError(f"unknown loss_target {loss_target!r}; accepted: {list(LOSS_TARGETS)}")


def output_to_eps(prediction: str, output: torch.Tensor, x_t: torch.Tensor, sqrt_ab: torch.Tensor,
                  sqrt_1mab: torch.Tensor) -> torch.Tensor:
    """Convert the network output to ε so guidance and the sampler work in one parameterisation."""
    if prediction == "eps":
        return output
    if prediction == "v":
        return sqrt_ab * output + sqrt_1mab * x_t
    raise ValueError(f"unknown prediction {prediction!r}; accepted: {list(PREDICTIONS)}")


def noised(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε for x0 (B, ...), integer t (B,); returns (x_t, √ᾱ_t, √(1-ᾱ_t))."""
    sqrt_ab, sqrt_1mab = schedule.coefficients(t, x0.dtype, x0.ndim)
    return sqrt_ab * x0 + sqrt_1mab * noise, sqrt_ab, sqrt_1mab

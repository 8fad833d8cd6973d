"""The exact denoiser of a Gaussian-mixture data set: the toy experiment's test oracle (methods.md).

For data x_0 ~ Σ_m π_m N(μ_m, σ² I), x_t = √ᾱ x_0 + √(1-ᾱ) ε is the mixture Σ_m π_m N(√ᾱ μ_m, s² I) with
s² = ᾱσ² + 1 - ᾱ, so ε(x_t) = -√(1-ᾱ) ∇ log p(x_t) = √(1-ᾱ)/s² Σ_m r_m(x_t) (x_t - √ᾱ μ_m), r_m the posterior
responsibilities. The condition vector y holds the mixture weights π (B, M): a class spreads them over its modes,
Kaleido's (class, mode) latent puts them on one mode, the null condition over all modes.

It implements :class:`kaleido.models.interface.Denoiser` (``encode``, ``null_condition``, ``prior``, ...), so the
same sampler and guidance code run on it as on a trained network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kaleido.diffusion.schedule import Schedule
from kaleido.errors import ConfigError
from kaleido.models.interface import VectorData
from kaleido.rng import counter_uniform


class _UniformModePrior(nn.Module):
    """p(z | c): uniform over class c's modes; token = rank of the mode within its class."""

    def __init__(self, modes_per_class: int) -> None:
        super().__init__()
        self.vocab_size = modes_per_class

    def sample(self, context: torch.Tensor, seq_len: int, seed: int, index: torch.Tensor, stream: int,
               temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
        if top_k or top_p < 1.0:
            raise ConfigError(f"the exact oracle's prior is uniform over the modes; prior_top_k={top_k} / "
                              f"prior_top_p={top_p} would drop modes arbitrarily (use 0 / 1.0)")
        u = counter_uniform(seed, index, stream, 0, 1)
        return (u * self.vocab_size).floor().long().clamp_(max=self.vocab_size - 1)


class ExactGMMDenoiser(VectorData, nn.Module):
    """ε-prediction of the exact mixture score. ``latent=True`` makes it the latent-augmented oracle."""

    def __init__(self, data_spec: dict[str, Any], schedule: Schedule, latent: bool = False) -> None:
        super().__init__()
        self.register_buffer("centres", torch.tensor(data_spec["centres"], dtype=torch.float64))
        self.register_buffer("mode_classes", torch.tensor(data_spec["mode_classes"], dtype=torch.int64))
        self.register_buffer("abar", torch.as_tensor(schedule.alphas_cumprod, dtype=torch.float64))
        self.std = float(data_spec["std"])
        self.num_classes = int(self.mode_classes.max()) + 1
        self.data_dim = self.centres.shape[1]
        counts = torch.bincount(self.mode_classes)
        if latent and not bool((counts == counts[0]).all()):
            raise ValueError("the latent oracle needs the same number of modes in every class")
        self.prior = _UniformModePrior(int(counts[0])) if latent else None
        self.seq_len = 1 if latent else 0

    @property
    def uses_latent(self) -> bool:
        return self.prior is not None

    def context(self, labels: torch.Tensor) -> torch.Tensor:
        return labels[:, None].double()

    def encode(self, labels: torch.Tensor, tokens: torch.Tensor | None = None, drop: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, None]:
        """Mixture weights (B, M) of the condition."""
        member = (self.mode_classes[None, :] == labels[:, None]).double()  # (B, M)
        if tokens is not None:
            rank = torch.cumsum(member, dim=1) - 1
            member = member * (rank == tokens[:, :1].double())
        return member / member.sum(dim=1, keepdim=True), None

    def null_condition(self, batch: int) -> torch.Tensor:
        return torch.full((batch, len(self.centres)), 1.0 / len(self.centres), dtype=torch.float64)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ab = self.abar[t][:, None]  # (B, 1)
        s2 = ab * self.std**2 + 1 - ab  # (B, 1) per-dimension variance of every noised component
        diff = x.double()[:, None, :] - ab.sqrt()[:, :, None] * self.centres[None]  # (B, M, D)
        logits = torch.log(y.clamp_min(1e-300)) - (diff**2).sum(-1) / (2 * s2)  # (B, M)
        resp = torch.softmax(logits, dim=1)[:, :, None]  # (B, M, 1)
        eps = (1 - ab).sqrt() / s2 * (resp * diff).sum(1)  # (B, D)
        return eps.to(x.dtype)

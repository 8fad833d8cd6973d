"""A conditional denoiser = condition encoder(s) + a noise-agnostic trunk.

``encode`` turns (class, latent tokens) into the condition vector y (B, C) the trunk reads; the same module
serves MDM (class only) and Kaleido (class + latent, with its AR prior trained jointly).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kaleido.models.archs import ARCHS
from kaleido.models.conditioning import ClassContext, LatentPrior
from kaleido.models.interface import VectorData


class ConditionalDenoiser(VectorData, nn.Module):
    """Trunk f(x_t, t, y) with y = [context(c)] or, when ``vocab_size`` is set, y = [context(c) ; prior state(z)].

    Shapes: x (B, D); t (B,) int; labels (B,) int; tokens (B, L) int; y (B, C).
    """

    def __init__(self, arch: dict[str, Any], data_dim: int, num_classes: int, vocab_size: int = 0,
                 seq_len: int = 0) -> None:
        super().__init__()
        dim = int(arch.get("emb_dim", 32))
        self.data_dim, self.num_classes, self.vocab_size, self.seq_len = data_dim, num_classes, vocab_size, seq_len
        self.context = ClassContext(num_classes, dim)
        self.prior = LatentPrior(vocab_size, dim) if vocab_size else None
        self.null_latent = nn.Parameter(torch.zeros(dim)) if vocab_size else None
        self.cond_dim = dim * (2 if vocab_size else 1)
        self.trunk = ARCHS.get(arch["arch"])(data_dim, self.cond_dim, arch)

    @property
    def uses_latent(self) -> bool:
        return self.prior is not None

    def encode(self, labels: torch.Tensor, tokens: torch.Tensor | None = None, drop: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Condition y (B, C) and, for Kaleido, the prior's teacher-forced logits (B, L, V) (else None).

        ``drop`` (B,) bool replaces the class and the latent by their learned null entries (CFG dropout); the
        prior itself always sees the true class, so L_AR trains p(z | c).
        """
        ctx = self.context(labels)
        logits = None
        parts = [ctx]
        if self.prior is not None:
            if tokens is None:
                raise ValueError("this denoiser is latent-augmented: encode() needs tokens (B, L)")
            logits, state = self.prior(ctx, tokens)
            parts.append(state)
        y = torch.cat(parts, dim=-1)
        if drop is not None:
            y = torch.where(drop[:, None], self.null_condition(len(labels)), y)
        return y, logits

    def null_condition(self, batch: int) -> torch.Tensor:
        """The unconditional y (B, C): null class (and null latent)."""
        parts = [self.context.null(batch)]
        if self.null_latent is not None:
            parts.append(self.null_latent.expand(batch, -1))
        return torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.trunk(x, t, y)

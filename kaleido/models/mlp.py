"""A noise-agnostic MLP denoiser trunk for vector data (the toy experiment)."""

from __future__ import annotations

import torch
from torch import nn

from kaleido.models.embeddings import timestep_embedding


class MLPNet(nn.Module):
    """f(x_t, t, y): x (B, D), integer timesteps t (B,), condition vector y (B, C) -> (B, D).

    ``depth`` residual blocks of width ``hidden``; the (time, condition) embedding is added to the input of
    every block, so guidance differences are not washed out by depth.
    """

    def __init__(self, data_dim: int, cond_dim: int, hidden: int = 128, depth: int = 3, emb_dim: int = 32) -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.inp = nn.Linear(data_dim, hidden)
        self.emb = nn.Sequential(nn.Linear(emb_dim + cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, data_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e = self.emb(torch.cat([timestep_embedding(t, self.emb_dim), y], dim=-1))  # (B, H)
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(nn.functional.silu(h + e))
        return self.out(nn.functional.silu(h))

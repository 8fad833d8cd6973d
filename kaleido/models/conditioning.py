"""Condition encoders: the class context and Kaleido's autoregressive latent prior.

In the paper the context encoder is a frozen T5 encoder and the prior a T5 decoder; for the toy experiment the
context is a learned class embedding and the prior a GRU decoder: the same roles, at the toy's scale.
"""

from __future__ import annotations

import torch
from torch import nn

from kaleido.rng import counter_uniform


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then nucleus (top-p) filtering of (B, V) logits; row-wise, so batch composition never matters."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p  # keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class ClassContext(nn.Module):
    """Class id (B,) -> context vector (B, dim). Index ``num_classes`` is the learned "no condition" entry (CFG)."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(labels)

    def null(self, batch: int) -> torch.Tensor:
        return self.table.weight[self.num_classes].expand(batch, -1)


class LatentPrior(nn.Module):
    """p_AR(z | c) over token sequences z (B, L) in [0, vocab_size), conditioned on the context (B, dim).

    ``forward`` teacher-forces [BOS, z_1..z_L] and returns next-token logits (B, L, V) and the decoder's
    final state after z_L (B, dim), which the latent-augmented denoiser is conditioned on.
    """

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.bos = vocab_size
        self.embed = nn.Embedding(vocab_size + 1, dim)
        self.init = nn.Linear(dim, dim)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, vocab_size)

    def _start(self, context: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.init(context))[None]  # (1, B, dim)

    def forward(self, context: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bos = torch.full((tokens.shape[0], 1), self.bos, dtype=torch.int64, device=tokens.device)
        states, _ = self.rnn(self.embed(torch.cat([bos, tokens], dim=1)), self._start(context))  # (B, L+1, dim)
        return self.head(states[:, :-1]), states[:, -1]

    def loss(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """L_AR: token cross-entropy of ``logits`` (B, L, V) against ``tokens`` (B, L) (fixed-length codes)."""
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))

    @torch.no_grad()
    def sample(self, context: torch.Tensor, seq_len: int, seed: int, index: torch.Tensor, stream: int,
               temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
        """Ancestral sampling of z (B, seq_len); token k of sample i uses uniform (seed, index[i], stream, k);
        ``top_k`` / ``top_p`` (0 / 1.0 = off) truncate each step's distribution (:func:`filter_logits`)."""
        hidden = self._start(context)
        inp = torch.full((context.shape[0], 1), self.bos, dtype=torch.int64, device=context.device)
        tokens = []
        for k in range(seq_len):
            out, hidden = self.rnn(self.embed(inp), hidden)
            logits = filter_logits(self.head(out[:, -1]).double() / temperature, top_k, top_p)
            probs = torch.softmax(logits, dim=-1)  # (B, V)
            u = counter_uniform(seed, index, stream, k, 1).to(probs.device)  # (B, 1)
            # inverse-CDF draw: batch-independent and identical on every device
            choice = torch.searchsorted(torch.cumsum(probs, dim=-1), u).clamp_(max=self.vocab_size - 1)
            tokens.append(choice)
            inp = choice
        return torch.cat(tokens, dim=1)

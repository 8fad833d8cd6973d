"""Discrete latent extractors (registry). Stage I of Kaleido: every training item -> a token sequence.

An extractor maps the training arrays to ``tokens`` (n, L) int64 in ``[0, vocab_size)``; it must not read
the generator's ground truth (``modes``), which only :func:`recovery_accuracy` uses, for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Any, Protocol

import numpy as np

from metrics.registry import Registry


@dataclass(frozen=True)
class LatentCodes:
    """``tokens`` (n, seq_len) int64 and the vocabulary size of the token ids."""

    tokens: np.ndarray
    vocab_size: int


class LatentExtractor(Protocol):
    def validate(self, spec: dict[str, Any], where: str) -> None: ...

    def extract(self, x: np.ndarray, labels: np.ndarray, spec: dict[str, Any], seed: int) -> LatentCodes: ...


EXTRACTORS: Registry[LatentExtractor] = Registry("latent extractor")


def recovery_accuracy(tokens: np.ndarray, labels: np.ndarray, modes: np.ndarray) -> float:
    """Share of items whose first token names their true mode, under the best token<->mode matching per class.

    tokens (n, L), labels (n,), modes (n,). 1.0 means the extractor recovered the generator's modes exactly.
    """
    correct = 0
    for c in np.unique(labels):
        members = labels == c
        tok, mode = tokens[members, 0], modes[members]
        tok_ids, mode_ids = np.unique(tok), np.unique(mode)
        counts = {(t, m): int(np.sum((tok == t) & (mode == m))) for t in tok_ids for m in mode_ids}
        if len(tok_ids) <= len(mode_ids):
            best = max(sum(counts[t, m] for t, m in zip(tok_ids, perm, strict=False))
                       for perm in permutations(mode_ids, len(tok_ids)))
        else:
            best = max(sum(counts[t, m] for t, m in zip(perm, mode_ids, strict=False))
                       for perm in permutations(tok_ids, len(mode_ids)))
        correct += best
    return correct / len(labels)


from kaleido.latents import color, combined, kmeans, objects, text, voken  # noqa: E402,F401  (registers)

"""Training batches streamed from a data set: a seeded permutation per epoch, sliced per rank, read by loader workers.

The order is a pure function of (seed, step). Step ``s`` takes positions ``s*B .. s*B + B - 1`` of the
concatenation of one permutation of the ``n`` items per epoch (epoch ``e``'s from ``derive_seed(seed, "epoch",
e)``), so every epoch visits each item once (without replacement), a resumed run continues at its checkpointed
step with the very batches an uninterrupted one would draw (the loader's position *is* the step), and each of N
processes reads only its rows of the same global batch, which makes the result independent of N.

Items are read by :class:`torch.utils.data.DataLoader` worker processes (``x`` is then usually a
:class:`metrics.store.ShardedArray`, read with positional reads), pinned and prefetched, so host memory is
O(batch x prefetch x workers) and the GPU holds one batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kaleido.seeding import derive_seed


class StepBatches(torch.utils.data.Dataset):
    """Map-style data set whose key is the training step: ``batches[s]`` is this rank's rows of step s's batch.

    x: (n, ...) items, any array-like indexable by an int array (numpy, :class:`metrics.store.ShardedArray`, a
    tensor);
    labels: (n,) int64; tokens: (n, L) int64 or None. ``rows``: this rank's slice of the global ``batch``.
    Returns {"x": (b, ...) tensor of x's dtype, "labels": (b,) int64, "tokens": (b, L) int64 when given},
    b = rows' length.
    """

    def __init__(self, x: Any, labels: np.ndarray, tokens: np.ndarray | None, batch: int, rows: slice,
                 seed: int) -> None:
        self.x, self.labels, self.tokens = x, np.asarray(labels), tokens
        self.batch, self.rows, self.seed, self.n = batch, rows, seed, len(x)
        if self.n == 0:
            raise ValueError("the training set is empty")
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of the n items that epoch ``epoch`` visits, int64 (n,)."""
        if epoch not in self._orders:
            if len(self._orders) >= 2:  # a batch spans at most the previous and the current epoch here
                self._orders.pop(min(self._orders))
            rng = np.random.Generator(np.random.PCG64(derive_seed(self.seed, "epoch", epoch)))
            self._orders[epoch] = rng.permutation(self.n)
        return self._orders[epoch]

    def indices(self, step: int) -> np.ndarray:
        """Item indices of step ``step``'s global batch, int64 (batch,)."""
        positions = step * self.batch + np.arange(self.batch, dtype=np.int64)
        epochs, within = np.divmod(positions, self.n)
        out = np.empty(self.batch, dtype=np.int64)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            out[mask] = self.order(int(epoch))[within[mask]]
        return out

    def __len__(self) -> int:  # steps are unbounded; the loader's sampler says which to read
        return np.iinfo(np.int64).max

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        index = self.indices(step)[self.rows]
        if isinstance(self.x, torch.Tensor):  # a set already on the device (benchmarks' resident peer)
            x = self.x[torch.from_numpy(index).to(self.x.device)]
        else:
            x = torch.from_numpy(np.ascontiguousarray(self.x[index]))
        out = {"x": x,
               "labels": torch.from_numpy(self.labels[index].astype(np.int64))}
        if self.tokens is not None:
            out["tokens"] = torch.from_numpy(self.tokens[index].astype(np.int64))
        return out


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are read (never what they hold): ``workers`` loader processes (0: in the training process),
    each ``prefetch`` batches ahead."""

    workers: int = 0
    prefetch: int = 2


def stream(batches: StepBatches, start: int, stop: int, *, workers: int = 0, prefetch: int = 2,
           pin_memory: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Steps ``start .. stop - 1`` of ``batches`` in order, read by ``workers`` processes (0: in this process), each
    keeping ``prefetch`` batches ahead; ``pin_memory`` for fast, asynchronous copies to a GPU."""
    loader = torch.utils.data.DataLoader(batches, sampler=range(start, stop), batch_size=None, num_workers=workers,
                                         pin_memory=pin_memory, prefetch_factor=prefetch if workers else None)
    yield from loader

"""Exact k-NN radii and ball tests of P/R/D/C, streamed through the device in blocks of both sets.

Both feature sets are read in chunks of rows (:class:`RowSource`: an array in memory, a ``numpy.memmap`` or a
:class:`metrics.store.ShardedArray`, so a 1.28M x 2048 reference is never loaded whole). Work is organised as

* a *pass*: ``chunk_rows`` query rows held on the device;
* a *key chunk*: ``chunk_rows`` rows of the other set (or of the same set, for radii) copied to the device in turn;
* a *block*: ``block_rows`` query rows of the pass against the key chunk, one (block_rows, chunk_rows) matrix of
  kernel values (:mod:`metrics.knn_kernels`).

Radii keep, per query row, the running k+1 smallest canonical distances (self included at exactly 0) and merge
each block's candidates into them with ``torch.topk``; ball tests reduce each block to per-row and per-column
booleans and counts. Peak device memory is about ``2 * chunk_rows * row_bytes + block_rows * chunk_rows *
block_bytes`` plus O(n) float64 per-row results (radii, flags); host memory is one read of :data:`READ_BYTES`;
the reference is read ``ceil(n / chunk_rows)`` times for the radii and once for the ball tests.
Every decision is the canonical one (:mod:`metrics.knn_kernels`), so neither the chunk sizes nor the filter
precision change a result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metrics._validate import check_feature_array, check_finite, is_checked
from metrics.knn_kernels import LOW_DIM_MAX, DeviceRows, GramKernel, LowDimKernel, resolve_precision

#: host bytes per read of feature rows (bounds the reader's resident memory)
READ_BYTES = 64 << 20
# Share of the free device memory (CUDA) an automatic chunk size plans for; on the CPU: share of the available
# host memory, at most HOST_BUDGET_MAX bytes.
DEVICE_SHARE, HOST_SHARE, HOST_BUDGET_MAX = 0.5, 0.25, 4 << 30
# Candidates a block first proposes per row beyond the k+1 kept (more are fetched for rows with near-ties).
_CANDIDATE_SLACK = 8

Kernel = LowDimKernel | GramKernel


@dataclass(frozen=True)
class KnnPlan:
    """How the k-NN runs: ``device``; ``block_rows`` query rows per block; ``chunk_rows`` rows per pass and per key
    chunk; ``pair_rows`` canonical pairs recomputed at once."""

    device: torch.device
    block_rows: int
    chunk_rows: int
    pair_rows: int


def memory_budget(device: torch.device) -> int:
    """Bytes an automatic plan may use: DEVICE_SHARE of the free memory of a CUDA device, else HOST_SHARE of the
    available host memory (at most HOST_BUDGET_MAX)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * DEVICE_SHARE)
    return int(min(_available_host_bytes() * HOST_SHARE, HOST_BUDGET_MAX))


def _available_host_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def make_plan(kernel: Kernel, device: torch.device, dim: int, itemsize: int, max_rows: int, block_rows: int,
              chunk_rows: int = 0) -> KnnPlan:
    """The plan for sets of at most ``max_rows`` rows of ``dim`` features (``itemsize`` bytes each as read).

    ``chunk_rows`` 0 = as many as :func:`memory_budget` allows for two chunks and one block of ``block_rows`` rows
    (at least ``min(block_rows, max_rows)``, at most ``max_rows``).
    """
    row_bytes, element_bytes = kernel.row_bytes(dim, itemsize), kernel.block_bytes()
    if chunk_rows == 0:
        budget = memory_budget(device)
        chunk_rows = budget // (2 * row_bytes + block_rows * element_bytes)
        chunk_rows = max(min(block_rows, max_rows), min(chunk_rows, max_rows))
    pair_rows = max(4096, block_rows * min(chunk_rows, max_rows) * element_bytes // (3 * 8 * dim))
    return KnnPlan(device=device, block_rows=block_rows, chunk_rows=chunk_rows, pair_rows=pair_rows)


class RowSource:
    """A (n, d) feature set read in row chunks: an array in memory, a ``numpy.memmap`` or a ShardedArray.

    Rows are read :data:`READ_BYTES` at a time as float32 (float32 input) or float64 (any other real dtype) and
    checked finite as they are read (ValueError naming the first bad row).
    """

    def __init__(self, data: Any, name: str, min_rows: int) -> None:
        self.data = check_feature_array(data, name, min_rows=min_rows)
        self.name = name
        self.rows, self.dim = (int(v) for v in data.shape)
        self.dtype = np.dtype(np.float32) if np.dtype(data.dtype) == np.float32 else np.dtype(np.float64)
        self.checked = is_checked(data)  # values already checked finite (compute_all's inputs)

    def __len__(self) -> int:
        return self.rows

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start .. stop - 1 as a (stop - start, d) writable array of :attr:`dtype` (a read-only memory map's
        rows are copied: torch does not take read-only memory)."""
        rows = np.asarray(self.data[start:stop], dtype=self.dtype)
        return rows if rows.flags.writeable else rows.copy()

    def chunks(self) -> Any:
        """(start, stop) of consecutive reads of at most READ_BYTES covering all rows."""
        step = max(1, READ_BYTES // (self.dim * self.dtype.itemsize))
        return ((a, min(a + step, self.rows)) for a in range(0, self.rows, step))

    def mean(self) -> torch.Tensor:
        """(d,) float64 mean of the rows, accumulated chunk by chunk."""
        total = np.zeros(self.dim)
        for start, stop in self.chunks():
            rows = self.read(start, stop)
            if not self.checked:
                check_finite(rows, self.name, start)
            total += rows.sum(axis=0, dtype=np.float64)
        return torch.from_numpy(total / self.rows)

    def to_device(self, start: int, stop: int, kernel: Kernel, device: torch.device) -> DeviceRows:
        """Rows start .. stop - 1 on ``device``, prepared for ``kernel``."""
        source = torch.float32 if self.dtype == np.float32 else torch.float64
        out = torch.empty((stop - start, self.dim), dtype=kernel.storage_dtype(source), device=device)
        step = max(1, READ_BYTES // (self.dim * self.dtype.itemsize))
        for first in range(start, stop, step):
            last = min(first + step, stop)
            out[first - start:last - start].copy_(torch.from_numpy(self.read(first, last)))
        if not bool(torch.isfinite(out).all()):
            check_finite(out.cpu().numpy(), self.name, start)
        return kernel.prepare(out, start)


def _mask_self(values: torch.Tensor, query_start: int, keys_start: int) -> None:
    """Set the entries of a (Q, K) block pairing a row with itself (same global index) to +inf."""
    first = max(query_start, keys_start)
    last = min(query_start + values.shape[0], keys_start + values.shape[1])
    if first < last:
        index = torch.arange(first, last, device=values.device)
        values[index - query_start, index - keys_start] = torch.inf


def _canonical(kernel: GramKernel, plan: KnnPlan, query: DeviceRows, q_index: torch.Tensor, keys: DeviceRows,
               k_index: torch.Tensor, filtered: torch.Tensor) -> torch.Tensor:
    """(m,) float64 canonical raw squared distances of m pairs, ``plan.pair_rows`` at a time, each checked against
    its filter value (``filtered``, (m,)) and error bound: a violation is a bug, never a silently wrong number."""
    out = torch.empty(q_index.shape[0], dtype=torch.float64, device=q_index.device)
    for a in range(0, q_index.shape[0], plan.pair_rows):
        b = min(a + plan.pair_rows, q_index.shape[0])
        out[a:b] = kernel.exact_values(query, q_index[a:b], keys, k_index[a:b])
        bound = kernel.slack_pairs(query, q_index[a:b], keys, k_index[a:b])
        error = (filtered[a:b].to(torch.float64) - out[a:b]).abs()
        if bool((error > bound).any()):
            worst = int((error - bound).argmax())
            raise RuntimeError(f"k-NN filter ({kernel.precision}) off by {float(error[worst]):.6g} > its proven bound "
                               f"{float(bound[worst]):.6g} (pair {int(q_index[a + worst]) + query.start}, "
                               f"{int(k_index[a + worst]) + keys.start}); rerun with knn_precision='float64' and "
                               "report this")
    return out


def _merge_block(values: torch.Tensor, state: torch.Tensor, kernel: Kernel, plan: KnnPlan, query: DeviceRows,
                 keys: DeviceRows) -> torch.Tensor:
    """``state`` (Q, k+1): each row's k+1 smallest canonical values so far, ascending, merged with the block's
    (``values``: (Q, K) kernel values, self pairs at +inf). Returns the new (Q, k+1) state.

    Each row's ``width`` smallest block values are candidates when they could beat the state's largest (within the
    filter's bound); a row whose width-th value could still beat the merged result is fetched again with twice the
    width, so ties and near-ties at the k-th neighbour are resolved exactly.
    """
    kept = state.shape[1]
    width = min(kept + _CANDIDATE_SLACK, values.shape[1])
    slack = None if kernel.exact else kernel.slack_rows(query, keys)
    result = state.clone()
    pending = None  # None = every row
    while True:
        block = values if pending is None else values[pending]
        before = state if pending is None else state[pending]
        top, index = torch.topk(block, width, dim=1, largest=False, sorted=True)  # (p, width)
        # A candidate could beat the state's largest, and is no further than the block's own kept-th smallest
        # (which bounds the merged result; "<=" keeps its ties).
        if kernel.exact:
            candidates = top < before[:, -1:]
            if width >= kept:
                candidates &= top <= top[:, kept - 1:kept]
            canonical = torch.where(candidates, top, torch.full_like(top, torch.inf))
        else:
            row_slack = slack if pending is None else slack[pending]
            candidates = top < kernel.above(before[:, -1], row_slack)[:, None]
            if width >= kept:
                own = top[:, kept - 1].to(torch.float64) + row_slack  # >= the canonical of the block's kept smallest
                candidates &= top <= kernel.above(own, row_slack)[:, None]
            rows, cols = candidates.nonzero(as_tuple=True)
            q_index = rows if pending is None else pending[rows]
            raw = _canonical(kernel, plan, query, q_index, keys, index[rows, cols], top[rows, cols])
            canonical = torch.full(top.shape, torch.inf, dtype=torch.float64, device=top.device)
            canonical[rows, cols] = raw.clamp_min(0.0)
        merged = torch.topk(torch.cat([before, canonical], dim=1), kept, dim=1, largest=False, sorted=True).values
        if pending is None:
            result = merged
        else:
            result[pending] = merged
        if width == values.shape[1]:
            return result
        limit = merged[:, -1] if kernel.exact else kernel.above(merged[:, -1], row_slack)
        more = torch.nonzero(top[:, -1] < limit).flatten()
        if more.numel() == 0:
            return result
        pending = more if pending is None else pending[more]
        width = min(2 * width, values.shape[1])


def knn_radii(source: RowSource, ks: tuple[int, ...], kernel: Kernel, plan: KnnPlan) -> dict[int, torch.Tensor]:
    """Canonical radii r_k for each k in ``ks``: the (k+1)-th smallest distance of each row to its own set, itself
    included at exactly 0. Returns {k: (n,) float64 tensor on the device} in kernel value space (distances for an
    exact kernel, clamped raw squared distances for the Gram kernel; ``kernel.to_distance`` gives distances)."""
    kept = max(ks) + 1
    state_all = torch.empty((len(source), kept), dtype=torch.float64, device=plan.device)
    for p0 in range(0, len(source), plan.chunk_rows):
        held = source.to_device(p0, min(p0 + plan.chunk_rows, len(source)), kernel, plan.device)
        state = torch.full((len(held), kept), torch.inf, dtype=torch.float64, device=plan.device)
        state[:, 0] = 0.0  # the row itself
        for c0 in range(0, len(source), plan.chunk_rows):
            c1 = min(c0 + plan.chunk_rows, len(source))
            keys = held if c0 == p0 else source.to_device(c0, c1, kernel, plan.device)
            for q0 in range(0, len(held), plan.block_rows):
                q1 = min(q0 + plan.block_rows, len(held))
                query = held.rows(q0, q1)
                values = kernel.values(query, keys)
                _mask_self(values, query.start, keys.start)
                state[q0:q1] = _merge_block(values, state[q0:q1], kernel, plan, query, keys)
                del values
            del keys
        state_all[p0:p0 + len(held)] = state
        del held
    return {k: state_all[:, k].contiguous() for k in ks}


@dataclass
class BallTests:
    """Per-point outcomes of the ball tests, from which all four metrics follow.

    fake_in_real_pr: (n_fake,) bool, fake y lies in some real ball of radius r_kpr.
    real_in_fake_pr: (n_real,) bool, real x lies in some fake ball of radius r_kpr.
    fake_count_dc: (n_fake,) int64, number of real balls of radius r_kdc that contain fake y.
    real_covered_dc: (n_real,) bool, real ball of radius r_kdc contains some fake y.
    """

    fake_in_real_pr: np.ndarray
    real_in_fake_pr: np.ndarray
    fake_count_dc: np.ndarray
    real_covered_dc: np.ndarray


def _inside(kernel: Kernel, plan: KnnPlan, values: torch.Tensor, query: DeviceRows, keys: DeviceRows,
            radii: list[tuple[torch.Tensor, bool]]) -> list[torch.Tensor]:
    """(Q, K) bool "canonical d(query i, key j) < radius" for each (radius, per_row) in ``radii``: per_row radii are
    (Q,) (one per query row), others (K,) (one per key row), in kernel value space."""
    if kernel.exact:
        return [values < (radius[:, None] if per_row else radius[None, :]) for radius, per_row in radii]
    row_slack, col_slack = kernel.slack_rows(query, keys), kernel.slack_cols(query, keys)
    inside, unsure = [], []
    for radius, per_row in radii:
        slack = row_slack if per_row else col_slack
        low, high = kernel.below(radius, slack), kernel.above(radius, slack)
        low, high = (low[:, None], high[:, None]) if per_row else (low[None, :], high[None, :])
        sure = values < low
        inside.append(sure)
        unsure.append((values <= high) & ~sure)
    either = unsure[0]
    for more in unsure[1:]:
        either = either | more
    rows, cols = either.nonzero(as_tuple=True)
    if rows.numel():
        distance = kernel.to_distance(_canonical(kernel, plan, query, rows, keys, cols, values[rows, cols]))
        for (radius, per_row), sure, undecided in zip(radii, inside, unsure, strict=True):
            pick = undecided[rows, cols]
            r, c = rows[pick], cols[pick]
            limit = kernel.to_distance(radius[r] if per_row else radius[c])
            sure[r, c] = distance[pick] < limit
    return inside


def ball_tests(real: RowSource, fake: RowSource, real_radii: dict[int, torch.Tensor], fake_radius: torch.Tensor,
               k_pr: int, k_dc: int, kernel: Kernel, plan: KnnPlan) -> BallTests:
    """Every ball test of P/R/D/C, real rows as queries (streamed in passes), fake rows as keys.

    ``real_radii``: {k: (n_real,)} and ``fake_radius``: (n_fake,) canonical radii in kernel value space
    (:func:`knn_radii`).
    """
    device = plan.device
    fake_in_real_pr = torch.zeros(len(fake), dtype=torch.bool, device=device)
    fake_count_dc = torch.zeros(len(fake), dtype=torch.int64, device=device)
    real_in_fake_pr = torch.zeros(len(real), dtype=torch.bool, device=device)
    real_covered_dc = torch.zeros(len(real), dtype=torch.bool, device=device)
    whole_fake = fake.to_device(0, len(fake), kernel, device) if len(fake) <= plan.chunk_rows else None
    for p0 in range(0, len(real), plan.chunk_rows):
        held = real.to_device(p0, min(p0 + plan.chunk_rows, len(real)), kernel, device)
        for c0 in range(0, len(fake), plan.chunk_rows):
            c1 = min(c0 + plan.chunk_rows, len(fake))
            keys = whole_fake if whole_fake is not None else fake.to_device(c0, c1, kernel, device)
            for q0 in range(0, len(held), plan.block_rows):
                q1 = min(q0 + plan.block_rows, len(held))
                query = held.rows(q0, q1)
                g0, g1 = query.start, query.start + len(query)
                values = kernel.values(query, keys)
                radii = [(real_radii[k_pr][g0:g1], True), (fake_radius[c0:c1], False)]
                if k_dc != k_pr:
                    radii.append((real_radii[k_dc][g0:g1], True))
                in_real_pr, in_fake_pr, *rest = _inside(kernel, plan, values, query, keys, radii)
                in_real_dc = rest[0] if rest else in_real_pr
                fake_in_real_pr[c0:c1] |= in_real_pr.any(dim=0)
                fake_count_dc[c0:c1] += in_real_dc.sum(dim=0)
                real_covered_dc[g0:g1] |= in_real_dc.any(dim=1)
                real_in_fake_pr[g0:g1] |= in_fake_pr.any(dim=1)
                del values
            del keys
        del held
    return BallTests(fake_in_real_pr=fake_in_real_pr.cpu().numpy(), real_in_fake_pr=real_in_fake_pr.cpu().numpy(),
                     fake_count_dc=fake_count_dc.cpu().numpy(), real_covered_dc=real_covered_dc.cpu().numpy())


def make_kernel(dim: int, precision: str, device: torch.device, centre_from: RowSource | None) -> Kernel:
    """The kernel for d = ``dim``: :class:`LowDimKernel` up to LOW_DIM_MAX, else a :class:`GramKernel` filtering
    in ``precision`` (resolved), centred on the mean of ``centre_from`` for float32 / TF32 filters."""
    if dim <= LOW_DIM_MAX:
        return LowDimKernel()
    resolved = resolve_precision(precision, device)
    centre = centre_from.mean() if centre_from is not None and resolved != "float64" else None
    return GramKernel(resolved, dim, device, centre)

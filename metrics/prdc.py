"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020) on k-NN balls.

Definitions, exactly as ``prdc.compute_prdc`` (NAVER, v0.2) but with separate k for P/R and D/C:

* ``r_k(x)`` = distance from x to its k-th nearest neighbour in its own set, the point itself excluded. As in
  prdc it is the (k+1)-th smallest distance of x to all points of its set, x included at distance 0, so exact
  duplicates of x count as neighbours at distance 0.
* precision = fraction of fake y with ``d(x, y) < r_kpr(x)`` for at least one real x;
* recall    = fraction of real x with ``d(x, y) < r_kpr(y)`` for at least one fake y (radii from the fake set);
* density   = ``1 / (k_dc * n_fake) * #{(x, y) : d(x, y) < r_kdc(x)}`` (x real, y fake);
* coverage  = fraction of real x with ``min_y d(x, y) < r_kdc(x)``.

All comparisons are strict ``<`` as in prdc (the original P/R paper's ``<=`` differs only on exact ties).

Nothing of size n x n is ever built, and neither set has to fit in memory. Two exact backends compute the same
numbers:

* ``"brute"`` (:mod:`metrics.knn`): both sets streamed through ``device`` in blocks of ``chunk_size`` query rows
  against key chunks of ``key_chunk_size`` rows, reading the sets in chunks (arrays, ``numpy.memmap`` or
  :class:`metrics.store.ShardedArray`: a 1.28M x 2048 reference is never loaded whole). Distances are filtered in
  ``precision`` (float64, float32 or TF32) and every decision the filter cannot certify is recomputed with the
  canonical float64 formula (:mod:`metrics.knn_kernels`), so results do not depend on the chunk sizes, the
  precision or the device.
* ``"tree"`` (d <= 8, CPU): ``scipy.spatial.cKDTree`` proposes candidates (k+1+slack nearest neighbours; balls
  with radius inflated by 1e-9 relative), then every candidate distance is recomputed with the *same*
  elementwise float64 formula the brute backend uses in low dimension and the same strict tests are applied,
  so both backends give identical answers, ties included. Memory grows with the number of candidate pairs
  per batch of ``chunk_size`` balls: about density * k_dc * chunk_size for typical data, at most
  chunk_size * n (each pair costs ~60 bytes as Python lists and index arrays).

``"auto"`` picks ``"tree"`` for d <= 8 and ``"brute"`` otherwise. The distance is the canonical one of
:mod:`metrics.knn_kernels`: the direct formula for d <= 8, else the Gram form ``sqrt(|x|^2 + |y|^2 - 2 x.y)`` in
float64 as scikit-learn (and so ``prdc``) computes it, with its dot products summed in a fixed order.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

from metrics import keys
from metrics._validate import (
    FULL_REFERENCE,
    as_features,
    check_device,
    check_feature_array,
    check_positive_int,
    check_reference,
    check_same_dim,
    reads_on_demand,
)
from metrics.knn import BallTests, RowSource, ball_tests, knn_radii, make_kernel, make_plan
from metrics.knn_kernels import LOW_DIM_MAX, PRECISIONS, direct_dist

_LOG = logging.getLogger(__name__)
# Relative margin between the KD-tree's own distance arithmetic and ours (both are within a few ulp).
_TREE_REL_MARGIN = 1e-9
# Extra neighbours the KD-tree returns beyond k+1, so near-ties at the k-th neighbour are resolved exactly.
_TREE_KNN_SLACK = 4


@dataclass(frozen=True)
class KnnSettings:
    """How a backend runs (never what it returns): ``chunk_size`` query rows per block (KD-tree: balls per batch),
    ``key_chunk_size`` key rows per block and rows held per pass (0 = from free memory), torch ``device``, filter
    ``precision`` (one of :data:`metrics.knn_kernels.PRECISIONS`)."""

    chunk_size: int = 1024
    key_chunk_size: int = 0
    device: torch.device = torch.device("cpu")
    precision: str = "auto"


# ----------------------------------------------------------------------------------------------------------------
# Brute-force backend: streamed blocks with torch (metrics.knn).


class _RadiiCache:
    """The reference set's k-NN radii of the last call, kept for the next call on the same reference object.

    They depend on the reference rows alone (their float64 values are canonical whatever the chunking, filter or
    fake set), yet are the costly part: 1.28M x 1.28M pairs for ImageNet against 50K x 1.28M for the ball tests.
    A bootstrap resamples the generated rows against the same reference object, so each resample would recompute
    them. One entry (the radii of one reference set: 1.28M x 2 float64 = 20 MB); the object is held by a weak
    reference and compared by identity, so a new or freed array is never served old radii. The caller must not
    change a reference array in place between calls (no stage does: features are read-only inputs)."""

    def __init__(self) -> None:
        self._entry: tuple[Any, tuple[int, ...], torch.device, dict[int, torch.Tensor]] | None = None

    def get(self, real: Any, ks: tuple[int, ...], device: torch.device) -> dict[int, torch.Tensor] | None:
        if self._entry is None:
            return None
        ref, cached_ks, cached_device, radii = self._entry
        return radii if ref() is real and cached_ks == ks and cached_device == device else None

    def put(self, real: Any, ks: tuple[int, ...], device: torch.device, radii: dict[int, torch.Tensor]) -> None:
        try:
            self._entry = (weakref.ref(real), ks, device, radii)
        except TypeError:  # an object without weak references: not cached
            self._entry = None


_REAL_RADII = _RadiiCache()


def _ball_tests_brute(real: Any, fake: Any, k_pr: int, k_dc: int, settings: KnnSettings) -> BallTests:
    """All ball tests by streamed brute force on ``settings.device`` (any readable (n, d) inputs). Logs the plan
    and each phase's seconds at INFO (``extra``: ``phase``, ``seconds``), for the logs of long runs."""
    real_rows = RowSource(real, "real", min_rows=max(k_pr, k_dc) + 1)
    fake_rows = RowSource(fake, "fake", min_rows=k_pr + 1)
    kernel = make_kernel(real_rows.dim, settings.precision, settings.device, centre_from=fake_rows)
    plan = make_plan(kernel, settings.device, real_rows.dim, max(real_rows.dtype.itemsize, fake_rows.dtype.itemsize),
                     max(len(real_rows), len(fake_rows)), settings.chunk_size, settings.key_chunk_size)
    _LOG.info("P/R/D/C: %d real x %d fake rows of d=%d on %s, filter %s, blocks of %d x %d rows", len(real_rows),
              len(fake_rows), real_rows.dim, plan.device, getattr(kernel, "precision", "exact"), plan.block_rows,
              plan.chunk_rows)
    clock = _PhaseClock(plan.device)
    ks = tuple(sorted({k_pr, k_dc}))
    real_radii = _REAL_RADII.get(real, ks, plan.device)
    if real_radii is None:
        real_radii = knn_radii(real_rows, ks, kernel, plan)
        _REAL_RADII.put(real, ks, plan.device, real_radii)
    clock.done("real_radii")
    fake_radius = knn_radii(fake_rows, (k_pr,), kernel, plan)[k_pr]
    clock.done("fake_radii")
    tests = ball_tests(real_rows, fake_rows, real_radii, fake_radius, k_pr, k_dc, kernel, plan)
    clock.done("ball_tests")
    return tests


class _PhaseClock:
    """Seconds per phase, logged at INFO (the device is synchronised first, only when INFO is on)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.last = device, time.perf_counter()

    def done(self, phase: str) -> None:
        if not _LOG.isEnabledFor(logging.INFO):
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        _LOG.info("P/R/D/C: %s in %.2f s", phase, now - self.last, extra={"phase": phase, "seconds": now - self.last})
        self.last = now


# ----------------------------------------------------------------------------------------------------------------
# KD-tree backend (low dimension): tree proposes candidates, exact tests use direct_dist.


def _knn_radii_tree(points: np.ndarray, tree: cKDTree, ks: tuple[int, ...], chunk_size: int) -> dict[int, np.ndarray]:
    """Same radii as the brute backend's (:func:`metrics.knn.knn_radii`, bit-identical), from KD-tree candidates.

    The tree returns the m nearest neighbours by its own arithmetic; we recompute their distances with
    :func:`direct_dist` and take the (k+1)-th smallest. That is exact unless a point the tree left out could
    be closer (by our arithmetic) than that value, which is only possible when the tree's m-th distance is
    within rounding of it: those rows are re-queried with twice as many neighbours.
    """
    n = points.shape[0]
    k_max = max(ks)
    out = {k: np.empty(n) for k in ks}
    points_t = torch.from_numpy(points)
    for start in range(0, n, chunk_size):
        pending = np.arange(start, min(start + chunk_size, n))
        num_neighbours = min(k_max + 1 + _TREE_KNN_SLACK, n)
        while pending.size:
            tree_dist, index = tree.query(points[pending], k=num_neighbours, workers=-1)  # (p, m) each
            tree_dist, index = tree_dist.reshape(len(pending), -1), index.reshape(len(pending), -1)
            ours = direct_dist(points_t[pending][:, None, :], points_t[index]).numpy()  # (p, m)
            ours.sort(axis=1)
            exact = (num_neighbours == n) | (tree_dist[:, -1] * (1.0 - _TREE_REL_MARGIN) >= ours[:, k_max])
            for k in ks:
                out[k][pending[exact]] = ours[exact, k]
            pending = pending[~exact]
            num_neighbours = min(2 * num_neighbours, n)
    return out


def _strict_ball_pairs(
    centres: np.ndarray,
    radii: np.ndarray,
    others: np.ndarray,
    others_tree: cKDTree,
    chunk_size: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs (i, j) with ``d(centres[i], others[j]) < radii[i]`` (strict, our arithmetic), one chunk at a time.

    Args:
        centres: (a, d). radii: (a,). others: (b, d) with its KD-tree.
    Yields:
        ``(centre_index, other_index)`` per chunk of ``chunk_size`` centres, two int64 arrays of equal length.
    """
    centres_t, others_t = torch.from_numpy(centres), torch.from_numpy(others)
    for start in range(0, centres.shape[0], chunk_size):
        stop = min(start + chunk_size, centres.shape[0])
        candidates = others_tree.query_ball_point(
            centres[start:stop], r=radii[start:stop] * (1.0 + _TREE_REL_MARGIN), workers=-1, return_sorted=False
        )
        counts = np.fromiter((len(c) for c in candidates), dtype=np.int64, count=stop - start)
        if counts.sum() == 0:
            continue
        centre_idx = np.repeat(np.arange(start, stop), counts)
        other_idx = np.concatenate([np.asarray(c, dtype=np.int64) for c in candidates])
        dist = direct_dist(centres_t[centre_idx], others_t[other_idx]).numpy()
        keep = dist < radii[centre_idx]
        yield centre_idx[keep], other_idx[keep]


def _ball_tests_tree(real: Any, fake: Any, k_pr: int, k_dc: int, settings: KnnSettings) -> BallTests:
    """All ball tests with KD-tree candidates (CPU, inputs loaded as float64; ``settings.device`` is ignored)."""
    real = as_features(real, "real", min_rows=max(k_pr, k_dc) + 1)
    fake = as_features(fake, "fake", min_rows=k_pr + 1)
    chunk_size = settings.chunk_size
    real_tree, fake_tree = cKDTree(real), cKDTree(fake)
    real_radii = _knn_radii_tree(real, real_tree, tuple(sorted({k_pr, k_dc})), chunk_size)
    fake_radius_pr = _knn_radii_tree(fake, fake_tree, (k_pr,), chunk_size)[k_pr]
    tests = BallTests(
        fake_in_real_pr=np.zeros(fake.shape[0], dtype=bool),
        real_in_fake_pr=np.zeros(real.shape[0], dtype=bool),
        fake_count_dc=np.zeros(fake.shape[0], dtype=np.int64),
        real_covered_dc=np.zeros(real.shape[0], dtype=bool),
    )
    for real_idx, fake_idx in _strict_ball_pairs(real, real_radii[k_pr], fake, fake_tree, chunk_size):
        tests.fake_in_real_pr[fake_idx] = True
        if k_dc == k_pr:
            tests.fake_count_dc += np.bincount(fake_idx, minlength=fake.shape[0])
            tests.real_covered_dc[real_idx] = True
    if k_dc != k_pr:
        for real_idx, fake_idx in _strict_ball_pairs(real, real_radii[k_dc], fake, fake_tree, chunk_size):
            tests.fake_count_dc += np.bincount(fake_idx, minlength=fake.shape[0])
            tests.real_covered_dc[real_idx] = True
    for _, real_idx in _strict_ball_pairs(fake, fake_radius_pr, real, real_tree, chunk_size):
        tests.real_in_fake_pr[real_idx] = True
    return tests


BACKENDS: dict[str, Callable[..., BallTests]] = {"brute": _ball_tests_brute, "tree": _ball_tests_tree}
"""Exact ball-test backends by name; ``method="auto"`` in :func:`prdc` resolves to one of them."""


def resolve_method(method: str, feature_dim: int) -> str:
    """Backend name for ``method`` ("auto", "tree" or "brute") and feature dimension d."""
    if method == "auto":
        return "tree" if feature_dim <= LOW_DIM_MAX else "brute"
    if method not in BACKENDS:
        raise ValueError(f"method={method!r}; expected one of 'auto', {', '.join(map(repr, BACKENDS))}")
    if method == "tree" and feature_dim > LOW_DIM_MAX:
        raise ValueError(
            f"method='tree' needs feature dimension d <= {LOW_DIM_MAX}, got d={feature_dim}; use 'brute' or 'auto'"
        )
    return method


def reference_rows(num_rows: int, reference: int | str, seed: int) -> np.ndarray | None:
    """The reference rows P/R/D/C uses: None for "full", else N distinct row indices of ``num_rows``, drawn by
    ``numpy.random.default_rng(seed)`` without replacement and sorted (so they are read in file order).

    Raises ValueError when N exceeds ``num_rows``.
    """
    reference = check_reference(reference)
    if reference == FULL_REFERENCE:
        return None
    if reference > num_rows:
        raise ValueError(f"prdc_reference={reference} exceeds the {num_rows} reference rows; use "
                         f"{FULL_REFERENCE!r} or an integer <= {num_rows}")
    return np.sort(np.random.default_rng(seed).choice(num_rows, size=reference, replace=False)).astype(np.int64)


def prdc(
    real: Any,
    fake: Any,
    k_pr: int = 3,
    k_dc: int = 5,
    chunk_size: int = 1024,
    device: str | torch.device = "cpu",
    method: str = "auto",
    *,
    key_chunk_size: int = 0,
    precision: str = "auto",
) -> dict[str, float]:
    """Precision, recall (k = ``k_pr``), density and coverage (k = ``k_dc``) of ``fake`` against ``real``.

    With ``k_pr == k_dc == k`` the result equals ``prdc.compute_prdc(real, fake, nearest_k=k)`` (see the module
    docstring for the definitions and for memory use).

    Args:
        real: (n_real, d) reference features, n_real > max(k_pr, k_dc): an array, a ``numpy.memmap`` or a
            :class:`metrics.store.ShardedArray` (the brute backend reads it in chunks; float32 stays float32).
        fake: (n_fake, d) generated features, n_fake > k_pr, same kinds.
        k_pr: neighbour count for the precision/recall radii (Kynkäänniemi et al. use 3).
        k_dc: neighbour count for the density/coverage radii (Naeem et al.'s README uses 5).
        chunk_size: query rows per distance block (brute) or per KD-tree batch (tree); bounds memory.
        device: torch device for the brute backend ("cpu", "cuda", ...).
        method: "auto" (tree for d <= 8, else brute), "tree" or "brute"; all give identical numbers.
        key_chunk_size: brute: key rows per distance block, and rows of one set held on the device at once
            (0 = as many as half the free device memory holds, :func:`metrics.knn.make_plan`).
        precision: brute, d > 8: the distance filter, "auto" (TF32 on CUDA tensor cores, float32 elsewhere),
            "float64", "float32" or "tf32"; the answer is the canonical float64 one in every case.
    Returns:
        ``{keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE}`` -> float; precision, recall and coverage in
        [0, 1], density in [0, n_real / k_dc].
    """
    k_pr = check_positive_int(k_pr, "k_pr")
    k_dc = check_positive_int(k_dc, "k_dc")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    key_chunk_size = check_positive_int(key_chunk_size, "key_chunk_size", minimum=0)
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {', '.join(map(repr, PRECISIONS))}")
    settings = KnnSettings(chunk_size, key_chunk_size, check_device(device), precision)
    real = real if reads_on_demand(real) else np.asarray(real)
    fake = fake if reads_on_demand(fake) else np.asarray(fake)
    check_feature_array(real, "real", min_rows=max(k_pr, k_dc) + 1)
    check_feature_array(fake, "fake", min_rows=k_pr + 1)
    check_same_dim(real, fake)
    tests = BACKENDS[resolve_method(method, real.shape[1])](real, fake, k_pr, k_dc, settings)
    return {
        keys.PRECISION: float(tests.fake_in_real_pr.mean()),
        keys.RECALL: float(tests.real_in_fake_pr.mean()),
        keys.DENSITY: float(tests.fake_count_dc.sum() / (k_dc * tests.fake_in_real_pr.shape[0])),
        keys.COVERAGE: float(tests.real_covered_dc.mean()),
    }

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

Nothing of size n x n is ever built. Two exact backends compute the same numbers:

* ``"brute"``: distance blocks of ``chunk_size`` query rows against a whole set, with torch on ``device``
  (float64), keeping only the k smallest per row (radii) or boolean reductions (ball tests). Peak memory is
  about ``3 * chunk_size * max(n_real, n_fake) * 8`` bytes.
* ``"tree"`` (d <= 8, CPU): ``scipy.spatial.cKDTree`` proposes candidates (k+1+slack nearest neighbours; balls
  with radius inflated by 1e-9 relative), then every candidate distance is recomputed with the *same*
  elementwise float64 formula the brute backend uses in low dimension and the same strict tests are applied,
  so both backends give identical answers, ties included. Memory grows with the number of candidate pairs
  per batch of ``chunk_size`` balls: about density * k_dc * chunk_size for typical data, at most
  chunk_size * n (each pair costs ~60 bytes as Python lists and index arrays).

``"auto"`` picks ``"tree"`` for d <= 8 and ``"brute"`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from metrics import keys
from metrics._validate import as_features, check_device, check_positive_int, check_same_dim

# Up to this dimension distances are computed as sqrt(sum_j (x_j - y_j)^2), accumulated one coordinate at a
# time (elementwise IEEE ops: bit-identical on CPU and GPU, and between the two backends); above it through
# the Gram expansion ||x||^2 + ||y||^2 - 2 x.y with a matrix product, like scikit-learn (which prdc uses).
LOW_DIM_MAX = 8
# Relative margin between the KD-tree's own distance arithmetic and ours (both are within a few ulp).
_TREE_REL_MARGIN = 1e-9
# Extra neighbours the KD-tree returns beyond k+1, so near-ties at the k-th neighbour are resolved exactly.
_TREE_KNN_SLACK = 4


def _pairwise_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances, float64.

    Args:
        x: (a, d) query points. y: (b, d) reference points. Same dtype and device.
    Returns:
        (a, b) tensor of distances ``||x_i - y_j||``.
    """
    if x.shape[1] <= LOW_DIM_MAX:
        return _direct_dist(x[:, None, :], y[None, :, :])
    sq = x.square().sum(1)[:, None] + y.square().sum(1)[None, :] - 2.0 * (x @ y.T)
    return sq.clamp_min_(0.0).sqrt_()


def _direct_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sqrt(sum_j (x_j - y_j)^2)`` over the last axis of broadcastable x, y, one coordinate at a time.

    Used for the whole low-dimensional path (blocks and candidate pairs), so equal inputs give bit-equal output.
    """
    acc = (x[..., 0] - y[..., 0]).square_()
    for j in range(1, x.shape[-1]):
        acc.add_((x[..., j] - y[..., j]).square_())
    return acc.sqrt_()


@dataclass
class _BallTests:
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


# ----------------------------------------------------------------------------------------------------------------
# Brute-force backend: chunked distance blocks with torch.


def _knn_radii_brute(points: torch.Tensor, ks: tuple[int, ...], chunk_size: int) -> dict[int, torch.Tensor]:
    """Radii r_k for each k in ``ks``: (k+1)-th smallest distance to the set, self included at exactly 0.

    Args:
        points: (n, d) float64 tensor. ks: neighbour counts, each < n.
    Returns:
        {k: (n,) float64 tensor}.
    """
    n = points.shape[0]
    k_max = max(ks)
    out = {k: torch.empty(n, dtype=points.dtype, device=points.device) for k in ks}
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        block = _pairwise_dist(points[start:stop], points)  # (c, n)
        rows = torch.arange(stop - start, device=points.device)
        block[rows, rows + start] = 0.0  # the Gram formula leaves ~1e-8 on the diagonal; make self exactly 0
        smallest = torch.topk(block, k_max + 1, dim=1, largest=False, sorted=True).values  # (c, k_max + 1)
        for k in ks:
            out[k][start:stop] = smallest[:, k]
    return out


def _ball_tests_brute(
    real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int, chunk_size: int, device: str | torch.device
) -> _BallTests:
    """All ball tests by chunked brute force on ``device``; see module docstring for memory."""
    real_t = torch.as_tensor(real, dtype=torch.float64, device=device)
    fake_t = torch.as_tensor(fake, dtype=torch.float64, device=device)
    real_radii = _knn_radii_brute(real_t, tuple(sorted({k_pr, k_dc})), chunk_size)
    fake_radius_pr = _knn_radii_brute(fake_t, (k_pr,), chunk_size)[k_pr]

    fake_in_real_pr = torch.zeros(fake_t.shape[0], dtype=torch.bool, device=device)
    fake_count_dc = torch.zeros(fake_t.shape[0], dtype=torch.int64, device=device)
    real_in_fake_pr = torch.zeros(real_t.shape[0], dtype=torch.bool, device=device)
    real_covered_dc = torch.zeros(real_t.shape[0], dtype=torch.bool, device=device)
    for start in range(0, real_t.shape[0], chunk_size):
        stop = min(start + chunk_size, real_t.shape[0])
        block = _pairwise_dist(real_t[start:stop], fake_t)  # (c, n_fake): d(real x, fake y)
        inside_pr = block < real_radii[k_pr][start:stop, None]
        fake_in_real_pr |= inside_pr.any(dim=0)
        inside_dc = inside_pr if k_dc == k_pr else block < real_radii[k_dc][start:stop, None]
        fake_count_dc += inside_dc.sum(dim=0)
        real_covered_dc[start:stop] = inside_dc.any(dim=1)
        real_in_fake_pr[start:stop] = (block < fake_radius_pr[None, :]).any(dim=1)
    return _BallTests(
        fake_in_real_pr=fake_in_real_pr.cpu().numpy(),
        real_in_fake_pr=real_in_fake_pr.cpu().numpy(),
        fake_count_dc=fake_count_dc.cpu().numpy(),
        real_covered_dc=real_covered_dc.cpu().numpy(),
    )


# ----------------------------------------------------------------------------------------------------------------
# KD-tree backend (low dimension): tree proposes candidates, exact tests use _direct_dist.


def _knn_radii_tree(points: np.ndarray, tree: cKDTree, ks: tuple[int, ...], chunk_size: int) -> dict[int, np.ndarray]:
    """Same radii as :func:`_knn_radii_brute` (bit-identical), from KD-tree candidates.

    The tree returns the m nearest neighbours by its own arithmetic; we recompute their distances with
    :func:`_direct_dist` and take the (k+1)-th smallest. That is exact unless a point the tree left out could
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
            ours = _direct_dist(points_t[pending][:, None, :], points_t[index]).numpy()  # (p, m)
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
        dist = _direct_dist(centres_t[centre_idx], others_t[other_idx]).numpy()
        keep = dist < radii[centre_idx]
        yield centre_idx[keep], other_idx[keep]


def _ball_tests_tree(
    real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int, chunk_size: int, device: str | torch.device
) -> _BallTests:
    """All ball tests with KD-tree candidates (CPU only; ``device`` is ignored)."""
    del device
    real_tree, fake_tree = cKDTree(real), cKDTree(fake)
    real_radii = _knn_radii_tree(real, real_tree, tuple(sorted({k_pr, k_dc})), chunk_size)
    fake_radius_pr = _knn_radii_tree(fake, fake_tree, (k_pr,), chunk_size)[k_pr]
    tests = _BallTests(
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


BACKENDS: dict[str, Callable[..., _BallTests]] = {"brute": _ball_tests_brute, "tree": _ball_tests_tree}
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


def prdc(
    real: np.ndarray,
    fake: np.ndarray,
    k_pr: int = 3,
    k_dc: int = 5,
    chunk_size: int = 1024,
    device: str | torch.device = "cpu",
    method: str = "auto",
) -> dict[str, float]:
    """Precision, recall (k = ``k_pr``), density and coverage (k = ``k_dc``) of ``fake`` against ``real``.

    With ``k_pr == k_dc == k`` the result equals ``prdc.compute_prdc(real, fake, nearest_k=k)`` (see the module
    docstring for the definitions and for memory use).

    Args:
        real: (n_real, d) reference features, n_real > max(k_pr, k_dc).
        fake: (n_fake, d) generated features, n_fake > k_pr.
        k_pr: neighbour count for the precision/recall radii (Kynkäänniemi et al. use 3).
        k_dc: neighbour count for the density/coverage radii (Naeem et al.'s README uses 5).
        chunk_size: query rows per distance block (brute) or per KD-tree batch (tree); bounds memory.
        device: torch device for the brute backend ("cpu", "cuda", ...).
        method: "auto" (tree for d <= 8, else brute), "tree" or "brute"; all give identical numbers.
    Returns:
        ``{keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE}`` -> float; precision, recall and coverage in
        [0, 1], density in [0, n_real / k_dc].
    """
    k_pr = check_positive_int(k_pr, "k_pr")
    k_dc = check_positive_int(k_dc, "k_dc")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    device = check_device(device)
    real = as_features(real, "real", min_rows=max(k_pr, k_dc) + 1)
    fake = as_features(fake, "fake", min_rows=k_pr + 1)
    check_same_dim(real, fake)
    backend = BACKENDS[resolve_method(method, real.shape[1])]
    tests = backend(real, fake, k_pr, k_dc, chunk_size, device)
    return {
        keys.PRECISION: float(tests.fake_in_real_pr.mean()),
        keys.RECALL: float(tests.real_in_fake_pr.mean()),
        keys.DENSITY: float(tests.fake_count_dc.sum() / (k_dc * fake.shape[0])),
        keys.COVERAGE: float(tests.real_covered_dc.mean()),
    }

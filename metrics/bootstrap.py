"""Percentile-bootstrap confidence intervals of set metrics, resampling the generated set.

Resample r (r = 0 .. resamples-1) takes the generated rows ``indices[r]`` = the r-th draw of
``numpy.random.default_rng(seed).integers(0, n, size=n)`` (n rows with replacement; the reference set is kept
fixed; stratified by condition when labels are given, see :func:`bootstrap_indices`), recomputes every metric,
and the interval is ``numpy.percentile(values, [2.5, 97.5])`` (linear interpolation) over the resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

from metrics._validate import check_positive_int

CI_LEVEL = 95.0


def bootstrap_indices(n: int, resamples: int, seed: int, strata: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield ``resamples`` int64 arrays of shape (n,), rows drawn with replacement from range(n).

    With ``strata`` ((n,) condition ids) the draw is stratified: for each stratum in sorted id order, its rows
    P (ascending) are replaced by ``P[rng.integers(0, len(P), size=len(P))]``, so every condition keeps its
    sample count (the protocol fixes it, and per-condition metrics such as off-diagonal MSS need >= 2 rows).
    """
    n = check_positive_int(n, "n")
    resamples = check_positive_int(resamples, "bootstrap_resamples")
    rng = np.random.default_rng(seed)
    groups = None
    if strata is not None:
        strata = np.asarray(strata)
        if strata.shape != (n,):
            raise ValueError(f"strata: shape {strata.shape}; expected ({n},), one condition id per row")
        groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    for _ in range(resamples):
        if groups is None:
            yield rng.integers(0, n, size=n)
            continue
        rows = np.empty(n, dtype=np.int64)
        for members in groups:
            rows[members] = members[rng.integers(0, len(members), size=len(members))]
        yield rows


def percentile_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """(low, high) central percentile interval of a 1-D sample of metric values."""
    tail = (100.0 - level) / 2.0
    low, high = np.percentile(np.asarray(values, dtype=np.float64), [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(metrics_of_rows: Callable[[np.ndarray], Mapping[str, float]], n: int, resamples: int, seed: int,
                 names: tuple[str, ...] | None = None, strata: np.ndarray | None = None
                 ) -> dict[str, tuple[float, float]]:
    """95% intervals of the metrics that ``metrics_of_rows(rows)`` returns for resampled generated rows.

    Args:
        metrics_of_rows: maps an (n,) int64 row-index array of the generated set to {metric key: value}.
        n: number of generated rows. resamples: number of bootstrap resamples (>= 1). seed: numpy seed.
        names: metric keys to report (default: every key of the first resample).
        strata: optional (n,) condition ids for a stratified bootstrap (see :func:`bootstrap_indices`).
    Returns:
        {metric key: (low, high)}.
    """
    draws: dict[str, list[float]] = {}
    for rows in bootstrap_indices(n, resamples, seed, strata):
        values = metrics_of_rows(rows)
        for name in names if names is not None else values:
            draws.setdefault(name, []).append(float(values[name]))
    return {name: percentile_interval(np.asarray(v)) for name, v in draws.items()}

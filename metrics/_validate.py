"""Input checks shared by the metric modules; every failure is a ValueError naming the value and what is accepted."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import numpy as np
import torch


def reads_on_demand(features: object) -> bool:
    """Whether ``features`` is read row block by row block rather than held: a :class:`metrics.store.ShardedArray`
    (or any array-like marked ``reads_on_demand``) or a ``numpy.memmap``. Such inputs are checked by
    :func:`check_feature_array` and read in chunks by the metrics that stream (P/R/D/C, FD, KID)."""
    return bool(getattr(features, "reads_on_demand", False)) or isinstance(features, np.memmap)


def check_feature_array(features: object, name: str, *, min_rows: int = 1) -> object:
    """``features`` itself if its dtype and shape are those of a real (n, d) feature array with at least
    ``min_rows`` rows and one column, else ValueError naming what is wrong. Reads no values: finiteness is checked
    by whoever reads them (:func:`as_features`, or chunk by chunk)."""
    dtype, shape = np.dtype(features.dtype), tuple(features.shape)
    if dtype.kind == "O" or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise ValueError(f"{name}: dtype {dtype} is not numeric; expected a real (n, d) feature array")
    if np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{name}: complex dtype {dtype}; expected a real (n, d) feature array")
    if len(shape) != 2:
        raise ValueError(f"{name}: shape {shape} has {len(shape)} dimension(s); expected a 2-D (n, d) array")
    if shape[1] == 0:
        raise ValueError(f"{name}: shape {shape} has no feature columns; expected d >= 1")
    if shape[0] < min_rows:
        raise ValueError(f"{name}: shape {shape} has {shape[0]} row(s); at least {min_rows} required")
    return features


def check_finite(array: np.ndarray, name: str, first_row: int = 0) -> None:
    """ValueError naming the first row (counted from ``first_row``) of (n, d) ``array`` holding NaN or inf."""
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        kind = "NaN" if np.isnan(array).any() else "inf"
        raise ValueError(
            f"{name}: {bad_rows.size} row(s) contain {kind} values (first bad row {first_row + bad_rows[0]}); "
            "all features must be finite"
        )


#: ids of float64 feature arrays already checked finite, for the metrics run within :func:`checked_features`
_CHECKED: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("checked_features", default=frozenset())


@contextlib.contextmanager
def checked_features(*arrays: object) -> Iterator[None]:
    """Within the block, :func:`as_features` takes these float64 (n, d) arrays (ones it returned: finite) without
    scanning their values again; their shape is still checked. ``compute_all`` checks its inputs once and every
    metric it runs would otherwise rescan them (50K vs 50K Inception features on one H100: 20 scans, 0.79 s of the
    4.1 s of metric work; benchmarks/logs/feature_compile_h100_pinned_feed.log). The caller holds the arrays through
    the block, so no other object can take their ids."""
    ids = {id(a) for a in arrays if isinstance(a, np.ndarray) and a.dtype == np.float64}
    token = _CHECKED.set(_CHECKED.get() | ids)
    try:
        yield
    finally:
        _CHECKED.reset(token)


def is_checked(features: object) -> bool:
    """Whether ``features`` is an array :func:`checked_features` vouches for in this context."""
    return isinstance(features, np.ndarray) and features.dtype == np.float64 and id(features) in _CHECKED.get()


def as_features(features: object, name: str, *, min_rows: int = 1) -> np.ndarray:
    """Return ``features`` as a float64 array of shape (n, d), or raise ValueError.

    Accepts any array-like of real numbers with exactly two dimensions, at least ``min_rows`` rows and at least
    one column, and only finite values (not rescanned for an array of :func:`checked_features`).
    """
    if is_checked(features):
        return check_feature_array(features, name, min_rows=min_rows)
    array = check_feature_array(np.asarray(features), name, min_rows=min_rows)
    array = np.asarray(array, dtype=np.float64)
    check_finite(array, name)
    return array


def check_same_dim(real: np.ndarray, fake: np.ndarray, real_name: str = "real", fake_name: str = "fake") -> None:
    """Raise ValueError unless the two (n, d) arrays have the same feature dimension d."""
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {real_name} has d={real.shape[1]}, {fake_name} has d={fake.shape[1]}; "
            "both must have the same feature dimension (same feature network)"
        )


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as int if it is an integer >= ``minimum`` (bool rejected), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}")
    return int(value)


def check_device(device: object) -> torch.device:
    """Return ``device`` as a torch.device if it names one that exists here, else raise ValueError."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a torch device; expected e.g. 'cpu', 'cuda', 'cuda:1'") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index is not None and resolved.index >= count):
            raise ValueError(f"device={device!r}: {count} CUDA device(s) available here; use 'cpu' or a valid index")
    return resolved


def condition_groups(labels: object, n: int) -> tuple[list[object], list[np.ndarray]]:
    """Rows of each condition in one stable sort (not one scan of ``labels`` per condition).

    Args:
        labels: (n,) condition id per row (integers, booleans or strings; floats are refused).
        n: the number of feature rows.
    Returns:
        (keys, rows): the distinct ids in sorted order as Python scalars, and for each the int64 indices of its rows
        in ascending order.
    """
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels: shape {labels.shape}; expected ({n},), one condition id per feature row")
    if labels.dtype.kind not in "iubUS":  # floats would make every row its own condition (Vendi 1, MSS 1)
        raise ValueError(f"labels: dtype {labels.dtype}; expected integer (or string) condition ids, one per row "
                         "(cast ids stored as floats with labels.astype(np.int64))")
    order = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[order], return_index=True)
    keys = [v.item() if hasattr(v, "item") else v for v in values]
    return keys, np.split(order, starts[1:])


def row_norms(x: np.ndarray, name: str) -> np.ndarray:
    """(n,) L2 norms of the rows of (n, d) ``x`` (no (n, d) temporary); ValueError naming the first all-zero row."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    zero_rows = np.flatnonzero(norms == 0)
    if zero_rows.size:
        raise ValueError(f"{name}: {zero_rows.size} row(s) are all zeros (first: row {zero_rows[0]}); cosine "
                         "similarity needs non-zero feature vectors")
    return norms


#: ``prdc_reference`` value for the whole reference set (the paper's protocol)
FULL_REFERENCE = "full"


def check_reference(value: object) -> int | str:
    """A ``prdc_reference`` value: "full" (the whole reference set) or an integer N >= 2 (a seeded subset of N
    reference rows), else ValueError naming it and what is accepted."""
    if value == FULL_REFERENCE:
        return FULL_REFERENCE
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
        raise ValueError(f"prdc_reference={value!r}; expected {FULL_REFERENCE!r} (the whole reference set) or an "
                         "integer N >= 2 (a seeded subset of N reference rows)")
    return int(value)


def check_order(q: float) -> float:
    """Return q as float if it is >= 0 or +inf (strings like "inf" accepted), else raise ValueError."""
    try:
        order = float(q)
    except (TypeError, ValueError):
        raise ValueError(f"q={q!r}; expected a number >= 0 or inf") from None
    if math.isnan(order) or order < 0:
        raise ValueError(f"q={q!r}; expected a number >= 0 or inf")
    return order

"""All set metrics of one generated feature set against one reference feature set, in one call.

:func:`compute_all` returns the values; :func:`compute_with_ci` adds percentile-bootstrap 95% intervals
(:mod:`metrics.bootstrap`) of every set metric, resampling the generated rows (and their labels and logits).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import torch

from metrics import keys
from metrics._validate import as_features, check_device, check_positive_int, check_same_dim
from metrics.bootstrap import bootstrap_ci
from metrics.frechet import fd_from_features
from metrics.inception_score import inception_score
from metrics.kid import kid
from metrics.mss import mss
from metrics.prdc import prdc
from metrics.vendi import check_order, vendi_per_condition, vendi_score

#: metric groups :func:`compute_all` can be restricted to (``metrics=``); None computes every applicable one
METRIC_GROUPS = ("fid", "prdc", "vendi", "mss", "kid", "is")


def check_metric_groups(metrics: Collection[str] | None) -> frozenset[str]:
    """The requested groups as a set (None = all), else ValueError naming the unknown ones."""
    if metrics is None:
        return frozenset(METRIC_GROUPS)
    unknown = sorted(set(metrics) - set(METRIC_GROUPS))
    if unknown or not metrics:
        raise ValueError(f"metrics={sorted(metrics)!r}; expected a non-empty subset of {list(METRIC_GROUPS)}")
    return frozenset(metrics)


def _check_rows(array: np.ndarray | None, n: int, name: str, ndim: int) -> np.ndarray | None:
    """``array`` as numpy with n rows and ``ndim`` dimensions (None passes through), else ValueError."""
    if array is None:
        return None
    array = np.asarray(array)
    if array.ndim != ndim or array.shape[0] != n:
        wanted = f"({n},)" if ndim == 1 else f"({n}, classes)"
        raise ValueError(f"{name}: shape {array.shape}; expected {wanted}, one row per fake row")
    return array


def compute_all(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    k_pr: int = 3,
    k_dc: int = 5,
    vendi_q: float = 1.0,
    labels_fake: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    chunk_size: int = 1024,
    logits_fake: np.ndarray | None = None,
    is_splits: int = 10,
    kid_subsets: int = 0,
    kid_subset_size: int = 1000,
    kid_seed: int = 2020,
    mss_include_diagonal: bool = True,
    metrics: Collection[str] | None = None,
) -> dict[str, float]:
    """FD, precision, recall, density, coverage and Vendi of ``fake`` against ``real`` (+ optional metrics).

    Args:
        real: (n_real, d) reference features, n_real > max(k_pr, k_dc) and >= 2.
        fake: (n_fake, d) generated features, same d, n_fake > k_pr and >= 2, no all-zero rows (Vendi).
        k_pr: k for precision/recall. k_dc: k for density/coverage.
        vendi_q: order of the Vendi score (1 = Shannon, ``math.inf`` allowed).
        labels_fake: optional (n_fake,) condition id per fake row; adds per-condition mean Vendi and MSS.
        device: torch device for the k-NN distance blocks, KID kernels and the float64 linear algebra of FD and
            whole-set Vendi. chunk_size: rows per distance block.
        logits_fake: optional (n_fake, classes) classifier logits; adds the Inception Score (``is_splits`` splits).
        kid_subsets: number of KID subsets (0 = no KID); kid_subset_size rows each; kid_seed as torch-fidelity.
        mss_include_diagonal: MSS averages the full similarity matrix (True, CADS code) or its off-diagonal.
        metrics: restrict to these groups of :data:`METRIC_GROUPS` (None = all that apply); "mss" needs labels,
            "is" needs logits, "kid" needs kid_subsets > 0 (ValueError otherwise).
    Returns:
        ``{keys.FD, keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE, keys.VENDI}`` -> float, plus
        ``keys.VENDI_PER_CONDITION`` and ``keys.MSS`` given labels, ``keys.INCEPTION_SCORE(_STD)`` given logits,
        ``keys.KID(_STD)`` when kid_subsets > 0. Vendi, MSS and IS are over the fake set only.
    Raises:
        ValueError: naming the bad input (non-2-D or empty arrays, NaN/inf, mismatched d, bad k or labels).
    """
    k_pr = check_positive_int(k_pr, "k_pr")
    k_dc = check_positive_int(k_dc, "k_dc")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    kid_subsets = check_positive_int(kid_subsets, "kid_subsets", minimum=0)
    vendi_q = check_order(vendi_q)
    device = check_device(device)
    real = as_features(real, "real", min_rows=max(2, k_pr + 1, k_dc + 1))
    fake = as_features(fake, "fake", min_rows=max(2, k_pr + 1))
    check_same_dim(real, fake)
    labels_fake = _check_rows(labels_fake, fake.shape[0], "labels_fake", 1)
    logits_fake = _check_rows(logits_fake, fake.shape[0], "logits_fake", 2)

    groups = check_metric_groups(metrics)
    if metrics is not None:
        needs = {"mss": (labels_fake, "labels_fake"), "is": (logits_fake, "logits_fake"), "kid": (kid_subsets or None,
                                                                                               "kid_subsets > 0")}
        for group, (given, what) in needs.items():
            if group in groups and given is None:
                raise ValueError(f"metric {group!r} needs {what}")
    results: dict[str, float] = {}
    if "fid" in groups:
        results[keys.FD] = fd_from_features(real, fake, device=device)
    if "prdc" in groups:
        results.update(prdc(real, fake, k_pr=k_pr, k_dc=k_dc, chunk_size=chunk_size, device=device))
    if "vendi" in groups:
        results[keys.VENDI] = vendi_score(fake, q=vendi_q, device=device)
        if labels_fake is not None:
            results[keys.VENDI_PER_CONDITION] = vendi_per_condition(fake, labels_fake, q=vendi_q)
    if "mss" in groups and labels_fake is not None:
        results[keys.MSS] = mss(fake, labels_fake, include_diagonal=mss_include_diagonal)
    if "is" in groups and logits_fake is not None:
        results.update(inception_score(logits_fake, splits=is_splits))
    if "kid" in groups and kid_subsets:
        results.update(kid(real, fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=kid_seed,
                           device=device))
    return results


def compute_with_ci(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    labels_fake: np.ndarray | None = None,
    logits_fake: np.ndarray | None = None,
    bootstrap_resamples: int = 0,
    bootstrap_seed: int = 0,
    **options: Any,
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """:func:`compute_all` plus 95% percentile-bootstrap intervals of every metric except the spreads.

    Each resample draws n_fake generated rows with replacement (:func:`metrics.bootstrap.bootstrap_indices`
    with ``bootstrap_seed``; stratified by ``labels_fake`` when given, so every condition keeps its count),
    keeping the reference set fixed, and recomputes all metrics with ``options``.
    Returns:
        ``(values, intervals)``: values as :func:`compute_all`; intervals {metric key: (low, high)}, empty
        when ``bootstrap_resamples`` is 0.
    """
    resamples = check_positive_int(bootstrap_resamples, "bootstrap_resamples", minimum=0)
    values = compute_all(real, fake, labels_fake=labels_fake, logits_fake=logits_fake, **options)
    if resamples == 0:
        return values, {}
    fake = np.asarray(fake)
    labels = None if labels_fake is None else np.asarray(labels_fake)
    logits = None if logits_fake is None else np.asarray(logits_fake)

    def metrics_of_rows(rows: np.ndarray) -> dict[str, float]:
        return compute_all(real, fake[rows], labels_fake=None if labels is None else labels[rows],
                           logits_fake=None if logits is None else logits[rows], **options)

    names = tuple(name for name in values if name not in keys.SPREAD_KEYS)
    return values, bootstrap_ci(metrics_of_rows, fake.shape[0], resamples, bootstrap_seed, names=names,
                                strata=labels)


def condition_subset(labels: np.ndarray, conditions: int, per_condition: int) -> np.ndarray:
    """Rows of the diversity protocol (CADS/Kaleido: MSS and per-condition Vendi on 1K conditions x 10 samples):
    the first ``per_condition`` rows of each of the first ``conditions`` condition ids in row order (0 = all).

    labels (n,) int, rows in sample-index order. Returns sorted row indices (m,) int64. Raises ValueError naming
    the conditions that have fewer than ``per_condition`` rows, or when fewer than ``conditions`` conditions exist.
    """
    labels = np.asarray(labels)
    conditions = check_positive_int(conditions, "diversity_conditions", minimum=0)
    per_condition = check_positive_int(per_condition, "diversity_per_condition", minimum=0)
    _, first = np.unique(labels, return_index=True)
    chosen = labels[np.sort(first)]  # condition ids in order of first appearance
    if conditions:
        if len(chosen) < conditions:
            raise ValueError(f"diversity_conditions={conditions}, but the samples hold {len(chosen)} conditions")
        chosen = chosen[:conditions]
    rows = []
    short = []
    for c in chosen:
        where = np.flatnonzero(labels == c)
        if per_condition and len(where) < per_condition:
            short.append(f"{c} ({len(where)})")
        rows.append(where[:per_condition] if per_condition else where)
    if short:
        raise ValueError(f"diversity_per_condition={per_condition}: conditions with fewer samples: "
                         f"{', '.join(short[:10])}{' ...' if len(short) > 10 else ''}; raise num_samples or lower it")
    return np.sort(np.concatenate(rows)).astype(np.int64)

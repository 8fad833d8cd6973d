"""All registered metrics of one generated feature set against one reference feature set, in one call.

:func:`compute_all` runs the entries of :data:`metrics.metric_registry.METRICS` that are asked for or apply;
:func:`compute_with_ci` adds percentile-bootstrap 95% intervals (:mod:`metrics.bootstrap`) of every key that is
bootstrapped, resampling the generated rows (and their labels and logits).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import torch

from metrics import keys
from metrics import metric_functions as _builtin_metrics  # noqa: F401  (named by reference: in the code hash)
from metrics._validate import (
    as_features,
    check_device,
    check_feature_array,
    check_positive_int,
    check_same_dim,
    checked_features,
    reads_on_demand,
)
from metrics.bootstrap import bootstrap_ci
from metrics.metric_registry import METRICS, NEEDS, Metric, MetricInputs, all_options, metric_names, spread_keys
from metrics.registry import resolve


def check_metric_groups(metrics: Collection[str] | None) -> frozenset[str]:
    """The requested metrics as a set (None = all registered), else ValueError naming the accepted ones."""
    names = metric_names()
    if metrics is None:
        return frozenset(names)
    unknown = sorted(set(metrics) - set(names))
    if unknown or not metrics:
        raise ValueError(f"metrics={sorted(metrics)!r}; expected a non-empty subset of {names}")
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


def _options(given: dict[str, Any]) -> dict[str, Any]:
    """Every registered option: the given value (checked) or its default; a switch not given is 0 (off)."""
    options = {option.name: option for option in all_options()}
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise TypeError(f"compute_all got unknown options {unknown}; the registered metrics take {sorted(options)}")
    switches = {METRICS.get(name).switch for name in metric_names()} - {None}
    values = {name: given.get(name, 0 if name in switches else option.default) for name, option in options.items()}
    for name, option in options.items():
        if option.check is not None:
            values[name] = option.check(values[name])
    return values


def _selected(metrics: Collection[str] | None, given: dict[str, bool], options: dict[str, Any]) -> list[Metric]:
    """The metrics to run: those named (ValueError when one lacks what it needs), or every one that applies."""
    chosen = check_metric_groups(metrics)
    out = []
    for name in metric_names():
        if name not in chosen:
            continue
        metric = METRICS.get(name)
        missing = [NEEDS[need] for need in metric.needs if not given[need]]
        if metric.switch is not None and not options[metric.switch]:
            missing.append(f"{metric.switch} > 0")
        if not missing:
            out.append(metric)
        elif metrics is not None:
            raise ValueError(f"metric {name!r} needs {' and '.join(missing)}")
    return out


def compute_all(
    real: np.ndarray | None,
    fake: np.ndarray,
    *,
    labels_fake: np.ndarray | None = None,
    logits_fake: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    chunk_size: int = 1024,
    key_chunk_size: int = 0,
    knn_precision: str = "auto",
    metrics: Collection[str] | None = None,
    **options: Any,
) -> dict[str, float]:
    """The registered metrics (:data:`metrics.metric_registry.METRICS`) of ``fake`` against ``real``.

    Args:
        real: (n_real, d) reference features, n_real >= 2 and > the k of P/R and D/C (None: only metrics that do
            not need them); an array read on demand (:class:`metrics.store.ShardedArray`, ``numpy.memmap``) stays
            unloaded: P/R/D/C and FD read it in chunks, KID reads its subsets.
        fake: (n_fake, d) generated features, same d, n_fake >= 2 and > k_pr, no all-zero rows (Vendi, MSS).
        labels_fake: optional (n_fake,) condition id per fake row; adds per-condition mean Vendi and MSS.
        logits_fake: optional (n_fake, classes) classifier logits; adds the Inception Score.
        device: torch device for the k-NN distance blocks, KID kernels and the float64 linear algebra of FD and
            whole-set Vendi. chunk_size: query rows per distance block. key_chunk_size: key rows per distance block
            and rows held on the device at once (0 = from free memory). knn_precision: the k-NN distance filter,
            one of ``keys.KNN_PRECISIONS`` (speed only: every choice gives the canonical float64 answer).
        metrics: run these registered metrics (ValueError when one lacks its input: "mss" labels, "is" logits,
            "kid" kid_subsets > 0), or None: every one that applies.
        options: the metrics' options (built in: ``k_pr`` 3, ``k_dc`` 5, ``vendi_q`` 1 (``math.inf`` allowed),
            ``mss_include_diagonal`` True, ``kid_subsets`` (0 = no KID, the default here), ``kid_subset_size``
            1000, ``kid_seed`` 2020, ``is_splits`` 10; ``python -m metrics from-features --help`` lists them all).
    Returns:
        ``{keys.FD, keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE, keys.VENDI}`` -> float, plus
        ``keys.VENDI_PER_CONDITION`` and ``keys.MSS`` given labels, ``keys.INCEPTION_SCORE(_STD)`` given logits,
        ``keys.KID(_STD)`` when kid_subsets > 0, and the keys of every registered plugin metric that applies.
        Vendi, MSS and IS are over the fake set only.
    Raises:
        ValueError: naming the bad input (non-2-D or empty arrays, NaN/inf, mismatched d, bad k or labels).
    """
    values = _options(options)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    key_chunk_size = check_positive_int(key_chunk_size, "key_chunk_size", minimum=0)
    if knn_precision not in keys.KNN_PRECISIONS:
        raise ValueError(f"knn_precision={knn_precision!r}; expected one of {', '.join(keys.KNN_PRECISIONS)}")
    device = check_device(device)
    given = {"real": real is not None, "labels": labels_fake is not None, "logits": logits_fake is not None}
    selected = _selected(metrics, given, values)
    real_rows, fake_rows = 2, 2
    for metric in selected:
        if metric.min_rows is not None:
            need_real, need_fake = metric.min_rows(values)
            real_rows, fake_rows = max(real_rows, need_real), max(fake_rows, need_fake)
    if real is not None:
        real = (check_feature_array(real, "real", min_rows=real_rows) if reads_on_demand(real)
                else as_features(real, "real", min_rows=real_rows))
    fake = as_features(fake, "fake", min_rows=fake_rows)
    if real is not None:
        check_same_dim(real, fake)
    labels_fake = _check_rows(labels_fake, fake.shape[0], "labels_fake", 1)
    logits_fake = _check_rows(logits_fake, fake.shape[0], "logits_fake", 2)

    inputs = MetricInputs(real=real, fake=fake, labels=labels_fake, logits=logits_fake, device=device,
                          chunk_size=chunk_size, key_chunk_size=key_chunk_size, knn_precision=knn_precision)
    results: dict[str, float] = {}
    with checked_features(real, fake):  # checked above: the metrics do not rescan them
        for metric in selected:
            found = resolve(metric.compute)(inputs, **{option.name: values[option.name] for option in metric.options})
            undeclared = sorted(set(found) - {key.name for key in metric.keys})
            if undeclared:
                raise RuntimeError(f"metric {metric.name!r} returned keys {undeclared} that its entry does not declare")
            results.update({name: float(value) for name, value in found.items()})
    return results


def compute_with_ci(
    real: np.ndarray | None,
    fake: np.ndarray,
    *,
    labels_fake: np.ndarray | None = None,
    logits_fake: np.ndarray | None = None,
    bootstrap_resamples: int = 0,
    bootstrap_seed: int = 0,
    **options: Any,
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """:func:`compute_all` plus 95% percentile-bootstrap intervals of every metric key except the spreads
    (keys registered with ``bootstrap=False``).

    Each resample draws n_fake generated rows with replacement (:func:`metrics.bootstrap.bootstrap_indices`
    with ``bootstrap_seed``; stratified by ``labels_fake`` when given, so every condition keeps its count),
    keeping the reference set fixed (one object for every resample, so the reference set's k-NN radii are computed
    once: :mod:`metrics.prdc`), and recomputes all metrics with ``options``.
    Returns:
        ``(values, intervals)``: values as :func:`compute_all`; intervals {metric key: (low, high)}, empty
        when ``bootstrap_resamples`` is 0.
    """
    resamples = check_positive_int(bootstrap_resamples, "bootstrap_resamples", minimum=0)
    if real is not None and not reads_on_demand(real):
        real = as_features(real, "real")  # converted once: every resample sees the same reference (cached radii)
    values = compute_all(real, fake, labels_fake=labels_fake, logits_fake=logits_fake, **options)
    if resamples == 0:
        return values, {}
    fake = np.asarray(fake)
    labels = None if labels_fake is None else np.asarray(labels_fake)
    logits = None if logits_fake is None else np.asarray(logits_fake)

    def metrics_of_rows(rows: np.ndarray) -> dict[str, float]:
        return compute_all(real, fake[rows], labels_fake=None if labels is None else labels[rows],
                           logits_fake=None if logits is None else logits[rows], **options)

    spreads = spread_keys()
    names = tuple(name for name in values if name not in spreads)
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

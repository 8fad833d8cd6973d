"""The built-in metrics' compute functions, registered by reference in :mod:`metrics.metric_registry` (which the
harness's config reads without importing this module, so a metric's code is in the metric step's code hash only).

Each takes a :class:`~metrics.metric_registry.MetricInputs` and its metric's options as keywords and returns
``{result key: value}``.
"""

from __future__ import annotations

from metrics import keys
from metrics.frechet import fd_from_features
from metrics.inception_score import inception_score
from metrics.kid import kid
from metrics.metric_registry import MetricInputs
from metrics.mss import mss
from metrics.prdc import prdc, reference_rows
from metrics.vendi import vendi_per_condition, vendi_score


def fd(inputs: MetricInputs) -> dict[str, float]:
    return {keys.FD: fd_from_features(inputs.real, inputs.fake, device=inputs.device)}


def prdc_metric(inputs: MetricInputs, *, k_pr: int, k_dc: int, prdc_reference: int | str,
                prdc_reference_seed: int) -> dict[str, float]:
    rows = reference_rows(len(inputs.real), prdc_reference, prdc_reference_seed)  # None: the whole reference set
    real = inputs.real if rows is None else inputs.real[rows]
    return prdc(real, inputs.fake, k_pr=k_pr, k_dc=k_dc, chunk_size=inputs.chunk_size, device=inputs.device,
                key_chunk_size=inputs.key_chunk_size, precision=inputs.knn_precision)


def vendi(inputs: MetricInputs, *, vendi_q: float) -> dict[str, float]:
    out = {keys.VENDI: vendi_score(inputs.fake, q=vendi_q, device=inputs.device)}
    if inputs.labels is not None:
        out[keys.VENDI_PER_CONDITION] = vendi_per_condition(inputs.fake, inputs.labels, q=vendi_q,
                                                            device=inputs.device)
    return out


def mss_metric(inputs: MetricInputs, *, mss_include_diagonal: bool) -> dict[str, float]:
    return {keys.MSS: mss(inputs.fake, inputs.labels, include_diagonal=mss_include_diagonal)}


def kid_metric(inputs: MetricInputs, *, kid_subsets: int, kid_subset_size: int, kid_seed: int) -> dict[str, float]:
    return kid(inputs.real, inputs.fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=kid_seed,
               device=inputs.device)


def inception_score_metric(inputs: MetricInputs, *, is_splits: int) -> dict[str, float]:
    return inception_score(inputs.logits, splits=is_splits)

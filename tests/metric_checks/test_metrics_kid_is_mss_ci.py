"""KID and IS vs torch-fidelity's feature-level functions; MSS vs a direct numpy matrix; bootstrap vs numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from metrics import keys
from metrics.inception_score import inception_score
from metrics.kid import kid
from metrics.mss import mss, mss_by_condition
from metrics.suite import compute_all, compute_with_ci

RTOL = 1e-4


def _features(seed: int, n: int = 60, dim: int = 12, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, dim)) + shift).astype(np.float32)


@pytest.mark.parametrize(("subsets", "size", "seed"), [(5, 20, 2020), (3, 50, 7)])
def test_kid_matches_torch_fidelity(subsets: int, size: int, seed: int) -> None:
    real, fake = _features(0, 70), _features(1, 60, shift=0.3)
    ref = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=seed, verbose=False)
    ours = kid(real, fake, subsets=subsets, subset_size=size, seed=seed)
    assert ours[keys.KID] == pytest.approx(ref["kernel_inception_distance_mean"], rel=RTOL)
    assert ours[keys.KID_STD] == pytest.approx(ref["kernel_inception_distance_std"], rel=RTOL)


def test_kid_rejects_subset_larger_than_set() -> None:
    with pytest.raises(ValueError, match=r"kid_subset_size=100 exceeds the 60 fake rows"):
        kid(_features(0, 120), _features(1, 60), subset_size=100)


@pytest.mark.parametrize(("splits", "shuffle"), [(10, True), (3, False)])
def test_inception_score_matches_torch_fidelity(splits: int, shuffle: bool) -> None:
    logits = _features(3, 95, 20) * 3
    ref = isc_features_to_metric(torch.from_numpy(logits), splits=splits, shuffle=shuffle, rng_seed=2020)
    ours = inception_score(logits, splits=splits, shuffle=shuffle)
    assert ours[keys.INCEPTION_SCORE] == pytest.approx(ref["inception_score_mean"], rel=RTOL)
    assert ours[keys.INCEPTION_SCORE_STD] == pytest.approx(ref["inception_score_std"], rel=1e-3)


@pytest.mark.parametrize("include_diagonal", [True, False])
def test_mss_matches_direct_similarity_matrices(include_diagonal: bool) -> None:
    x = _features(4, 40, 6, shift=0.5).astype(np.float64)
    labels = np.repeat([3, 1, 7, 5], 10)
    expected = {}
    for c in np.unique(labels):
        unit = x[labels == c] / np.linalg.norm(x[labels == c], axis=1, keepdims=True)
        k = unit @ unit.T
        expected[int(c)] = k.mean() if include_diagonal else k[~np.eye(len(k), dtype=bool)].mean()
    got = mss_by_condition(x, labels, include_diagonal=include_diagonal)
    assert list(got) == sorted(expected)
    for c, value in expected.items():
        assert got[c] == pytest.approx(value, rel=1e-12)
    assert mss(x, labels, include_diagonal=include_diagonal) == pytest.approx(np.mean(list(expected.values())))


def test_mss_off_diagonal_needs_two_samples() -> None:
    with pytest.raises(ValueError, match=r"condition 2 has 1 sample"):
        mss(_features(0, 3, 4), np.array([1, 1, 2]), include_diagonal=False)


def test_bootstrap_ci_equals_plain_numpy_bootstrap() -> None:
    real, fake = _features(5, 50, 4), _features(6, 40, 4, shift=0.2)
    labels = np.repeat([0, 1], 20)
    values, ci = compute_with_ci(real, fake, labels_fake=labels, bootstrap_resamples=7, bootstrap_seed=11,
                                 k_pr=3, k_dc=4)
    assert values == compute_all(real, fake, labels_fake=labels, k_pr=3, k_dc=4)
    rng = np.random.default_rng(11)
    draws = []
    for _ in range(7):  # stratified by label: each condition's rows resampled among themselves, in id order
        rows = np.concatenate([rng.integers(0, 20, size=20), 20 + rng.integers(0, 20, size=20)])
        assert (labels[rows] == labels).all()
        draws.append(compute_all(real, fake[rows], labels_fake=labels[rows], k_pr=3, k_dc=4))
    assert set(ci) == set(values)
    for name in values:
        low, high = np.percentile([d[name] for d in draws], [2.5, 97.5])
        assert ci[name] == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
        assert low <= high


def test_bootstrap_skips_spreads_and_zero_means_none() -> None:
    real, fake = _features(5, 50, 4), _features(6, 40, 4)
    logits = _features(7, 40, 9)
    values, ci = compute_with_ci(real, fake, logits_fake=logits, is_splits=2, kid_subsets=2, kid_subset_size=10,
                                 bootstrap_resamples=2, bootstrap_seed=0)
    assert keys.KID in ci and keys.INCEPTION_SCORE in ci
    assert keys.KID_STD not in ci and keys.INCEPTION_SCORE_STD not in ci and keys.KID_STD in values
    assert compute_with_ci(real, fake, bootstrap_resamples=0)[1] == {}


def test_unlabelled_bootstrap_is_plain_numpy_resampling() -> None:
    real, fake = _features(5, 50, 4), _features(6, 40, 4, shift=0.2)
    _, ci = compute_with_ci(real, fake, bootstrap_resamples=5, bootstrap_seed=3)
    rng = np.random.default_rng(3)
    draws = [compute_all(real, fake[rng.integers(0, 40, size=40)]) for _ in range(5)]
    for name, bounds in ci.items():
        assert bounds == tuple(pytest.approx(v, rel=1e-12) for v in np.percentile([d[name] for d in draws],
                                                                                 [2.5, 97.5]))


def test_stratified_bootstrap_keeps_off_diagonal_mss_defined() -> None:
    # 30 conditions x 2 samples: a plain bootstrap would often leave a condition with 1 sample.
    real, fake = _features(5, 80, 4), _features(6, 60, 4)
    labels = np.repeat(np.arange(30), 2)
    _, ci = compute_with_ci(real, fake, labels_fake=labels, mss_include_diagonal=False, bootstrap_resamples=10,
                            bootstrap_seed=0)
    assert ci[keys.MSS][0] <= ci[keys.MSS][1]

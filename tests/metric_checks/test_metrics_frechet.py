"""Fréchet distance against torch-fidelity's own implementation and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

from metrics.frechet import fd_from_features, frechet_distance, gaussian_stats


def _feature_pair(n_real: int, n_fake: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated, shifted Gaussian features (float32, as a feature extractor would produce)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    real = rng.normal(size=(n_real, dim)) @ mix
    fake = 1.3 * rng.normal(size=(n_fake, dim)) @ mix + 0.2
    return real.astype(np.float32), fake.astype(np.float32)


@pytest.mark.parametrize(
    ("n_real", "n_fake", "dim"),
    [(200, 300, 2), (1000, 800, 16), (500, 600, 64), (40, 30, 64), (10, 12, 16), (3000, 2500, 2)],
)
def test_matches_torch_fidelity(n_real: int, n_fake: int, dim: int) -> None:
    real, fake = _feature_pair(n_real, n_fake, dim, seed=n_real + dim)
    ref_real = fid_features_to_statistics(torch.from_numpy(real.astype(np.float64)))
    ref_fake = fid_features_to_statistics(torch.from_numpy(fake.astype(np.float64)))
    expected = fid_statistics_to_metric(ref_real, ref_fake, verbose=False)[KEY_METRIC_FID]

    mu, sigma = gaussian_stats(real)
    np.testing.assert_allclose(mu, ref_real["mu"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma, ref_real["sigma"], rtol=1e-12, atol=1e-12)
    assert fd_from_features(real, fake) == pytest.approx(expected, rel=1e-4)
    # Same statistics through both functions (no feature step).
    ours = frechet_distance(ref_real["mu"], ref_real["sigma"], ref_fake["mu"], ref_fake["sigma"])
    assert ours == pytest.approx(expected, rel=1e-4)


def test_closed_form_diagonal_gaussians() -> None:
    # For commuting (diagonal) covariances: FD = |m1 - m2|^2 + sum_i (s1_i - s2_i)^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 2.0, 1.5])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
    assert frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2)) == pytest.approx(expected, rel=1e-12)


def test_one_dimensional_features() -> None:
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(500, 1)), 2.0 * rng.normal(size=(400, 1)) + 1.0
    expected = (real.mean() - fake.mean()) ** 2 + (real.std(ddof=1) - fake.std(ddof=1)) ** 2
    assert fd_from_features(real, fake) == pytest.approx(expected, rel=1e-10)


def test_identical_sets_give_zero() -> None:
    real, _ = _feature_pair(300, 10, 16, seed=1)
    assert fd_from_features(real, real) == pytest.approx(0.0, abs=1e-9)


def test_singular_covariances_n_below_d() -> None:
    # Rank-deficient covariances (n < d) stay finite and non-negative.
    real, fake = _feature_pair(5, 6, 64, seed=2)
    value = fd_from_features(real, fake)
    assert np.isfinite(value) and value >= 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_rejected(bad: float) -> None:
    real, fake = _feature_pair(50, 50, 4, seed=3)
    fake = fake.astype(np.float64)
    fake[7, 2] = bad
    with pytest.raises(ValueError, match=r"fake: .*(NaN|inf).*row 7"):
        fd_from_features(real, fake)


def test_not_psd_covariance_rejected() -> None:
    sigma_bad = np.diag([1.0, -0.5])
    with pytest.raises(ValueError, match="negative eigenvalue"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), sigma_bad)
    with pytest.raises(ValueError, match="negative eigenvalue"):
        frechet_distance(np.zeros(2), sigma_bad, np.zeros(2), np.eye(2))


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="feature dimensions differ"):
        fd_from_features(np.zeros((5, 3)) + np.arange(3), np.ones((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(np.ones((1, 3)))
    with pytest.raises(ValueError, match="expected"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="finite"):
        frechet_distance(np.array([0.0, np.nan]), np.eye(2), np.zeros(2), np.eye(2))


def test_streamed_moments_equal_the_one_pass_statistics() -> None:
    """Per-chunk moments merged (Chan et al.) equal np.cov of the whole set to 1e-10 relative, also for features
    far from zero mean (where sums of squares would cancel), and a sharded feature set reduces the same way."""
    from metrics.frechet import Moments, streaming_gaussian_stats

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5003, 24)) * rng.uniform(0.1, 3.0, size=24) + 1e3
    chunks = np.split(x, [1, 17, 1000, 1001, 3500])
    mu, sigma = streaming_gaussian_stats(chunks)
    ref_mu, ref_sigma = x.mean(0), np.cov(x, rowvar=False)
    assert np.abs(mu - ref_mu).max() <= 1e-10 * np.abs(ref_mu).max()
    assert np.abs(sigma - ref_sigma).max() <= 1e-10 * np.abs(ref_sigma).max()
    left = Moments.of(x[:2000]).merge(Moments.of(x[2000:]))
    right = Moments.of(x[3000:]).merge(Moments.of(x[:3000]))  # merge order does not matter
    assert np.abs(left.gaussian()[1] - right.gaussian()[1]).max() <= 1e-10 * np.abs(ref_sigma).max()
    with pytest.raises(ValueError, match="at least 2"):
        Moments.of(x[:1]).gaussian()


def test_sharded_features_reduce_to_the_same_statistics(tmp_path) -> None:
    from metrics.store import load_data, save_data

    x = np.random.default_rng(1).normal(size=(300, 5)).astype(np.float32)
    save_data(tmp_path / "f.npz", {"x": x, "labels": np.zeros(300, dtype=np.int64)}, {}, shard_size=64)
    sharded = load_data(tmp_path / "f.npz")["x"]
    for got, want in zip(gaussian_stats(sharded), gaussian_stats(x), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)

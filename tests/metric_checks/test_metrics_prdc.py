"""Precision / recall / density / coverage against the reference ``prdc`` package."""

from __future__ import annotations

import numpy as np
import prdc as prdc_reference
import pytest

import metrics.prdc as prdc_module
from metrics import keys, knn_kernels
from metrics.prdc import prdc

ALL_KEYS = (keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE)


def _sets(n_real: int, n_fake: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping but different Gaussian clouds, float32 like real features."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_real, dim))
    fake = 1.2 * rng.normal(size=(n_fake, dim)) + 0.3
    return real.astype(np.float32), fake.astype(np.float32)


def _reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    return {name: float(value) for name, value in prdc_reference.compute_prdc(real, fake, nearest_k=k).items()}


def _assert_close(ours: dict[str, float], expected: dict[str, float], names=ALL_KEYS) -> None:
    for name in names:
        assert ours[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-12), name


@pytest.mark.parametrize(("n_real", "n_fake", "dim"), [(200, 300, 2), (500, 400, 64), (100, 50, 128), (300, 250, 5)])
@pytest.mark.parametrize("k", [3, 5])
def test_matches_prdc_package(n_real: int, n_fake: int, dim: int, k: int) -> None:
    real, fake = _sets(n_real, n_fake, dim, seed=n_real * dim + k)
    expected = _reference(real, fake, k)
    methods = ["auto", "brute"] + (["tree"] if dim <= prdc_module.LOW_DIM_MAX else [])
    for method in methods:
        _assert_close(prdc(real, fake, k_pr=k, k_dc=k, chunk_size=64, method=method), expected)


def test_separate_k_for_pr_and_dc() -> None:
    real, fake = _sets(400, 300, 3, seed=7)
    ours = prdc(real, fake, k_pr=3, k_dc=5)
    _assert_close(ours, _reference(real, fake, 3), names=(keys.PRECISION, keys.RECALL))
    _assert_close(ours, _reference(real, fake, 5), names=(keys.DENSITY, keys.COVERAGE))
    assert prdc(real, fake, k_pr=3, k_dc=5, method="brute") == ours


@pytest.mark.parametrize(("dim", "levels"), [(2, 2), (2, 5), (3, 4)])
def test_ties_on_integer_lattice(dim: int, levels: int) -> None:
    # Many duplicates and equal distances: both backends must apply prdc's rules (self-inclusive (k+1)-th
    # distance as radius, strict "<") identically.
    rng = np.random.default_rng(levels)
    real = rng.integers(0, levels, size=(300, dim)).astype(np.float64)
    fake = rng.integers(0, levels, size=(250, dim)).astype(np.float64)
    for k in (3, 5):
        tree = prdc(real, fake, k, k, method="tree", chunk_size=40)
        brute = prdc(real, fake, k, k, method="brute", chunk_size=40)
        assert tree == brute
        _assert_close(tree, _reference(real, fake, k))


def test_ties_on_decimal_lattice() -> None:
    # Coordinates like 0.1 * i are not exact in binary: equal distances differ by rounding only.
    rng = np.random.default_rng(11)
    real = rng.integers(0, 10, size=(300, 2)) * 0.1
    fake = rng.integers(0, 10, size=(300, 2)) * 0.1 + 0.05
    tree = prdc(real, fake, 3, 5, method="tree")
    assert tree == prdc(real, fake, 3, 5, method="brute", chunk_size=50)
    _assert_close(tree, _reference(real, fake, 3), names=(keys.PRECISION, keys.RECALL))
    _assert_close(tree, _reference(real, fake, 5), names=(keys.DENSITY, keys.COVERAGE))


def test_closed_form_identical_and_disjoint_sets() -> None:
    real, _ = _sets(200, 1, 2, seed=3)
    same = prdc(real, real, k_pr=3, k_dc=3)
    assert same[keys.PRECISION] == same[keys.RECALL] == same[keys.COVERAGE] == 1.0
    far = prdc(real, real + 1e3, k_pr=3, k_dc=3)
    assert far == {keys.PRECISION: 0.0, keys.RECALL: 0.0, keys.DENSITY: 0.0, keys.COVERAGE: 0.0}


def test_chunk_sizes_bound_distance_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    real, fake = _sets(230, 170, 16, seed=5)
    shapes = []
    original = knn_kernels.GramKernel.values

    def recording(self, query, keys_):
        shapes.append((len(query), len(keys_)))
        return original(self, query, keys_)

    monkeypatch.setattr(knn_kernels.GramKernel, "values", recording)
    small = prdc(real, fake, chunk_size=32, key_chunk_size=50, method="brute")
    assert shapes and max(rows for rows, _ in shapes) <= 32 and max(cols for _, cols in shapes) <= 50
    assert small == prdc(real, fake, chunk_size=1000, method="brute")


def test_runs_on_50k_by_50k_points_in_2d() -> None:
    # Scale check only (no timing assertion): 50K x 50K would need ~20 GB as full matrices.
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(50_000, 2)), 1.1 * rng.normal(size=(50_000, 2)) + 0.1
    result = prdc(real, fake, k_pr=3, k_dc=5)
    assert all(0.9 < result[name] < 1.0 for name in (keys.PRECISION, keys.RECALL, keys.COVERAGE))
    assert 0.9 < result[keys.DENSITY] < 1.1


def test_input_errors() -> None:
    real, fake = _sets(20, 20, 3, seed=1)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        prdc(real, fake[:, :2])
    with pytest.raises(ValueError, match="at least 6"):
        prdc(real[:5], fake, k_pr=3, k_dc=5)
    with pytest.raises(ValueError, match="k_pr=0"):
        prdc(real, fake, k_pr=0)
    with pytest.raises(ValueError, match="method='kd'"):
        prdc(real, fake, method="kd")
    with pytest.raises(ValueError, match="d <= 8"):
        prdc(np.ones((20, 9)) * np.arange(20)[:, None], np.ones((20, 9)), method="tree")
    with pytest.raises(ValueError, match="not a torch device"):
        prdc(real, fake, device="gpu0")

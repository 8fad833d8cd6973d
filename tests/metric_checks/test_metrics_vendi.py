"""Vendi score against the reference ``vendi-score`` package and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.preprocessing import normalize
from vendi_score import vendi as vendi_reference

from metrics.vendi import vendi_by_condition, vendi_per_condition, vendi_score

# vendi_score 0.0.3 touches the deprecated scipy.sparse.csr namespace; not our code.
pytestmark = pytest.mark.filterwarnings("ignore:Please import `csr_matrix`:DeprecationWarning")

ORDERS = [0.5, 1.0, 2.0, math.inf]


def _features(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    x[:, 0] += 1.5  # not centred: cosine similarities are mostly positive, as for real features
    return x.astype(np.float32)


def _reference_q(q: float) -> float | str:
    return "inf" if math.isinf(q) else q  # the package spells q = infinity as the string "inf"


@pytest.mark.parametrize(("n", "dim"), [(50, 200), (300, 16), (100, 100), (40, 3)])
@pytest.mark.parametrize("q", ORDERS)
def test_matches_vendi_score_package(n: int, dim: int, q: float) -> None:
    x = _features(n, dim, seed=n + dim)
    xn = normalize(x.astype(np.float64), axis=1)
    expected_k = vendi_reference.score_K(xn @ xn.T, q=_reference_q(q))
    expected_dual = vendi_reference.score_dual(x.astype(np.float64), q=_reference_q(q))
    ours = vendi_score(x, q=q)
    assert ours == pytest.approx(expected_k, rel=1e-4)
    assert ours == pytest.approx(expected_dual, rel=1e-4)


def test_closed_forms() -> None:
    assert vendi_score(np.ones((10, 4))) == pytest.approx(1.0, rel=1e-12)  # all samples the same direction
    assert vendi_score(3.0 * np.eye(6)) == pytest.approx(6.0, rel=1e-12)  # orthogonal samples
    # Two orthogonal groups of sizes 3 and 1: eigenvalues 3/4, 1/4.
    x = np.array([[1.0, 0.0], [2.0, 0.0], [5.0, 0.0], [0.0, 1.0]])
    p = np.array([0.75, 0.25])
    assert vendi_score(x, q=1.0) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-12)
    assert vendi_score(x, q=2.0) == pytest.approx(1.0 / (p**2).sum(), rel=1e-12)
    assert vendi_score(x, q=math.inf) == pytest.approx(1.0 / 0.75, rel=1e-12)
    assert vendi_score(x, q=0.0) == pytest.approx(2.0, rel=1e-12)  # order 0 counts non-zero eigenvalues


def test_per_condition_is_mean_of_conditions() -> None:
    x = _features(90, 8, seed=4)
    labels = np.repeat([2, 0, 1], 30)
    per = vendi_by_condition(x, labels, q=1.0)
    assert list(per) == [0, 1, 2]
    for condition, score in per.items():
        assert score == pytest.approx(vendi_reference.score_dual(x[labels == condition].astype(np.float64)), rel=1e-4)
    assert vendi_per_condition(x, labels) == pytest.approx(np.mean(list(per.values())), rel=1e-12)


def test_errors() -> None:
    x = _features(10, 4, seed=0)
    with pytest.raises(ValueError, match="all zeros"):
        vendi_score(np.vstack([x, np.zeros((1, 4))]))
    with pytest.raises(ValueError, match="q=-1"):
        vendi_score(x, q=-1)
    with pytest.raises(ValueError, match=r"labels: shape \(9,\)"):
        vendi_per_condition(x, np.zeros(9))
    with pytest.raises(ValueError, match="NaN"):
        vendi_score(np.full((3, 2), np.nan))


@pytest.mark.parametrize(("n", "dim"), [(300, 16), (40, 100)])
def test_torch_linear_algebra_path_matches_numpy(n: int, dim: int) -> None:
    # the path a CUDA device takes, run on the CPU: same eigenvalues as the numpy path
    from metrics.vendi import _similarity_spectrum

    x = _features(n, dim, seed=7).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(_similarity_spectrum(x, torch.device("cpu")), _similarity_spectrum(x), atol=1e-12)


def test_per_condition_groups_of_unequal_size_match_one_by_one() -> None:
    # rows grouped by one stable sort: each condition's score equals vendi_score of its own rows
    x = _features(120, 8, seed=3)
    labels = np.array(["b"] * 30 + ["a"] * 10 + ["c"] * 10 + ["d"] * 70)[np.random.default_rng(0).permutation(120)]
    per = vendi_by_condition(x, labels, q=2.0)
    assert list(per) == ["a", "b", "c", "d"]
    for key, value in per.items():
        assert value == pytest.approx(vendi_score(x[labels == key], q=2.0), rel=1e-12), key

"""compute_all: composition of the individual metrics and input validation."""

from __future__ import annotations

import numpy as np
import pytest

from metrics import compute_all, fd_from_features, keys, vendi_per_condition, vendi_score
from metrics.mss import mss
from metrics.prdc import prdc


def _sets(seed: int = 0, dim: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(120, dim))
    fake = rng.normal(size=(100, dim)) + 0.5
    labels = np.repeat(np.arange(4), 25)
    return real, fake, labels


def test_compute_all_equals_individual_metrics() -> None:
    real, fake, labels = _sets()
    result = compute_all(real, fake, k_pr=3, k_dc=5, vendi_q=2.0, labels_fake=labels)
    assert set(result) == set(keys.SET_METRIC_KEYS) | {keys.VENDI_PER_CONDITION, keys.MSS}
    assert all(isinstance(value, float) for value in result.values())
    assert result[keys.FD] == fd_from_features(real, fake)
    for name, value in prdc(real, fake, k_pr=3, k_dc=5).items():
        assert result[name] == value
    assert result[keys.VENDI] == vendi_score(fake, q=2.0)
    assert result[keys.VENDI_PER_CONDITION] == vendi_per_condition(fake, labels, q=2.0)
    assert result[keys.MSS] == mss(fake, labels)


def test_without_labels_has_no_per_condition_key() -> None:
    real, fake, _ = _sets()
    assert set(compute_all(real, fake)) == set(keys.SET_METRIC_KEYS)


@pytest.mark.parametrize(
    ("real", "fake", "message"),
    [
        (np.ones((10, 3)), np.ones((10, 4)), r"feature dimensions differ: real has d=3, fake has d=4"),
        (np.ones((0, 3)), np.ones((10, 3)), r"real: shape \(0, 3\) has 0 row\(s\)"),
        (np.ones((10, 3)), np.ones((10, 0)), r"fake: shape \(10, 0\) has no feature columns"),
        (np.ones(10), np.ones((10, 3)), r"real: shape \(10,\) has 1 dimension\(s\); expected a 2-D"),
        (np.ones((10, 3)), np.ones((2, 5, 3)), r"fake: shape \(2, 5, 3\) has 3 dimension\(s\)"),
        (np.ones((10, 3)), np.ones((3, 3)), r"fake: shape \(3, 3\) has 3 row\(s\); at least 4 required"),
        (np.array([["a", "b"]] * 10), np.ones((10, 2)), r"real: dtype <U1 is not numeric"),
    ],
)
def test_bad_inputs_name_the_problem(real: np.ndarray, fake: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_all(real, fake)


def test_nan_and_bad_settings() -> None:
    real, fake, labels = _sets()
    fake_nan = fake.copy()
    fake_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"fake: 1 row\(s\) contain NaN values \(first bad row 3\)"):
        compute_all(real, fake_nan)
    with pytest.raises(ValueError, match=r"labels_fake: shape \(99,\); expected \(100,\)"):
        compute_all(real, fake, labels_fake=labels[:99])
    with pytest.raises(ValueError, match="k_dc=0"):
        compute_all(real, fake, k_dc=0)
    with pytest.raises(ValueError, match="q=-2"):
        compute_all(real, fake, vendi_q=-2)

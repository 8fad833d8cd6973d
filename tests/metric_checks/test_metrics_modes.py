"""Toy mode metrics on hand-built configurations with closed-form answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.modes import mode_assignment, mode_entropy, mode_entropy_per_class, mode_shares, modes_covered

# The toy layout of methods.md: modes on a line, classes interleaved A A B B.
CENTRES = np.array([[-5.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
CENTRE_CLASSES = np.array([0, 0, 1, 1])


def _samples(counts_per_mode: dict[tuple[int, int], int]) -> tuple[np.ndarray, np.ndarray]:
    """Samples placed near centre j with class label c, ``counts_per_mode[(c, j)]`` of each."""
    rng = np.random.default_rng(0)
    points, labels = [], []
    for (cls, mode), count in counts_per_mode.items():
        points.append(CENTRES[mode] + 0.1 * rng.normal(size=(count, 2)))
        labels.append(np.full(count, cls))
    return np.concatenate(points), np.concatenate(labels)


def test_assignment_is_nearest_centre() -> None:
    samples = np.array([[-4.0, 1.0], [-0.2, 0.0], [0.2, 0.0], [9.0, -3.0], [0.0, 0.0]])
    assert mode_assignment(samples, CENTRES).tolist() == [0, 1, 2, 3, 1]  # exact tie -> lower index


def test_balanced_modes() -> None:
    samples, labels = _samples({(0, 0): 50, (0, 1): 50, (1, 2): 50, (1, 3): 50})
    np.testing.assert_allclose(mode_shares(samples, labels, CENTRES, CENTRE_CLASSES), [0.5, 0.5, 0.5, 0.5])
    assert modes_covered(samples, labels, CENTRES, CENTRE_CLASSES) == 4
    assert mode_entropy(samples, labels, CENTRES, CENTRE_CLASSES) == pytest.approx(math.log(2))


def test_collapsed_onto_one_mode_per_class() -> None:
    samples, labels = _samples({(0, 0): 100, (1, 3): 100})
    assert modes_covered(samples, labels, CENTRES, CENTRE_CLASSES) == 2
    assert mode_entropy_per_class(samples, labels, CENTRES, CENTRE_CLASSES) == {0: 0.0, 1: 0.0}
    assert mode_entropy(samples, labels, CENTRES, CENTRE_CLASSES) == 0.0


def test_min_share_threshold_and_closed_form_entropy() -> None:
    # Class 0: 96 / 4 split (4% < 5% -> mode 1 not covered); class 1: 60 / 40.
    samples, labels = _samples({(0, 0): 96, (0, 1): 4, (1, 2): 60, (1, 3): 40})
    assert modes_covered(samples, labels, CENTRES, CENTRE_CLASSES) == 3
    assert modes_covered(samples, labels, CENTRES, CENTRE_CLASSES, min_share=0.04) == 4
    per_class = mode_entropy_per_class(samples, labels, CENTRES, CENTRE_CLASSES)

    def entropy(p: list[float]) -> float:
        return -sum(v * math.log(v) for v in p)

    assert per_class[0] == pytest.approx(entropy([0.96, 0.04]))
    assert per_class[1] == pytest.approx(entropy([0.6, 0.4]))
    assert mode_entropy(samples, labels, CENTRES, CENTRE_CLASSES) == pytest.approx(
        (entropy([0.96, 0.04]) + entropy([0.6, 0.4])) / 2
    )


def test_samples_in_other_class_modes_count_for_nothing() -> None:
    # Class 0: 10 in its mode 0, 90 in class 1's mode 2; class 1: all 100 in class 0's mode 1.
    samples, labels = _samples({(0, 0): 10, (0, 2): 90, (1, 1): 100})
    np.testing.assert_allclose(mode_shares(samples, labels, CENTRES, CENTRE_CLASSES), [0.1, 0.0, 0.0, 0.0])
    assert modes_covered(samples, labels, CENTRES, CENTRE_CLASSES) == 1
    # Class 0's own-mode distribution is all in mode 0; class 1 reaches none of its modes: both 0 nats.
    assert mode_entropy_per_class(samples, labels, CENTRES, CENTRE_CLASSES) == {0: 0.0, 1: 0.0}


def test_errors() -> None:
    samples, labels = _samples({(0, 0): 5, (1, 2): 5})
    with pytest.raises(ValueError, match=r"class id\(s\) \[7\] own no centre"):
        modes_covered(samples, np.where(labels == 1, 7, labels), CENTRES, CENTRE_CLASSES)
    with pytest.raises(ValueError, match="min_share"):
        modes_covered(samples, labels, CENTRES, CENTRE_CLASSES, min_share=0.0)
    with pytest.raises(ValueError, match="centre_classes"):
        mode_shares(samples, labels, CENTRES, CENTRE_CLASSES[:3])
    with pytest.raises(ValueError, match="feature dimensions differ"):
        mode_assignment(np.ones((3, 3)), CENTRES)

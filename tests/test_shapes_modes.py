"""Shapes mode metrics read off the pixels agree with the generator's ground truth on real generated images."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from kaleido.data import DATASETS
from kaleido.data.shapes_modes import shapes_mode_metrics
from metrics import keys


def _entropy(values) -> float:
    p = np.array(list(Counter(values).values()), dtype=np.float64)
    p /= p.sum()
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def shapes():
    spec = {"num_train": 400, "image_size": 32}
    data = DATASETS.get("shapes").generate(spec, seed=3)
    return data, [str(n) for n in data["class_names"]]


def test_metrics_match_the_ground_truth(shapes):
    data, names = shapes
    got = shapes_mode_metrics(data["x"], data["labels"], names)
    labels = data["labels"]
    classes = sorted(set(labels.tolist()))
    truth_colour = np.mean([_entropy(data["gt_colors"][labels == c, 0].tolist()) for c in classes])
    truth_count = np.mean([_entropy(data["gt_count"][labels == c].tolist()) for c in classes])
    assert got[keys.CLASS_ACCURACY] >= 0.95 and got[keys.NO_OBJECT_SHARE] == 0.0
    assert got[keys.COLOR_ENTROPY] == pytest.approx(truth_colour, abs=0.05)
    assert got[keys.COUNT_ENTROPY] == pytest.approx(truth_count, abs=0.05)
    assert got[keys.COLORS_PER_CLASS] == len(set(data["gt_colors"][:, 0].tolist()))


def test_wrong_labels_and_blank_images_score_as_misses(shapes):
    data, names = shapes
    shifted = shapes_mode_metrics(data["x"], (data["labels"] + 1) % len(names), names)
    assert shifted[keys.CLASS_ACCURACY] < 0.1  # the main shape is never the next class's
    blank = np.broadcast_to(data["x"][0, :1, :1], data["x"][:10].shape).copy()  # the background colour only
    out = shapes_mode_metrics(blank, data["labels"][:10], names)
    assert out[keys.NO_OBJECT_SHARE] == 1.0 and out[keys.CLASS_ACCURACY] == 0.0 and np.isnan(out[keys.COLOR_ENTROPY])
    with pytest.raises(ValueError, match="as many labels as images"):
        shapes_mode_metrics(data["x"][:3], data["labels"][:2], names)

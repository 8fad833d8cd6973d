"""The k-means latent extractor recovers the toy generator's modes without reading them."""

from __future__ import annotations

import numpy as np

from kaleido.data import DATASETS
from kaleido.latents import EXTRACTORS, recovery_accuracy


def test_recovery_accuracy_closed_form():
    labels = np.array([0, 0, 0, 0, 1, 1])
    modes = np.array([0, 0, 1, 1, 2, 3])
    assert recovery_accuracy(np.array([[1], [1], [0], [0], [0], [1]]), labels, modes) == 1.0  # relabelled
    assert recovery_accuracy(np.array([[0], [1], [0], [0], [0], [1]]), labels, modes) == 5 / 6


def test_kmeans_recovers_modes(default_config):
    spec = default_config["experiments"]["toy2d"]["data"]
    data = DATASETS.get("toy2d").generate({**spec, "num_train": 4000}, seed=3)
    codes = EXTRACTORS.get("kmeans").extract(data["x"], data["labels"], {"clusters_per_class": 2}, seed=0)
    assert codes.tokens.shape == (4000, 1) and codes.vocab_size == 2
    assert recovery_accuracy(codes.tokens, data["labels"], data["modes"]) > 0.99
    # tokens are ranked by centroid: token 0 of class 0 is its left mode (x = -6)
    assert np.all(data["x"][(data["labels"] == 0) & (codes.tokens[:, 0] == 0), 0] < -3)


def test_toy_generator_balance(default_config):
    spec = default_config["experiments"]["toy2d"]["data"]
    data = DATASETS.get("toy2d").generate(spec, seed=0)
    assert data["x"].shape == (spec["num_train"], 2) and data["x"].dtype == np.float32
    counts = np.bincount(data["modes"], minlength=4) / len(data["modes"])
    assert np.allclose(counts, 0.25, atol=0.02)
    assert np.array_equal(np.asarray(spec["mode_classes"])[data["modes"]], data["labels"])

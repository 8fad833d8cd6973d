"""Shared fixtures: the repository root, the default config, and small configs derived from it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture()
def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture()
def tiny_config(default_config) -> dict:
    """The default config shrunk by :func:`tiny_experiment`."""
    return tiny_experiment(default_config)


def tiny_experiment(cfg: dict, **overrides) -> dict:
    """A copy of ``cfg`` whose toy experiment trains and samples in seconds (same algorithm, smaller sizes)."""
    cfg = copy.deepcopy(cfg)
    exp = cfg["experiments"]["toy2d"]
    exp["data"]["num_train"] = 2000
    exp["train"].update(steps=300, batch_size=256, checkpoint_every=100)
    exp["sampler"]["steps"] = 20
    exp["num_samples"] = 600
    exp["shard_size"] = 300
    exp["guidance"] = [1, 8]
    for key, value in overrides.items():
        exp[key] = value
    return cfg

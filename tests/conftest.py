"""Shared fixtures: the repository root, the default config, and small configs derived from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dag_helpers import tiny_experiment

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

"""Fixtures of the report tests: a working directory holding synthetic report inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from report_data import IMAGE_GUIDANCE, IMAGE_SERIES, TOY_GUIDANCE, TOY_SERIES, write_run

from metrics.io import write_json_atomic

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # tests run offline; no usage pings


@pytest.fixture
def report_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A working directory (``tmp_path``, also the CWD) with a toy and an image experiment and one extra JSON.

    Returns ``{"root", "metrics", "extra"}`` with paths relative to ``root``.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    metrics = [write_run(tmp_path, "toy2d", m, lat, g) for m, lat in TOY_SERIES for g in TOY_GUIDANCE]
    metrics += [write_run(tmp_path, "shapes", m, lat, g, dataset="shapes") for m, lat in IMAGE_SERIES
                for g in IMAGE_GUIDANCE]
    extra = Path("results/toy2d/latents/kmeans/quality.json")
    write_json_atomic(tmp_path / extra, {"experiment": "toy2d", "latent": "kmeans",
                                         "metrics": {"latent_accuracy": 0.99}})
    return {"root": tmp_path, "metrics": [str(p) for p in metrics], "extra": [str(extra)]}

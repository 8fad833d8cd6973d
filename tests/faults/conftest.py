"""Fixtures of the fault-injection suite: one small finished DAG run that the tests corrupt copies of."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dag_helpers import make_workdir, snakemake, tiny_experiment
from faults_helpers import TARGET


def fault_config(default_config: dict) -> dict:
    """The tiny config cut to two methods (one with latents) and one guidance weight: 14 jobs."""
    cfg = tiny_experiment(default_config, methods=["mdm", "kaleido"], guidance=[8])
    cfg["experiments"]["toy2d"]["train"].update(steps=200, checkpoint_every=50)
    return cfg


def fault_workdir(path: Path, default_config: dict) -> Path:
    workdir = make_workdir(path)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(fault_config(default_config)))
    return workdir


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A workdir holding a complete, uninterrupted run of :func:`fault_config` (read-only for the tests)."""
    default = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())
    workdir = fault_workdir(tmp_path_factory.mktemp("finished"), default)
    snakemake(workdir, "--cores", "2", TARGET)
    return workdir


@pytest.fixture()
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of :func:`finished_run` (timestamps kept, so Snakemake sees it as up to date)."""
    dest = tmp_path / "run"
    shutil.copytree(finished_run, dest, symlinks=True)
    return dest

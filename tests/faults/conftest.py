"""Fixtures of the fault-injection suite: one small finished DAG run that the tests corrupt copies of."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dag_helpers import snakemake
from faults_helpers import TARGET, fault_workdir


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A workdir holding a complete, uninterrupted run of :func:`fault_config` (read-only for the tests)."""
    workdir = fault_workdir(tmp_path_factory.mktemp("finished"))
    snakemake(workdir, "--cores", "2", TARGET)
    return workdir


@pytest.fixture()
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of :func:`finished_run` (timestamps kept, so Snakemake sees it as up to date)."""
    dest = tmp_path / "run"
    shutil.copytree(finished_run, dest, symlinks=True)
    return dest

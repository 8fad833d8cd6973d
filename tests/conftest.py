"""Shared fixtures: the repository root, the default config, small configs derived from it, and one finished small
DAG run that every test needing a finished run reads or copies (built once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dag_helpers import SMALL_TARGET, small_workdir, snakemake, tiny_experiment
from stage_helpers import run_module

from kaleido import config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def one_torch_thread():
    """torch on one intra-op thread for the test, restored after (tiny models: threads cost more than they give, and
    2 CI cores are shared with the loader processes)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture()
def tiny(tmp_path, tiny_config):
    """(directory holding data.npz + kmeans.npz of the tiny config, its config file, the validated config)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    out = run_module(["-m", "kaleido.data", "--config", str(path), "--experiment", "toy2d", "--out", "data.npz"],
                     tmp_path)
    assert out.returncode == 0, out.stderr
    out = run_module(["-m", "kaleido.latents", "--config", str(path), "--experiment", "toy2d", "--latent", "kmeans",
                      "--data", "data.npz", "--out", "kmeans.npz"], tmp_path)
    assert out.returncode == 0, out.stderr
    return tmp_path, path, config.validate(tiny_config)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A workdir holding a complete, uninterrupted run of :func:`dag_helpers.small_config` (read-only: copy it with
    :func:`run_copy` to change anything)."""
    workdir = small_workdir(tmp_path_factory.mktemp("finished"))
    snakemake(workdir, "--cores", "2", SMALL_TARGET)
    return workdir


@pytest.fixture()
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of :func:`finished_run` (timestamps kept, so Snakemake sees it as up to date)."""
    dest = tmp_path / "run"
    shutil.copytree(finished_run, dest, symlinks=True)
    return dest

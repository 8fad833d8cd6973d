"""Run single stage CLIs (data, latents, train) on small configs, as the DAG would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_module(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    """``python <args>`` in ``cwd`` with captured text output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, **kw)


def train_cmd(config: Path, out: str, role: str = "kaleido", latent: str = "kmeans") -> list[str]:
    """Arguments of the training stage on the ``data.npz`` / ``kmeans.npz`` the ``tiny`` fixture made."""
    cmd = ["-m", "kaleido.train", "--config", str(config), "--experiment", "toy2d", "--role", role, "--latent", latent,
           "--data", "data.npz", "--out", out, "--threads", "1", "--quiet"]
    return cmd + (["--latents", "kmeans.npz"] if latent != "none" else [])

"""Run single stage CLIs (data, latents, train) on small configs, as the DAG would."""

from __future__ import annotations

import json
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


def run_evaluate(d: Path, cfg: dict, *extra: str) -> dict:
    """The evaluate stage in-process on ``d``'s ``real.npz`` / ``fake.npz`` / ``shard.npz`` (experiment toy2d, method
    mdm, no latent, w = 8) under ``cfg`` (written to ``d/config.yaml``); ``extra``: more CLI arguments. Returns the
    metric JSON it wrote."""
    import yaml

    from kaleido import evaluate

    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    evaluate.main(["--config", str(d / "config.yaml"), "--experiment", "toy2d", "--method", "mdm", "--latent",
                   "none", "--guidance", "8", "--real", str(d / "real.npz"), "--fake", str(d / "fake.npz"), *extra,
                   "--out", str(d / "m.json"), str(d / "shard.npz")])
    return json.loads((d / "m.json").read_text())

"""Run the real Snakemake DAG in a scratch copy of the repository (no mocks)."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: what a user's checkout holds that the DAG needs; the packages are copied too, so a test can edit their code
COPIED = ("Snakefile", "workflow", "config", "profiles", "slurm", "kaleido", "metrics")


def make_workdir(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def env_for(workdir: Path) -> dict[str, str]:
    """The scratch copy's packages shadow the installed ones (so code edits in the copy are what runs)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(workdir) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MLFLOW_TRACKING_URI", None)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 1500,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m snakemake ARGS`` in ``workdir`` (``env``: variables added to :func:`env_for`'s)."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    proc = subprocess.run(cmd, cwd=workdir, env={**env_for(workdir), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def executed_rules(proc: subprocess.CompletedProcess) -> list[str]:
    """Rule names of the jobs a (dry-)run executed, one entry per job."""
    return re.findall(r"^(?:local)?rule (\w+):$", proc.stdout + proc.stderr, flags=re.MULTILINE)


def job_counts(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """The "Job stats" table of a dry run, without the total."""
    text = proc.stdout + proc.stderr
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


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
    exp.pop("guidance_by_method", None)  # every method on the one grid: the job counts the tests reason about
    exp.get("report", {}).pop("guidance_by_method", None)
    for key, value in overrides.items():
        exp[key] = value
    return cfg


def tiny_shapes(cfg: dict, **overrides) -> dict:
    """A copy of ``config/shapes.yaml`` that runs the whole image DAG in minutes on 2 CPU cores: same stages and
    models, fewer images, steps and samples (the numbers it produces are not meaningful, the wiring is)."""
    cfg = copy.deepcopy(cfg)
    exp = cfg["experiments"]["shapes"]
    exp["data"].update(num_train=256)
    exp["train"].update(steps=30, batch_size=16, warmup_steps=0, checkpoint_every=15, log_every=10)
    exp["sampler"]["steps"] = 5
    exp["num_samples"] = 48
    exp["shard_size"] = 24
    exp["guidance"] = [1, 4]
    exp["metrics"].update(feature_domain_steps=50, bootstrap_resamples=5)
    for key, value in overrides.items():
        exp[key] = value
    return cfg


#: the target every shared small run builds
SMALL_TARGET = "reports/table1.csv"


def small_config(default_config: dict) -> dict:
    """The tiny config cut to two methods (one with latents) and one guidance weight: 14 jobs."""
    cfg = tiny_experiment(default_config, methods=["mdm", "kaleido"], guidance=[8])
    cfg["experiments"]["toy2d"]["train"].update(steps=200, checkpoint_every=50)
    return cfg


def small_workdir(path: Path) -> Path:
    """A scratch copy of the repository at ``path`` configured with :func:`small_config`."""
    import yaml

    workdir = make_workdir(path)
    default = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(small_config(default)))
    return workdir

"""The exact user command `snakemake --profile slurm reports/table1.csv` against a live single-node SLURM.

`start_cluster.sh` (run by `.ci/run`, or here when we are root) brings SLURM up from Debian's packages. The test
runs a small config through sbatch and checks the outputs equal a local run's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dag_helpers import executed_rules, make_workdir, snakemake

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def _cluster_up() -> bool:
    if shutil.which("sinfo"):
        ok = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
        if ok.returncode == 0 and ok.stdout.strip():
            return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    return subprocess.run(["bash", str(HERE / "start_cluster.sh")], capture_output=True, timeout=900).returncode == 0


@pytest.fixture(scope="module")
def slurm_cluster():
    if not _cluster_up():
        pytest.skip("no SLURM here and cannot start one (needs root and apt-get): run tests/slurm/start_cluster.sh")


def _config(tiny_config: dict) -> dict:
    exp = tiny_config["experiments"]["toy2d"]
    exp["methods"] = ["mdm", "kaleido"]
    exp["shard_size"] = exp["num_samples"]
    return tiny_config


def test_profile_runs_jobs_through_sbatch(slurm_cluster, tmp_path, tiny_config):
    cfg = _config(tiny_config)
    local = make_workdir(tmp_path / "local")
    (local / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(local, "--cores", "2", "reports/table1.csv")

    cluster = make_workdir(tmp_path / "cluster")
    (cluster / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(cluster, "--profile", "slurm", "reports/table1.csv", "--slurm-init-seconds-before-status-checks",
                     "1", "--seconds-between-status-checks", "2", "--slurm-keep-successful-logs", timeout=1800)
    text = proc.stdout + proc.stderr
    jobs = executed_rules(proc)
    assert "report" in jobs and "train" in jobs
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", text)
    assert len(submitted) == len([j for j in jobs if j != "all"]), "every job went through sbatch"
    logs = list((cluster / "results" / "slurm_logs").rglob("*.log"))
    assert len(logs) == len(submitted), logs
    assert (cluster / "reports" / "table1.csv").read_bytes() == (local / "reports" / "table1.csv").read_bytes()

"""The exact user command `snakemake --profile slurm reports/table1.csv` against a live single-node SLURM.

`start_cluster.sh` (run by `.ci/run`, or here when we are root) brings SLURM up from Debian's packages. The test
runs a small config through sbatch and checks the outputs equal a local run's.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dag_helpers import env_for, executed_rules, make_workdir, snakemake

from kaleido.dryrun import submitted_jobs

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


SLURM_FLAGS = ("--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
               "--slurm-keep-successful-logs")


def _cancel_when_running(comment: str, timeout: float = 600) -> str:
    """scancel the first RUNNING job whose comment (the plugin writes ``rule_<name>_wildcards_...``) starts with
    ``comment``; return its job id."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            jobid, _, job_comment = line.partition(" ")
            if job_comment.startswith(comment):
                time.sleep(2)  # let it get under way (a checkpoint or two) before the cancel
                subprocess.run(["scancel", jobid], check=True)
                return jobid
        time.sleep(0.5)
    raise AssertionError(f"no running SLURM job with comment {comment!r} appeared")


def test_user_command_through_sbatch_with_a_cancelled_and_a_failing_job(slurm_cluster, tmp_path, tiny_config):
    """`snakemake --profile slurm reports/table1.csv`: grouped submissions; a scancel'ed training job is retried and
    resumes from its checkpoint; a job that fails (the metric evaluations: k for precision/recall larger than the
    sample count) names its SLURM log and is retried; after the fix a rerun runs only what is missing. The outputs
    equal a local run's."""
    cfg = _config(tiny_config)
    cfg["experiments"]["toy2d"]["train"].update(steps=3000, checkpoint_every=200)  # long enough to cancel mid-way
    local = make_workdir(tmp_path / "local")
    (local / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(local, "--cores", "2", "reports/table1.csv")

    cluster = make_workdir(tmp_path / "cluster")
    (cluster / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(cluster, "-n", "--profile", "slurm", "reports/table1.csv")
    planned = submitted_jobs(dry.stdout + dry.stderr)
    assert planned.get("group:sample_shards") == 1 and "sample" not in planned, planned  # 4 shards, one job

    broken = copy.deepcopy(cfg)
    broken["experiments"]["toy2d"]["metrics"]["k_pr"] = 5000  # > 600 samples: a runtime error of `evaluate`
    (cluster / "config" / "config.yaml").write_text(yaml.safe_dump(broken))
    env = env_for(cluster)
    output = tmp_path / "snakemake.out"  # a file, not a pipe: nobody reads a pipe while we wait to cancel
    with output.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--profile", "slurm", "reports/table1.csv",
                                 *SLURM_FLAGS], cwd=cluster, env=env, stdout=sink, stderr=subprocess.STDOUT)
        cancelled = _cancel_when_running("rule_train_wildcards_toy2d_kaleido_kmeans")
        proc.wait(timeout=1800)
    text = output.read_text()
    model = cluster / "results" / "toy2d" / "train" / "kaleido" / "kmeans" / "model.pt"
    assert proc.returncode != 0, "the evaluations should have failed"
    assert not (cluster / "reports" / "table1.csv").exists()
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", text)
    # every planned job once (the report is local), plus one retry of the cancelled training and one of the failed
    # evaluation group
    assert len(submitted) == sum(planned.values()) + 2, (planned, text[-4000:])
    assert f"SLURM-job '{cancelled}' failed" in text, text[-4000:]
    failed_logs = sorted((cluster / "results" / "slurm_logs" / "group_metrics_evaluate").rglob("*.log"))
    assert len(failed_logs) == 2 and all(str(p) in text for p in failed_logs), text[-4000:]
    assert "at least 5001 required" in _logs(cluster), "the rule log must say what went wrong"
    assert model.exists(), "the retried training job did not finish"

    (cluster / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    rerun = snakemake(cluster, "--profile", "slurm", "reports/table1.csv", *SLURM_FLAGS, timeout=1800)
    # only the evaluations (one group job) and the local report run again
    assert submitted_jobs(rerun.stdout + rerun.stderr) == {"group:metrics": 1} and "report" in executed_rules(rerun)
    assert (cluster / "reports" / "table1.csv").read_bytes() == (local / "reports" / "table1.csv").read_bytes()
    print(f"\nSLURM submissions: {len(submitted)} + 1 ({planned}, job {cancelled} cancelled)")


def _logs(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (workdir / "results" / "toy2d" / "logs").glob("*.log"))

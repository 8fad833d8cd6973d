"""Write failures (full disk, read-only file system) keep previous outputs; an unreachable MLflow store fails only
the report job, and the rerun logs every run exactly once."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dag_helpers import env_for, executed_rules, snakemake
from faults_helpers import TARGET, mlflow_runs
from stage_helpers import run_module

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    """A small tmpfs at ``path`` (needs root and mount rights; the test is skipped without them)."""
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _data_cmd(tmp_path: Path, tiny_config: dict, out: Path) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    return ["-m", "kaleido.data", "--config", str(config), "--experiment", "toy2d", "--out", str(out)]


@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
def test_write_failure_keeps_the_previous_output(tmp_path, tiny_config, fault):
    with _tmpfs(tmp_path / "mnt", "64k") as mnt:
        out = mnt / "train.npz"
        out.write_bytes(b"previous output")
        if fault == "read_only":
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        # 2000 toy points are ~50 KB: with the previous file and npz overhead they overflow the 64 KB tmpfs
        tiny_config["experiments"]["toy2d"]["data"]["num_train"] = 6000
        proc = run_module(_data_cmd(tmp_path, tiny_config, out), tmp_path)
        assert proc.returncode == 1, proc.stderr
        expected = "No space left on device" if fault == "disk_full" else "Read-only file system"
        assert f"cannot write {out}: {expected}" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert out.read_bytes() == b"previous output"
        assert sorted(p.name for p in mnt.iterdir()) == ["train.npz"], "a temporary file was left behind"


def test_unreachable_mlflow_fails_only_the_report_and_the_rerun_logs_once(run_copy, finished_run):
    (run_copy / "results" / "mlflow.db").unlink()
    env = env_for(run_copy)
    # a closed loopback port; no retries so the failure is immediate
    env.update(MLFLOW_TRACKING_URI="http://127.0.0.1:9", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
               MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    failed = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", TARGET], cwd=run_copy, env=env,
                            capture_output=True, text=True, timeout=600)
    assert failed.returncode != 0
    assert executed_rules(failed) == ["report"], "only the report job may run (and fail)"
    log = (run_copy / "results" / "logs" / "report.log").read_text()
    assert "127.0.0.1:9" in log, log[-2000:]

    rerun = snakemake(run_copy, "--cores", "2", TARGET)
    assert executed_rules(rerun) == ["report"]
    assert (run_copy / TARGET).read_bytes() == (finished_run / TARGET).read_bytes()
    assert mlflow_runs(run_copy) == mlflow_runs(finished_run)
    again = snakemake(run_copy, "--cores", "2", "--forcerun", "report", TARGET)
    assert set(executed_rules(again)) <= {"report", "all"}
    assert mlflow_runs(run_copy) == mlflow_runs(finished_run), "a forced rerun duplicated or changed runs"
    assert os.path.getsize(run_copy / TARGET) > 0

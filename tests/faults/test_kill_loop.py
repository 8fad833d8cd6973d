"""Kill loop: interrupt the real DAG 20+ times at seeded random moments; the end state equals an uninterrupted run.

Three kinds of kill, drawn at random each time: SIGKILL of Snakemake and every job (node loss; the rerun first
unlocks), SIGTERM of Snakemake alone (a scheduler cancel), SIGKILL of one running job (the OOM killer). After each
kill the outputs on disk are recorded; the next run may rewrite only those Snakemake marked incomplete. At the
end the table, the metric values and the MLflow runs must equal the uninterrupted run's, with no duplicate run.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dag_helpers import env_for, small_workdir, snakemake
from faults_helpers import TARGET, mlflow_runs

pytestmark = pytest.mark.slow

KILLS = 20
#: Snakemake outputs (not logs, checkpoints or the MLflow store, which jobs legitimately rewrite)
OUTPUT_GLOBS = ("results/toy2d/data/*.npz", "results/toy2d/latents/*", "results/toy2d/train/*/*/model.pt",
                "results/toy2d/samples/**/*.npz", "results/toy2d/features/**/*.npz", "results/toy2d/metrics/**/*.json",
                "reports/*.csv", "reports/*.md", "reports/*.json")
JOB_MODULES = ("kaleido.", "metrics")


def _outputs(work: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (inode, mtime_ns) of every output file present (a rewrite changes both)."""
    found = {}
    for pattern in OUTPUT_GLOBS:
        for path in work.glob(pattern):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                found[str(path.relative_to(work))] = (stat.st_ino, stat.st_mtime_ns)
    return found


def _incomplete(work: Path) -> set[str]:
    """Outputs Snakemake marked incomplete (its marker file names are the base64 of the output path)."""
    marks = work / ".snakemake" / "incomplete"
    names = set()
    for mark in marks.glob("*") if marks.exists() else []:
        try:
            names.add(base64.b64decode(mark.name.encode(), altchars=b"+_").decode())
        except ValueError:
            continue
    return names


def _job_pids(root: int) -> list[int]:
    """PIDs of running stage processes (``python -m kaleido.* / metrics``) descending from ``root``."""
    parent, argv = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:  # read both before keeping either: a process may exit between the two reads
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        parent[int(entry.name)], argv[int(entry.name)] = ppid, cmdline
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in parent.items() if ppid in frontier]
        found += children
        frontier = children
    return [pid for pid in found if b"-m" in argv[pid]
            and any(arg.decode(errors="replace").startswith(JOB_MODULES) for arg in argv[pid])]


def _metric_values(work: Path) -> dict[str, dict]:
    return {str(p.relative_to(work)): json.loads(p.read_text())["metrics"]
            for p in sorted(work.glob("results/toy2d/metrics/**/*.json"))}


def _run_until_done(work: Path, rng: random.Random, counts: dict[str, int], kinds: dict[str, int],
                    deadline: float) -> None:
    """Rerun the DAG, killing it (while fewer than KILLS kills so far) until one run completes."""
    frozen: dict[str, tuple[int, int]] = {}  # outputs that were complete at the last kill
    while True:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", TARGET], cwd=work,
                                env=env_for(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        counts["runs"] += 1
        killed = None
        if counts["kills"] < KILLS:
            # kill while work is under way: a random moment after the first job of this run started
            while proc.poll() is None and not _job_pids(proc.pid):
                time.sleep(0.05)
            try:
                proc.wait(timeout=rng.uniform(0.1, 3.0))
            except subprocess.TimeoutExpired:
                killed = rng.choice(["dag_sigkill", "snakemake_sigterm", "job_sigkill"])
                jobs = _job_pids(proc.pid)
                if killed == "job_sigkill" and not jobs:
                    killed = "dag_sigkill"
                if killed == "dag_sigkill":
                    os.killpg(proc.pid, signal.SIGKILL)
                elif killed == "snakemake_sigterm":
                    proc.send_signal(signal.SIGTERM)
                else:
                    os.kill(rng.choice(jobs), signal.SIGKILL)
                kinds[killed] = kinds.get(killed, 0) + 1
                counts["kills"] += 1
        rc = proc.wait(timeout=max(1.0, deadline - time.time()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # no job may outlive its Snakemake into the next run
        now = _outputs(work)
        rewritten = sorted(p for p, stamp in frozen.items() if p in now and now[p] != stamp)
        assert not rewritten, f"complete outputs recomputed after a kill: {rewritten}"
        if killed is None:
            assert rc == 0, "the uninterrupted run that ends a round failed"
            return
        incomplete = _incomplete(work)
        counts["incomplete_rewritten"] += len(incomplete & set(now))
        frozen = {p: stamp for p, stamp in now.items() if p not in incomplete}
        if killed == "dag_sigkill":
            snakemake(work, "--unlock", TARGET)
            counts["unlocks"] += 1
        assert time.time() < deadline, f"kill loop exceeded its time bound: {counts}"


def test_dag_survives_twenty_random_kills(finished_run, tmp_path):
    rng = random.Random(20261123)
    counts = {"rounds": 0, "kills": 0, "runs": 0, "unlocks": 0, "incomplete_rewritten": 0}
    kinds: dict[str, int] = {}
    deadline = time.time() + 1200
    while counts["kills"] < KILLS:  # a round starts from nothing; rounds repeat until KILLS kills happened
        work = small_workdir(tmp_path / f"round{counts['rounds']}")
        counts["rounds"] += 1
        _run_until_done(work, rng, counts, kinds, deadline)
        assert (work / TARGET).read_bytes() == (finished_run / TARGET).read_bytes()
        assert _metric_values(work) == _metric_values(finished_run)
        assert mlflow_runs(work) == mlflow_runs(finished_run)
    print(f"\nkill loop: {counts}, kinds {kinds}")

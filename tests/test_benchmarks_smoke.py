"""Every benchmark script still runs: ``python benchmarks/<script> --smoke`` (tiny sizes on the CPU, the real run's
code paths; ``benchmarks/_smoke.py``) exits 0 and says it was a smoke run. A benchmark nothing runs rots; a new
script is covered by being in ``benchmarks/`` (helper modules start with ``_``).

The selected scripts' smoke runs start together, PARALLEL at a time (in a scratch directory each), when the first
of these tests runs; each test checks its own script's run. A smoke run is one process on one torch thread (or a few
such processes in turn) and mostly start-up: one at a time left a core of the 2-core CI machine idle."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(path.name for path in (REPO / "benchmarks").glob("*.py") if not path.name.startswith("_"))
#: smoke runs in flight at once
PARALLEL = 2


def _smoke_run(script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, f"benchmarks/{script}", "--smoke"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_runs(request):
    """script -> the future of its smoke run, for every script whose test this session runs."""
    scripts = [item.callspec.params["script"] for item in request.session.items
               if item.module is request.module and getattr(item, "originalname", "") == "test_benchmark_smoke_run"]
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs: dict[str, Future] = {script: pool.submit(_smoke_run, script) for script in scripts}
        yield runs
        for run in runs.values():
            run.cancel()  # those not started (a session stopped early); the running ones end by themselves


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke_run(script: str, smoke_runs) -> None:
    done = smoke_runs[script].result() if script in smoke_runs else _smoke_run(script)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{script} --smoke: exit {done.returncode}\n{output[-6000:]}"
    assert "smoke run" in output, f"{script} --smoke did not say it was a smoke run:\n{output[-3000:]}"

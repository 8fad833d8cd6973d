"""Every benchmark script still runs: ``python benchmarks/<script> --smoke`` (tiny sizes on the CPU, the real run's
code paths; ``benchmarks/_smoke.py``) exits 0 and says it was a smoke run. A benchmark nothing runs rots; a new
script is covered by being in ``benchmarks/`` (helper modules start with ``_``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(path.name for path in (REPO / "benchmarks").glob("*.py") if not path.name.startswith("_"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke_run(script: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, f"benchmarks/{script}", "--smoke"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{script} --smoke: exit {done.returncode}\n{output[-6000:]}"
    assert "smoke run" in output, f"{script} --smoke did not say it was a smoke run:\n{output[-3000:]}"

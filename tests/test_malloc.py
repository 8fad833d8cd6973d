"""kaleido.malloc: the stage processes reuse freed heap memory instead of mapping fresh pages every step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: 50 rounds of eight 1 MiB arrays allocated and freed (a CPU sampling step's pattern); prints the page faults taken
_ROUNDS = """
import resource, sys
import numpy as np
if sys.argv[1] == "fixed":
    from kaleido.malloc import keep_freed_memory
    print(keep_freed_memory())
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    arrays = [np.ones(1 << 18, dtype=np.float32) for _ in range(8)]
    del arrays
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(setting: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", _ROUNDS, setting], capture_output=True, text=True, check=True,
                          env={**clean, "PYTHONPATH": str(REPO), **env})
    return done.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_fixed_thresholds_stop_the_page_faults_of_repeated_allocations() -> None:
    default = int(_run("default")[-1])
    applied, fixed = _run("fixed")
    assert applied == "True"
    # glibc's moving thresholds trim the freed 8 MiB and fault it in again each round: ~2,048 faults per round
    assert default > 40 * 1024 and int(fixed) < default / 10, (default, fixed)


def test_a_malloc_setting_in_the_environment_wins() -> None:
    assert _run("fixed", MALLOC_ARENA_MAX="2")[0] == "False"

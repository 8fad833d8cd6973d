"""Start-up time of every command-line entry point for ``--help`` and for an argument error.

    python benchmarks/cli_startup.py [--repeat 5] [--smoke]

The peer, measured in the same run, is the bare interpreter (``python -c pass``) and ``python -c "import torch"``:
a CLI at the first is paying nothing for its imports, one at the second pays for torch before it can say
anything. Prints the best of ``--repeat`` runs per command, its ratio to the bare interpreter, and whether it
meets the 1.5 s goal. Exits non-zero when a command's ``--help`` does not exit 0 or its argument error does not exit 2
(argparse's code): a command that fails on import would otherwise be timed as a fast one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import _smoke

REPO = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 1.5
MODULES = ("metrics", "kaleido.data", "kaleido.latents", "kaleido.train", "kaleido.sample", "kaleido.features",
           "kaleido.evaluate", "kaleido.edit", "kaleido.report", "metrics.features.domain")
#: every command, once (start-up is all it measures)
SMOKE = {"repeat": 1}


def best_time(argv: list[str], repeat: int, expect: int = 0) -> float:
    """Best wall time in seconds of ``python <argv>`` over ``repeat`` runs (output discarded); exits naming the
    command when a run's exit status is not ``expect``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != expect:
            sys.exit(f"python {' '.join(argv)}: exit {done.returncode}, expected {expect}\n{done.stderr[-3000:]}")
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (the best is reported)")
    args = _smoke.parse_args(parser, SMOKE, argv)
    bare = best_time(["-c", "pass"], args.repeat)
    torch_import = best_time(["-c", "import torch"], args.repeat)
    print(f"peer: bare interpreter {bare:.2f} s, import torch {torch_import:.2f} s")
    print(f"{'command':<44} {'--help':>8} {'bad arg':>8} {'x bare':>7}  goal {GOAL_SECONDS} s")
    for module in MODULES:
        help_s = best_time(["-m", module, "--help"], args.repeat)
        error_s = best_time(["-m", module, "--no-such-option"], args.repeat, expect=2)
        worst = max(help_s, error_s)
        print(f"{'python -m ' + module:<44} {help_s:>8.2f} {error_s:>8.2f} {worst / bare:>7.1f}  "
              f"{'ok' if worst <= GOAL_SECONDS else 'SLOW'}")


if __name__ == "__main__":
    main()

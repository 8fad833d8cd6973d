"""Start-up time of every command-line entry point for ``--help`` and for an argument error.

    python benchmarks/cli_startup.py [--repeat 5]

The peer, measured in the same run, is the bare interpreter (``python -c pass``) and ``python -c "import torch"``:
a CLI at the first is paying nothing for its imports, one at the second pays for torch before it can say
anything. Prints the best of ``--repeat`` runs per command, its ratio to the bare interpreter, and whether it
meets the 1.5 s goal.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 1.5
MODULES = ("metrics", "kaleido.data", "kaleido.latents", "kaleido.train", "kaleido.sample", "kaleido.features",
           "kaleido.evaluate", "kaleido.edit", "kaleido.report", "metrics.features.domain")


def best_time(argv: list[str], repeat: int) -> float:
    """Best wall time in seconds of ``python <argv>`` over ``repeat`` runs (output discarded)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (the best is reported)")
    args = parser.parse_args()
    bare = best_time(["-c", "pass"], args.repeat)
    torch_import = best_time(["-c", "import torch"], args.repeat)
    print(f"peer: bare interpreter {bare:.2f} s, import torch {torch_import:.2f} s")
    print(f"{'command':<44} {'--help':>8} {'bad arg':>8} {'x bare':>7}  goal {GOAL_SECONDS} s")
    for module in MODULES:
        help_s = best_time(["-m", module, "--help"], args.repeat)
        error_s = best_time(["-m", module, "--no-such-option"], args.repeat)
        worst = max(help_s, error_s)
        print(f"{'python -m ' + module:<44} {help_s:>8.2f} {error_s:>8.2f} {worst / bare:>7.1f}  "
              f"{'ok' if worst <= GOAL_SECONDS else 'SLOW'}")


if __name__ == "__main__":
    main()

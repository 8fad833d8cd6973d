"""Time the default target end to end on this machine, cold, in a scratch copy of the repository.

    python benchmarks/default_dag.py [--cores 2] [--config config/config.yaml] [--keep DIR] [--smoke]

Prints the wall time of `snakemake --cores N reports/table1.csv`, its ratio to the 5-minute goal of the toy
experiment, and the summed job time per rule (from Snakemake's log), so the slow stage is obvious. ``--smoke``
runs the same target on the toy experiment shrunk to seconds (``_smoke.toy_config``).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import shutil
import sys
import time
from pathlib import Path

import _smoke

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from dag_helpers import make_workdir, snakemake  # noqa: E402

GOAL_SECONDS = 300.0


def rule_times(log: str) -> dict[str, list[float]]:
    """Per rule, the wall seconds of each job, from the timestamps Snakemake prints around jobs."""
    stamp, pending, started = None, None, {}
    times: dict[str, list[float]] = collections.defaultdict(list)
    for line in log.splitlines():
        if m := re.match(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", line):
            stamp = dt.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"(?:local)?rule (\w+):$", line):
            pending = m.group(1)
        elif (m := re.match(r"\s+jobid: (\d+)$", line)) and pending:
            started[m.group(1)], pending = (pending, stamp), None
        elif (m := re.match(r"Finished jobid: (\d+)", line)) and m.group(1) in started:
            rule, begin = started.pop(m.group(1))
            times[rule].append((stamp - begin).total_seconds())
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", default="2")
    parser.add_argument("--config", type=Path, help="config to time instead of the default")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    args = _smoke.parse_args(parser, {}, argv)  # smoke: the default cores, the toy config shrunk
    with _smoke.scratch(args.keep, prefix="kaleido_bench_") as root:
        workdir = make_workdir(root)
        if args.config:
            shutil.copy(args.config, workdir / "config" / "config.yaml")
        elif args.smoke:
            _smoke.write_yaml(workdir / "config" / "config.yaml", _smoke.toy_config())
        start = time.perf_counter()
        proc = snakemake(workdir, "--cores", args.cores, "reports/table1.csv")
        seconds = time.perf_counter() - start
    times = rule_times(proc.stdout + proc.stderr)
    if not times:
        sys.exit("no job times read from Snakemake's log (has its format changed?):\n" + proc.stderr[-3000:])
    print(f"default target: {seconds:.1f} s wall on {args.cores} cores; "
          f"ratio to the {GOAL_SECONDS:.0f} s goal: {seconds / GOAL_SECONDS:.2f}")
    print(f"{'rule':<20} {'jobs':>5} {'job-seconds':>12} {'mean s':>8}")
    for rule, values in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        print(f"{rule:<20} {len(values):>5} {sum(values):>12.0f} {sum(values) / len(values):>8.1f}")


if __name__ == "__main__":
    main()

"""How many SLURM jobs a config submits, and how long `snakemake -n --profile slurm` takes to plan them.

    python benchmarks/dry_run_jobs.py [--config config/imagenet256.yaml] [--repeat 3] [--smoke]

Runs the dry run of `reports/table1.csv` with the repository's SLURM profile (job groups included) in a scratch
copy of the repository, and prints: rule instances in the DAG, cluster submissions (one per group job, one per
ungrouped job) and their ratio, and the dry run's wall time against the 20-second goal. ``--smoke``: one dry run
of the toy experiment shrunk to seconds (``_smoke.toy_config``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _smoke

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from dag_helpers import job_counts, make_workdir, snakemake  # noqa: E402

from kaleido.dryrun import submitted_jobs  # noqa: E402

GOAL_SECONDS = 20.0
#: one dry run; no --config: the toy experiment shrunk (written into the scratch copy)
SMOKE = {"repeat": 1, "config": None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--repeat", type=int, default=3, help="dry runs to time (the best is reported)")
    args = _smoke.parse_args(parser, SMOKE, argv)
    workdir = make_workdir(Path(tempfile.mkdtemp(prefix="kaleido-dryrun-")) / "repo")
    try:
        if args.config is None:
            _smoke.write_yaml(workdir / "config" / "config.yaml", _smoke.toy_config())
        else:
            shutil.copy2(args.config, workdir / "config" / "config.yaml")
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            proc = snakemake(workdir, "-n", "--profile", "slurm", "reports/table1.csv", timeout=600)
            times.append(time.perf_counter() - start)
        text = proc.stdout + proc.stderr
        instances = sum(job_counts(proc).values())
        submissions = submitted_jobs(text)
        total = sum(submissions.values())
        if not total:
            sys.exit("no SLURM submissions read from the dry run's output (has its format changed?)")
        print(f"config {args.config or 'toy (smoke sizes)'}: {instances} rule instances -> {total} SLURM submissions "
              f"({instances / max(total, 1):.1f} jobs per submission)")
        for name, count in sorted(submissions.items()):
            print(f"  {name:<24} {count:>6}")
        best = min(times)
        print(f"dry run: best {best:.1f} s of {len(times)} runs (goal {GOAL_SECONDS:.0f} s, "
              f"ratio {best / GOAL_SECONDS:.2f})")
    finally:
        shutil.rmtree(workdir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

"""What a Snakemake dry run (``snakemake -n``) would submit to a cluster: one job per group, one per other job.

Used by the dry-run benchmark (``benchmarks/dry_run_jobs.py``) and the SLURM tests.
"""

from __future__ import annotations

import re

#: rules declared ``localrules:`` in workflow/rules/*.smk (a dry run prints them like any other rule); a test keeps
#: this list and the workflow in step
LOCAL_RULES = ("report", "weights")

_GROUP = re.compile(r"^(?:\[[^\]]*\] )?Group job (\S+)", re.MULTILINE)
_TOP_LEVEL_JOB = re.compile(r"^rule (\w+):$", re.MULTILINE)  # group members are indented; local rules say localrule


def submitted_jobs(dry_run_output: str) -> dict[str, int]:
    """Cluster submissions per rule name (ungrouped jobs) or ``group:NAME`` (one per group job); local rules are
    not submitted."""
    counts: dict[str, int] = {}
    for name in _TOP_LEVEL_JOB.findall(dry_run_output):
        if name in LOCAL_RULES:
            continue
        counts[name] = counts.get(name, 0) + 1
    for name in _GROUP.findall(dry_run_output):
        counts[f"group:{name}"] = counts.get(f"group:{name}", 0) + 1
    return counts

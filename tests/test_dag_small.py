"""Small-config DAG runs: determinism, kill-and-resume, config errors, and the SLURM profile's dry run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from dag_helpers import env_for, executed_rules, job_counts, make_workdir, small_workdir, snakemake

from kaleido import config
from kaleido.dryrun import LOCAL_RULES, submitted_jobs

pytestmark = pytest.mark.slow


def _small_workdir(path, tiny_config):
    workdir = make_workdir(path)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config))
    return workdir


def test_same_config_same_table_and_kill_resume(tmp_path, finished_run):
    first = finished_run  # the shared uninterrupted run of the same config

    second = small_workdir(tmp_path / "second")
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "reports/table1.csv"], cwd=second,
                            env=env_for(second), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    done = second / "results" / "toy2d" / "train" / "mdm" / "none" / "model.pt"
    # a sampling job of `mdm` has started only once Snakemake recorded the mdm training job as complete
    logs = second / "results" / "toy2d" / "logs"
    deadline = time.time() + 300
    while not list(logs.glob("sample_mdm_none_*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert done.exists(), "the first model never finished"
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every running job
    proc.wait()
    finished_mtime = done.stat().st_mtime_ns
    snakemake(second, "--unlock", "reports/table1.csv")  # a SIGKILLed Snakemake cannot remove its own lock
    rerun = snakemake(second, "--cores", "2", "reports/table1.csv")
    assert "report" in executed_rules(rerun)  # the rest of the work was done
    assert done.stat().st_mtime_ns == finished_mtime, "a finished model was recomputed"
    assert (second / "reports" / "table1.csv").read_bytes() == (first / "reports" / "table1.csv").read_bytes()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda e: e["methods"].append("mdn"), "'mdn' is not one of"),
        (lambda e: e["latents"].update(bboxx={}), "'bboxx' is not one of"),
        (lambda e: e.update(num_samples=-3), "num_samples: -3 is less than the minimum of 1"),
        (lambda e: e["train"].update(steps="many"), "train.steps: 'many' is not of type 'integer'"),
        (lambda e: e.pop("seed"), "'seed' is a required property"),
    ],
)
def test_config_errors_stop_before_any_job(tmp_path, tiny_config, edit, expected):
    edit(tiny_config["experiments"]["toy2d"])
    workdir = _small_workdir(tmp_path, tiny_config)
    proc = snakemake(workdir, "--cores", "1", "reports/table1.csv", check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr + proc.stdout
    assert "config.experiments.toy2d" in proc.stderr + proc.stdout
    assert not (workdir / "results").exists(), "a job ran despite the config error"


def test_slurm_profile_dry_run_lists_every_stage(tmp_path, default_config):
    workdir = make_workdir(tmp_path)
    proc = snakemake(workdir, "-n", "--profile", "slurm", "reports/table1.csv")
    counts = job_counts(proc)
    assert set(counts) == {"data", "latents", "train", "sample", "features_reference", "features_samples", "evaluate",
                           "report"}
    assert counts["train"] == 3
    # grouped (slurm/config.yaml): sampling shards and feature sets 8 to a job, evaluations 32; the report runs
    # locally. The default: 24 cells of one shard -> 3 + 3 + 1 submissions.
    cfg = config.validate(default_config)
    cells = len(config.runs(cfg))
    shards = cells * config.num_shards(cfg["experiments"]["toy2d"])
    assert counts["sample"] == shards and counts["features_samples"] == counts["evaluate"] == cells
    planned = submitted_jobs(proc.stdout + proc.stderr)
    assert planned == {"data": 1, "latents": 1, "train": 3, "features_reference": 1,
                       "group:sample_shards": -(-shards // 8), "group:features": -(-cells // 8),
                       "group:metrics": -(-cells // 32)}, planned


def test_imagenet_config_dry_run_job_count(tmp_path, repo):
    """The paper-scale config plans 1116 jobs (features on three networks, 9 pretrained artifacts, 16 extraction jobs
    for each of the 3 per-image latent types) but submits few: 900 sampling shards go in 113 groups, and the weights
    jobs run where Snakemake runs."""
    workdir = make_workdir(tmp_path)
    (workdir / "config" / "config.yaml").write_text((repo / "config" / "imagenet256.yaml").read_text())
    proc = snakemake(workdir, "-n", "--profile", "slurm", "reports/table1.csv")
    counts = job_counts(proc)
    assert counts["sample"] == 900 and counts["train"] == 6 and counts["weights"] == 9, counts
    assert counts["latents_job"] == 48 and counts["latents"] == 4, counts
    assert sum(counts.values()) == 1116, counts
    planned = submitted_jobs(proc.stdout + proc.stderr)
    assert planned == {"data": 1, "latents_job": 48, "latents": 4, "train": 6, "features_reference": 3,
                       "group:sample_shards": 113,
                       "group:features": 14, "group:metrics": 2}, planned


def test_cc12m_config_dry_run_job_count(tmp_path, repo):
    """The text-to-image config plans in seconds without its data (``--configfile``, as a user runs it): 1222 jobs,
    64 extraction jobs for each of the 3 per-image latent types, 8 pretrained artifacts (no SSCD: MSS needs several
    samples per caption), the same 900 sampling shards as ImageNet in 113 groups."""
    workdir = make_workdir(tmp_path)
    proc = snakemake(workdir, "-n", "--profile", "slurm", "reports/table1.csv", "--configfile", "config/cc12m.yaml")
    counts = job_counts(proc)
    assert counts["sample"] == 900 and counts["train"] == 6 and counts["weights"] == 8, counts
    assert counts["latents_job"] == 192 and counts["latents"] == 4, counts
    assert counts["features_reference"] == 2 and counts["evaluate"] == 36, counts
    assert sum(counts.values()) == 1222, counts
    planned = submitted_jobs(proc.stdout + proc.stderr)
    assert planned == {"data": 1, "latents_job": 192, "latents": 4, "train": 6, "features_reference": 2,
                       "group:sample_shards": 113, "group:features": 9, "group:metrics": 2}, planned


@pytest.mark.parametrize("config_name", ["config.yaml", "imagenet256.yaml", "cc12m.yaml"])
def test_group_jobs_request_one_gpu(repo, config_name):
    """Snakemake's own group sizing (GroupResources.basic_layered) under the profile's per-group limits: a group
    of GPU sampling shards asks for one GPU and runs them in series; CPU groups run their jobs side by side."""
    from snakemake.resources import GroupResources, Resources, ResourceScopes

    profile = yaml.safe_load((repo / "slurm" / "config.yaml").read_text())
    cfg = yaml.safe_load((repo / "config" / config_name).read_text())
    scopes = ResourceScopes(dict(item.split("=") for item in profile["set-resource-scopes"]))
    assert scopes.is_local("gpu")  # a per-group pool, not a workflow-wide limit on GPU jobs in flight
    limits = Resources.parse(profile["resources"], allow_expressions=False)
    per_group = dict(item.split("=") for item in profile["group-components"])["sample_shards"]
    job = {**cfg["resources"]["default"], **cfg["resources"].get("sample", {}), "_cores": 1}

    class Shard:
        pipe_group = None
        resources = job

    group = GroupResources.basic_layered([[Shard() for _ in range(int(per_group))]], constraints=limits,
                                         run_local=False, additive_resources=["runtime"], sortby=["runtime"])
    if job.get("gpu", 0):
        assert group["gpu"] == 1 and group["mem_mb"] == job["mem_mb"] and group["runtime"] == 8 * job["runtime"]
    else:
        assert group["gpu"] == 0 and group["mem_mb"] == 8 * job["mem_mb"] and group["runtime"] == job["runtime"]


def test_local_rules_match_the_workflow(repo):
    declared = set()
    for path in (repo / "workflow" / "rules").glob("*.smk"):
        for block in re.findall(r"^localrules:\n((?:    \w+,?\n)+)", path.read_text(), flags=re.MULTILINE):
            declared |= {name.strip(" ,") for name in block.splitlines()}
    assert declared == set(LOCAL_RULES)


def test_nested_command_line_override_reads_numbers_as_yaml(tmp_path, tiny_config):
    """`--config experiments='{toy2d: {...}}'`: Snakemake hands nested scalars over as strings; they count as YAML."""
    workdir = _small_workdir(tmp_path, tiny_config)
    proc = snakemake(workdir, "-n", "reports/table1.csv", "--config",
                     "experiments={toy2d: {guidance: [1, 8], num_samples: 200}}")
    samples = re.findall(r"wildcards: exp=toy2d, method=mdm, latent=none, guidance=(\S+), shard=000", proc.stdout)
    assert sorted(set(samples)) == ["1", "8"], proc.stdout[-2000:]

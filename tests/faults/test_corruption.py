"""Corrupted inputs are detected, named, refused, and regenerated after deletion (only what depends on them).

Every artifact the DAG passes between stages is a zip container (``.npz``, ``torch.save``) whose members carry
CRC-32 checksums; the readers verify them (``torch.load`` alone would not), so a flipped byte or a truncated
file is an error naming the file, never a silently different number.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dag_helpers import env_for, executed_rules, snakemake
from faults_helpers import TARGET, corrupt

pytestmark = pytest.mark.slow

EXP = "results/toy2d"
SHARD = f"{EXP}/samples/mdm/none/w8/shard000.npz"


def _config(run: Path) -> Path:
    (config,) = (run / "results" / ".configs").glob("*.yaml")
    return config


def _consumers(run: Path, bad: Path, out: Path) -> dict[str, list[str]]:
    """The stage command that reads each kind of artifact, with the artifact replaced by ``bad``."""
    cfg = ["--config", str(_config(run)), "--experiment", "toy2d", "--out", str(out)]
    exp = run / EXP
    return {
        "data": ["kaleido.latents", *cfg, "--latent", "kmeans", "--data", str(bad)],
        "latents": ["kaleido.train", *cfg, "--role", "kaleido", "--latent", "kmeans", "--data",
                    str(exp / "data/train.npz"), "--latents", str(bad), "--quiet"],
        "model": ["kaleido.sample", *cfg, "--method", "mdm", "--guidance", "8", "--shard", "0",
                  "--model", f"mdm={bad}", "--quiet"],
        "checkpoint": ["kaleido.train", *cfg, "--role", "mdm", "--data", str(exp / "data/train.npz"), "--quiet"],
        "samples": ["metrics", "extract", "--net", "identity", "--out", str(out), str(bad)],
        "features": ["kaleido.evaluate", *cfg, "--method", "mdm", "--latent", "none", "--guidance", "8",
                     "--real", str(exp / "features/identity/reference.npz"), "--fake", str(bad),
                     str(run / SHARD)],
    }


ARTIFACTS = {
    "data": "data/train.npz",
    "latents": "latents/kmeans.npz",
    "model": "train/mdm/none/model.pt",
    "checkpoint": "train/mdm/none/checkpoint.pt",
    "samples": "samples/mdm/none/w8/shard000.npz",
    "features": "features/identity/mdm/none/w8.npz",
}


@pytest.mark.parametrize("mode", ["flip", "truncate"])
@pytest.mark.parametrize("kind", sorted(ARTIFACTS))
def test_corrupted_artifact_is_named_and_refused(finished_run, tmp_path, kind, mode):
    original = finished_run / EXP / ARTIFACTS[kind]
    out = tmp_path / "out" / ("checkpoint_dir/model.pt" if kind == "checkpoint" else "result.npz")
    bad = out.parent / "checkpoint.pt" if kind == "checkpoint" else tmp_path / original.name
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(original.read_bytes())
    corrupt(bad, mode, seed=len(kind))
    proc = subprocess.run([sys.executable, "-m", *_consumers(finished_run, bad, out)[kind]], capture_output=True,
                          text=True, env=env_for(finished_run), timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(bad) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not out.exists(), "a step wrote an output from a corrupted input"


def test_rerun_after_deleting_a_corrupt_shard_regenerates_only_its_dependents(run_copy):
    shard = run_copy / SHARD
    table = (run_copy / TARGET).read_bytes()
    corrupt(shard, "flip", seed=1)  # the rewrite makes it newer: Snakemake reruns what reads it, which refuses it
    failed = snakemake(run_copy, "--cores", "2", TARGET, check=False)
    assert failed.returncode != 0
    assert "shard000.npz" in failed.stdout + failed.stderr + _logs(run_copy)
    assert (run_copy / TARGET).read_bytes() == table, "the report was rebuilt from a corrupted shard"

    shard.unlink()  # the documented recovery: delete the damaged file, name it beside the target
    rerun = snakemake(run_copy, "--cores", "2", TARGET, SHARD)
    assert sorted(executed_rules(rerun)) == ["evaluate", "features_samples", "report", "sample"]
    assert (run_copy / TARGET).read_bytes() == table


def test_rerun_after_deleting_a_corrupt_model_retrains_only_that_model(run_copy):
    model = run_copy / EXP / "train/mdm/none/model.pt"
    other = run_copy / EXP / "train/kaleido/kmeans/model.pt"
    other_mtime = other.stat().st_mtime_ns
    corrupt(model, "truncate", seed=2)
    failed = snakemake(run_copy, "--cores", "2", TARGET, check=False)
    assert failed.returncode != 0 and "model.pt" in failed.stdout + failed.stderr + _logs(run_copy)

    model.unlink()
    rerun = snakemake(run_copy, "--cores", "2", TARGET, str(model.relative_to(run_copy)))
    counts = {rule: executed_rules(rerun).count(rule) for rule in set(executed_rules(rerun))}
    # mdm's model (resumed from its final checkpoint), its two shards, their features and metrics, the report;
    # kaleido's branch is untouched
    assert counts == {"train": 1, "sample": 2, "features_samples": 1, "evaluate": 1, "report": 1}, counts
    assert other.stat().st_mtime_ns == other_mtime


def _logs(run: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (run / EXP / "logs").glob("*.log"))


def test_checkpoint_reader_verifies_checksums(tmp_path):
    """``torch.load`` itself loads a flipped weight byte silently; ``checkpoint.load`` must not."""
    import torch

    from kaleido import checkpoint
    from metrics.errors import InputError

    path = tmp_path / "c.pt"
    checkpoint.save(path, {"w": torch.arange(4096, dtype=torch.float32)})
    corrupt(path, "flip", seed=0, member_data=True)
    assert not torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(4096, dtype=torch.float32))
    with pytest.raises(InputError, match=f"{path}.*checksum mismatch"):
        checkpoint.load(path)
    os.remove(path)

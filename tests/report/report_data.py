"""Synthetic report inputs: metric JSON files and 2-D sample shards, written with the ``metrics.io`` helpers.

A uniquely named module (not ``conftest``) so tests can import it whatever other conftest files exist.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from metrics.io import save_npz_atomic, write_json_atomic

#: Runs of the synthetic toy experiment: (method, latent) x guidance.
TOY_SERIES = (("mdm", "none"), ("kaleido", "kmeans"), ("mdm_cads", "none"))
TOY_GUIDANCE = (1.0, 8.0)
#: Runs of the synthetic image experiment (no mode metrics, no scatter).
IMAGE_SERIES = (("kaleido", "text"), ("mdm", "none"))
IMAGE_GUIDANCE = (2.0,)


def fake_provenance(experiment: str) -> dict[str, Any]:
    """A provenance record shaped like :func:`kaleido.provenance.provenance`'s, with a nested config."""
    return {
        "config": {"experiment": experiment, "data": {"name": experiment, "modes": 8, "std": 0.05},
                   "sample": {"guidance": [1, 5, 8, 25], "num_samples": 1000}, "train": {"lr": 1e-4}},
        "config_hash": "0123456789abcdef", "entry_point": "kaleido.evaluate", "code_hash": "fedcba9876543210",
        "git": {"commit": "a" * 40, "dirty": True}, "packages": {"torch": "2.14.1", "numpy": "2.3.0"},
    }


def toy_samples(num: int, guidance: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``num`` points (num, 2) of an 8-mode ring mixture and their mode labels (num,); higher guidance keeps
    fewer modes, like the paper's fig. 3."""
    rng = np.random.default_rng(seed)
    modes = 8 if guidance < 5 else 3
    labels = rng.integers(0, modes, size=num)
    angles = 2 * math.pi * labels / 8
    centres = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return (centres + 0.05 * rng.standard_normal((num, 2))).astype(np.float32), labels.astype(np.int64)


def write_run(root: Path, experiment: str, method: str, latent: str, guidance: float, *, dataset: str = "toy2d",
              fd: float | None = None, shards: int = 2, per_shard: int = 300) -> Path:
    """Write one run's metric JSON (+ sample shards for toy data) under ``root``; return the JSON path relative
    to ``root`` (sample paths inside it are relative to ``root`` too, as the DAG writes them)."""
    seed = zlib.crc32(f"{experiment}/{method}/{latent}/{guidance}".encode())
    run_dir = f"{method}/{latent}/w{guidance:g}"
    samples = []
    if dataset == "toy2d":
        for k in range(shards):
            rel = f"results/{experiment}/samples/{run_dir}/shard{k:03d}.npz"
            x, labels = toy_samples(per_shard, guidance, seed + k)
            save_npz_atomic(root / rel, meta={"shard": k}, x=x, labels=labels,
                            index=np.arange(k * per_shard, (k + 1) * per_shard, dtype=np.int64))
            samples.append(rel)
    metrics: dict[str, Any] = {"fd": fd if fd is not None else 1.0 / guidance + 0.1 * len(method),
                               "precision": 0.9, "recall": 0.5 / guidance, "density": 1.0, "coverage": 0.8,
                               "vendi": 1.9 + guidance / 10}
    if dataset == "toy2d":
        metrics.update(modes_covered=8 if guidance < 5 else 3, mode_entropy=0.1)
    else:
        metrics.update(mss=0.25)
    doc = {
        "experiment": experiment, "dataset": dataset, "method": method, "latent": latent, "guidance": guidance,
        "num_samples": shards * per_shard, "feature_net": "identity" if dataset == "toy2d" else "inception",
        "metrics": metrics, "metric_options": {"k_pr": 3, "k_dc": 5, "vendi_q": 1.0, "modes_min_share": 0.05},
        "samples": samples, "provenance": fake_provenance(experiment),
    }
    rel_json = Path(f"results/{experiment}/metrics/{run_dir}.json")
    write_json_atomic(root / rel_json, doc)
    return rel_json


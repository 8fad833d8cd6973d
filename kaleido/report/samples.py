"""Read the first points of a run's 2-D sample shards (toy data) for scatter plots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kaleido.report.collect import MetricRecord, ReportInputError
from metrics.io import load_npz


def load_toy_points(shards: Sequence[str | os.PathLike[str]], max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``max_points`` samples of ``shards``, read in the given order until enough are found.

    Relative shard paths are resolved against the current directory (the Snakemake working directory).

    Returns:
        ``(points, labels)``: float32 ``(N, 2)`` sample coordinates and int64 ``(N,)`` class labels,
        ``N <= max_points``.
    Raises:
        FileNotFoundError / ValueError naming the shard when it is missing, unreadable or not 2-D.
    """
    points: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    remaining = max_points
    for shard in shards:
        if remaining <= 0:
            break
        data = load_npz(Path(shard), required=("x", "labels"))
        x, y = np.asarray(data["x"]), np.asarray(data["labels"])
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"{shard}: 'x' must be 2-D toy points of shape (n, 2), got {x.shape}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"{shard}: 'labels' shape {y.shape} does not match 'x' shape {x.shape}")
        points.append(x[:remaining].astype(np.float32, copy=False))
        labels.append(y[:remaining].astype(np.int64, copy=False))
        remaining -= len(points[-1])
    if not points:
        return np.zeros((0, 2), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(points), np.concatenate(labels)


def check_toy_samples(records: Sequence[MetricRecord]) -> None:
    """Fail early, before any output is written, when a toy run lists no shards or a shard that is missing.

    Raises:
        ReportInputError: naming every metric JSON with missing shards.
    """
    problems = []
    for record in records:
        if not record.is_toy:
            continue
        missing = [shard for shard in record.samples if not Path(shard).is_file()]
        if not record.samples:
            problems.append(f"{record.path}: toy run lists no sample shards under 'samples'")
        elif missing:
            problems.append(f"{record.path}: sample shards not found (relative to {Path.cwd()}): {missing}")
    if problems:
        raise ReportInputError("missing toy samples:\n  " + "\n  ".join(problems))

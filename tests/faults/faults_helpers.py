"""Fault injectors shared by the fault-injection tests."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

from dag_helpers import SMALL_TARGET as TARGET  # noqa: F401  (the fault tests' target)


def corrupt(path: Path, mode: str, seed: int, member_data: bool = True) -> str:
    """Damage ``path`` in place; return a description of what was done.

    ``flip``: invert one byte inside the payload of the archive's largest member (the bytes that become numbers,
    so an undetected flip would change a result); ``truncate``: cut the file to 30-90 % of its length.
    """
    rng = random.Random(seed)
    data = bytearray(path.read_bytes())
    if mode == "truncate":
        cut = int(len(data) * rng.uniform(0.3, 0.9))
        path.write_bytes(bytes(data[:cut]))
        return f"truncated to {cut} of {len(data)} bytes"
    if mode != "flip":
        raise ValueError(f"mode={mode!r}; expected 'flip' or 'truncate'")
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    # local-header extra fields can differ from the central directory's; read the real lengths from the header
    name_len = int.from_bytes(data[member.header_offset + 26:member.header_offset + 28], "little")
    extra_len = int.from_bytes(data[member.header_offset + 28:member.header_offset + 30], "little")
    start = member.header_offset + 30 + name_len + extra_len
    offset = start + rng.randrange(member.compress_size) if member_data else rng.randrange(len(data))
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return f"flipped byte {offset} (member {member.filename})"


def mlflow_runs(work: Path) -> dict[str, dict[str, float]]:
    """Run key tag -> metrics of the runs in the experiment's local MLflow store (see :func:`tracked_runs`)."""
    return tracked_runs(f"sqlite:///{work / 'results' / 'mlflow.db'}")


def tracked_runs(uri: str) -> dict[str, dict[str, float]]:
    """Run key tag -> metrics of the runs of experiment ``kaleido/toy2d`` at tracking ``uri``, training runs
    without their wall-clock ``seconds``; fails on a duplicate key."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("kaleido/toy2d")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    keys = [run.data.tags.get("kaleido.run_key", run.info.run_id) for run in runs]
    assert len(keys) == len(set(keys)), f"duplicate MLflow runs: {sorted(keys)}"
    # the training curves' wall-clock field differs between two runs of the same code; every other value must not
    return {key: {k: v for k, v in run.data.metrics.items() if k != "seconds"}
            for key, run in zip(keys, runs, strict=True)}

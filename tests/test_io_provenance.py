"""Atomic outputs and the code hashes that drive Snakemake reruns."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from kaleido.guidance import SCHEMES
from kaleido.provenance import project_modules, source_hash
from metrics.errors import InputError
from metrics.io import atomic_path, load_npz, load_npz_head, save_npz_atomic, write_json_atomic
from metrics.metric_registry import METRICS


def test_failed_write_keeps_the_previous_output(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(target, {"ok": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "ok": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_truncated_npz_is_named(tmp_path):
    path = tmp_path / "shard000.npz"
    save_npz_atomic(path, meta={"a": 1}, x=np.zeros((10, 2)))
    assert load_npz(path, required=("x",))["meta"] == {"a": 1}
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="shard000.npz: unreadable or corrupted npz"):
        load_npz(path)


def test_npz_subsets_read_only_what_is_asked(tmp_path):
    strings = np.array([f"item {i} " + "x" * (i % 7) for i in range(1000)])
    ids = np.arange(3000, dtype=np.int64).reshape(1000, 3)
    save_npz_atomic(tmp_path / "a.npz", meta={"k": 1}, strings=strings, tokens=ids, other=np.zeros(5))
    part = load_npz(tmp_path / "a.npz", required=("tokens",), keys=("absent",))
    assert sorted(part) == ["meta", "tokens"] and part["meta"] == {"k": 1}
    np.testing.assert_array_equal(load_npz_head(tmp_path / "a.npz", "strings", 256), strings[:256])
    np.testing.assert_array_equal(load_npz_head(tmp_path / "a.npz", "tokens", 5000), ids)
    assert load_npz_head(tmp_path / "a.npz", "tokens", 0).shape == (0, 3)
    with pytest.raises(InputError, match="missing array 'nope'"):
        load_npz_head(tmp_path / "a.npz", "nope", 1)


def test_stage_code_hashes_cover_exactly_the_code_each_stage_runs():
    modules = {entry: {name for name, _ in project_modules(entry)}
               for entry in ("kaleido.train", "kaleido.sample", "kaleido.evaluate", "kaleido.report")}
    assert "kaleido.report.figures" in modules["kaleido.report"]
    assert not any(name.startswith("kaleido.report") for name in modules["kaleido.sample"])
    assert "metrics.prdc" in modules["kaleido.evaluate"] and "metrics.prdc" not in modules["kaleido.sample"]
    # a scheme's code is sampling's (its registry entry, read by the config, is everyone's)
    assert "kaleido.guidance.schemes" in modules["kaleido.sample"]
    assert "kaleido.guidance.schemes" not in modules["kaleido.train"]
    for name in SCHEMES.names():
        make = SCHEMES.get(name).make
        if isinstance(make, str):
            assert make.partition(":")[0] in modules["kaleido.sample"], name
    for name in METRICS.names():  # likewise a metric's code is the metric step's
        compute = METRICS.get(name).compute
        if isinstance(compute, str):
            assert compute.partition(":")[0] in modules["kaleido.evaluate"], name
            assert compute.partition(":")[0] not in modules["kaleido.train"], name
    assert "kaleido.models.mlp" in modules["kaleido.train"]
    assert len(source_hash("kaleido.train")) == 16

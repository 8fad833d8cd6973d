"""The data path's memory is bounded by the batch and the shard, not by the set: each of the data, latents, train
and features stages peaks within 15 % at N and at 4N images (``benchmarks/memory_scaling.py``, at a size where a
stage that held the set would show it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
N, SIZE = 4000, 64


def _benchmark():
    spec = importlib.util.spec_from_file_location("memory_scaling", REPO / "benchmarks" / "memory_scaling.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["memory_scaling"] = module  # its process pool pickles functions by module name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_each_stage_peak_rss_grows_less_than_15_percent_from_n_to_4n(tmp_path):
    table = _benchmark().scaling(tmp_path, N, size=SIZE, shard_size=1000, steps=5, batch=8, threads=2)
    extra_uint8 = 3 * N * SIZE * SIZE * 3 / 2**20  # what holding the 3N extra images as uint8 would add, MiB
    extra_model_space = extra_uint8 * 4 * (1 + 1 / 4)  # as the float32 two-level pyramid the old train held
    for stage, (small, large) in table.items():
        would_hold = extra_model_space if stage == "train" else extra_uint8
        assert would_hold > 0.15 * small, f"{stage}: the set is too small to show a stage that holds it"
        assert large < 1.15 * small, f"{stage}: peak RSS {small:.0f} MiB at {N} images, {large:.0f} MiB at {4 * N}"

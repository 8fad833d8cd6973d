"""The data path's memory is bounded by the batch and the shard, not by the set (``benchmarks/memory_scaling.py``):
from N to 4N images, each of the data, latents, train and features stages grows its peak RSS by less than half an
image's bytes per added image. A stage that held the set would grow by at least one image per image (train: its
float32 model-space pyramid, 5x that), whatever its start-up memory; what does grow is the stages' O(n) outputs and
bookkeeping (labels, latent token ids, features: ~0.35 of a 64 px image per image for the latents stage).

Every stage runs once: the benchmark measures under a fixed glibc malloc threshold
(``memory_scaling.FIXED_MALLOC``), with which the training stage's peak repeats to the MiB; under the default,
moving threshold it varied by ~70 MiB between runs of one command, as much as the growth allowed at these sizes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
N, SIZE, THREADS = 4000, 64, 2


def _benchmark():
    spec = importlib.util.spec_from_file_location("memory_scaling", REPO / "benchmarks" / "memory_scaling.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["memory_scaling"] = module  # its process pool pickles functions by module name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_each_stage_grows_less_than_half_an_image_per_added_image(tmp_path):
    bench = _benchmark()
    table = bench.scaling(tmp_path, N, size=SIZE, shard_size=1000, steps=5, batch=8, threads=THREADS, repeats=1)
    for stage, (small, large) in table.items():
        share = bench.growth_per_image(small, large, N, SIZE)
        assert share < 0.5, (f"{stage}: peak RSS {small:.0f} MiB at {N} images, {large:.0f} MiB at {4 * N}: "
                             f"{share:.2f} of an image's bytes per added image")

"""The brute-force k-NN backend on CUDA gives the CPU numbers (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics import keys
from metrics.prdc import prdc

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_low_dim_cuda_is_bit_identical_to_cpu_tree() -> None:
    # Low dimension uses elementwise IEEE float64 ops only, so CUDA and CPU agree exactly, ties included.
    rng = np.random.default_rng(0)
    real = rng.integers(0, 6, size=(3000, 2)) * 0.1
    fake = rng.integers(0, 6, size=(2500, 2)) * 0.1 + 0.05 * rng.integers(0, 2, size=(2500, 2))
    cuda = prdc(real, fake, k_pr=3, k_dc=5, device="cuda", method="brute", chunk_size=512)
    assert cuda == prdc(real, fake, k_pr=3, k_dc=5, method="tree")


def test_high_dim_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(3000, 256))
    fake = 1.1 * rng.normal(size=(2000, 256)) + 0.05
    cuda = prdc(real, fake, k_pr=3, k_dc=5, device="cuda", chunk_size=700)
    cpu = prdc(real, fake, k_pr=3, k_dc=5, device="cpu", chunk_size=700)
    for name in (keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE):
        assert cuda[name] == pytest.approx(cpu[name], rel=1e-4), name

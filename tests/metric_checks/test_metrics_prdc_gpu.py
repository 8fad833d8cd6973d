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


@pytest.mark.parametrize("precision", ["tf32", "float32", "float64"])
def test_high_dim_cuda_is_bit_identical_to_cpu_in_every_precision(precision: str) -> None:
    # Every decision the filter cannot certify is made with the canonical float64 formula (elementwise IEEE
    # operations: the same bits on both devices), so the filter's precision changes nothing.
    rng = np.random.default_rng(1)
    centres = 3.0 * rng.normal(size=(20, 256)) + 4.0
    real = (centres[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 256))).astype(np.float32)
    fake = (centres[rng.integers(0, 20, 2000)] + 1.05 * rng.normal(size=(2000, 256))).astype(np.float32)
    cpu = prdc(real, fake, k_pr=3, k_dc=5, device="cpu", chunk_size=700, precision="float64")
    assert 0 < cpu[keys.PRECISION] < 1 and 0 < cpu[keys.RECALL] < 1
    for chunk_size, key_chunk_size in ((700, 0), (512, 1100)):
        cuda = prdc(real, fake, k_pr=3, k_dc=5, device="cuda", chunk_size=chunk_size, key_chunk_size=key_chunk_size,
                    precision=precision)
        assert cuda == cpu, (chunk_size, key_chunk_size)


def test_ties_on_a_high_dimensional_lattice_cuda_equals_cpu() -> None:
    rng = np.random.default_rng(4)
    real = rng.integers(0, 2, size=(2500, 24)).astype(np.float32)
    fake = rng.integers(0, 2, size=(2000, 24)).astype(np.float32)
    cpu = prdc(real, fake, k_pr=3, k_dc=5, precision="float64")
    for precision in ("tf32", "float64"):
        assert prdc(real, fake, k_pr=3, k_dc=5, device="cuda", precision=precision, key_chunk_size=900) == cpu

"""FD and whole-set Vendi decomposed on CUDA give the CPU numbers (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.frechet import fd_from_features
from metrics.vendi import vendi_score

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


# n > d (d x d Gram) and n < d (n x n Gram; the covariances have d - n + 1 rounding-level eigenvalues whose square
# roots, ~1e-7 each, differ between LAPACK and cuSOLVER: FD agrees to ~1e-7 relative there, not 1e-12)
@pytest.mark.parametrize(("n", "dim", "fd_rel"), [(3000, 256, 1e-9), (200, 512, 1e-6)])
def test_fd_and_vendi_on_cuda_match_cpu(n: int, dim: int, fd_rel: float) -> None:
    rng = np.random.default_rng(n)
    real = rng.normal(size=(n, dim)).astype(np.float32) + 1.0
    fake = (1.2 * rng.normal(size=(n, dim)) + 0.9).astype(np.float32)
    assert fd_from_features(real, fake, device="cuda") == pytest.approx(fd_from_features(real, fake), rel=fd_rel)
    assert vendi_score(fake, q=1.0, device="cuda") == pytest.approx(vendi_score(fake, q=1.0), rel=1e-9)


@pytest.mark.parametrize("q", [1.0, 2.0])
def test_vendi_per_condition_on_cuda_matches_cpu(q: float) -> None:
    """Batched per-condition Grams on the device: the same scores per condition, groups of different sizes (one
    larger than d, so its d x d Gram is used) and blocks of several conditions included."""
    from metrics import vendi

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 24)).astype(np.float32)
    labels = np.r_[np.repeat(np.arange(60), 30), np.full(200, 60)]  # 60 conditions of 30, one of 200 (> d = 24)
    rng.shuffle(labels)
    cpu = vendi.vendi_by_condition(x, labels, q=q)
    old_block, vendi._BLOCK_VALUES = vendi._BLOCK_VALUES, 30 * 24 * 7  # blocks of 7 conditions
    try:
        cuda = vendi.vendi_by_condition(x, labels, q=q, device="cuda")
    finally:
        vendi._BLOCK_VALUES = old_block
    assert list(cuda) == list(cpu)
    for key, value in cpu.items():
        assert cuda[key] == pytest.approx(value, rel=1e-9), key

"""Counter-based randomness: a sample's draws depend on its index only, never on its batch."""

from __future__ import annotations

import pytest
import torch

from kaleido.rng import counter_normal, counter_uniform
from kaleido.seeding import derive_seed


def test_derive_seed_is_stable_and_key_sensitive():
    assert derive_seed("toy2d", 0, "sample", "mdm") == derive_seed("toy2d", 0, "sample", "mdm")
    assert derive_seed("toy2d", 0, "sample", "mdm") != derive_seed("toy2d", 0, "sample", "kaleido")
    assert 0 <= derive_seed("x") < 2**63


def test_rows_do_not_depend_on_batch_composition():
    full = counter_normal(7, torch.arange(100), stream=0, step=3, shape=(2,))
    part = counter_normal(7, torch.tensor([42, 3, 99]), stream=0, step=3, shape=(2,))
    assert torch.equal(part, full[[42, 3, 99]])


def test_streams_and_steps_differ():
    idx = torch.arange(10)
    a = counter_normal(7, idx, 0, 1, (4,))
    assert not torch.equal(a, counter_normal(7, idx, 1, 1, (4,)))
    assert not torch.equal(a, counter_normal(7, idx, 0, 2, (4,)))


def test_normal_moments_and_uniform_range():
    z = counter_normal(123, torch.arange(200_000), 0, 0, (1,)).double()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs((z**4).mean() - 3) < 0.05  # Gaussian kurtosis
    u = counter_uniform(5, torch.arange(100_000), 0, 0, 1)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.005


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_hashes_equal_the_cpu_and_normals_agree_to_an_ulp():
    """The sampler hashes its noise on the model's device: the integer hash is the CPU's bit for bit, the Box-Muller
    normals (float64 libm) within float32 rounding."""
    idx = torch.arange(1000, 1064)
    cpu_u, cuda_u = counter_uniform(9, idx, 2, 5, 4096), counter_uniform(9, idx.cuda(), 2, 5, 4096).cpu()
    assert torch.equal(cpu_u, cuda_u)
    cpu_n, cuda_n = counter_normal(9, idx, 2, 5, (4096,)), counter_normal(9, idx.cuda(), 2, 5, (4096,)).cpu()
    assert torch.allclose(cpu_n, cuda_n, rtol=1e-6, atol=1e-6)

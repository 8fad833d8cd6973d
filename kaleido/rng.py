"""Counter-based random numbers for sampling.

Noise must not depend on batch size, shard layout or device, so every value is a hash of (seed, sample index,
stream, step, element) computed with integer tensor ops (bit-identical on CPU and GPU), mapped to uniforms and,
by Box-Muller, to standard normals (float64 log / sin / cos: equal across devices up to an ulp of float64, so the
float32 normals of a CPU and a GPU agree to ~1e-7 relative, not always bit for bit).
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 integer hash (Wellons) on int64 tensors holding 32-bit values; wraps mod 2**32."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def _hash_counter(seed: int, index: torch.Tensor, stream: int, step: int, numel: int) -> torch.Tensor:
    """(len(index), numel) int64 tensor of 32-bit hashes of (seed, index, stream, step, element)."""
    index = index.to(torch.int64)
    element = torch.arange(numel, dtype=torch.int64, device=index.device)
    h = torch.full_like(index, (seed ^ (seed >> 32)) & _MASK32)
    for word in (index & _MASK32, index >> 32, torch.full_like(index, stream & _MASK32),
                 torch.full_like(index, step & _MASK32)):
        h = _mix32(h ^ word)
        h = (h + 0x9E3779B9) & _MASK32
    h = h[:, None] ^ element[None, :]
    return _mix32(_mix32(h) ^ ((seed >> 16) & _MASK32))


def counter_uniform(seed: int, index: torch.Tensor, stream: int, step: int, numel: int) -> torch.Tensor:
    """Uniforms in (0, 1), float64, shape (len(index), numel), a pure function of the counters."""
    h = _hash_counter(seed, index, stream, step, numel)
    return (h.to(torch.float64) + 0.5) / 2.0**32


def counter_normal(seed: int, index: torch.Tensor, stream: int, step: int, shape: tuple[int, ...],
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normals of shape (len(index), *shape): sample ``index[i]``'s draw for (stream, step).

    Row i depends only on (seed, index[i], stream, step), never on which other indices share the batch.
    """
    numel = math.prod(shape)
    pairs = (numel + 1) // 2
    u1 = counter_uniform(seed, index, stream, 2 * step, pairs)
    u2 = counter_uniform(seed, index, stream, 2 * step + 1, pairs)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = 2.0 * math.pi * u2
    normals = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)[:, :numel]
    return normals.reshape(len(index), *shape).to(dtype)

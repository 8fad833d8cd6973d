"""The channels-last group norm (kaleido.models.group_norm) against ``nn.GroupNorm``: the same values and gradients
up to float32 rounding, on the CPU and (gpu tests) under the CUDA training path's bf16 autocast + torch.compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kaleido.models.group_norm import GroupNorm


def _pair(channels: int, groups: int, device: str) -> tuple[nn.GroupNorm, GroupNorm]:
    reference = nn.GroupNorm(groups, channels).to(device)
    with torch.no_grad():  # affine parameters away from their (1, 0) init, so a wrong broadcast shows
        reference.weight.copy_(torch.linspace(0.5, 1.5, channels))
        reference.bias.copy_(torch.linspace(-0.3, 0.7, channels))
    ours = GroupNorm(groups, channels).to(device)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _input(shape: tuple[int, ...], device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    # per-channel offsets larger than the spread: the case where a naive E[x^2] - E[x]^2 would lose digits
    x = torch.randn(shape, generator=gen) * 0.5 + torch.linspace(-4, 4, shape[1])[None, :, None, None]
    return x.to(device).contiguous(memory_format=torch.channels_last).requires_grad_(True)


@pytest.mark.parametrize(("channels", "groups"), [(64, 32), (6, 1), (12, 3)])
def test_channels_last_values_and_gradients_equal_nn_group_norm(channels: int, groups: int) -> None:
    reference, ours = _pair(channels, groups, "cpu")
    x = _input((3, channels, 9, 7), "cpu")
    x_ref = x.detach().contiguous().requires_grad_(True)
    out, expected = ours(x), reference(x_ref)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    for p, q in ((ours.weight, reference.weight), (ours.bias, reference.bias)):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4)


def test_a_contiguous_input_takes_f_group_norm_bit_for_bit() -> None:
    reference, ours = _pair(64, 32, "cpu")
    x = _input((2, 64, 5, 5), "cpu").detach().contiguous()
    assert torch.equal(ours(x), reference(x))
    ours.by_channel = False
    x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(ours(x), reference(x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_bf16_channels_last_matches_nn_group_norm_on_cuda() -> None:
    reference, ours = _pair(64, 32, "cuda")
    x = _input((8, 64, 64, 64), "cuda").detach().to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(lambda v: torch.nn.functional.silu(ours(v)))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = compiled(x.requires_grad_(True))
        expected = torch.nn.functional.silu(reference(x.detach().contiguous().requires_grad_(True)))
    assert out.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)

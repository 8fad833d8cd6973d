"""GroupNorm whose statistics are computed per channel first, so a channels-last (NHWC) activation is read in its
own layout.

ATen's and Inductor's group norm reduce each (sample, group) over (C / G, H, W) as one run of memory: natural in
NCHW, but in NHWC a group's C / G channels are interleaved with every other group's, and the compiled training
step of ``mdm_in256`` spent its time converting layouts around the norms instead
(benchmarks/logs/denoiser_knobs_h100_train_ops.log). Here the statistics are a reduction over (H, W) per
(sample, channel), which reads NHWC memory contiguously along C, followed by a tiny per-group combination; the
normalisation itself is then one per-channel scale and shift, which fuses with the SiLU and the cast that follow.

The combination is exact, not an approximation: with n = H * W elements per channel, the group mean is the mean
of the channel means, and the group's (population) variance is the mean of the channel variances plus the
variance of the channel means. The result equals ``nn.GroupNorm``'s up to float32 rounding
(tests/test_group_norm.py); contiguous (NCHW) inputs take ``F.group_norm`` itself, so every CPU path is
unchanged bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm_by_channel(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                          eps: float) -> torch.Tensor:
    """Group norm of x (B, C, H, W) from per-channel statistics, in float32 math with a float32 output: what
    ``F.group_norm`` returns for a float32 input and, under autocast, for any input (a bf16 model run without
    autocast would get float32 here where ``F.group_norm`` returns bf16; the project always autocasts)."""
    b, c = x.shape[:2]
    xf = x.float()
    var_c, mean_c = torch.var_mean(xf, dim=(2, 3), correction=0)  # (B, C) each
    mean_cg, var_cg = mean_c.view(b, groups, c // groups), var_c.view(b, groups, c // groups)
    mean_g = mean_cg.mean(-1, keepdim=True)  # (B, G, 1)
    var_g = var_cg.mean(-1, keepdim=True) + (mean_cg - mean_g).square().mean(-1, keepdim=True)
    scale = torch.rsqrt(var_g + eps).expand(b, groups, c // groups).reshape(b, c)  # (B, C)
    shift = -mean_g.expand(b, groups, c // groups).reshape(b, c) * scale
    if weight is not None:
        scale, shift = scale * weight.float(), shift * weight.float()
    if bias is not None:
        shift = shift + bias.float()
    return xf * scale[:, :, None, None] + shift[:, :, None, None]


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state dict) that normalises a channels-last 4-D input with
    :func:`group_norm_by_channel`; any other input goes through ``F.group_norm`` unchanged. ``by_channel = False``
    sends every input to ``F.group_norm`` (benchmarks/denoiser_knobs_gpu.py compares the two)."""

    by_channel = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.by_channel and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return group_norm_by_channel(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

"""UNet with timestep embedding and cross-attention to a condition sequence, and MDM's NestedUNet.

The NestedUNet (Matryoshka Diffusion, Gu et al. 2023; apple/ml-mdm) puts a low-resolution UNet inside the
bottleneck of a high-resolution one: the outer encoder's features at the inner resolution are added to the inner
UNet's input features, the inner decoder's features are handed back to the outer decoder, and every level emits
its own prediction, so all resolutions are denoised jointly. ``inner=None`` gives a plain UNet (the degenerate
one-resolution case of the same class).

Shapes: x (B, C_img, H, W) float; t (B,) (any real dtype; integer timesteps or continuous); cond (B, S, C_cond);
mask (B, S) bool, True = a real (attended) condition position.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kaleido.models.embeddings import timestep_embedding
from kaleido.models.group_norm import GroupNorm
from kaleido.models.unet_sizes import resolve_spec


def _norm(ch: int) -> GroupNorm:
    return GroupNorm(min(32, ch) if ch % min(32, ch) == 0 else 1, ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block with an additive (scale/shift) timestep modulation."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2, self.drop, self.conv2 = _norm(cout), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class AttnBlock(nn.Module):
    """Self-attention over pixels, then cross-attention from pixels to the condition sequence (masked)."""

    def __init__(self, ch: int, cond_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm, self.qkv, self.out = _norm(ch), nn.Linear(ch, 3 * ch), nn.Linear(ch, ch)
        self.cnorm, self.q, self.kv, self.cout = nn.LayerNorm(ch), nn.Linear(ch, ch), nn.Linear(cond_dim, 2 * ch), \
            nn.Linear(ch, ch)
        for lin in (self.out, self.cout):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, heads, N, d)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = (self._split(p) for p in self.qkv(h).chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        tok = x.flatten(2).transpose(1, 2) + self.out(a)
        k, v = (self._split(p) for p in self.kv(cond).chunk(2, dim=-1))
        attn_mask = None if mask is None else mask[:, None, None, :].to(torch.bool)
        a = F.scaled_dot_product_attention(self._split(self.q(self.cnorm(tok))), k, v, attn_mask=attn_mask)
        tok = tok + self.cout(a.transpose(1, 2).flatten(2))
        return tok.transpose(1, 2).reshape(b, c, hh, ww)


class UNet(nn.Module):
    """UNet at one resolution with ``len(channels)`` levels, optionally wrapping an ``inner`` UNet at its bottleneck.

    channels: per-level widths (level 0 = input resolution, each further level halves H, W); num_res_blocks per
    level; attn_levels: the levels with self+cross attention; ``inner`` runs at resolution H / 2**(levels-1).
    """

    def __init__(self, in_ch: int, channels: list[int], num_res_blocks: int, attn_levels: list[int], cond_dim: int,
                 emb_dim: int, heads: int = 4, dropout: float = 0.0, inner: UNet | None = None,
                 time_embed: bool = True) -> None:
        super().__init__()
        self.in_ch, self.channels, self.inner = in_ch, list(channels), inner
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) \
            if time_embed else None
        self.emb_dim = emb_dim
        self.conv_in = nn.Conv2d(in_ch, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, ch = [channels[0]], channels[0]
        for lvl, width in enumerate(channels):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(nn.ModuleList([ResBlock(ch, width, emb_dim, dropout),
                                             AttnBlock(width, cond_dim, heads) if lvl in attn_levels else
                                             nn.Identity()]))
                ch = width
                skips.append(ch)
            self.down.append(blocks)
            if lvl < len(channels) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        if inner is not None:
            self.to_inner = nn.Conv2d(ch, inner.channels[0], 1)
            self.from_inner = nn.Conv2d(inner.channels[0], ch, 1)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), AttnBlock(ch, cond_dim, heads),
                                  ResBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for lvl in reversed(range(len(channels))):
            width = channels[lvl]
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(nn.ModuleList([ResBlock(ch + skips.pop(), width, emb_dim, dropout),
                                             AttnBlock(width, cond_dim, heads) if lvl in attn_levels else
                                             nn.Identity()]))
                ch = width
            self.up.append(blocks)
            if lvl > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.norm_out, self.conv_out = _norm(ch), nn.Conv2d(ch, in_ch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def resolutions_depth(self) -> int:
        """Number of nested resolutions (1 for a plain UNet)."""
        return 1 + (self.inner.resolutions_depth if self.inner is not None else 0)

    @staticmethod
    def _run_block(pair: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor, cond: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        h = pair[0](h, emb)
        return pair[1](h, cond, mask) if isinstance(pair[1], AttnBlock) else h

    def _run(self, xs: list[torch.Tensor], emb: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None,
             injected: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Predictions per resolution (own first) and this UNet's top-level decoder features (B, channels[0], H, W)."""
        h = self.conv_in(xs[0])
        if injected is not None:
            h = h + injected
        hs = [h]
        for lvl, blocks in enumerate(self.down):
            for pair in blocks:
                h = self._run_block(pair, h, emb, cond, mask)
                hs.append(h)
            if lvl < len(self.downsample):
                h = self.downsample[lvl](h)
                hs.append(h)
        inner_preds: list[torch.Tensor] = []
        if self.inner is not None:
            inner_preds, feat = self.inner._run(xs[1:], emb, cond, mask, injected=self.to_inner(h))
            h = h + self.from_inner(feat)
        h = self.mid[0](h, emb)
        h = self.mid[1](h, cond, mask)
        h = self.mid[2](h, emb)
        for i, blocks in enumerate(self.up):
            for pair in blocks:
                h = self._run_block(pair, torch.cat([h, hs.pop()], dim=1), emb, cond, mask)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return [self.conv_out(F.silu(self.norm_out(h)))] + inner_preds, h

    def forward(self, x: torch.Tensor | list[torch.Tensor], t: torch.Tensor, cond: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor | list[torch.Tensor]:
        """x: one image batch (B, C, H, W), or for a nested net the list high -> low resolution of noisy images.

        Returns the prediction(s) in the same form as ``x``.
        """
        xs = [x] if isinstance(x, torch.Tensor) else list(x)
        if len(xs) != self.resolutions_depth:
            raise ValueError(f"this UNet denoises {self.resolutions_depth} resolution(s); got {len(xs)} inputs")
        emb = self.time_mlp(timestep_embedding(t, self.emb_dim))
        preds, _ = self._run(xs, emb, cond, mask)
        return preds[0] if isinstance(x, torch.Tensor) else preds


def build_unet(spec: dict[str, Any], in_ch: int, cond_dim: int) -> UNet:
    """A (Nested)UNet from a size name (``spec["size"]``, UNET_SIZES) with any keys of ``spec`` overriding it."""
    cfg = resolve_spec(spec)
    net: UNet | None = None
    for i, lvl in enumerate(reversed(cfg["levels"])):
        outermost = i == len(cfg["levels"]) - 1
        net = UNet(in_ch, lvl["channels"], lvl["num_res_blocks"], lvl.get("attn_levels", []), cond_dim,
                   cfg["emb_dim"], heads=cfg.get("heads", 4), dropout=cfg.get("dropout", 0.0), inner=net,
                   time_embed=outermost)
    assert net is not None
    return net


def image_pyramid(x: torch.Tensor, resolutions: list[int]) -> list[torch.Tensor]:
    """Clean images (B, C, H, W) -> list at each resolution (area downsampling), high -> low."""
    return [x if r == x.shape[-1] else F.interpolate(x, size=(r, r), mode="area") for r in resolutions]


def multiresolution_loss(preds: list[torch.Tensor], targets: list[torch.Tensor],
                         weights: list[float] | None = None) -> torch.Tensor:
    """MDM's multi-resolution loss: sum over levels of w_l * mean squared error at level l (scalar).

    With one level it is the plain MSE. Default weights are 1 per level (ml-mdm's default).
    """
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions vs {len(targets)} targets")
    weights = [1.0] * len(preds) if weights is None else weights
    return sum(w * torch.mean((p - q) ** 2) for w, p, q in zip(weights, preds, targets, strict=True))

"""Kaleido's latent-augmented image denoiser (and MDM, the same without the prior), ConditionalDenoiser's interface.

Condition y (B, S_enc + L, C) = concat along the sequence axis of the frozen T5 encoder states of the class name /
caption and the AR prior's final-layer decoder states over the latent tokens, each projected to ``cond_dim``. MDM
(``vocab_size == 0``) uses the encoder part only. Padding positions carry learned pad embeddings instead of a
key mask, so y stays one tensor that guidance (CFG, CADS noise, autoguidance) can treat like the toy's vector.

Images travel as flat float vectors (B, data_dim): the concatenation, high -> low resolution, of the C x r x r
images of every nested level (channels-first, row-major), so the generic flat-vector train/sample loops apply.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kaleido.errors import ConfigError
from kaleido.models.archs import ARCHS
from kaleido.models.interface import not_model_input
from kaleido.models.t5 import T5ContextEncoder, T5LatentPrior, build_t5_prior
from kaleido.models.unet import image_pyramid, multiresolution_loss
from kaleido.models.unet_sizes import level_resolutions
from metrics.errors import InputError


class ImageDenoiser(nn.Module):
    """Nested-UNet denoiser conditioned by cross-attention on [T5 encoder states ; AR prior states].

    arch keys: ``arch`` ("unet" | "nested_unet"), ``size`` (kaleido.models.unet_sizes.UNET_SIZES) and UNet overrides,
    ``cond_dim`` (common condition width; default 64), ``context`` (T5ContextEncoder spec: encoder, tokenizer,
    max_length, seed), ``prior`` ({"size": T5_SIZES name} random init, default "t5_tiny"; or {"pretrained": a T5 /
    Flan-T5 checkpoint}, its decoder with the vocabulary resized: :func:`kaleido.models.t5.build_t5_prior`),
    ``prior_seed``, ``pad_id`` / ``eos_id`` of the latent tokenizer (default 0 / 1).
    data_shape: [H, W, C] (H == W, power-of-two friendly). class_names: the text fed to T5 for each class id (their
    states are computed once and cached). ``condition_text``: instead of class names, each item is its own condition
    (a captioned set; the data array's name, "captions"): a label indexes :attr:`condition_texts`, which the caller
    sets to the (n,) texts (a :class:`metrics.store.TextColumn`), and T5 encodes each batch's texts as they come;
    ``tokenizer_texts`` builds the offline context tokenizer then (class_names do otherwise).
    ``pretrained_prior``: load a pretrained prior's checkpoint weights (False: its architecture only, for a model
    whose state dict is loaded next: sampling, resuming).
    """

    #: samples live in [-1, 1] (the images' range): x0 is clipped there while sampling
    clip_x0: float | None = 1.0

    def __init__(self, arch: dict[str, Any], data_shape: list[int], num_classes: int, vocab_size: int = 0,
                 seq_len: int = 0, class_names: list[str] | None = None,
                 latent_grammar: dict[str, Any] | None = None, pretrained_prior: bool = True,
                 condition_text: str | None = None, tokenizer_texts: list[str] | None = None) -> None:
        super().__init__()
        if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
            raise ConfigError(f"data_shape must be [H, W, C] with H == W, got {data_shape}")
        height, _, channels = (int(v) for v in data_shape)
        if vocab_size and seq_len <= 0:
            raise ConfigError(f"a latent-augmented denoiser needs seq_len > 0, got {seq_len}")
        self.num_classes, self.vocab_size, self.seq_len, self.channels = num_classes, vocab_size, seq_len, channels
        self.resolutions = level_resolutions(arch, height)
        self.data_dim = sum(channels * r * r for r in self.resolutions)
        self.level_layout = [(channels * r * r, r) for r in self.resolutions]
        width = int(arch.get("cond_dim", 64))
        if class_names is not None and condition_text is not None:
            raise ConfigError(f"conditions are class names or item texts ({condition_text!r}), not both")
        encoder = T5ContextEncoder(arch.get("context", {}), texts=list(class_names if class_names is not None
                                                                      else tokenizer_texts or []) or None)
        self.condition_text = condition_text
        self.condition_texts: Any = None  # a captioned model's (n,) texts, set by its caller (not in the state)
        self._frozen = [encoder]  # a list hides the frozen T5 from state_dict / optimiser / .to()
        self.max_length = encoder.max_length
        self.enc_proj = nn.Linear(encoder.dim, width)
        self.enc_pad = nn.Parameter(torch.zeros(width))
        self.null_enc = nn.Parameter(torch.randn(self.max_length, width) * 0.02)
        if class_names is not None:
            if len(class_names) != num_classes:
                raise ConfigError(f"class_names has {len(class_names)} entries for num_classes={num_classes}")
            states, mask = encoder(list(class_names))
            self.register_buffer("class_states", states, persistent=False)  # (K, S, C_enc) cached per class
            self.register_buffer("class_mask", mask, persistent=False)
        else:
            self.class_states = self.class_mask = None
        self.prior: T5LatentPrior | None = None
        self.latent_grammar = latent_grammar  # kaleido.latents.grammar.grammar_meta's record, or None
        if vocab_size:
            self.prior = build_t5_prior(arch, vocab_size, encoder.dim, load_weights=pretrained_prior)
            self.dec_proj = nn.Linear(self.prior.dim, width)
            self.lat_pad = nn.Parameter(torch.zeros(width))
            self.null_lat = nn.Parameter(torch.randn(seq_len, width) * 0.02)
        self.cond_dim = width
        self.trunk = ARCHS.get(arch["arch"])(self.data_dim, width, {**arch, "in_channels": channels})

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> ImageDenoiser:
        self._frozen[0]._apply(fn, *args, **kwargs)  # .to()/.cuda()/.half() also move the hidden frozen T5
        return super()._apply(fn, *args, **kwargs)

    @property
    def uses_latent(self) -> bool:
        return self.prior is not None

    def context(self, labels: torch.Tensor | list[str] | tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, S, C_enc) and mask (B, S) bool for class ids (cached states), item ids of a captioned
        model (their texts from :attr:`condition_texts`, encoded now), texts (list[str]), or a (states, mask) pair
        computed before (returned as it is: the training loop and the sampler encode a captioned batch once)."""
        if isinstance(labels, tuple):
            return labels
        if isinstance(labels, torch.Tensor):
            if self.class_states is not None:
                return self.class_states[labels], self.class_mask[labels]
            if self.condition_texts is None:
                raise InputError("class ids need class_names (meta key 'class_names') to build T5 states"
                                 if self.condition_text is None else
                                 f"this model reads each item's {self.condition_text}: set its condition_texts (the "
                                 "sample stage's --conditions, the data index)")
            labels = [str(text) for text in self.condition_texts[labels.cpu().numpy()]]
        encoder = self._frozen[0]
        states, mask = encoder(labels)
        dev = self.enc_pad.device
        return states.to(dev), mask.to(dev)

    def encode(self, labels: torch.Tensor | list[str], tokens: torch.Tensor | None = None,
               drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Condition y (B, S + L, cond_dim) and, for Kaleido, the prior's teacher-forced logits (B, L, V).

        ``drop`` (B,) bool replaces the class/caption AND latent parts by the learned null embeddings (CFG
        dropout); the prior always sees the true condition, so L_AR trains p(z | c).
        """
        states, mask = self.context(labels)
        y = torch.where(mask[..., None], self.enc_proj(states), self.enc_pad)
        logits = None
        if self.prior is not None:
            if tokens is None:
                raise ValueError("this denoiser is latent-augmented: encode() needs tokens (B, L)")
            if tokens.shape[1] != self.seq_len:
                raise InputError(f"latent tokens have length {tokens.shape[1]}, this model uses seq_len={self.seq_len}")
            logits, dec = self.prior((states, mask), tokens)
            lat = torch.where((tokens != self.prior.pad_id)[..., None], self.dec_proj(dec), self.lat_pad)
            y = torch.cat([y, lat], dim=1)
        if drop is not None:
            y = torch.where(drop[:, None, None], self.null_condition(y.shape[0]), y)
        return y, logits

    def null_condition(self, batch: int) -> torch.Tensor:
        """The unconditional y (B, S + L, cond_dim): null caption (and null latent)."""
        parts = [self.null_enc] + ([self.null_lat] if self.prior is not None else [])
        return torch.cat(parts, dim=0).expand(batch, -1, -1)

    def unpack(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Flat (B, data_dim) -> images (B, C, r, r) per level, high -> low."""
        sizes = [self.channels * r * r for r in self.resolutions]
        return [p.reshape(-1, self.channels, r, r) for p, r in zip(x.split(sizes, dim=1), self.resolutions,
                                                                    strict=True)]

    @staticmethod
    def pack(xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([p.flatten(1) for p in xs], dim=1)

    def images_to_data(self, images: torch.Tensor) -> torch.Tensor:
        """Clean images (B, C, H, W) -> flat multi-resolution vector (B, data_dim) (area-downsampled levels)."""
        return self.pack(image_pyramid(images, self.resolutions))

    def data_to_model(self, x: np.ndarray | torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """uint8 images (n, H, W, C) (numpy, or a tensor on any device) -> [-1, 1], channels-first -> flat
        multi-resolution vectors (n, data_dim) float32 on the input's device (CPU for numpy), ``chunk`` images at
        a time."""
        if x.ndim != 4 or x.dtype not in (np.uint8, torch.uint8):
            raise not_model_input(x, self)
        out = []
        with torch.no_grad():
            for start in range(0, len(x), chunk):
                part = x[start:start + chunk]
                part = torch.from_numpy(part) if isinstance(part, np.ndarray) else part
                out.append(self.images_to_data(part.permute(0, 3, 1, 2).float() / 127.5 - 1.0))
        return torch.cat(out)

    def model_to_data(self, x: torch.Tensor) -> np.ndarray:
        """Generated vectors (n, data_dim) -> the full-resolution level as uint8 images (n, H, W, C): [-1, 1] ->
        [0, 255] rounded (what a PNG of the sample holds)."""
        images = self.unpack(x)[0].clamp(-1.0, 1.0)
        return ((images + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    def loss(self, pred: torch.Tensor, target: torch.Tensor, weights: list[float] | None = None) -> torch.Tensor:
        """MDM's multi-resolution loss on flat vectors (per-level MSE, weighted; the plain MSE for one level)."""
        return multiresolution_loss(self.unpack(pred), self.unpack(target), weights)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B, data_dim) flat pyramid, t (B,), y (B, S, cond_dim) -> prediction (B, data_dim)."""
        if x.dim() != 2 or x.shape[1] != self.data_dim:
            raise InputError(f"x must be (B, {self.data_dim}) (flat levels {self.resolutions}), got {tuple(x.shape)}")
        xs = self.unpack(x)
        out = self.trunk(xs if len(xs) > 1 else xs[0], t, y)
        return self.pack(out if isinstance(out, list) else [out])

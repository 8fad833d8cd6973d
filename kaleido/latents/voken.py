"""``voken`` latent: ``num_tokens`` visual-token ids of a VQ tokenizer, written ``<v12>#<v507>#...``.

offline (default): a VQ codebook learned in the stage. Each image is cut into a ``grid`` of patches (rows x cols,
rows*cols tokens, 4 x 8 = 32 by default as in the paper); patch features are the patch pixels in [-1, 1]; the
codebook is k-means (``codebook_size`` centres, MiniBatchKMeans, seeded) on the features of all training patches;
a patch's token is its nearest centre. The codebook is saved beside the strings (``voken_codebook``).
pretrained: a directory ``vq_path`` holding
  - ``encoder.pt2`` (a ``torch.export`` program, saved with ``torch.export.save``; preferred) or ``encoder.pt``
    (TorchScript), mapping images (N, 3, H, W) float32 in [-1, 1] to features (N, T, D) or (N, D, h, w) with
    T = h*w = ``num_tokens`` (e.g. SEED's causal Q-Former, exported),
  - ``codebook.safetensors``: tensor ``codebook`` (K, D);
token = argmin_k ||feature - codebook[k]||₂.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from kaleido.checks import check_int, check_keys
from kaleido.errors import ConfigError
from kaleido.latents import EXTRACTORS, LatentType
from kaleido.latents import formats as fmt
from kaleido.latents.images import (
    COMMON_DEFAULTS,
    COMMON_KEYS,
    ImageContext,
    LatentStrings,
    batches,
    check_common,
    require_files,
)
from metrics.errors import InputError
from metrics.features import check_images

VOKEN_DEFAULTS: dict[str, Any] = {"grid": [4, 8], "codebook_size": 256, "num_tokens": 32}
VQ_HOW = ("export your VQ tokenizer's encoder with torch.export.save(torch.export.export(encoder, (x,)), "
          "'encoder.pt2') (or TorchScript 'encoder.pt') and its codebook with "
          "safetensors.torch.save_file({'codebook': C}, 'codebook.safetensors') into that directory")


def patch_features(images: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """images (n, H, W, 3) uint8 -> (n, rows*cols, ph*pw*3) float32 in [-1, 1], row-major patch order."""
    n, h, w, _ = images.shape
    rows, cols = grid
    ph, pw = h // rows, w // cols
    x = images[:, :rows * ph, :cols * pw].astype(np.float32) / 127.5 - 1.0
    x = x.reshape(n, rows, ph, cols, pw, 3).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, rows * cols, ph * pw * 3)


def nearest(feats: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """feats (..., D), codebook (K, D) -> index of the nearest centre (L2) per feature, int64 (...)."""
    x = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
    c = codebook.astype(np.float64)
    dist = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]
    return dist.argmin(1).reshape(feats.shape[:-1])


class VokenExtractor(LatentType):
    keys = COMMON_KEYS | set(VOKEN_DEFAULTS) | {"vq_path"}

    def per_item(self, spec: dict[str, Any]) -> bool:
        """The offline codebook is fit on the whole set; the pretrained encoder is loaded per call: one part."""
        return False

    def validate(self, spec: dict[str, Any], where: str) -> None:
        check_keys(spec, self.keys, where)
        check_common(spec, where, ("offline", "pretrained"))
        check_int(spec, "codebook_size", where, 2, 65536)
        check_int(spec, "num_tokens", where, 1, 4096)
        grid = spec.get("grid", VOKEN_DEFAULTS["grid"])
        if (not isinstance(grid, list) or len(grid) != 2
                or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid)):
            raise ConfigError(f"{where}.grid: {grid!r}; accepted: [rows, cols], positive integers")
        if grid[0] * grid[1] != spec.get("num_tokens", VOKEN_DEFAULTS["num_tokens"]):
            raise ConfigError(f"{where}.grid: {grid} gives {grid[0] * grid[1]} tokens, but num_tokens is "
                              f"{spec.get('num_tokens', VOKEN_DEFAULTS['num_tokens'])}")
        if spec.get("source", "offline") == "pretrained" and not isinstance(spec.get("vq_path"), str):
            raise ConfigError(f"{where}: source 'pretrained' needs vq_path (a directory with encoder.pt and "
                              "codebook.safetensors)")

    def parse(self, text: str, names: Collection[str] | None = None, num_tokens: int = VOKEN_DEFAULTS["num_tokens"],
              codebook_size: int | None = None) -> list[int]:
        return fmt.parse_voken(text, num_tokens, fmt.needs_codebook("voken", codebook_size))

    def write(self, parsed: Sequence[int]) -> str:
        return fmt.format_voken(parsed)

    def extract_ids(self, images: np.ndarray, spec: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
        """images -> (ids (n, num_tokens) int64, codebook (K, D) float32)."""
        check_images(images)
        spec = {**COMMON_DEFAULTS, **VOKEN_DEFAULTS, **spec}
        if spec["source"] == "pretrained":
            return self._pretrained(images, spec)
        from sklearn.cluster import MiniBatchKMeans

        grid = tuple(spec["grid"])
        if images.shape[1] < grid[0] or images.shape[2] < grid[1]:
            raise InputError(f"voken grid {list(grid)} is larger than the images {images.shape[1:3]}")
        k = spec["codebook_size"]
        # The offline codebook is fit on every patch of the set, so this path holds the set in memory (a sharded
        # set is read whole here); large sets use source: pretrained, which streams in batches.
        feats = patch_features(np.asarray(images), grid)
        flat = feats.reshape(-1, feats.shape[-1])
        if len(flat) < k:
            raise InputError(f"voken: {len(flat)} training patches, fewer than codebook_size={k}")
        km = MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=3, random_state=seed % 2**31).fit(flat)
        codebook = km.cluster_centers_.astype(np.float32)  # ids are assigned with the saved (float32) codebook
        ids = np.empty(feats.shape[:2], dtype=np.int64)
        for sl in batches(len(images), spec["batch_size"], "voken (codebook)"):
            ids[sl] = nearest(feats[sl], codebook)
        return ids, codebook

    def _pretrained(self, images: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        import torch
        from safetensors.torch import load_file

        directory = require_files(spec["vq_path"], ("encoder.pt2", "encoder.pt"), "VQ encoder (vq_path)", VQ_HOW)
        require_files(directory, ("codebook.safetensors",), "VQ codebook (vq_path)", VQ_HOW)
        if (directory / "encoder.pt2").exists():
            encoder = torch.export.load(str(directory / "encoder.pt2")).module()
        else:
            encoder = torch.jit.load(str(directory / "encoder.pt"), map_location="cpu").eval()
        codebook = load_file(str(directory / "codebook.safetensors"))["codebook"].float()
        ids = np.empty((len(images), spec["num_tokens"]), dtype=np.int64)
        for sl in batches(len(images), spec["batch_size"], "voken (VQ model)"):
            x = torch.from_numpy(images[sl]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            with torch.inference_mode():
                feats = encoder(x)
            if feats.ndim == 4:  # (N, D, h, w) -> (N, h*w, D)
                feats = feats.flatten(2).transpose(1, 2)
            if feats.ndim != 3 or feats.shape[1] != spec["num_tokens"] or feats.shape[2] != codebook.shape[1]:
                raise InputError(f"VQ encoder output {tuple(feats.shape)}: expected (N, {spec['num_tokens']}, "
                                 f"{codebook.shape[1]}) or (N, {codebook.shape[1]}, h, w) with h*w = num_tokens")
            ids[sl] = torch.cdist(feats.float(), codebook[None]).argmin(-1).numpy()
        return ids, codebook.numpy()

    def extract_strings(self, images: np.ndarray, ctx: ImageContext, spec: dict[str, Any], seed: int) -> LatentStrings:
        ids, codebook = self.extract_ids(images, spec, seed)
        strings = np.array([fmt.format_voken(row) for row in ids], dtype=str)
        return LatentStrings(strings, added_tokens=fmt.voken_vocabulary(len(codebook)),
                             arrays={"voken_ids": ids, "voken_codebook": codebook})


EXTRACTORS.register("voken")(VokenExtractor())

"""DINOv2 ViT/14 CLS features (ViT-L/14: 1024-d, ViT-B/14: 768-d), loaded from local files only.

Backends (by ``variant``):

* ``dinov2_vitl14`` / ``dinov2_vitb14``: ``torch.hub.load(hub_dir, variant, source="local", trust_repo=True)``
  on a local clone of facebookresearch/dinov2 (default: torch hub's cache dir
  ``$TORCH_HOME/hub/facebookresearch_dinov2_main``, the one torch-fidelity's extractor uses; the hub code takes
  its checkpoint from ``$TORCH_HOME/hub/checkpoints``). The forward output is the normalised CLS token.
* ``hf``: ``transformers.Dinov2Model.from_pretrained(dir, local_files_only=True)``; features = ``pooler_output``
  (the layer-normed CLS token, the same quantity).

Preprocessing is torch-fidelity's ``dinov2-vit-*-14`` extractor's (uint8 -> TF1-compatible bilinear resize to
224 -> ImageNet mean/std). dgm-eval resizes with PIL bicubic instead: that is the ``dinov2-dgm`` network
(:mod:`metrics.features.dinov2_dgm`, same model).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from metrics.features._batching import loading_weights, missing_weights, run_batched
from metrics.weights import WEIGHTS

INPUT_SIZE = 224
HUB_VARIANTS = ("dinov2_vitl14", "dinov2_vitb14")
PREPROCESSING = "torch-fidelity dinov2: uint8, TF1 bilinear resize 224, ImageNet mean/std"


def default_hub_dir() -> Path:
    """torch hub's cache of the facebookresearch/dinov2 repository."""
    return WEIGHTS.get("dinov2-repo").default_path()


def preprocess(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (b, 3, H, W) -> float32 (b, 3, 224, 224), exactly torch-fidelity's FeatureExtractorDinoV2."""
    import torchvision
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = interpolate_bilinear_2d_like_tensorflow1x(batch.float(), size=(INPUT_SIZE, INPUT_SIZE), align_corners=False)
    return torchvision.transforms.functional.normalize(
        x, (255 * 0.485, 255 * 0.456, 255 * 0.406), (255 * 0.229, 255 * 0.224, 255 * 0.225))


@functools.lru_cache(maxsize=2)
def load(variant: str, weights: str | None, device: str) -> torch.nn.Module:
    """The DINOv2 module of ``variant`` from the local hub dir or HF dir ``weights``; eval mode on ``device``."""
    if variant == "hf":
        if weights is None or not (Path(weights) / "config.json").is_file():
            raise missing_weights("DINOv2 (transformers Dinov2Model)",
                                  None if weights is None else Path(weights) / "config.json",
                                  "save facebook/dinov2-large with save_pretrained() into a local directory "
                                  "and set it as the feature network's weights path")
        from transformers import Dinov2Model

        with loading_weights("DINOv2 (transformers)", weights, "a directory written by Dinov2Model.save_pretrained"):
            hf = Dinov2Model.from_pretrained(weights, local_files_only=True).eval().to(device)
        return _HFPooler(hf)
    if variant not in HUB_VARIANTS:
        raise ValueError(f"DINOv2 variant {variant!r}; expected one of {HUB_VARIANTS} or 'hf'")
    hub_dir = Path(weights) if weights is not None else default_hub_dir()
    if not (hub_dir / "hubconf.py").is_file():
        raise missing_weights("DINOv2 (torch hub repo facebookresearch/dinov2)", hub_dir / "hubconf.py",
                              "fetch it on a connected host with `python -m kaleido.weights fetch --config C` (or "
                              "clone https://github.com/facebookresearch/dinov2 there and put the "
                              f"{variant} checkpoint in {WEIGHTS.get(variant).default_path().parent}), "
                              "or set the weights path to such a directory")
    with loading_weights(f"DINOv2 {variant}", hub_dir, "a clone of facebookresearch/dinov2 and its checkpoint"):
        model = torch.hub.load(str(hub_dir), variant, source="local", trust_repo=True)
    return model.eval().requires_grad_(False).to(device)


class _HFPooler(torch.nn.Module):
    """Dinov2Model -> pooler_output (b, hidden), so both backends are called the same way."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).pooler_output


def extract_outputs(images: np.ndarray, *, batch_size: int = 64, device: str = "cpu", weights: str | None = None,
                    variant: str = "dinov2_vitl14", precision: str = "fp32") -> dict[str, np.ndarray]:
    """uint8 (n, H, W, 3) -> {"features": float32 (n, hidden)} (CLS token)."""
    model = load(variant, weights, str(device))
    return run_batched(images, lambda batch: {"features": model(preprocess(batch))}, batch_size=batch_size,
                       device=device, precision=precision, desc=f"dinov2 {variant}")


def extract(images: np.ndarray, batch_size: int = 64, device: str = "cpu", **options: object) -> np.ndarray:
    """uint8 (n, H, W, 3) -> float32 (n, hidden) DINOv2 CLS features."""
    return extract_outputs(images, batch_size=batch_size, device=device, **options)["features"]

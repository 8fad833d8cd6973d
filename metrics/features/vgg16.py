"""VGG-16 fc2 features (4096-d, after ReLU: ``fc2_relu``) as torch-fidelity's ``prc`` uses them.

Network and preprocessing are torch-fidelity's ``vgg16`` extractor (uint8 in, TF1 bilinear resize 224, ImageNet
normalisation); the weight file is a torchvision ``vgg16`` state dict.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from metrics.features._batching import loading_weights, missing_weights, run_batched
from metrics.weights import WEIGHTS

EXTRACTOR = "vgg16"
FEATURE_LAYER = "fc2_relu"
PREPROCESSING = "torch-fidelity vgg16: uint8, TF1 bilinear resize 224, ImageNet mean/std"


WEIGHT_FILE = WEIGHTS.get("vgg16")


def default_weights() -> Path:
    """torchvision's cache of its ImageNet VGG-16 weights: ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``."""
    return WEIGHT_FILE.default_path()



@functools.lru_cache(maxsize=2)
def load(weights: str | None, device: str) -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorVGG16 with a torchvision vgg16 state-dict file, eval mode."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    path = Path(weights) if weights is not None else default_weights()
    if not path.is_file():
        raise missing_weights("VGG-16 (torchvision IMAGENET1K_V1)", path, WEIGHT_FILE)
    with loading_weights("VGG-16", path, f"torchvision's vgg16 state-dict file ({WEIGHT_FILE.url})"):
        model = FEATURE_EXTRACTORS_REGISTRY[EXTRACTOR](EXTRACTOR, [FEATURE_LAYER],
                                                       feature_extractor_weights_path=str(path))
    return model.to(device)


def extract_outputs(images: np.ndarray, *, batch_size: int = 64, device: str = "cpu", weights: str | None = None,
                    variant: str = "", precision: str = "fp32") -> dict[str, np.ndarray]:
    """uint8 (n, H, W, 3) -> {"features": float32 (n, 4096)}."""
    del variant
    model = load(weights, str(device))
    return run_batched(images, lambda batch: {"features": model(batch)[0]}, batch_size=batch_size, device=device,
                       precision=precision, desc="vgg16")


def extract(images: np.ndarray, batch_size: int = 64, device: str = "cpu", **options: object) -> np.ndarray:
    """uint8 (n, H, W, 3) -> float32 (n, 4096) fc2_relu features."""
    return extract_outputs(images, batch_size=batch_size, device=device, **options)["features"]

"""DINOv2 ViT-L/14 (or B/14) CLS features with dgm-eval's preprocessing (Stein et al. 2023, the FD-DINOv2 paper):
each image resized to 224 x 224 by PIL bicubic (torchvision ``Resize`` on a PIL image, antialiased, rounded back to
uint8), scaled to [0, 1], ImageNet mean/std. The network and its loading are :mod:`metrics.features.dinov2`'s; only
the resize differs from the ``dinov2`` entry (torch-fidelity's TF1 bilinear resize), which moves FD-DINOv2 values,
so the two are separate feature networks and never mixed in one table.
"""

from __future__ import annotations

import numpy as np
import torch

from metrics.features._batching import run_batched
from metrics.features.dinov2 import INPUT_SIZE, load

PREPROCESSING = "dgm-eval dinov2: PIL bicubic resize 224 (uint8), /255, ImageNet mean/std"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def preprocess(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (b, 3, H, W) -> float32 (b, 3, 224, 224) normalised, on the batch's device (the resize runs in PIL)."""
    from PIL import Image

    resized = np.stack([np.asarray(Image.fromarray(img).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC))
                        for img in batch.permute(0, 2, 3, 1).cpu().numpy()])
    x = torch.from_numpy(resized).to(batch.device).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(MEAN, device=x.device)[:, None, None]
    std = torch.tensor(STD, device=x.device)[:, None, None]
    return (x - mean) / std


def extract_outputs(images: np.ndarray, *, batch_size: int = 64, device: str = "cpu", weights: str | None = None,
                    variant: str = "dinov2_vitl14", precision: str = "fp32") -> dict[str, np.ndarray]:
    """uint8 (n, H, W, 3) -> {"features": float32 (n, hidden)} (CLS token)."""
    model = load(variant, weights, str(device))
    return run_batched(images, lambda batch: {"features": model(preprocess(batch))}, batch_size=batch_size,
                       device=device, precision=precision, desc=f"dinov2 (dgm-eval) {variant}")

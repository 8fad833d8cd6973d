"""SSCD copy-detection descriptors (Pizzi et al. 2022) from a TorchScript file, L2-normalised.

Weights: the TorchScript release file (e.g. ``sscd_disc_mixup.torchscript.pt``), loaded with ``torch.jit.load``.
Preprocessing as the SSCD README: resize the short side to 288 (net ``sscd``; bilinear, antialiased, aspect kept)
or to 320 x 320 (net ``sscd-320``), ImageNet mean/std; the descriptor (512-d for the ResNet-50 models) is
L2-normalised here.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from metrics.features._batching import loading_weights, missing_weights, run_batched
from metrics.weights import WEIGHTS

SHORT_SIDE = 288
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_FILE = WEIGHTS.get("sscd_disc_mixup")
PREPROCESSING = "SSCD: resize short side 288 (sscd) or 320x320 (sscd-320), bilinear antialias, ImageNet mean/std, L2"


def default_weights() -> Path:
    """Where the weights stage puts the release file: ``$TORCH_HOME/hub/checkpoints/sscd_disc_mixup.torchscript.pt``."""
    return WEIGHT_FILE.default_path()



#: resize of each variant, as the SSCD README's two transforms: "" = ``Resize(288)`` (short side, aspect kept),
#: "square320" = ``Resize([320, 320])``
RESIZE = {"": SHORT_SIDE, "square320": [320, 320]}


def preprocess(batch: torch.Tensor, variant: str = "") -> torch.Tensor:
    """uint8 (b, 3, H, W) -> float32 (b, 3, H', W') resized per ``variant`` (:data:`RESIZE`), ImageNet-normalised."""
    import torchvision.transforms.functional as tvf

    if variant not in RESIZE:
        raise ValueError(f"SSCD variant {variant!r}; expected one of {sorted(RESIZE)}")
    x = tvf.resize(batch.float() / 255.0, RESIZE[variant], interpolation=tvf.InterpolationMode.BILINEAR,
                   antialias=True)
    return tvf.normalize(x, IMAGENET_MEAN, IMAGENET_STD)


#: on CUDA, weights and inputs in channels-last (NHWC): cuDNN's tensor-core convolutions read it without transposes.
#: One H200, ResNet-50 + GeM at 288 px under TF32: 5,144 img/s vs 3,102 NCHW from memory in the same process
#: (benchmarks/logs/feature_networks_h200_sscd_channels_last.log)
CHANNELS_LAST_ON_CUDA = True


@functools.lru_cache(maxsize=2)
def load(weights: str | None, device: str, channels_last: bool = False) -> torch.jit.ScriptModule:
    """The TorchScript SSCD model from ``weights`` (None = :func:`default_weights`), eval mode on ``device``, its
    convolution weights channels-last if asked."""
    path = Path(weights) if weights is not None else default_weights()
    if not path.is_file():
        raise missing_weights("SSCD (TorchScript)", path, WEIGHT_FILE)
    with loading_weights("SSCD", path, f"the TorchScript file {WEIGHT_FILE.filename} of "
                                       "facebookresearch/sscd-copy-detection"):
        model = torch.jit.load(str(path), map_location=device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def extract_outputs(images: np.ndarray, *, batch_size: int = 64, device: str = "cpu", weights: str | None = None,
                    variant: str = "", precision: str = "fp32", channels_last: bool | None = None
                    ) -> dict[str, np.ndarray]:
    """uint8 (n, H, W, 3) -> {"features": float32 (n, d) unit-norm descriptors}. ``channels_last``: None =
    :data:`CHANNELS_LAST_ON_CUDA` on a CUDA device."""
    if channels_last is None:
        channels_last = CHANNELS_LAST_ON_CUDA and torch.device(device).type == "cuda"
    model = load(weights, str(device), channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = preprocess(batch, variant).contiguous(memory_format=layout)
        return {"features": torch.nn.functional.normalize(model(x).float(), dim=1)}

    return run_batched(images, forward, batch_size=batch_size, device=device, precision=precision, desc="sscd")


def extract(images: np.ndarray, batch_size: int = 64, device: str = "cpu", **options: object) -> np.ndarray:
    """uint8 (n, H, W, 3) -> float32 (n, d) L2-normalised SSCD descriptors."""
    return extract_outputs(images, batch_size=batch_size, device=device, **options)["features"]

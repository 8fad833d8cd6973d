"""Inception-v3 pool3 features (2048-d) and logits, through torch-fidelity's ``inception-v3-compat`` extractor.

The network and its preprocessing are torch-fidelity's own (uint8 in; TF1-compatible bilinear resize to 299;
(x - 128) / 128), so FID/KID/IS equal ``torch_fidelity.calculate_metrics`` given the same weight file. Outputs:
``features`` = "2048" (pool3), ``logits`` = "logits_unbiased" (fc without bias, 1008 classes; what torch-fidelity
feeds the Inception Score).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from metrics.features._batching import loading_weights, missing_weights, run_batched
from metrics.weights import WEIGHTS

EXTRACTOR = "inception-v3-compat"
FEATURE_LAYERS = ("2048", "logits_unbiased")
PREPROCESSING = "torch-fidelity inception-v3-compat: uint8, TF1 bilinear resize 299, (x-128)/128"


WEIGHT_FILE = WEIGHTS.get("inception-v3-compat")


def default_weights() -> Path:
    """Where torch-fidelity caches its Inception weights: ``$TORCH_HOME/hub/checkpoints/<file of its URL>``."""
    return WEIGHT_FILE.default_path()



@functools.lru_cache(maxsize=2)
def load(weights: str | None, device: str, channels_last: bool = False) -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 with the weight file ``weights`` (None = its cache), eval mode."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    path = Path(weights) if weights is not None else default_weights()
    if not path.is_file():
        raise missing_weights("Inception-v3 (torch-fidelity inception-v3-compat)", path, WEIGHT_FILE)
    with loading_weights("Inception-v3", path, f"torch-fidelity's state-dict file ({WEIGHT_FILE.url})"):
        model = FEATURE_EXTRACTORS_REGISTRY[EXTRACTOR](EXTRACTOR, list(FEATURE_LAYERS),
                                                       feature_extractor_weights_path=str(path))
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def extract_outputs(images: np.ndarray, *, batch_size: int = 64, device: str = "cpu", weights: str | None = None,
                    variant: str = "", precision: str = "fp32") -> dict[str, np.ndarray]:
    """uint8 (n, H, W, 3) -> {"features": float32 (n, 2048) pool3, "logits": float32 (n, 1008) logits_unbiased}."""
    del variant
    # channels-last (NHWC) on CUDA: cuDNN's tensor-core kernels read it without transposes. Measured on an H200
    # (benchmarks/logs/): features move by ~1e-6 relative in strict fp32; under TF32 (PyTorch's default) extraction
    # ran at 5.0K img/s vs 4.4-4.6K img/s NCHW.
    model = load(weights, str(device), torch.device(device).type == "cuda")

    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        pool, logits = model(batch)
        return {"features": pool, "logits": logits}

    return run_batched(images, forward, batch_size=batch_size, device=device, precision=precision, desc="inception")


def extract(images: np.ndarray, batch_size: int = 64, device: str = "cpu", **options: object) -> np.ndarray:
    """uint8 (n, H, W, 3) -> float32 (n, 2048) pool3 features."""
    return extract_outputs(images, batch_size=batch_size, device=device, **options)["features"]

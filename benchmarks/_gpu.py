"""The GPU's dense peak FLOP/s, for the model-FLOPs utilisation the GPU benchmarks print."""

from __future__ import annotations

import torch

#: dense peak FLOP/s by (GPU name fragment, precision); fp32 = CUDA cores (TF32 tensor cores off)
PEAKS = {("H100", "bf16"): 989e12, ("H100", "fp32"): 67e12, ("H200", "bf16"): 989e12, ("H200", "fp32"): 67e12}


def peak(precision: str) -> float | None:
    """The current CUDA device's dense peak for ``precision`` ("bf16" / "fp32"); None off the table or on the CPU."""
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return next((v for (k, p), v in PEAKS.items() if k in name and p == precision), None)

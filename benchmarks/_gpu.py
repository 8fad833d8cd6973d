"""The GPU's dense peak FLOP/s and a network's FLOPs per item, for the utilisation the GPU benchmarks print."""

from __future__ import annotations

from collections.abc import Callable

import torch

#: dense peak FLOP/s of an H100 SXM / H200 (the same SMs and clocks) by math mode (NVIDIA datasheets): fp32 = CUDA
#: cores (TF32 tensor cores off), tf32 = TF32 tensor cores (PyTorch's default for convolutions, not for matmuls)
PEAKS = {(gpu, mode): value for gpu in ("H100", "H200")
         for mode, value in (("bf16", 989.4e12), ("tf32", 494.7e12), ("fp32", 67e12))}


def peak(precision: str, gpu_name: str | None = None) -> float | None:
    """Dense peak FLOP/s of ``gpu_name`` (default: the current CUDA device) for ``precision`` ("bf16" / "tf32" /
    "fp32"); None off the table or on the CPU."""
    if gpu_name is None:
        gpu_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return next((v for (k, p), v in PEAKS.items() if k in gpu_name and p == precision), None)


def counted_flops(run: Callable[[], object]) -> float:
    """FLOPs (2 per multiply-add, torch's ``FlopCounterMode``) of the matmuls, convolutions and attention ``run()``
    performs, backward passes included; resizes and other elementwise work are not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return float(counter.get_total_flops())


def feature_flops(net: object, size: int) -> float:
    """FLOPs of a feature network (:class:`metrics.features.ImageFeatureNet`) on one size x size image, on the CPU."""
    import numpy as np

    cpu = net.with_options(device="cpu", batch_size=1, compile=False)
    with torch.inference_mode():
        return counted_flops(lambda: cpu.outputs(np.zeros((1, size, size, 3), dtype=np.uint8)))

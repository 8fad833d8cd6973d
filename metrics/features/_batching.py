"""Shared plumbing of the image feature networks: input checks, batched no-grad forward, weight-path errors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from metrics._validate import check_device, check_positive_int
from metrics.features import check_images

PRECISIONS = ("fp32", "bf16")


def missing_weights(what: str, path: Path, how: str) -> FileNotFoundError:
    """The error for an absent weight file/dir: names it, where it was looked for and how to obtain it."""
    return FileNotFoundError(f"{what} weights not found at {path}; {how} (nothing is downloaded by this harness)")


def run_batched(images: np.ndarray, forward: Callable[[torch.Tensor], dict[str, torch.Tensor]], *, batch_size: int,
                device: str | torch.device, precision: str = "fp32", desc: str = "features") -> dict[str, np.ndarray]:
    """Apply ``forward`` to uint8 (b, 3, H, W) batches on ``device``; concatenate its outputs as float32 numpy.

    Args:
        images: uint8 (n, H, W, 3). forward: batch -> {name: (b, ...) tensor}, called under ``torch.inference_mode``.
        precision: "fp32", or "bf16" (autocast on CUDA; ValueError elsewhere).
    Returns:
        {name: float32 (n, ...)}.
    """
    from tqdm import tqdm

    images = check_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    device = check_device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}")
    if precision == "bf16" and device.type != "cuda":
        raise ValueError(f"precision='bf16' needs a CUDA device, got device={str(device)!r}; use precision='fp32'")
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext())
    chunks: dict[str, list[torch.Tensor]] = {}
    # Outputs stay on the device until the end: no per-batch synchronisation, so the host slices and copies the
    # next batch while the GPU still runs the previous one.
    with torch.inference_mode(), autocast:
        for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False, disable=None):
            batch = torch.from_numpy(images[start:start + batch_size])
            if device.type == "cuda":
                batch = batch.pin_memory().to(device, non_blocking=True)
            for name, value in forward(batch.permute(0, 3, 1, 2).contiguous()).items():
                chunks.setdefault(name, []).append(value.float())
    return {name: torch.cat(parts).cpu().numpy() for name, parts in chunks.items()}

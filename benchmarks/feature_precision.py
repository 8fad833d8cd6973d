"""How far each math mode of a GPU moves Inception's FD, emulated exactly on the CPU: strict fp32, TF32, float16 and
bfloat16 autocast.

    python benchmarks/feature_precision.py [--n 1000 --size 64 --modes fp32 tf32 fp16 bf16] [--bn calibrated]
    python benchmarks/feature_precision.py --smoke   (tiny sizes: the code paths run, no numbers)

Why: a faster math mode for the features stage is acceptable only if FD stays within 2e-4 relative of
torch-fidelity's (issue #21), which runs under PyTorch's default, TF32 convolutions. Each mode is emulated on the
CPU in float32 with forward hooks on torch-fidelity's ``inception-v3-compat`` (random He-normal weights in its
release format, as the GPU benchmarks build them; ``--bn calibrated`` sets its batch norms' running statistics from
images of another seed, as a trained network's are: per-channel scales far from 1, where the random init's are all
1 / sqrt(1 + 1e-3)):

- ``tf32``: every convolution's and linear layer's input and weight rounded to TF32 (10-bit mantissa, float32's
  exponent), products accumulated in float32: what TF32 tensor cores do.
- ``fp16`` / ``bf16``: autocast with float32 accumulation (cuDNN's half-precision convolutions): inputs and weights
  rounded to the dtype, each convolution's, linear layer's and batch norm's output stored in it.

Prints FD of ``--n`` images against ``--n`` brightness-shifted ones (``feature_knobs_gpu.py``'s pair of sets) under
each mode, the relative FD change and the largest feature change of every mode against ``fp32`` and ``tf32``.
The emulation's check: its bf16 against the GPU's bf16 as ``feature_knobs_gpu.py`` measures it.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests" / "metric_checks"))

import _smoke  # noqa: E402

SMOKE = {"n": 4, "size": 32, "batch_size": 4, "bn": "calibrated"}
#: images whose statistics ``--bn calibrated`` gives the batch norms
CALIBRATION_IMAGES = 256


def calibrate_batch_norms(model: torch.nn.Module, images: np.ndarray, batch_size: int) -> None:
    """Set every batch norm's running mean / variance to its input's over ``images`` (uint8 (n, H, W, 3)), in place:
    the cumulative average over batches (``momentum=None``) of a forward in training mode."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2).contiguous())
    for norm in norms:
        norm.eval()


def round_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 -> float32 rounded to TF32's 10-bit mantissa (to nearest, ties away from zero; the exponent kept)."""
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def rounding(mode: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The input/weight rounding of ``mode``; None for strict fp32."""
    if mode == "fp32":
        return None
    if mode == "tf32":
        return round_tf32
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[mode]
    return lambda x: x.to(dtype).float()


def emulated(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """A copy of ``model`` whose float32 forward computes what ``mode`` computes on a GPU (module docstring)."""
    model = copy.deepcopy(model)
    round_to = rounding(mode)
    if round_to is None:
        return model
    stores_outputs = mode != "tf32"  # autocast keeps activations in its dtype; TF32 only rounds the operands
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.weight.data = round_to(module.weight.data)
            module.register_forward_pre_hook(lambda _, args: (round_to(args[0]), *args[1:]))
        if stores_outputs and isinstance(module, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)):
            module.register_forward_hook(lambda _, args, out: round_to(out))
    return model


def features(model: torch.nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 (n, H, W, 3) -> float64 (n, 2048) pool3 features, batched as the features stage batches them."""
    from metrics.features._batching import run_batched

    pooled = run_batched(images, lambda batch: {"features": model(batch)[0]}, batch_size=batch_size, device="cpu")
    return pooled["features"].astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="images per set (two sets)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (the network resizes to 299)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--modes", nargs="+", choices=("fp32", "tf32", "fp16", "bf16"),
                        default=["fp32", "tf32", "fp16", "bf16"])
    parser.add_argument("--bn", choices=("init", "calibrated"), default="init",
                        help="batch-norm statistics: the random init's (mean 0, variance 1) or set from images")
    args = _smoke.parse_args(parser, SMOKE)
    from img_nets import random_images, save_random_inception

    from metrics.features.inception import load
    from metrics.frechet import fd_from_features

    modes = list(dict.fromkeys(["fp32", "tf32", *args.modes]))  # the two references first
    with tempfile.TemporaryDirectory(prefix="feature_precision_") as tmp:
        model = load(str(save_random_inception(Path(tmp) / "inception.pth")), "cpu")
    if args.bn == "calibrated":
        calibrate_batch_norms(model, random_images(min(CALIBRATION_IMAGES, 4 * args.n), seed=3, size=args.size),
                              args.batch_size)
    images = np.concatenate([random_images(args.n, seed=1, size=args.size),
                             random_images(args.n, seed=2, size=args.size, shift=25)])
    print(f"cpu, {torch.get_num_threads()} threads; torch {torch.__version__}; inception-v3-compat (random weights, "
          f"batch norms: {args.bn}), {args.n} vs {args.n} images of {args.size} px (the second set "
          "brightness-shifted)", flush=True)
    feats: dict[str, np.ndarray] = {}
    fd: dict[str, float] = {}
    for mode in modes:
        start = time.perf_counter()
        feats[mode] = features(emulated(model, mode), images, args.batch_size)
        fd[mode] = fd_from_features(feats[mode][:args.n], feats[mode][args.n:])
        line = f"  {mode:<5} FD {fd[mode]:.6f} ({time.perf_counter() - start:.0f} s)"
        for ref in ("fp32", "tf32"):
            if ref in feats and ref != mode:
                moved = np.abs(feats[mode] - feats[ref]).max() / np.abs(feats[ref]).max()
                line += f"; vs {ref}: FD rel. diff {abs(fd[mode] - fd[ref]) / fd[ref]:.2e}, features max rel. diff " \
                        f"{moved:.2e}"
        print(line, flush=True)


if __name__ == "__main__":
    main()

"""The GPU benchmarks' shared measures: dense peak FLOP/s, a network's FLOPs per item, seconds per call, and the CUDA
kernel-time profile of a call by kernel kind."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable

import _smoke
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


def train_flops_per_image(model: torch.nn.Module, batch: int = 2) -> float:
    """Model FLOPs of one training step per image (forward + backward, :func:`counted_flops`) of a denoiser built by
    :func:`kaleido.checkpoint.build_denoiser`, as ``kaleido.training`` runs it: its condition encoding and
    denoising forward on ``batch`` class labels at t = 500, bf16 autocast on CUDA, eagerly; the gradients are
    cleared after."""
    from kaleido.training import _Objective

    device = next(model.parameters()).device
    x0 = torch.zeros(batch, model.data_dim, device=device)
    t = torch.full((batch,), 500, device=device)
    labels = torch.arange(batch, device=device) % max(1, model.num_classes)
    drop = torch.zeros(batch, dtype=torch.bool, device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out, _ = _Objective(model)(x0, t, labels, None, drop)
        out.float().square().mean().backward()

    flops = counted_flops(step)
    model.zero_grad(set_to_none=True)
    return flops / batch


def feature_flops(net: object, size: int) -> float:
    """FLOPs of a feature network (:class:`metrics.features.ImageFeatureNet`) on one size x size image, on the CPU."""
    import numpy as np

    cpu = net.with_options(device="cpu", batch_size=1, compile=False)
    with torch.inference_mode():
        return counted_flops(lambda: cpu.outputs(np.zeros((1, size, size, 3), dtype=np.uint8)))


#: kernels listed by name in :func:`profile`
TOP_KERNELS = 12


def timed(fn: Callable[[], object], iters: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) / iters


def kernel_kind(name: str) -> str:
    low = name.lower()
    if any(k in low for k in ("flash", "fmha", "attention", "attn")):
        return "attention"
    if any(k in low for k in ("conv", "cudnn", "implicit", "nhwc", "xmma_fprop", "dgrad", "wgrad", "fprop")):
        return "convolution"
    if any(k in low for k in ("gemm", "cutlass", "cublas", "sm90_xmma", "matmul")):
        return "gemm"
    if "triton" in low:
        return "triton (norm / elementwise)"
    return "other"


def profile(fn: Callable[[], object], label: str, device: torch.device) -> None:
    """Print CUDA kernel time of one call of ``fn`` by :func:`kernel_kind` and the top kernels."""
    if device.type != "cuda":
        _smoke.skip(f"the kernel profile of {label}", "CUDA kernels only")
        return
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    fn()
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        fn()
        torch.cuda.synchronize()
    kinds: Counter[str] = Counter()
    names: Counter[str] = Counter()
    for event in prof.events():
        # kernels only: with CPU activity on, the GPU timeline also carries annotation ranges (Inductor's
        # "## Call CompiledFxGraph ... ##", "Optimizer.step#...") that span the kernels inside them
        if event.device_type == torch.autograd.DeviceType.CUDA and not _annotation(event):
            kinds[kernel_kind(event.name)] += event.device_time
            names[event.name] += event.device_time
    total = sum(kinds.values())
    print(f"  profile {label}: {total / 1e3:.1f} ms of kernels per call")
    for kind, us in kinds.most_common():
        print(f"    {kind:<28} {us / 1e3:8.1f} ms  {us / total:6.1%}")
    for name, us in names.most_common(TOP_KERNELS):
        print(f"    {us / total:6.1%}  {name[:110]}")
    # which host op launched the time: an aten op outside Inductor's kernels (a layout copy before cuDNN, a cast)
    # shows here with its input shapes
    ops = [op for op in prof.key_averages(group_by_input_shape=True)
           if _self_device_us(op) > 0 and not _annotation(op)]
    print("  by launching op (self CUDA time, input shapes):")
    for op in sorted(ops, key=_self_device_us, reverse=True)[:TOP_KERNELS]:
        print(f"    {_self_device_us(op) / total:6.1%}  {op.key[:48]:<48} x{op.count:<4} {str(op.input_shapes)[:100]}")
    sys.stdout.flush()


def _annotation(event: object) -> bool:
    name = getattr(event, "name", None) or event.key  # a kernel event has a name, an averaged op row a key
    return bool(getattr(event, "is_user_annotation", False)) or "#" in name  # "## Call ...", "Optimizer.step#"


def _self_device_us(op: object) -> float:
    return getattr(op, "self_device_time_total", None) or getattr(op, "self_cuda_time_total", 0.0)

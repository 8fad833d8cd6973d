"""What each compile knob buys the Inception feature network on the GPU: the network alone, on one resident batch.

    python benchmarks/feature_knobs_gpu.py [--batch-size 500 --iters 10 --profile]
    python benchmarks/feature_knobs_gpu.py --variants compile max-autotune-no-cudagraphs
    python benchmarks/feature_knobs_gpu.py --smoke   (CPU, tiny sizes, seconds: the code paths run, no numbers)

For each variant of :data:`VARIANTS`, the features stage's per-batch call (``metrics.features._batching.run_batched``:
a uint8 NHWC batch made NCHW, then torch-fidelity's ``inception-v3-compat`` as ``metrics.features.inception`` loads
it, channels-last on CUDA, under inference mode) on one batch of ``--batch-size`` random 256 px images resident on
the GPU, after its own warm-up (compilation, cuDNN autotuning): ms per batch, images/s, the fraction of the TF32
bound (PyTorch's default math for convolutions, the one torch-fidelity runs under), the ratio to the first variant
measured in the same run, the warm-up seconds (a fresh Inductor cache), and the relative change of FD against the
eager forward on ``--fd-batches`` batches (half the images brightness-shifted: a typical FD magnitude). The stage's
own figures (shard reads, padding, output files) are ``benchmarks/feature_compile_gpu.py``'s; this script asks which
setting of the network's forward to make the stage's default. ``--profile``: the CUDA kernel time of the stage's
compiled forward and of the fastest variant, by kernel kind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests" / "metric_checks"))

import _smoke  # noqa: E402
from _gpu import feature_flops, peak, profile, timed  # noqa: E402

#: name -> knobs; "compile" is the features stage's CUDA path with ``metrics.feature_compile`` on. ``compile``: the
#: torch.compile mode (absent = eager); ``nhwc_input``: the batch handed over as the permuted view of the NHWC uint8
#: batch instead of an NCHW copy; ``freezing``: Inductor's weight freezing (folds batch norm into the convolutions;
#: tried as the stage's default and dropped: x1.03 through the stage, features 1.16e-3 from eager, see the README);
#: ``autocast``: the network under autocast to that dtype (bfloat16 is not a candidate: it moves FD by ~3e-2, the
#: issue's probe; listed as the ceiling; float16 keeps TF32's 10-bit mantissa, fp32 accumulation in cuDNN);
#: ``strict``: IEEE float32 convolutions and products (no TF32): how far TF32 itself moves FD, for scale;
#: ``reduce-overhead`` / ``max-autotune``: the compiled forward replayed as a CUDA graph (its output copied out)
VARIANTS = {
    "eager": {},
    "eager strict fp32": {"strict": True},
    "compile": {"compile": "default"},
    "+cudnn.benchmark": {"compile": "default", "cudnn_benchmark": True},
    "+nhwc input": {"compile": "default", "nhwc_input": True},
    "+freezing": {"compile": "default", "freezing": True},
    "max-autotune-no-cudagraphs": {"compile": "max-autotune-no-cudagraphs"},
    "max-autotune": {"compile": "max-autotune"},
    "reduce-overhead": {"compile": "reduce-overhead"},
    "+freezing reduce-overhead": {"compile": "reduce-overhead", "freezing": True},
    "+freezing max-autotune-no-cudagraphs": {"compile": "max-autotune-no-cudagraphs", "freezing": True},
    "fp16 eager": {"autocast": "float16"},
    "fp16 compile": {"compile": "default", "autocast": "float16"},
    "bf16 compile (ceiling)": {"compile": "default", "autocast": "bfloat16"},
}
SMOKE = {"batch_size": 2, "size": 32, "fd_batches": 2, "iters": 1, "warmup": 1,
         "variants": ["eager", "compile", "+freezing", "fp16 compile", "bf16 compile (ceiling)"]}


@contextlib.contextmanager
def knobs_set(knobs: dict, device: torch.device) -> Iterator[None]:
    """The process-wide settings of one variant (cuDNN autotuning, TF32, Inductor freezing, autocast), restored
    after."""
    import torch._inductor.config

    benchmark, tf32 = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.benchmark = bool(knobs.get("cudnn_benchmark"))
    torch.backends.cudnn.allow_tf32 = tf32 and not knobs.get("strict")
    dtype = knobs.get("autocast") if device.type == "cuda" else None
    try:
        with torch._inductor.config.patch(freezing=bool(knobs.get("freezing"))), torch.inference_mode(), \
                (torch.autocast("cuda", dtype=getattr(torch, dtype)) if dtype else contextlib.nullcontext()):
            yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = benchmark, tf32


def stage_call(model: torch.nn.Module, knobs: dict, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (b, H, W, 3) batch on ``device`` -> float32 (b, 2048) pool3 features, as the stage calls the network
    (compiled in the variant's mode on CUDA; eagerly elsewhere, where compiling takes minutes)."""
    def network(batch: torch.Tensor) -> torch.Tensor:
        return model(batch)[0]

    mode = knobs.get("compile")
    if mode and device.type == "cuda":
        torch._dynamo.reset()
        network = torch.compile(network, dynamic=False, mode=None if mode == "default" else mode)
    nhwc = bool(knobs.get("nhwc_input"))

    graphs = mode in ("reduce-overhead", "max-autotune") and device.type == "cuda"

    def call(batch: torch.Tensor) -> torch.Tensor:
        nchw = batch.permute(0, 3, 1, 2)
        if graphs:  # a CUDA-graph replay's outputs live in its pool until the next replay: keep a copy
            torch.compiler.cudagraph_mark_step_begin()
            return network(nchw if nhwc else nchw.contiguous()).float().clone()
        return network(nchw if nhwc else nchw.contiguous()).float()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (the network resizes to 299)")
    parser.add_argument("--fd-batches", type=int, default=4, help="batches of distinct images for the FD check")
    parser.add_argument("--iters", type=int, default=10, help="timed batches per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per variant first (compiles)")
    parser.add_argument("--profile", action="store_true", help="kernel time of 'compile' and the fastest variant")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="only these (the first is the "
                        "ratios' baseline; FD is always compared with the eager forward)")
    args = _smoke.parse_args(parser, SMOKE)
    from img_nets import random_images, save_random_inception

    from metrics.features import FEATURE_NETS
    from metrics.features.inception import load
    from metrics.frechet import fd_from_features

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type != "cuda":
        _smoke.skip("torch.compile, cuDNN autotuning, strict fp32, autocast (every variant runs the eager forward)",
                    "compiling on the CPU takes minutes; the knobs are CUDA's")
    names = args.variants or list(VARIANTS)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="feature_knobs_inductor_"))
    with tempfile.TemporaryDirectory(prefix="feature_knobs_") as tmp:
        weights = save_random_inception(Path(tmp) / "inception.pth")
        per_image = feature_flops(FEATURE_NETS.get("inception").with_options(weights=str(weights),
                                                                              allow_unverified=True), args.size)
        model = load(str(weights), str(device), device.type == "cuda")
    top = peak("tf32")
    bound = top / per_image if top else None
    half = args.fd_batches * args.batch_size // 2
    images = np.concatenate([random_images(half, seed=1, size=args.size),
                             random_images(half, seed=2, size=args.size, shift=25)])
    batches = [torch.from_numpy(images[i:i + args.batch_size]).to(device)
               for i in range(0, 2 * half, args.batch_size)]
    print(f"{'device ' + torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}; "
          f"inception-v3-compat on {args.size} px, batch {args.batch_size}; {per_image / 1e9:.2f} GFLOP per image"
          + (f", TF32 bound {bound:,.0f} img/s" if bound else ""), flush=True)
    eager_fd = eager_features = None
    base = None
    seconds: dict[str, float] = {}
    calls: dict[str, Callable[[], object]] = {}
    for name in dict.fromkeys(["eager", *names]):  # eager first: the FD reference
        knobs = VARIANTS[name]
        with knobs_set(knobs, device):
            call = stage_call(model, knobs, device)
            start = time.perf_counter()
            call(batches[0])
            if device.type == "cuda":
                torch.cuda.synchronize()
            warmup = time.perf_counter() - start
            sec = timed(lambda call=call: call(batches[0]), args.iters, args.warmup, device)
            features = torch.cat([call(b) for b in batches]).double().cpu().numpy()
        fd = fd_from_features(features[:half], features[half:])
        eager_fd = eager_fd if eager_fd is not None else fd
        eager_features = eager_features if eager_features is not None else features
        moved = np.abs(features - eager_features).max() / np.abs(eager_features).max()
        if name not in names:
            continue
        seconds[name] = sec
        base = base or sec
        rate = args.batch_size / sec
        share = f" = {rate / bound:5.1%} of the TF32 bound" if bound else ""
        print(f"  {name:<28} {sec * 1e3:8.1f} ms/batch {rate:9,.0f} img/s{share}  (x{base / sec:.2f}); first batch "
              f"{warmup:6.1f} s; FD rel. diff vs eager {abs(fd - eager_fd) / eager_fd:.1e}, features max rel. diff "
              f"{moved:.1e} (FD {fd:.6g})", flush=True)
        calls[name] = lambda call=call, knobs=knobs: _in_knobs(call, batches[0], knobs, device)
    if args.profile:
        fastest = min(seconds, key=seconds.get)
        for name in dict.fromkeys([n for n in ("compile", fastest) if n in calls]):
            profile(calls[name], name, device)


def _in_knobs(call: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, knobs: dict,
              device: torch.device) -> torch.Tensor:
    with knobs_set(knobs, device):
        return call(batch)


if __name__ == "__main__":
    main()

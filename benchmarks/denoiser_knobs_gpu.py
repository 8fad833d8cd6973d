"""What each GPU knob buys the image denoiser, and where its GPU time goes: the sampling forward and the training step.

    python benchmarks/denoiser_knobs_gpu.py [--size mdm_in256 --res 256 --rows 128 --batch 32]
    python benchmarks/denoiser_knobs_gpu.py --smoke   (CPU, tiny sizes, seconds: the code paths run, no numbers)

``forward``: one denoiser call on ``--rows`` rows (a CFG batch of rows / 2 images: the sampler's one batched call for
both branches) in bf16 autocast, for each knob set in :data:`FORWARD_VARIANTS`, each after its own warm-up (compiles,
cuDNN autotuning); ms per call, TFLOP/s of model FLOPs (torch's FlopCounterMode), the share of the bf16 dense peak
and the ratio to the first variant (the sample stage's CUDA default before these knobs) measured in the same run.

``train``: one optimisation step at ``--batch`` images as the training loop runs it (the compiled ``_Objective``,
eps-loss over the resolution levels, backward, gradient clipping, Adam, EMA) for each :data:`TRAIN_VARIANTS`; images/s
and MFU (fwd + bwd model FLOPs counted once, eagerly).

``--profile``: the CUDA kernel time of the first and the last variant of each part by kind (convolution, GEMM,
attention, Triton-fused normalisation / elementwise, other) and the top kernels: where the remaining time goes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import _smoke  # noqa: E402
from _gpu import counted_flops, peak, profile, timed, train_flops_per_image  # noqa: E402

from kaleido import checkpoint  # noqa: E402
from kaleido.models.group_norm import GroupNorm  # noqa: E402
from kaleido.training import _Objective, ema_update  # noqa: E402

#: name -> knobs; the first is the baseline of the ratios (the sample / train stage's CUDA path before this script)
#: ``aten_norm``: group norms through ``F.group_norm`` even on channels-last activations (the code before
#: kaleido.models.group_norm); ``coordinate_descent``: Inductor tunes each Triton kernel's block sizes;
#: ``cuda_graphs``: the compiled forward and backward replayed as CUDA graphs (``mode="reduce-overhead"``)
FORWARD_VARIANTS = {
    "bf16 +compile": {"compile": True},
    "+cudnn.benchmark": {"compile": True, "cudnn_benchmark": True},
    "+channels_last (aten norm)": {"compile": True, "cudnn_benchmark": True, "channels_last": True,
                                   "aten_norm": True},
    "+channels_last": {"compile": True, "cudnn_benchmark": True, "channels_last": True},
    "+coordinate descent": {"compile": True, "cudnn_benchmark": True, "channels_last": True,
                            "coordinate_descent": True},
    "eager +benchmark +cl": {"compile": False, "cudnn_benchmark": True, "channels_last": True},
}
TRAIN_VARIANTS = {
    "bf16 +compile": {"compile": True},
    "+fused Adam, foreach EMA": {"compile": True, "fused": True},
    "+cudnn.benchmark": {"compile": True, "fused": True, "cudnn_benchmark": True},
    "+channels_last (aten norm)": {"compile": True, "fused": True, "cudnn_benchmark": True, "channels_last": True,
                                   "aten_norm": True},
    "+channels_last": {"compile": True, "fused": True, "cudnn_benchmark": True, "channels_last": True},
    "+coordinate descent": {"compile": True, "fused": True, "cudnn_benchmark": True, "channels_last": True,
                            "coordinate_descent": True},
    "+cuda graphs": {"compile": True, "fused": True, "cudnn_benchmark": True, "channels_last": True,
                     "cuda_graphs": True},
}
SMOKE = {"size": "nested_tiny", "res": 16, "rows": 4, "batch": 2, "iters": 1, "warmup": 1}
CLASSES = ["a", "b", "c", "d"]


def build(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    meta = {"arch": {"arch": "nested_unet", "size": args.size, "cond_dim": args.cond_dim,
                     "context": {"encoder": "t5_tiny", "max_length": 8}},
            "data_shape": [args.res, args.res, 3], "num_classes": len(CLASSES), "class_names": CLASSES,
            "config_hash": "bench"}
    torch.manual_seed(0)
    return checkpoint.build_denoiser(meta).to(device)


def prepare(part: str, name: str, knobs: dict, model: torch.nn.Module, module: torch.nn.Module,
            compiled_before: Callable | None, device: torch.device) -> Callable:
    """Set one variant's knobs (cuDNN autotuning, the model's memory format, its group norms' path) and return
    ``module`` compiled (or eager off CUDA) for it: compiled afresh only when what the graph depends on changed,
    since cuDNN autotuning needs no recompilation (convolutions stay calls into cuDNN)."""
    compiled = bool(knobs.get("compile")) and device.type == "cuda"
    if knobs.get("compile") and not compiled:
        _smoke.skip(f"torch.compile in {part} {name} (run eagerly)", "compiling on the CPU takes minutes")
    torch.backends.cudnn.benchmark = bool(knobs.get("cudnn_benchmark"))
    fmt = torch.channels_last if knobs.get("channels_last") else torch.contiguous_format
    graph_knobs = (fmt, bool(knobs.get("aten_norm")), bool(knobs.get("coordinate_descent")),
                   bool(knobs.get("cuda_graphs")))
    changed = getattr(model, "_bench_graph_knobs", None) != graph_knobs
    model.to(memory_format=fmt)
    for norm in model.modules():
        if isinstance(norm, GroupNorm):
            norm.by_channel = not knobs.get("aten_norm")
    model._bench_graph_knobs = graph_knobs
    if changed or compiled_before is None or not compiled:
        torch._dynamo.reset()
        if not compiled:
            return module
        if knobs.get("cuda_graphs"):
            return torch.compile(module, mode="reduce-overhead")
        return torch.compile(module, options={"coordinate_descent_tuning": True} if knobs.get("coordinate_descent")
                             else None)
    return compiled_before


def profiled(args: argparse.Namespace, names: list[str], last: list[str]) -> list[str]:
    """The variants of a part that ``--profile`` names (none named: its first and ``last``)."""
    if args.profile is None:
        return []
    return [n for n in args.profile if n in names] if args.profile else names[:1] + last


def forward_part(args: argparse.Namespace, device: torch.device) -> None:
    model = build(args, device).eval()
    rows = args.rows
    labels = torch.arange(rows, device=device) % len(CLASSES)
    x = torch.randn(rows, model.data_dim, device=device)
    t = torch.full((rows,), 500, device=device)
    with torch.no_grad():
        y = torch.cat([model.encode(labels[: rows // 2])[0], model.null_condition(rows - rows // 2)])
    with torch.no_grad():
        flops = counted_flops(lambda: model(x, t, y))
    p = peak("bf16")
    print(f"forward: nested_unet/{args.size} {args.res}px, {sum(q.numel() for q in model.parameters()) / 1e6:.1f}M "
          f"parameters, {rows} rows (CFG batch {rows // 2}), {flops / rows / 1e9:.1f} GFLOP per row", flush=True)
    base = net = None
    names = [name for name in FORWARD_VARIANTS if not args.variants or name in args.variants]
    for name in names:
        net = prepare("forward", name, FORWARD_VARIANTS[name], model, model, net, device)

        def call(net=net) -> torch.Tensor:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
                return net(x, t, y)

        sec = timed(call, args.iters, args.warmup, device)
        base = base or sec
        share = f", {flops / sec / p:.1%} of the bf16 peak" if p else ""
        print(f"  forward {name:<28} {sec * 1e3:8.1f} ms/call  {flops / sec / 1e12:7.1f} TFLOP/s{share}  "
              f"(x{base / sec:.2f}; {rows / 2 / sec:.0f} CFG images per denoiser call-second)", flush=True)
        if name in profiled(args, names, [n for n in names if FORWARD_VARIANTS[n].get("compile")][-1:]):
            profile(call, f"forward {name}", device)


def train_part(args: argparse.Namespace, device: torch.device) -> None:
    from kaleido.diffusion.losses import diffusion_target, noised
    from kaleido.diffusion.schedule import Schedule

    model = build(args, device).train()
    ema = build(args, device).eval().requires_grad_(False)
    schedule = Schedule.from_spec("cosine", 1000)
    gen = torch.Generator(device=device).manual_seed(0)
    x0 = torch.rand(args.batch, model.data_dim, device=device, generator=gen) * 2 - 1
    labels = torch.arange(args.batch, device=device) % len(CLASSES)
    drop = torch.zeros(args.batch, dtype=torch.bool, device=device)
    p = peak("bf16")
    flops = None
    base = run = None
    objective = _Objective(model)
    names = [name for name in TRAIN_VARIANTS if not args.variants or name in args.variants]
    for name in names:
        knobs = TRAIN_VARIANTS[name]
        run = prepare("train", name, knobs, model, objective, run, device)
        ema.to(memory_format=torch.channels_last if knobs.get("channels_last") else torch.contiguous_format)
        fused = bool(knobs.get("fused")) and device.type == "cuda"
        opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.9, 0.99), eps=1e-8,
                               **({"fused": True} if fused else {}))

        graphs = bool(knobs.get("cuda_graphs")) and device.type == "cuda"

        def step(run=run, opt=opt, fused=fused, graphs=graphs) -> None:
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()  # a new replay: the last step's outputs are consumed
            t = torch.randint(1000, (args.batch,), device=device, generator=gen)
            noise = torch.randn(x0.shape, device=device, generator=gen)
            x_t, sab, s1mab = noised(schedule, x0, t, noise)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out, _ = run(x_t, t, labels, None, drop)
            loss = model.loss(out.float(), diffusion_target("eps", x0, noise, sab, s1mab))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if fused:
                ema_update(ema, model, 0.9999)
            else:  # the loop as it was: one lerp per tensor
                with torch.no_grad():
                    for p_ema, q in zip(ema.parameters(), model.parameters(), strict=True):
                        p_ema.lerp_(q, 1.0 - 0.9999)

        if flops is None:
            flops = train_flops_per_image(model, args.batch) * args.batch
            print(f"train: batch {args.batch}, {flops / args.batch / 1e9:.1f} GFLOP per image (fwd + bwd)",
                  flush=True)
        sec = timed(step, args.iters, args.warmup, device)
        base = base or sec
        mfu = f", MFU {flops / sec / p:.1%}" if p else ""
        print(f"  train {name:<30} {sec * 1e3:8.1f} ms/step  {args.batch / sec:7.1f} img/s{mfu}  (x{base / sec:.2f})",
              flush=True)
        if name in profiled(args, names, names[-1:]):
            profile(step, f"train {name}", device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("forward", "train"), default=["forward", "train"])
    parser.add_argument("--size", default="mdm_in256", help="NestedUNet size (kaleido.models.unet_sizes)")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--cond-dim", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=128, help="forward: rows per denoiser call (2 x CFG batch)")
    parser.add_argument("--batch", type=int, default=32, help="train: images per step")
    parser.add_argument("--iters", type=int, default=10, help="timed calls per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per variant first")
    parser.add_argument("--profile", nargs="*", metavar="VARIANT", help="kernel-time breakdown of these variants "
                        "(none named: the first and the last (compiled) variant of each part)")
    parser.add_argument("--variants", nargs="+", help="only these variants (names of FORWARD_VARIANTS / "
                        "TRAIN_VARIANTS; the first one given is the ratios' baseline)")
    args = _smoke.parse_args(parser, SMOKE)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cuda":
        print(f"device {torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    for part in args.parts:
        (forward_part if part == "forward" else train_part)(args, device)


if __name__ == "__main__":
    main()

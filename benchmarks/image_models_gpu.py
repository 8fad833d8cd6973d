"""Training and sampling throughput of the image denoiser: eager fp32 vs bf16 autocast + torch.compile.

    python benchmarks/image_models_gpu.py [--arch nested_unet --size nested_small] [--res 64] [--batch 64]
    python benchmarks/image_models_gpu.py --smoke      # nested_tiny, 16 px, batch 2 on the CPU; no torch.compile

Trains Kaleido's latent-augmented denoiser (NestedUNet + T5 prior over 16 latent tokens, frozen T5 context) with
the training loop's own objective (``kaleido.train``: multi-resolution diffusion loss + L_AR, Adam) and samples
with ``kaleido.generation.generate`` (DDPM, CFG). For each mode it prints images/s after warm-up, the ratio to eager
fp32 measured in the same run, the model FLOPs per trained image (fwd + bwd, torch's FlopCounterMode) and the
model FLOPs utilisation (MFU) against the GPU's dense peak for that precision.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _smoke  # noqa: E402
from _gpu import counted_flops, peak  # noqa: E402
from image_helpers import word_tokenizer  # noqa: E402

from kaleido import checkpoint, config  # noqa: E402
from kaleido.diffusion.losses import diffusion_target, noised  # noqa: E402
from kaleido.diffusion.schedule import Schedule  # noqa: E402
from kaleido.generation import generate  # noqa: E402
from kaleido.training import _Objective  # noqa: E402

CLASSES = ["circle", "square", "triangle", "star"]
#: compiling on the CPU takes minutes (4.5 min for these sizes on the 2-core machine): the compiled modes are left out
SMOKE = {"size": "nested_tiny", "res": 16, "batch": 2, "steps": 1, "warmup": 1, "samples": 2, "sample_steps": 2,
         "device": "cpu", "compile": False}



def build(args: argparse.Namespace, tokenizer: str, device: torch.device):
    meta = {"arch": {"arch": args.arch, "size": args.size, "cond_dim": 256,
                     "context": {"encoder": "t5_tiny", "tokenizer": tokenizer, "max_length": 8}},
            "data_shape": [args.res, args.res, 3], "num_classes": len(CLASSES), "class_names": CLASSES,
            "vocab_size": 64, "seq_len": 16, "config_hash": "bench"}
    torch.manual_seed(0)
    return checkpoint.build_denoiser(meta).to(device), meta


def train_throughput(model, data, tokens, args, precision: str, compiled: bool, device) -> tuple[float, float]:
    """(images/s, model FLOPs per image) of training steps after warm-up."""
    schedule = Schedule.from_spec("cosine", 1000)
    objective = _Objective(model)
    run = torch.compile(objective) if compiled else objective
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99), eps=1e-8)
    gen = torch.Generator(device=device).manual_seed(0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    labels = torch.arange(args.batch, device=device) % len(CLASSES)

    def step() -> None:
        idx = torch.randint(len(data), (args.batch,), device=device, generator=gen)
        t = torch.randint(1000, (args.batch,), device=device, generator=gen)
        x0 = data[idx]
        noise = torch.randn(x0.shape, device=device, generator=gen)
        x_t, sab, s1mab = noised(schedule, x0, t, noise)
        with autocast:
            out, logits = run(x_t, t, labels, tokens[idx], torch.zeros(args.batch, dtype=torch.bool, device=device))
        loss = model.loss(out.float(), diffusion_target("eps", x0, noise, sab, s1mab))
        loss = loss + model.prior.loss(logits.float(), tokens[idx])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize() if device.type == "cuda" else None
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize() if device.type == "cuda" else None
    rate = args.steps * args.batch / (time.perf_counter() - start)
    flops = 0.0
    if not compiled:
        flops = counted_flops(step) / args.batch
    return rate, flops


def sample_throughput(model, args, precision: str, compiled: bool) -> float:
    """Images/s of :func:`kaleido.generation.generate` (Kaleido: prior, then DDPM with CFG) with the sampler's own
    fast-path keys set to the mode (what the sample stage runs), after a warm-up batch."""
    exp = {"diffusion": {"timesteps": 1000, "schedule": "cosine", "prediction": "eps"},
           "sampler": {**config.block_defaults("sampler"), "name": "ddpm", "steps": args.sample_steps,
                       "precision": precision, "compile": compiled}}
    torch._dynamo.reset()  # each mode compiles afresh, as a sample job does
    generate(exp, 0, "kaleido", 4.0, range(args.batch), {"kaleido": model}, batch_size=args.batch)  # warm-up
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    start = time.perf_counter()
    generate(exp, 0, "kaleido", 4.0, range(args.samples), {"kaleido": model}, batch_size=args.batch)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return args.samples / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="nested_unet")
    parser.add_argument("--size", default="nested_small")
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time bf16 + torch.compile (default: yes)")
    args = _smoke.parse_args(parser, SMOKE, argv)
    with tempfile.TemporaryDirectory() as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> None:
    """Train, then sample, in each mode; print the rates (``tmp``: the tokenizer's directory)."""
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: the eager baseline is not silently TF32
    torch.backends.cudnn.allow_tf32 = False
    tokenizer = word_tokenizer(tmp / "tok", [*CLASSES, "red", "green", "blue", "left", "right"])
    model, _ = build(args, tokenizer, device)
    images = np.random.default_rng(0).integers(0, 256, (512, args.res, args.res, 3), dtype=np.uint8)
    data = model.data_to_model(images).to(device)
    tokens = torch.randint(3, 64, (512, 16), generator=torch.Generator().manual_seed(0)).to(device)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; {args.arch}/{args.size} "
          f"{args.res}px, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M trainable parameters, "
          f"batch {args.batch}")
    modes = [("fp32", False), ("bf16", False), ("bf16", True)]
    if not args.compile:
        modes = [(precision, compiled) for precision, compiled in modes if not compiled]
        if args.smoke:
            _smoke.skip("bf16 + torch.compile", "compiling on the CPU takes minutes")
    base_train = base_sample = flops = None
    for precision, compiled in modes:
        rate, counted = train_throughput(model, data, tokens, args, precision, compiled, device)
        flops = counted or flops
        base_train = base_train or rate
        p = peak(precision)
        mfu = f", MFU {rate * flops / p:.1%} of {p / 1e12:.0f} TFLOP/s" if p and flops else ""
        print(f"train  {precision}{' +compile' if compiled else '         '}: {rate:8.1f} img/s "
              f"(x{rate / base_train:.2f} vs eager fp32){mfu}")
    print(f"train model FLOPs per image (fwd+bwd): {flops / 1e9:.2f} GFLOP")
    model.eval()
    for precision, compiled in modes:
        rate = sample_throughput(model, args, precision, compiled)
        base_sample = base_sample or rate
        print(f"sample {precision}{' +compile' if compiled else '         '}: {rate:8.1f} img/s "
              f"({args.sample_steps} DDPM steps, CFG; x{rate / base_sample:.2f} vs eager fp32)")


if __name__ == "__main__":
    main()

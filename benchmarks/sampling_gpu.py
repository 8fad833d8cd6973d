"""Sampling throughput of the fast path (bf16 autocast + torch.compile, the sample stage's default on CUDA) against
eager fp32 and eager bf16, and whether the fast path's samples are the same experiment.

    python benchmarks/sampling_gpu.py throughput [--size mdm_in256 --res 256 --batch 64 --sample-steps 25]
    python benchmarks/sampling_gpu.py fidelity   [--num 10000 --train-steps 3000] [--work DIR]
    ... --smoke  (CPU, tiny sizes, seconds: the code paths run, the numbers mean nothing)

``throughput``: a randomly initialised MDM denoiser of the given size, CFG (w = 4, one batched forward for both
branches), DDPM through :func:`kaleido.generation.generate` with ``sampler.precision`` / ``sampler.compile`` set per
mode; prints images/s, the ratio to eager fp32 measured in the same run, the model FLOPs per image (CFG forwards x
steps, torch's FlopCounterMode) and the fraction of the GPU's dense peak for that precision.

``fidelity``: the stage CLIs on procedural shapes (32 px): train an MDM, sample ``--num`` images eagerly in fp32
with sample seed A and seed B and with the fast path with seeds A and B, extract features with the DAG-trained
``domain`` CNN, and print FD(eager A, eager B) (two eager seeds: the spread of the statistic) beside
FD(eager A, fast B) and FD(eager B, fast A) (eager vs fast, independent noise) and FD(eager A, fast A) (same noise).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import _smoke  # noqa: E402
from _gpu import counted_flops, peak, profile, timed  # noqa: E402

from kaleido import checkpoint, config  # noqa: E402
from kaleido.generation import generate  # noqa: E402

#: (precision, compile, cuda_graphs, channels_last) per mode; STAGE_MODE is the sample stage's default on CUDA
MODES = (("fp32", False, False, False), ("bf16", False, False, False), ("bf16", True, False, False),
         ("bf16", True, True, False), ("bf16", True, True, True))
STAGE_MODE = MODES[4]
SMOKE = {"size": "nested_tiny", "res": 16, "batch": 4, "samples": 8, "sample_steps": 2, "num": 64, "profile": 2,
         "train_steps": 4, "num_train": 128, "domain_steps": 5, "sample_steps_fidelity": 2}



def experiment(steps: int, precision: str, compiled: bool, graphs: bool = False, channels_last: bool = False) -> dict:
    return {"diffusion": {"timesteps": 1000, "schedule": "cosine", "prediction": "eps"},
            "sampler": {**config.block_defaults("sampler"), "name": "ddpm", "steps": steps, "precision": precision,
                        "compile": compiled, "cuda_graphs": graphs, "channels_last": channels_last}}


def mode_name(precision: str, compiled: bool, graphs: bool = False, channels_last: bool = False) -> str:
    return (precision + (" +graphs" if graphs else " +compile" if compiled else " eager")
            + (" +channels_last" if channels_last else ""))


def forward_flops(model: torch.nn.Module, batch: int, device: torch.device) -> float:
    """Model FLOPs of one CFG denoiser call per image (both branches: a forward of 2 x batch rows, / batch)."""
    labels = torch.arange(batch, device=device) % model.num_classes
    x = torch.randn(2 * batch, model.data_dim, device=device)
    with torch.no_grad():
        y = torch.cat([model.encode(labels)[0], model.null_condition(batch)])
        return counted_flops(lambda: model(x, torch.full((2 * batch,), 500, device=device), y)) / batch


def throughput(args: argparse.Namespace, device: torch.device) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: the eager baseline is not silently TF32
    torch.backends.cudnn.allow_tf32 = False
    meta = {"arch": {"arch": "nested_unet", "size": args.size, "cond_dim": 256,
                     "context": {"encoder": "t5_tiny", "max_length": 8}},
            "data_shape": [args.res, args.res, 3], "num_classes": 4, "class_names": ["a", "b", "c", "d"],
            "config_hash": "bench"}
    torch.manual_seed(0)
    model = checkpoint.build_denoiser(meta).to(device).eval()
    per_image = forward_flops(model, args.batch, device) * args.sample_steps
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; nested_unet/{args.size} "
          f"{args.res}px, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, batch {args.batch}, "
          f"{args.sample_steps} DDPM steps, CFG: {per_image / 1e9:.1f} GFLOP per image")
    base, base_name = None, ""
    modes = [MODES[i] for i in args.modes]
    runs = [(mode, args.batch) for mode in modes] + [(STAGE_MODE, batch) for batch in args.more_batches]
    first_batch: dict[tuple, np.ndarray] = {}  # samples of the first batch per mode at args.batch
    for mode, batch in runs:
        torch._dynamo.reset()  # each mode compiles afresh, as a sample job does
        if mode[1] and device.type != "cuda":
            print(f"sample {mode_name(*mode)}: skipped (torch.compile of the denoiser is the CUDA default only)")
            continue
        warm = experiment(2, *mode)  # the timed batch's shapes: compiles, picks cuDNN algorithms
        generate(warm, 0, "mdm", 4.0, range(batch), {"mdm": model}, batch_size=batch)
        torch.cuda.synchronize() if device.type == "cuda" else None
        start = time.perf_counter()
        samples = max(args.samples, batch)
        out = generate(experiment(args.sample_steps, *mode), 0, "mdm", 4.0, range(samples), {"mdm": model},
                       batch_size=batch)
        torch.cuda.synchronize() if device.type == "cuda" else None
        rate = samples / (time.perf_counter() - start)
        base, base_name = (base, base_name) if base else (rate, mode_name(*mode))
        p = peak(mode[0])
        share = f", {rate * per_image / p:.1%} of the {p / 1e12:.0f} TFLOP/s {mode[0]} peak" if p else ""
        print(f"sample {mode_name(*mode):<29} batch {batch:4d}: {rate:8.2f} img/s (x{rate / base:.2f} vs "
              f"{base_name}){share}", flush=True)
        if batch == args.batch:
            first_batch[mode] = out["x"][:batch]
    if args.profile:
        sampling_profile(model, args.batch, args.profile, per_image / args.sample_steps, device)
    compiled, graphs = MODES[2], MODES[3]
    if compiled in first_batch and graphs in first_batch:  # CUDA graphs replay the compiled kernels: same bits
        same = np.array_equal(first_batch[compiled], first_batch[graphs])
        print(f"samples of {mode_name(*graphs)} and {mode_name(*compiled)}: {'bit-identical' if same else 'DIFFER'} "
              f"({np.mean(first_batch[compiled] != first_batch[graphs]):.2%} of values differ)", flush=True)


def sampling_profile(model: torch.nn.Module, batch: int, steps: int, step_flops: float, device: torch.device
                     ) -> None:
    """Where a sampling step's time goes on the sample stage's CUDA default: one batch of ``steps`` DDPM steps,
    its wall time per step beside the denoiser call alone (the CFG forward of 2 x batch rows as the sampler makes
    it: ``kaleido.generation._eps_net``, the compiled graph the timed runs built, replayed), the per-step noise
    alone (eager, the sampler's, and compiled) and the kernel-time profile of the call."""
    from kaleido.diffusion.schedule import Schedule
    from kaleido.generation import _eps_net, fast_path

    mode = STAGE_MODE
    if device.type != "cuda":  # Inductor's C++ build of the denoiser would double the smoke run's time
        _smoke.skip("the compiled path in the profile", "the stage compiles on CUDA only; profiled eagerly")
        mode = MODES[0]
    exp = experiment(steps, *mode)
    run = lambda: generate(exp, 0, "mdm", 4.0, range(batch), {"mdm": model}, batch_size=batch)  # noqa: E731
    per_step = timed(run, iters=2, warmup=1, device=device) / steps
    labels = torch.arange(batch, device=device) % model.num_classes
    x = torch.randn(2 * batch, model.data_dim, device=device)
    with torch.no_grad():
        y = torch.cat([model.encode(labels)[0], model.null_condition(batch)])
        t = torch.full((2 * batch,), 500, device=device)
        net = _eps_net(model, Schedule.for_model(exp["diffusion"], model.level_layout),
                       exp["diffusion"]["prediction"], fast_path(exp["sampler"], device))
        forward = timed(lambda: net(x, t, y), iters=5, warmup=2, device=device)
    peak_flops = peak(mode[0]) or float("nan")
    print(f"sampling step ({mode_name(*mode)}, batch {batch}): {per_step * 1e3:.1f} ms per step "
          f"({batch * step_flops / per_step / peak_flops:.1%} of the {mode[0]} peak); the CFG denoiser call alone "
          f"{forward * 1e3:.1f} ms ({batch * step_flops / forward / peak_flops:.1%}): {per_step - forward:+.4f} s "
          "per step outside the forward", flush=True)
    from kaleido.guidance import STREAM_DIFFUSION
    from kaleido.rng import counter_normal

    index = torch.arange(batch, device=device)
    noise = lambda: counter_normal(0, index, STREAM_DIFFUSION, 3, (model.data_dim,))  # noqa: E731
    eager_noise = timed(noise, iters=5, warmup=1, device=device)
    fused = float("nan")
    if device.type == "cuda":  # Inductor's C++ build on the CPU would take the smoke run half a minute
        compiled_noise = torch.compile(counter_normal, dynamic=False)
        fused = timed(lambda: compiled_noise(0, index, STREAM_DIFFUSION, 3, (model.data_dim,)), iters=5, warmup=1,
                      device=device)
    else:
        _smoke.skip("the compiled per-step noise", "timed on CUDA only")
    print(f"  the per-step noise alone (counter_normal, {batch} x {model.data_dim}): eager {eager_noise * 1e3:.2f} ms, "
          f"compiled {fused * 1e3:.2f} ms", flush=True)
    profile(run, f"{steps} sampling steps", device)


def run(args: list[str]) -> None:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): python {' '.join(args)}\n{done.stderr[-3000:]}")
    print(f"[{time.perf_counter() - start:6.1f} s] python {' '.join(args[:3])} ...", flush=True)


def fidelity(args: argparse.Namespace, device: torch.device) -> None:
    from metrics.frechet import fd_from_features
    from metrics.io import load_npz

    work = Path(args.work or tempfile.mkdtemp(prefix="sampling_fidelity_"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((REPO / "config" / "shapes.yaml").read_text())
    cfg["results_dir"], cfg["reports_dir"] = str(work / "results"), str(work / "reports")
    exp = cfg["experiments"]["shapes"]
    exp["data"]["num_train"] = args.num_train
    exp["train"].update(steps=args.train_steps, checkpoint_every=max(1, args.train_steps))
    exp.update(methods=["mdm"], latents={}, guidance=[3], num_samples=args.num, shard_size=args.num, edits=[])
    exp["sampler"]["steps"] = args.sample_steps_fidelity
    fast = "bf16" if device.type == "cuda" else "fp32"
    if args.smoke:  # the throughput part's smoke run has run bf16 autocast on the CPU already, at a tiny size
        _smoke.skip("bf16 for the fast samples (fp32 instead)", "a CPU without native bf16 (AVX2) took 135 s for "
                    "one such sample job of the shapes model")
    paths = {}
    cuda = device.type == "cuda"
    for name, seed, precision, compiled in (("eager_A", 0, "fp32", False), ("eager_B", 1, "fp32", False),
                                            ("fast_A", 0, fast, cuda), ("fast_B", 1, fast, cuda)):
        variant = copy.deepcopy(cfg)
        variant["experiments"]["shapes"]["seed"] = seed  # the sample seed derives from it; the model is shared
        # the fast path as the stage runs it on CUDA (channels-last there); the eager one as on the CPU
        variant["experiments"]["shapes"]["sampler"].update(precision=precision, compile=compiled,
                                                          channels_last=compiled)
        paths[name] = work / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(variant))
    common = ["--config", str(paths["eager_A"]), "--experiment", "shapes"]
    data, model, domain = work / "train.npz", work / "mdm.pt", work / "domain.pt"
    run(["-m", "kaleido.data", *common, "--out", str(data)])
    run(["-m", "kaleido.train", *common, "--role", "mdm", "--latent", "none", "--data", str(data), "--out",
         str(model), "--device", str(device)])
    run(["-m", "metrics.features.domain", "train", "--data", str(data), "--out", str(domain), "--seed", "0",
         "--steps", str(args.domain_steps)])
    features, done = {}, {}
    for name, path in paths.items():
        shard, feats = work / f"{name}.npz", work / f"{name}_features.npz"
        text = path.read_text()
        if text in done:  # the same config as a set made already (fast = eager on the CPU): reuse it
            shutil.copyfile(work / f"{done[text]}.npz", shard)
            features[name] = features[done[text]]
            continue
        done[text] = name
        run(["-m", "kaleido.sample", "--config", str(path), "--experiment", "shapes", "--method", "mdm", "--latent",
             "none", "--guidance", "3", "--shard", "0", "--model", f"mdm={model}", "--device", str(device),
             "--batch-size", "1024", "--quiet", "--out", str(shard)])
        run(["-m", "metrics", "extract", "--net", "domain", "--weights", str(domain), "--out", str(feats),
             str(shard)])
        features[name] = load_npz(feats)["features"].astype(np.float64)
    images = {name: load_npz(work / f"{name}.npz")["x"] for name in paths}
    same = float(np.mean(images["eager_A"] != images["fast_A"]))
    print(f"same noise, eager vs fast: {same:.1%} of pixel values differ (uint8)")

    def fd(a: str, b: str) -> float:
        return fd_from_features(features[a], features[b])

    spread = fd("eager_A", "eager_B")
    print(f"FD(eager A, eager B) = {spread:.5f}   (two eager seeds: the statistic's spread at n={args.num})")
    for a, b in (("eager_A", "fast_B"), ("eager_B", "fast_A"), ("fast_A", "fast_B"), ("eager_A", "fast_A")):
        value = fd(a, b)
        print(f"FD({a.replace('_', ' ')}, {b.replace('_', ' ')}) = {value:.5f}   (x{value / spread:.2f} of two "
              "eager seeds)")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", choices=("throughput", "fidelity"), help="(with --smoke: default both)")
    parser.add_argument("--size", default="mdm_in256", help="NestedUNet size (kaleido.models.unet_sizes)")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--modes", type=int, nargs="+", default=list(range(len(MODES))),
                        help="throughput: indices into MODES to time (default all; the first is the baseline)")
    parser.add_argument("--more-batches", type=int, nargs="*", default=[],
                        help="throughput: also time the default fast path at these batch sizes")
    parser.add_argument("--samples", type=int, default=256, help="throughput: images timed per mode")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="throughput: then profile one batch of STEPS steps on the stage's default path")
    parser.add_argument("--sample-steps", type=int, default=25, help="throughput: DDPM steps")
    parser.add_argument("--num", type=int, default=10000, help="fidelity: samples per set")
    parser.add_argument("--num-train", type=int, default=20000, help="fidelity: training images")
    parser.add_argument("--train-steps", type=int, default=3000, help="fidelity: MDM training steps")
    parser.add_argument("--sample-steps-fidelity", type=int, default=50, help="fidelity: DDPM steps")
    parser.add_argument("--domain-steps", type=int, default=1000, help="fidelity: domain-CNN training steps")
    parser.add_argument("--work", help="fidelity: keep the stage outputs in this folder")
    args = _smoke.parse_args(parser, SMOKE)
    if args.part is None and not args.smoke:
        parser.error("name the part to run: throughput or fidelity")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    for part in [args.part] if args.part else ["throughput", "fidelity"]:
        (throughput if part == "throughput" else fidelity)(args, device)


if __name__ == "__main__":
    main()

"""Feature-extraction throughput of the features stage per network, eager and compiled (``metrics.feature_compile``).

    python benchmarks/feature_compile_gpu.py [--nets inception --n 50000 --size 256 --batch-size 500]
    python benchmarks/feature_compile_gpu.py --nets dinov2-hf sscd --n 10000 --batch-size 250
    python benchmarks/feature_compile_gpu.py --smoke   (CPU, tiny sizes, every network: the code paths run)

Through :func:`metrics.extract.write_features` (the stage's own path: chunks, batches read ahead by two threads into
pinned buffers, every shard's SHA-256 checked beside the extraction, the compiled forward with the last batch padded)
on N random 256 px images in shards of ``--shard-size``, with random weights built here in each network's release
format: ``inception`` = torch-fidelity ``inception-v3-compat``; ``dinov2-hf`` = a ``transformers`` Dinov2Model of
facebook/dinov2-large's shape (ViT-L/14, the architecture of the hub model the ``dinov2`` net loads); ``sscd`` = a
TorchScript ResNet-50 + GeM + 2048->512 projection (the ``sscd_disc_mixup`` release's architecture). Math modes are
PyTorch's and the reference packages' defaults: TF32 convolutions, strict fp32 matmuls (so DINOv2's bound is the fp32
CUDA-core peak). Runs eager, then compiled in a fresh process with an empty Inductor cache (cold: what a job on a new
node pays) and again with that cache (warm: a shared ``TORCHINDUCTOR_CACHE_DIR``). Prints images/s of the stage, the
seconds its shard hashing takes alone, images/s from an array in memory (ten batches: the network and the
host-to-GPU path; for SSCD also its NCHW peer beside the channels-last default, in the same process), and on CUDA
the two halves alone: the network on one resident batch, and the host feed of the whole set (``device_batches``)
beside the feed it replaced, in the same process; the one-off compile seconds, the ratio to eager measured in the
same run, the fraction of the FLOP bound in the network's math mode, the relative FD change against eager (real vs
brightness-shifted images, in the network's feature space) and the set size from which compiling pays off
(``metrics.extract.COMPILE_MIN_ITEMS`` is set from Inception's). Under ``--smoke`` the networks after the first run
their eager child only (on the CPU all three children run the same eager code).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests" / "metric_checks"))

import _smoke  # noqa: E402
from _gpu import feature_flops, peak  # noqa: E402

from metrics.features import PRECISIONS  # noqa: E402

#: weight file (or directory) of each network, and whether its FLOPs are convolutions (TF32 under PyTorch's default)
#: or matmuls (strict fp32 under PyTorch's default)
NETS = {"inception": ("inception.pth", "conv"), "dinov2-hf": ("dinov2", "matmul"), "sscd": ("sscd.pt", "conv")}
SMOKE = {"n": 6, "size": 32, "batch_size": 4, "distinct": 6, "shard_size": 4, "nets": list(NETS)}


def save_weights(net: str, path: Path, smoke: bool) -> None:
    """Random weights of ``net`` in its release format at ``path`` (full size, or tiny stand-ins under --smoke)."""
    from img_nets import save_hf_dinov2, save_random_inception, save_sscd_resnet50, save_tiny_sscd

    if net == "inception":
        save_random_inception(path)
    elif net == "dinov2-hf":
        save_hf_dinov2(path, "tiny" if smoke else "large")
    else:
        (save_tiny_sscd if smoke else save_sscd_resnet50)(path)


def math_mode(net: str, precision: str = "fp32") -> str:
    """The math mode of ``net``'s FLOPs under ``precision`` (:data:`metrics.features.PRECISIONS`; bf16 is autocast's)
    and the current PyTorch settings: "bf16", "tf32" or "fp32"."""
    import torch

    if precision != "fp32":
        return precision

    allowed = torch.backends.cudnn.allow_tf32 if NETS[net][1] == "conv" else torch.backends.cuda.matmul.allow_tf32
    return "tf32" if allowed else "fp32"


#: batches timed from memory (no shard reads, checks or output file) after the set
MEMORY_BATCHES = 10


def resident_batches(images: np.ndarray, batch_size: int, *, pad: bool, device: object):
    """Stand-in for ``device_batches``: the first batch copied to the GPU once and handed out for every batch, so that
    the stage's forward path runs without its host feed (the network's own rate)."""
    import torch

    batch = torch.from_numpy(np.ascontiguousarray(images[:batch_size])).to(device)
    for start in range(0, len(images), batch_size):
        yield min(batch_size, len(images) - start), batch


def previous_batches(images: np.ndarray, batch_size: int, *, pad: bool, device: object):
    """The feed ``device_batches`` replaced (the same batches, its last one unpadded): one thread reads each batch
    into a fresh array and pins it with a second copy (``pin_memory``), two batches ahead; the caller copies it to
    the GPU."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    import torch

    def load(start: int):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
        return len(batch), batch.pin_memory()

    starts = range(0, len(images), batch_size)
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = collections.deque(pool.submit(load, start) for start in starts[:2])
        for start in starts[2:]:
            rows, batch = ahead.popleft().result()
            ahead.append(pool.submit(load, start))
            yield rows, batch.to(device, non_blocking=True)
        while ahead:
            rows, batch = ahead.popleft().result()
            yield rows, batch.to(device, non_blocking=True)


def time_feed(feed, images: np.ndarray, batch_size: int, device: str) -> float:
    """Seconds for ``feed`` to put every batch of ``images`` on the GPU (no network: the host path's own rate)."""
    import torch

    start = time.perf_counter()
    for _ in feed(images, batch_size, pad=True, device=torch.device(device)):
        pass
    torch.cuda.synchronize()
    return time.perf_counter() - start


def extract(work: Path, net: str, name: str, compiled: bool, batch_size: int, precision: str) -> dict[str, float]:
    """Features of ``work/images.npz`` written to ``work/<name>.npz``; seconds of the first batch alone (compiling),
    of the whole set, of its shard checks, and of :data:`MEMORY_BATCHES` batches extracted from an array in memory
    (``memory_s`` for ``memory_n`` images: the network and the host-to-GPU path without the stage's file work)."""
    import torch

    from metrics.extract import write_features
    from metrics.features import FEATURE_NETS
    from metrics.io import load_npz
    from metrics.store import load_data

    device = "cuda" if torch.cuda.is_available() else "cpu"
    options = {"weights": str(work / NETS[net][0]), "batch_size": batch_size, "device": device,
               "allow_unverified": True, "compile": compiled, "precision": precision}
    first = time.perf_counter()
    write_features(work / f"{name}_first.npz", net, [work / "first.npz"], lambda s: {"config": s}, **options)
    first = time.perf_counter() - first
    start = time.perf_counter()
    n = len(load_data(work / "images.npz")["x"])  # what write_features does first: every shard's SHA-256 checked
    check = time.perf_counter() - start
    start = time.perf_counter()
    write_features(work / f"{name}.npz", net, [work / "images.npz"], lambda s: {"config": s}, **options)
    total = time.perf_counter() - start
    assert load_npz(work / f"{name}.npz")["features"].shape[0] == n
    in_memory = np.asarray(load_data(work / "images.npz", verify=False)["x"][:MEMORY_BATCHES * batch_size])
    network = FEATURE_NETS.get(net).with_options(**options)
    from metrics.features import _batching
    from metrics.features._batching import compiled_forward

    with compiled_forward(compiled):
        start = time.perf_counter()
        network.outputs(in_memory)
        memory = time.perf_counter() - start
        times = {"first_batch_s": first, "set_s": total, "check_s": check, "memory_s": memory,
                 "memory_n": len(in_memory)}
        if device == "cuda":  # the two halves alone: the network on one resident batch, and the host feed
            with mock.patch.object(_batching, "device_batches", resident_batches):
                start = time.perf_counter()
                network.outputs(in_memory)
                times["resident_s"] = time.perf_counter() - start
            sharded = load_data(work / "images.npz", verify=False)["x"]
            times["feed_n"] = n
            times["feed_s"] = time_feed(_batching.device_batches, sharded, batch_size, device)
            times["feed_previous_s"] = time_feed(previous_batches, sharded, batch_size, device)
        if net == "sscd" and device == "cuda":  # the peer of its CUDA default (channels-last): NCHW, same process
            from metrics.features import sscd

            sscd.extract_outputs(in_memory[:batch_size], batch_size=batch_size, device=device,
                                 weights=options["weights"], channels_last=False)  # its own warm-up / compile
            start = time.perf_counter()
            sscd.extract_outputs(in_memory, batch_size=batch_size, device=device, weights=options["weights"],
                                 channels_last=False)
            times["memory_nchw_s"] = time.perf_counter() - start
    return times


def child(args: argparse.Namespace) -> None:
    """The ``--child NAME`` process: one extraction, its timings as JSON on the last line."""
    print(json.dumps(extract(Path(args.work), args.net, args.child, args.child != "eager", args.batch_size,
                             args.precision)))


def run_child(work: Path, net: str, name: str, args: argparse.Namespace, cache: Path) -> dict[str, float]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, __file__, "--child", name, "--work", str(work), "--net", net,
                           "--batch-size", str(args.batch_size), "--precision", args.precision,
                           *(["--smoke"] if args.smoke else [])], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(net: str, work: Path, args: argparse.Namespace, cuda: bool) -> None:
    """Eager, cold-compiled and warm-compiled extraction of ``work/images.npz`` with ``net``; prints each."""
    import torch

    from metrics.features import FEATURE_NETS
    from metrics.frechet import fd_from_features
    from metrics.io import load_npz

    save_weights(net, work / NETS[net][0], args.smoke)
    per_image = feature_flops(FEATURE_NETS.get(net).with_options(weights=str(work / NETS[net][0]),
                                                                 allow_unverified=True), args.size)
    mode = math_mode(net, args.precision)
    gpu = torch.cuda.get_device_name() if cuda else "H100"  # off the GPU: an H100's bound, for the arithmetic
    top = peak(mode, gpu)
    bound = top / per_image
    print(f"{'device ' + gpu if cuda else 'cpu'}; torch {torch.__version__}; {net}: {args.n} images of {args.size} px "
          f"({args.distinct} distinct), batch {args.batch_size}; {per_image / 1e9:.2f} GFLOP per image in {mode}: "
          f"bound {bound:,.0f} img/s at {gpu}'s {top / 1e12:.0f} TFLOP/s", flush=True)
    half = max(1, args.distinct // 2)
    cache = work / f"inductor_cache_{net}"
    runs: dict[str, dict[str, float]] = {}
    features: dict[str, np.ndarray] = {}
    children = (("eager", "eager"), ("compiled_cold", "cold"), ("compiled_warm", "warm"))
    if args.smoke and net != args.nets[0]:  # on the CPU the three children run the same eager code: once is enough
        children = children[:1]
    for name, child_name in children:
        runs[name] = r = run_child(work, net, child_name, args, cache)  # each printed as it ends: a cut run keeps it
        features[name] = load_npz(work / f"{child_name}.npz")["features"].astype(np.float64)[:args.distinct]
        rate = args.n / r["set_s"]
        eager_rate = args.n / runs["eager"]["set_s"]
        compile_s = r["first_batch_s"] - runs["eager"]["first_batch_s"]
        fd = [fd_from_features(f[:half], f[half:]) for f in (features["eager"], features[name])]
        memory = r["memory_n"] / r["memory_s"]
        nchw = f" vs NCHW {r['memory_n'] / r['memory_nchw_s']:,.0f}" if "memory_nchw_s" in r else ""
        alone = (f"; network alone on a resident batch {r['memory_n'] / r['resident_s']:,.0f} img/s "
                 f"({r['memory_n'] / r['resident_s'] / bound:.1%}), host feed alone {r['feed_n'] / r['feed_s']:,.0f} "
                 f"img/s (previous feed {r['feed_n'] / r['feed_previous_s']:,.0f}, x"
                 f"{r['feed_previous_s'] / r['feed_s']:.2f})" if "resident_s" in r else "")
        print(f"{name:<14} {rate:9,.0f} img/s (x{rate / eager_rate:.2f} vs eager, {rate / bound:.1%} of the {mode} "
              f"bound; its shards' SHA-256 alone take {r['check_s']:.1f} s, beside the extraction); "
              f"{memory:,.0f} img/s from memory ({memory / bound:.1%}{nchw}); first batch {r['first_batch_s']:6.1f} s "
              f"(compile ~{compile_s:5.1f} s); FD rel. diff vs "
              f"eager {abs(fd[1] - fd[0]) / fd[0]:.1e}{alone}", flush=True)
    rate = {name: args.n / r["set_s"] for name, r in runs.items()}
    eager = runs["eager"]
    for name in ("compiled_cold", "compiled_warm"):
        if name not in runs:
            continue
        compile_s = runs[name]["first_batch_s"] - eager["first_batch_s"]
        gain = 1 / rate["eager"] - 1 / rate[name]
        pays = ("never (no speed-up)" if gain <= 0 else "the first image (no compile time measured)"
                if compile_s <= 0 else f"{compile_s / gain:,.0f} images")
        print(f"{net} {name}: compiling pays off from {pays}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["inception"], help="feature networks")
    parser.add_argument("--n", type=int, default=50000, help="images in the timed set")
    parser.add_argument("--distinct", type=int, default=5000, help="distinct images (the set repeats them)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--shard-size", type=int, default=5000, help="images per shard file of the set (data stage)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="metrics.feature_precision of every run (bf16: CUDA autocast)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--net", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = _smoke.parse_args(parser, SMOKE)
    if args.child:
        return child(args)
    import torch
    from img_nets import random_images

    from metrics.store import save_data

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda:
        _smoke.skip("compilation (the children run eagerly on the CPU)", "run_batched compiles on CUDA only")
    with tempfile.TemporaryDirectory(prefix="feature_compile_") as tmp:
        work = Path(tmp)
        half = max(1, args.distinct // 2)
        distinct = np.concatenate([random_images(half, seed=1, size=args.size),
                                   random_images(args.distinct - half, seed=2, size=args.size, shift=25)])
        images = distinct[np.arange(args.n) % len(distinct)]
        save_data(work / "images.npz", {"x": images, "labels": np.zeros(len(images), dtype=np.int64)}, {},
                  shard_size=args.shard_size)
        save_data(work / "first.npz", {"x": images[:args.batch_size],
                                       "labels": np.zeros(min(args.batch_size, len(images)), dtype=np.int64)}, {})
        del images
        for net in args.nets:
            measure(net, work, args, cuda)


if __name__ == "__main__":
    main()

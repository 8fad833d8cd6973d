"""Time the image-metric suite against the reference packages on the same inputs, in one process.

    python benchmarks/metrics_suite.py --n 50000 --device cuda [--precision bf16] [--compile] [--out result.json]
    python benchmarks/metrics_suite.py --n 256 --device cpu          # small CPU run
    python benchmarks/metrics_suite.py --smoke                        # 4 images of 32 px, JSON to a scratch file

Inputs: N real and N generated random uint8 RGB images (``--size`` square, 256 by default), ``--conditions``
condition labels on the generated set, and a random-weight torch-fidelity Inception file (He-normal conv weights,
built here; no download). Ours: ``metrics.features`` inception extraction of both sets, then FID, P/R/D/C
(k = ``--k`` for both), Vendi (whole set and per condition) and MSS through ``metrics.suite.compute_all``.
Reference, back to back: ``torch_fidelity.calculate_metrics(fid=True)`` on the images, ``prdc.compute_prdc`` and
``vendi_score.vendi.score_dual`` (whole set; per condition ``score_X`` when a condition has fewer rows than
dimensions) on the features, and a direct numpy MSS. Prints
both times, their ratio, both sets of values, Inception images/s and the network's FLOP bound on this device.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would drown the timings
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "metric_checks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported as benchmarks.metrics_suite
import _smoke  # noqa: E402
from _gpu import feature_flops, peak  # noqa: E402

from metrics.features import PRECISIONS  # noqa: E402

#: our metric groups (``metrics.suite.compute_all``), timed together and, with --breakdown, each alone
GROUPS = ("fid", "prdc", "vendi", "mss")
#: every step, the per-metric breakdown and the JSON file included (Inception itself stays full size: 2048-d features,
#: whose Fréchet distances take most of a smoke run)
SMOKE = {"n": 4, "size": 32, "k": 2, "batch_size": 4, "device": "cpu", "breakdown": True, "profile": True}


def make_images(n: int, size: int, seed: int, device: str) -> np.ndarray:
    """uint8 (n, size, size, 3) uniform random images, generated in chunks on ``device``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for start in range(0, n, 4096):
        stop = min(start + 4096, n)
        out[start:stop] = torch.randint(0, 256, (stop - start, size, size, 3), generator=generator, device=device,
                                        dtype=torch.uint8).cpu().numpy()
    return out


class _Images(torch.utils.data.Dataset):
    """uint8 (3, H, W) views of an NHWC array: torch-fidelity's Dataset input."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i]).permute(2, 0, 1)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(real, fake, labels, weights, args) -> tuple[dict[str, float], dict[str, float], np.ndarray, np.ndarray]:
    from metrics.features import FEATURE_NETS

    # random weights, by design: no digest to match (the records would say "unverified")
    net = FEATURE_NETS.get("inception").with_options(weights=str(weights), batch_size=args.batch_size,
                                                     device=args.device, precision=args.precision,
                                                     allow_unverified=True, compile=args.compile)
    t = time.perf_counter()
    net(real[: args.batch_size])  # build + warm up (cuDNN autotuning, compilation) outside the timing
    _sync(args.device)
    print(f"ours: warm-up batch {time.perf_counter() - t:.1f} s (compile={args.compile})", flush=True)
    t0 = time.perf_counter()
    real_f = net(real)
    fake_f = net(fake)
    _sync(args.device)
    t1 = time.perf_counter()
    values = our_metrics(real_f, fake_f, labels, args)
    t2 = time.perf_counter()
    return values, {"extract_s": t1 - t0, "metrics_s": t2 - t1, "total_s": t2 - t0}, real_f, fake_f


def our_metrics(real_f: np.ndarray, fake_f: np.ndarray, labels: np.ndarray, args,
                groups: tuple[str, ...] = GROUPS) -> dict[str, float]:
    """``compute_all`` of the metric ``groups`` with this run's options, finished on the device when it returns."""
    from metrics.suite import compute_all

    values = compute_all(real_f, fake_f, labels_fake=labels, k_pr=args.k, k_dc=args.k, device=args.device,
                         chunk_size=args.chunk_size, metrics=groups)
    _sync(args.device)
    return values


def metric_breakdown(real_f: np.ndarray, fake_f: np.ndarray, labels: np.ndarray, args) -> dict[str, float]:
    """Seconds of each metric group of ``compute_all`` run alone (after the timed run, so caches are warm)."""
    times = {}
    for group in GROUPS:
        t = time.perf_counter()
        our_metrics(real_f, fake_f, labels, args, (group,))
        times[group] = time.perf_counter() - t
    return times


def metric_profile(real_f: np.ndarray, fake_f: np.ndarray, labels: np.ndarray, args, top: int = 30) -> None:
    """Print where ``compute_all``'s seconds go (cProfile, by own time and by cumulative time; on CUDA a kernel's time
    lands on the call that waits for it, e.g. ``.cpu()``)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    our_metrics(real_f, fake_f, labels, args)
    profile.disable()
    for order in ("tottime", "cumulative"):
        pstats.Stats(profile, stream=sys.stdout).sort_stats(order).print_stats(top)


def run_reference(real, fake, labels, real_f, fake_f, weights, args) -> tuple[dict[str, float], dict[str, float]]:
    import torch_fidelity
    from prdc import compute_prdc
    from vendi_score import vendi

    t0 = time.perf_counter()
    fid = torch_fidelity.calculate_metrics(
        input1=_Images(fake), input2=_Images(real), fid=True, cuda=args.device.startswith("cuda"),
        batch_size=args.batch_size, feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(weights), cache=False, verbose=False)["frechet_inception_distance"]
    t1 = time.perf_counter()
    print(f"reference: torch-fidelity FID {t1 - t0:.2f} s", flush=True)
    values = {"fd": float(fid)}
    values.update(compute_prdc(real_features=real_f, fake_features=fake_f, nearest_k=args.k))
    t2 = time.perf_counter()
    print(f"reference: prdc {t2 - t1:.2f} s", flush=True)
    values["vendi"] = float(vendi.score_dual(fake_f))
    conditions = np.unique(labels)
    # The package's cheaper form per condition: score_X (n x n kernel) when a condition has fewer rows than
    # dimensions; score_dual always decomposes d x d (measured on an H100 at 400 conditions x 50 rows x 2048-d:
    # > 38 s, which would flatter our ratio).
    values["vendi_per_condition"] = float(np.mean([
        (vendi.score_X if (labels == c).sum() < fake_f.shape[1] else vendi.score_dual)(fake_f[labels == c])
        for c in conditions]))
    mss = []
    for c in conditions:
        x = fake_f[labels == c].astype(np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        mss.append((x @ x.T).mean())
    values["mss"] = float(np.mean(mss))
    t3 = time.perf_counter()
    return values, {"torch_fidelity_fid_s": t1 - t0, "prdc_s": t2 - t1, "vendi_mss_s": t3 - t2, "total_s": t3 - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256, help="images per set (default 256)")
    parser.add_argument("--size", type=int, default=256, help="image side (default 256)")
    parser.add_argument("--conditions", type=int, help="condition labels on the fake set (default max(2, n // 50))")
    parser.add_argument("--k", type=int, default=5, help="k of P/R/D/C on both sides (default 5, prdc's README)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=200, help="extraction batch, both sides (default 200)")
    parser.add_argument("--chunk-size", type=int, default=4096, help="k-NN rows per distance block (default 4096)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="our extractor's precision")
    parser.add_argument("--compile", action="store_true",
                        help="our extractor's forward under torch.compile (metrics.feature_compile; CUDA only)")
    parser.add_argument("--skip-reference", action="store_true", help="time ours only")
    parser.add_argument("--breakdown", action="store_true", help="also time each metric group alone (untimed total)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of our metric computation")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here (smoke: a scratch file)")
    args = _smoke.parse_args(parser, SMOKE, argv)
    tmp = Path(tempfile.mkdtemp(prefix="metrics_suite_"))
    try:
        if args.smoke and args.out is None:
            args.out = tmp / "result.json"
        run(args, tmp)
        if args.smoke:
            json.loads(args.out.read_text())  # written and readable
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, tmp: Path) -> None:
    """Time ours and (unless ``--skip-reference``) the reference on the same inputs; print, and write ``--out``."""
    from img_nets import save_random_inception

    torch.manual_seed(0)
    conditions = args.conditions or max(2, args.n // 50)
    weights = save_random_inception(tmp / "inception.pth")
    t = time.perf_counter()
    real = make_images(args.n, args.size, 1, args.device)
    fake = make_images(args.n, args.size, 2, args.device)
    labels = np.arange(args.n) % conditions
    print(f"inputs: 2 x {args.n} images {args.size}x{args.size}, {conditions} conditions, device {args.device} "
          f"({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}); "
          f"made in {time.perf_counter() - t:.1f} s; torch {torch.__version__}, both sides under PyTorch's math "
          f"defaults: cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} (TF32 convolutions), "
          f"cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}", flush=True)

    ours, ours_t, real_f, fake_f = run_ours(real, fake, labels, weights, args)
    images_per_s = 2 * args.n / ours_t["extract_s"]
    print(f"ours ({args.precision}): extract {ours_t['extract_s']:.2f} s ({images_per_s:.0f} img/s), "
          f"metrics {ours_t['metrics_s']:.2f} s, total {ours_t['total_s']:.2f} s", flush=True)
    print("ours values: " + json.dumps(ours), flush=True)
    if args.breakdown:
        parts = metric_breakdown(real_f, fake_f, labels, args)
        print("ours, each metric group alone: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()), flush=True)
    if args.profile:
        metric_profile(real_f, fake_f, labels, args)
    from metrics.features import FEATURE_NETS

    flops = feature_flops(FEATURE_NETS.get("inception").with_options(weights=str(weights), allow_unverified=True),
                          args.size)
    result: dict[str, object] = {"n": args.n, "size": args.size, "device": args.device, "precision": args.precision,
                                 "ours": ours, "ours_times": ours_t, "inception_images_per_s": images_per_s,
                                 "inception_gflop_per_image": flops / 1e9}
    print(f"Inception: {flops / 1e9:.2f} GFLOP/image (FLOPs = 2 x MACs, resize excluded)")
    gpu_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    if peak("bf16", gpu_name) is not None:
        # the convolutions' math mode in this run: bf16 autocast, else TF32 when cuDNN allows it (PyTorch's default)
        in_effect = "bf16" if args.precision == "bf16" else "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
        for mode in ("fp32", "tf32", "bf16"):
            top = peak(mode, gpu_name)
            bound = top / flops
            mark = "  <- this run's math mode" if mode == in_effect else ""
            print(f"  FLOP bound at {mode} peak {top / 1e12:.0f} TFLOP/s: {bound:.0f} img/s; ours "
                  f"reach {100 * images_per_s / bound:.1f}%{mark}")
            result[f"flop_bound_{mode}_images_per_s"] = bound
        result["conv_math_mode"] = in_effect
    if not args.skip_reference:
        ref, ref_t = run_reference(real, fake, labels, real_f, fake_f, weights, args)
        print(f"reference: torch-fidelity FID {ref_t['torch_fidelity_fid_s']:.2f} s, prdc {ref_t['prdc_s']:.2f} s, "
              f"vendi-score + numpy MSS {ref_t['vendi_mss_s']:.2f} s, total {ref_t['total_s']:.2f} s", flush=True)
        print("reference values: " + json.dumps(ref))
        ratio = ref_t["total_s"] / ours_t["total_s"]
        print(f"speed-up (reference total / ours total): {ratio:.2f}x")
        rel = {k: abs(ours[k] - v) / max(abs(v), 1e-30) for k, v in ref.items()}
        print("relative differences: " + json.dumps(rel))
        result.update(reference=ref, reference_times=ref_t, speedup=ratio, relative_differences=rel)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())

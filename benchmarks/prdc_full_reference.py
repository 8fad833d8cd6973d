"""Time P/R/D/C against a reference set the size of ImageNet's training set, read from ``.npy`` shards on disk.

    python benchmarks/prdc_full_reference.py --device cuda                    # 1,281,167 x 2048 real, 50,000 fake
    python benchmarks/prdc_full_reference.py --device cuda --n-real 256000    # a fraction, extrapolated to the full set
    python benchmarks/prdc_full_reference.py --smoke                          # CPU, tiny, seconds

Writes ``--n-real`` reference and ``--n-fake`` generated float32 feature rows of ``--dim`` as ``.npy`` shards of
``--shard-rows`` under ``--dir`` (kept and reused by a later run with the same sizes and seed; a temporary folder,
removed afterwards, without ``--dir``): rows around 1000 class centres, generated rows slightly wider, so precision
and recall are neither 0 nor 1. Then runs ``metrics.prdc.prdc`` on the shards read in place
(:class:`metrics.store.ShardedArray`) on ``--device`` and prints its time per phase (real radii ~ n_real^2, fake
radii, ball tests ~ n_real * n_fake), peak host RSS (``ru_maxrss``), peak GPU memory
(``torch.cuda.max_memory_allocated``) and, for a fraction of the full set, the full run's time extrapolated from the
phases. Last, the agreement check: on the first ``--check-rows`` rows of both sets, the same computation at
``--precision`` and at float64 (must be equal, bit for bit) against ``prdc.compute_prdc`` (the reference package,
relative 1e-4). The last line printed is one JSON object with every number.

Measured on one H100 80GB (torch 2.11, 2026-12, default flags, auto = TF32 filter): the full set in 137.6 s (real
radii 121.0 s in 2 passes of 857,805 rows, fake radii 0.7 s, ball tests 15.3 s), peak GPU memory 37.7 GiB, host RSS
2.6 GB (reached while writing the shards; the P/R/D/C step added nothing); 10K x 10K agreement: TF32 == float64
bit for bit, ``prdc`` within 1.9e-16. 640,000 rows: 30.9 s (extrapolated full: 105 s). float64 filter at 200,000
rows: 12.0 s, extrapolated full 312 s (TF32 at 200,000: 6.7 s). An H200 holds the whole set in one pass.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _smoke  # noqa: E402

from metrics import keys  # noqa: E402
from metrics.prdc import prdc  # noqa: E402
from metrics.store import ShardedArray, npy_rows  # noqa: E402

#: rows of ImageNet-1k's training set
IMAGENET_TRAIN_ROWS = 1_281_167
#: every phase and the agreement check, on sizes that take seconds: several shards, passes and key chunks, and the
#: float32 filter with its float64 re-checks (TF32 needs a CUDA device)
SMOKE = {"n_real": 3000, "n_fake": 600, "dim": 64, "device": "cpu", "shard_rows": 1100, "chunk_size": 256,
         "key_chunk_size": 1300, "check_rows": 500}
CLASSES = 1000
_GENERATE_ROWS = 16384  # rows generated and written at a time (bounds the writer's memory)


def _write_shard(path: Path, rows: int, centres: np.ndarray, scale: float, seed: np.random.SeedSequence) -> None:
    """One float32 ``.npy`` shard of ``rows`` rows ``centres[label] + scale * N(0, I)``, written in pieces."""
    rng = np.random.default_rng(seed)
    dim = centres.shape[1]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        for start in range(0, rows, _GENERATE_ROWS):
            count = min(_GENERATE_ROWS, rows - start)
            block = rng.standard_normal((count, dim), dtype=np.float32)
            block *= scale
            block += centres[rng.integers(0, len(centres), count)]
            handle.write(block.tobytes())
    tmp.replace(path)


def write_features(folder: Path, name: str, rows: int, centres: np.ndarray, scale: float, shard_rows: int,
                   seed: int) -> ShardedArray:
    """``rows`` x d float32 features as ``<name>-NNNNN.npy`` shards in ``folder`` (reused when a finished earlier
    run wrote the same), read back as one :class:`ShardedArray`."""
    stamp = folder / f"{name}.json"
    spec = {"rows": rows, "dim": centres.shape[1], "scale": scale, "shard_rows": shard_rows, "seed": seed}
    counts = [min(shard_rows, rows - start) for start in range(0, rows, shard_rows)]
    files = [folder / f"{name}-{k:05d}.npy" for k in range(len(counts))]
    if not (stamp.is_file() and json.loads(stamp.read_text()) == spec and all(f.is_file() for f in files)):
        seeds = np.random.SeedSequence([seed, len(name)]).spawn(len(files))
        with ThreadPoolExecutor(max_workers=8) as pool:  # numpy's generators release the GIL while filling
            list(pool.map(_write_shard, files, counts, [centres] * len(files), [scale] * len(files), seeds))
        stamp.write_text(json.dumps(spec))
    offsets = [npy_rows(f).offsets[0] for f in files]
    return ShardedArray(files, counts, (centres.shape[1],), np.dtype(np.float32), offsets)


class _Phases(logging.Handler):
    """Collects the seconds per phase that ``metrics.prdc`` logs at INFO, and echoes its messages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "phase"):
            self.seconds[record.phase] = record.seconds
        print(f"  {record.getMessage()}", flush=True)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def extrapolate(seconds: dict[str, float], n_real: int, full_rows: int = IMAGENET_TRAIN_ROWS) -> float:
    """The run's time at ``full_rows`` reference rows from its phases at ``n_real``: real radii grow with n^2, ball
    tests with n, the fake radii not at all."""
    scale = full_rows / n_real
    return (seconds.get("real_radii", 0.0) * scale**2 + seconds.get("fake_radii", 0.0)
            + seconds.get("ball_tests", 0.0) * scale)


def agreement(real: ShardedArray, fake: ShardedArray, rows: int, k: int, args: argparse.Namespace) -> dict:
    """Ours at ``--precision`` and at float64 (equal, bit for bit) and ``prdc.compute_prdc`` on the first ``rows``
    rows of both sets, k for both radii."""
    import prdc as prdc_package

    real_rows, fake_rows = real[:min(rows, len(real))], fake[:min(rows, len(fake))]
    start = time.perf_counter()
    ours = prdc(real_rows, fake_rows, k, k, chunk_size=args.chunk_size, device=args.device,
                precision=args.precision)
    ours_seconds = time.perf_counter() - start
    exact = prdc(real_rows, fake_rows, k, k, chunk_size=args.chunk_size, device=args.device, precision="float64")
    start = time.perf_counter()
    reference = {name: float(v) for name, v in prdc_package.compute_prdc(real_rows, fake_rows, nearest_k=k).items()}
    reference_seconds = time.perf_counter() - start
    worst = max(abs(ours[name] - reference[name]) / max(abs(reference[name]), 1e-12) for name in reference)
    return {"rows": [len(real_rows), len(fake_rows)], "k": k, "ours": ours, "ours_float64": exact,
            "prdc_package": reference, "precision_equals_float64": ours == exact, "max_rel_diff": worst,
            "agrees": ours == exact and worst <= 1e-4, "seconds": {"ours": ours_seconds, "prdc": reference_seconds}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-real", type=int, default=IMAGENET_TRAIN_ROWS, help="reference rows (default: ImageNet)")
    parser.add_argument("--n-fake", type=int, default=50_000, help="generated rows (default 50000)")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension (default 2048, Inception)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto", help="k-NN filter: auto, float64, float32, tf32")
    parser.add_argument("--chunk-size", type=int, default=1024, help="query rows per distance block (default 1024)")
    parser.add_argument("--key-chunk-size", type=int, default=0,
                        help="key rows per block and rows held on the device (default 0: from free memory)")
    parser.add_argument("--k-pr", type=int, default=3)
    parser.add_argument("--k-dc", type=int, default=5)
    parser.add_argument("--shard-rows", type=int, default=131072, help="rows per .npy shard (default 131072)")
    parser.add_argument("--check-rows", type=int, default=10_000,
                        help="rows of each set for the agreement check with the prdc package (0 = none)")
    parser.add_argument("--dir", type=Path, help="folder for the shards, kept and reused (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = _smoke.parse_args(parser, SMOKE, argv)
    logger = logging.getLogger("metrics.prdc")
    phases = _Phases()
    logger.addHandler(phases)
    logger.setLevel(logging.INFO)

    gpu = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None
    print(f"device {args.device} ({gpu or 'cpu'}), torch {torch.__version__}, precision {args.precision}", flush=True)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="prdc_full_reference_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        centres = (1.0 + np.random.default_rng(args.seed).standard_normal((CLASSES, args.dim))).astype(np.float32)
        real = write_features(folder, "real", args.n_real, centres, 1.0, args.shard_rows, args.seed)
        fake = write_features(folder, "fake", args.n_fake, centres, 1.0 + 0.6 / math.sqrt(args.dim), args.shard_rows,
                              args.seed + 1)
        write_seconds = time.perf_counter() - start
        size_gb = (args.n_real + args.n_fake) * args.dim * 4 / 1e9
        print(f"features: {args.n_real} real + {args.n_fake} fake x {args.dim} float32 ({size_gb:.1f} GB, "
              f"{len(real.files)} + {len(fake.files)} shards) ready in {write_seconds:.1f} s", flush=True)

        rss_before = _peak_rss_mib()
        if gpu:
            torch.cuda.reset_peak_memory_stats(args.device)
        start = time.perf_counter()
        values = prdc(real, fake, args.k_pr, args.k_dc, chunk_size=args.chunk_size, device=args.device,
                      key_chunk_size=args.key_chunk_size, precision=args.precision)
        seconds = time.perf_counter() - start
        peak_gpu_gb = torch.cuda.max_memory_allocated(args.device) / 2**30 if gpu else None
        peak_rss = _peak_rss_mib()
        print(f"P/R/D/C in {seconds:.1f} s: " + ", ".join(f"{k} {values[k]:.4f}" for k in
                                                           (keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE)))
        print(f"peak host RSS {peak_rss:.0f} MiB (before the run {rss_before:.0f} MiB); peak GPU memory "
              + (f"{peak_gpu_gb:.1f} GiB" if gpu else "n/a (cpu)"), flush=True)
        main_phases = dict(phases.seconds)  # the agreement check below logs phases of its own
        full = extrapolate(main_phases, args.n_real)
        if args.n_real != IMAGENET_TRAIN_ROWS:
            print(f"extrapolated to {IMAGENET_TRAIN_ROWS} reference rows: {full:.0f} s ({full / 60:.1f} min)")
        record = {"device": args.device, "gpu": gpu, "precision": args.precision, "n_real": args.n_real,
                  "n_fake": args.n_fake, "dim": args.dim, "chunk_size": args.chunk_size,
                  "key_chunk_size": args.key_chunk_size, "seconds": seconds, "phases": main_phases,
                  "extrapolated_full_seconds": full, "write_seconds": write_seconds, "peak_rss_mib": peak_rss,
                  "rss_before_mib": rss_before, "peak_gpu_gib": peak_gpu_gb, "values": values}
        if args.check_rows:
            check = agreement(real, fake, args.check_rows, args.k_pr, args)
            print(f"agreement on {check['rows'][0]} x {check['rows'][1]} rows, k = {check['k']}: ours "
                  f"{check['ours']}; prdc {check['prdc_package']}; max relative difference "
                  f"{check['max_rel_diff']:.2e}; {args.precision} == float64: {check['precision_equals_float64']}")
            record["agreement"] = check
            if not check["agrees"]:
                print("DISAGREEMENT: see the numbers above", file=sys.stderr)
        if gpu is None and args.smoke:
            _smoke.skip("the TF32 filter", "it needs a CUDA device (the smoke run uses the float32 filter on the CPU)")
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    text = json.dumps(record, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0 if record.get("agreement", {"agrees": True})["agrees"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Latent-prior sampling with and without the key/value cache, same model, same draws, same process.

    python benchmarks/prior_kv_cache.py [--device cuda] [--size t5_small_random] [--batch 64] [--lengths 32 128]
    python benchmarks/prior_kv_cache.py --smoke      # t5_tiny, batch 2, 4 and 8 tokens, on the CPU

For each sequence length L, :meth:`T5LatentPrior.generate` samples L tokens for ``batch`` conditions twice: with
``use_cache=False`` (the decoder re-reads the whole prefix at every step, O(L^2) work) and with the cache (one new
position per step). Prints latents/s for both, the speed-up, and whether both drew identical ids.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _smoke  # noqa: E402

from kaleido.models.t5 import T5_SIZES, T5LatentPrior, t5_config  # noqa: E402

SMOKE = {"device": "cpu", "size": "t5_tiny", "batch": 2, "vocab": 128, "lengths": [4, 8], "repeats": 1}


def _timed(fn, device: str, repeats: int) -> tuple[float, torch.Tensor]:
    """Best wall time (s) of ``repeats`` calls after one warm-up; returns it and the last result's ids."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", default="t5_small_random", choices=sorted(T5_SIZES))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=32_128, help="T5's vocabulary size")
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--repeats", type=int, default=3)
    args = _smoke.parse_args(ap, SMOKE, argv)

    torch.manual_seed(0)
    prior = T5LatentPrior(t5_config(args.size, args.vocab), args.vocab, enc_dim=256,
                          eos_id=None).to(args.device).eval()
    ctx = (torch.randn(args.batch, 16, 256, device=args.device),
           torch.ones(args.batch, 16, dtype=torch.bool, device=args.device))
    index = torch.arange(args.batch)
    print(f"prior {args.size} ({sum(p.numel() for p in prior.parameters()) / 1e6:.1f} M params) on {args.device}, "
          f"batch {args.batch}")
    for length in args.lengths:
        runs = {}
        for cache in (False, True):
            runs[cache] = _timed(lambda c=cache, n=length: prior.generate(ctx, n, seed=0, index=index, stream=0,
                                                                use_cache=c), args.device, args.repeats)
        (t_full, ids_full), (t_cache, ids_cache) = runs[False], runs[True]
        print(f"L={length:4d}  full recompute {args.batch / t_full:9.1f} latents/s   kv cache "
              f"{args.batch / t_cache:9.1f} latents/s   speed-up x{t_full / t_cache:.2f}   "
              f"same ids: {bool(torch.equal(ids_full, ids_cache))}")


if __name__ == "__main__":
    main()

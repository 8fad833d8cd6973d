"""Inception extraction speed and accuracy under each GPU math/memory setting, against torch-fidelity's defaults.

    python benchmarks/inception_settings.py --n 10000 --device cuda [--batch-sizes 200 500]
    python benchmarks/inception_settings.py --smoke      # 2 images per set, batch 2, on the CPU

For every combination of cuDNN TF32 (on = PyTorch's default for convolutions, off = true fp32), channels-last
weights, ``cudnn.benchmark`` and batch size, extract torch-fidelity ``inception-v3-compat`` pool3 features
(random-weight file built here, no download) of N real and N fake random 256x256 images with
``metrics.features.inception`` and print: images/s, the speed ratio against torch-fidelity's own extractor
(``torch_fidelity.calculate_metrics`` feature path: ``FeatureExtractorInceptionV3`` under PyTorch defaults, NCHW,
same batch) measured in the same run, the largest relative feature difference and the relative FD difference
against strict fp32 (TF32 off, NCHW). FD is reported twice: between two samples of the same distribution (tiny FD,
the hardest case for relative error) and against a shifted fake set (a typical FD magnitude).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "metric_checks"))
import _smoke  # noqa: E402

#: the CPU runs the strict fp32 settings (TF32 and cudnn.benchmark are CUDA's), NCHW and channels-last
SMOKE = {"n": 2, "batch_sizes": [2], "device": "cpu"}


def extract(images: np.ndarray, weights: Path, device: str, batch_size: int, channels_last: bool) -> np.ndarray:
    from metrics.features._batching import run_batched
    from metrics.features.inception import load

    model = load(str(weights), device, channels_last)
    return run_batched(images, lambda b: {"f": model(b)[0]}, batch_size=batch_size, device=device)["f"]


def reference_extract(images: np.ndarray, weights: Path, device: str, batch_size: int) -> np.ndarray:
    """torch-fidelity's feature path: its extractor, its DataLoader over a uint8 Dataset, its batch loop."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import get_featuresdict_from_dataset

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.from_numpy(images[i]).permute(2, 0, 1)

    model = FEATURE_EXTRACTORS_REGISTRY["inception-v3-compat"]("inception-v3-compat", ["2048"],
                                                               feature_extractor_weights_path=str(weights))
    model = model.to(device).eval()
    out = get_featuresdict_from_dataset(Images(), model, batch_size, device.startswith("cuda"), False, False)
    return out["2048"].cpu().numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=512, help="images per set (default 512)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[200, 500])
    args = _smoke.parse_args(parser, SMOKE, argv)
    tmp = Path(tempfile.mkdtemp(prefix="inception_settings_"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, tmp: Path) -> None:
    """Every setting, then torch-fidelity's extractor per batch size; print as they finish (``tmp``: the weights)."""
    from img_nets import save_random_inception

    from benchmarks.metrics_suite import _sync, make_images
    from metrics.frechet import fd_from_features as fd

    weights = save_random_inception(tmp / "inception.pth")
    real = make_images(args.n, 256, 1, args.device)
    fake = make_images(args.n, 256, 2, args.device)
    shifted = (fake.astype(np.int16) // 2 + 64).astype(np.uint8)  # a lower-contrast fake set: a sizeable FD
    cuda = args.device.startswith("cuda")
    print(f"{args.n} real + {args.n} fake + {args.n} shifted 256x256 images on {args.device} "
          f"({torch.cuda.get_device_name() if cuda else 'cpu'}); torch {torch.__version__}; PyTorch defaults: "
          f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, cudnn.benchmark={torch.backends.cudnn.benchmark}",
          flush=True)
    defaults = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    if args.smoke and not cuda:
        _smoke.skip("TF32 and cudnn.benchmark settings", "CUDA only")

    def timed(fn):
        fn(real[:args.batch_sizes[0]])  # warm-up: weights, cuDNN algorithm choice
        _sync(args.device)
        t = time.perf_counter()
        out = [fn(x) for x in (real, fake, shifted)]
        _sync(args.device)
        return out, 3 * args.n / (time.perf_counter() - t)

    rows = []
    strict = None
    for tf32, cl, bench, bs in itertools.product((False, True), (False, True), (False, True), args.batch_sizes):
        if not cuda and (tf32 or bench):
            continue
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = tf32, bench
        feats, rate = timed(lambda x, cl=cl, bs=bs: extract(x, weights, args.device, bs, cl))
        if strict is None:
            strict = feats
        rel_feat = max(float(np.abs(f - s).max() / np.abs(s).max()) for f, s in zip(feats, strict, strict=True))
        fd_same, fd_shift = fd(feats[0], feats[1]), fd(feats[0], feats[2])
        rows.append((tf32, cl, bench, bs, rate, rel_feat, fd_same, fd_shift))
        print(f"tf32={tf32!s:5} channels_last={cl!s:5} benchmark={bench!s:5} batch={bs:4}: {rate:7.0f} img/s  "
              f"max rel. feature diff {rel_feat:.1e}  FD same {fd_same:.6e} (rel {abs(fd_same / rows[0][6] - 1):.1e})"
              f"  FD shifted {fd_shift:.6e} (rel {abs(fd_shift / rows[0][7] - 1):.1e})", flush=True)
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = defaults
    for bs in args.batch_sizes:
        ref, ref_rate = timed(lambda x, bs=bs: reference_extract(x, weights, args.device, bs))
        print(f"torch-fidelity extractor, PyTorch defaults, batch={bs}: {ref_rate:7.0f} img/s; FD same "
              f"{fd(ref[0], ref[1]):.6e}, FD shifted {fd(ref[0], ref[2]):.6e}", flush=True)
        best = max((r for r in rows if r[3] == bs), key=lambda r: r[4])
        print(f"  fastest of ours at batch {bs}: tf32={best[0]} channels_last={best[1]} benchmark={best[2]}: "
              f"{best[4] / ref_rate:.2f}x torch-fidelity's extractor", flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m metrics {from-features,from-images,extract} ...``.

    python -m metrics from-features --real R.npy --fake F.npy [--json]
    python -m metrics from-images --real DIR_OR_SHARDS... --fake DIR_OR_SHARDS... --net inception \
        --metrics fid,prdc,vendi,mss --json
    python -m metrics extract --net inception [--weights W] [--device cuda] --out feats.npz shard.npz...


Feature files are ``.npy`` arrays of shape (n, d) or ``.npz`` archives holding one under the key ``features``;
label files are ``.npy`` arrays of shape (n,) or ``.npz`` archives with the key ``labels``. User errors (missing
files, bad shapes, NaN, mismatched dimensions) print one message to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from metrics import keys
from metrics.io import write_json_atomic

EXIT_USAGE = 2
NPZ_FEATURES_KEY = "features"
NPZ_LABELS_KEY = "labels"
#: Packages whose versions ``extract`` records beside the features.
RECORDED_PACKAGES = ("torch", "torchvision", "torch-fidelity", "transformers", "numpy", "scipy")


#: first bytes of a .npy file and of a zip archive (.npz)
_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}


def load_array(path: str | os.PathLike[str], npz_key: str) -> np.ndarray:
    """Array stored in ``path``: a ``.npy`` file, or the entry ``npz_key`` of a ``.npz`` archive.

    An empty, truncated or non-numpy file is refused by name (:class:`ValueError`), never unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file; expected a .npy or .npz file")
    suffix = path.suffix.lower()
    if suffix not in _MAGIC:
        raise ValueError(f"{path}: unsupported suffix {path.suffix!r}; expected .npy or .npz (key {npz_key!r})")
    with path.open("rb") as handle:
        head = handle.read(len(_MAGIC[suffix]))
    if head != _MAGIC[suffix]:
        found = "is empty" if not head else "does not start with the numpy header" if suffix == ".npy" else \
            "is not a zip archive"
        writer = "np.save" if suffix == ".npy" else "np.savez"
        raise ValueError(f"{path}: {found}; expected a {suffix} file written by numpy ({writer}) holding {npz_key!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: truncated or unreadable numpy file ({type(error).__name__}: {error}); write it "
                         "again with numpy") from None
    if suffix == ".npy":
        return loaded
    with loaded:
        if npz_key not in loaded.files:
            raise ValueError(f"{path}: the .npz has keys {sorted(loaded.files)}; expected an array named {npz_key!r}")
        return loaded[npz_key]


def _parse_order(text: str) -> float:
    """argparse type for the Vendi order: a number >= 0 or 'inf'."""
    value = float(text)
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0 or 'inf'")
    return value


def _json_number(value: float) -> float | str:
    """Plain JSON has no Infinity: infinite settings are written as the string 'inf'."""
    return "inf" if isinstance(value, float) and math.isinf(value) else value


def run_from_features(args: argparse.Namespace) -> int:
    """Handler of ``from-features``: load both sets, compute every set metric, print (and optionally save) them."""
    from metrics.suite import compute_all  # torch is imported only when a metric runs: --help and usage stay fast

    real = load_array(args.real, NPZ_FEATURES_KEY)
    fake = load_array(args.fake, NPZ_FEATURES_KEY)
    labels = None if args.labels_fake is None else load_array(args.labels_fake, NPZ_LABELS_KEY)
    results = compute_all(
        real,
        fake,
        k_pr=args.k,
        k_dc=args.k_dc,
        vendi_q=args.vendi_q,
        labels_fake=labels,
        device=args.device,
        chunk_size=args.chunk_size,
    )
    record: dict[str, object] = dict(results)
    record.update(
        {
            keys.K_PR: args.k,
            keys.K_DC: args.k_dc,
            keys.VENDI_Q: _json_number(args.vendi_q),
            keys.NUM_REAL: int(real.shape[0]),
            keys.NUM_FAKE: int(fake.shape[0]),
            keys.FEATURE_DIM: int(real.shape[1]),
        }
    )
    return _emit(record, args)


def _emit(record: dict[str, object], args: argparse.Namespace) -> int:
    """Write ``record`` to ``--out`` (atomically) if given; print it as JSON (``--json``) or as a table."""
    if args.out is not None:
        write_json_atomic(args.out, record)
    if args.json:
        print(json.dumps(record, sort_keys=True))
    else:
        width = max(map(len, record))
        for name, value in record.items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            print(f"{name:<{width}}  {shown}")
    return 0


def run_extract(args: argparse.Namespace) -> int:
    """Handler of ``extract``: features (and labels) of the items in every input ``.npz``, concatenated in order.

    Extra network outputs (Inception and domain-CNN ``logits``) are stored beside ``features``; ``meta`` records
    the network settings, the inputs and the package versions.
    """
    from metrics.extract import extract_files
    from metrics.io import save_npz_atomic
    from metrics.versions import package_versions

    arrays, settings = extract_files(args.net, args.inputs, weights=args.weights, batch_size=args.batch_size,
                                     device=args.device, precision=args.precision,
                                     weights_sha256=args.weights_sha256,
                                     allow_unverified=args.allow_unverified_weights)
    save_npz_atomic(args.out, meta={"config": settings, "packages": package_versions(RECORDED_PACKAGES)}, **arrays)
    return 0


def run_from_images(args: argparse.Namespace) -> int:
    """Handler of ``from-images``: features of both image sets with one network, then the chosen set metrics."""
    from metrics.extract import configured_net, net_outputs, net_settings
    from metrics.images import load_image_set
    from metrics.suite import compute_with_ci

    groups = [g for g in args.metrics.split(",") if g]
    real_images, _ = load_image_set(args.real)
    fake_images, fake_labels = load_image_set(args.fake)
    if real_images.shape[1:3] != fake_images.shape[1:3]:
        print(f"warning: real images are {real_images.shape[1]}x{real_images.shape[2]}, generated "
              f"{fake_images.shape[1]}x{fake_images.shape[2]}; the network resizes both, so the metrics also measure "
              "the resolution gap (compare sets of one resolution)", file=sys.stderr)
    if "mss" in groups and fake_labels is None:
        raise ValueError("metric 'mss' needs per-image condition labels: give the fake set as .npz shards with "
                         "'labels'")
    net = configured_net(args.net, weights=args.weights, batch_size=args.batch_size, device=args.device,
                         precision=args.precision, weights_sha256=args.weights_sha256,
                         allow_unverified=args.allow_unverified_weights)
    real = net_outputs(net, real_images)
    fake = net_outputs(net, fake_images)
    if "is" in groups and "logits" not in fake:
        raise ValueError(f"metric 'is' needs classifier logits; net {args.net!r} gives {sorted(fake)}")
    kid_size = min(args.kid_subset_size, len(real_images), len(fake_images))
    values, ci95 = compute_with_ci(
        real["features"], fake["features"], labels_fake=fake_labels, logits_fake=fake.get("logits"),
        bootstrap_resamples=args.bootstrap_resamples, bootstrap_seed=args.seed, metrics=groups, k_pr=args.k,
        k_dc=args.k_dc, vendi_q=args.vendi_q, kid_subsets=args.kid_subsets if "kid" in groups else 0,
        kid_subset_size=kid_size, mss_include_diagonal=not args.mss_off_diagonal, device=args.device,
        chunk_size=args.chunk_size, is_splits=args.is_splits)
    record: dict[str, object] = dict(values)
    record.update({keys.K_PR: args.k, keys.K_DC: args.k_dc, keys.VENDI_Q: _json_number(args.vendi_q),
                   keys.NUM_REAL: len(real_images), keys.NUM_FAKE: len(fake_images),
                   keys.FEATURE_DIM: int(real["features"].shape[1]), keys.KID_SUBSET_SIZE: kid_size,
                   keys.MSS_INCLUDE_DIAGONAL: not args.mss_off_diagonal,
                   keys.BOOTSTRAP_RESAMPLES: args.bootstrap_resamples, **net_settings(args.net, net)})
    if ci95:
        record[keys.CI95] = {name: list(bounds) for name, bounds in ci95.items()}
    return _emit(record, args)


SUBCOMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"from-features": run_from_features,
                                                                "extract": run_extract,
                                                                "from-images": run_from_images}


def _add_net_options(parser: argparse.ArgumentParser, device_default: str | None = "cpu") -> None:
    parser.add_argument("--net", required=True, help="feature network name (see metrics.features.FEATURE_NETS)")
    parser.add_argument("--weights", help="weight file/dir of an image network (default: its standard location)")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default 64)")
    parser.add_argument("--device", default=device_default, help="torch device (default cpu)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="bf16 = autocast + channels-last, CUDA only")
    parser.add_argument("--weights-sha256", help="the SHA-256 you trust for a weight file without a published "
                                                 "digest (SSCD, DINOv2; metrics.weights.WEIGHTS)")
    parser.add_argument("--allow-unverified-weights", action="store_true",
                        help="use weights whose digest does not match or is not published (recorded in the output)")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m metrics`` argument parser (one sub-parser per entry of :data:`SUBCOMMANDS`)."""
    parser = argparse.ArgumentParser(prog="python -m metrics", description="Generative-model metrics on features.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ff = sub.add_parser(
        "from-features",
        help="FD, precision/recall, density/coverage and Vendi from two feature files",
        description="Compare generated features with reference features; prints one JSON object with --json.",
    )
    ff.add_argument("--real", required=True, help="reference features, (n, d) .npy or .npz with key 'features'")
    ff.add_argument("--fake", required=True, help="generated features, (n, d) .npy or .npz with key 'features'")
    ff.add_argument("--k", type=int, default=3, help="k for precision/recall (default 3)")
    ff.add_argument("--k-dc", type=int, default=5, help="k for density/coverage (default 5)")
    ff.add_argument("--labels-fake", help="condition id per generated row, (n,) .npy or .npz with key 'labels'")
    ff.add_argument("--vendi-q", type=_parse_order, default=1.0, help="order of the Vendi score (default 1)")
    ff.add_argument("--device", default="cpu", help="torch device for the k-NN distance blocks (default cpu)")
    ff.add_argument("--chunk-size", type=int, default=1024, help="rows per distance block (default 1024)")
    ff.add_argument("--out", help="also write the JSON object to this file (atomically)")
    ff.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ex = sub.add_parser("extract", help="features of sample/data .npz files with a registered feature network",
                        description="Run one feature network over .npz files; writes features + labels to --out.")
    _add_net_options(ex)
    ex.add_argument("--out", required=True, type=Path,
                    help="output .npz (keys 'features', 'labels', 'meta', and 'logits' for inception/domain)")
    ex.add_argument("inputs", nargs="+", type=Path, help="input .npz files, concatenated in the given order")
    fi = sub.add_parser("from-images", help="extract features of two image sets and compare them",
                        description="Image folders (PNG/JPEG) or .npz shards (uint8 'x', 'labels') -> set metrics.")
    fi.add_argument("--real", required=True, nargs="+", help="reference image folder(s) or .npz shard(s)")
    fi.add_argument("--fake", required=True, nargs="+", help="generated image folder(s) or .npz shard(s)")
    _add_net_options(fi)
    fi.add_argument("--metrics", default="fid,prdc,vendi",
                    help="comma-separated subset of fid,prdc,vendi,mss,kid,is (default fid,prdc,vendi)")
    fi.add_argument("--k", type=int, default=3, help="k for precision/recall (default 3)")
    fi.add_argument("--k-dc", type=int, default=5, help="k for density/coverage (default 5)")
    fi.add_argument("--vendi-q", type=_parse_order, default=1.0, help="order of the Vendi score (default 1)")
    fi.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    fi.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size, capped at the set sizes")
    fi.add_argument("--is-splits", type=int, default=10, help="Inception Score splits (default 10)")
    fi.add_argument("--mss-off-diagonal", action="store_true", help="MSS without the similarity diagonal")
    fi.add_argument("--bootstrap-resamples", type=int, default=0, help="bootstrap resamples for ci95 (default 0)")
    fi.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    fi.add_argument("--chunk-size", type=int, default=1024, help="rows per distance block (default 1024)")
    fi.add_argument("--out", help="also write the JSON object to this file (atomically)")
    fi.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 ok, 2 user error)."""
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command](args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return EXIT_USAGE

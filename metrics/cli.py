"""Command line: ``python -m metrics {from-features,from-images,extract} ...``.

    python -m metrics from-features --real R.npy --fake F.npy [--metrics fid,prdc] [--json]
    python -m metrics from-images --real DIR_OR_SHARDS... --fake DIR_OR_SHARDS... --net inception \
        --metrics fid,prdc,vendi,mss --json
    python -m metrics extract --net inception [--weights W] [--device cuda] --out feats.npz shard.npz...
    python -m metrics --plugin my_metric from-features --real R.npy --fake F.npy --metrics fid,my_metric --json


Feature files are ``.npy`` arrays of shape (n, d) or ``.npz`` archives holding one under the key ``features``;
label files are ``.npy`` arrays of shape (n,) or ``.npz`` archives with the key ``labels`` (logits: ``logits``).
The metric choices and their option flags come from the metric registry (:mod:`metrics.metric_registry`, plugins
included); the JSON records every metric option used. User errors (missing files, bad shapes, NaN, mismatched
dimensions) print one message to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metrics import keys
from metrics.features import PRECISIONS
from metrics.io import write_json_atomic
from metrics.registry import load_plugins
from metrics.store import npy_rows, npz_member_rows

EXIT_USAGE = 2
NPZ_FEATURES_KEY = "features"
NPZ_LABELS_KEY = "labels"
NPZ_LOGITS_KEY = "logits"
#: Packages whose versions ``extract`` records beside the features.
RECORDED_PACKAGES = ("torch", "torchvision", "torch-fidelity", "transformers", "numpy", "scipy")


#: first bytes of a .npy file and of a zip archive (.npz)
_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}


def load_array(path: str | os.PathLike[str], npz_key: str, on_demand: bool = False) -> Any:
    """Array stored in ``path``: a ``.npy`` file, or the entry ``npz_key`` of a ``.npz`` archive.

    ``on_demand``: return a :class:`metrics.store.ShardedArray` read in place, row chunk by row chunk (a reference
    set of 1.28M x 2048 features is never loaded whole); a compressed ``.npz`` entry is loaded. An empty,
    truncated or non-numpy file is refused by name (:class:`ValueError`), never unpickled.
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
        return npy_rows(path) if on_demand else loaded
    with loaded:
        if npz_key not in loaded.files:
            raise ValueError(f"{path}: the .npz has keys {sorted(loaded.files)}; expected an array named {npz_key!r}")
        if on_demand and loaded.zip.getinfo(f"{npz_key}.npy").compress_type == zipfile.ZIP_STORED:
            return npz_member_rows(path, npz_key)
        return loaded[npz_key]


def _json_number(value: float) -> float | str:
    """Plain JSON has no Infinity: infinite settings are written as the string 'inf'."""
    return "inf" if isinstance(value, float) and math.isinf(value) else value


def _metric_choice(args: argparse.Namespace, default: list[str] | None) -> list[str] | None:
    """The metrics ``--metrics`` names (comma-separated), else ``default`` (None = every one that applies)."""
    return default if args.metrics is None else [name for name in args.metrics.split(",") if name]


def _run_metrics(args: argparse.Namespace, real: np.ndarray, fake: np.ndarray, labels: np.ndarray | None,
                 logits: np.ndarray | None, selected: list[str] | None) -> dict[str, object]:
    """Values (+ ``ci95``) of the ``selected`` registered metrics and every metric option used, as one record."""
    from metrics.metric_registry import config_options, resolve_options
    from metrics.suite import compute_with_ci  # torch is imported only when a metric runs: --help stays fast

    given = {option.name: getattr(args, option.name) for option in config_options()}
    options = resolve_options(given, selected=selected, num_real=len(real), num_fake=len(fake))
    values, ci95 = compute_with_ci(real, fake, labels_fake=labels, logits_fake=logits, metrics=selected,
                                   device=args.device, chunk_size=args.chunk_size,
                                   key_chunk_size=args.key_chunk_size, knn_precision=args.knn_precision,
                                   bootstrap_resamples=getattr(args, "bootstrap_resamples", 0),
                                   bootstrap_seed=getattr(args, "seed", 0), **options)
    record: dict[str, object] = dict(values)
    record.update({option.name: _json_number(options[option.name]) for option in config_options()})
    record.update({keys.NUM_REAL: int(real.shape[0]), keys.NUM_FAKE: int(fake.shape[0]),
                   keys.FEATURE_DIM: int(real.shape[1])})
    if ci95:
        record[keys.CI95] = {name: list(bounds) for name, bounds in ci95.items()}
    return record


def run_from_features(args: argparse.Namespace) -> int:
    """Handler of ``from-features``: load both sets, compute the chosen metrics (default: every one that applies),
    print (and optionally save) them."""
    real = load_array(args.real, NPZ_FEATURES_KEY, on_demand=True)  # read in chunks by the metrics that stream
    fake = load_array(args.fake, NPZ_FEATURES_KEY)
    labels = None if args.labels_fake is None else load_array(args.labels_fake, NPZ_LABELS_KEY)
    logits = None if args.logits_fake is None else load_array(args.logits_fake, NPZ_LOGITS_KEY)
    return _emit(_run_metrics(args, real, fake, labels, logits, _metric_choice(args, None)), args)


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
    from metrics.extract import write_features
    from metrics.versions import package_versions

    write_features(args.out, args.net, args.inputs,
                   lambda settings: {"config": settings, "packages": package_versions(RECORDED_PACKAGES)},
                   weights=args.weights, batch_size=args.batch_size, device=args.device, precision=args.precision,
                   weights_sha256=args.weights_sha256, allow_unverified=args.allow_unverified_weights,
                   compile=args.compile)
    return 0


def run_from_images(args: argparse.Namespace) -> int:
    """Handler of ``from-images``: features of both image sets with one network, then the chosen set metrics
    (default: those that need only the two sets, :func:`metrics.metric_registry.plain_metrics`)."""
    from metrics.extract import configured_net, net_outputs, net_settings, resolve_compile
    from metrics.images import load_image_set
    from metrics.metric_registry import METRICS, plain_metrics

    groups = _metric_choice(args, plain_metrics())
    real_images, _ = load_image_set(args.real)
    fake_images, fake_labels = load_image_set(args.fake)
    if real_images.shape[1:3] != fake_images.shape[1:3]:
        print(f"warning: real images are {real_images.shape[1]}x{real_images.shape[2]}, generated "
              f"{fake_images.shape[1]}x{fake_images.shape[2]}; the network resizes both, so the metrics also measure "
              "the resolution gap (compare sets of one resolution)", file=sys.stderr)
    needs = {name: METRICS.get(name).needs for name in groups if name in METRICS}
    unlabelled = [name for name, need in needs.items() if "labels" in need and fake_labels is None]
    if unlabelled:
        raise ValueError(f"metric {unlabelled[0]!r} needs per-image condition labels: give the fake set as .npz "
                         "shards with 'labels'")
    net = configured_net(args.net, weights=args.weights, batch_size=args.batch_size, device=args.device,
                         precision=args.precision, weights_sha256=args.weights_sha256,
                         allow_unverified=args.allow_unverified_weights,
                         compile=resolve_compile(args.compile, args.device or "cpu",
                                                 max(len(real_images), len(fake_images))))
    real = net_outputs(net, real_images)
    fake = net_outputs(net, fake_images)
    no_logits = [name for name, need in needs.items() if "logits" in need and "logits" not in fake]
    if no_logits:
        raise ValueError(f"metric {no_logits[0]!r} needs classifier logits; net {args.net!r} gives {sorted(fake)}")
    record = _run_metrics(args, real["features"], fake["features"], fake_labels, fake.get("logits"), groups)
    record.update({keys.BOOTSTRAP_RESAMPLES: args.bootstrap_resamples, **net_settings(args.net, net)})
    return _emit(record, args)


SUBCOMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"from-features": run_from_features,
                                                                "extract": run_extract,
                                                                "from-images": run_from_images}


def _compile_choice(text: str) -> bool | str:
    choices = {"auto": "auto", "on": True, "off": False}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"{text!r}; expected one of {list(choices)}")
    return choices[text]


def _add_net_options(parser: argparse.ArgumentParser, device_default: str | None = "cpu") -> None:
    parser.add_argument("--net", required=True, help="feature network name (see metrics.features.FEATURE_NETS)")
    parser.add_argument("--weights", help="weight file/dir of an image network (default: its standard location)")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default 64)")
    parser.add_argument("--device", default=device_default, help="torch device (default cpu)")
    parser.add_argument("--precision", choices=PRECISIONS, help="fp32 (default: PyTorch's math, TF32 convolutions "
                        "on recent GPUs); bf16 = autocast + channels-last, CUDA only, moves FID by ~3%%")
    parser.add_argument("--compile", type=_compile_choice, default="auto",
                        help="torch.compile the network's forward on CUDA: auto (default: for sets of at least "
                             "metrics.extract.COMPILE_MIN_ITEMS images), on, off")
    parser.add_argument("--weights-sha256", help="the SHA-256 you trust for a weight file without a published "
                                                 "digest (SSCD, DINOv2; metrics.weights.WEIGHTS)")
    parser.add_argument("--allow-unverified-weights", action="store_true",
                        help="use weights whose digest does not match or is not published (recorded in the output)")


def _add_metric_options(parser: argparse.ArgumentParser, default_metrics: str) -> None:
    """``--metrics``, one flag per registered metric option (:mod:`metrics.metric_registry`), device and chunks."""
    from metrics.metric_registry import add_arguments, metric_names

    parser.add_argument("--metrics", help=f"comma-separated subset of {','.join(metric_names())} "
                                          f"(default {default_metrics})")
    add_arguments(parser)
    parser.add_argument("--chunk-size", type=int, default=1024,
                        help="query rows per k-NN distance block (default 1024)")
    parser.add_argument("--key-chunk-size", type=int, default=0,
                        help="key rows per k-NN distance block and rows held on --device at once (default 0: as "
                             "many as half its free memory holds)")
    parser.add_argument("--knn-precision", choices=keys.KNN_PRECISIONS, default="auto",
                        help="k-NN distance filter; pairs it cannot certify are recomputed in float64, so every "
                             "choice gives the same numbers (default auto: tf32 on CUDA tensor cores, else float32)")


def _plugin_parser(default: object = None) -> argparse.ArgumentParser:
    """``--plugin``, read before the parser is built (and accepted before or after the command)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--plugin", action="append", default=[] if default is None else default, metavar="MODULE",
                        help="import MODULE first: a plugin registering metrics or feature networks (repeatable; "
                             "also $KALEIDO_PLUGINS)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m metrics`` argument parser (one sub-parser per entry of :data:`SUBCOMMANDS`); the metric
    choices and options are those registered when it is built (load plugins first)."""
    from metrics.metric_registry import plain_metrics

    parser = argparse.ArgumentParser(prog="python -m metrics", description="Generative-model metrics on features.",
                                     parents=[_plugin_parser()])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugin = [_plugin_parser(default=argparse.SUPPRESS)]
    ff = sub.add_parser(
        "from-features", parents=plugin,
        help="FD, precision/recall, density/coverage, Vendi, ... (the registered metrics) from two feature files",
        description="Compare generated features with reference features; prints one JSON object with --json.",
    )
    ff.add_argument("--real", required=True, help="reference features, (n, d) .npy or .npz with key 'features'")
    ff.add_argument("--fake", required=True, help="generated features, (n, d) .npy or .npz with key 'features'")
    ff.add_argument("--labels-fake", help="condition id per generated row, (n,) .npy or .npz with key 'labels'")
    ff.add_argument("--logits-fake", help="classifier logits per generated row, (n, classes) .npy or .npz with key "
                                          "'logits' (for the Inception Score)")
    _add_metric_options(ff, "every metric the inputs allow; kid when --kid-subsets is given")
    ff.add_argument("--device", default="cpu", help="torch device for the k-NN distance blocks (default cpu)")
    ff.add_argument("--out", help="also write the JSON object to this file (atomically)")
    ff.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ex = sub.add_parser("extract", parents=plugin,
                        help="features of sample/data .npz files with a registered feature network",
                        description="Run one feature network over .npz files; writes features + labels to --out.")
    _add_net_options(ex)
    ex.add_argument("--out", required=True, type=Path,
                    help="output .npz (keys 'features', 'labels', 'meta', and 'logits' for inception/domain)")
    ex.add_argument("inputs", nargs="+", type=Path, help="input .npz files, concatenated in the given order")
    fi = sub.add_parser("from-images", parents=plugin, help="extract features of two image sets and compare them",
                        description="Image folders (PNG/JPEG) or .npz shards (uint8 'x', 'labels') -> set metrics.")
    fi.add_argument("--real", required=True, nargs="+", help="reference image folder(s) or .npz shard(s)")
    fi.add_argument("--fake", required=True, nargs="+", help="generated image folder(s) or .npz shard(s)")
    _add_net_options(fi)
    _add_metric_options(fi, ",".join(plain_metrics()))
    fi.add_argument("--bootstrap-resamples", type=int, default=0, help="bootstrap resamples for ci95 (default 0)")
    fi.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    fi.add_argument("--out", help="also write the JSON object to this file (atomically)")
    fi.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 ok, 2 user error). Plugins (``--plugin``, before the
    command, and ``$KALEIDO_PLUGINS``) are imported before the parser is built, so their metrics and options are
    choices."""
    try:
        load_plugins(_plugin_parser().parse_known_args(argv)[0].plugin)
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command](args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return EXIT_USAGE

"""Command line: ``python -m metrics from-features --real R.npy --fake F.npy [--json]``.

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

from kaleido.io import write_json_atomic
from metrics import keys
from metrics.suite import compute_all

EXIT_USAGE = 2
NPZ_FEATURES_KEY = "features"
NPZ_LABELS_KEY = "labels"


def load_array(path: str | os.PathLike[str], npz_key: str) -> np.ndarray:
    """Array stored in ``path``: a ``.npy`` file, or the entry ``npz_key`` of a ``.npz`` archive."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file; expected a .npy or .npz file")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: unsupported suffix {path.suffix!r}; expected .npy or .npz (key {npz_key!r})")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable numpy file ({error})") from None
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
    """Handler of ``extract``: features (and labels) of the items in every input ``.npz``, concatenated in order."""
    from kaleido.io import load_npz, save_npz_atomic
    from kaleido.provenance import provenance
    from metrics.features import FEATURE_NETS

    net = FEATURE_NETS.get(args.net)
    features, labels = [], []
    for path in args.inputs:
        data = load_npz(path, required=(net.input_key, "labels"))
        features.append(net(data[net.input_key]))
        labels.append(data["labels"])
    meta = provenance("metrics.cli", {"net": args.net, "inputs": [str(p) for p in args.inputs]})
    save_npz_atomic(args.out, meta=meta, features=np.concatenate(features), labels=np.concatenate(labels))
    return 0


SUBCOMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"from-features": run_from_features,
                                                                "extract": run_extract}


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
    ex.add_argument("--net", required=True, help="feature network name (see metrics.features.FEATURE_NETS)")
    ex.add_argument("--out", required=True, type=Path, help="output .npz (keys 'features', 'labels', 'meta')")
    ex.add_argument("inputs", nargs="+", type=Path, help="input .npz files, concatenated in the given order")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 ok, 2 user error)."""
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command](args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return EXIT_USAGE

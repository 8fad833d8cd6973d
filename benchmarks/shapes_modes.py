"""Which modes survive guidance on the shapes data: the offline object finder read on the generated images.

    python benchmarks/shapes_modes.py results/shapes [--max-images 2000] [--label shape]
    python benchmarks/shapes_modes.py --smoke      # a scratch results tree of generated shapes images

For every run under ``<root>/samples/<method>/<latent>/w<g>/`` and for the training set, prints the metrics of
:func:`kaleido.data.shapes_modes.shapes_mode_metrics` (also in every shapes metric JSON): class accuracy (fidelity to
the condition), colour entropy and distinct colours per class, count entropy, and the share of images with no
object. Diversity collapse under guidance shows as falling colour / count entropy. ``--smoke`` reads a tree it writes
itself: a 32-image training set and two runs of two sample shards each, all drawn by the shapes generator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _smoke  # noqa: E402

from kaleido.data import DATASETS  # noqa: E402
from kaleido.data.shapes_modes import shapes_mode_metrics  # noqa: E402
from metrics.io import load_npz, save_npz_atomic  # noqa: E402
from metrics.store import load_data, save_data  # noqa: E402

SMOKE = {"max_images": 16}


def write_smoke_tree(root: Path, n: int = 32) -> Path:
    """``root`` laid out as ``results/<experiment>`` of a shapes run: ``data/train.npz`` of ``n`` images and
    ``samples/<method>/<latent>/w<g>/shard00k.npz`` of two runs, two shards of ``n // 2`` each (shapes images, so
    the object finder has something to read)."""
    spec = {"name": "shapes", "num_train": n, "image_size": 32, "max_objects": 3, "label": "shape"}
    shapes = DATASETS.get("shapes")
    save_data(root / "data" / "train.npz", shapes.generate(spec, 0), {"smoke": True})
    for seed, run in enumerate(["mdm/none/w1", "kaleido/bbox/w3"], start=1):
        for shard in range(2):
            images = shapes.generate({**spec, "num_train": n // 2}, 10 * seed + shard)
            save_npz_atomic(root / "samples" / run / f"shard{shard:03d}.npz", x=images["x"], labels=images["labels"])
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, nargs="?" if _smoke.requested(argv) else None,
                        help="results/<experiment> of a shapes experiment")
    parser.add_argument("--max-images", type=int, default=2000)
    parser.add_argument("--label", default="shape", choices=["shape", "color", "count"],
                        help="the data set's class attribute (data.label)")
    args = _smoke.parse_args(parser, SMOKE, argv)
    if args.root is None:  # a smoke run
        with _smoke.scratch() as root:
            args.root = write_smoke_tree(root)
            report(args)
    else:
        report(args)


def report(args: argparse.Namespace) -> None:
    """Print the mode statistics of the training set and of every run under ``args.root``."""
    data = load_data(args.root / "data" / "train.npz")
    names = [str(c) for c in data["class_names"]]
    n = args.max_images
    rows = [("training set", "", "", shapes_mode_metrics(data["x"][:n], data["labels"][:n], names, args.label))]
    for run in sorted((args.root / "samples").glob("*/*/w*")):
        shards = [load_npz(p) for p in sorted(run.glob("shard*.npz"))]
        x = np.concatenate([s["x"] for s in shards])[:n]
        y = np.concatenate([s["labels"] for s in shards])[:n]
        stats = shapes_mode_metrics(x, y, names, args.label)
        rows.append((run.parent.parent.name, run.parent.name, run.name[1:], stats))
    keys = list(rows[0][3])
    print(f"{'run':<18}{'latent':<8}{'w':>4}" + "".join(f"{k:>18}" for k in keys))
    for method, latent, w, stats in rows:
        print(f"{method:<18}{latent:<8}{w:>4}" + "".join(f"{stats[k]:>18.3f}" for k in keys))


if __name__ == "__main__":
    main()

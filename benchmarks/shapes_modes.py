"""Which modes survive guidance on the shapes data: the offline object finder read on the generated images.

    python benchmarks/shapes_modes.py results/shapes [--max-images 2000] [--label shape]

For every run under ``<root>/samples/<method>/<latent>/w<g>/`` and for the training set, prints the metrics of
:func:`kaleido.data.shapes_modes.shapes_mode_metrics` (also in every shapes metric JSON): class accuracy (fidelity to
the condition), colour entropy and distinct colours per class, count entropy, and the share of images with no
object. Diversity collapse under guidance shows as falling colour / count entropy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kaleido.data.shapes_modes import shapes_mode_metrics  # noqa: E402
from metrics.io import load_npz  # noqa: E402
from metrics.store import load_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="results/<experiment> of a shapes experiment")
    parser.add_argument("--max-images", type=int, default=2000)
    parser.add_argument("--label", default="shape", choices=["shape", "color", "count"],
                        help="the data set's class attribute (data.label)")
    args = parser.parse_args()
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

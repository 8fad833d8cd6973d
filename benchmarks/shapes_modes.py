"""Which modes survive guidance on the shapes data: the offline object finder read on the generated images.

    python benchmarks/shapes_modes.py results/shapes [--max-images 2000]

For every run under ``<root>/samples/<method>/<latent>/w<g>/`` and for the training set, each image is segmented
(:func:`kaleido.latents.segment.segment_image`, no ground truth) and its object with the largest box side taken as
the main one (the data set's class). Prints per run: ``shape acc`` (the main object's shape equals the class:
fidelity to the condition), ``colour H`` (entropy of the main object's colour within a class, averaged over
classes, in nats; uniform over the 8 palette colours = 2.08), ``colours`` (distinct main colours per class, mean),
``count H`` (entropy of the object count), and ``empty`` (share of images where no object is found). Diversity
collapse under guidance shows as falling colour / count entropy; fidelity as shape accuracy.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kaleido.data.store import load_data  # noqa: E402
from kaleido.io import load_npz  # noqa: E402
from kaleido.latents.segment import segment_image  # noqa: E402


def entropy(values: list[str]) -> float:
    counts = np.array(list(Counter(values).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def _size(obj) -> tuple[int, int]:
    """The data set's main object is the one drawn with the largest side: compare box sides, then areas."""
    ys, xs = np.nonzero(obj.mask)
    return int(max(np.ptp(xs), np.ptp(ys))), int(obj.mask.sum())


def read_modes(images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Mode statistics of (n, H, W, 3) uint8 images with class ids ``labels``."""
    main_colour: dict[int, list[str]] = {}
    counts: dict[int, list[str]] = {}
    correct = empty = 0
    for image, label in zip(images, labels, strict=True):
        objects = segment_image(image)
        if not objects:
            empty += 1
            continue
        main = max(objects, key=_size)
        correct += main.shape == class_names[int(label)]
        main_colour.setdefault(int(label), []).append(main.color)
        counts.setdefault(int(label), []).append(str(len(objects)))
    if not main_colour:
        return {"shape acc": 0.0, "colour H": float("nan"), "colours": 0.0, "count H": float("nan"), "empty": 1.0}
    return {"shape acc": correct / len(images), "colour H": float(np.mean([entropy(v) for v in main_colour.values()])),
            "colours": float(np.mean([len(set(v)) for v in main_colour.values()])),
            "count H": float(np.mean([entropy(v) for v in counts.values()])), "empty": empty / len(images)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="results/<experiment> of a shapes experiment")
    parser.add_argument("--max-images", type=int, default=2000)
    args = parser.parse_args()
    data = load_data(args.root / "data" / "train.npz")
    names = [str(c) for c in data["class_names"]]
    rows = [("training set", "", "", read_modes(data["x"][:args.max_images], data["labels"][:args.max_images], names))]
    for run in sorted((args.root / "samples").glob("*/*/w*")):
        shards = [load_npz(p) for p in sorted(run.glob("shard*.npz"))]
        x = np.concatenate([s["x"] for s in shards])[:args.max_images]
        y = np.concatenate([s["labels"] for s in shards])[:args.max_images]
        rows.append((run.parent.parent.name, run.parent.name, run.name[1:], read_modes(x, y, names)))
    keys = list(rows[0][3])
    print(f"{'run':<18}{'latent':<8}{'w':>4}" + "".join(f"{k:>11}" for k in keys))
    for method, latent, w, stats in rows:
        print(f"{method:<18}{latent:<8}{w:>4}" + "".join(f"{stats[k]:>11.3f}" for k in keys))


if __name__ == "__main__":
    main()

"""Fidelity and mode statistics of images of the ``shapes`` data set, read off the pixels by the offline object
finder (:func:`kaleido.latents.segment.segment_image`; no generator ground truth), like the toy data's
``modes_covered``: guidance that collapses diversity shows as falling colour / count entropy, fidelity to the
condition as class accuracy.

The main object of an image is the one drawn largest (the data set's object 0, whose shape or colour is the class;
``label: count`` classes are the object count).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from kaleido.data.shapes import COUNT_WORDS
from kaleido.latents.segment import Segment, segment_image
from metrics import keys


def _entropy(values: Sequence[str]) -> float:
    """Shannon entropy (nats) of the empirical distribution of ``values``."""
    counts = np.array(list(Counter(values).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def _size(obj: Segment) -> tuple[int, int]:
    """Drawn size: the larger box side, then the area (the generator's object 0 has the largest side)."""
    ys, xs = np.nonzero(obj.mask)
    return int(max(np.ptp(xs), np.ptp(ys))), int(obj.mask.sum())


def shapes_mode_metrics(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], label: str = "shape"
                        ) -> dict[str, float]:
    """images (n, H, W, 3) uint8, labels (n,) class ids, ``label`` the data set's class attribute (shape / color /
    count) -> ``class_accuracy`` (the attribute read off the image equals its class), ``color_entropy`` (entropy in
    nats of the main object's colour within a class, mean over classes; 8 equiprobable colours = 2.08),
    ``colors_per_class`` (distinct main colours per class, mean), ``count_entropy`` (entropy of the object count
    within a class, mean) and ``no_object_share`` (images where no object is found; they count as misses)."""
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images (got {len(images)} images, {len(labels)} labels), n > 0")
    colours: dict[int, list[str]] = {}
    counts: dict[int, list[str]] = {}
    correct = empty = 0
    for image, y in zip(images, labels, strict=True):
        objects = segment_image(image)
        if not objects:
            empty += 1
            continue
        main = max(objects, key=_size)
        read = {"shape": main.shape, "color": main.color,
                "count": COUNT_WORDS[len(objects) - 1] if len(objects) <= len(COUNT_WORDS) else "many"}[label]
        correct += read == class_names[int(y)]
        colours.setdefault(int(y), []).append(main.color)
        counts.setdefault(int(y), []).append(str(len(objects)))
    nan = float("nan")
    return {keys.CLASS_ACCURACY: correct / len(images),
            keys.COLOR_ENTROPY: float(np.mean([_entropy(v) for v in colours.values()])) if colours else nan,
            keys.COLORS_PER_CLASS: float(np.mean([len(set(v)) for v in colours.values()])) if colours else 0.0,
            keys.COUNT_ENTROPY: float(np.mean([_entropy(v) for v in counts.values()])) if counts else nan,
            keys.NO_OBJECT_SHARE: empty / len(images)}

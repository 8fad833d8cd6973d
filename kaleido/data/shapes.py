"""``shapes``: procedural images of 1..K flat-coloured objects, offline and deterministic.

Each image holds 1..``max_objects`` non-overlapping circles / squares / triangles (apex up) in palette colours on a
plain background. Object 0 is the largest; the class label is its shape (``label: shape``, default), its colour
(``label: color``) or the object count (``label: count``). Every class therefore has many modes (the other
attributes, positions, counts): the situation in which strong classifier-free guidance collapses diversity.

Arrays (``generate``): ``x`` (n, S, S, 3) uint8, ``labels`` (n,) int64, ``class_names`` (C,), ``captions`` (n,)
("a red circle above a blue square and a green triangle"), and the generator's ground truth, for evaluation only
(latent quality, editing checks; never read by extractors or models): ``gt_count`` (n,), ``gt_boxes`` (n, K, 4)
in [0, 1] as (x1, y1, x2, y2) pixel edges, ``gt_colors`` / ``gt_shapes`` (n, K) names, ``gt_rgb`` (n, K, 3);
slots at or after ``gt_count`` are padding.

Item ``i`` is drawn from its own generator seeded by (stage seed, i), so the first n items do not depend on
``num_train``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaleido.checks import check_choice, check_int, check_keys, check_subset
from kaleido.data import DATASETS
from kaleido.errors import ConfigError
from kaleido.latents.segment import DEFAULT_PALETTE, DEFAULT_SHAPES

DEFAULTS: dict[str, Any] = {
    "image_size": 32, "max_objects": 3, "colors": list(DEFAULT_PALETTE), "shapes": list(DEFAULT_SHAPES),
    "background": [20, 20, 30], "antialias": 1, "label": "shape",
}
LABELS = ("shape", "color", "count")
#: object side as a fraction of the image side, and the free margin kept around each object
SIZE_RANGE = (0.22, 0.40)
GAP = 1 / 16
COUNT_WORDS = ("one object", "two objects", "three objects", "four objects")
_ATTEMPTS = 30


def _mask(shape: str, side: int) -> np.ndarray:
    """(side, side) bool mask of ``shape`` inscribed in a square of ``side`` pixels (pixel centres at i + 0.5)."""
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    half = side / 2
    if shape == "circle":
        return (xx - half) ** 2 + (yy - half) ** 2 <= half ** 2
    if shape == "triangle":
        return np.abs(xx - half) <= yy / 2
    return np.ones((side, side), dtype=bool)


def _where(cx: float, cy: float) -> str:
    row = ("top", "middle", "bottom")[min(int(cy * 3), 2)]
    col = ("left", "centre", "right")[min(int(cx * 3), 2)]
    return "in the centre" if (row, col) == ("middle", "centre") else f"in the {row} {col}"


def _relation(a: np.ndarray, b: np.ndarray) -> str:
    """Where box ``a`` lies relative to box ``b`` (x1, y1, x2, y2)."""
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    if abs(dy) >= abs(dx):
        return "above" if dy < 0 else "below"
    return "to the left of" if dx < 0 else "to the right of"


def caption(colors: list[str], shapes: list[str], boxes: np.ndarray) -> str:
    """English description of one image's objects (object 0 first)."""
    names = [f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}" for c, s in zip(colors, shapes, strict=True)]
    if len(names) == 1:
        box = boxes[0]
        return f"{names[0]} {_where((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)}"
    text = f"{names[0]} {_relation(boxes[0], boxes[1])} {names[1]}"
    return text + "".join(f" and {name}" for name in names[2:])


class Shapes:
    keys = {"name", "num_train", "shard_size", *DEFAULTS}

    def validate(self, spec: dict[str, Any], where: str) -> None:
        check_keys(spec, self.keys, where, required={"name", "num_train"})
        check_int(spec, "num_train", where)
        check_int(spec, "shard_size", where)
        check_int(spec, "image_size", where, lo=8, hi=256)
        check_int(spec, "max_objects", where, lo=1, hi=len(COUNT_WORDS))
        check_int(spec, "antialias", where, lo=1, hi=8)
        check_subset(spec, "colors", where, list(DEFAULT_PALETTE))
        check_subset(spec, "shapes", where, DEFAULT_SHAPES)
        check_choice(spec, "label", where, LABELS)
        bg = spec.get("background", DEFAULTS["background"])
        if not (isinstance(bg, list) and len(bg) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in bg)):
            raise ConfigError(f"{where}.background: {bg!r}; accepted: [r, g, b] integers in [0, 255]")
        opts = {**DEFAULTS, **spec}
        if opts["label"] == "color" and len(opts["colors"]) < 2 or opts["label"] == "shape" and len(opts["shapes"]) < 2:
            raise ConfigError(f"{where}.label: {opts['label']!r} needs at least two {opts['label']}s to be a class")

    def class_names(self, spec: dict[str, Any]) -> list[str]:
        opts = {**DEFAULTS, **spec}
        if opts["label"] == "count":
            return list(COUNT_WORDS[:opts["max_objects"]])
        return list(opts["shapes"] if opts["label"] == "shape" else opts["colors"])

    def num_classes(self, spec: dict[str, Any]) -> int:
        return len(self.class_names(spec))

    def generate(self, spec: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        opts = {**DEFAULTS, **spec}
        n, size, k_max, factor = int(spec["num_train"]), opts["image_size"], opts["max_objects"], opts["antialias"]
        res = size * factor
        lo, hi = (max(3, round(f * size)) * factor for f in SIZE_RANGE)
        gap = max(1, round(GAP * size)) * factor
        masks = {(s, side): _mask(s, side) for s in opts["shapes"] for side in range(lo, hi + 1)}
        canvas = np.empty((res, res, 3), dtype=np.uint8)
        x = np.empty((n, size, size, 3), dtype=np.uint8)
        count = np.zeros(n, dtype=np.int64)
        boxes = np.zeros((n, k_max, 4))
        colors = np.full((n, k_max), "", dtype="<U16")
        shapes = np.full((n, k_max), "", dtype="<U16")
        rgb = np.zeros((n, k_max, 3), dtype=np.uint8)
        captions = []
        for i in range(n):
            rng = np.random.default_rng((seed, i))
            canvas[:] = opts["background"]
            taken = np.zeros((res, res), dtype=bool)
            sides = sorted(rng.integers(lo, hi + 1, size=int(rng.integers(1, k_max + 1))), reverse=True)
            for side in sides:
                shape, colour = str(rng.choice(opts["shapes"])), str(rng.choice(opts["colors"]))
                for _ in range(_ATTEMPTS):
                    x0, y0 = (int(v) for v in rng.integers(0, res - side + 1, size=2))
                    if not taken[max(0, y0 - gap):y0 + side + gap, max(0, x0 - gap):x0 + side + gap].any():
                        break
                else:
                    continue  # no free place: the image has fewer objects
                mask = masks[shape, side]
                canvas[y0:y0 + side, x0:x0 + side][mask] = DEFAULT_PALETTE[colour]
                taken[y0:y0 + side, x0:x0 + side] = True
                ys, xs = np.nonzero(mask)
                k = count[i]
                boxes[i, k] = ((x0 + xs.min()) / res, (y0 + ys.min()) / res, (x0 + xs.max() + 1) / res,
                               (y0 + ys.max() + 1) / res)
                colors[i, k], shapes[i, k], rgb[i, k] = colour, shape, DEFAULT_PALETTE[colour]
                count[i] += 1
            if factor > 1:  # box-filter down-sampling: anti-aliased edges
                x[i] = canvas.reshape(size, factor, size, factor, 3).mean(axis=(1, 3)).round().astype(np.uint8)
            else:
                x[i] = canvas
            k = count[i]
            captions.append(caption(list(colors[i, :k]), list(shapes[i, :k]), boxes[i, :k]))
        names = self.class_names(spec)
        if opts["label"] == "count":
            labels = count - 1
        else:
            first = shapes[:, 0] if opts["label"] == "shape" else colors[:, 0]
            labels = np.array([names.index(v) for v in first], dtype=np.int64)
        return {"x": x, "labels": labels.astype(np.int64), "class_names": np.array(names), "captions":
                np.array(captions), "gt_count": count, "gt_boxes": boxes, "gt_colors": colors, "gt_shapes": shapes,
                "gt_rgb": rgb}


DATASETS.register("shapes")(Shapes())

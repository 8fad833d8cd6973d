"""``digits``: scikit-learn's shipped 8x8 handwritten digits (1797 real images, 10 classes, no download).

The 4-bit images (0..16) are scaled to 0..255, up-sampled to ``image_size`` with bicubic interpolation and drawn as
white ink on black in RGB. ``num_train`` (optional, <= 1797) keeps a fixed random subset.

Arrays: ``x`` (n, S, S, 3) uint8, ``labels`` (n,) int64 digit, ``class_names`` ("zero" .. "nine"), ``captions``
("a handwritten seven").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaleido.checks import check_int, check_keys
from kaleido.data import DATASETS

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUM_DIGITS = 1797


class Digits:
    keys = {"name", "num_train", "image_size", "shard_size"}

    def validate(self, spec: dict[str, Any], where: str) -> None:
        check_keys(spec, self.keys, where, required={"name"})
        check_int(spec, "num_train", where, hi=NUM_DIGITS)
        check_int(spec, "image_size", where, lo=8, hi=256)
        check_int(spec, "shard_size", where)

    def num_classes(self, spec: dict[str, Any]) -> int:
        return len(NAMES)

    def generate(self, spec: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        from PIL import Image
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, labels = bunch.images, bunch.target.astype(np.int64)
        if "num_train" in spec:
            keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:spec["num_train"]])
            images, labels = images[keep], labels[keep]
        size = spec.get("image_size", 32)
        gray = np.stack([np.asarray(Image.fromarray((img * (255 / 16)).astype(np.float32), mode="F")
                                    .resize((size, size), resample=Image.BICUBIC)) for img in images])
        x = np.repeat(np.clip(gray, 0, 255).round().astype(np.uint8)[..., None], 3, axis=-1)
        return {"x": x, "labels": labels, "class_names": np.array(NAMES),
                "captions": np.array([f"a handwritten {NAMES[c]}" for c in labels])}


DATASETS.register("digits")(Digits())

"""The paper's toy experiment (fig. 2/3): a class-conditional mixture of isotropic 2-D Gaussians.

Ground truth (``modes``, the index of the Gaussian each point came from) is stored for evaluation only;
the latent extractor never reads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaleido.data import DATASETS
from kaleido.errors import ConfigError


class Toy2D:
    """``spec``: ``num_train`` (int), ``centres`` (m × 2), ``mode_classes`` (m ints), ``std`` (float)."""

    keys = {"name", "num_train", "centres", "mode_classes", "std"}

    def validate(self, spec: dict[str, Any], where: str) -> None:
        unknown = set(spec) - self.keys
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; accepted: {sorted(self.keys)}")
        for key in sorted(self.keys - set(spec)):
            raise ConfigError(f"{where}.{key}: missing; toy2d needs {sorted(self.keys)}")
        n = spec["num_train"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"{where}.num_train: {n!r} is not a positive integer")
        centres = spec["centres"]
        if (not isinstance(centres, list) or not centres
                or not all(isinstance(c, list) and len(c) == 2 and all(isinstance(v, int | float) for v in c)
                           for c in centres)):
            raise ConfigError(f"{where}.centres: {centres!r} is not a non-empty list of [x, y] pairs")
        classes = spec["mode_classes"]
        if (not isinstance(classes, list) or len(classes) != len(centres)
                or not all(isinstance(c, int) and c >= 0 for c in classes)):
            raise ConfigError(f"{where}.mode_classes: {classes!r} must be one non-negative int per centre "
                              f"({len(centres)} centres)")
        if sorted(set(classes)) != list(range(max(classes) + 1)):
            raise ConfigError(f"{where}.mode_classes: {classes!r} must use every class 0..C-1")
        std = spec["std"]
        if not isinstance(std, int | float) or isinstance(std, bool) or std <= 0:
            raise ConfigError(f"{where}.std: {std!r} is not a positive number")

    def generate(self, spec: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        """``x`` (n, 2) float32, ``labels`` (n,) int64 class, ``modes`` (n,) int64 true mode (evaluation only).

        Classes are equally likely; within a class its modes are equally likely.
        """
        rng = np.random.default_rng(seed)
        centres = np.asarray(spec["centres"], dtype=np.float64)
        mode_classes = np.asarray(spec["mode_classes"], dtype=np.int64)
        num_classes = int(mode_classes.max()) + 1
        n = int(spec["num_train"])
        labels = rng.integers(0, num_classes, size=n)
        modes = np.empty(n, dtype=np.int64)
        for c in range(num_classes):
            members = np.flatnonzero(labels == c)
            modes[members] = rng.choice(np.flatnonzero(mode_classes == c), size=len(members))
        x = centres[modes] + float(spec["std"]) * rng.standard_normal((n, 2))
        return {"x": x.astype(np.float32), "labels": labels.astype(np.int64), "modes": modes}

    def num_classes(self, spec: dict[str, Any]) -> int:
        return int(max(spec["mode_classes"])) + 1


DATASETS.register("toy2d")(Toy2D())

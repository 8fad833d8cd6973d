"""Feature networks (registry): map a set of items to an (n, d) float array the metrics compare.

An extractor declares the input array it reads from a sample/data file (``input_key``) and turns a batch of
those arrays into features. ``identity`` serves vector data (the 2-D toy experiment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kaleido.registry import Registry


class FeatureNet(Protocol):
    #: name of the array the extractor reads from an input ``.npz`` (``x`` for vectors, ``images`` for images)
    input_key: str

    def __call__(self, items: np.ndarray) -> np.ndarray:
        """items (n, ...) -> features (n, d) float32."""


@dataclass(frozen=True)
class Identity:
    """Features = the flattened data itself (for low-dimensional synthetic data)."""

    input_key: str = "x"

    def __call__(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(items, dtype=np.float32).reshape(len(items), -1)


FEATURE_NETS: Registry[FeatureNet] = Registry("feature network")
FEATURE_NETS.register("identity")(Identity())

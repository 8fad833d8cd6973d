"""Data sets (registry). Each entry is a :class:`DataSet` whose ``validate`` checks its config block and whose
``generate`` materialises the training set as arrays (:mod:`metrics.store` writes and reads them).

Image sets: ``x`` (n, H, W, 3) uint8 RGB, ``labels`` (n,) int64, ``class_names`` (C,) (what the text encoder reads
for a label), usually ``captions`` (n,), and ground truth for evaluation only (``gt_*``, ``modes``). A set whose
items are each their own condition (``captions``: CC12M) names the array holding each item's condition text in
its ``condition_text`` attribute and has no ``class_names``: models encode those texts batch by batch."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from metrics.registry import Registry


class DataSet(Protocol):
    def validate(self, spec: dict[str, Any], where: str) -> None:
        """Raise :class:`kaleido.errors.ConfigError` naming ``where`` + key if ``spec`` is unusable."""

    def generate(self, spec: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        """Arrays of the training set: at least ``x`` (n, ...) and ``labels`` (n,) int64. ``x`` may be an
        array-like read by slices (:class:`kaleido.data.pictures.ImageFiles`): the data stage then decodes and
        writes it one shard at a time."""

    def num_classes(self, spec: dict[str, Any]) -> int:
        """Number of conditioning classes; needed only by sets whose arrays carry no ``class_names`` (whose length
        is the number of classes otherwise)."""


DATASETS: Registry[DataSet] = Registry("data set")


def condition_text(data_spec: dict[str, Any]) -> str | None:
    """The item array whose texts are the conditions (each item its own condition: ``"captions"``) of the data set
    ``data_spec`` configures, or None for a class-conditional set (conditions = ``class_names``)."""
    return getattr(DATASETS.get(data_spec["name"]), "condition_text", None)

from kaleido.data import captions, digits, imagefolder, shapes, toy2d  # noqa: E402,F401  (registers)

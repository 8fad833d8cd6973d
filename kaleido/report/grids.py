"""Sample grids of image experiments (paper figs. 1, 6, 13): one row per (method, latent), the same classes in the
same columns, one figure per guidance weight: ``figures/samples_<experiment>_w<g>.png/.pdf``.

Images come from the first sample shards of each run (the metric JSON's ``samples``): the first ``per_class``
samples of each of the first ``max_classes`` classes, in sample-index order, so a grid is reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kaleido.report.collect import MetricRecord, guidance_tag, method_rank
from kaleido.report.style import report_style, save_figure, series_label
from metrics.io import load_npz

DEFAULT_PER_CLASS = 4
DEFAULT_MAX_CLASSES = 6
_GAP = 2  # pixels between class blocks


def is_image_record(record: MetricRecord) -> bool:
    """Whether the run's samples are images (its first shard holds ``x`` of shape (n, H, W, 3))."""
    if not record.samples:
        return False
    with np.load(record.samples[0], allow_pickle=False) as data:  # header only: cheap
        return "x" in data.files and data["x"].ndim == 4


def class_images(shards: Sequence[str | os.PathLike[str]], max_classes: int,
                 per_class: int) -> tuple[dict[int, list[np.ndarray]], list[str]]:
    """label -> first ``per_class`` images (H, W, 3) uint8 for labels < ``max_classes``, and the class names
    (from the shards' ``class_names``, else ``"class k"``)."""
    found: dict[int, list[np.ndarray]] = {c: [] for c in range(max_classes)}
    names: list[str] = []
    for shard in shards:
        data = load_npz(Path(shard), required=("x", "labels"))
        if not names and "class_names" in data:
            names = [str(n) for n in data["class_names"]]
        for image, label in zip(data["x"], data["labels"], strict=True):
            if int(label) in found and len(found[int(label)]) < per_class:
                found[int(label)].append(image)
        if all(len(v) == per_class for v in found.values()):
            break
    found = {c: v for c, v in found.items() if v}
    return found, names or [f"class {c}" for c in range(max(found, default=-1) + 1)]


def mosaic(images: dict[int, list[np.ndarray]], classes: Sequence[int], per_class: int, size: int) -> np.ndarray:
    """One row: ``per_class`` images per class side by side, classes separated by white gaps; missing cells
    are white. Returns (size, W, 3) uint8."""
    blocks = []
    for c in classes:
        cells = list(images.get(c, []))[:per_class]
        cells += [np.full((size, size, 3), 255, np.uint8)] * (per_class - len(cells))
        blocks.append(np.concatenate(cells, axis=1))
    gap = np.full((size, _GAP, 3), 255, np.uint8)
    out = [blocks[0]]
    for block in blocks[1:]:
        out += [gap, block]
    return np.concatenate(out, axis=1)


def plot_sample_grid(rows: Sequence[tuple[str, np.ndarray]], class_names: Sequence[str], classes: Sequence[int],
                     per_class: int, size: int, title: str) -> Figure:
    """``rows`` of (label, mosaic) stacked; class names over the columns."""
    width = rows[0][1].shape[1]
    fig = Figure(figsize=(min(2.0 + width / 40, 14.0), 0.4 + 0.75 * len(rows) * min(1.0, 600 / width) + 0.3),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(rows), 1))
    block = per_class * size + _GAP
    for i, (ax, (label, image)) in enumerate(zip(axes, rows, strict=True)):
        ax.imshow(image, interpolation="nearest")
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i == 0:
            ax.set_xticks([k * block + per_class * size / 2 for k in range(len(classes))],
                          [class_names[c] if c < len(class_names) else f"class {c}" for c in classes])
            ax.xaxis.set_ticks_position("top")
            ax.tick_params(axis="x", length=0)
        else:
            ax.set_xticks([])
    fig.suptitle(title)
    return fig


def write_sample_grids(records: Sequence[MetricRecord], figures_dir: str | os.PathLike[str],
                       per_class: int = DEFAULT_PER_CLASS, max_classes: int = DEFAULT_MAX_CLASSES) -> list[Path]:
    """``samples_<experiment>_w<g>.png/.pdf`` for every image experiment and guidance weight."""
    written: list[Path] = []
    image_records = [r for r in records if r.dataset != "toy2d" and is_image_record(r)]
    groups: dict[tuple[str, float], list[MetricRecord]] = {}
    for record in image_records:
        groups.setdefault((record.experiment, record.guidance), []).append(record)
    for (experiment, guidance), group in sorted(groups.items()):
        group = sorted(group, key=lambda r: (method_rank(r.method), r.latent))
        loaded = [(r, *class_images(r.samples, max_classes, per_class)) for r in group]
        classes = sorted({c for _, images, _ in loaded for c in images})
        names = max((names for _, _, names in loaded), key=len)
        size = next(iter(loaded[0][1].values()))[0].shape[0]
        rows = [(series_label(r.method, r.latent), mosaic(images, classes, per_class, size))
                for r, images, _ in loaded]
        with report_style():
            fig = plot_sample_grid(rows, names, classes, per_class, size,
                                   f"{experiment}: samples at guidance {guidance:g}")
            written += save_figure(fig, Path(figures_dir) / f"samples_{experiment}_{guidance_tag(guidance)}")
    return written

"""The colour-cluster comparison (paper's colour-latent figure): MDM samples | the colour clusters Kaleido's
autoregressive prior drew | the Kaleido images generated from them, same classes in the same columns, one figure per
guidance weight: ``figures/colors_<experiment>_w<g>.png/.pdf``.

Needs an image experiment running ``mdm`` and ``kaleido`` with a ``color`` latent; the clusters are decoded from the
Kaleido shard's ``tokens`` with the colour latents' tokenizer and drawn as stripes whose widths are the clusters'
pixel shares.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from kaleido.latents import tokenizer as tok
from kaleido.latents.formats import ColorCluster, LatentFormatError, parse_color
from kaleido.latents.stage import tokenizer_dir
from kaleido.report.collect import MetricRecord, guidance_tag
from kaleido.report.grids import is_image_record, mosaic, plot_sample_grid
from kaleido.report.style import report_style, save_figure
from metrics.errors import InputError
from metrics.io import load_npz

DEFAULT_PER_CLASS = 3
DEFAULT_MAX_CLASSES = 4
EDGE_GREY = 150


def palette_image(clusters: Sequence[ColorCluster], size: int) -> np.ndarray:
    """Vertical stripes, one per cluster, widths proportional to its share (at least 2 px when they fit), and a grey
    right edge: (size, size, 3) uint8. A string the parser rejected, or no clusters, gives a grey cell crossed by a
    white diagonal."""
    from skimage.color import lab2rgb

    if not clusters or sum(c.share for c in clusters) == 0:
        cell = np.full((size, size, 3), 160, np.uint8)
        cell[np.arange(size), np.arange(size)] = 255
        return cell
    lab = np.array([[c.L, c.a, c.b] for c in clusters], dtype=np.float64)
    rgb = (np.clip(lab2rgb(lab[None])[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)
    shares = np.array([c.share for c in clusters], dtype=np.float64)
    room = size - 1  # the last column is a grey edge that parts neighbouring palettes (white is a palette colour)
    least = 2 if 2 * len(clusters) <= room else 1  # a small object's cluster stays visible
    widths = np.maximum(least, np.round(shares / shares.sum() * room)).astype(int)
    widths[widths.argmax()] -= widths.sum() - room  # the largest cluster absorbs the rounding
    edges = np.concatenate([[0], np.cumsum(widths)])
    cell = np.full((size, size, 3), EDGE_GREY, np.uint8)
    for colour, lo, hi in zip(rgb, edges[:-1], edges[1:], strict=True):
        cell[:, lo:hi] = colour
    return cell


def first_per_class(labels: np.ndarray, max_classes: int, per_class: int) -> dict[int, list[int]]:
    """label -> positions in ``labels`` (n,) of its first ``per_class`` samples, for labels < ``max_classes``."""
    picks: dict[int, list[int]] = {}
    for pos, label in enumerate(labels):
        if int(label) < max_classes and len(picks.setdefault(int(label), [])) < per_class:
            picks[int(label)].append(pos)
    return picks


def color_rows(mdm: MetricRecord, kaleido: MetricRecord, tokenizer_path: Path, max_classes: int,
               per_class: int) -> tuple[list[tuple[str, np.ndarray]], list[int], list[str], int]:
    """The three mosaic rows, the classes shown, the class names and the image size."""
    shards = {name: load_npz(Path(r.samples[0]), required=("x", "labels")) for name, r in
              (("mdm", mdm), ("kaleido", kaleido))}
    if "tokens" not in shards["kaleido"]:
        raise InputError(f"{kaleido.samples[0]}: no 'tokens' (the sampled latents); is it a Kaleido shard?")
    picks = {name: first_per_class(shard["labels"], max_classes, per_class) for name, shard in shards.items()}
    classes = sorted(set(picks["mdm"]) & set(picks["kaleido"]))
    size = int(shards["kaleido"]["x"].shape[1])
    positions = [p for c in classes for p in picks["kaleido"][c]]
    texts = tok.decode(tok.load_pretrained(str(tokenizer_path)), shards["kaleido"]["tokens"][positions])
    palettes = iter([palette_image(_clusters(text), size) for text in texts])
    rows = [("MDM", mosaic({c: [shards["mdm"]["x"][p] for p in picks["mdm"][c]] for c in classes}, classes,
                           per_class, size)),
            ("AR colour clusters", mosaic({c: [next(palettes) for _ in picks["kaleido"][c]] for c in classes},
                                          classes, per_class, size)),
            ("Kaleido (colour)", mosaic({c: [shards["kaleido"]["x"][p] for p in picks["kaleido"][c]]
                                         for c in classes}, classes, per_class, size))]
    names = [str(n) for n in shards["kaleido"].get("class_names", [])] or [f"class {c}" for c in range(max_classes)]
    return rows, classes, names, size


def _clusters(text: str) -> list[ColorCluster]:
    try:
        return parse_color(text)
    except LatentFormatError:  # a malformed generated latent is shown as such, not hidden
        return []


def write_color_figures(records: Sequence[MetricRecord], color_latents: Mapping[str, str | os.PathLike[str]],
                        figures_dir: str | os.PathLike[str], per_class: int = DEFAULT_PER_CLASS,
                        max_classes: int = DEFAULT_MAX_CLASSES) -> list[Path]:
    """``colors_<experiment>_w<g>.png/.pdf`` for every experiment in ``color_latents`` (experiment -> its colour
    latents npz, beside which the tokenizer lies) and every guidance weight with both an MDM and a Kaleido-colour
    run."""
    written: list[Path] = []
    for experiment, latents in sorted(color_latents.items()):
        runs = {(r.method, r.latent, r.guidance): r for r in records
                if r.experiment == experiment and is_image_record(r)}
        for guidance in sorted({g for _, _, g in runs}):
            mdm, kaleido = runs.get(("mdm", "none", guidance)), runs.get(("kaleido", "color", guidance))
            if mdm is None or kaleido is None:
                continue
            rows, classes, names, size = color_rows(mdm, kaleido, tokenizer_dir(Path(latents)), max_classes,
                                                    per_class)
            with report_style():
                fig = plot_sample_grid(rows, names, classes, per_class, size,
                                       f"{experiment}: colour latents at guidance {guidance:g}")
                written += save_figure(fig, Path(figures_dir) / f"colors_{experiment}_{guidance_tag(guidance)}")
    return written

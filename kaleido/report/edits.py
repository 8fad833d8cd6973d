"""Latent-editing figures: ``figures/edit_<experiment>_<method>_<latent>_w<g>_<edit>.png/.pdf``.

Two rows per figure: the regenerated original (top) and the image sampled from the edited latent with the same
noise (bottom), for the first ``max_pairs`` edited samples; a green or red frame marks whether the offline extractor
found the edit in the image. The title carries the success rate and the control rate (:mod:`kaleido.edit`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kaleido.report.style import METHOD_LABELS, report_style, save_figure
from metrics.io import load_npz

DEFAULT_MAX_PAIRS = 8
_OK, _MISS = "#2ca02c", "#d62728"


def edit_stem(spec: dict) -> str:
    """File stem of an edit's figure from the edit stage's config slice."""
    return f"edit_{spec['experiment']}_{spec['method']}_{spec['latent']}_w{spec['guidance']}_{spec['edit']['edit']}"


def plot_edit_pairs(data: dict, spec: dict, max_pairs: int = DEFAULT_MAX_PAIRS) -> Figure:
    """The figure of one edit output (the npz of :mod:`kaleido.edit`, loaded)."""
    n = min(max_pairs, len(data["index"]))
    title = (f"{spec['experiment']}: {METHOD_LABELS.get(spec['method'], spec['method'])} ({spec['latent']}), "
             f"edit '{spec['edit']['edit']}' at guidance {spec['guidance']}")
    if n == 0:
        fig = Figure(figsize=(5.0, 1.2), layout="constrained")
        fig.text(0.5, 0.5, "no sampled latent could take this edit\n(see the edit JSON: num_not_editable)",
                 ha="center", va="center")
        fig.suptitle(title)
        return fig
    success = np.asarray(data["success"], dtype=bool)
    title += f"\nfollowed the edit: {success.mean():.0%} of {len(success)} (unedited: {data['control'].mean():.0%})"
    fig = Figure(figsize=(1.2 * n + 1.2, 3.2), layout="constrained")
    axes = np.asarray(fig.subplots(2, n, squeeze=False))
    for j in range(n):
        for row, (key, label) in enumerate((("x_before", "original"), ("x_after", "edited"))):
            ax = axes[row, j]
            ax.imshow(data[key][j], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            colour = (_OK if success[j] else _MISS) if row == 1 else "#999999"
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color(colour)
                spine.set_linewidth(2.0 if row == 1 else 0.8)
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle(title)
    return fig


def write_edit_figures(paths: Sequence[str | os.PathLike[str]], figures_dir: str | os.PathLike[str],
                       max_pairs: int = DEFAULT_MAX_PAIRS) -> list[Path]:
    """One PNG + PDF per edit output file."""
    written: list[Path] = []
    for path in paths:
        data = load_npz(Path(path), required=("index",))
        spec = data["meta"]["config"]
        with report_style():
            written += save_figure(plot_edit_pairs(data, spec, max_pairs), Path(figures_dir) / edit_stem(spec))
    return written

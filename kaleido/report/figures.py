"""Report figures: FD/recall vs guidance per experiment, the toy-mode grid (paper fig. 3), per-run scatters.

Plot functions take plain data and return a :class:`~matplotlib.figure.Figure`; ``write_*`` functions select
the data, plot it in :func:`~kaleido.report.style.report_style` and save PNG + PDF atomically.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from kaleido.report.collect import MetricRecord, guidance_tag, method_rank
from kaleido.report.samples import load_toy_points
from kaleido.report.style import (
    label_colormap,
    latent_marker,
    method_color,
    method_label,
    method_linestyle,
    report_style,
    save_figure,
    series_label,
)

log = logging.getLogger(__name__)

#: Methods shown in the toy-mode figure, one row per (method, latent), as in the paper's fig. 3.
TOY_MODE_METHODS: tuple[str, ...] = ("mdm", "kaleido")
#: (metric column, axis label) of the two guidance-sweep panels.
GUIDANCE_PANELS: tuple[tuple[str, str], ...] = (("fd", "FD \u2193"), ("recall", "Recall \u2191"))


def _set_guidance_axis(ax: Axes, guidances: Sequence[float]) -> None:
    """Log-x axis with a tick at every guidance weight (symlog when a weight is <= 0)."""
    if all(g > 0 for g in guidances):
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=1.0)
    ticks = sorted(set(guidances))
    ax.set_xticks(ticks, [f"{g:g}" for g in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("guidance weight w (log scale)")


def _set_metric_axis(ax: Axes, values: np.ndarray, label: str) -> None:
    """Log-y for FD, whose values span decades across methods (linear would flatten every line but the worst);
    symlog when a value is <= 0."""
    finite = values[np.isfinite(values)]
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
        ax.set_ylabel(f"{label} (log scale)")
    elif finite.size and (finite > 0).any():
        ax.set_yscale("symlog", linthresh=float(finite[finite > 0].min()))
        ax.set_ylabel(f"{label} (symlog scale)")
    else:
        ax.set_ylabel(label)


def plot_metric_vs_guidance(table: pd.DataFrame, title: str, feature_net: str | None = None) -> Figure:
    """Two panels, FD vs guidance and recall vs guidance, one line per (method, latent) (paper fig. 5), with the
    bootstrap 95 % band where the table has ``<metric>_ci_low`` / ``_ci_high``.

    Args:
        table: rows of one experiment with columns ``method, latent, guidance, fd, recall``.
        title: figure title (the experiment name).
        feature_net: named in the FD axis label when given.
    """
    fig = Figure(figsize=(7.0, 2.8), layout="constrained")
    axes = fig.subplots(1, len(GUIDANCE_PANELS))
    series = sorted({(m, lat) for m, lat in zip(table["method"], table["latent"], strict=True)},
                    key=lambda ml: (method_rank(ml[0]), ml[1]))
    latents = sorted(set(table["latent"]))
    for ax, (column, label) in zip(axes, GUIDANCE_PANELS, strict=True):
        for method, latent in series:
            rows = table[(table["method"] == method) & (table["latent"] == latent)].sort_values("guidance")
            weights = rows["guidance"].to_numpy(float)
            ax.plot(weights, rows[column].to_numpy(float), marker=latent_marker(latent, latents),
                    color=method_color(method), linestyle=method_linestyle(method), label=series_label(method, latent))
            if f"{column}_ci_low" in rows:  # bootstrap 95 % band
                ax.fill_between(weights, rows[f"{column}_ci_low"].to_numpy(float),
                                rows[f"{column}_ci_high"].to_numpy(float), color=method_color(method), alpha=0.15,
                                linewidth=0)
        _set_guidance_axis(ax, table["guidance"].tolist())
        label = label.replace("FD", f"FD ({feature_net})") if column == "fd" and feature_net else label
        if column == "fd":
            _set_metric_axis(ax, table[column].to_numpy(float), label)
        else:
            ax.set_ylabel(label)
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)  # outside: never hides data
    fig.suptitle(f"{title}: FD and recall vs guidance weight")
    return fig


def write_guidance_figures(table: pd.DataFrame, figures_dir: str | os.PathLike[str]) -> list[Path]:
    """``fid_recall_vs_guidance_{experiment}.png/.pdf`` for every experiment of ``table``."""
    written: list[Path] = []
    for experiment, group in table.groupby("experiment", sort=False):
        nets = sorted(set(group["feature_net"]))
        with report_style():
            fig = plot_metric_vs_guidance(group, str(experiment), nets[0] if len(nets) == 1 else None)
            written += save_figure(fig, Path(figures_dir) / f"fid_recall_vs_guidance_{experiment}")
    return written


def _scatter(ax: Axes, points: np.ndarray, labels: np.ndarray, limits: np.ndarray,
             centres: np.ndarray | None = None) -> None:
    """Scatter 2-D ``points`` (N, 2) coloured by integer ``labels`` (N,) inside ``limits`` [[x0, x1], [y0, y1]];
    the true mode ``centres`` (m, 2) as black crosses; the number of points outside the limits in a corner."""
    cmap, size = label_colormap(int(labels.max()) if len(labels) else 0)
    ax.scatter(points[:, 0], points[:, 1], c=labels % size, cmap=cmap, vmin=-0.5, vmax=size - 0.5, s=1.5,
               alpha=0.7, linewidths=0, rasterized=True)
    if centres is not None:
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", s=28, color="black", linewidths=1.2, zorder=3)
    inside = ((points >= limits[:, 0]) & (points <= limits[:, 1])).all(axis=1)
    if (~inside).sum():
        ax.text(0.98, 0.02, f"{int((~inside).sum())} outside", ha="right", va="bottom", fontsize=6,
                transform=ax.transAxes)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_box_aspect(1)
    ax.spines[:].set_visible(True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def shared_limits(point_sets: Sequence[np.ndarray], pad: float = 0.1) -> np.ndarray:
    """Axis limits ``[[x0, x1], [y0, y1]]`` covering the 0.5-99.5 percentiles of all points, padded by ``pad``.

    Percentiles rather than min/max so that a few far outliers (high guidance) do not shrink every panel.
    """
    stacked = np.concatenate([p for p in point_sets if len(p)]) if any(len(p) for p in point_sets) else None
    if stacked is None or not np.isfinite(stacked).any():
        return np.array([[-1.0, 1.0], [-1.0, 1.0]])
    finite = stacked[np.isfinite(stacked).all(axis=1)]
    low, high = np.percentile(finite, 0.5, axis=0), np.percentile(finite, 99.5, axis=0)
    span = np.maximum(high - low, 1e-6)
    return np.stack([low - pad * span, high + pad * span], axis=1)


@dataclass(frozen=True)
class ToyRow:
    """One row of the toy-mode figure: a (method, latent) of one experiment and its run per column."""

    experiment: str
    method: str
    latent: str
    runs: tuple[MetricRecord | None, ...]


def select_toy_rows(records: Sequence[MetricRecord], toy_guidance: Sequence[float]) -> tuple[list[float], list[ToyRow]]:
    """Columns (guidance weights) and rows (mdm / kaleido per latent, per toy experiment) of the toy figure.

    Columns are the weights of ``toy_guidance`` that some selected run has; if none has any of them, every
    weight the selected runs have (with a warning) so the figure still shows the data.
    """
    chosen = [r for r in records if r.is_toy and r.method in TOY_MODE_METHODS]
    present = sorted({r.guidance for r in chosen})
    columns = [g for g in present if any(math.isclose(g, want) for want in toy_guidance)]
    if chosen and not columns:
        log.warning("toy_modes: none of --toy-guidance %s was sampled; showing all weights %s",
                    list(toy_guidance), present)
        columns = present
    keys = sorted({(r.experiment, r.method, r.latent) for r in chosen},
                  key=lambda k: (k[0], method_rank(k[1]), k[2]))
    rows = []
    for experiment, method, latent in keys:
        runs = {r.guidance: r for r in chosen if (r.experiment, r.method, r.latent) == (experiment, method, latent)}
        rows.append(ToyRow(experiment, method, latent, tuple(runs.get(g) for g in columns)))
    return columns, rows


def toy_centres(record: MetricRecord) -> np.ndarray | None:
    """The true mode centres (m, 2) of a toy run's data set, from the config its metric JSON records."""
    data = record.provenance.get("config", {}).get("evaluate", {}).get("data", {})
    return np.asarray(data["centres"], dtype=np.float64) if "centres" in data else None


def plot_toy_modes(columns: Sequence[float], rows: Sequence[ToyRow],
                   points: dict[Path, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Grid of sample scatters (rows = method/latent, columns = guidance) with shared axis limits, the true mode
    centres, and a legend of the classes.

    Args:
        columns: guidance weight of each column.
        rows: :func:`select_toy_rows` rows.
        points: ``(points (N, 2), labels (N,))`` per metric JSON path of every run shown.
    """
    if not rows or not columns:
        fig = Figure(figsize=(3.0, 1.0))
        fig.text(0.5, 0.5, "no MDM/Kaleido runs on toy data", ha="center", va="center")
        return fig
    limits = shared_limits([xy for xy, _ in points.values()])
    several = len({row.experiment for row in rows}) > 1
    fig = Figure(figsize=(1.7 * len(columns) + 0.4, 1.7 * len(rows) + 0.3), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(columns), squeeze=False))
    for i, row in enumerate(rows):
        for j, (guidance, run) in enumerate(zip(columns, row.runs, strict=True)):
            ax = axes[i, j]
            if run is None:
                ax.axis("off")
                ax.text(0.5, 0.5, f"w={guidance:g}\nnot sampled", ha="center", va="center", transform=ax.transAxes)
                continue
            _scatter(ax, *points[run.path], limits, toy_centres(run))
            ax.set_title(f"{method_label(row.method)}, w={guidance:g}")
        row_label = series_label(row.method, row.latent)
        axes[i, 0].set_ylabel(f"{row.experiment}\n{row_label}" if several else row_label)
    _class_legend(fig, np.concatenate([labels for _, labels in points.values()]))
    return fig


def _class_legend(fig: Figure, labels: np.ndarray) -> None:
    """One legend for the whole grid: a coloured dot per class, and the cross of the true mode centres."""
    from matplotlib.lines import Line2D

    classes = sorted({int(v) for v in labels})
    cmap_name, size = label_colormap(max(classes) if classes else 0)
    cmap = colormaps[cmap_name]
    handles = [Line2D([], [], marker="o", linestyle="", color=cmap((c % size + 0.5) / size),
                      label=f"class {c}") for c in classes]
    handles.append(Line2D([], [], marker="x", linestyle="", color="black", label="true mode centre"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)


def write_toy_modes(records: Sequence[MetricRecord], toy_guidance: Sequence[float], max_points: int,
                    figures_dir: str | os.PathLike[str]) -> list[Path]:
    """``toy_modes.png/.pdf`` (paper fig. 3 style); nothing when no record is on toy data."""
    if not any(r.is_toy for r in records):
        return []
    columns, rows = select_toy_rows(records, toy_guidance)
    shown = [run for row in rows for run in row.runs if run is not None]
    points = {run.path: load_toy_points(run.samples, max_points) for run in shown}
    with report_style():
        fig = plot_toy_modes(columns, rows, points)
        return save_figure(fig, Path(figures_dir) / "toy_modes")


def plot_run_scatter(points: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """Small scatter of one run's samples ``points`` (N, 2) coloured by ``labels`` (N,)."""
    fig = Figure(figsize=(3.0, 3.0), layout="constrained")
    ax = fig.subplots()
    _scatter(ax, points, labels, shared_limits([points]))
    ax.set_title(f"{title} ({len(points)} samples)")
    return fig


def write_run_scatter(record: MetricRecord, max_points: int, path: str | os.PathLike[str]) -> Path:
    """Save :func:`plot_run_scatter` of ``record``'s first ``max_points`` samples as one PNG at ``path``."""
    xy, labels = load_toy_points(record.samples, max_points)
    with report_style():
        fig = plot_run_scatter(xy, labels, f"{record.experiment}: {record.method}/{record.latent}, "
                                           f"{guidance_tag(record.guidance)}")
        stem = Path(path).with_suffix("")
        return save_figure(fig, stem, formats=("png",))[0]

"""One look for every report figure: rcParams, method colours/labels, latent markers, atomic PNG+PDF saving.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state); the CLI selects the Agg backend.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from metrics.io import atomic_path

#: rcParams shared by all report figures (paper-sized fonts, light grid, no top/right spines).
RC_PARAMS: dict[str, object] = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.4,
    "lines.markersize": 4.5,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
    "svg.hashsalt": "kaleido",
}

METHOD_LABELS: dict[str, str] = {
    "mdm": "MDM",
    "mdm_cads": "MDM + CADS",
    "mdm_autoguidance": "MDM + autoguidance",
    "kaleido": "Kaleido",
    "kaleido_cads": "Kaleido + CADS",
    "mdm_interval": "MDM + guidance interval",
    "kaleido_interval": "Kaleido + guidance interval",
}
METHOD_COLORS: dict[str, str] = {
    "mdm": "#1f77b4",
    "mdm_cads": "#17becf",
    "mdm_autoguidance": "#9467bd",
    "kaleido": "#d62728",
    "kaleido_cads": "#ff7f0e",
    "mdm_interval": "#2ca02c",
    "kaleido_interval": "#8c564b",
}
#: Colours for methods outside :data:`METHOD_COLORS`, assigned by name so a method keeps its colour.
_SPARE_COLORS = ("#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939")
#: Markers by latent; "none" (methods without latents) is always a circle.
_MARKERS = ("s", "^", "D", "v", "P", "X", "*", "<", ">")
#: Extra ``savefig`` metadata per format so equal figures give equal bytes (no creation date).
_DETERMINISTIC_METADATA: dict[str, dict[str, None]] = {"png": {"Software": None}, "pdf": {"CreationDate": None}}


def method_label(method: str) -> str:
    """Human name of a method (the registry name where no nicer one is known)."""
    return METHOD_LABELS.get(method, method)


def series_label(method: str, latent: str) -> str:
    """Legend label of a (method, latent) line: ``"Kaleido (kmeans)"``, ``"MDM"``."""
    return method_label(method) if latent == "none" else f"{method_label(method)} ({latent})"


def method_color(method: str) -> str:
    """Fixed colour of a method."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _SPARE_COLORS[sum(method.encode()) % len(_SPARE_COLORS)]


#: Line style by the guidance variant a method adds to its base model, so a variant's line never hides its base's.
_VARIANT_LINESTYLES: dict[str, str] = {"_cads": "--", "_autoguidance": ":", "_interval": "-."}


def method_linestyle(method: str) -> str:
    """Solid for a base method (MDM, Kaleido), dashed / dotted / dash-dot for its CADS / autoguidance / interval
    variant."""
    return next((style for suffix, style in _VARIANT_LINESTYLES.items() if method.endswith(suffix)), "-")


def latent_marker(latent: str, latents: list[str]) -> str:
    """Marker of ``latent`` among the sorted ``latents`` of a figure ("none" -> circle)."""
    if latent == "none":
        return "o"
    others = [name for name in sorted(latents) if name != "none"]
    return _MARKERS[others.index(latent) % len(_MARKERS)] if latent in others else _MARKERS[0]


def label_colormap(labels_max: int) -> tuple[str, int]:
    """Qualitative colormap and its size for integer class labels ``0..labels_max`` (colours wrap beyond)."""
    return ("tab10", 10) if labels_max < 10 else ("tab20", 20)


@contextlib.contextmanager
def report_style() -> Iterator[None]:
    """Context in which report figures are built and saved with :data:`RC_PARAMS`."""
    with mpl.rc_context(RC_PARAMS):
        yield


def save_figure(fig: Figure, stem: str | os.PathLike[str], formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``{stem}.{fmt}`` for each format, atomically and without timestamps; return the paths."""
    written = []
    for fmt in formats:
        path = Path(f"{os.fspath(stem)}.{fmt}")
        with report_style(), atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, metadata=_DETERMINISTIC_METADATA.get(fmt))
        written.append(path)
    return written


"""Offline object finder for images of flat-coloured objects on a background (no learned weights).

Background = the median colour of the image border; foreground = pixels farther than ``fg_delta_e`` (CIE76 ΔE in
Lab) from it. Foreground colours are grouped greedily (leader clustering, ``group_delta_e``), each group split into
8-connected components; components under ``min_area`` pixels or without interior (no pixel survives a 3x3 erosion:
anti-aliased edge rings, noise specks) are not objects, and their pixels join the nearest object within 1.5 px.
Each object is named ``"<colour> <shape>"``: the palette colour nearest to its interior's mean colour and the shape
whose fill ratio of the bounding box is nearest to the mask's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: default palette (RGB) and shapes, those of kaleido.data.shapes; both are config options of the extractors
DEFAULT_PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40),
    "magenta": (200, 50, 200), "cyan": (40, 200, 210), "orange": (240, 140, 30), "white": (245, 245, 245),
}
DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SEGMENT_DEFAULTS: dict[str, Any] = {"fg_delta_e": 12.0, "group_delta_e": 20.0, "min_area": 4}


@dataclass(frozen=True)
class Segment:
    """One found object: ``mask`` (H, W) bool, mean ``rgb`` (3,) float, ``color``/``shape`` names."""

    mask: np.ndarray
    rgb: np.ndarray
    color: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    def box(self) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2) in [0, 1], pixel edges (x right, y down)."""
        h, w = self.mask.shape
        ys, xs = np.nonzero(self.mask)
        return xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h

    def ellipse(self) -> tuple[float, float, float, float, float]:
        """Second-moment ellipse: (xc, yc) in [0, 1], radii in units of the image side, theta in degrees [0, 180).

        A uniform ellipse with semi-axis r has variance r²/4 along that axis, so r = 2 sqrt(eigenvalue).
        Pixel centres are at (i + 0.5); the pixel's own variance 1/12 is included.
        """
        h, w = self.mask.shape
        ys, xs = np.nonzero(self.mask)
        pts = np.stack([xs + 0.5, ys + 0.5], axis=1)
        centre = pts.mean(axis=0)
        cov = np.cov(pts.T, bias=True) + np.eye(2) / 12.0
        evals, evecs = np.linalg.eigh(cov)  # ascending
        major = evecs[:, 1]
        theta = float(np.degrees(np.arctan2(major[1], major[0]))) % 180.0
        side = float(max(h, w))
        return (centre[0] / w, centre[1] / h, 2 * np.sqrt(evals[1]) / side, 2 * np.sqrt(evals[0]) / side, theta)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 or float in [0, 255] -> (..., 3) CIE-Lab (D65), via scikit-image."""
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb, dtype=np.float64) / 255.0)


def nearest_name(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    lab = rgb_to_lab(np.array([palette[n] for n in names], dtype=np.float64))
    return names[int(np.argmin(np.linalg.norm(lab - rgb_to_lab(rgb), axis=1)))]


def classify_shape(mask: np.ndarray, shapes: tuple[str, ...]) -> str:
    """Shape from the fill ratio of the mask in its bounding box (square 1, circle π/4, triangle 1/2)."""
    ys, xs = np.nonzero(mask)
    fill = mask.sum() / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    reference = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}
    known = [s for s in shapes if s in reference]
    if not known:
        return shapes[0]
    return min(known, key=lambda s: abs(reference[s] - fill))


def _group_colours(lab: np.ndarray, threshold: float) -> np.ndarray:
    """Leader clustering of (n, 3) Lab colours, most frequent (quantised) colours first -> group id per row."""
    quant = np.round(lab / 4.0).astype(np.int64)
    uniq, inverse, counts = np.unique(quant, axis=0, return_inverse=True, return_counts=True)
    leaders: list[np.ndarray] = []
    group_of = np.empty(len(uniq), dtype=np.int64)
    for u in np.argsort(-counts, kind="stable"):
        colour = uniq[u] * 4.0
        dists = [np.linalg.norm(colour - lead) for lead in leaders]
        if dists and min(dists) < threshold:
            group_of[u] = int(np.argmin(dists))
        else:
            group_of[u] = len(leaders)
            leaders.append(colour)
    return group_of[inverse.reshape(-1)]


def segment_image(image: np.ndarray, palette: dict[str, tuple[int, int, int]] = DEFAULT_PALETTE,
                  shapes: tuple[str, ...] = DEFAULT_SHAPES, fg_delta_e: float = 12.0, group_delta_e: float = 20.0,
                  min_area: int = 4) -> list[Segment]:
    """image (H, W, 3) uint8 RGB -> objects, ordered by (top, left) of their boxes."""
    from scipy import ndimage

    lab = rgb_to_lab(image)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    background = np.median(border, axis=0)
    fg = np.linalg.norm(lab - background, axis=-1) > fg_delta_e
    if not fg.any():
        return []
    groups = np.full(fg.shape, -1, dtype=np.int64)
    groups[fg] = _group_colours(lab[fg], group_delta_e)
    eight = np.ones((3, 3), dtype=bool)
    labels = np.zeros(fg.shape, dtype=np.int64)  # object id + 1 per pixel
    cores: list[np.ndarray] = []
    for g in range(groups.max() + 1):
        components, count = ndimage.label(groups == g, structure=eight)
        for c in range(1, count + 1):
            mask = components == c
            # anti-aliased edge rings and noise specks have no interior: keep components with an eroded core
            core = ndimage.binary_erosion(mask, structure=eight)
            if mask.sum() < min_area or not core.any():
                continue
            cores.append(core)
            labels[mask] = len(cores)
    if not cores:
        return []
    # leftover foreground pixels (edges) within 1.5 px of an object join the nearest one
    dist, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    leftover = fg & (labels == 0) & (dist <= 1.5)
    labels[leftover] = labels[iy[leftover], ix[leftover]]
    found = []
    for k, core in enumerate(cores, start=1):
        mask = labels == k
        rgb = image[core].astype(np.float64).mean(axis=0)  # interior only: edges mix in the background
        found.append(Segment(mask, rgb, nearest_name(rgb, palette), classify_shape(mask, shapes)))
    found.sort(key=lambda s: (s.box()[1], s.box()[0]))
    return found

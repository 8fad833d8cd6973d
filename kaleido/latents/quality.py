"""Extractor quality against a generator's ground truth (objects with boxes, colour and shape names).

Ground truth per image: a list of :class:`GTObject`. Predictions: the parsed bbox/blob items. Matching is the
Hungarian assignment maximising total box IoU (``scipy.optimize.linear_sum_assignment``); a pair counts as found
when its IoU >= ``iou_match`` (0.5).

Metrics (all in [0, 1]):
- ``mean_iou``: mean over ground-truth objects of the IoU of their matched prediction (0 when unmatched);
- ``recall`` / ``precision`` at ``iou_match``;
- ``count_accuracy``: share of images with as many predicted objects as true ones;
- ``color_accuracy`` / ``shape_accuracy``: share of found pairs whose predicted name has the true colour / shape;
- for ``color`` latents, ``color_recall``: share of true object colours within ΔE ``color_delta_e`` of a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GTObject:
    """A true object: colour and shape names, ``rgb`` (3,) uint8 colour, box (x1, y1, x2, y2) in [0, 1]."""

    color: str
    shape: str
    rgb: tuple[int, int, int]
    box: tuple[float, float, float, float]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (n, 4), b (m, 4) as (x1, y1, x2, y2) -> IoU (n, m)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match(pred_boxes: np.ndarray, gt_boxes: np.ndarray) -> list[tuple[int, int, float]]:
    """Hungarian matching maximising IoU -> [(pred index, gt index, IoU)]."""
    from scipy.optimize import linear_sum_assignment

    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return []
    iou = box_iou(pred_boxes, gt_boxes)
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols, strict=True)]


def object_quality(pred: Sequence[Sequence[tuple[str, tuple[float, float, float, float]]]],
                   truth: Sequence[Sequence[GTObject]], iou_match: float = 0.5) -> dict[str, Any]:
    """pred: per image [(name, box in [0, 1])]; truth: per image [GTObject] -> metric dict (see module doc)."""
    if len(pred) != len(truth):
        raise ValueError(f"{len(pred)} predicted images vs {len(truth)} ground-truth images")
    ious, found, num_pred, counts_ok, colour_ok, shape_ok = [], 0, 0, 0, 0, 0
    for p, t in zip(pred, truth, strict=True):
        num_pred += len(p)
        counts_ok += len(p) == len(t)
        pairs = match(np.array([b for _, b in p]), np.array([o.box for o in t]))
        matched = {g: (q, iou) for q, g, iou in pairs}
        for g, obj in enumerate(t):
            q, iou = matched.get(g, (None, 0.0))
            ious.append(iou)
            if q is not None and iou >= iou_match:
                found += 1
                words = p[q][0].split()
                colour_ok += obj.color in words
                shape_ok += obj.shape in words
    num_true = len(ious)
    return {"num_images": len(truth), "num_true_objects": num_true, "num_pred_objects": num_pred,
            "iou_match": iou_match, "mean_iou": float(np.mean(ious)) if ious else float("nan"),
            "recall": found / num_true if num_true else float("nan"),
            "precision": found / num_pred if num_pred else float("nan"),
            "count_accuracy": counts_ok / len(truth) if truth else float("nan"),
            "color_accuracy": colour_ok / found if found else float("nan"),
            "shape_accuracy": shape_ok / found if found else float("nan")}


def blob_box(xc: float, yc: float, ra: float, rb: float, theta_deg: float) -> tuple[float, float, float, float]:
    """Axis-aligned bounding box of an ellipse (all in image units)."""
    t = np.radians(theta_deg)
    hx = np.sqrt((ra * np.cos(t)) ** 2 + (rb * np.sin(t)) ** 2)
    hy = np.sqrt((ra * np.sin(t)) ** 2 + (rb * np.cos(t)) ** 2)
    return xc - hx, yc - hy, xc + hx, yc + hy


def color_quality(clusters: Sequence[Sequence[Any]], truth: Sequence[Sequence[GTObject]],
                  delta_e: float = 10.0) -> dict[str, Any]:
    """clusters: per image parsed :class:`ColorCluster` list -> share of true object colours within ``delta_e``."""
    from kaleido.latents.segment import rgb_to_lab

    hits, total = 0, 0
    for cl, t in zip(clusters, truth, strict=True):
        if not t:
            continue
        labs = np.array([[c.L, c.a, c.b] for c in cl], dtype=np.float64).reshape(-1, 3)
        for obj in t:
            total += 1
            if len(labs):
                hits += float(np.min(np.linalg.norm(labs - rgb_to_lab(np.array(obj.rgb)), axis=1))) <= delta_e
    return {"num_images": len(truth), "num_true_objects": total, "color_delta_e": delta_e,
            "color_recall": hits / total if total else float("nan")}


def latent_quality(latent: str, strings: Sequence[str], truth: Sequence[Sequence[GTObject]],
                   names: list[str] | None) -> dict[str, Any]:
    """Quality of one latent type's strings against the ground truth (its registry entry's ``quality``); {} for
    latents without objects."""
    from kaleido.latents import EXTRACTORS

    return EXTRACTORS.get(latent).quality(strings, truth, names)


def ground_truth(data: dict[str, Any]) -> list[list[GTObject]] | None:
    """Per-image ground truth from a data set's ``gt_*`` arrays, or None when it has none.

    Expected (kaleido.data.shapes): ``gt_count`` (n,) int, ``gt_boxes`` (n, K, 4) float in [0, 1] (x1, y1, x2, y2),
    ``gt_colors`` / ``gt_shapes`` (n, K) unicode names, ``gt_rgb`` (n, K, 3) uint8; slots >= gt_count are padding.
    """
    keys = ("gt_count", "gt_boxes", "gt_colors", "gt_shapes", "gt_rgb")
    if not all(k in data for k in keys):
        return None
    return [[GTObject(str(data["gt_colors"][i, k]), str(data["gt_shapes"][i, k]),
                      tuple(int(c) for c in data["gt_rgb"][i, k]), tuple(float(v) for v in data["gt_boxes"][i, k]))
             for k in range(int(data["gt_count"][i]))] for i in range(len(data["gt_count"]))]

"""Latent edits (registry): change one object of a sampled ``bbox`` latent string, and decide from the latent the
offline extractor reads off the regenerated image whether the edit took effect.

An edit has two parts, both pure functions of strings:

- ``apply(text, index, names) -> edited text | None``: the edited latent (None when this latent cannot take the
  edit: no object, no room to move, no other colour for the shape). ``index`` (the sample's global index) picks
  among equally good edits, so a run is reproducible.
- ``took_effect(before, after, detected) -> bool``: does the latent ``detected`` on the regenerated image follow
  the edit (``after``) rather than the original (``before``)? Applied to the unedited image, the same test is the
  control: how often an image "follows" an edit it never received.

Edits act on the first object of the string (the largest one under the default ``order: area``).

- ``move``: shift the object's box horizontally by ``MOVE_SHIFT`` units (of 1000) toward the side with more room;
  took effect when the nearest detected box centre is closer to the new centre than to the old one.
- ``recolor``: change the object's colour word to another colour the vocabulary has for that shape (the
  ``index``-th, cyclically); took effect when the detected box that overlaps the edited box most (IoU >= 0.3) has
  the new name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from kaleido.latents import formats as fmt
from metrics.registry import Registry

#: horizontal shift of ``move``, in the formats' [0, 1000] image units
MOVE_SHIFT = 300
#: least IoU for a detected box to count as the edited object (``recolor``)
MATCH_IOU = 0.3


@dataclass(frozen=True)
class LatentEdit:
    name: str
    latents: tuple[str, ...]
    apply: Callable[[str, int, Sequence[str]], str | None]
    took_effect: Callable[[str, str, str], bool]


EDITS: Registry[LatentEdit] = Registry("latent edit")


def _boxes(text: str) -> list[fmt.Box]:
    return fmt.parse_bbox(text)


def _centre(box: fmt.Box) -> np.ndarray:
    return np.array([(box.x1 + box.x2) / 2.0, (box.y1 + box.y2) / 2.0])


def _iou(a: fmt.Box, b: fmt.Box) -> float:
    w = max(0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - w * h
    return w * h / union if union > 0 else 0.0


def _move_apply(text: str, index: int, names: Sequence[str]) -> str | None:
    boxes = _boxes(text)
    if not boxes:
        return None
    box = boxes[0]
    room_right, room_left = fmt.COORD_MAX - box.x2, box.x1
    shift = min(MOVE_SHIFT, room_right) if room_right >= room_left else -min(MOVE_SHIFT, room_left)
    if abs(shift) < MOVE_SHIFT // 2:
        return None
    return fmt.format_bbox([replace(box, x1=box.x1 + shift, x2=box.x2 + shift), *boxes[1:]])


def _move_took_effect(before: str, after: str, detected: str) -> bool:
    found = _boxes(detected)
    if not found:
        return False
    centres = np.stack([_centre(b) for b in found])
    to_new = np.linalg.norm(centres - _centre(_boxes(after)[0]), axis=1).min()
    to_old = np.linalg.norm(centres - _centre(_boxes(before)[0]), axis=1).min()
    return bool(to_new < to_old)


def _recolor_apply(text: str, index: int, names: Sequence[str]) -> str | None:
    boxes = _boxes(text)
    if not boxes or " " not in boxes[0].name:
        return None
    colour, shape = boxes[0].name.split(" ", 1)
    others = sorted(n for n in names if n.endswith(f" {shape}") and n != boxes[0].name)
    if not others:
        return None
    return fmt.format_bbox([replace(boxes[0], name=others[index % len(others)]), *boxes[1:]])


def _recolor_took_effect(before: str, after: str, detected: str) -> bool:
    target = _boxes(after)[0]
    found = _boxes(detected)
    if not found:
        return False
    best = max(found, key=lambda b: _iou(b, target))
    return _iou(best, target) >= MATCH_IOU and best.name == target.name


EDITS.register("move")(LatentEdit("move", ("bbox",), _move_apply, _move_took_effect))
EDITS.register("recolor")(LatentEdit("recolor", ("bbox",), _recolor_apply, _recolor_took_effect))

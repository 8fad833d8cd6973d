"""The paper's latent token strings (methods.md "Latent types"): writers and strict parsers.

Every format is plain text so one tokenizer serves all latent types. Parsers decode a (possibly generated) string
back to structure and raise :class:`LatentFormatError` naming the offending item and what is accepted; writing a
parsed structure gives back the same string (round trip exact).

- bbox:  ``name (x1, y1, x2, y2)``, integers in [0, 1000] (image-normalised), x1 <= x2, y1 <= y2
- blob:  ``name (xc, yc, r_major, r_minor, theta)``, centre/radii integers in [0, 1000], r_minor <= r_major,
  theta integer degrees in [0, 180)
- color: ``color (L, a, b, share)``: a CIE-Lab colour quantised to integers (L in [0, 100], a/b in [-128, 127]) and
  its pixel share in percent [0, 100]
- voken: ``<v12>#<v507>#...``: exactly ``num_tokens`` codebook ids in [0, codebook_size)
- combined: ``text | bbox | voken``

bbox/blob/color items are joined by :data:`ITEM_SEP`; an image without objects is the empty string.

Each latent type's registry entry (:data:`kaleido.latents.EXTRACTORS`) parses and writes its strings with these
functions; :func:`parse_latent` dispatches to the entry.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from metrics.errors import InputError

ITEM_SEP = "; "
PART_SEP = " | "
VOKEN_SEP = "#"
COORD_MAX = 1000


class LatentFormatError(InputError):
    """A latent string does not follow its format; the message says where and what is accepted."""


@dataclass(frozen=True)
class ItemFormat:
    """The numbers of one ``name (n1, ..., nk)`` item format, for constrained decoding (:mod:`.grammar`): field
    ranges and order relations between fields.

    ``bounds[i]`` = (lo, hi) inclusive for field i; ``at_least[i]`` = j means field i >= field j (bbox x2 >= x1),
    ``at_most[i]`` = j means field i <= field j (blob r_minor <= r_major).
    """

    bounds: tuple[tuple[int, int], ...]
    at_least: dict[int, int]
    at_most: dict[int, int]


@dataclass(frozen=True)
class Box:
    name: str
    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def area(self) -> int:
        """Box area in squared coordinate units."""
        return (self.x2 - self.x1) * (self.y2 - self.y1)


@dataclass(frozen=True)
class Blob:
    name: str
    xc: int
    yc: int
    r_major: int
    r_minor: int
    theta: int

    @property
    def area(self) -> int:
        """r_major * r_minor: the ellipse area over pi, in squared coordinate units."""
        return self.r_major * self.r_minor


@dataclass(frozen=True)
class ColorCluster:
    L: int
    a: int
    b: int
    share: int


_ITEM = re.compile(r"^(?P<name>[a-z][a-z0-9 _-]*?) \((?P<nums>[^()]*)\)$")
_INT = re.compile(r"^-?\d+$")
_VOKEN = re.compile(r"^<v(\d+)>$")


def _split_items(text: str, kind: str) -> list[str]:
    if not isinstance(text, str):
        raise LatentFormatError(f"{kind} latent must be a str, got {type(text).__name__}")
    if text == "":
        return []
    return text.split(ITEM_SEP)


def _item(item: str, kind: str, arity: int, names: Collection[str] | None, index: int) -> tuple[str, list[int]]:
    where = f"{kind} item {index} {item!r}"
    m = _ITEM.match(item)
    if m is None:
        raise LatentFormatError(f"{where}: expected 'name (n1, ..., n{arity})' with a lower-case name and "
                                "parenthesised comma-separated integers")
    name = m["name"]
    if names is not None and name not in names:
        raise LatentFormatError(f"{where}: unknown name {name!r}; accepted: {sorted(names)}")
    fields = m["nums"].split(", ")
    if len(fields) != arity:
        raise LatentFormatError(f"{where}: {len(fields)} numbers, expected {arity}")
    bad = [f for f in fields if not _INT.match(f) or (f.startswith(("0", "-0")) and f not in ("0",))]
    if bad:
        raise LatentFormatError(f"{where}: {bad} are not integers in canonical form (no leading zeros, '-0' or "
                                "spaces)")
    return name, [int(f) for f in fields]


def _check_range(where: str, label: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise LatentFormatError(f"{where}: {label}={value} out of range [{lo}, {hi}]")


def format_bbox(boxes: Sequence[Box]) -> str:
    return ITEM_SEP.join(f"{b.name} ({b.x1}, {b.y1}, {b.x2}, {b.y2})" for b in boxes)


def parse_bbox(text: str, names: Collection[str] | None = None) -> list[Box]:
    """``"red circle (10, 20, 300, 400); ..."`` -> boxes; ``names`` (if given) is the accepted object vocabulary."""
    out = []
    for i, item in enumerate(_split_items(text, "bbox")):
        name, (x1, y1, x2, y2) = _item(item, "bbox", 4, names, i)
        where = f"bbox item {i} {item!r}"
        for label, v in zip(("x1", "y1", "x2", "y2"), (x1, y1, x2, y2), strict=True):
            _check_range(where, label, v, 0, COORD_MAX)
        if x1 > x2 or y1 > y2:
            raise LatentFormatError(f"{where}: corners must satisfy x1 <= x2 and y1 <= y2")
        out.append(Box(name, x1, y1, x2, y2))
    return out


def format_blob(blobs: Sequence[Blob]) -> str:
    return ITEM_SEP.join(f"{b.name} ({b.xc}, {b.yc}, {b.r_major}, {b.r_minor}, {b.theta})" for b in blobs)


def parse_blob(text: str, names: Collection[str] | None = None) -> list[Blob]:
    """``"red circle (xc, yc, r_major, r_minor, theta); ..."`` -> blobs."""
    out = []
    for i, item in enumerate(_split_items(text, "blob")):
        name, (xc, yc, ra, rb, theta) = _item(item, "blob", 5, names, i)
        where = f"blob item {i} {item!r}"
        for label, v in zip(("xc", "yc", "r_major", "r_minor"), (xc, yc, ra, rb), strict=True):
            _check_range(where, label, v, 0, COORD_MAX)
        _check_range(where, "theta", theta, 0, 179)
        if rb > ra:
            raise LatentFormatError(f"{where}: r_minor={rb} exceeds r_major={ra}")
        out.append(Blob(name, xc, yc, ra, rb, theta))
    return out


def format_color(clusters: Sequence[ColorCluster]) -> str:
    return ITEM_SEP.join(f"color ({c.L}, {c.a}, {c.b}, {c.share})" for c in clusters)


def parse_color(text: str) -> list[ColorCluster]:
    """``"color (L, a, b, share); ..."`` -> colour clusters."""
    out = []
    for i, item in enumerate(_split_items(text, "color")):
        _, (L, a, b, share) = _item(item, "color", 4, ("color",), i)
        where = f"color item {i} {item!r}"
        _check_range(where, "L", L, 0, 100)
        _check_range(where, "a", a, -128, 127)
        _check_range(where, "b", b, -128, 127)
        _check_range(where, "share", share, 0, 100)
        out.append(ColorCluster(L, a, b, share))
    return out


def format_voken(ids: Sequence[int]) -> str:
    return VOKEN_SEP.join(f"<v{int(i)}>" for i in ids)


def parse_voken(text: str, num_tokens: int, codebook_size: int) -> list[int]:
    """``"<v12>#<v507>#..."`` -> exactly ``num_tokens`` ids in [0, codebook_size)."""
    if not isinstance(text, str):
        raise LatentFormatError(f"voken latent must be a str, got {type(text).__name__}")
    parts = text.split(VOKEN_SEP) if text else []
    if len(parts) != num_tokens:
        raise LatentFormatError(f"voken: {len(parts)} ids, expected exactly {num_tokens} joined by {VOKEN_SEP!r}")
    ids = []
    for i, part in enumerate(parts):
        m = _VOKEN.match(part)
        if m is None or (len(m[1]) > 1 and m[1].startswith("0")):
            raise LatentFormatError(f"voken id {i} {part!r}: expected '<vN>' with N a canonical integer")
        if int(m[1]) >= codebook_size:
            raise LatentFormatError(f"voken id {i} {part!r}: {m[1]} out of range [0, {codebook_size})")
        ids.append(int(m[1]))
    return ids


def voken_vocabulary(codebook_size: int) -> list[str]:
    """The visual tokens ``<v0>`` ... ``<v{K-1}>`` added to the tokenizer."""
    return [f"<v{i}>" for i in range(codebook_size)]


def format_combined(text: str, bbox: str, voken: str) -> str:
    for label, part in (("text", text), ("bbox", bbox)):
        if "|" in part:
            raise LatentFormatError(f"combined: the {label} part contains the separator '|': {part!r}")
    return PART_SEP.join((text, bbox, voken))


def parse_combined(text: str, names: Collection[str] | None, num_tokens: int,
                   codebook_size: int) -> tuple[str, list[Box], list[int]]:
    """``"text | bbox | voken"`` -> (text, boxes, voken ids)."""
    if not isinstance(text, str):
        raise LatentFormatError(f"combined latent must be a str, got {type(text).__name__}")
    parts = text.split(PART_SEP)
    if len(parts) != 3:
        raise LatentFormatError(f"combined: {len(parts)} parts, expected 3 ('text | bbox | voken')")
    if not parts[0].strip():
        raise LatentFormatError("combined: empty text part")
    return parts[0], parse_bbox(parts[1], names), parse_voken(parts[2], num_tokens, codebook_size)


def to_unit(value: float) -> int:
    """A coordinate in [0, 1] (image-normalised) -> integer in [0, 1000]."""
    return int(min(COORD_MAX, max(0, round(value * COORD_MAX))))


def parse_text(text: str) -> str:
    """A text latent: any non-empty description without the combined separator '|'."""
    if not isinstance(text, str) or not text.strip() or "|" in text:
        raise LatentFormatError(f"text latent {text!r}: expected a non-empty description without '|'")
    return text


def parse_latent(latent: str, text: str, names: Collection[str] | None = None, num_tokens: int = 32,
                 codebook_size: int | None = None) -> object:
    """Decode a string of latent type ``latent`` (any registered string latent: bbox, blob, color, voken, text,
    combined, plugins) with its registry entry's parser; raise :class:`LatentFormatError` if malformed.
    ``names``/``codebook_size`` come from the latents npz (``names``, ``voken_codebook``.shape[0])."""
    from kaleido.latents import EXTRACTORS, string_latents

    if latent not in string_latents():
        raise LatentFormatError(f"unknown latent type {latent!r}; accepted: {string_latents()}")
    return EXTRACTORS.get(latent).parse(text, names, num_tokens=num_tokens, codebook_size=codebook_size)


def needs_codebook(latent: str, codebook_size: int | None) -> int:
    """``codebook_size``, or the error of parsing a ``latent`` (voken, combined) string without it."""
    if codebook_size is None:
        raise LatentFormatError(f"parsing a {latent} latent needs codebook_size")
    return codebook_size

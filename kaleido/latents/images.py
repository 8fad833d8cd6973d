"""Shared plumbing of the image latent extractors: the string result, option validation, batched iteration.

An image extractor (``kind = "strings"``) maps ``images`` (N, H, W, 3) uint8 RGB to one latent string per image
(:mod:`kaleido.latents.formats`); :mod:`kaleido.latents.tokenizer` turns the strings into token ids. Its
``per_item(spec)`` says whether each image's string depends on that image (and its context) alone, so that the
stage may extract a large set part by part (:mod:`kaleido.latents.stage`); extractors that fit something on the
whole set (the offline voken codebook) say False.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kaleido.checks import check_int, check_number
from kaleido.errors import ConfigError
from kaleido.latents.segment import DEFAULT_PALETTE, DEFAULT_SHAPES, SEGMENT_DEFAULTS
from metrics.errors import InputError

#: options every image extractor accepts
COMMON_KEYS = {"source", "batch_size", "tokenizer"}
COMMON_DEFAULTS: dict[str, Any] = {"source": "offline", "batch_size": 256, "tokenizer": "offline"}
#: options of the offline object finder (kaleido.latents.segment)
SEGMENT_KEYS = {"palette", "shapes", *SEGMENT_DEFAULTS}


@dataclass(frozen=True)
class LatentStrings:
    """``strings`` (n,) unicode; ``names`` the object vocabulary the parser accepts; ``added_tokens`` tokens the
    tokenizer must keep whole (visual tokens); ``arrays`` extra arrays saved beside the strings (e.g. a codebook);
    ``counts`` per-image tallies that add up over the parts of a set (e.g. images a detector was asked nothing
    for), written into the latents' quality record."""

    strings: np.ndarray
    names: list[str] = field(default_factory=list)
    added_tokens: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def loaded(factory: Callable[..., Any], path: str, *args: Hashable) -> Any:
    """``factory(path, *args)`` built once per process while the files of the model directory ``path`` stay the
    same: a pretrained model that the stage calls again for every part of a large set
    (:mod:`kaleido.latents.stage`) is loaded once, and replaced weights are noticed."""
    directory = Path(path).expanduser()
    state = tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in directory.iterdir()
                         if f.is_file())) if directory.is_dir() else ()
    return _build(factory, (path, *args), state)


@functools.lru_cache(maxsize=4)
def _build(factory: Callable[..., Any], args: tuple[Hashable, ...], state: tuple[Any, ...]) -> Any:
    return factory(*args)


@dataclass(frozen=True)
class ImageContext:
    """What an extractor may read besides the pixels: class ids (n,), class names, optional captions (n,)."""

    labels: np.ndarray
    class_names: list[str] | None = None
    captions: np.ndarray | None = None

    def part(self, rows: slice) -> ImageContext:
        """The context of images ``rows`` of the set (indices restart at 0)."""
        return ImageContext(labels=self.labels[rows], class_names=self.class_names,
                            captions=None if self.captions is None else self.captions[rows])

    def prompt_subject(self, i: int) -> str:
        if self.captions is not None:
            return str(self.captions[i])
        if self.class_names is not None:
            return self.class_names[int(self.labels[i])]
        return f"class {int(self.labels[i])}"


def batches(n: int, batch_size: int, desc: str) -> Iterator[slice]:
    """Slices of ``range(n)`` in batches, with a tqdm progress bar (on stderr)."""
    from tqdm import tqdm

    with tqdm(total=n, desc=desc, unit="img", mininterval=2.0) as bar:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            yield slice(start, stop)
            bar.update(stop - start)


def map_batched(images: np.ndarray, batch_size: int, desc: str,
                fn: Callable[[np.ndarray, slice], list[str]]) -> np.ndarray:
    """Apply ``fn(images[batch], batch)`` -> strings over batches; the result is a unicode array (n,)."""
    out: list[str] = []
    for sl in batches(len(images), batch_size, desc):
        out.extend(fn(images[sl], sl))
    return np.array(out, dtype=str) if out else np.zeros(0, dtype="<U1")


def check_common(spec: Mapping[str, Any], where: str, sources: tuple[str, ...]) -> None:
    source = spec.get("source", "offline")
    if source not in sources:
        raise ConfigError(f"{where}.source: {source!r}; accepted: {list(sources)}")
    check_int(spec, "batch_size", where)
    tok = spec.get("tokenizer", "offline")
    if not isinstance(tok, str) or not tok:
        raise ConfigError(f"{where}.tokenizer: {tok!r}; accepted: 'offline' or a Hugging Face tokenizer name/path")


def check_segment(spec: Mapping[str, Any], where: str) -> None:
    palette = spec.get("palette", DEFAULT_PALETTE)
    if not isinstance(palette, dict) or not palette or not all(
            isinstance(k, str) and isinstance(v, (list, tuple)) and len(v) == 3
            and all(isinstance(c, int) and 0 <= c <= 255 for c in v) for k, v in palette.items()):
        raise ConfigError(f"{where}.palette: {palette!r}; accepted: a non-empty mapping colour name -> [r, g, b] "
                          "integers in [0, 255]")
    shapes = spec.get("shapes", list(DEFAULT_SHAPES))
    if not isinstance(shapes, (list, tuple)) or not shapes or not all(isinstance(s, str) and s for s in shapes):
        raise ConfigError(f"{where}.shapes: {shapes!r}; accepted: a non-empty list of shape names")
    check_number(spec, "fg_delta_e", where)
    check_number(spec, "group_delta_e", where)
    check_int(spec, "min_area", where)


def segment_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`kaleido.latents.segment.segment_image` from an extractor spec."""
    palette = {k: tuple(v) for k, v in spec.get("palette", DEFAULT_PALETTE).items()}
    opts = {key: spec.get(key, default) for key, default in SEGMENT_DEFAULTS.items()}
    return {"palette": palette, "shapes": tuple(spec.get("shapes", DEFAULT_SHAPES)), **opts}


def object_names(spec: Mapping[str, Any]) -> list[str]:
    """The offline object vocabulary: every ``"<colour> <shape>"``."""
    opts = segment_options(spec)
    return [f"{c} {s}" for c in opts["palette"] for s in opts["shapes"]]


def require_files(directory: str | Path, files: tuple[str, ...], what: str, how: str) -> Path:
    """``directory`` (a path, or a Hugging Face repository read from the local cache: :mod:`kaleido.pretrained`)
    must exist and hold at least one of ``files``; else a clear error saying how to get them."""
    from kaleido.pretrained import resolve

    path = Path(resolve(str(directory), what))
    if not path.is_dir() or not any((path / f).exists() for f in files):
        raise InputError(f"{what}: {path} does not hold any of {list(files)}; {how}")
    return path

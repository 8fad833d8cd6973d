"""Discrete latent extractors (registry). Stage I of Kaleido: every training item -> a token sequence.

An extractor maps the training arrays to ``tokens`` (n, L) int64 in ``[0, vocab_size)``; it must not read
the generator's ground truth (``modes``), which only :func:`recovery_accuracy` uses, for evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from kaleido.latents.formats import ItemFormat, LatentFormatError
from metrics.registry import Registry

if TYPE_CHECKING:
    from kaleido.latents.images import ImageContext, LatentStrings
    from kaleido.latents.quality import GTObject


@dataclass(frozen=True)
class LatentCodes:
    """``tokens`` (n, seq_len) int64 and the vocabulary size of the token ids."""

    tokens: np.ndarray
    vocab_size: int


class LatentExtractor(Protocol):
    """Everything the harness knows about one latent type: the object registered in :data:`EXTRACTORS`.

    Subclass :class:`LatentType` for the defaults (no string format, no quality, no grammar).
    """

    #: ``"vector"``: :meth:`extract` maps vector data to token ids; ``"strings"``: :meth:`extract_strings` maps
    #: images to one latent string each, which the latents stage tokenizes
    kind: str
    #: the constrained-decoding item format of the prior's strings (:mod:`kaleido.latents.grammar`), or None
    grammar: ItemFormat | None

    def validate(self, spec: dict[str, Any], where: str) -> None:
        """Raise ConfigError (naming ``where``) if the experiment's options block ``spec`` is not accepted."""

    def extract(self, x: np.ndarray, labels: np.ndarray, spec: dict[str, Any], seed: int) -> LatentCodes:
        """``kind == "vector"``: x (n, d), labels (n,) -> tokens (n, L) int64."""

    def extract_strings(self, images: np.ndarray, ctx: ImageContext, spec: dict[str, Any],
                        seed: int) -> LatentStrings:
        """``kind == "strings"``: images (n, H, W, 3) uint8 -> one latent string per image (+ object names)."""

    def parse(self, text: str, names: Collection[str] | None = None, num_tokens: int = 32,
              codebook_size: int | None = None) -> object:
        """A latent string -> its structure; raise LatentFormatError if malformed. ``names`` (the object
        vocabulary), ``num_tokens`` / ``codebook_size`` (visual tokens) come from the latents npz."""

    def write(self, parsed: Any) -> str:
        """The inverse of :meth:`parse`: ``write(parse(s)) == s``."""

    def quality(self, strings: Sequence[str], truth: Sequence[Sequence[GTObject]],
                names: list[str] | None) -> dict[str, Any]:
        """Metrics of the strings against a generator's ground-truth objects; {} for latents without objects."""

    def per_item(self, spec: dict[str, Any]) -> bool:
        """Whether each image's string depends on that image (and its context) alone under options ``spec``, so a
        sharded set may be extracted part by part (:func:`kaleido.latents.stage.extract_in_parts`)."""


class LatentType:
    """Defaults of :class:`LatentExtractor`: an image latent (``kind = "strings"``) without quality metrics or a
    grammar. A subclass sets ``kind`` and overrides ``validate``, its ``extract``/``extract_strings``, and (strings)
    ``parse``/``write``; ``quality``/``grammar`` where it has them."""

    kind: ClassVar[str] = "strings"
    grammar: ClassVar[ItemFormat | None] = None

    def validate(self, spec: dict[str, Any], where: str) -> None:
        raise NotImplementedError

    def extract(self, x: np.ndarray, labels: np.ndarray, spec: dict[str, Any], seed: int) -> LatentCodes:
        raise NotImplementedError(f"{type(self).__name__} extracts {self.kind}, not vector tokens")

    def extract_strings(self, images: np.ndarray, ctx: ImageContext, spec: dict[str, Any],
                        seed: int) -> LatentStrings:
        raise NotImplementedError(f"{type(self).__name__} extracts {self.kind}, not latent strings")

    def parse(self, text: str, names: Collection[str] | None = None, num_tokens: int = 32,
              codebook_size: int | None = None) -> object:
        raise LatentFormatError(f"{type(self).__name__} has no string format")

    def write(self, parsed: Any) -> str:
        raise NotImplementedError(f"{type(self).__name__} has no string format")

    def quality(self, strings: Sequence[str], truth: Sequence[Sequence[GTObject]],
                names: list[str] | None) -> dict[str, Any]:
        return {}

    def per_item(self, spec: dict[str, Any]) -> bool:
        return False  # the safe default: the whole set in one call


#: what an entry must offer (the :class:`LatentExtractor` members); :class:`LatentType` supplies the defaults
MEMBERS = ("kind", "grammar", "validate", "extract", "extract_strings", "parse", "write", "quality", "per_item")
KINDS = ("vector", "strings")


class _LatentRegistry(Registry[LatentExtractor]):
    """:class:`Registry` that refuses an entry missing a :class:`LatentExtractor` member or with an unknown kind."""

    def register(self, name: str) -> Callable[[LatentExtractor], LatentExtractor]:
        add = super().register(name)

        def check(entry: LatentExtractor) -> LatentExtractor:
            missing = [m for m in MEMBERS if not hasattr(entry, m)]
            if missing:
                raise TypeError(f"latent extractor {name!r}: {type(entry).__name__} lacks {missing}; subclass "
                                "kaleido.latents.LatentType for the defaults")
            if entry.kind not in KINDS:
                raise TypeError(f"latent extractor {name!r}: kind {entry.kind!r}; accepted: {list(KINDS)}")
            if entry.grammar is not None and not isinstance(entry.grammar, ItemFormat):
                raise TypeError(f"latent extractor {name!r}: grammar {entry.grammar!r} is not an ItemFormat or None")
            return add(entry)

        return check


EXTRACTORS: Registry[LatentExtractor] = _LatentRegistry("latent extractor")


def string_latents() -> list[str]:
    """The registered latent types written as strings (those with a parser), sorted."""
    return [name for name in EXTRACTORS.names() if EXTRACTORS.get(name).kind == "strings"]


def recovery_accuracy(tokens: np.ndarray, labels: np.ndarray, modes: np.ndarray) -> float:
    """Share of items whose first token names their true mode, under the best token<->mode matching per class.

    tokens (n, L), labels (n,), modes (n,). 1.0 means the extractor recovered the generator's modes exactly.
    """
    correct = 0
    for c in np.unique(labels):
        members = labels == c
        tok, mode = tokens[members, 0], modes[members]
        tok_ids, mode_ids = np.unique(tok), np.unique(mode)
        counts = {(t, m): int(np.sum((tok == t) & (mode == m))) for t in tok_ids for m in mode_ids}
        if len(tok_ids) <= len(mode_ids):
            best = max(sum(counts[t, m] for t, m in zip(tok_ids, perm, strict=False))
                       for perm in permutations(mode_ids, len(tok_ids)))
        else:
            best = max(sum(counts[t, m] for t, m in zip(perm, mode_ids, strict=False))
                       for perm in permutations(tok_ids, len(mode_ids)))
        correct += best
    return correct / len(labels)


# the built-in latent types register themselves; a config's `plugins:` modules add more (kaleido.config.validate)
from kaleido.latents import color, combined, kmeans, objects, voken  # noqa: E402,F401
from kaleido.latents import text as _text  # noqa: E402,F401  (as: `text` names the parsers' argument)

"""``combined`` latent: ``text | bbox | voken`` (the paper's order), each part from its own extractor.

Options: ``text``, ``bbox``, ``voken`` (each an options block of that extractor, default {}), plus the common ones.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from kaleido.checks import check_keys
from kaleido.errors import ConfigError
from kaleido.latents import EXTRACTORS, LatentType
from kaleido.latents import formats as fmt
from kaleido.latents.images import COMMON_KEYS, ImageContext, LatentStrings, check_common
from kaleido.latents.quality import GTObject

PARTS = ("text", "bbox", "voken")


class CombinedExtractor(LatentType):
    keys = COMMON_KEYS | set(PARTS)

    def per_item(self, spec: dict[str, Any]) -> bool:
        """Its voken part may fit a codebook on the whole set: one part."""
        return False

    def validate(self, spec: dict[str, Any], where: str) -> None:
        check_keys(spec, self.keys, where)
        check_common(spec, where, ("offline",))
        for part in PARTS:
            block = spec.get(part, {})
            if not isinstance(block, dict):
                raise ConfigError(f"{where}.{part}: {block!r} is not a mapping of {part} extractor options")
            EXTRACTORS.get(part).validate(block, f"{where}.{part}")

    def parse(self, text: str, names: Collection[str] | None = None, num_tokens: int = 32,
              codebook_size: int | None = None) -> tuple[str, list[fmt.Box], list[int]]:
        return fmt.parse_combined(text, names, num_tokens, fmt.needs_codebook("combined", codebook_size))

    def write(self, parsed: tuple[str, Sequence[fmt.Box], Sequence[int]]) -> str:
        text, boxes, ids = parsed
        return fmt.format_combined(text, EXTRACTORS.get("bbox").write(boxes), EXTRACTORS.get("voken").write(ids))

    def quality(self, strings: Sequence[str], truth: Sequence[Sequence[GTObject]],
                names: list[str] | None) -> dict[str, Any]:
        """The bbox part's quality (the part with objects)."""
        return EXTRACTORS.get("bbox").quality([s.split(fmt.PART_SEP)[1] for s in strings], truth, names)

    def extract_strings(self, images: np.ndarray, ctx: ImageContext, spec: dict[str, Any], seed: int) -> LatentStrings:
        common = {k: spec[k] for k in ("batch_size",) if k in spec}
        parts = {part: EXTRACTORS.get(part).extract_strings(images, ctx, {**common, **spec.get(part, {})}, seed)
                 for part in PARTS}
        strings = np.array([fmt.format_combined(t, b, v) for t, b, v in zip(
            parts["text"].strings, parts["bbox"].strings, parts["voken"].strings, strict=True)], dtype=str)
        return LatentStrings(strings, names=parts["bbox"].names, added_tokens=parts["voken"].added_tokens,
                             arrays=parts["voken"].arrays, counts=parts["bbox"].counts)


EXTRACTORS.register("combined")(CombinedExtractor())

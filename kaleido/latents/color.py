"""``color`` latent (paper appendix): the k dominant colours of an image, k-means in CIE-Lab, quantised.

Each image's pixels are clustered with k-means in Lab (scikit-image ``rgb2lab``); each centre is quantised to
multiples of ``quant_step`` (L clipped to [0, 100], a/b to [-128, 127]) and written ``color (L, a, b, share)`` with
its pixel share in percent; clusters that quantise to the same colour are merged; largest share first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from kaleido.checks import check_int, check_keys
from kaleido.latents import EXTRACTORS, LatentType
from kaleido.latents import formats as fmt
from kaleido.latents.images import (
    COMMON_DEFAULTS,
    COMMON_KEYS,
    ImageContext,
    LatentStrings,
    check_common,
    map_batched,
)
from kaleido.latents.quality import GTObject, color_quality
from kaleido.latents.segment import rgb_to_lab
from metrics.features import check_images

COLOR_DEFAULTS: dict[str, Any] = {"num_colors": 4, "quant_step": 8}


def dominant_colors(image: np.ndarray, k: int, step: int, seed: int) -> list[fmt.ColorCluster]:
    """image (H, W, 3) uint8 -> up to ``k`` quantised Lab clusters, largest share first."""
    from sklearn.cluster import KMeans

    lab = rgb_to_lab(image).reshape(-1, 3)
    # distinct colours, counted on the packed RGB (one int per pixel: ~10x faster than rows of Lab floats; Lab is
    # a function of RGB whose values differ by > 1e-3 for any two RGB triples, so the count is the same)
    packed = image.reshape(-1, 3).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)
    k_eff = min(k, len(np.unique(packed)))
    km = KMeans(n_clusters=k_eff, n_init=1, random_state=seed % 2**31).fit(lab)
    counts = np.bincount(km.labels_, minlength=k_eff)
    merged: dict[tuple[int, int, int], int] = {}
    for centre, count in zip(km.cluster_centers_, counts, strict=True):
        q = np.round(centre / step) * step
        key = (int(np.clip(q[0], 0, 100)), int(np.clip(q[1], -128, 127)), int(np.clip(q[2], -128, 127)))
        merged[key] = merged.get(key, 0) + int(count)
    ordered = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    return [fmt.ColorCluster(L, a, b, int(round(100 * c / len(lab)))) for (L, a, b), c in ordered]


class ColorExtractor(LatentType):
    keys = COMMON_KEYS | set(COLOR_DEFAULTS)

    def per_item(self, spec: dict[str, Any]) -> bool:
        """Each image's string depends on that image alone: the stage may extract the set in parts."""
        return True

    def validate(self, spec: dict[str, Any], where: str) -> None:
        check_keys(spec, self.keys, where)
        check_common(spec, where, ("offline",))
        check_int(spec, "num_colors", where, 1, 16)
        check_int(spec, "quant_step", where, 1, 50)

    def parse(self, text: str, names: Collection[str] | None = None, num_tokens: int = 32,
              codebook_size: int | None = None) -> list[fmt.ColorCluster]:
        return fmt.parse_color(text)

    def write(self, parsed: Sequence[fmt.ColorCluster]) -> str:
        return fmt.format_color(parsed)

    def quality(self, strings: Sequence[str], truth: Sequence[Sequence[GTObject]],
                names: list[str] | None) -> dict[str, Any]:
        return color_quality([self.parse(s) for s in strings], truth)

    def extract_strings(self, images: np.ndarray, ctx: ImageContext, spec: dict[str, Any], seed: int) -> LatentStrings:
        check_images(images)
        spec = {**COMMON_DEFAULTS, **COLOR_DEFAULTS, **spec}
        strings = map_batched(images, spec["batch_size"], "color", lambda batch, _: [
            fmt.format_color(dominant_colors(img, spec["num_colors"], spec["quant_step"], seed)) for img in batch])
        return LatentStrings(strings, names=["color"])


EXTRACTORS.register("color")(ColorExtractor())

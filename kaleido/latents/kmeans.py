"""Unsupervised mode tokens for vector data: k-means within each class; token = cluster rank (by centroid)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kaleido.errors import ConfigError
from kaleido.latents import EXTRACTORS, LatentCodes, LatentType


class KMeansPerClass(LatentType):
    """``spec``: ``clusters_per_class`` (int ≥ 1), optional ``n_init`` (int, default 10)."""

    kind = "vector"
    keys = {"clusters_per_class", "n_init"}

    def validate(self, spec: dict[str, Any], where: str) -> None:
        unknown = set(spec) - self.keys
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; accepted: {sorted(self.keys)}")
        for key in ("clusters_per_class", "n_init"):
            value = spec.get(key, 10)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}.{key}: {value!r} is not a positive integer")

    def extract(self, x: np.ndarray, labels: np.ndarray, spec: dict[str, Any], seed: int) -> LatentCodes:
        """x (n, d) float, labels (n,) -> tokens (n, 1): the item's cluster within its class.

        Clusters are ranked by centroid (lexicographic), so token ids do not depend on k-means' init order.
        """
        from sklearn.cluster import KMeans  # heavy import, only where used

        k = int(spec["clusters_per_class"])
        tokens = np.empty((len(x), 1), dtype=np.int64)
        flat = x.reshape(len(x), -1).astype(np.float64)
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            if len(members) < k:
                raise ConfigError(f"class {c} has {len(members)} items, fewer than clusters_per_class={k}")
            km = KMeans(n_clusters=k, n_init=int(spec.get("n_init", 10)), random_state=seed % 2**31)
            assignment = km.fit_predict(flat[members])
            rank = np.empty(k, dtype=np.int64)
            rank[np.lexsort(km.cluster_centers_.T[::-1])] = np.arange(k)
            tokens[members, 0] = rank[assignment]
        return LatentCodes(tokens=tokens, vocab_size=k)


EXTRACTORS.register("kmeans")(KMeansPerClass())

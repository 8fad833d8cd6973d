"""Feature extraction over item files: one registered network, its options, and what to record beside its output.

Both ``python -m metrics extract`` and the harness's feature stage (:mod:`kaleido.features`) call
:func:`extract_files`; they differ only in the provenance they write next to the arrays.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metrics.features import FEATURE_NETS
from metrics.store import load_data
from metrics.weights import file_sha256


def configured_net(name: str, *, weights: str | None = None, batch_size: int | None = None,
                   device: str | None = "cpu", precision: str | None = None, weights_sha256: str | None = None,
                   allow_unverified: bool | None = None) -> object:
    """The registered feature network ``name`` with its image options applied (vector networks take none);
    ``weights_sha256`` / ``allow_unverified``: see :class:`metrics.features.ImageFeatureNet`."""
    net = FEATURE_NETS.get(name)
    if hasattr(net, "with_options"):
        net = net.with_options(weights=weights, batch_size=batch_size, device=device, precision=precision,
                               weights_sha256=weights_sha256, allow_unverified=allow_unverified)
    return net


def net_outputs(net: object, items: np.ndarray) -> dict[str, np.ndarray]:
    """{"features": (n, d), ...extra outputs such as "logits"} of one network on one item array."""
    return net.outputs(items) if hasattr(net, "outputs") else {"features": net(items)}


def net_settings(name: str, net: object) -> dict[str, object]:
    """What to record next to features: the network, its weights (the SHA-256 of the file given, and the check of
    every registered file it loaded: :func:`metrics.weights.check_file`) and its preprocessing."""
    settings: dict[str, object] = {"feature_net": name}
    if hasattr(net, "module"):
        module = net.implementation()
        settings.update(feature_variant=net.variant, feature_weights=net.weights, feature_precision=net.precision,
                        preprocessing=module.PREPROCESSING, feature_weights_checks=net.weight_checks())
        if net.weights is not None and Path(net.weights).is_file():
            settings["feature_weights_sha256"] = file_sha256(net.weights)  # hashed once with the checks above
    return settings


def extract_files(name: str, inputs: Sequence[str | os.PathLike[str]], *, weights: str | None = None,
                  batch_size: int | None = None, device: str | None = "cpu", precision: str | None = None,
                  weights_sha256: str | None = None, allow_unverified: bool | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Features (and labels) of the items in every input ``.npz``, concatenated in the given order (network options:
    :func:`configured_net`).

    Returns:
        ``(arrays, settings)``: ``features`` float32 (n, d), ``labels`` (n,), and extra network outputs
        (Inception and domain-CNN ``logits`` (n, classes)); the settings to record (:func:`net_settings` plus
        ``inputs``).
    """
    net = configured_net(name, weights=weights, batch_size=batch_size, device=device or "cpu", precision=precision,
                         weights_sha256=weights_sha256, allow_unverified=allow_unverified)
    outputs: dict[str, list[np.ndarray]] = {}
    labels = []
    for path in inputs:
        data = load_data(path, required=(net.input_key, "labels"))
        for key, value in net_outputs(net, data[net.input_key]).items():
            outputs.setdefault(key, []).append(value)
        labels.append(data["labels"])
    arrays = {"labels": np.concatenate(labels), **{key: np.concatenate(parts) for key, parts in outputs.items()}}
    return arrays, {**net_settings(name, net), "inputs": [str(p) for p in inputs]}

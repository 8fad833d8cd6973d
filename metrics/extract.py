"""Feature extraction over item files: one registered network, its options, and what to record beside its output.

Both ``python -m metrics extract`` and the harness's feature stage (:mod:`kaleido.features`) call
:func:`write_features`; they differ only in the provenance they write next to the arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from metrics.errors import InputError
from metrics.features import FEATURE_NETS
from metrics.store import ShardedArray, load_data, verify_data
from metrics.streamed_npz import streamed_npz
from metrics.weights import file_sha256


def configured_net(name: str, *, weights: str | None = None, batch_size: int | None = None,
                   device: str | None = "cpu", precision: str | None = None, weights_sha256: str | None = None,
                   allow_unverified: bool | None = None, compile: bool | None = None) -> object:
    """The registered feature network ``name`` with its image options applied (vector networks take none);
    ``weights_sha256`` / ``allow_unverified`` / ``compile``: see :class:`metrics.features.ImageFeatureNet`."""
    net = FEATURE_NETS.get(name)
    if hasattr(net, "with_options"):
        net = net.with_options(weights=weights, batch_size=batch_size, device=device, precision=precision,
                               weights_sha256=weights_sha256, allow_unverified=allow_unverified, compile=compile)
    return net


#: sets of at least this many items are extracted with the compiled forward under ``compile="auto"`` on CUDA.
#: Measured through this stage's own path on a set in data-stage shards (benchmarks/logs/
#: feature_compile_h100_pinned_feed.log, one H100, 50K images of 256 px): 4.1K img/s eager, 7.2K compiled, 28 s of
#: compilation with an empty Inductor cache (6.5 s with a warm one): compiling pays from ~270K images cold (~64K
#: warm), so for a training-set reference, not a 50K sample shard.
COMPILE_MIN_ITEMS = 300_000
COMPILE_CHOICES = ("auto", True, False)


def resolve_compile(compile: bool | str, device: str, items: int) -> bool:
    """Whether to compile the feature network's forward: ``compile`` as given, or for "auto", on CUDA for sets of at
    least :data:`COMPILE_MIN_ITEMS` items."""
    if compile not in COMPILE_CHOICES:
        raise InputError(f"compile={compile!r}; expected one of {list(COMPILE_CHOICES)}")
    if compile == "auto":
        return str(device).startswith("cuda") and items >= COMPILE_MIN_ITEMS
    return bool(compile)


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
                        feature_compile=net.compile,
                        preprocessing=module.PREPROCESSING, feature_weights_checks=net.weight_checks())
        if net.weights is not None and Path(net.weights).is_file():
            settings["feature_weights_sha256"] = file_sha256(net.weights)  # hashed once with the checks above
    return settings


#: items per extraction chunk (rounded down to a multiple of the network's batch size): the outputs of one chunk
#: are what a feature job holds, whatever the set's size (1.28M x (2048 + 1008) Inception outputs are 15.6 GB)
CHUNK_ITEMS = 32768


def write_features(out: str | os.PathLike[str], name: str, inputs: Sequence[str | os.PathLike[str]],
                   meta: Callable[[dict[str, object]], Mapping[str, object]], *, weights: str | None = None,
                   batch_size: int | None = None, device: str | None = "cpu", precision: str | None = None,
                   weights_sha256: str | None = None, allow_unverified: bool | None = None,
                   compile: bool | str = False, chunk_items: int = CHUNK_ITEMS) -> None:
    """Features (and labels) of the items in every input ``.npz``, concatenated in the given order, written to
    ``out`` (network options: :func:`configured_net`).

    ``out`` holds ``labels`` (n,), ``features`` float32 (n, d) and extra network outputs (Inception and domain-CNN
    ``logits`` (n, classes)), and ``meta(settings)`` (settings: :func:`net_settings` plus ``inputs``). The items
    are read and extracted ``chunk_items`` at a time (whole batches) and each chunk's outputs written into their place
    in ``out``'s archive (:func:`metrics.streamed_npz.streamed_npz`) and flushed to disk by a thread while the next
    chunk is extracted: memory O(chunk), not O(n), every byte written once, and what is left to write after the last
    chunk is that chunk; the values are those of one pass over all items (the batches
    are the same). The input shards' recorded SHA-256 are checked by another thread during the extraction; a
    mismatch raises :class:`InputError` and nothing is written. ``compile``: True, False or "auto"
    (:func:`resolve_compile`).
    """
    net = configured_net(name, weights=weights, batch_size=batch_size, device=device or "cpu", precision=precision,
                         weights_sha256=weights_sha256, allow_unverified=allow_unverified)
    # indexes (every shard present, whole, of its count); items on demand. The shards' SHA-256 are checked beside the
    # extraction, which they would otherwise hold up (~1.6 s per 50K images of 256 px), and before anything is written.
    sets = [load_data(path, required=(net.input_key, "labels"), verify=False) for path in inputs]
    total = sum(len(data[net.input_key]) for data in sets)
    if hasattr(net, "with_options"):
        net = net.with_options(compile=resolve_compile(compile, device or "cpu", total))
    if total == 0:
        raise InputError(f"no items to extract features of in {[str(p) for p in inputs]}")
    per_batch = getattr(net, "batch_size", None) or 1
    chunk = max(per_batch, chunk_items // per_batch * per_batch)

    with streamed_npz(out, total) as archive, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-shards") as checker, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-features") as writer:
        verified = checker.submit(lambda: [verify_data(path) for path in inputs])

        def write_chunk(outputs: Mapping[str, np.ndarray]) -> None:
            archive.append(outputs)
            archive.sync()  # on disk while the next chunk is extracted: the final fsync is left with the last one

        written: Future[None] | None = None  # one chunk's outputs go to disk while the next one is extracted
        for data in sets:
            items = data[net.input_key]
            for start in range(0, len(items), chunk):
                stop = min(start + chunk, len(items))  # a sharded set's chunk stays on disk, read batch by batch
                part = items.rows(start, stop) if isinstance(items, ShardedArray) else items[start:stop]
                outputs = net_outputs(net, part)
                if written is not None:
                    written.result()
                written = writer.submit(write_chunk, outputs)
        if written is not None:
            written.result()
        verified.result()
        settings = {**net_settings(name, net), "inputs": [str(p) for p in inputs]}
        archive.put("labels", np.concatenate([data["labels"] for data in sets]))
        archive.put("meta", meta(settings))

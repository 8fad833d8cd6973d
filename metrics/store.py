"""The item-set file format: one ``.npz``, with the images optionally split into checksummed shard files.

The harness's data stage writes it (:func:`save_data`); the metrics CLI and every harness stage read it
(:func:`load_data`), so it lives in this leaf module that both can import.

Small sets keep every array in ``train.npz``. With ``data.shard_size`` the images ``x`` go to
``<stem>.x-00000-of-00012.npy`` files beside it (plain ``.npy``: memory-mappable, readable in parallel) and
``train.npz`` holds the other arrays plus the shard index: ``x_shards`` (file names), ``x_sha256`` (hex digests),
``x_counts`` (images per shard), ``x_shape`` (H, W, 3). Shards are written first and the index last, each
atomically, so an interrupted stage leaves no index a later stage would trust. Readers go through
:func:`load_data`, which checks every shard's SHA-256 and names the damaged one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from metrics.errors import InputError
from metrics.io import atomic_path, load_npz, save_npz_atomic

_HASH_CHUNK = 1 << 24


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def shard_names(path: Path, count: int) -> list[str]:
    return [f"{path.stem}.x-{k:05d}-of-{count:05d}.npy" for k in range(count)]


def save_data(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
              shard_size: int | None = None) -> None:
    """Write a data set: everything in ``path`` or, with ``shard_size``, ``x`` in shards of that many items."""
    path = Path(path)
    if not shard_size or len(arrays["x"]) <= shard_size:
        save_npz_atomic(path, meta=meta, **arrays)
        return
    x = arrays["x"]
    count = -(-len(x) // shard_size)
    names, digests, counts = shard_names(path, count), [], []
    for k, name in enumerate(names):
        part = np.ascontiguousarray(x[k * shard_size:(k + 1) * shard_size])
        with atomic_path(path.parent / name, suffix=".npy") as tmp:
            np.save(tmp, part)
        digests.append(sha256_file(path.parent / name))
        counts.append(len(part))
    rest = {key: value for key, value in arrays.items() if key != "x"}
    save_npz_atomic(path, meta=meta, x_shards=np.array(names), x_sha256=np.array(digests),
                    x_counts=np.array(counts, dtype=np.int64), x_shape=np.array(x.shape[1:], dtype=np.int64),
                    x_dtype=np.array(str(x.dtype)), **rest)


def load_data(path: str | os.PathLike[str], required: tuple[str, ...] = ("x", "labels"),
              verify: bool = True) -> dict[str, Any]:
    """A data stage output as a dict of arrays (``x`` assembled from its shards when sharded).

    Raises :class:`InputError` naming the file when the index or a shard is missing, truncated or corrupted
    (SHA-256 mismatch), or when a ``required`` array is absent.
    """
    path = Path(path)
    data = load_npz(path, required=tuple(k for k in required if k != "x"))
    if "x_shards" not in data:
        if "x" in required and "x" not in data:
            raise InputError(f"{path}: missing arrays ['x']; found {sorted(data)}")
        return data
    parts = []
    for name, digest, count in zip(data.pop("x_shards"), data.pop("x_sha256"), data.pop("x_counts"), strict=True):
        shard = path.parent / str(name)
        if not shard.exists():
            raise InputError(f"{shard}: shard listed in {path} is missing; delete {path} and rerun the data step")
        if verify and sha256_file(shard) != str(digest):
            raise InputError(f"{shard}: checksum mismatch (corrupted or truncated shard of {path}); delete both and "
                             "rerun the data step")
        try:
            part = np.load(shard, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise InputError(f"{shard}: unreadable shard ({err}); delete it and {path}, and rerun the data step") \
                from None
        if len(part) != int(count):
            raise InputError(f"{shard}: {len(part)} items, the index {path} says {int(count)}")
        parts.append(part)
    shape, dtype = tuple(int(v) for v in data.pop("x_shape")), str(data.pop("x_dtype"))
    data["x"] = np.concatenate(parts) if parts else np.zeros((0, *shape), dtype=dtype)
    return data

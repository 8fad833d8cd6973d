"""The item-set file format: one ``.npz``, with the images optionally split into checksummed shard files.

The harness's data stage writes it (:func:`save_data`); the metrics CLI and every harness stage read it
(:func:`load_data`), so it lives in this leaf module that both can import.

Small sets keep every array in ``train.npz``. With ``data.shard_size`` the images ``x`` go to
``<stem>.x-00000-of-00012.npy`` files beside it and ``train.npz`` holds the other arrays plus the shard index:
``x_shards`` (file names), ``x_sha256`` (hex digests), ``x_counts`` (images per shard), ``x_shape`` (H, W, 3),
``x_dtype``. Shards are written first and the index last, each atomically, so an interrupted stage leaves no index
a later stage would trust, and a rerun keeps the shards it already wrote (:func:`save_data`).

Text columns (``captions``; a captioned set's ~10M captions would be ~12 GB as a numpy unicode array) are held
as UTF-8 bytes plus offsets, members ``<key>_utf8`` (total bytes,) uint8 and ``<key>_offsets`` (n + 1,) int64 of
the index, and read in place by :class:`TextColumn` (the strings of a batch, never the whole column).

Why plain ``.npy`` shards and not tar/webdataset: training draws a seeded permutation of the whole set per epoch
and must resume mid-epoch to bit-identical weights, which needs random access by item index; an ``.npy`` shard
of fixed-size items gives that with one positional read per run of consecutive items, from any number of loader
processes, with no extra dependency. :class:`ShardedArray` reads them that way (``os.pread``, no memory map:
pages read for one batch do not stay in the reader's resident set), so a stage's memory is bounded by its batch,
not by the set.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from metrics.errors import InputError
from metrics.io import atomic_path, load_npz, read_npy_header, save_npz_atomic, write_text_atomic

_HASH_CHUNK = 1 << 20  # per hashing thread: load_data hashes shards in parallel


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest, buffer = hashlib.sha256(), bytearray(_HASH_CHUNK)  # one buffer, read into: no allocation per chunk
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while got := handle.readinto(buffer):
            digest.update(view[:got])
    return digest.hexdigest()


def shard_names(path: Path, count: int) -> list[str]:
    return [f"{path.stem}.x-{k:05d}-of-{count:05d}.npy" for k in range(count)]


def _npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, byte offset of the data) of a C-ordered ``.npy`` file, from its header alone."""
    with open(path, "rb") as handle:
        shape, dtype = read_npy_header(handle)
        return shape, dtype, handle.tell()


def row_index(key: Any, n: int, kind: str, noun: str) -> int | np.ndarray:
    """A row key of an on-disk column of ``n`` rows (``kind`` names it in errors, ``noun`` its rows) as a
    non-negative int (for an int key) or a 1-D int64 index array (a step-1 slice, a boolean mask or an integer
    array); negative positions count from the end. IndexError for anything else or out of range."""
    if isinstance(key, (int, np.integer)):
        if not -n <= key < n:
            raise IndexError(f"index {key} out of range for {n} {noun}")
        return int(key) % n
    if isinstance(key, slice):
        start, stop, step = key.indices(n)
        if step != 1:
            raise IndexError(f"{kind} slices must have step 1")
        return np.arange(start, max(start, stop), dtype=np.int64)
    index = np.asarray(key)
    if index.dtype == bool:
        index = np.flatnonzero(index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise IndexError(f"{kind} takes an int, a slice or a 1-D integer array; got {key!r:.80}")
    if len(index) and (index.min() < -n or index.max() >= n):
        raise IndexError(f"index out of range for {n} {noun}")
    return (index % n).astype(np.int64) if len(index) else index.astype(np.int64)


class ShardedArray:
    """A read-only (n, *item_shape) array held in ``.npy`` shard files and read on demand.

    Supports what the stages do with an item array: ``len``, ``shape``, ``dtype``, ``ndim``, and indexing with an
    int, a slice (step 1) or a 1-D integer array (gather, in the given order), each returning a numpy array;
    ``np.asarray`` reads everything. Items are read with ``os.pread`` (one read per run of consecutive items);
    file descriptors are opened lazily per process, so an instance can be pickled into data-loader workers.
    """

    reads_on_demand = True  # metrics.features.check_images: check shape/dtype, do not load

    def __init__(self, files: Sequence[Path], counts: Sequence[int], item_shape: tuple[int, ...], dtype: np.dtype,
                 offsets: Sequence[int]) -> None:
        self.files, self.item_shape, self.dtype = [Path(f) for f in files], tuple(item_shape), np.dtype(dtype)
        self.offsets = [int(o) for o in offsets]
        self.starts = np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])
        self.item_bytes = int(np.prod(self.item_shape, dtype=np.int64)) * self.dtype.itemsize
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.starts[-1]), *self.item_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.item_shape)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def shard(self, k: int) -> ShardedArray:
        """Shard ``k``'s items (global rows ``starts[k] .. starts[k + 1] - 1``) as an array of their own, read on
        demand like this one."""
        return ShardedArray([self.files[k]], [int(self.starts[k + 1] - self.starts[k])], self.item_shape, self.dtype,
                            [self.offsets[k]])

    def rows(self, start: int, stop: int) -> ShardedArray:
        """Rows start .. stop - 1 (0 <= start < stop <= n) as an array of their own, read on demand like this one."""
        first = int(np.searchsorted(self.starts, start, side="right") - 1)
        last = int(np.searchsorted(self.starts, stop - 1, side="right") - 1)
        counts = [int(self.starts[k + 1] - self.starts[k]) for k in range(first, last + 1)]
        offsets = self.offsets[first:last + 1]
        skip = start - int(self.starts[first])
        counts[0] -= skip
        offsets[0] += skip * self.item_bytes
        counts[-1] -= int(self.starts[last + 1]) - stop
        return ShardedArray(self.files[first:last + 1], counts, self.item_shape, self.dtype, offsets)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fds": {}}

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked: descriptors are shared with the parent's offsets; open our own
            self._fds, self._pid = {}, os.getpid()
        if shard not in self._fds:
            self._fds[shard] = os.open(self.files[shard], os.O_RDONLY)
        return self._fds[shard]

    def _read_run(self, first: int, count: int, out: np.ndarray) -> None:
        """Items first .. first+count-1 (global indices, all in one shard) into ``out`` (count, ...)."""
        shard = int(np.searchsorted(self.starts, first, side="right") - 1)
        where = self.offsets[shard] + (first - int(self.starts[shard])) * self.item_bytes
        view, size, done = memoryview(out.reshape(-1).view(np.uint8)), count * self.item_bytes, 0
        while done < size:
            got = os.preadv(self._fd(shard), [view[done:]], where + done)
            if got == 0:
                raise InputError(f"{self.files[shard]}: truncated shard (ends before item {first + count - 1}); "
                                 "delete it and its index, and rerun the data step")
            done += got

    def read_into(self, start: int, out: np.ndarray) -> np.ndarray:
        """Rows ``start .. start + len(out) - 1`` read straight into ``out`` (a C-contiguous (m, *item_shape) array of
        this dtype, e.g. a view of a page-locked buffer): one read per shard touched, no temporary. Returns ``out``."""
        if out.shape[1:] != self.item_shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out: {out.dtype} {out.shape} (C-contiguous: {out.flags.c_contiguous}); expected a "
                             f"C-contiguous {self.dtype} (m, {', '.join(map(str, self.item_shape))}) array")
        if not 0 <= start <= start + len(out) <= len(self):
            raise IndexError(f"rows {start}..{start + len(out) - 1} out of range: the array has {len(self)} items")
        return self._gather(np.arange(start, start + len(out)), out)

    def _gather(self, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty((len(index), *self.item_shape), dtype=self.dtype)
        if not len(index):
            return out
        ascending = bool(np.all(np.diff(index) >= 0))  # a slice, a sorted batch: read straight into place
        order = None if ascending else np.argsort(index, kind="stable")
        sorted_index = index if order is None else index[order]
        shard_of = np.searchsorted(self.starts, sorted_index, side="right") - 1
        # runs of consecutive items within one shard: one read each, then scattered to their places
        breaks = np.flatnonzero((np.diff(sorted_index) != 1) | (np.diff(shard_of) != 0)) + 1
        buffer = out if order is None else np.empty_like(out)
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(index)], strict=True):
            self._read_run(int(sorted_index[lo]), int(hi - lo), buffer[lo:hi])
        if order is not None:
            out[order] = buffer
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        index = row_index(key, len(self), "ShardedArray", "items")
        return self._gather(np.array([index]))[0] if isinstance(index, int) else self._gather(index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out.astype(dtype) if dtype is not None else out

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass


def npy_rows(path: str | os.PathLike[str]) -> ShardedArray:
    """A C-ordered ``.npy`` file as a :class:`ShardedArray` (one shard): read on demand with ``os.pread``, so, unlike
    a ``numpy.memmap``, the rows read do not stay in the reader's resident memory. ValueError/OSError when the file
    is not a whole C-ordered ``.npy`` of at least one dimension."""
    path = Path(path)
    shape, dtype, offset = _npy_layout(path)
    if not shape or path.stat().st_size < offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise ValueError(f"{path}: a 0-d or truncated .npy (header says {shape} {dtype}); expected rows")
    return ShardedArray([path], [shape[0]], shape[1:], dtype, [offset])


def npz_member_rows(path: str | os.PathLike[str], key: str) -> ShardedArray:
    """Array ``key`` of an uncompressed ``.npz`` (``numpy.savez``, :func:`metrics.io.save_npz_atomic`: every stage's
    feature files) as a :class:`ShardedArray` over the bytes inside the archive: read on demand, never loaded whole
    (a 1.28M x 2048 reference feature array is 10 GB).

    The member's data start is found from its local zip header and its ``.npy`` header. The zip CRC is not checked
    (the member is never read in one piece); :func:`metrics.io.verify_zip` checks it when wanted. Raises
    :class:`InputError` naming the file when the array is missing, compressed (``numpy.savez_compressed``),
    Fortran-ordered or truncated; FileNotFoundError when the file is.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{key}.npy")
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)  # the local file header: signature ... name length, extra length
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise ValueError("bad local zip header")
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            data_start = info.header_offset + 30 + name_length + extra_length
            if info.compress_type != zipfile.ZIP_STORED:
                raise InputError(f"{path}: array {key!r} is compressed; read it with load_npz, or write the file "
                                 "with numpy.savez (save_npz_atomic) to read it in place")
            handle.seek(data_start)
            shape, dtype = read_npy_header(handle)
            offset = handle.tell()
    except InputError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except KeyError:
        raise InputError(f"{path}: missing array {key!r}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error) as err:
        raise InputError(f"{path}: unreadable {key!r} ({type(err).__name__}: {err}); delete it and rerun the step "
                         "that makes it") from None
    if not shape:
        raise InputError(f"{path}: {key!r} is a 0-d array; expected rows")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset - data_start + size != info.file_size or offset + size > path.stat().st_size:
        raise InputError(f"{path}: {key!r} is truncated (its header says {shape} {dtype}); delete it and rerun the "
                         "step that makes it")
    return ShardedArray([path], [shape[0]], shape[1:], dtype, [offset])


#: the item arrays a data index stores as text columns (:class:`TextColumn`)
TEXT_COLUMNS = ("captions",)


def encode_text_column(strings: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n strings -> (UTF-8 bytes (total,) uint8, offsets (n + 1,) int64): string i is bytes[offsets[i]:offsets[i+1]]."""
    encoded = [str(text).encode("utf-8") for text in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


class TextColumn:
    """n strings of a data index (members ``<key>_utf8`` / ``<key>_offsets``, :func:`encode_text_column`), read in
    place on demand: ``column[i]`` is a str; a slice or a 1-D integer array gives a numpy unicode array (n_rows,).
    Memory O(the rows read), whatever n; picklable into data-loader workers (files are opened per process)."""

    reads_on_demand = True

    def __init__(self, path: str | os.PathLike[str], key: str) -> None:
        self.path, self.key = Path(path), key
        self._offsets = npz_member_rows(self.path, f"{key}_offsets")
        self._bytes = npz_member_rows(self.path, f"{key}_utf8")
        if self._offsets.dtype != np.int64 or self._bytes.dtype != np.uint8 or len(self._offsets) < 1:
            raise InputError(f"{self.path}: text column {key!r} is not uint8 bytes + int64 offsets")
        self.n = len(self._offsets) - 1

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def ndim(self) -> int:
        return 1

    def __len__(self) -> int:
        return self.n

    def _text(self, start: int, end: int) -> str:
        """String of bytes start .. end - 1: one positional read (the bytes member is one run in one file)."""
        if end <= start:
            return ""
        raw = os.pread(self._bytes._fd(0), end - start, self._bytes.offsets[0] + start)
        if len(raw) != end - start:
            raise InputError(f"{self.path}: text column {self.key!r} is truncated; rerun the data step")
        return raw.decode("utf-8")

    def __getitem__(self, key: Any) -> str | np.ndarray:
        index = row_index(key, self.n, "TextColumn", "strings")
        if isinstance(index, int):
            start, end = (int(v) for v in self._offsets[index:index + 2])
            return self._text(start, end)
        bounds = self._offsets[np.concatenate([index, index + 1])]  # one gather for both ends
        starts, ends = bounds[:len(index)], bounds[len(index):]
        return np.array([self._text(int(a), int(b)) for a, b in zip(starts, ends, strict=True)], dtype=str)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


def _as_stored(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """The index members of the non-``x`` arrays: each :data:`TEXT_COLUMNS` entry as its two text-column members."""
    out: dict[str, Any] = {}
    for key, value in arrays.items():
        if key in TEXT_COLUMNS:
            out[f"{key}_utf8"], out[f"{key}_offsets"] = encode_text_column(value)
        elif key != "x":
            out[key] = value
    return out


def _progress_path(path: Path) -> Path:
    return path.parent / f"{path.stem}.x-progress.json"


def save_data(path: str | os.PathLike[str], arrays: Mapping[str, Any], meta: Mapping[str, Any],
              shard_size: int | None = None) -> None:
    """Write a data set: everything in ``path`` or, with ``shard_size``, ``x`` in shards of that many items.

    ``arrays["x"]`` may be any sliceable array-like (e.g. images decoded on demand): it is read one shard at a time,
    so writing holds one shard in memory. Rerunning after a kill keeps the shards the killed run completed when
    ``meta`` is the same (a progress file beside the index records whose shards they are) and writes the rest.
    """
    path = Path(path)
    x = arrays["x"]
    if not shard_size or len(x) <= shard_size:
        save_npz_atomic(path, meta=meta, x=np.asarray(x), **_as_stored(arrays))
        return
    count = -(-len(x) // shard_size)
    names = shard_names(path, count)
    progress = _progress_path(path)
    key = json.dumps({"meta": meta, "n": len(x), "shard_size": shard_size}, sort_keys=True, default=str)
    kept = progress.is_file() and progress.read_text(encoding="utf-8") == key
    if not kept:
        write_text_atomic(progress, key)
    digests, counts = [], []
    for k, name in enumerate(names):
        shard, size = path.parent / name, min(shard_size, len(x) - k * shard_size)
        if not (kept and _complete(shard, (size, *x.shape[1:]), x.dtype)):
            part = np.ascontiguousarray(x[k * shard_size:k * shard_size + size])
            with atomic_path(shard, suffix=".npy") as tmp:
                np.save(tmp, part)
            del part
        digests.append(sha256_file(shard))
        counts.append(size)
    rest = _as_stored(arrays)
    save_npz_atomic(path, meta=meta, x_shards=np.array(names), x_sha256=np.array(digests),
                    x_counts=np.array(counts, dtype=np.int64), x_shape=np.array(x.shape[1:], dtype=np.int64),
                    x_dtype=np.array(str(np.dtype(x.dtype))), **rest)
    progress.unlink(missing_ok=True)


def _complete(shard: Path, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether ``shard`` is a whole ``.npy`` of ``shape``/``dtype`` (written by an earlier, killed run)."""
    try:
        found, found_dtype, offset = _npy_layout(shard)
    except (OSError, ValueError):
        return False
    item_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return found == tuple(shape) and found_dtype == np.dtype(dtype) and shard.stat().st_size == offset + item_bytes


def _check_shard(path: Path, shard: Path, count: int) -> int:
    """The data offset of ``shard`` after checking it is present, whole and of ``count`` items (its SHA-256:
    :func:`_verify_shards`); InputError naming the shard otherwise."""
    if not shard.exists():
        raise InputError(f"{shard}: shard listed in {path} is missing; delete {path} and rerun the data step")
    try:
        shape, dtype, offset = _npy_layout(shard)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{shard}: unreadable shard ({err}); delete it and {path}, and rerun the data step") from None
    if shape[0] != count:
        raise InputError(f"{shard}: {shape[0]} items, the index {path} says {count}")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if shard.stat().st_size != expected:
        raise _mismatch(path, shard)
    return offset


def _mismatch(path: Path, shard: Path) -> InputError:
    return InputError(f"{shard}: checksum mismatch (corrupted or truncated shard of {path}); delete both and rerun "
                      "the data step")


def _verify_shards(path: Path, files: Sequence[Path], digests: Sequence[str], workers: int) -> None:
    """Hash ``files`` with ``workers`` threads against ``digests``; InputError naming the first corrupted shard."""
    def check(shard: Path, digest: str) -> None:
        if sha256_file(shard) != digest:
            raise _mismatch(path, shard)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(files)))) as pool:  # hashlib releases the GIL
        list(pool.map(check, files, digests))


def _members(path: Path) -> list[str]:
    """The array names of the ``.npz`` at ``path``; [] when it cannot be listed (load_npz then names the fault)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [name.removesuffix(".npy") for name in archive.namelist()]
    except (OSError, zipfile.BadZipFile):
        return []


def load_data(path: str | os.PathLike[str], required: tuple[str, ...] = ("x", "labels"),
              verify: bool = True, workers: int = 8) -> dict[str, Any]:
    """A data stage output as a dict of arrays; a sharded ``x`` is a :class:`ShardedArray` and a text column
    (``captions``) a :class:`TextColumn`, both read on demand.

    Every shard is checked before anything is returned (present, whole, the recorded item count and, with
    ``verify``, the recorded SHA-256, hashed by ``workers`` threads). Raises :class:`InputError` naming the file
    when the index or a shard is missing, truncated or corrupted, or when a ``required`` array is absent.
    """
    path = Path(path)
    members = _members(path)
    texts = [key for key in TEXT_COLUMNS if f"{key}_utf8" in members and f"{key}_offsets" in members]
    stored = {f"{key}_{part}" for key in texts for part in ("utf8", "offsets")}
    data = load_npz(path, required=tuple(k for k in required if k != "x" and k not in texts),
                    keys=tuple(m for m in members if m not in stored) if texts else None)
    data.update({key: TextColumn(path, key) for key in texts})  # read in place, never loaded whole
    if "x_shards" not in data:
        if "x" in required and "x" not in data:
            raise InputError(f"{path}: missing arrays ['x']; found {sorted(data)}")
        return data
    names, digests = [str(n) for n in data.pop("x_shards")], [str(d) for d in data.pop("x_sha256")]
    counts = [int(c) for c in data.pop("x_counts")]
    shape, dtype = tuple(int(v) for v in data.pop("x_shape")), np.dtype(str(data.pop("x_dtype")))
    files = [path.parent / name for name in names]
    offsets = [_check_shard(path, file, count) for file, count in zip(files, counts, strict=True)]
    if verify:
        _verify_shards(path, files, digests, workers)
    data["x"] = ShardedArray(files, counts, shape, dtype, offsets)
    return data


def verify_data(path: str | os.PathLike[str], workers: int = 8) -> None:
    """Hash every shard of the data stage output ``path`` (``workers`` threads) against the SHA-256 its index
    records; :class:`InputError` naming the first corrupted shard. Nothing to do for an unsharded file (its members
    carry their own CRCs). :func:`load_data` with ``verify=False`` plus this, run beside the work that reads the
    items, is the check of ``load_data(verify=True)`` without its wait (:func:`metrics.extract.write_features`)."""
    path = Path(path)
    index = load_npz(path, keys=("x_shards", "x_sha256"))
    if "x_shards" not in index:
        return
    _verify_shards(path, [path.parent / str(name) for name in index["x_shards"]], [str(d) for d in index["x_sha256"]],
                   workers)

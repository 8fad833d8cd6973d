"""An uncompressed ``.npz`` written row chunk by row chunk straight into its final place in the file.

A feature stage's outputs can be larger than memory (ImageNet's 1.28M Inception features and logits are 15.6 GB),
so they are written as they come. Writing them to ``.npy`` part files and copying those into the archive at the end
wrote every byte twice and held the stage for the copy after the last batch (200K Inception outputs, 2.28 GiB, on
the development machine's disk: 4.9 s after the last chunk, against 1.0 s for this writer;
``benchmarks/npz_write.py``, ``benchmarks/logs/npz_write_cpu_2core.log``). Here every member's place in the
archive is laid out when the first chunk arrives (its row count is known, its item shape and dtype come with that
chunk) and each chunk is written at its offset with ``os.pwrite``, its CRC-32 updated on the way; the zip headers,
which carry the CRCs, go in at the end. The file is a ZIP64 archive of stored (uncompressed) members, as
``numpy.savez`` writes: ``numpy.load``, :func:`metrics.io.load_npz`, :func:`metrics.io.verify_zip` and
:func:`metrics.store.npz_member_rows` read it.
Format: PKWARE's APPNOTE.TXT 6.3, sections 4.3.7 (local header), 4.3.12 (central directory), 4.3.14-16 (ZIP64 end
records), 4.5.3 (ZIP64 extra field).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metrics.io import atomic_path, meta_array

#: version needed to extract (and made by): 4.5, ZIP64
_VERSION = 45
#: DOS date of 1980-01-01, time 00:00 (what ``numpy.savez`` writes through ``zipfile``'s default ``ZipInfo``)
_DOS_DATE, _DOS_TIME = (1 << 5) | 1, 0
#: a 32-bit size or offset field whose value is in the ZIP64 extra field
_IN_ZIP64 = 0xFFFFFFFF
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_LOCAL_EXTRA = struct.Struct("<HHQQ")  # tag 1, size 16: uncompressed, compressed size
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_CENTRAL_EXTRA = struct.Struct("<HHQQQ")  # tag 1, size 24: uncompressed, compressed size, local header offset
_END64 = struct.Struct("<IQHHIIQQQQ")
_END64_LOCATOR = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")


@dataclass
class _Member:
    """One ``<name>.npy`` member: where its local header starts, its size (npy header + data) and CRC so far."""

    name: bytes
    offset: int
    size: int
    crc: int = 0

    @property
    def data_start(self) -> int:
        return self.offset + _LOCAL.size + len(self.name) + _LOCAL_EXTRA.size


@dataclass
class _Rows:
    """A member written by rows: its item shape, dtype, where its next row goes and how many came."""

    member: _Member
    item_shape: tuple[int, ...]
    dtype: np.dtype
    next_offset: int
    written: int = 0


class NpzRowWriter:
    """Members of an ``.npz`` under construction; made by :func:`streamed_npz`.

    :meth:`append` takes ``{name: (k, ...) array}``, the next ``k`` rows of each row member (the first call fixes
    the row members, their item shapes and dtypes); :meth:`put` takes a small array held until the end (labels, the
    JSON ``meta``). Not thread-safe: one thread appends."""

    def __init__(self, handle: io.BufferedRandom, rows: int) -> None:
        self._fd = handle.fileno()
        self.rows = int(rows)
        self._row_members: dict[str, _Rows] = {}
        self._small: dict[str, np.ndarray] = {}
        self._write_errors: list[OSError] = []

    def raised(self, error: BaseException) -> bool:
        """Whether ``error`` came from writing the archive (a full disk), not from the caller's own work."""
        return any(error is own for own in self._write_errors)

    def append(self, chunks: Mapping[str, np.ndarray]) -> None:
        if not self._row_members:
            if set(chunks) & set(self._small):
                raise ValueError(f"{sorted(set(chunks) & set(self._small))} put as small members already")
            self._lay_out(chunks)
        if set(chunks) != set(self._row_members):
            raise ValueError(f"chunk of members {sorted(chunks)} after chunks of {sorted(self._row_members)}")
        for name, chunk in chunks.items():
            rows = self._row_members[name]
            chunk = np.ascontiguousarray(chunk)
            if tuple(chunk.shape[1:]) != rows.item_shape or chunk.dtype != rows.dtype:
                raise ValueError(f"{name}: chunk of {chunk.shape[1:]} {chunk.dtype} after chunks of "
                                 f"{rows.item_shape} {rows.dtype}")
            if rows.written + len(chunk) > self.rows:
                raise ValueError(f"{name}: {rows.written + len(chunk)} rows for an array of {self.rows}")
            data = memoryview(chunk.reshape(-1).view(np.uint8))
            self._write(data, rows.next_offset)
            rows.member.crc = zlib.crc32(data, rows.member.crc)
            rows.next_offset += len(data)
            rows.written += len(chunk)

    def sync(self) -> None:
        """Put what has been written so far on disk (``fdatasync``): called by a writer thread after each chunk,
        it spreads the disk writes over the extraction, so the rename's final ``fsync`` has only the last chunk and
        the headers left to write instead of the whole file."""
        try:
            os.fdatasync(self._fd)
        except OSError as err:
            self._write_errors.append(err)
            raise

    def put(self, name: str, value: np.ndarray | Mapping[str, Any]) -> None:
        """A small member, written after the row members at the end; a mapping is stored as its JSON
        (:func:`metrics.io.meta_array`, the ``meta`` convention)."""
        if name in self._row_members:
            raise ValueError(f"{name!r} is a row member already; small members need names of their own")
        self._small[name] = meta_array(value) if isinstance(value, Mapping) else value

    def _lay_out(self, chunks: Mapping[str, np.ndarray]) -> None:
        """Place every row member's local header, ``.npy`` header and data, back to back from the file's start."""
        offset = 0
        for name, chunk in chunks.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_2_0(header, {
                "descr": np.lib.format.dtype_to_descr(chunk.dtype), "fortran_order": False,
                "shape": (self.rows, *chunk.shape[1:])})
            header = header.getvalue()
            data_size = self.rows * int(np.prod(chunk.shape[1:], dtype=np.int64)) * chunk.dtype.itemsize
            member = _Member(f"{name}.npy".encode(), offset, len(header) + data_size)
            self._write(memoryview(header), member.data_start)
            member.crc = zlib.crc32(header)
            self._row_members[name] = _Rows(member, tuple(chunk.shape[1:]), chunk.dtype,
                                            member.data_start + len(header))
            offset = member.data_start + member.size

    def close(self) -> None:
        """Check every row member is whole, then write the small members, the local headers and the central
        directory."""
        short = {name: rows.written for name, rows in self._row_members.items() if rows.written != self.rows}
        if short:
            raise ValueError(f"rows written {short} of {self.rows}")
        members = [rows.member for rows in self._row_members.values()]
        offset = members[-1].data_start + members[-1].size if members else 0
        for name, value in self._small.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(value), allow_pickle=False)
            data = buffer.getvalue()
            member = _Member(f"{name}.npy".encode(), offset, len(data), zlib.crc32(data))
            self._write(memoryview(data), member.data_start)
            members.append(member)
            offset = member.data_start + member.size
        for member in members:
            local = _LOCAL.pack(0x04034B50, _VERSION, 0, 0, _DOS_TIME, _DOS_DATE, member.crc, _IN_ZIP64, _IN_ZIP64,
                                len(member.name), _LOCAL_EXTRA.size)
            extra = _LOCAL_EXTRA.pack(1, 16, member.size, member.size)
            self._write(memoryview(local + member.name + extra), member.offset)
        central = b"".join(
            _CENTRAL.pack(0x02014B50, _VERSION | (3 << 8), _VERSION, 0, 0, _DOS_TIME, _DOS_DATE, member.crc,
                          _IN_ZIP64, _IN_ZIP64, len(member.name), _CENTRAL_EXTRA.size, 0, 0, 0, 0o100644 << 16,
                          _IN_ZIP64)
            + member.name + _CENTRAL_EXTRA.pack(1, 24, member.size, member.size, member.offset)
            for member in members)
        end64 = offset + len(central)
        count = len(members)
        tail = (_END64.pack(0x06064B50, _END64.size - 12, _VERSION | (3 << 8), _VERSION, 0, 0, count, count,
                            len(central), offset)
                + _END64_LOCATOR.pack(0x07064B50, 0, end64, 1)
                + _END.pack(0x06054B50, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), _IN_ZIP64, _IN_ZIP64, 0))
        self._write(memoryview(central + tail), offset)

    def _write(self, data: memoryview, offset: int) -> None:
        while data:  # pwrite may write less than asked (large buffers, signals)
            try:
                done = os.pwrite(self._fd, data, offset)
            except OSError as err:
                self._write_errors.append(err)
                raise
            data, offset = data[done:], offset + done


class _CallerError(Exception):
    """An error of the block around :func:`streamed_npz`, carried past :func:`metrics.io.atomic_path` (which reports
    an OSError in its block as a failure to write the output: a missing weight file is not one) and re-raised as
    it was."""


@contextlib.contextmanager
def streamed_npz(path: str | os.PathLike[str], rows: int) -> Iterator[NpzRowWriter]:
    """An :class:`NpzRowWriter` whose row members have ``rows`` rows each; the archive is completed and renamed onto
    ``path`` when the block ends (atomically, :func:`metrics.io.atomic_path`: on an error nothing is written and a
    previous ``path`` stays). An error of the block is raised as it is; one of writing the archive names ``path``.
    ValueError (nothing written) when a row member did not get exactly ``rows`` rows."""
    try:
        with atomic_path(Path(path), suffix=".npz") as tmp, open(tmp, "rb+") as handle:
            writer = NpzRowWriter(handle, rows)
            try:
                yield writer
            except Exception as err:
                if writer.raised(err):
                    raise
                raise _CallerError from err
            writer.close()
    except _CallerError as carried:
        error = carried.__cause__
        raise error from error.__cause__

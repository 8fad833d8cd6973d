"""Atomic, self-describing file outputs (a leaf module: the harness and the metrics CLI write through it).

Every file the harness and the metrics CLI write goes through :func:`atomic_path`: the content is written to a temporary
file in the destination directory and renamed over the destination only once it is complete, so a killed
job never leaves a half-written file that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from metrics.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps ``path``'s suffix (or ``suffix``) so libraries that infer the format from the
    extension (numpy, matplotlib, torch) behave. On error the temporary file is removed and ``path`` is
    left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or "".join(path.suffixes) or ".tmp",
                                        dir=path.parent)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}", str(path)) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs on a shared cluster follow the umask
        os.replace(tmp, path)
    except OSError as err:  # disk full, read-only file system, quota: name the output, not the temporary file
        if isinstance(err, FileNotFoundError) and err.filename not in (str(tmp), None):
            raise
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}; its previous version (if any) is "
                      "unchanged", str(path)) from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files :func:`atomic_path` left beside ``path`` when a writer was killed mid-write.

    Only for outputs with a single writer (a training run's checkpoint): a multi-GB checkpoint interrupted by
    every preemption would otherwise fill the disk. Returns the removed paths.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*")) if path.parent.exists() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically (stable bytes for equal content)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, naming the file in the error if it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err}); delete it and rerun the step that makes it") from None


def verify_zip(path: str | os.PathLike[str]) -> None:
    """Check every member's CRC-32 of a zip-based file (``.npz``, ``torch.save`` output).

    ``torch.load`` does not check CRCs, so a flipped byte in a checkpoint would otherwise load as a silently
    wrong weight. Raises :class:`InputError` naming the file and the damaged member.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise InputError(f"{path}: truncated or corrupted ({type(err).__name__}: {err}); "
                         "delete it and rerun the step that makes it") from None
    if bad is not None:
        raise InputError(f"{path}: checksum mismatch in member {bad!r} (corrupted file); "
                         "delete it and rerun the step that makes it")


def save_npz_atomic(path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None, **arrays: np.ndarray) -> None:
    """Save ``arrays`` to an uncompressed ``.npz`` atomically; ``meta`` is stored as a JSON string under ``meta``."""
    payload = dict(arrays)
    if meta is not None:
        payload["meta"] = meta_array(meta)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **payload)


def meta_array(meta: Mapping[str, Any]) -> np.ndarray:
    """``meta`` as an ``.npz`` stores it: a 0-d unicode array of its JSON (keys sorted), decoded by :func:`load_npz`."""
    return np.array(json.dumps(meta, sort_keys=True))


def load_npz(path: str | os.PathLike[str], required: tuple[str, ...] = (),
             keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Load an ``.npz`` written by :func:`save_npz_atomic` into a dict (``meta`` decoded from JSON).

    ``keys``: read only these arrays (and ``meta``) when present, leaving the file's other members unread (a stage
    that needs two of a latents file's arrays does not hold the rest). Raises :class:`InputError` (a
    ``ValueError``) naming the file when it is truncated/corrupt or lacks a ``required`` key.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            wanted = data.files if keys is None else [k for k in data.files if k in {*keys, *required, "meta"}]
            out: dict[str, Any] = {key: data[key] for key in wanted}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except Exception as err:  # zipfile.BadZipFile, ValueError, EOFError, OSError: all mean "unreadable"
        raise InputError(f"{path}: unreadable or corrupted npz ({type(err).__name__}: {err}); "
                         "delete it and rerun the step that makes it") from None
    missing = [key for key in required if key not in out]
    if missing:
        raise InputError(f"{path}: missing arrays {missing}; found {sorted(out)}")
    if "meta" in out:
        out["meta"] = json.loads(str(out["meta"]))
    return out


def read_npy_header(handle: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the ``.npy`` whose header starts at ``handle``'s position, leaving it at the data; a
    ValueError for a Fortran-ordered or object array (not rows of plain items)."""
    version = np.lib.format.read_magic(handle)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(handle)
    if fortran or dtype.hasobject:
        raise ValueError(f"not a C-ordered array of plain items (shape {shape}, dtype {dtype})")
    return tuple(shape), dtype


def load_npz_head(path: str | os.PathLike[str], key: str, rows: int) -> np.ndarray:
    """The first ``rows`` rows of array ``key`` of an ``.npz``, read without loading the rest of it (memory
    O(rows), whatever the array's length). Raises :class:`InputError` naming the file and key when it is absent or
    unreadable."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
            shape, dtype = read_npy_header(member)
            if not shape:
                raise ValueError(f"a 0-d array has no rows (dtype {dtype})")
            count = min(rows, shape[0])
            row_items = int(np.prod(shape[1:], dtype=np.int64))
            raw = member.read(count * row_items * dtype.itemsize)
            return np.frombuffer(raw, dtype=dtype, count=count * row_items).reshape(count, *shape[1:]).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except KeyError:
        raise InputError(f"{path}: missing array {key!r}") from None
    except Exception as err:  # zipfile.BadZipFile, ValueError, EOFError, OSError: all mean "unreadable"
        raise InputError(f"{path}: unreadable {key!r} ({type(err).__name__}: {err}); delete it and rerun the step "
                         "that makes it") from None

"""``metrics.streamed_npz``: an ``.npz`` written row chunk by row chunk in place reads back, through numpy's and the
project's readers, exactly as the arrays it was given, with real CRCs; a short or failed write leaves nothing."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from metrics.errors import InputError
from metrics.io import load_npz, save_npz_atomic, verify_zip
from metrics.store import npz_member_rows
from metrics.streamed_npz import streamed_npz

ROWS = 23


def _members(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"features": rng.standard_normal((ROWS, 7)).astype(np.float32),
            "logits": rng.standard_normal((ROWS, 2, 3)),  # float64, 3-d: item shapes and dtypes of their own
            "index": np.arange(ROWS, dtype=np.int16), "kept": rng.random(ROWS) > 0.5}  # 1-d rows, bool


def _write(path, members: dict[str, np.ndarray], cuts=(0, 5, 6, 17, ROWS)) -> None:
    labels = np.arange(ROWS) % 4
    with streamed_npz(path, ROWS) as archive:
        for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
            archive.append({name: value[start:stop] for name, value in members.items()})
        archive.put("labels", labels)
        archive.put("meta", {"net": "inception", "n": ROWS})


def test_a_streamed_npz_reads_back_as_the_arrays_through_every_reader(tmp_path) -> None:
    members = _members()
    _write(tmp_path / "out.npz", members)
    with np.load(tmp_path / "out.npz") as data:  # numpy's reader checks each member's CRC as it reads it
        for name, value in members.items():
            np.testing.assert_array_equal(data[name], value)
            assert data[name].dtype == value.dtype
        np.testing.assert_array_equal(data["labels"], np.arange(ROWS) % 4)
    loaded = load_npz(tmp_path / "out.npz")
    assert loaded["meta"] == {"net": "inception", "n": ROWS}
    verify_zip(tmp_path / "out.npz")
    with zipfile.ZipFile(tmp_path / "out.npz") as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == sorted(f"{k}.npy" for k in [*members, "labels", "meta"])
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    for name, value in members.items():  # in place, from the member's headers (how the k-NN reads a reference)
        rows = npz_member_rows(tmp_path / "out.npz", name)
        np.testing.assert_array_equal(rows.rows(3, 20), value[3:20])


def test_the_members_equal_those_numpy_savez_writes(tmp_path) -> None:
    members = _members(1)
    _write(tmp_path / "streamed.npz", members, cuts=(0, ROWS))
    save_npz_atomic(tmp_path / "savez.npz", None, **members)
    with np.load(tmp_path / "streamed.npz") as a, np.load(tmp_path / "savez.npz") as b:
        for name in members:
            assert a[name].tobytes() == b[name].tobytes() and a[name].shape == b[name].shape


def test_a_flipped_data_byte_fails_the_crc(tmp_path) -> None:
    _write(tmp_path / "out.npz", _members())
    raw = bytearray((tmp_path / "out.npz").read_bytes())
    raw[200] ^= 0xFF  # inside the first member's data (its headers take the first ~160 bytes)
    (tmp_path / "out.npz").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checksum mismatch in member 'features.npy'"):
        verify_zip(tmp_path / "out.npz")


@pytest.mark.parametrize("fault", ["short", "raised", "shape", "dtype", "members", "too many", "name taken"])
def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path, fault) -> None:
    path = tmp_path / "out.npz"
    save_npz_atomic(path, {"old": True}, x=np.ones(3))
    members = _members()
    expected = {"short": "rows written", "raised": "extraction failed", "shape": r"chunk of \(8,\)",
                "dtype": "chunk of .*float64 after", "members": "chunk of members", "too many": "24 rows",
                "name taken": "'features' is a row member already"}[fault]
    with pytest.raises((ValueError, RuntimeError), match=expected):
        with streamed_npz(path, ROWS) as archive:
            archive.append({name: value[:10] for name, value in members.items()})
            rest = {name: value[10:] for name, value in members.items()}
            if fault == "raised":
                raise RuntimeError("extraction failed")
            if fault == "shape":
                rest["features"] = np.zeros((ROWS - 10, 8), np.float32)
            if fault == "dtype":
                rest["features"] = rest["features"].astype(np.float64)
            if fault == "members":
                del rest["logits"]
            if fault == "too many":
                rest = {name: np.concatenate([value, value[:1]]) for name, value in rest.items()}
            if fault == "name taken":
                archive.put("features", np.zeros(3))
            if fault != "short":
                archive.append(rest)
    assert load_npz(path)["meta"] == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_an_error_of_the_block_is_raised_as_it_is(tmp_path) -> None:
    """A missing weight file inside the block is the caller's error, not a failure to write the output."""
    missing = FileNotFoundError("domain CNN weights not set (no weights path was given)")
    with pytest.raises(FileNotFoundError) as raised:
        with streamed_npz(tmp_path / "out.npz", ROWS):
            raise missing
    assert raised.value is missing and "cannot write" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failing", ["pwrite", "fdatasync"])
def test_a_failed_archive_write_names_the_output(tmp_path, monkeypatch, failing) -> None:
    """A full disk while a chunk is written, or while it is put on disk (the stage's per-chunk ``sync``), is
    reported against the output file, and leaves nothing."""
    import errno
    import os

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    members = _members()
    with pytest.raises(OSError, match=r"cannot write .*out\.npz: No space left on device; its previous version"):
        with streamed_npz(tmp_path / "out.npz", ROWS) as archive:
            monkeypatch.setattr(os, failing, full)
            archive.append(members)
            archive.sync()
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []

"""Writing a feature stage's output ``.npz`` (rows that come a chunk at a time) in place vs through part files.

    python benchmarks/npz_write.py [--rows 200000 --dims 2048 1008 --chunk 32768]
    python benchmarks/npz_write.py --rows 600000 --dims 2048   (a member over 4 GiB: the ZIP64 fields for real)
    python benchmarks/npz_write.py --smoke   (tiny sizes, seconds: the code paths run, no numbers)

The features stage (``metrics.extract.write_features``) writes each chunk's outputs (Inception: features (n, 2048)
and logits (n, 1008) float32) while the next chunk is extracted, then completes the file. Three ways, same chunks,
same run, each ending in an fsync'ed, renamed file:

- ``in place + sync`` (the stage's: ``metrics.streamed_npz``): every chunk written at its offset in the final
  archive and put on disk (``fdatasync``) by the stage's writer thread, the zip headers added at the end;
- ``in place``: the same without the per-chunk ``fdatasync`` (the stage's way before it: the rename's ``fsync``
  wrote the whole file after the last chunk);
- ``parts + copy`` (the stage's way before it): every chunk appended to a ``.npy`` part file, the parts copied into
  the archive through ``zipfile`` after the last chunk.

Prints, for each write, the seconds of the appends (overlapped with the extraction in the stage), of the tail after
the last chunk (what holds the stage and its output up) and of the whole; ``--repeat`` writes of each kind, in
alternating order, then the medians and their ratios; then reads both files back (every CRC, every row in blocks)
and checks that they hold the same arrays.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import _smoke  # noqa: E402

from metrics.io import atomic_path, meta_array, verify_zip  # noqa: E402
from metrics.streamed_npz import streamed_npz  # noqa: E402

SMOKE = {"rows": 100, "dims": [8, 4], "chunk": 32, "repeat": 2}


def in_place(path: Path, rows: int, chunks: Callable[[], object], labels: np.ndarray, sync: bool = False
             ) -> tuple[float, float]:
    """The in-place writer, each chunk put on disk after its append (``sync``, the stage's) or not (the stage's way
    before it); (seconds of the appends, seconds after the last one)."""
    with streamed_npz(path, rows) as archive:
        start = time.perf_counter()
        for outputs in chunks():
            archive.append(outputs)
            if sync:
                archive.sync()
        appended = time.perf_counter()
        archive.put("labels", labels)
        archive.put("meta", {"bench": True})
    return appended - start, time.perf_counter() - appended


def parts_then_copy(path: Path, rows: int, chunks: Callable[[], object], labels: np.ndarray) -> tuple[float, float]:
    """The writer it replaced: ``.npy`` parts beside the output, copied into the archive in 64 MiB blocks."""
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.parts.", dir=path.parent) as parts:
        handles: dict[str, object] = {}
        start = time.perf_counter()
        for outputs in chunks():
            for name, value in outputs.items():
                if name not in handles:
                    handles[name] = open(Path(parts) / f"{name}.npy", "wb")
                    np.lib.format.write_array_header_2_0(handles[name], {
                        "descr": np.lib.format.dtype_to_descr(value.dtype), "fortran_order": False,
                        "shape": (rows, *value.shape[1:])})
                handles[name].write(np.ascontiguousarray(value).data)
        for handle in handles.values():
            handle.close()
        appended = time.perf_counter()
        small = {"labels": labels, "meta": meta_array({"bench": True})}
        with atomic_path(path, suffix=".npz") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED,
                                                                        allowZip64=True) as archive:
            for name, value in small.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)
            for name in handles:
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member, \
                        open(Path(parts) / f"{name}.npy", "rb") as source:
                    shutil.copyfileobj(source, member, 64 << 20)
    return appended - start, time.perf_counter() - appended


def same_arrays(a: Path, b: Path, names: Mapping[str, object]) -> bool:
    """Whether both files hold the same members (compared block by block: a member may be larger than memory)."""
    verify_zip(a)
    verify_zip(b)
    from metrics.store import npz_member_rows

    for name in names:
        x, y = npz_member_rows(a, name), npz_member_rows(b, name)
        if x.shape != y.shape:
            return False
        for start in range(0, x.shape[0], 65536):
            if not np.array_equal(x.rows(start, min(start + 65536, x.shape[0])),
                                  y.rows(start, min(start + 65536, y.shape[0]))):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200000, help="rows of every member")
    parser.add_argument("--dims", type=int, nargs="+", default=[2048, 1008], help="float32 columns of each member")
    parser.add_argument("--chunk", type=int, default=32768, help="rows per chunk (metrics.extract.CHUNK_ITEMS)")
    parser.add_argument("--dir", type=Path, help="where to write (default: a scratch directory in /tmp)")
    parser.add_argument("--repeat", type=int, default=3, help="writes of each kind, alternating (medians printed)")
    args = _smoke.parse_args(parser, SMOKE)
    rng = np.random.default_rng(0)
    block = {f"out{i}": rng.standard_normal((args.chunk, d)).astype(np.float32) for i, d in enumerate(args.dims)}
    labels = np.arange(args.rows) % 1000

    def chunks():
        for start in range(0, args.rows, args.chunk):
            rows = min(args.chunk, args.rows - start)
            yield {name: value[:rows] for name, value in block.items()}

    size = args.rows * sum(args.dims) * 4
    print(f"{args.rows} rows x {args.dims} float32 = {size / 2**30:.2f} GiB in chunks of {args.chunk}", flush=True)
    methods = {"parts + copy": parts_then_copy, "in place": in_place,
               "in place + sync": lambda *a: in_place(*a, sync=True)}
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in methods}
    with tempfile.TemporaryDirectory(prefix="npz_write_", dir=args.dir) as tmp:
        for repeat in range(args.repeat):  # alternating which goes first: the page cache's state favours neither
            for label in (list(methods) if repeat % 2 == 0 else list(methods)[::-1]):
                path = Path(tmp) / f"{label.replace(' ', '_').replace('+', 'and')}.npz"
                appends, tail = methods[label](path, args.rows, chunks, labels)
                times[label].append((appends, tail))
                print(f"  {label:<15} appends {appends:7.2f} s, after the last chunk {tail:7.2f} s, total "
                      f"{appends + tail:7.2f} s ({size / (appends + tail) / 2**20:,.0f} MiB/s)", flush=True)
        # medians of (tail, total) over the writes of each kind
        median = {label: np.median([(tail, appends + tail) for appends, tail in values], axis=0)
                  for label, values in times.items()}
        print(f"medians of {args.repeat}: " + "; ".join(
            f"{label} tail {tail:.2f} s, total {total:.2f} s" for label, (tail, total) in median.items()), flush=True)
        stage = median["in place + sync"]
        for label in ("parts + copy", "in place"):
            print(f"  in place + sync vs {label}: the tail x{median[label][0] / max(stage[0], 1e-9):.1f} shorter, "
                  f"the total x{median[label][1] / stage[1]:.2f}", flush=True)
        same = all(same_arrays(Path(tmp) / "parts_and_copy.npz", Path(tmp) / name, block)
                   for name in ("in_place.npz", "in_place_and_sync.npz"))
        print(f"both files hold the same arrays, every CRC checked: {same}", flush=True)


if __name__ == "__main__":
    main()

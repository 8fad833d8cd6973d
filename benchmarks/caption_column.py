"""A captioned set's captions at CC12M-like size: the text column (UTF-8 bytes + offsets read in place,
``metrics.store.TextColumn``) against the numpy unicode array the data index held before, measured in the same run.

    python benchmarks/caption_column.py --n 1000000 --batches 200 --batch 512
    python benchmarks/caption_column.py --smoke      # 2000 captions

Writes two data indexes of N synthetic captions (word counts drawn like web alt-text: mostly 5-30 words, a few up to
200) beside a 1-value ``x``: one with ``captions`` as a text column (what ``kaleido.data`` writes now) and one with
``captions`` and ``class_names`` as unicode arrays (the earlier layout: every entry as wide as the longest caption).
For each, a fresh process loads the index as the training stage does (``metrics.store.load_data``) and reads
``--batches`` random batches of ``--batch`` captions, as the training loop does per step; printed: the index's size
on disk, the reader's peak RSS (MiB) and microseconds per batch read. The ratio column is earlier / text column.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _smoke  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

SMOKE = {"n": 2000, "batches": 5, "batch": 64}
WORDS = ("a photo of the cat dog person on in with and at red blue green small large wooden old new street beach "
         "table house car tree sky water city night light man woman child two three white black view close up").split()


def synthetic_captions(n: int, seed: int = 0) -> np.ndarray:
    """n captions (object array): word counts log-normal around 12 (clipped to 1..200), words from a small list."""
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.lognormal(np.log(12), 0.6, n).astype(int), 1, 200)
    words = np.array(WORDS)
    return np.array([" ".join(words[rng.integers(0, len(words), c)]) for c in counts], dtype=object)


def write_indexes(work: Path, captions: np.ndarray) -> dict[str, Path]:
    """The two layouts of the same captions: {"text column": path, "unicode arrays": path}."""
    from metrics.io import save_npz_atomic
    from metrics.store import save_data

    x, labels = np.zeros((len(captions), 1), np.uint8), np.arange(len(captions))
    column, arrays = work / "column.npz", work / "arrays.npz"
    save_data(column, {"x": x, "labels": labels, "captions": captions}, {})
    text = captions.astype(str)  # the earlier index: captions and class_names as unicode arrays
    save_npz_atomic(arrays, meta={}, x=x, labels=labels, captions=text, class_names=text)
    return {"text column": column, "unicode arrays": arrays}


def read(path: Path, batches: int, batch: int) -> None:
    """The reader process: load the index as training does, read random batches; prints microseconds per batch and
    its own peak RSS (MiB)."""
    from metrics.store import load_data

    data = load_data(path)
    captions, rng = data["captions"], np.random.default_rng(1)
    index = [rng.integers(0, len(captions), batch) for _ in range(batches)]
    start = time.perf_counter()
    chars = sum(sum(len(str(t)) for t in captions[i]) for i in index)
    seconds = time.perf_counter() - start
    print(json.dumps({"us_per_batch": 1e6 * seconds / batches, "chars": chars, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory, MiB: VmHWM (the high-water mark of this program's own memory; ru_maxrss
    would also count the parent's memory this process was forked with before it ran this program)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: the best available


def run_reader(path: Path, batches: int, batch: int) -> dict[str, float]:
    """:func:`read` in a fresh process (its RSS is the reader's alone)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--read", str(path), "--batches",
                           str(batches), "--batch", str(batch)], env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"reader of {path} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="captions in the set")
    parser.add_argument("--batches", type=int, default=200, help="random batches each reader reads")
    parser.add_argument("--batch", type=int, default=512, help="captions per batch (the paper's global batch)")
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # the reader process
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    if argv is None and "--read" in sys.argv:
        args = parser.parse_args()
        read(args.read, args.batches, args.batch)
        return
    args = _smoke.parse_args(parser, SMOKE, argv)
    with _smoke.scratch(args.work) as work:
        captions = synthetic_captions(args.n)
        paths = write_indexes(work, captions)
        lengths = np.array([len(c) for c in captions])
        print(f"{args.n} captions, {lengths.mean():.0f} characters on average, longest {lengths.max()}")
        rows = {}
        for name, path in paths.items():
            result = run_reader(path, args.batches, args.batch)
            rows[name] = {"file_mb": path.stat().st_size / 2**20, "peak_rss_mb": result["peak_rss_mb"],
                          "us_per_batch": result["us_per_batch"]}
        print(f"{'layout':<16}{'file (MiB)':>12}{'reader peak RSS (MiB)':>24}{'us / batch of ' + str(args.batch):>20}")
        for name, row in rows.items():
            print(f"{name:<16}{row['file_mb']:>12.1f}{row['peak_rss_mb']:>24.1f}{row['us_per_batch']:>20.0f}")
        old, new = rows["unicode arrays"], rows["text column"]
        print(f"ratio (unicode arrays / text column): file {old['file_mb'] / new['file_mb']:.1f}x, reader peak RSS "
              f"{old['peak_rss_mb'] / new['peak_rss_mb']:.1f}x, batch read time "
              f"{old['us_per_batch'] / new['us_per_batch']:.2f}x")
        print(json.dumps({"n": args.n, "batch": args.batch, "layouts": {k: {m: round(v, 1) for m, v in r.items()}
                                                                          for k, r in rows.items()}}))


if __name__ == "__main__":
    main()

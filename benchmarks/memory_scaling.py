"""Peak memory of the data path's stages at N and 4N images: bounded by the batch and the shard, not by the set.

    python benchmarks/memory_scaling.py [--n 4000] [--image-size 64] [--work DIR] [--smoke]

Builds an ImageNet-style folder (class sub-folders of JPEG files) of procedurally generated shapes images, then
runs the stages the DAG runs on it, each as its own process, exactly as the rules call them: data (imagefolder,
decoded in parallel and written as checksummed shards), latents (``bbox``, offline), train (Kaleido, nested UNet +
T5 prior, a fixed number of steps, batches streamed by loader workers) and features (the domain CNN over the whole
training set). A stage's peak RSS is the largest resident set among its processes (``ru_maxrss`` of the stage and
the workers it waited for), in MiB. Prints one table and, as its last line, one JSON object::

    {"n": N, "peak_rss_mb": {"data": [at N, at 4N], "latents": [..], "train": [..], "features": [..]}}

``tests/test_memory_scaling.py`` runs the same measurement and asserts each stage grows by less than half an
image's bytes per added image (:func:`growth_per_image`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))  # also when imported by file (tests/test_memory_scaling.py)
sys.path.insert(0, str(REPO))  # the folder maker's pool workers import kaleido, installed or not
import _smoke  # noqa: E402

STAGES = ("data", "latents", "train", "features")
#: runs one command and prints the peak RSS (KiB) of it and its waited-for descendants on its last stdout line
_PEAK_RSS = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:], stdout=sys.stderr); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def _write_images(job: tuple[Path, int, int, int, int]) -> None:
    from PIL import Image

    from kaleido.data import DATASETS

    root, start, stop, size, classes = job
    spec = {"name": "shapes", "num_train": stop - start, "image_size": size, "max_objects": 3}
    images = DATASETS.get("shapes").generate(spec, seed=start)["x"]  # each job its own seed: O(n) in all
    for i in range(start, stop):
        folder = root / f"n{i % classes:08d}"  # a class per folder, as ImageNet; the content does not matter here
        Image.fromarray(images[i - start]).save(folder / f"img_{i:08d}.JPEG", quality=90)


def make_image_folder(root: Path, n: int, size: int, classes: int = 10, workers: int = 2) -> Path:
    """``root/n0000000k/img_*.JPEG``: n procedurally generated shapes images of ``size`` px in ``classes`` folders
    (existing complete folders are reused)."""
    done = root / ".complete"
    if done.is_file() and done.read_text() == f"{n} {size} {classes}":
        return root
    for k in range(classes):
        (root / f"n{k:08d}").mkdir(parents=True, exist_ok=True)
    step = 2000
    jobs = [(root, a, min(a + step, n), size, classes) for a in range(0, n, step)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_write_images, jobs))
    done.write_text(f"{n} {size} {classes}")
    return root


def write_config(path: Path, root: Path, *, size: int, shard_size: int, steps: int, batch: int, per_class: int,
                 arch: str = "nested_tiny", workers: int = 2) -> Path:
    """A one-experiment config (``scale``) over the first ``per_class`` images of each class folder of ``root``."""
    cfg = {
        "results_dir": "results", "reports_dir": "reports", "mlflow": {"tracking_uri": "sqlite:///results/mlflow.db"},
        "experiments": {"scale": {
            "seed": 0,
            "data": {"name": "imagefolder", "root": str(root), "image_size": size, "shard_size": shard_size,
                     "workers": workers, "max_per_class": per_class},
            "latents": {"bbox": {}},
            "diffusion": {"timesteps": 1000, "schedule": "cosine", "prediction": "v"},
            "models": {"kaleido": {"arch": "nested_unet", "size": arch, "cond_dim": 64,
                                   "context": {"encoder": "t5_tiny", "max_length": 4}, "prior": {"size": "t5_tiny"}}},
            "train": {"steps": steps, "batch_size": batch, "lr": 2.0e-4, "checkpoint_every": 10_000,
                      "log_every": 10},
            "sampler": {"name": "ddpm", "steps": 10},
            "methods": ["kaleido"], "guidance": [3], "num_samples": 8, "shard_size": 8,
            "metrics": {"feature_net": "domain", "feature_batch_size": 64},
        }},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def domain_weights(path: Path, size: int) -> Path:
    """A briefly trained domain CNN checkpoint (its own format), for the feature stage."""
    import torch

    from metrics.features import domain

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(64, size, size, 3), dtype=np.uint8)
    torch.save(domain.train(images, rng.integers(0, 3, size=64), seed=0, steps=2, batch_size=16), path)
    return path


#: glibc's malloc with a fixed mmap threshold and one arena in every measured process. By default the threshold
#: moves up as large blocks are freed, so whether a freed backward-pass buffer goes back to the system or stays in
#: the heap depends on the order of earlier frees: the training stage's peak varied by ~70 MiB between runs of one
#: command (1172-1241 MiB), as much as the growth the test allows. Fixed, it repeats to the MiB (1051 / 1055 MiB at
#: 4,000 / 16,000 images, three runs each); an array held per image counts the same either way.
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "1"}


def peak_rss_mb(args: list[str], cwd: Path, fixed_malloc: bool = True) -> float:
    """Run ``python args...`` in ``cwd``; the peak RSS of its largest process, MiB. Raises naming the stage on
    failure (with its stderr tail). ``fixed_malloc``: under :data:`FIXED_MALLOC` (off where the stage's speed is
    measured too: one malloc arena serialises the allocations of its threads)."""
    env = {**os.environ, **(FIXED_MALLOC if fixed_malloc else {}),
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:2])} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def stage_commands(cfg: Path, weights: Path, threads: int) -> dict[str, list[str]]:
    common = ["--config", str(cfg), "--experiment", "scale"]
    return {
        "data": ["-m", "kaleido.data", *common, "--out", "data/train.npz"],
        "latents": ["-m", "kaleido.latents", *common, "--latent", "bbox", "--data", "data/train.npz",
                    "--out", "latents/bbox.npz", "--quality", "latents/bbox_quality.json"],
        "train": ["-m", "kaleido.train", *common, "--role", "kaleido", "--latent", "bbox", "--data", "data/train.npz",
                  "--latents", "latents/bbox.npz", "--out", "train/model.pt", "--threads", str(threads), "--quiet"],
        "features": ["-m", "kaleido.features", *common, "--net", "domain", "--weights", str(weights),
                     "--out", "features/train.npz", "data/train.npz"],
    }


CLASSES = 10
#: 10 and 40 images of 16 px in shards of 8, two training steps, each stage once
SMOKE = {"n": CLASSES, "image_size": 16, "shard_size": 8, "steps": 2, "batch": 4, "threads": 1, "repeats": 1}


def measure(work: Path, root: Path, n: int, *, size: int, shard_size: int, steps: int, batch: int,
            threads: int, repeats: int = 1) -> dict[str, float]:
    """Peak RSS (MiB) of each stage on a fresh run over n images of the folder ``root`` (n / 10 per class): the
    least of ``repeats`` runs of it, each from scratch (its output folder removed).

    Every process runs under :data:`FIXED_MALLOC`, so one run is enough (the peak repeats to the MiB); ``repeats``
    stays for a look at the spread under other allocator settings."""
    run = work / f"run_{n}_{size}"
    run.mkdir(parents=True, exist_ok=True)
    cfg = write_config(run / "config.yaml", root, size=size, shard_size=shard_size, steps=steps, batch=batch,
                       per_class=n // CLASSES, workers=threads)
    weights = domain_weights(run / "domain.pt", size)
    peaks = {}
    for stage, cmd in stage_commands(cfg, weights, threads).items():
        runs = []
        for _ in range(repeats):
            shutil.rmtree(run / stage, ignore_errors=True)  # each stage writes under run/<stage>/ only
            runs.append(peak_rss_mb(cmd, run))
        peaks[stage] = min(runs)
    return peaks


def scaling(work: Path, n: int, **kwargs: int) -> dict[str, list[float]]:
    """{stage: [peak RSS at n, at 4n]} (MiB); n must be a multiple of 10 (the class folders)."""
    if n % CLASSES:
        raise ValueError(f"n={n}: expected a multiple of {CLASSES} (images per class folder)")
    root = make_image_folder(work / f"images_{4 * n}_{kwargs['size']}", 4 * n, kwargs["size"], CLASSES,
                             workers=kwargs["threads"])
    small, large = measure(work, root, n, **kwargs), measure(work, root, 4 * n, **kwargs)
    return {stage: [round(small[stage], 1), round(large[stage], 1)] for stage in STAGES}


def growth_per_image(small_mb: float, large_mb: float, n: int, size: int) -> float:
    """The peak RSS growth from n to 4n images per added image, as a fraction of one image's uint8 bytes
    (size x size x 3): a stage holding the set as uint8 shows >= 1, whatever its start-up memory."""
    return (large_mb - small_mb) * 2**20 / (3 * n) / (size * size * 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="images of the smaller set (the larger has 4n)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=5, help="training steps (the same at n and 4n)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="decoding / loader processes")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each stage; the least peak is reported")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    args = _smoke.parse_args(parser, SMOKE, argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        table = scaling(work, args.n, size=args.image_size, shard_size=args.shard_size, steps=args.steps,
                        batch=args.batch, threads=args.threads, repeats=args.repeats)
    n_set = args.n * args.image_size**2 * 3 / 2**20
    print(f"images {args.image_size} px: set of n = {args.n} is {n_set:.0f} MiB of uint8, of 4n {4 * n_set:.0f} MiB")
    print(f"{'stage':<10}{'peak RSS at n (MiB)':>22}{'at 4n (MiB)':>14}{'growth':>9}{'per extra image':>17}")
    for stage, (small, large) in table.items():
        share = growth_per_image(small, large, args.n, args.image_size)
        print(f"{stage:<10}{small:>22.1f}{large:>14.1f}{100 * (large / small - 1):>8.1f}%{share:>16.2f}x")
    print("(per extra image: the growth from n to 4n per added image, in units of one image's uint8 bytes; "
          "a stage that held the set would show >= 1)")
    print(json.dumps({"n": args.n, "peak_rss_mb": table}))


if __name__ == "__main__":
    main()

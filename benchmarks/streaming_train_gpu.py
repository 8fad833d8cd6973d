"""The data path at ImageNet-like size on one GPU: an image folder of N JPEGs -> data -> train -> features, with each
stage's peak host RSS, and the training throughput from the streaming loader against the same model on a batch set
already resident on the GPU (the peer, measured in the same run).

    python benchmarks/streaming_train_gpu.py --n 100000 --image-size 256 --arch mdm_in256 --batch 64 --steps 60 \
        --workers 8 --work /tmp/stream
    python benchmarks/streaming_train_gpu.py --smoke     # 20 images of 16 px on the CPU, a scratch directory

The folder is laid out like ImageNet (``n0000000k/img_*.JPEG``, 10 classes) with procedurally generated shapes
images. The data, train (``kaleido.train``, role ``mdm``, bf16) and features (domain CNN) stages run as the DAG runs
them, each as its own process under :func:`memory_scaling.peak_rss_mb`. Throughput is read from the stage's
``train_log.jsonl`` (images per second between the first and the last log line, so the warm-up interval is left
out). The resident peer calls the same :func:`kaleido.training.train` in this process with the first
``--resident`` images as a CUDA tensor: same model, same step, no reading. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _smoke  # noqa: E402
import memory_scaling as ms  # noqa: E402  (the folder maker, config and RSS wrapper are shared)

#: the log has a line every 10 steps and at the last: 12 steps give two, the throughput's interval
SMOKE = {"n": 2 * ms.CLASSES, "image_size": 16, "arch": "nested_tiny", "batch": 4, "steps": 12, "workers": 1,
         "resident": 8, "shard_size": 8, "device": "cpu"}


def images_per_second(rows: list[dict[str, float]], batch: int) -> float:
    """Training img/s between the first and last rows of a training log (``train_log.jsonl``'s lines)."""
    first, last = rows[0], rows[-1]
    return batch * (last["step"] - first["step"]) / (last["seconds"] - first["seconds"])


def resident_images_per_second(run: Path, cfg: Path, resident: int, batch: int, device: str) -> float:
    """The same training stage with its set replaced by its first ``resident`` images on the GPU (no loader)."""
    import torch

    from kaleido import distributed
    from kaleido.train import parser, prepare
    from kaleido.training import train

    args = parser().parse_args(["--config", str(cfg), "--experiment", "scale", "--role", "mdm",
                                "--data", str(run / "data" / "train.npz"), "--out", str(run / "resident" / "model.pt"),
                                "--device", device, "--quiet"])
    spec, data, _, meta = prepare(args)
    group = distributed.init(device)
    x = torch.from_numpy(data["x"][:resident]).to(group.device)
    result = train(spec, x, data["labels"][:resident], None, run / "resident", meta, progress=False, group=group)
    return images_per_second(result["log"], batch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--arch", default="mdm_in256")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, default=8, help="loader processes (and decoding processes)")
    parser.add_argument("--resident", type=int, default=2048, help="images the resident peer holds on the GPU")
    parser.add_argument("--shard-size", type=int, default=5000)
    parser.add_argument("--work", type=Path, required=not _smoke.requested(argv),
                        help="working directory (kept; a smoke run's default is a temporary one)")
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a smoke run)")
    args = _smoke.parse_args(parser, SMOKE, argv)
    with _smoke.scratch(args.work) as args.work:
        run(args)


def run(args: argparse.Namespace) -> None:
    """Make the folder, run the stages and the resident peer in ``args.work``, print the table and the JSON line."""
    started = time.perf_counter()
    root = ms.make_image_folder(args.work / f"images_{args.n}_{args.image_size}", args.n, args.image_size,
                                ms.CLASSES, workers=args.workers * 2)
    folder_s = time.perf_counter() - started
    run = args.work / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    cfg = ms.write_config(run / "config.yaml", root, size=args.image_size, shard_size=args.shard_size,
                          steps=args.steps, batch=args.batch, per_class=args.n // ms.CLASSES, arch=args.arch,
                          workers=args.workers * 2)
    spec = yaml.safe_load(cfg.read_text())
    exp = spec["experiments"]["scale"]
    exp["models"]["mdm"] = {k: v for k, v in exp["models"]["kaleido"].items() if k != "prior"}
    exp["methods"] = ["mdm", "kaleido"]
    exp["train"].update(precision="bf16", log_every=10)
    exp["train"]["precision"] = "bf16" if args.device == "cuda" else "fp32"
    exp["metrics"].update(feature_device=args.device, feature_batch_size=256)
    cfg.write_text(yaml.safe_dump(spec))
    weights = ms.domain_weights(run / "domain.pt", args.image_size)
    common = ["--config", str(cfg), "--experiment", "scale"]
    commands = {
        "data": ["-m", "kaleido.data", *common, "--out", "data/train.npz"],
        "train": ["-m", "kaleido.train", *common, "--role", "mdm", "--data", "data/train.npz", "--out",
                  "train/model.pt", "--device", args.device, "--threads", str(args.workers + 1), "--loader-workers",
                  str(args.workers), "--quiet"],
        "features": ["-m", "kaleido.features", *common, "--net", "domain", "--weights", str(weights),
                     "--out", "features/train.npz", "data/train.npz"],
    }
    rss, seconds = {}, {}
    for stage, command in commands.items():
        start = time.perf_counter()
        rss[stage] = ms.peak_rss_mb(command, run)
        seconds[stage] = time.perf_counter() - start
    log = (run / "train" / "train_log.jsonl").read_text().splitlines()
    streaming = images_per_second([json.loads(line) for line in log], args.batch)
    resident = resident_images_per_second(run, cfg, args.resident, args.batch, args.device)
    set_gib = args.n * args.image_size**2 * 3 / 2**30
    print(f"{args.n} JPEGs of {args.image_size} px ({set_gib:.1f} GiB as uint8), folder made in {folder_s:.0f} s")
    print(f"{'stage':<10}{'seconds':>9}{'peak RSS (MiB)':>16}")
    for stage in commands:
        print(f"{stage:<10}{seconds[stage]:>9.1f}{rss[stage]:>16.0f}")
    print(f"train {args.arch} {exp['train']['precision']} batch {args.batch}: streaming {streaming:.1f} img/s "
          f"({args.workers} loader workers, prefetch 4, pinned), resident on the GPU {resident:.1f} img/s, "
          f"ratio {streaming / resident:.3f}")
    print(json.dumps({"n": args.n, "image_size": args.image_size, "arch": args.arch, "batch": args.batch,
                      "loader_workers": args.workers, "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()},
                      "seconds": {k: round(v, 1) for k, v in seconds.items()},
                      "train_img_per_s": {"streaming": round(streaming, 2), "resident": round(resident, 2),
                                          "ratio": round(streaming / resident, 4)}}))


if __name__ == "__main__":
    main()

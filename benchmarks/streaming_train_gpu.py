"""The data path at ImageNet-like size on one GPU: an image folder of N JPEGs -> data -> latents (bbox, color) ->
train -> features -> sample, with each stage's peak host RSS and seconds, and the training throughput from the
streaming loader against the same model on a batch set already resident on the GPU (the peer, measured in the same
run).

    python benchmarks/streaming_train_gpu.py --n 100000 --image-size 256 --arch mdm_in256 --batch 64 --steps 60 \
        --workers 8 --latent-images 500 --samples 1000 --sample-batch 50 --work /tmp/stream
    python benchmarks/streaming_train_gpu.py --n 20000 --batch 32 --steps 80 --latents '' \
        --skip-stages features sample --work /tmp/stream       # the training throughput (and MFU) alone
    python benchmarks/streaming_train_gpu.py --smoke     # 20 images of 16 px on the CPU, a scratch directory

The folder is laid out like ImageNet (``n0000000k/img_*.JPEG``, 10 classes) with procedurally generated shapes
images. Every stage runs as the DAG runs it (the command lines of ``workflow/rules/*.smk``), each as its own process
under :func:`memory_scaling.peak_rss_mb`: data (imagefolder -> checksummed shards), latents (``kaleido.latents``,
one job per ``--latents`` type, the offline extractors with their defaults, ``--latent-workers`` processes over the
data shards, one thread each, as the rule runs it with its ``cpus_per_task``), train (``kaleido.train``, role
``mdm``, bf16), features (domain CNN over the training
set) and sample (``kaleido.sample``: ``mdm`` at w = 3, shard 000 of a set of ``--samples`` images, the config's
sampler -- DDPM, 10 steps -- on its default fast path, bf16 + torch.compile on CUDA). The sample command is the
rule's plus ``--batch-size`` (``--sample-batch``; speed only, never the samples): the stage's default, 2048 per
batch, does not fit a GPU at 256 px (an eager fp32 CFG forward of mdm_in256 took ~630 MiB more peak memory per
added sample on the CPU). A ``--samples`` that ``--sample-batch`` divides keeps one compiled shape.

Which images each stage runs on (the table's ``images`` column): data, train and features on all ``--n``; sample
on ``--samples``; the latents stages on the first ``--latent-images`` (the same folder read with
``data.max_per_class`` = a tenth of it, made into its own data set by a second data stage, ``data_latents``, run
the same way, in shards of ``--latent-images`` / (2 x ``--latent-workers``) images so every process has parts).
One offline extractor process takes 40-49 ms (bbox) and 78-95 ms (color) per 256 px image on the 2-core
development machine (200 images; the range is that machine's other load). ``--latent-images 0`` (or >= ``--n``)
runs them on the full set.

Throughput: training img/s is read from the stage's ``train_log.jsonl`` (images per second between the first and
the last log line, so the warm-up interval is left out). The resident peer calls the same
:func:`kaleido.training.train` in this process with the first ``--resident`` images as a CUDA tensor: same model,
same step, no reading. Training compiles (``train.compile``, as ``config/imagenet256.yaml``; ``--no-compile``: eager,
as the runs before the option); on CUDA the MFU of both is their img/s times the model FLOPs of a training step per
image (``_gpu.train_flops_per_image``) over the bf16 dense peak. Sampling img/s is ``--samples`` over the sample
stage's wall-clock seconds (process start, model load and compilation included); the latents' img/s is the
extractor's own rate (``extract_seconds`` of the stage's quality JSON). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _smoke  # noqa: E402
import memory_scaling as ms  # noqa: E402  (the folder maker, config and RSS wrapper are shared)
from _gpu import peak  # noqa: E402

#: the log has a line every 10 steps and at the last: 12 steps give two, the throughput's interval; the latents on
#: the first half of the images (the second data stage's path), 8 samples in batches of 4 (two forward batches)
SMOKE = {"n": 2 * ms.CLASSES, "image_size": 16, "arch": "nested_tiny", "batch": 4, "steps": 12, "workers": 1,
         "resident": 8, "shard_size": 8, "device": "cpu", "samples": 8, "sample_batch": 4,
         "latent_images": ms.CLASSES, "latent_workers": 2, "compile": False}
#: the experiment's name in the written config, and the sampled method (no latent) at this guidance weight
EXPERIMENT, METHOD, GUIDANCE = "scale", "mdm", 3
#: what Snakemake's shell sets to a job's ``threads`` (1 for a rule without ``threads:``, as ``latents``)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def images_per_second(rows: list[dict[str, float]], batch: int) -> float:
    """Training img/s between the first and last rows of a training log (``train_log.jsonl``'s lines)."""
    first, last = rows[0], rows[-1]
    return batch * (last["step"] - first["step"]) / (last["seconds"] - first["seconds"])


def resident_images_per_second(run: Path, cfg: Path, resident: int, batch: int,
                               device: str) -> tuple[float, float | None]:
    """The same training stage with its set replaced by its first ``resident`` images on the GPU (no loader): its
    img/s, and the model FLOPs of one training step per image (:func:`_gpu.train_flops_per_image`; None off CUDA)."""
    import torch

    from kaleido import distributed
    from kaleido.train import parser, prepare
    from kaleido.training import train

    args = parser().parse_args(["--config", str(cfg), "--experiment", EXPERIMENT, "--role", "mdm",
                                "--data", str(run / "data" / "train.npz"), "--out", str(run / "resident" / "model.pt"),
                                "--device", device, "--quiet"])
    spec, data, _, meta = prepare(args)
    group = distributed.init(device)
    x = torch.from_numpy(data["x"][:resident]).to(group.device)
    result = train(spec, x, data["labels"][:resident], None, run / "resident", meta, progress=False, group=group)
    flops = None
    if group.device.type == "cuda":
        from _gpu import train_flops_per_image

        from kaleido import checkpoint

        flops = train_flops_per_image(checkpoint.build_denoiser(meta).to(group.device).train())
    return images_per_second(result["log"], batch), flops


def latent_types(text: str) -> list[str]:
    """``--latents``' comma list -> latent types, in order ("" -> none)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def latent_subset(args: argparse.Namespace) -> int | None:
    """The number of images the latents stages run on when it is a subset of the set (``--latent-images``), else
    None (they run on the full data set). Raises ValueError when it is not a multiple of the class count."""
    if not args.latent_images or args.latent_images >= args.n:
        return None
    if args.latent_images % ms.CLASSES:
        raise ValueError(f"--latent-images {args.latent_images}: expected a multiple of {ms.CLASSES} (the first "
                         "images of each class folder)")
    return args.latent_images


def write_configs(args: argparse.Namespace, root: Path, run: Path, latents: list[str],
                  subset: int | None) -> tuple[Path, Path, dict[str, Any]]:
    """The run's config (all ``--n`` images) and the latents stages' config (the first ``subset`` images; the same
    file when there is no subset), and the experiment block written."""
    cfg = ms.write_config(run / "config.yaml", root, size=args.image_size, shard_size=args.shard_size,
                          steps=args.steps, batch=args.batch, per_class=args.n // ms.CLASSES, arch=args.arch,
                          workers=args.workers * 2)
    spec = yaml.safe_load(cfg.read_text())
    exp = spec["experiments"][EXPERIMENT]
    exp["models"]["mdm"] = {k: v for k, v in exp["models"]["kaleido"].items() if k != "prior"}
    exp["methods"] = [METHOD, "kaleido"]
    exp["guidance"] = [GUIDANCE]
    exp["latents"].update({name: {} for name in latents})  # the offline extractors' defaults
    exp["num_samples"] = exp["shard_size"] = args.samples  # one sample shard, shard 000
    exp["train"].update(log_every=10, precision="bf16" if args.device == "cuda" else "fp32", compile=args.compile)
    exp["metrics"].update(feature_device=args.device, feature_batch_size=256)
    cfg.write_text(yaml.safe_dump(spec))
    if subset is None:
        return cfg, cfg, exp
    # the first subset images, in shards small enough that every --latent-workers process gets parts to extract
    parts = max(1, -(-subset // (2 * args.latent_workers)))
    first = {**exp, "data": {**exp["data"], "max_per_class": subset // ms.CLASSES, "shard_size": parts}}
    sub = run / "config_latents.yaml"
    sub.write_text(yaml.safe_dump({**spec, "experiments": {EXPERIMENT: first}}))
    return cfg, sub, exp


def stage_commands(args: argparse.Namespace, cfg: Path, latents_cfg: Path, weights: Path,
                   latents: list[str]) -> dict[str, list[str]]:
    """Each stage's ``python`` arguments (run in the run directory), as ``workflow/rules/*.smk`` call them, in the
    DAG's order; ``data_latents`` (the latents' smaller data set) only when ``latents_cfg`` differs from ``cfg``."""
    common = ["--config", str(cfg), "--experiment", EXPERIMENT]
    sub = ["--config", str(latents_cfg), "--experiment", EXPERIMENT]
    latents_data = "data/train.npz" if latents_cfg == cfg else "data_latents/train.npz"
    commands = {"data": ["-m", "kaleido.data", *common, "--out", "data/train.npz"]}
    if latents and latents_cfg != cfg:
        commands["data_latents"] = ["-m", "kaleido.data", *sub, "--out", latents_data]
    for name in latents:
        commands[f"latents_{name}"] = ["-m", "kaleido.latents", *sub, "--latent", name, "--data", latents_data,
                                       "--out", f"latents/{name}.npz", "--quality", f"latents/{name}_quality.json",
                                       "--workers", str(args.latent_workers)]
    commands["train"] = ["-m", "kaleido.train", *common, "--role", "mdm", "--data", "data/train.npz", "--out",
                         "train/model.pt", "--device", args.device, "--threads", str(args.workers + 1),
                         "--loader-workers", str(args.workers), "--quiet"]
    commands["features"] = ["-m", "kaleido.features", *common, "--net", "domain", "--weights", str(weights),
                            "--out", "features/train.npz", "data/train.npz"]
    # the sample rule's command line plus --batch-size (speed only, never the samples): its default does not fit
    commands["sample"] = ["-m", "kaleido.sample", *common, "--method", METHOD, "--latent", "none", "--guidance",
                          str(GUIDANCE), "--shard", "000", "--model", "mdm=train/model.pt", "--device", args.device,
                          "--out", f"samples/{METHOD}/none/w{GUIDANCE}/shard000.npz", "--threads", str(args.workers),
                          "--batch-size", str(args.sample_batch)]
    return commands


def rule_threads(args: argparse.Namespace, stage: str) -> int | None:
    """The ``threads`` Snakemake would give ``stage``'s job, for the stages added to this run: ``--latent-workers``
    for latents (its rule passes its ``cpus_per_task`` as both; the stage's worker processes take one thread each),
    ``--workers`` for sample (its ``--threads``). None: the environment is left as it is (data, train, features, as
    in the earlier logs)."""
    if stage.startswith("latents_"):
        return args.latent_workers
    return args.workers if stage == "sample" else None


@contextlib.contextmanager
def thread_env(threads: int | None) -> Iterator[None]:
    """:data:`THREAD_VARIABLES` set to ``threads`` in this process (so in the stage it starts) while in the block."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    if threads is not None:
        os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stage_images(args: argparse.Namespace, stage: str, subset: int | None) -> int:
    """How many images ``stage`` ran on (the table's ``images`` column)."""
    if stage == "sample":
        return args.samples
    if stage == "data_latents" or stage.startswith("latents_"):
        return subset or args.n
    return args.n


def latent_rates(run: Path, latents: list[str]) -> dict[str, float]:
    """{latent: the extractor's images per second}, from each latents stage's quality JSON."""
    return {name: json.loads((run / "latents" / f"{name}_quality.json").read_text())["metrics"]["images_per_second"]
            for name in latents}


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
    parser.add_argument("--latents", default="bbox,color",
                        help="latent types the latents stages extract, comma-separated ('' skips the stages)")
    parser.add_argument("--latent-images", type=int, default=500,
                        help="the latents stages run on the first this many images (a multiple of 10), made into "
                             "their own data set; 0 = all --n (~0.13 s per 256 px image for bbox + color)")
    parser.add_argument("--latent-workers", type=int, default=1,
                        help="the latents stages' --workers (the rule passes its cpus_per_task): offline extractor "
                             "processes over the data shards, one thread each")
    parser.add_argument("--samples", type=int, default=1000, help="images the sample stage generates (one shard)")
    parser.add_argument("--sample-batch", type=int, default=50,
                        help="the sample stage's --batch-size (images per forward, doubled by CFG; best a divisor "
                             "of --samples: one compiled shape)")
    parser.add_argument("--work", type=Path, required=not _smoke.requested(argv),
                        help="working directory (kept; a smoke run's default is a temporary one)")
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a smoke run)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="train.compile, as config/imagenet256.yaml trains (the smoke run: off, compiling on "
                             "the CPU takes minutes)")
    parser.add_argument("--skip-stages", nargs="+", default=[], choices=("features", "sample"), metavar="STAGE",
                        help="leave these stages out (features, sample): a training-throughput run")
    args = _smoke.parse_args(parser, SMOKE, argv)
    try:
        latent_subset(args)
    except ValueError as err:
        parser.error(str(err))
    with _smoke.scratch(args.work) as args.work:
        run(args)


def run(args: argparse.Namespace) -> None:
    """Make the folder, run the stages and the resident peer in ``args.work``, print the table and the JSON line."""
    latents, subset = latent_types(args.latents), latent_subset(args)
    started = time.perf_counter()
    root = ms.make_image_folder(args.work / f"images_{args.n}_{args.image_size}", args.n, args.image_size,
                                ms.CLASSES, workers=args.workers * 2)
    folder_s = time.perf_counter() - started
    print(f"folder of {args.n} images ready in {folder_s:.0f} s", flush=True)
    run = args.work / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    cfg, latents_cfg, exp = write_configs(args, root, run, latents, subset)
    weights = ms.domain_weights(run / "domain.pt", args.image_size)
    commands = {stage: command for stage, command in stage_commands(args, cfg, latents_cfg, weights, latents).items()
                if stage not in args.skip_stages}
    rss, seconds = {}, {}
    for stage, command in commands.items():
        start = time.perf_counter()
        with thread_env(rule_threads(args, stage)):
            rss[stage] = ms.peak_rss_mb(command, run, fixed_malloc=False)  # the speeds are measured too
        seconds[stage] = time.perf_counter() - start
        # a line per stage as it ends: a run cut by a time limit still tells how far it got
        print(f"done {stage}: {seconds[stage]:.1f} s, peak RSS {rss[stage]:.0f} MiB", flush=True)
    log = (run / "train" / "train_log.jsonl").read_text().splitlines()
    streaming = images_per_second([json.loads(line) for line in log], args.batch)
    resident, flops = resident_images_per_second(run, cfg, args.resident, args.batch, args.device)
    sampling = args.samples / seconds["sample"] if "sample" in seconds else None
    top = peak(exp["train"]["precision"]) if flops else None
    extract = latent_rates(run, latents)
    set_gib = args.n * args.image_size**2 * 3 / 2**30
    print(f"{args.n} JPEGs of {args.image_size} px ({set_gib:.1f} GiB as uint8), folder made in {folder_s:.0f} s")
    print(f"{'stage':<15}{'images':>8}{'seconds':>9}{'peak RSS (MiB)':>16}")
    for stage in commands:
        print(f"{stage:<15}{stage_images(args, stage, subset):>8}{seconds[stage]:>9.1f}{rss[stage]:>16.0f}")
    for name, rate in extract.items():
        print(f"latents {name} (offline, {args.latent_workers} processes): {rate:.1f} img/s extracting")
    def mfu(rate: float) -> str:
        return f" (MFU {rate * flops / top:.1%})" if top else ""

    print(f"train {args.arch} {exp['train']['precision']}{' compiled' if args.compile else ''} batch {args.batch}"
          + (f", {flops / 1e9:.1f} GFLOP per image (fwd + bwd)" if flops else "")
          + f": streaming {streaming:.1f} img/s{mfu(streaming)} ({args.workers} loader workers, prefetch 4, pinned), "
          f"resident on the GPU {resident:.1f} img/s{mfu(resident)}, ratio {streaming / resident:.3f}")
    if sampling is not None:
        print(f"sample {METHOD} w={GUIDANCE} {exp['sampler']['name']} {exp['sampler']['steps']} steps, batch "
              f"{args.sample_batch}: {args.samples} images in {seconds['sample']:.1f} s = {sampling:.2f} img/s (the "
              "stage's wall clock: start-up, model load and compilation included)")
    print(json.dumps({"n": args.n, "image_size": args.image_size, "arch": args.arch, "batch": args.batch,
                      "loader_workers": args.workers, "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()},
                      "seconds": {k: round(v, 1) for k, v in seconds.items()},
                      "train_img_per_s": {"streaming": round(streaming, 2), "resident": round(resident, 2),
                                          "ratio": round(streaming / resident, 4)},
                      "train_compile": args.compile, "train_gflop_per_image": flops and round(flops / 1e9, 2),
                      "train_mfu": top and {"streaming": round(streaming * flops / top, 4),
                                            "resident": round(resident * flops / top, 4)},
                      "latent_images": subset or args.n, "latents_img_per_s": {k: round(v, 2) for k, v in
                                                                               extract.items()},
                      "samples": args.samples, "sample_img_per_s": sampling and round(sampling, 3)}))


if __name__ == "__main__":
    main()

"""Two GPUs vs one: DDP training, sampling shards spread over devices, features extracted on both GPUs.

    bash benchmarks/multi_gpu.sh [cuda|cpu]      # runs every step below and prints the comparison
    python benchmarks/multi_gpu.py --smoke       # the same steps at tiny sizes on the CPU (gloo), scratch directory

Steps (each a subcommand, so torchrun can launch ``train``):
  prepare   synthetic shapes images (uint8), a word tokenizer, a domain feature CNN trained on the images
  train     Kaleido image denoiser (NestedUNet + T5 prior), same global batch on however many ranks torchrun starts
  sample    generate(indices a:b) on one device with the trained EMA weights
  features  domain-CNN features of a sample file on one device
  report    loss curves of 1 vs 2 ranks, img/s, bit-equality of the sample shards, metric suite on both feature sets

With ``--smoke`` and a subcommand, that step runs at the smoke sizes; without one, every step does, in order (as
``multi_gpu.sh``, both "devices" the CPU, one after the other).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _smoke  # noqa: E402
from image_helpers import word_tokenizer  # noqa: E402
from latent_images import draw  # noqa: E402

from kaleido import checkpoint, config, distributed  # noqa: E402
from kaleido.generation import generate  # noqa: E402
from kaleido.training import train  # noqa: E402
from metrics.io import load_npz, save_npz_atomic  # noqa: E402

CLASSES = ["circle", "square", "triangle"]
SEQ_LEN = 6
#: multi_gpu.sh's CPU sizes, smaller: 12 steps (a loss line every 10 and at the last: the rate's interval), 8 samples
SMOKE = {"device": "cpu", "images": 16, "res": 16, "size": "nested_tiny", "batch": 4, "steps": 12,
         "precision": "fp32", "range": "0:8", "sample_steps": 2, "domain_steps": 10}


def _meta(work: Path, args: argparse.Namespace) -> dict:
    return {"role": "kaleido", "latent": "color", "data_shape": [args.res, args.res, 3], "num_classes": 3,
            "class_names": CLASSES, "vocab_size": 16, "seq_len": SEQ_LEN, "config_hash": "multi-gpu",
            "arch": {"arch": "nested_unet", "size": args.size, "cond_dim": 128, "pad_id": 0, "eos_id": 1,
                     "context": {"encoder": "t5_tiny", "tokenizer": str(work / "tok"), "max_length": 4}}}


def prepare(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    from metrics.features import domain

    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    tok = word_tokenizer(work / "tok", [*CLASSES, "red", "green", "blue", "yellow"])
    data = draw(args.images, size=args.res, seed=0)
    labels = np.array([CLASSES.index(s) for s in data["gt_shapes"][:, 0]], dtype=np.int64)
    strings = [f"{c} {s}" for c, s in zip(data["gt_colors"][:, 0], data["gt_shapes"][:, 0], strict=True)]
    ids = AutoTokenizer.from_pretrained(tok)(strings, padding="max_length", max_length=SEQ_LEN)["input_ids"]
    save_npz_atomic(work / "data.npz", x=data["x"], labels=labels, tokens=np.asarray(ids, dtype=np.int64))
    torch.save(domain.train(data["x"], labels, seed=0, steps=args.domain_steps), work / "domain.pt")


def train_cmd(args: argparse.Namespace) -> None:
    work = Path(args.dir)
    data = load_npz(work / "data.npz")
    group = distributed.init(args.device)
    spec = {"experiment": "multi-gpu", "seed": 0, "role": "kaleido", "latent": "color", "train_steps": args.steps,
            "diffusion": {"timesteps": 1000, "schedule": "cosine", "prediction": "eps"},
            "train": {"batch_size": args.batch, "lr": 2e-4, "warmup_steps": 20, "lr_schedule": "constant",
                      "grad_clip": 2.0, "ema_decay": 0.999, "cond_drop_prob": 0.1, "ar_loss_weight": 1.0,
                      "checkpoint_every": 10 ** 9, "grad_accum": 1, "precision": args.precision,
                      "compile": args.compile, "log_every": 10}}
    result = train(spec, data["x"], data["labels"], data["tokens"], work / args.name, _meta(work, args),
                   progress=False, group=group)
    if group.is_main:
        checkpoint.save(work / args.name / "model.pt", {"ema": result["ema"], "meta": _meta(work, args)})
        (work / args.name / "log.json").write_text(json.dumps({"world": group.world_size, "log": result["log"]}))
    distributed.shutdown()


def sample_cmd(args: argparse.Namespace) -> None:
    model, _ = checkpoint.load_denoiser(Path(args.dir) / args.name / "model.pt", args.device)
    start, stop = (int(v) for v in args.range.split(":"))
    exp = {"diffusion": {"timesteps": 1000, "schedule": "cosine", "prediction": "eps"},
           "sampler": {**config.block_defaults("sampler"), "name": "ddpm", "steps": args.sample_steps}, "cads": {}}
    out = generate(exp, 7, "kaleido", 4.0, range(start, stop), {"kaleido": model}, batch_size=args.batch)
    save_npz_atomic(args.out, **out)


def features_cmd(args: argparse.Namespace) -> None:
    from metrics.features import domain

    images = load_npz(args.input)["x"]
    feats = domain.extract(images, batch_size=256, device=args.device, weights=str(Path(args.dir) / "domain.pt"))
    save_npz_atomic(args.out, features=feats, labels=load_npz(args.input)["labels"])


def report_cmd(args: argparse.Namespace) -> None:
    from metrics.suite import compute_all

    work = Path(args.dir)
    one, two = (json.loads((work / name / "log.json").read_text()) for name in ("g1", "g2"))
    print(f"{'step':>6} {'loss 1 GPU':>11} {'loss 2 GPUs':>12} {'rel diff':>9}")
    worst = 0.0
    for a, b in zip(one["log"], two["log"], strict=True):
        rel = abs(a["loss"] - b["loss"]) / abs(a["loss"])
        worst = max(worst, rel)
        print(f"{a['step']:>6} {a['loss']:>11.5f} {b['loss']:>12.5f} {rel:>9.2e}")
    rates = []
    for run in (one, two):  # throughput between the 2nd log line (compile done) and the last
        first, last = run["log"][1 if len(run["log"]) > 2 else 0], run["log"][-1]
        rates.append((last["step"] - first["step"]) * args.batch / (last["seconds"] - first["seconds"]))
    print(f"max relative loss difference 1 vs 2 GPUs: {worst:.2e}")
    print(f"training img/s: 1 GPU {rates[0]:.1f}, 2 GPUs {rates[1]:.1f}: speed-up x{rates[1] / rates[0]:.2f}, "
          f"scaling efficiency {rates[1] / rates[0] / 2:.0%}")
    single = load_npz(work / "s_single.npz")
    halves = [load_npz(work / f"s_half{k}.npz") for k in (0, 1)]
    joined = np.concatenate([h["x"] for h in halves])
    same = np.array_equal(single["x"], joined)
    diff = np.abs(single["x"].astype(int) - joined.astype(int))
    print(f"samples: {len(joined)} images; shards on cuda:0 + cuda:1 bit-identical to one GPU: {same} "
          f"(max |diff| {diff.max()} of 255, {np.mean(diff > 0):.2e} of values differ); tokens identical: "
          f"{np.array_equal(single['tokens'], np.concatenate([h['tokens'] for h in halves]))}")
    real = load_npz(work / "f_real.npz")["features"]
    f_one = load_npz(work / "f_single.npz")
    f_two = [load_npz(work / f"f_half{k}.npz") for k in (0, 1)]
    fake_two = np.concatenate([f["features"] for f in f_two])
    print(f"features: max |diff| one GPU vs two GPUs {np.abs(f_one['features'] - fake_two).max():.2e}")
    m_one = compute_all(real, f_one["features"], labels_fake=f_one["labels"])
    m_two = compute_all(real, fake_two, labels_fake=np.concatenate([f["labels"] for f in f_two]))
    for key in sorted(m_one):
        a, b = float(m_one[key]), float(m_two[key])
        print(f"  {key:<22} 1 GPU {a:12.6g}   2 GPUs {b:12.6g}   rel diff {abs(a - b) / max(abs(a), 1e-12):.1e}")


def _with(args: argparse.Namespace, **changes: object) -> argparse.Namespace:
    """A copy of ``args`` with ``changes``: one step's arguments."""
    return argparse.Namespace(**{**vars(args), **changes})


def pipeline(args: argparse.Namespace) -> None:
    """Every step of ``multi_gpu.sh`` in ``args.dir``: ``train`` under torchrun on 1 and on 2 ranks, the others in
    this process; "both devices" are ``args.device``."""
    work = Path(args.dir)
    prepare(args)
    sizes = [f"--{key.replace('_', '-')}={getattr(args, key)}" for key in ("images", "res", "size", "batch", "steps",
                                                                          "precision")]
    for name, ranks in (("g1", 1), ("g2", 2)):
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                        __file__, "train", "--dir", str(work), "--name", name, "--device", args.device, *sizes,
                        *(["--compile"] if args.compile else [])], check=True)
    start, stop = (int(v) for v in args.range.split(":"))
    half = (start + stop) // 2
    for out, part in (("s_single", args.range), ("s_half0", f"{start}:{half}"), ("s_half1", f"{half}:{stop}")):
        sample_cmd(_with(args, name="g2", range=part, out=str(work / f"{out}.npz")))
    data = load_npz(work / "data.npz")
    save_npz_atomic(work / "real.npz", x=data["x"], labels=data["labels"])
    for name in ("real", "single", "half0", "half1"):
        source = "real" if name == "real" else f"s_{name}"
        features_cmd(_with(args, input=str(work / f"{source}.npz"), out=str(work / f"f_{name}.npz")))
    report_cmd(args)


def main(argv: list[str] | None = None) -> None:
    smoke = _smoke.requested(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["prepare", "train", "sample", "features", "report"],
                        nargs="?" if smoke else None, help="(smoke: every step when not given)")
    parser.add_argument("--dir", required=not smoke, help="working directory (smoke: a temporary one)")
    parser.add_argument("--name", default="g1")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=4096, help="training images")
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--size", default="nested_small")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--range", default="0:512")
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--input")
    parser.add_argument("--out")
    parser.add_argument("--domain-steps", type=int, default=100, help="training steps of the domain feature CNN")
    args = _smoke.parse_args(parser, SMOKE, argv)
    if args.command is None:  # a smoke run of every step
        with _smoke.scratch(None if args.dir is None else Path(args.dir)) as work:
            pipeline(_with(args, dir=str(work)))
        return
    {"prepare": prepare, "train": train_cmd, "sample": sample_cmd, "features": features_cmd,
     "report": report_cmd}[args.command](args)


if __name__ == "__main__":
    main()

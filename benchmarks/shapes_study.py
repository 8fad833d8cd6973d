"""MDM vs Kaleido diversity on the shapes images, on one GPU: train in parallel, sample the guidance grid, read modes.

    python benchmarks/shapes_study.py train  --root R [--steps 2500] [--budget 480]
    python benchmarks/shapes_study.py sample --root R [--num-samples 1000]
    python benchmarks/shapes_study.py --smoke      # both stages, MDM and Kaleido-bbox at w = 3, tiny, on the CPU

``train`` writes ``R/shapes_study.yaml`` (config/shapes.yaml with ``--steps`` training steps, bf16, methods mdm and
kaleido, guidance 1 / 3 / 7, ``--num-samples`` per cell in one shard), makes the data and the bbox / colour latents,
then trains MDM, Kaleido-bbox, Kaleido-colour and the ``domain`` feature CNN as concurrent processes on the one GPU
(each stops at ``--budget`` seconds, leaving its checkpoint to resume from). ``sample`` (run again after a cut
``train``: finished work is skipped) draws every (method, latent, w) sample set concurrently, extracts features,
evaluates, runs the latent edits, and prints the mode statistics of ``benchmarks/shapes_modes.py`` and the metric
table. The same stage CLIs as the DAG (README, "Pipeline"); every stage prints its wall time. ``--smoke`` runs
``train`` then ``sample`` (or the one named) in a scratch directory on the tests' ``tiny_shapes`` config, smaller still.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import _smoke  # noqa: E402

from kaleido import config as kcfg  # noqa: E402
from kaleido.seeding import derive_seed  # noqa: E402

EXPERIMENT = "shapes"
ALL_RUNS = ["mdm/none", "kaleido/bbox", "kaleido/color"]
#: a model without and one with a latent, the edits' weight only; 16 samples of each (evaluate needs 10)
SMOKE = {"steps": 2, "num_samples": 16, "num_train": 32, "device": "cpu", "runs": ["mdm/none", "kaleido/bbox"],
         "guidance": ["3"], "threads": 1}


def write_config(root: Path, steps: int, num_samples: int, num_train: int, device: str,
                 guidance: list[str], tiny: bool = False) -> Path:
    """config/shapes.yaml, scaled for a one-GPU study (``tiny``: first shrunk as the tests shrink it, so that
    batches, sampler steps and the feature CNN's training are small too); validated before it is used."""
    cfg = yaml.safe_load((REPO / "config" / "shapes.yaml").read_text())
    if tiny:
        cfg = _smoke.tiny_shapes(cfg)
    cfg["results_dir"] = str(root / "results")
    cfg["reports_dir"] = str(root / "reports")
    exp = cfg["experiments"][EXPERIMENT]
    exp["train"].update(steps=steps, checkpoint_every=250, precision="bf16" if device.startswith("cuda") else "fp32")
    exp["methods"] = ["mdm", "kaleido"]
    exp["guidance"] = [int(g) for g in guidance]
    exp.update(num_samples=num_samples, shard_size=num_samples)
    exp["metrics"]["bootstrap_resamples"] = 0
    exp["metrics"]["feature_device"] = device
    exp["data"]["num_train"] = num_train
    exp["edits"] = [{**e, "count": min(256, num_samples)} for e in exp["edits"] if str(e["guidance"]) in guidance]
    path = root / "shapes_study.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    kcfg.load(path)
    return path


def parallel(jobs: dict[Path, list[str]], budget: float | None = None) -> None:
    """Run ``python args`` for every output not yet present, all at once; print each one's wall time and status."""
    start = time.perf_counter()
    procs = {}
    for out, args in jobs.items():
        if out.exists():
            print(f"[skip] {out}", flush=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        log = open(out.with_suffix(".log"), "w")  # noqa: SIM115 (closed below)
        procs[out] = (subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT), log)
    for out, (proc, log) in procs.items():
        try:
            remaining = None if budget is None else max(1.0, budget - (time.perf_counter() - start))
            code = proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            proc.terminate()  # training checkpoints and exits 75 on SIGTERM
            code = proc.wait()
        log.close()
        status = "ok" if code == 0 else f"exit {code}, see {out.with_suffix('.log')}"
        print(f"[{time.perf_counter() - start:6.1f} s] {out} ({status})", flush=True)


def paths(root: Path) -> dict[str, Path]:
    res = root / "results" / EXPERIMENT
    return {"data": res / "data" / "train.npz", "latents": res / "latents", "train": res / "train",
            "samples": res / "samples", "features": res / "features", "metrics": res / "metrics",
            "edits": res / "edits"}


def prepare(config: Path, root: Path, runs: list[tuple[str, str]]) -> list[str]:
    p, common = paths(root), ["--config", str(config), "--experiment", EXPERIMENT]
    parallel({p["data"]: ["-m", "kaleido.data", *common, "--out", str(p["data"])]})
    parallel({p["latents"] / f"{lat}.npz": [
        "-m", "kaleido.latents", *common, "--latent", lat, "--data", str(p["data"]),
        "--out", str(p["latents"] / f"{lat}.npz"), "--quality", str(p["latents"] / f"{lat}_quality.json")]
        for lat in sorted({latent for _, latent in runs} - {"none"})})
    return common


def model_path(root: Path, role: str, latent: str) -> Path:
    return paths(root)["train"] / role / latent / "model.pt"


def train_jobs(args: argparse.Namespace, config: Path, common: list[str]) -> dict[Path, list[str]]:
    """The three models and the domain feature CNN (each resumes from its checkpoint when rerun)."""
    p, exp = paths(args.root), kcfg.experiment(kcfg.load(config), EXPERIMENT)
    jobs = {}
    for role, latent in args.runs:
        lat = ["--latents", str(p["latents"] / f"{latent}.npz")] if latent != "none" else []
        jobs[model_path(args.root, role, latent)] = [
            "-m", "kaleido.train", *common, "--role", role, "--latent", latent, "--data", str(p["data"]), *lat,
            "--out", str(model_path(args.root, role, latent)), "--device", args.device, "--quiet",
            "--threads", str(args.threads)]
    domain = p["features"] / "domain.pt"
    jobs[domain] = ["-m", "metrics.features.domain", "train", "--data", str(p["data"]), "--out", str(domain),
                    "--seed", str(derive_seed(EXPERIMENT, exp["seed"], "domain_net")),
                    "--steps", str(exp["metrics"]["feature_domain_steps"])]
    return jobs


def train(args: argparse.Namespace) -> None:
    config = write_config(args.root, args.steps, args.num_samples, args.num_train, args.device, args.guidance,
                          tiny=args.smoke)
    common = prepare(config, args.root, args.runs)
    parallel(train_jobs(args, config, common), budget=args.budget)
    for role, latent in args.runs:
        log = model_path(args.root, role, latent).parent / "train_log.jsonl"
        if log.exists():
            last = json.loads(log.read_text().splitlines()[-1])
            print(f"{role}/{latent}: {last}")


def sample(args: argparse.Namespace) -> None:
    config = args.root / "shapes_study.yaml"
    common = prepare(config, args.root, args.runs)
    parallel(train_jobs(args, config, common))  # finishes a training cut by `train`'s budget
    p = paths(args.root)
    shard = lambda m, lat, w: p["samples"] / m / lat / f"w{w}" / "shard000.npz"  # noqa: E731
    parallel({shard(m, lat, w): [
        "-m", "kaleido.sample", *common, "--method", m, "--latent", lat, "--guidance", w, "--shard", "000",
        "--model", f"{m}={model_path(args.root, m, lat)}", "--device", args.device, "--quiet",
        "--out", str(shard(m, lat, w))] for m, lat in args.runs for w in args.guidance})
    domain = ["--weights", str(p["features"] / "domain.pt")]
    reference = p["features"] / "domain" / "reference.npz"
    feats = lambda m, lat, w: p["features"] / "domain" / m / lat / f"w{w}.npz"  # noqa: E731
    jobs = {reference: ["-m", "kaleido.features", "--net", "domain", *common, *domain, "--out", str(reference),
                        str(p["data"])]}
    cells = [(m, lat, w) for m, lat in args.runs for w in args.guidance]
    jobs.update({feats(*c): ["-m", "kaleido.features", "--net", "domain", *common, *domain, "--out",
                             str(feats(*c)), str(shard(*c))] for c in cells})
    parallel(jobs)
    metric = lambda m, lat, w: p["metrics"] / m / lat / f"w{w}.json"  # noqa: E731
    jobs = {metric(m, lat, w): ["-m", "kaleido.evaluate", *common, "--method", m, "--latent", lat, "--guidance", w,
                                "--real", str(reference), "--fake", str(feats(m, lat, w)), "--out",
                                str(metric(m, lat, w)), str(shard(m, lat, w))] for m, lat, w in cells}
    edits = ["move", "recolor"] if ("kaleido", "bbox") in args.runs and "3" in args.guidance else []
    edit = lambda kind: p["edits"] / f"kaleido_bbox_w3_{kind}.npz"  # noqa: E731
    bbox_model = model_path(args.root, "kaleido", "bbox")
    jobs.update({edit(kind): ["-m", "kaleido.edit", *common, "--method", "kaleido", "--latent", "bbox",
                              "--guidance", "3", "--edit", kind, "--model", str(bbox_model),
                              "--latents", str(p["latents"] / "bbox.npz"), "--samples",
                              str(shard("kaleido", "bbox", "3")), "--device", args.device, "--quiet",
                              "--out", str(edit(kind))]
                 for kind in edits})
    parallel(jobs)
    keys = ("fd", "precision", "recall", "coverage", "vendi", "vendi_per_condition", "class_accuracy",
            "latent_well_formed")
    print(f"\n{'method':<10}{'latent':<8}{'w':>3}" + "".join(f"{k:>21}" for k in keys))
    for m, lat in args.runs:
        for w in args.guidance:
            values = json.loads(metric(m, lat, w).read_text())["metrics"]
            print(f"{m:<10}{lat:<8}{w:>3}" + "".join(f"{values.get(k, float('nan')):>21.4f}" for k in keys))
    for kind in edits:
        print(f"edit {kind}: {json.loads(edit(kind).with_suffix('.json').read_text())['metrics']}")
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "shapes_modes.py"), str(p["data"].parent.parent),
                    "--max-images", str(args.num_samples)], check=True)


def main(argv: list[str] | None = None) -> None:
    smoke = _smoke.requested(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["train", "sample"], nargs="?" if smoke else None,
                        help="(smoke: both when not given)")
    parser.add_argument("--root", type=Path, required=not smoke,
                        help="scratch directory for results and the config (smoke: a temporary one)")
    parser.add_argument("--steps", type=int, default=2500, help="training steps per model")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds before training is stopped")
    parser.add_argument("--num-samples", type=int, default=1000, help="samples per (method, latent, w)")
    parser.add_argument("--num-train", type=int, default=20000, help="training images")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test")
    parser.add_argument("--runs", nargs="+", default=ALL_RUNS, choices=ALL_RUNS, help="method/latent pairs")
    parser.add_argument("--guidance", nargs="+", default=["1", "3", "7"], help="guidance weights")
    parser.add_argument("--threads", type=int, default=4, help="torch threads of each training process")
    args = _smoke.parse_args(parser, SMOKE, argv)
    args.runs = [tuple(r.split("/")) for r in args.runs]
    with _smoke.scratch(args.root) as args.root:
        for stage in [args.stage] if args.stage else ["train", "sample"]:
            {"train": train, "sample": sample}[stage](args)


if __name__ == "__main__":
    main()

"""Run one experiment's stages in order on one machine without Snakemake (e.g. a lone GPU box), then print its table.

    python benchmarks/run_stages.py --config config/shapes.yaml --experiment shapes [--device cuda] [--threads 8]
    python benchmarks/run_stages.py --smoke      # the toy experiment shrunk to seconds, in a scratch directory

The same stage commands the DAG runs (README, "Pipeline"), one after another, each skipped when its output exists
(so a killed run resumes). Training and sampling use ``--device``; feature extraction follows the config's
``metrics.feature_device``. No MLflow and no report: it ends by printing FD / precision / recall / Vendi / MSS per
(method, latent, guidance). For the full pipeline use Snakemake; this is the recipe for a machine without it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import _smoke

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kaleido import config as kcfg  # noqa: E402
from kaleido.methods import METHODS, NO_LATENT, ROLES  # noqa: E402
from kaleido.seeding import derive_seed  # noqa: E402

#: no --config: the toy experiment shrunk (``_smoke.toy_config``), written with its results into a scratch directory
SMOKE = {"experiment": "toy2d", "threads": 1}


def step(out: Path, args: list[str]) -> None:
    """Run ``python args`` unless ``out`` exists; print the command and its wall time."""
    if out.exists():
        print(f"[skip] {out}", flush=True)
        return
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): python {' '.join(args)}\n{done.stderr[-3000:]}")
    print(f"[{time.perf_counter() - start:6.1f} s] {out}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=not _smoke.requested(argv))
    parser.add_argument("--experiment", required=not _smoke.requested(argv))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=4)
    args = _smoke.parse_args(parser, SMOKE, argv)
    if args.config is None:  # a smoke run
        with _smoke.scratch() as root:
            args.config = _smoke.write_yaml(root / "config.yaml", _smoke.toy_config(root))
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    """Every stage of ``args.experiment`` in order, then its metric table."""
    cfg = kcfg.load(args.config)
    exp = kcfg.experiment(cfg, args.experiment)
    root = Path(cfg["results_dir"]) / args.experiment
    common = ["--config", str(args.config), "--experiment", args.experiment]
    threads = ["--threads", str(args.threads)]
    data = root / "data" / "train.npz"
    step(data, ["-m", "kaleido.data", *common, "--out", str(data)])
    for latent in sorted(exp["latents"]):
        out = root / "latents" / f"{latent}.npz"
        step(out, ["-m", "kaleido.latents", *common, "--latent", latent, "--data", str(data), "--out", str(out),
                   "--quality", str(root / "latents" / f"{latent}_quality.json")])
    models = {}
    for role, latent in kcfg.trained_models(cfg, args.experiment):
        out = models[role, latent] = root / "train" / role / latent / "model.pt"
        extra = ["--latents", str(root / "latents" / f"{latent}.npz")] if latent != NO_LATENT else []
        step(out, ["-m", "kaleido.train", *common, "--role", role, "--latent", latent, "--data", str(data), *extra,
                   "--out", str(out), "--device", args.device, *threads])
    net = exp["metrics"]["feature_net"]
    weights = []
    if net == "domain":
        domain = root / "features" / "domain.pt"
        step(domain, ["-m", "metrics.features.domain", "train", "--data", str(data), "--out", str(domain), "--seed",
                      str(derive_seed(args.experiment, exp["seed"], "domain_net")), "--steps",
                      str(exp["metrics"]["feature_domain_steps"])])
        weights = ["--weights", str(domain)]
    reference = root / "features" / net / "reference.npz"
    step(reference, ["-m", "kaleido.features", "--net", net, *common, *weights, "--out", str(reference), str(data)])
    rows = []
    for run in kcfg.runs(cfg):
        if run.experiment != args.experiment:
            continue
        method = METHODS.get(run.method)
        shards = []
        for shard in range(kcfg.num_shards(exp)):
            out = root / "samples" / run.method / run.latent / f"w{run.guidance}" / f"shard{shard:03d}.npz"
            roles = [a for role in method.roles for a in (
                "--model", f"{role}={models[role, run.latent if ROLES.get(role).uses_latent else NO_LATENT]}")]
            step(out, ["-m", "kaleido.sample", *common, "--method", run.method, "--latent", run.latent,
                       "--guidance", run.guidance, "--shard", f"{shard:03d}", *roles, "--device", args.device,
                       "--out", str(out), *threads])
            shards.append(str(out))
        features = root / "features" / net / run.method / run.latent / f"w{run.guidance}.npz"
        step(features, ["-m", "kaleido.features", "--net", net, *common, *weights, "--out", str(features), *shards])
        metrics = root / "metrics" / run.method / run.latent / f"w{run.guidance}.json"
        step(metrics, ["-m", "kaleido.evaluate", *common, "--method", run.method, "--latent", run.latent,
                       "--guidance", run.guidance, "--real", str(reference), "--fake", str(features), "--out",
                       str(metrics), *shards])
        rows.append((run, json.loads(metrics.read_text())["metrics"]))
    keys = ("fd", "precision", "recall", "vendi", "vendi_per_condition", "mss")
    print(f"\n{'method':<18}{'latent':<8}{'w':>4}" + "".join(f"{k:>21}" for k in keys))
    for run, values in rows:
        print(f"{run.method:<18}{run.latent:<8}{run.guidance:>4}"
              + "".join(f"{values.get(k, float('nan')):>21.4f}" for k in keys))


if __name__ == "__main__":
    main()

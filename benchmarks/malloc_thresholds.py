"""The toy experiment's CPU stages under glibc's default malloc thresholds vs :mod:`kaleido.malloc`'s fixed ones.

    python benchmarks/malloc_thresholds.py [--samples 25000] [--steps 100] [--train-steps 500] [--repeat 3] [--smoke]

Runs the sample stage (``kaleido.sample.main``: one job of the default config's toy experiment, MDM, w = 8) and
the train stage (Kaleido with its latent prior, ``--train-steps`` steps) in fresh processes, alternating the two
malloc settings ``--repeat`` times, one torch thread each. Prints per stage the median wall, user and system
seconds of each setting, the ratio of the medians, and whether the outputs are bit-identical (they must be:
the thresholds move memory, not arithmetic).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import _smoke
import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
SMOKE = {"samples": 256, "steps": 5, "train_steps": 20, "repeat": 1}
#: the stage in a fresh interpreter, with (argv[1] == "fixed") or without the thresholds set first
_DRIVER = """
import resource, sys, time
if sys.argv[1] == "fixed":
    from kaleido.malloc import keep_freed_memory
    assert keep_freed_memory(), "mallopt refused the thresholds (not glibc?)"
import importlib
stage = importlib.import_module(sys.argv[2])
start = time.perf_counter()
stage.main(sys.argv[3:])
usage = resource.getrusage(resource.RUSAGE_SELF)
print(f"TIMES {time.perf_counter() - start} {usage.ru_utime} {usage.ru_stime}")
"""
SETTINGS = ("default", "fixed")


def timed_stage(setting: str, module: str, args: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall, user, system) seconds of ``module.main(args)`` in a fresh process (user / system include the
    imports; wall is its main() alone)."""
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", _DRIVER, setting, module, *args], cwd=cwd, capture_output=True,
                          text=True, env={**env_free, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        sys.exit(f"{module} ({setting}) failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("TIMES "))
    wall, user, system = map(float, line.split()[1:])
    return wall, user, system


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=25000, help="samples of the sampling job (the default's)")
    parser.add_argument("--steps", type=int, default=100, help="DDPM steps (the default's)")
    parser.add_argument("--train-steps", type=int, default=500, help="training steps of the timed training job")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting and stage (medians reported)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = _smoke.parse_args(parser, SMOKE, argv)
    with _smoke.scratch(args.keep, prefix="malloc_thresholds_") as work:
        run(args, work)


def run(args: argparse.Namespace, work: Path) -> None:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    exp = cfg["experiments"]["toy2d"]
    exp.update(num_samples=args.samples, shard_size=args.samples)
    exp["sampler"]["steps"] = args.steps
    exp["train"].update(steps=args.train_steps, checkpoint_every=args.train_steps)
    config = _smoke.write_yaml(work / "config.yaml", cfg)
    common = ["--config", str(config), "--experiment", "toy2d"]
    prep = [("kaleido.data.__main__", [*common, "--out", "data.npz"]),
            ("kaleido.train", [*common, "--role", "mdm", "--latent", "none", "--data", "data.npz", "--out",
                               "mdm.pt", "--threads", "1"])]
    if not args.smoke:
        prep.insert(1, ("kaleido.latents.__main__", [*common, "--latent", "kmeans", "--data", "data.npz", "--out",
                                                     "kmeans.npz"]))
    for module, stage_args in prep:
        timed_stage("fixed", module, stage_args, work)
    stages = {
        "sample": ("kaleido.sample", lambda out: [*common, "--method", "mdm", "--latent", "none", "--guidance", "8",
                                                  "--shard", "0", "--model", "mdm=mdm.pt", "--threads", "1",
                                                  "--quiet", "--out", out]),
        "train": ("kaleido.train", lambda out: [*common, "--role", "kaleido", "--latent", "kmeans", "--data",
                                                "data.npz", "--latents", "kmeans.npz", "--threads", "1", "--out",
                                                out]),
    }
    if args.smoke:  # every process start costs seconds here; the sample stage runs the same timing code
        _smoke.skip("the train stage's timing", "three more stage processes (the latents and two timed trainings)")
        del stages["train"]
    print(f"toy2d on {args.samples} samples x {args.steps} DDPM steps (CFG) and {args.train_steps} Kaleido training "
          f"steps; one torch thread; medians of {args.repeat} runs per setting (wall s / user s / system s)")
    for stage, (module, stage_args) in stages.items():
        times: dict[str, list[tuple[float, float, float]]] = {s: [] for s in SETTINGS}
        outputs: dict[str, Path] = {}
        for i in range(args.repeat):
            for setting in SETTINGS:
                # a folder per run: a training run resumes from the checkpoint.pt beside its output
                out = work / f"{stage}_{setting}_{i}" / ("shard.npz" if stage == "sample" else "model.pt")
                out.parent.mkdir()
                times[setting].append(timed_stage(setting, module, stage_args(str(out)), work))
                outputs.setdefault(setting, out)
        medians = {s: [statistics.median(t[k] for t in times[s]) for k in range(3)] for s in SETTINGS}
        for setting in SETTINGS:
            wall, user, system = medians[setting]
            print(f"  {stage:<7} {setting:<8} {wall:7.2f} / {user:7.2f} / {system:6.2f}")
        print(f"  {stage:<7} fixed vs default: x{medians['default'][0] / medians['fixed'][0]:.2f} wall; outputs "
              f"{'bit-identical' if same_output(outputs['default'], outputs['fixed']) else 'DIFFER'}", flush=True)


def same_output(a: Path, b: Path) -> bool:
    """Whether two sample shards (``x``) or two checkpoints (``ema`` weights) hold the same bits."""
    if a.suffix == ".npz":
        return bool(np.array_equal(np.load(a)["x"], np.load(b)["x"]))
    import torch

    left, right = (torch.load(p, map_location="cpu", weights_only=False)["ema"] for p in (a, b))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


if __name__ == "__main__":
    main()

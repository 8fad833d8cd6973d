"""Sharded generation: one shard of a (method, latent, guidance) sample set.

    python -m kaleido.sample --config C --experiment toy2d --method kaleido --latent kmeans --guidance 8 \
        --shard 0 --model kaleido=results/toy2d/train/kaleido/kmeans/model.pt --out shard000.npz

The samples are :func:`kaleido.generation.generate` of the shard's global indices (their randomness depends on
the index alone, never on the shard, batch size or device order); Kaleido's latent tokens are saved beside x.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kaleido import config
from kaleido.cli import load_stage_config, run_cli, stage_parser
from kaleido.methods import METHODS, NO_LATENT
from kaleido.provenance import provenance
from metrics.errors import InputError
from metrics.io import save_npz_atomic


def _parse_models(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        role, sep, path = item.partition("=")
        if not sep:
            raise InputError(f"--model {item!r}: expected ROLE=PATH, e.g. mdm=results/toy2d/train/mdm/none/model.pt")
        out[role] = Path(path)
    return out


def parser() -> argparse.ArgumentParser:
    """The stage's command line."""
    out = stage_parser(__doc__.split("\n\n")[0])
    out.add_argument("--method", required=True, help=f"one of {METHODS.names()}")
    out.add_argument("--latent", default=NO_LATENT,
                     help=f"latent type of a Kaleido method (one the experiment extracts), else '{NO_LATENT}'")
    out.add_argument("--guidance", required=True, help="guidance weight, as formatted in the method's grid")
    out.add_argument("--shard", required=True, type=int,
                     help="shard number k: samples k*shard_size .. (k+1)*shard_size - 1 of the set")
    out.add_argument("--model", action="append", default=[], help="ROLE=PATH of a trained model (repeat)")
    out.add_argument("--batch-size", type=int, default=None,
                     help="samples per forward pass (default: the config's sampler.batch_size); changes speed and "
                          "memory only, never the samples")
    out.add_argument("--conditions", type=Path, default=None,
                     help="where a captioned model's conditions come from: the data index (data/train.npz) or the "
                          "held-out caption file of data.eval_captions (sample i gets caption i mod sample_conditions)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    out.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K (shards can go to different GPUs; "
                     "the samples do not depend on it beyond floating-point rounding)")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    cfg, exp = load_stage_config(args)
    method = METHODS.get(args.method)
    if args.method not in exp["methods"]:
        raise InputError(f"--method {args.method}: experiment {args.experiment} runs {exp['methods']}")
    if args.latent not in config.latents_of(exp, args.method):
        accepted = config.latents_of(exp, args.method)
        raise InputError(f"--latent {args.latent!r}: method {args.method} accepts {accepted}")
    weight = config.parse_guidance(exp, args.guidance, "--guidance", method=args.method)
    indices = config.shard_range(exp, args.shard)
    paths = _parse_models(args.model)
    missing = [role for role in method.roles if role not in paths]
    if missing:
        raise InputError(f"method {args.method} needs --model for roles {missing}")
    from kaleido import checkpoint  # torch: after the arguments and the config are checked
    from kaleido.generation import generate, sample_conditions, sample_seed

    loaded = {role: checkpoint.load_denoiser(paths[role], args.device) for role in method.roles}
    models = {role: model for role, (model, _) in loaded.items()}
    texts = checkpoint.attach_condition_texts(loaded, args.conditions)
    spec = config.stage_spec(cfg, args.experiment, "sample", method=args.method, latent=args.latent,
                             guidance=args.guidance, shard=str(args.shard))
    seed = sample_seed(args.experiment, exp, args.method, args.latent, args.guidance)
    batch_size = exp["sampler"]["batch_size"] if args.batch_size is None else args.batch_size
    arrays = generate(exp, seed, args.method, weight, indices, models, batch_size, progress=not args.quiet)
    main_meta = loaded[method.model][1]
    if "class_names" in main_meta:  # image models: what each label means (sample grids, captions)
        arrays["class_names"] = np.array(main_meta["class_names"])
    elif texts is not None:  # a captioned model: the texts the labels stand for (the first sample_conditions)
        arrays["class_names"] = np.asarray(texts[:sample_conditions(exp, len(texts))], dtype=str)
    meta = provenance("kaleido.sample", spec)
    meta["models"] = {role: str(path) for role, path in sorted(paths.items())}
    save_npz_atomic(args.out, meta=meta, **arrays)


if __name__ == "__main__":
    run_cli(main)

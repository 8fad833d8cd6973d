"""Extract one latent type over the training set.

    python -m kaleido.latents --config C --experiment E --latent kmeans --data train.npz --out kmeans.npz \
        [--quality kmeans_quality.json]

Vector data (``x`` (n, d)): writes ``tokens`` (n, L) int64 and ``vocab_size``; ``--quality`` also writes how well
the tokens recover the generator's ground-truth modes (when the data set has them), for the report.

Image data (``x`` (n, H, W, 3) uint8) with a string extractor (bbox, blob, color, voken, text, combined): writes
``strings`` (n,) unicode, ``input_ids`` / ``tokens`` (n, L) int64 padded with ``pad_token_id``, ``attention_mask``
(n, L) int64, ``vocab_size``, ``pad_token_id``, ``eos_token_id``, ``names`` (the object vocabulary the parser
accepts), ``tokenizer_dir`` (the tokenizer's directory name, beside the npz: ``<out stem>_tokenizer``, loadable with
``AutoTokenizer.from_pretrained``) and extractor arrays (voken: ``voken_ids``, ``voken_codebook``). ``--quality``
writes the extraction speed, string statistics and, when the data has ``gt_*`` ground truth, the match quality
(:mod:`kaleido.latents.quality`).

    python -m kaleido.latents ... --job k --jobs K --done job.json

Extraction job k of K of a sharded image set: writes the part files of its data shards (``<out stem>.part-*.npz``,
:func:`kaleido.latents.stage.job_shards`) and ``--done``, a record of them; the run without ``--job`` then reads
the finished parts instead of extracting them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaleido import config
from kaleido.cli import load_stage_config, run_cli, stage_parser
from kaleido.latents import EXTRACTORS, recovery_accuracy
from kaleido.provenance import provenance
from kaleido.seeding import derive_seed
from metrics.errors import InputError
from metrics.io import save_npz_atomic, write_json_atomic
from metrics.store import load_data


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--latent", required=True, help="latent type (a key of the experiment's `latents`)")
    parser.add_argument("--data", required=True, type=Path, help="training data npz (data stage output)")
    parser.add_argument("--quality", type=Path, help="also write recovery quality JSON here")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes for an offline image extractor over the parts of a sharded set (default 1)")
    parser.add_argument("--job", type=int, help="extract only the data shards of extraction job JOB (0-based)")
    parser.add_argument("--jobs", type=int, default=1, help="number of extraction jobs (with --job)")
    parser.add_argument("--done", type=Path, help="with --job: the record of the job's part files, written last")
    args = parser.parse_args(argv)
    cfg, exp = load_stage_config(args)
    if args.latent not in exp["latents"]:
        raise InputError(f"--latent {args.latent!r}: experiment {args.experiment} defines {sorted(exp['latents'])}")
    spec = config.stage_spec(cfg, args.experiment, "latents", latent=args.latent)
    data = load_data(args.data)
    seed = derive_seed(args.experiment, exp["seed"], "latents", args.latent)
    extractor = EXTRACTORS.get(args.latent)
    prov = provenance("kaleido.latents", spec)
    if args.job is not None:
        _extraction_job(args, extractor, data, exp["latents"][args.latent], seed, prov)
        return
    if extractor.kind == "strings":
        from kaleido.latents.stage import extract_image_latents

        extract_image_latents(extractor, args.latent, data, exp["latents"][args.latent], seed, args.out,
                              args.quality, {"experiment": args.experiment, "provenance": prov}, max(1, args.workers))
        return
    codes = extractor.extract(data["x"], data["labels"], exp["latents"][args.latent], seed)
    save_npz_atomic(args.out, meta=prov, tokens=codes.tokens, vocab_size=np.int64(codes.vocab_size))
    if args.quality:
        quality = {"num_items": len(codes.tokens), "vocab_size": codes.vocab_size}
        if "modes" in data:
            quality["latent_recovery_accuracy"] = recovery_accuracy(codes.tokens, data["labels"], data["modes"])
        write_json_atomic(args.quality, {"experiment": args.experiment, "latent": args.latent, "metrics": quality,
                                         "provenance": prov})



def _extraction_job(args: Any, extractor: Any, data: dict[str, Any], spec: dict[str, Any], seed: int,
                    prov: dict[str, Any]) -> None:
    """``--job k --jobs K``: the part files of job k's data shards, then the ``--done`` record."""
    from kaleido.latents.stage import extract_parts, image_context, job_shards, splits_by_part

    if args.done is None:
        raise InputError("--job needs --done (the record the job writes when its parts are finished)")
    if extractor.kind != "strings" or not splits_by_part(extractor, data["x"], spec):
        raise InputError(f"--job: latent {args.latent!r} cannot be split into extraction jobs here: it needs a "
                         "sharded image set (data.shard_size, >= 2 shards) and an extractor whose strings are per "
                         "image (bbox, blob, color, text, voken; not a whole-set one like kmeans); set "
                         "resources.latents.jobs: 1")
    shards = job_shards(len(data["x"].files), args.job, args.jobs)
    paths = extract_parts(args.latent, data["x"], image_context(data), spec, seed, args.out, prov, shards,
                          max(1, args.workers))
    write_json_atomic(args.done, {"experiment": args.experiment, "latent": args.latent, "job": args.job,
                                  "jobs": args.jobs, "shards": shards, "parts": [p.name for p in paths],
                                  "provenance": prov})


if __name__ == "__main__":
    run_cli(main)

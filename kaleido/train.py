"""Stage II training, the stage's command line: a diffusion denoiser (MDM, the autoguidance guide, or Kaleido with
its AR prior), trained by :func:`kaleido.training.train`.

Rerunning the same command resumes from ``checkpoint.pt`` in the output's directory; with the same config the
resumed run ends with exactly the weights of an uninterrupted one. ``--help`` and argument errors answer before
torch is imported.

    python -m kaleido.train --config C.yaml --experiment toy2d --role kaleido --latent kmeans \
        --data results/toy2d/data/train.npz --latents results/toy2d/latents/kmeans.npz \
        --out results/toy2d/train/kaleido/kmeans/model.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaleido import config
from kaleido.cli import load_stage_config, run_cli, stage_parser
from kaleido.data import DATASETS, condition_text
from kaleido.latents import tokenizer as tok
from kaleido.latents.stage import tokenizer_dir
from kaleido.methods import NO_LATENT, ROLES
from kaleido.preemption import EXIT_PREEMPTED, Preempted, PreemptionFlag
from kaleido.provenance import provenance
from metrics.errors import InputError
from metrics.io import load_npz, load_npz_head, write_text_atomic
from metrics.store import load_data

#: a captioned set with the offline context tokenizer: its BPE is built from the first this many texts (recorded in
#: the model file, so sampling rebuilds the same tokenizer)
TOKENIZER_TEXTS = 4096


def compact_id_dtype(vocab_size: int) -> np.dtype:
    """The smallest integer dtype that holds token ids below ``vocab_size``: a set's (n, L) latents are held in
    it (2 bytes a token for vocabularies up to 65,536 instead of 8), and each batch is widened to int64."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.int32 if vocab_size <= 2**31 else np.int64)


def parser() -> argparse.ArgumentParser:
    """The stage's command line."""
    out = stage_parser(__doc__.split("\n\n")[0])
    out.add_argument("--role", required=True, help=f"model role: {ROLES.names()}")
    out.add_argument("--latent", default=NO_LATENT, help="latent type (roles with latents) or 'none'")
    out.add_argument("--data", required=True, type=Path, help="training data npz (data stage output)")
    out.add_argument("--latents", type=Path, help="latent tokens npz (latents stage output)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    out.add_argument("--device", default="cpu", help="cpu, cuda (under torchrun: cuda:$LOCAL_RANK) or cuda:K")
    out.add_argument("--loader-workers", type=int, default=None,
                     help="data-loader processes per training process (default: 0 for a set held in memory, "
                          "else min(8, --threads - 1)); changes speed, never the result")
    out.add_argument("--prefetch", type=int, default=4, help="batches each loader process reads ahead")
    return out


def prepare(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], np.ndarray | None, dict[str, Any]]:
    """(stage spec, the data set (``x`` streamed from its shards when sharded), latent tokens (n, L) or None, the
    model's meta) for the parsed command line; InputError for a role/latent/input mismatch."""
    cfg, exp = load_stage_config(args)
    role = ROLES.get(args.role)
    if args.role not in exp["models"]:
        raise InputError(f"--role {args.role}: experiment {args.experiment} defines models {sorted(exp['models'])}")
    if role.uses_latent != (args.latent != NO_LATENT) or (role.uses_latent and args.latent not in exp["latents"]):
        raise InputError(f"--latent {args.latent!r}: role {args.role} needs "
                         + (f"one of {sorted(exp['latents'])}" if role.uses_latent else f"'{NO_LATENT}'"))
    spec = config.stage_spec(cfg, args.experiment, "train", role=args.role, latent=args.latent)
    data = load_data(args.data)
    tokens, vocab_size, seq_len, latent_grammar = None, 0, 0, None
    arch = dict(exp["models"][args.role])
    if role.uses_latent:
        if args.latents is None:
            raise InputError(f"role {args.role} needs --latents (the latents stage output)")
        # only the arrays training reads: the strings, masks and extractor outputs beside them are O(n) too
        lat = load_npz(args.latents, required=("tokens", "vocab_size"),
                       keys=("pad_token_id", "eos_token_id", "names"))
        vocab_size = int(lat["vocab_size"])
        tokens = lat["tokens"].astype(compact_id_dtype(vocab_size), copy=False)  # batches widen to int64
        seq_len = tokens.shape[1]
        if len(tokens) != len(data["x"]):
            raise InputError(f"{args.latents}: {len(tokens)} latents for {len(data['x'])} items in {args.data}")
        if "pad_token_id" in lat:  # image latents: token strings through a tokenizer (pad / EOS ids)
            from kaleido.latents import grammar

            arch.update(pad_id=int(lat["pad_token_id"]), eos_id=int(lat["eos_token_id"]))
            latent_grammar = grammar.grammar_meta(
                args.latent, tok.load_pretrained(str(tokenizer_dir(args.latents))), vocab_size,
                [str(n) for n in lat.get("names", [])], tokens[:grammar.CHECK_ROWS],
                [str(t) for t in load_npz_head(args.latents, "strings", grammar.CHECK_ROWS)])
    prov = provenance("kaleido.train", spec)
    text_key = condition_text(exp["data"])
    if text_key is not None:  # each item its own condition: as many as items
        num_classes = len(data["x"])
    else:
        num_classes = (len(data["class_names"]) if "class_names" in data
                       else DATASETS.get(exp["data"]["name"]).num_classes(exp["data"]))
    meta = {"role": args.role, "latent": args.latent, "arch": arch, "num_classes": num_classes,
            "vocab_size": vocab_size, "seq_len": seq_len,
            "diffusion": exp["diffusion"], "config_hash": prov["config_hash"],
            "provenance_json": json.dumps(prov, sort_keys=True)}
    if data["x"].ndim == 4 and text_key is not None:  # captioned images: T5 reads each batch's texts
        meta.update(data_shape=list(data["x"].shape[1:]), condition_text=text_key)
        if arch.get("context", {}).get("tokenizer", "offline") == "offline":  # a BPE built from the first texts
            meta["tokenizer_texts"] = [str(t) for t in data[text_key][:TOKENIZER_TEXTS]]
    elif data["x"].ndim == 4:  # uint8 images (n, H, W, C): the image denoiser conditions on the class names
        meta.update(data_shape=list(data["x"].shape[1:]), class_names=[str(c) for c in data["class_names"]])
    else:
        meta["data_dim"] = int(np.prod(data["x"].shape[1:]))
    if latent_grammar is not None:  # what the sampler needs to keep the prior's strings well formed
        meta["latent_grammar"] = latent_grammar
    return spec, data, tokens, meta


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    spec, data, tokens, meta = prepare(args)
    from kaleido import checkpoint, distributed  # torch: after the arguments and the inputs are checked
    from kaleido.training import loader_settings, train

    group = distributed.init(args.device)
    try:
        with PreemptionFlag() as flag:
            result = train(spec, data["x"], data["labels"], tokens, args.out.parent, meta,
                           condition_texts=data[meta["condition_text"]] if "condition_text" in meta else None,
                           progress=not args.quiet, group=group, preemption=flag,
                           loader=loader_settings(data["x"], args.loader_workers, args.prefetch, args.threads))
    except Preempted as stop:
        print(f"preempted: {stop}", file=sys.stderr)
        sys.exit(EXIT_PREEMPTED)
    finally:
        distributed.shutdown()
    if group.is_main:
        write_text_atomic(args.out.parent / "train_log.jsonl",
                          "".join(json.dumps(r) + "\n" for r in result["log"]))
        checkpoint.save(args.out, {"ema": result["ema"], "meta": meta})


if __name__ == "__main__":
    run_cli(main)

"""Latent editing: edit sampled latent strings and regenerate the images with the same noise.

    python -m kaleido.edit --config C --experiment shapes --method kaleido --latent bbox --guidance 3 --edit move \
        --model results/shapes/train/kaleido/bbox/model.pt --latents results/shapes/latents/bbox.npz \
        --samples results/shapes/samples/kaleido/bbox/w3/shard000.npz --out results/shapes/edits/.../move.npz

For the first ``count`` samples of the shard: decode each latent, apply the edit (:mod:`kaleido.latents.edits`),
and sample the edited latent with the sample's own seed and index, so x_T and every step's noise are those of the
original image (the original is regenerated too and must equal the shard's image). The experiment's latent
extractor then reads the latent off both images; ``edit_success_rate`` is the share of edited images that follow the
edit, ``control_rate`` the share of unedited ones that "follow" it anyway (what the test gives by chance).
Writes the image pairs (.npz, for the report's figure) and the rates (.json, logged to MLflow by the report).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaleido import config
from kaleido.cli import load_stage_config, run_cli, stage_parser
from kaleido.latents import EXTRACTORS
from kaleido.latents import tokenizer as tok
from kaleido.latents.edits import EDITS
from kaleido.latents.formats import LatentFormatError
from kaleido.latents.images import ImageContext
from kaleido.latents.stage import tokenizer_dir
from kaleido.methods import METHODS
from kaleido.provenance import provenance
from kaleido.seeding import derive_seed
from metrics.io import load_npz, save_npz_atomic, write_json_atomic


def edit_strings(edit_name: str, strings: Sequence[str], index: np.ndarray, names: Sequence[str]
                 ) -> list[str | None]:
    """The edited latent of each string, or None where the edit does not apply or the string is malformed."""
    edit = EDITS.get(edit_name)
    out: list[str | None] = []
    for text, i in zip(strings, index, strict=True):
        try:
            out.append(edit.apply(text, int(i), names))
        except LatentFormatError:  # a prior sample that is not a well-formed latent: nothing to edit
            out.append(None)
    return out


def encode_fixed(tokenizer: Any, strings: Sequence[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (n, seq_len) padded with the pad id, fits (n,) bool): a string longer than the model's latent length
    cannot be fed to it (its row is left as padding and ``fits`` is False)."""
    ids, _ = tok.encode(tokenizer, list(strings))
    out = np.full((len(strings), seq_len), tokenizer.pad_token_id, dtype=np.int64)
    lengths = (ids != tokenizer.pad_token_id).sum(axis=1)
    fits = lengths <= seq_len
    width = min(seq_len, ids.shape[1])
    out[fits, :width] = ids[fits, :width]
    return out, fits


def read_latents(extractor_name: str, spec: dict[str, Any], images: np.ndarray, labels: np.ndarray,
                 class_names: list[str] | None, seed: int) -> list[str]:
    """The latent strings the experiment's extractor reads off ``images`` (n, H, W, 3) uint8."""
    ctx = ImageContext(labels=labels, class_names=class_names, captions=None)
    return list(EXTRACTORS.get(extractor_name).extract_strings(images, ctx, spec, seed).strings)


def run_edit(exp: dict[str, Any], experiment: str, item: dict[str, Any], model: Any, tokenizer: Any,
             names: list[str], samples: dict[str, np.ndarray], progress: bool = False) -> dict[str, Any]:
    """Edit the first ``item["count"]`` samples and regenerate them; returns arrays for the npz and ``metrics``."""
    from kaleido.generation import generate, sample_seed  # torch: the command line answers --help without it

    count = min(item["count"], len(samples["index"]))
    index, labels = samples["index"][:count], samples["labels"][:count]
    before = tok.decode(tokenizer, samples["tokens"][:count])
    edited = edit_strings(item["edit"], before, index, names)
    ok = np.array([e is not None for e in edited])
    after = [e if e is not None else b for e, b in zip(edited, before, strict=True)]
    after_ids, fits = encode_fixed(tokenizer, after, model.seq_len)
    keep = ok & fits
    metrics = {"num_edited": int(keep.sum()), "num_not_editable": int((~ok).sum()),
               "num_too_long": int((ok & ~fits).sum())}
    if not keep.any():  # e.g. a prior that does not yet write well-formed latents: a result, not an error
        return {"arrays": {"index": index[:0], "latent_before": np.array(before, dtype=str)[:0]},
                "metrics": {**metrics, "edit_success_rate": float("nan"), "control_rate": float("nan")}}
    guidance = config.format_guidance(item["guidance"])
    seed = sample_seed(experiment, exp, item["method"], item["latent"], guidance)
    keep_index = index[keep]
    tokens = np.concatenate([samples["tokens"][:count][keep], after_ids[keep]])
    out = generate(exp, seed, item["method"], float(item["guidance"]), np.concatenate([keep_index, keep_index]),
                   {METHODS.get(item["method"]).model: model}, progress=progress, tokens=tokens)
    x_before, x_after = np.split(out["x"], 2)
    reproduced = float(np.mean(np.all(x_before == samples["x"][:count][keep], axis=(1, 2, 3))))
    class_names = [str(c) for c in samples["class_names"]] if "class_names" in samples else None
    read_seed = derive_seed(experiment, exp["seed"], "edit", item["latent"])
    spec = exp["latents"][item["latent"]]
    read_labels = np.concatenate([labels[keep], labels[keep]])
    detected = read_latents(item["latent"], spec, np.concatenate([x_before, x_after]), read_labels, class_names,
                            read_seed)
    kept_before = [s for s, k in zip(before, keep, strict=True) if k]
    kept_after = [s for s, k in zip(after, keep, strict=True) if k]
    took_effect = EDITS.get(item["edit"]).took_effect
    n = int(keep.sum())
    success = np.array([took_effect(b, a, d) for b, a, d in zip(kept_before, kept_after, detected[n:], strict=True)])
    control = np.array([took_effect(b, a, d) for b, a, d in zip(kept_before, kept_after, detected[:n], strict=True)])
    metrics.update(edit_success_rate=float(success.mean()), control_rate=float(control.mean()),
                   reproduced_fraction=reproduced)
    arrays = {"index": keep_index, "labels": labels[keep], "x_before": x_before, "x_after": x_after,
              "latent_before": np.array(kept_before), "latent_after": np.array(kept_after),
              "detected_before": np.array(detected[:n]), "detected_after": np.array(detected[n:]),
              "success": success, "control": control}
    if class_names is not None:
        arrays["class_names"] = np.array(class_names)
    return {"arrays": arrays, "metrics": metrics}


def parser() -> argparse.ArgumentParser:
    """The stage's command line."""
    out = stage_parser(__doc__.split("\n\n")[0])
    out.add_argument("--method", default="kaleido", help="a latent method (its model is --model)")
    out.add_argument("--latent", required=True, help="the latent type the edit acts on (one the experiment extracts)")
    out.add_argument("--guidance", required=True, help="guidance weight, as formatted in the method's grid")
    out.add_argument("--edit", required=True, help=f"one of {EDITS.names()}")
    out.add_argument("--model", required=True, type=Path, help="the method's trained model file")
    out.add_argument("--latents", required=True, type=Path, help="the latents stage output (its tokenizer)")
    out.add_argument("--samples", required=True, type=Path, help="a sample shard of (method, latent, guidance)")
    out.add_argument("--json", type=Path, help="also write the rates here (default: --out with .json)")
    out.add_argument("--conditions", type=Path, default=None,
                     help="the data index whose item texts a captioned model reads (as the sample stage's)")
    out.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    cfg, exp = load_stage_config(args)
    item = config.edit_item(exp, args.method, args.latent, args.guidance, args.edit)
    spec = config.stage_spec(cfg, args.experiment, "edit", method=args.method, latent=args.latent,
                             guidance=args.guidance, edit=args.edit)
    samples = load_npz(args.samples, required=("x", "index", "labels", "tokens"))
    latents = load_npz(args.latents, required=("names",))
    tokenizer = tok.load_pretrained(str(tokenizer_dir(args.latents)))
    from kaleido import checkpoint  # torch

    model, model_meta = checkpoint.load_denoiser(args.model, args.device)
    checkpoint.attach_condition_texts({"model": (model, model_meta)}, args.conditions)
    result = run_edit(exp, args.experiment, item, model, tokenizer, [str(n) for n in latents["names"]], samples,
                      progress=not args.quiet)
    meta = provenance("kaleido.edit", spec)
    save_npz_atomic(args.out, meta=meta, **result["arrays"])
    write_json_atomic(args.json or args.out.with_suffix(".json"),
                      {"experiment": args.experiment, "latent": args.latent, "metrics": result["metrics"],
                       "stage": f"edit_{args.method}_w{args.guidance}_{args.edit}", "provenance": meta})
    print(f"edit {args.edit}: {result['metrics']}")


if __name__ == "__main__":
    run_cli(main)

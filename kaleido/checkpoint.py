"""Saving and loading trained denoisers (``weights_only`` loading: a checkpoint cannot execute code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kaleido.models.denoiser import ConditionalDenoiser
from kaleido.models.interface import Denoiser
from metrics.errors import InputError
from metrics.io import atomic_path, remove_stale_temps, verify_zip


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """``torch.save`` ``payload`` atomically (removing temporary files an earlier, killed save left behind)."""
    remove_stale_temps(path)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; a truncated or corrupt file is named in the error.

    Every member's CRC-32 is verified first (``torch.load`` itself would load a flipped byte silently).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    verify_zip(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # RuntimeError / EOFError / UnpicklingError all mean unusable
        raise InputError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); delete it and rerun "
                         "the training step") from None


def build_denoiser(meta: dict[str, Any], pretrained_weights: bool = True) -> Denoiser:
    """A fresh denoiser with the architecture recorded in a checkpoint's ``meta``.

    Image archs (``meta["arch"]["arch"]`` in IMAGE_ARCHS) build an ImageDenoiser from ``data_shape`` [H, W, C],
    ``num_classes``, ``vocab_size`` (0 = MDM), ``seq_len`` and ``class_names`` (or, captioned, ``condition_text`` and
    ``tokenizer_texts``); others the toy ConditionalDenoiser.
    ``pretrained_weights=False``: a pretrained AR prior (``prior.pretrained``) gets its architecture only, not its
    checkpoint's weights, for a caller that loads a state dict next (the model file holds the whole resized prior).
    """
    from kaleido.models.archs import IMAGE_ARCHS

    if meta["arch"]["arch"] in IMAGE_ARCHS:
        from kaleido.models.image_denoiser import ImageDenoiser

        return ImageDenoiser(meta["arch"], data_shape=meta["data_shape"], num_classes=meta["num_classes"],
                             vocab_size=meta.get("vocab_size", 0), seq_len=meta.get("seq_len", 0),
                             class_names=meta.get("class_names"), latent_grammar=meta.get("latent_grammar"),
                             pretrained_prior=pretrained_weights, condition_text=meta.get("condition_text"),
                             tokenizer_texts=meta.get("tokenizer_texts"))
    return ConditionalDenoiser(meta["arch"], data_dim=meta["data_dim"], num_classes=meta["num_classes"],
                               vocab_size=meta["vocab_size"], seq_len=meta["seq_len"])


def load_denoiser(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """The EMA weights of a finished training run, in eval mode, and the run's ``meta``."""
    ckpt = load(path, device)
    if "ema" not in ckpt or "meta" not in ckpt:
        raise InputError(f"{path}: not a finished model file (keys {sorted(ckpt)}); rerun the training step")
    model = build_denoiser(ckpt["meta"], pretrained_weights=False)  # every weight comes from the file
    try:
        model.load_state_dict(ckpt["ema"])
    except RuntimeError as err:  # the model code changed since this file was trained
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise InputError(f"{path}: its weights do not fit this version's model ({first}); it was trained by "
                         "other code: delete it and rerun the training step") from None
    return model.to(device).eval(), ckpt["meta"]


def condition_texts(path: Path, key: str) -> Any:
    """The condition texts a captioned model samples from: the text column ``key`` of a data index (``.npz``, read
    in place: :class:`metrics.store.TextColumn`), or the lines of a held-out caption file (any other suffix)."""
    if path.suffix == ".npz":
        from metrics.store import TextColumn

        return TextColumn(path, key)
    from kaleido.data.captions import read_caption_lines

    return read_caption_lines(path)


def attach_condition_texts(loaded: dict[str, tuple[Any, dict[str, Any]]], conditions: Path | None) -> Any:
    """Give each captioned model of ``loaded`` ({role: (model, meta)}) the condition texts of ``conditions`` (the
    data index it was trained on, or a held-out caption file: :func:`condition_texts`); returns them, or None when no
    model is captioned. InputError when a captioned model has no ``conditions``, or a data index's text count
    differs from the model's."""
    captioned = {role: meta for role, (_, meta) in loaded.items() if meta.get("condition_text")}
    if not captioned:
        return None
    if conditions is None:
        raise InputError(f"models {sorted(captioned)} read each item's text: pass --conditions (the data stage's "
                         "train.npz, or the held-out caption file of data.eval_captions)")
    texts = None
    for role, meta in captioned.items():
        texts = condition_texts(conditions, meta["condition_text"])
        if conditions.suffix == ".npz" and len(texts) != meta["num_classes"]:
            raise InputError(f"--conditions {conditions}: {len(texts)} {meta['condition_text']}, but model {role} "
                             f"was trained on {meta['num_classes']}; pass the data index it was trained on")
        loaded[role][0].condition_texts = texts
    return texts

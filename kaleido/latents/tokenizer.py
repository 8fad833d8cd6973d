"""The tokenizer shared by the latent strings and the AR prior (one tokenizer serves every latent type).

- ``"offline"``: a byte-level BPE trained with the ``tokenizers`` library on the training strings; digits are split
  one per token (any number in any latent is encodable: numbers as text); ``<pad>`` = 0, ``</s>`` = 1 (appended to
  every sequence, as T5 does), ``<unk>`` = 2. Decoding gives back the exact string.
- any other value: a Hugging Face tokenizer name or path (the paper: ``t5-xl``'s T5 tokenizer), loaded with
  ``local_files_only=True`` from the local cache (``HF_HOME``) -- a clear error if it is missing.
Visual tokens (``<v0>`` ... ``<v{K-1}>``) are added as whole tokens (``add_tokens``, not special: they survive
``decode(..., skip_special_tokens=True)``); T5's SentencePiece adds spaces around them on decoding, which
:func:`decode` removes (:func:`canonical_spacing`), so latent strings round-trip with either tokenizer.
The result is saved with ``save_pretrained(dir)``; ``transformers.AutoTokenizer.from_pretrained(dir)`` loads it
whatever its origin (use :func:`decode`, not ``batch_decode``, to get canonical latent strings back).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metrics.errors import InputError

SPECIAL = ("<pad>", "</s>", "<unk>")
#: BPE vocabulary size of the offline tokenizer (before added visual tokens)
OFFLINE_VOCAB_SIZE = 2000


def build_offline(strings: Sequence[str], vocab_size: int = OFFLINE_VOCAB_SIZE) -> Any:
    """Train a byte-level BPE on ``strings`` -> ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(strings), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def load_pretrained(name: str) -> Any:
    """A Hugging Face tokenizer by name, path or ``org/name@revision`` (:mod:`kaleido.pretrained`), local files only."""
    from transformers import AutoTokenizer

    from kaleido.pretrained import resolve

    try:
        return AutoTokenizer.from_pretrained(resolve(name, "tokenizer"), local_files_only=True)
    except (OSError, ValueError) as err:
        import os

        cache = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
        raise InputError(f"tokenizer {name!r} is not available offline (looked in the Hugging Face cache {cache} "
                         f"and as a local directory): {err}. Fetch it on a host with internet with `python -m "
                         f"kaleido.weights fetch --config C` or `huggingface-cli download {name}` (or "
                         "tokenizer.save_pretrained(DIR)) and copy the cache or directory here, or set the latent's "
                         "`tokenizer: offline`.") from None


def build(kind: str, strings: Sequence[str], added_tokens: Sequence[str]) -> Any:
    tokenizer = build_offline(strings) if kind == "offline" else load_pretrained(kind)
    if tokenizer.pad_token is None:
        raise InputError(f"tokenizer {kind!r} has no pad token; the AR prior needs one")
    if added_tokens:
        tokenizer.add_tokens(list(added_tokens))
    return tokenizer


def encode(tokenizer: Any, strings: Sequence[str], chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """strings -> (input_ids (n, L) int64 padded with the pad id, attention_mask (n, L) int64), L the longest.

    Encoded ``chunk`` strings at a time, each chunk written straight into the (n, L) arrays (widened when a later
    chunk is longer): a tokenizer's per-call output holds ~150 bytes of Python objects per token, and keeping the
    chunks' arrays until the end doubled the output and fragmented the heap (RSS grew ~9 KiB per string; with
    512-string chunks it grows by the output arrays only, 2 x 8 bytes per token)."""
    n, pad = len(strings), tokenizer.pad_token_id
    left = getattr(tokenizer, "padding_side", "right") == "left"
    input_ids = np.full((n, 0), pad, dtype=np.int64)
    attention_mask = np.zeros((n, 0), dtype=np.int64)
    for start in range(0, n, chunk):
        enc = tokenizer(list(strings[start:start + chunk]), padding="longest", return_attention_mask=True,
                        return_tensors="np")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        extra = ids.shape[1] - input_ids.shape[1]
        if extra > 0:  # re-pad what is done to the new longest, on the tokenizer's side
            grow = ((0, 0), (extra, 0) if left else (0, extra))
            input_ids = np.pad(input_ids, grow, constant_values=pad)
            attention_mask = np.pad(attention_mask, grow)
        width = input_ids.shape[1]
        cols = slice(width - ids.shape[1], width) if left else slice(0, ids.shape[1])
        input_ids[start:start + len(ids), cols] = ids
        attention_mask[start:start + len(ids), cols] = mask
    return input_ids, attention_mask


def canonical_spacing(text: str) -> str:
    """Undo the spaces SentencePiece (T5) puts around added visual tokens: ``<v1> #<v0>`` -> ``<v1>#<v0>``,
    ``...) |<v1>`` -> ``...) | <v1>``. A no-op on strings in the latent formats."""
    text = _VOKEN_GAP.sub("#", text)
    return _PART_GAP.sub("| ", text)


_VOKEN_GAP = re.compile(r"(?<=>)\s*#\s*(?=<v\d)")
_PART_GAP = re.compile(r"\|\s*(?=<v\d)")


def decode(tokenizer: Any, input_ids: np.ndarray) -> list[str]:
    """(n, L) ids -> strings (pad/eos dropped, :func:`canonical_spacing` applied)."""
    texts = tokenizer.batch_decode(np.asarray(input_ids).tolist(), skip_special_tokens=True)
    return [canonical_spacing(t) for t in texts]


def save(tokenizer: Any, directory: str | Path) -> None:
    """``save_pretrained`` into ``directory`` atomically (temp dir + rename)."""
    import shutil
    import tempfile

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tokenizer.save_pretrained(str(tmp))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)

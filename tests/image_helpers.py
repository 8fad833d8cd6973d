"""Offline tokenizers and image sets for image-model tests (what the latents and data stages read, in miniature)."""

from __future__ import annotations

from pathlib import Path


def word_tokenizer(path: Path, words: list[str]) -> str:
    """A word-level fast tokenizer over ``words`` (+ <pad>=0, </s>=1, <unk>=2), saved with save_pretrained."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path)
    return str(path)


def captioned_shapes(folder: Path, n: int, image_size: int = 32, seed: int = 0, held_out: int = 0) -> Path:
    """A CC12M-style captioned set made offline: ``n`` shapes images as PNG files in ``folder`` and the
    ``path<TAB>caption`` file the ``captions`` data set reads (``folder/captions.tsv``, with its header line), each
    caption the shapes generator's ground-truth description ("a red circle above an orange square"); with
    ``held_out``, also ``folder/eval_captions.txt``: that many captions of other images (seed + 1), one per line."""
    import numpy as np
    from PIL import Image

    from kaleido.data import DATASETS

    data = DATASETS.get("shapes").generate({"name": "shapes", "num_train": n, "image_size": image_size}, seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["path\tcaption"]
    for i, (image, text) in enumerate(zip(data["x"], data["captions"], strict=True)):
        Image.fromarray(np.asarray(image)).save(folder / f"{i:05d}.png")
        lines.append(f"{i:05d}.png\t{text}")
    tsv = folder / "captions.tsv"
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if held_out:
        other = DATASETS.get("shapes").generate({"name": "shapes", "num_train": held_out, "image_size": 8}, seed + 1)
        (folder / "eval_captions.txt").write_text("\n".join(other["captions"]) + "\n", encoding="utf-8")
    return tsv

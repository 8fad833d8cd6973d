"""Offline tokenizers for image-model tests (what the latents stage builds, in miniature)."""

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

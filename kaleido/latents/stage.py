"""The latents stage for image data: strings -> shared tokenizer -> ids, written beside the tokenizer directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from kaleido.latents import tokenizer as tok
from kaleido.latents.images import ImageContext
from metrics.errors import InputError
from metrics.io import save_npz_atomic, write_json_atomic


def tokenizer_dir(out: Path) -> Path:
    """``results/<exp>/latents/<latent>.npz`` -> ``results/<exp>/latents/<latent>_tokenizer``."""
    return out.with_name(f"{out.stem}_tokenizer")


def extract_image_latents(extractor: Any, latent: str, data: dict[str, Any], spec: dict[str, Any], seed: int,
                          out: Path, quality_path: Path | None, header: dict[str, Any]) -> dict[str, Any]:
    """Run ``extractor`` on ``data["x"]`` (n, H, W, 3) uint8, write ``out`` (+ tokenizer dir, + quality JSON)."""
    from kaleido.latents.quality import ground_truth, latent_quality

    images = data["x"]
    if images.ndim != 4:
        raise InputError(f"latent {latent!r} needs image data x (N, H, W, 3) uint8; got x of shape {images.shape}")
    ctx = ImageContext(labels=data["labels"],
                       class_names=[str(c) for c in data["class_names"]] if "class_names" in data else None,
                       captions=data.get("captions"))
    start = time.perf_counter()
    result = extractor.extract_strings(images, ctx, spec, seed)
    seconds = time.perf_counter() - start
    tokenizer = tok.build(spec.get("tokenizer", "offline"), list(result.strings), result.added_tokens)
    input_ids, attention_mask = tok.encode(tokenizer, list(result.strings))
    tok_dir = tokenizer_dir(Path(out))
    tok.save(tokenizer, tok_dir)
    save_npz_atomic(out, meta=header["provenance"], strings=result.strings, input_ids=input_ids, tokens=input_ids,
                    attention_mask=attention_mask, vocab_size=np.int64(len(tokenizer)),
                    pad_token_id=np.int64(tokenizer.pad_token_id), eos_token_id=np.int64(tokenizer.eos_token_id),
                    names=np.array(result.names, dtype=str), tokenizer_dir=np.array(tok_dir.name), **result.arrays)
    lengths = attention_mask.sum(axis=1)
    words = np.array([len(s.split()) for s in result.strings])
    metrics: dict[str, Any] = {
        "num_items": len(images), "vocab_size": len(tokenizer), "extract_seconds": seconds,
        "images_per_second": len(images) / seconds if seconds > 0 else float("inf"),
        "tokens_mean": float(lengths.mean()), "tokens_max": int(lengths.max()),
        "words_mean": float(words.mean()), "words_min": int(words.min()), "words_max": int(words.max()),
        "distinct_strings": int(len(np.unique(result.strings))),
    }
    truth = ground_truth(data)
    if truth is not None:
        metrics.update(latent_quality(latent, list(result.strings), truth, result.names or None))
    if quality_path:
        write_json_atomic(quality_path, {"experiment": header["experiment"], "latent": latent, "metrics": metrics,
                                         "provenance": header["provenance"]})
    return metrics

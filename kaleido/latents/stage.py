"""The latents stage for image data: strings -> shared tokenizer -> ids, written beside the tokenizer directory.

A sharded data set is extracted part by part, one part per data shard, when the extractor's strings are per item
(:func:`extract_in_parts`): each part's strings are saved beside the output as they are done, so a killed stage
resumes at the first missing part, and the offline (CPU) extractors run their parts in parallel processes. The
strings do not depend on the partition: each is a function of its image and context only.

At scale the parts are spread over extraction jobs (``resources.latents.jobs``; the CLI's ``--job k --jobs K``,
:func:`job_shards`): each job writes its data shards' part files and a done record, and the stage's final job only
reads the parts, builds the tokenizer and writes the token file (the index training reads).
"""

from __future__ import annotations

import functools
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kaleido.latents import EXTRACTORS
from kaleido.latents import tokenizer as tok
from kaleido.latents.images import ImageContext, LatentStrings
from metrics.errors import InputError
from metrics.io import load_npz, save_npz_atomic, write_json_atomic
from metrics.store import ShardedArray


def tokenizer_dir(out: Path) -> Path:
    """``results/<exp>/latents/<latent>.npz`` -> ``results/<exp>/latents/<latent>_tokenizer``."""
    return out.with_name(f"{out.stem}_tokenizer")


def part_paths(out: Path, count: int) -> list[Path]:
    """``<out stem>.part-00003-of-00129.npz`` beside ``out``: the strings of each part of the set."""
    return [out.with_name(f"{out.stem}.part-{k:05d}-of-{count:05d}.npz") for k in range(count)]


def _extract_part(latent: str, spec: dict[str, Any], seed: int, images: ShardedArray, ctx: ImageContext,
                  k: int) -> LatentStrings:
    """Shard ``k``'s strings, its images still read batch by batch (a module-level function, so that a worker
    process can run it)."""
    rows = slice(int(images.starts[k]), int(images.starts[k + 1]))
    return EXTRACTORS.get(latent).extract_strings(images.shard(k), ctx.part(rows), spec, seed)


#: the variables OpenMP / BLAS runtimes read their thread count from when they load
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _one_thread() -> None:
    """Worker initializer: one BLAS / OpenMP thread per process (the stage's ``--workers`` processes share the job's
    cores; Snakemake sets ``OMP_NUM_THREADS`` to all of them).

    ``threadpool_limits`` reaches only the runtimes already loaded; scikit-learn's OpenMP (k-means of the ``color``
    latent) loads later, on the first extraction, and reads the environment then. Without the variables each of 16
    workers ran 16 k-means threads on 16 cores: 12x slower than ``bbox`` (benchmarks/logs/streaming_train_h100_oom.log).
    """
    import os

    from threadpoolctl import threadpool_limits

    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    threadpool_limits(1)


def job_shards(count: int, job: int, jobs: int) -> list[int]:
    """The data shards extraction job ``job`` of ``jobs`` owns: contiguous, near-equal blocks of ``range(count)``
    (a job past the last shard owns none)."""
    if not 0 <= job < jobs:
        raise InputError(f"--job {job} is outside 0..{jobs - 1} (--jobs {jobs})")
    return [int(k) for k in np.array_split(np.arange(count), jobs)[job]]


def splits_by_part(extractor: Any, images: Any, spec: dict[str, Any]) -> bool:
    """Whether ``images`` is extracted part by part (one part per data shard): a sharded set of >= 2 shards and an
    extractor whose strings are per item."""
    return isinstance(images, ShardedArray) and len(images.files) >= 2 and extractor.per_item(spec)


def _finished(path: Path, stamp: str) -> bool:
    if not path.is_file():
        return False
    try:
        return json.dumps(load_npz(path, required=("strings",))["meta"], sort_keys=True) == stamp
    except (InputError, OSError, KeyError):
        return False


def extract_parts(latent: str, images: ShardedArray, ctx: ImageContext, spec: dict[str, Any], seed: int, out: Path,
                  key: dict[str, Any], shards: list[int], workers: int = 1) -> list[Path]:
    """Write the :func:`part_paths` file of each data shard in ``shards`` not already finished under ``key`` (the
    stage's provenance: a rerun with another config or code recomputes it); return those shards' part files.

    Offline extractors run ``workers`` parts at a time in processes; pretrained ones run in this process (the GPU).
    """
    paths = part_paths(out, len(images.files))
    stamp = json.dumps(key, sort_keys=True)
    todo = [k for k in shards if not _finished(paths[k], stamp)]
    run = functools.partial(_extract_part, latent, spec, seed, images, ctx)
    parallel = workers > 1 and len(todo) > 1 and spec.get("source", "offline") == "offline"
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), initializer=_one_thread) if parallel else None
    try:
        results = (pool.map if pool is not None else map)(run, todo)
        for k, part in zip(todo, results, strict=True):
            save_npz_atomic(paths[k], meta=key, strings=part.strings, names=np.array(part.names, dtype=str),
                            added_tokens=np.array(part.added_tokens, dtype=str),
                            count_names=np.array(sorted(part.counts), dtype=str),
                            count_values=np.array([part.counts[c] for c in sorted(part.counts)], dtype=np.int64))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return [paths[k] for k in shards]


def extract_in_parts(extractor: Any, latent: str, images: Any, ctx: ImageContext, spec: dict[str, Any], seed: int,
                     out: Path, key: dict[str, Any], workers: int = 1) -> LatentStrings:
    """The extractor's strings of every image, part by part when :func:`splits_by_part` (else in one call): the
    parts the stage's extraction jobs (``--job``) have finished are read, the others extracted here
    (:func:`extract_parts`)."""
    if not splits_by_part(extractor, images, spec):
        return extractor.extract_strings(images, ctx, spec, seed)
    paths = extract_parts(latent, images, ctx, spec, seed, out, key, list(range(len(images.files))), workers)
    parts = [load_npz(path, required=("strings", "names", "added_tokens")) for path in paths]
    for path, part in zip(paths[1:], parts[1:], strict=True):
        if list(part["added_tokens"]) != list(parts[0]["added_tokens"]):
            raise InputError(f"{path}: its added tokens differ from {paths[0]}'s; delete the part files and rerun")
    strings = np.concatenate([part["strings"] for part in parts]) if parts else np.zeros(0, dtype="<U1")
    counts: dict[str, int] = {}
    for part in parts:
        for name, value in zip(part.get("count_names", []), part.get("count_values", []), strict=True):
            counts[str(name)] = counts.get(str(name), 0) + int(value)
    return LatentStrings(strings, names=_merged_names(paths, [[str(n) for n in part["names"]] for part in parts]),
                         added_tokens=[str(t) for t in parts[0]["added_tokens"]], counts=counts)


def _merged_names(paths: list[Path], names: list[list[str]]) -> list[str]:
    """The object vocabulary of the whole set from its parts': the same list in every part (a fixed vocabulary:
    palette, class names, a detector's labels), or, where each part's is sorted (the nouns of the part's own
    captions), their sorted union, which is the whole set's (a part does not depend on the partition)."""
    if all(part == names[0] for part in names[1:]):
        return names[0]
    unsorted = [path for path, part in zip(paths, names, strict=True) if part != sorted(part)]
    if unsorted:
        raise InputError(f"{unsorted[0]}: its object names differ from {paths[0]}'s and are not a sorted "
                         "vocabulary that parts can merge; delete the part files and rerun")
    return sorted(set().union(*names))


def image_context(data: dict[str, Any]) -> ImageContext:
    """The per-image context (labels, class names, captions) the extractors read from a loaded data set."""
    return ImageContext(labels=data["labels"],
                        class_names=[str(c) for c in data["class_names"]] if "class_names" in data else None,
                        captions=data.get("captions"))


def extract_image_latents(extractor: Any, latent: str, data: dict[str, Any], spec: dict[str, Any], seed: int,
                          out: Path, quality_path: Path | None, header: dict[str, Any],
                          workers: int = 1) -> dict[str, Any]:
    """Run ``extractor`` on ``data["x"]`` (n, H, W, 3) uint8 (:func:`extract_in_parts`), write ``out`` (+ tokenizer
    dir, + quality JSON), then remove the part files."""
    from kaleido.latents.quality import ground_truth, latent_quality

    images = data["x"]
    if images.ndim != 4:
        raise InputError(f"latent {latent!r} needs image data x (N, H, W, 3) uint8; got x of shape {images.shape}")
    ctx = image_context(data)
    start = time.perf_counter()
    result = extract_in_parts(extractor, latent, images, ctx, spec, seed, Path(out), header["provenance"], workers)
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
        **result.counts,  # the extractor's tallies (bbox / blob with caption_nouns: images_without_queries)
    }
    truth = ground_truth(data)
    if truth is not None:
        metrics.update(latent_quality(latent, list(result.strings), truth, result.names or None))
    if quality_path:
        write_json_atomic(quality_path, {"experiment": header["experiment"], "latent": latent, "metrics": metrics,
                                         "provenance": header["provenance"]})
    for path in Path(out).parent.glob(f"{Path(out).stem}.part-*-of-*.npz"):
        path.unlink(missing_ok=True)
    return metrics

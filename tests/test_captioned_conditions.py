"""Captioned sets at CC12M scale: captions stored as a text column read in place, and models that encode each
batch's captions with the frozen T5 instead of caching one state per caption."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from image_helpers import word_tokenizer

from kaleido.checkpoint import attach_condition_texts, build_denoiser
from kaleido.errors import ConfigError
from metrics.errors import InputError
from metrics.store import TextColumn, encode_text_column, load_data, save_data

CAPTIONS = ["a red box left of a blue box", "ünïcode café ✓", "", "a dog", "the tabby cat on the right"]


@pytest.mark.parametrize("shard_size", [None, 2])
def test_text_column_round_trip(tmp_path, shard_size) -> None:
    x = np.zeros((len(CAPTIONS), 2, 2, 3), np.uint8)
    save_data(tmp_path / "d.npz", {"x": x, "labels": np.arange(len(CAPTIONS)),
                                   "captions": np.array(CAPTIONS, dtype=object)}, {"k": 1}, shard_size)
    column = load_data(tmp_path / "d.npz")["captions"]
    assert isinstance(column, TextColumn) and len(column) == len(CAPTIONS) and column.shape == (5,)
    assert [column[i] for i in range(5)] == CAPTIONS and column[-1] == CAPTIONS[-1]
    assert list(column[np.array([4, 0, 2, 0])]) == [CAPTIONS[4], CAPTIONS[0], "", CAPTIONS[0]]  # gather, in order
    assert list(column[1:3]) == CAPTIONS[1:3] and list(np.asarray(column)) == CAPTIONS
    assert list(pickle.loads(pickle.dumps(column))[[1, 3]]) == [CAPTIONS[1], CAPTIONS[3]]  # into loader workers
    with pytest.raises(IndexError, match="out of range for 5 strings"):
        column[np.array([5])]
    utf8, offsets = encode_text_column(CAPTIONS)
    assert offsets[0] == 0 and offsets[-1] == len(utf8) == sum(len(c.encode()) for c in CAPTIONS)


def test_text_column_reads_in_place(tmp_path) -> None:
    """100K captions: the column holds none of them; a batch read touches only its rows' bytes."""
    captions = np.array([f"caption number {i} " + "word " * (i % 7) for i in range(100_000)], dtype=object)
    save_data(tmp_path / "d.npz", {"x": np.zeros((len(captions), 1), np.float32), "labels": np.arange(len(captions)),
                                   "captions": captions}, {})
    column = load_data(tmp_path / "d.npz")["captions"]
    assert len(pickle.dumps(column)) < 2000  # paths and offsets into the file, not the strings
    rows = np.array([99_999, 5, 31_337])
    assert list(column[rows]) == [captions[i] for i in rows]


def _captioned(tokenizer: str, texts: list[str] | None = None, class_names: list[str] | None = None):
    torch.manual_seed(0)
    meta = {"arch": {"arch": "unet", "size": "unet_tiny", "cond_dim": 32,
                     "context": {"encoder": "t5_tiny", "tokenizer": tokenizer, "max_length": 8}},
            "data_shape": [16, 16, 3], "num_classes": len(texts or class_names), "vocab_size": 0, "seq_len": 0}
    if class_names is not None:
        meta["class_names"] = class_names
    else:
        meta["condition_text"] = "captions"
    return build_denoiser(meta), meta


def test_per_batch_encoding_equals_the_cached_states(tmp_path) -> None:
    """A captioned model encodes the texts of the labels it is given when it is given them: the same condition as
    a model that cached every text's states up front (the class-conditional path), with no per-caption cache."""
    words = sorted({w for c in CAPTIONS for w in c.split()})
    tokenizer = word_tokenizer(tmp_path / "tok", words)
    save_data(tmp_path / "d.npz", {"x": np.zeros((5, 1), np.float32), "labels": np.arange(5),
                                   "captions": np.array(CAPTIONS, dtype=object)}, {})
    captioned, meta = _captioned(tokenizer, texts=CAPTIONS)
    cached, _ = _captioned(tokenizer, class_names=CAPTIONS)
    assert captioned.class_states is None and cached.class_states.shape[0] == 5
    labels = torch.tensor([3, 0, 4, 0])
    with pytest.raises(InputError, match="set its condition_texts"):
        captioned.context(labels)
    texts = attach_condition_texts({"kaleido": (captioned, meta)}, tmp_path / "d.npz")
    assert list(texts[:]) == CAPTIONS
    states, mask = captioned.context(labels)
    ref_states, ref_mask = cached.context(labels)
    assert torch.equal(mask, ref_mask) and torch.allclose(states, ref_states, atol=1e-6)
    assert captioned.context((states, mask))[0] is states  # a pair encoded before passes through
    y, _ = captioned.encode((states, mask))
    assert torch.allclose(y, cached.encode(labels)[0], atol=1e-6)


def test_condition_texts_refusals(tmp_path) -> None:
    tokenizer = word_tokenizer(tmp_path / "tok", ["a", "dog"])
    model, meta = _captioned(tokenizer, texts=CAPTIONS)
    with pytest.raises(InputError, match=r"pass --conditions \(the data stage.s train.npz, or the held-out"):
        attach_condition_texts({"mdm": (model, meta)}, None)
    save_data(tmp_path / "d.npz", {"x": np.zeros((2, 1), np.float32), "labels": np.arange(2),
                                   "captions": np.array(["a", "dog"], dtype=object)}, {})
    with pytest.raises(InputError, match="2 captions, but model mdm was trained on 5"):
        attach_condition_texts({"mdm": (model, meta)}, tmp_path / "d.npz")
    with pytest.raises(ConfigError, match="not both"):
        build_denoiser({**meta, "class_names": CAPTIONS})


def test_held_out_caption_file(tmp_path) -> None:
    """data.eval_captions: sampling conditions from a held-out file (any length), not the training captions."""
    tokenizer = word_tokenizer(tmp_path / "tok", ["a", "dog", "cat"])
    model, meta = _captioned(tokenizer, texts=CAPTIONS)
    (tmp_path / "eval.txt").write_text("a dog\n\n  a cat  \n", encoding="utf-8")
    texts = attach_condition_texts({"mdm": (model, meta)}, tmp_path / "eval.txt")
    assert list(texts) == ["a dog", "a cat"] and model.condition_texts is texts
    assert model.context(torch.tensor([1, 0]))[0].shape[0] == 2
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty.txt holds no caption"):
        attach_condition_texts({"mdm": (model, meta)}, tmp_path / "empty.txt")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])])
def test_captioned_training_resumes_and_samples(tmp_path, device, one_torch_thread) -> None:
    """The training loop on a captioned set: each step's captions read from the text column and encoded by the
    frozen T5 (on CUDA in bf16, outside the compiled step); the loss falls (CPU), a resumed run ends with the same
    weights (CPU: bit for bit), and the model samples from the captions it is given."""
    from latent_images import draw

    from kaleido import config
    from kaleido.generation import generate
    from kaleido.training import train

    data = draw(32, size=16, seed=1)
    captions = [f"a {c} {s}" for c, s in zip(data["gt_colors"][:, 0], data["gt_shapes"][:, 0], strict=True)]
    save_data(tmp_path / "d.npz", {"x": data["x"], "labels": np.arange(32),
                                   "captions": np.array(captions, dtype=object)}, {}, shard_size=16)
    loaded = load_data(tmp_path / "d.npz")
    tokenizer = word_tokenizer(tmp_path / "tok", sorted({w for c in captions for w in c.split()}))
    arch = {"arch": "nested_unet", "size": "nested_tiny", "cond_dim": 32,
            "context": {"encoder": "t5_tiny", "tokenizer": tokenizer, "max_length": 4}}
    meta = {"role": "mdm", "latent": "none", "arch": arch, "data_shape": [16, 16, 3], "num_classes": 32,
            "condition_text": "captions", "vocab_size": 0, "seq_len": 0, "config_hash": "test"}
    cuda = device == "cuda"
    spec = {"experiment": "cap", "seed": 0, "role": "mdm", "latent": "none", "train_steps": 30,
            "diffusion": {"timesteps": 100, "schedule": "cosine", "prediction": "v"},
            "train": {"batch_size": 8, "lr": 2e-3, "warmup_steps": 0, "lr_schedule": "constant", "grad_clip": 1.0,
                      "ema_decay": 0.9, "cond_drop_prob": 0.2, "ar_loss_weight": 1.0, "checkpoint_every": 10,
                      "grad_accum": 1, "precision": "bf16" if cuda else "fp32", "compile": cuda, "log_every": 10}}
    group = None
    if cuda:
        from kaleido import distributed

        group = distributed.ProcessGroup(rank=0, world_size=1, device=torch.device("cuda"))
    with pytest.raises(InputError, match="reads each item's captions: train\\(\\) needs them"):
        train(spec, loaded["x"], loaded["labels"], None, tmp_path / "none", meta, progress=False, group=group)
    run = lambda s, d: train(s, loaded["x"], loaded["labels"], None, tmp_path / d, meta,  # noqa: E731
                             progress=False, group=group, condition_texts=loaded["captions"])
    full = run(spec, "full")
    assert all(np.isfinite(row["loss"]) for row in full["log"])
    if not cuda:  # 30 steps of batch 8 at random t are noisy: on an H100 (bf16 + compile) 0.617 -> 0.917
        assert full["log"][-1]["loss_diff"] < full["log"][0]["loss_diff"]
    run({**spec, "train_steps": 20}, "resumed")
    resumed = run(spec, "resumed")
    for key, value in full["ema"].items():
        if cuda:  # compiled bf16 kernels need not be bitwise reproducible across processes' autotuning
            assert torch.allclose(value.float(), resumed["ema"][key].float(), atol=1e-2), key
        else:
            assert torch.equal(value, resumed["ema"][key]), key
    model = build_denoiser(meta).to(device)
    model.load_state_dict(full["ema"])
    model.eval()
    (tmp_path / "eval.txt").write_text("a red circle\na blue square\n", encoding="utf-8")
    attach_condition_texts({"mdm": (model, meta)}, tmp_path / "eval.txt")
    exp = {"diffusion": spec["diffusion"], "sample_conditions": 0,
           "sampler": {**config.block_defaults("sampler"), "name": "ddpm", "steps": 5}}
    out = generate(exp, 3, "mdm", 3.0, range(4), {"mdm": model}, batch_size=4)
    assert out["x"].shape == (4, 16, 16, 3) and list(out["labels"]) == [0, 1, 0, 1]

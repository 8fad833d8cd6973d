"""The generic training and sampling loops run the image denoisers: uint8 images in, uint8 images out.

Trains a tiny NestedUNet MDM and a tiny Kaleido (T5 prior over tokenised latent strings) with ``train()`` on
procedurally drawn shapes, then samples with ``generate()``; checks the loss falls, samples are uint8 (n, H, W, 3),
are the same whatever the batch size, and that resuming is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from image_helpers import word_tokenizer
from latent_images import draw

from kaleido import checkpoint, config
from kaleido.generation import generate
from kaleido.training import train

CLASSES = ["circle", "square", "triangle"]
STEPS = 40


def _setup(tmp_path, role):
    tok = word_tokenizer(tmp_path / "tok", [*CLASSES, "red", "green", "blue", "yellow", "left", "right"])
    data = draw(48, size=16, seed=1)
    labels = np.array([CLASSES.index(s) for s in data["gt_shapes"][:, 0]], dtype=np.int64)
    arch = {"arch": "nested_unet", "size": "nested_tiny", "cond_dim": 32,
            "context": {"encoder": "t5_tiny", "tokenizer": tok, "max_length": 4}}
    tokens = None
    meta = {"role": role, "latent": "none", "arch": arch, "data_shape": [16, 16, 3], "num_classes": 3,
            "class_names": CLASSES, "vocab_size": 0, "seq_len": 0, "config_hash": "test"}
    if role == "kaleido":  # latent strings "<colour> <shape>" of the first object, tokenised (pad 0, eos 1)
        from transformers import AutoTokenizer

        strings = [f"{c} {s}" for c, s in zip(data["gt_colors"][:, 0], data["gt_shapes"][:, 0], strict=True)]
        ids = AutoTokenizer.from_pretrained(tok)(strings, padding="max_length", max_length=4)["input_ids"]
        tokens = np.asarray(ids, dtype=np.int64)
        meta.update(latent="color", vocab_size=16, seq_len=4)
    spec = {"experiment": "img", "seed": 0, "role": role, "latent": meta["latent"], "train_steps": STEPS,
            "diffusion": {"timesteps": 100, "schedule": "cosine", "prediction": "eps"},
            "train": {"batch_size": 8, "lr": 2e-3, "warmup_steps": 0, "lr_schedule": "constant", "grad_clip": 1.0,
                      "ema_decay": 0.9, "cond_drop_prob": 0.2, "ar_loss_weight": 1.0, "checkpoint_every": 20,
                      "grad_accum": 1, "precision": "fp32", "compile": False, "log_every": 10}}
    return data["x"], labels, tokens, meta, spec


@pytest.mark.parametrize("role", ["mdm", "kaleido"])
def test_image_models_train_resume_and_sample(tmp_path, role, one_torch_thread):
    x, labels, tokens, meta, spec = _setup(tmp_path, role)
    full = train(spec, x, labels, tokens, tmp_path / "full", meta, progress=False)
    log = full["log"]
    assert len(log) == STEPS // 10
    assert log[-1]["loss_diff"] < log[0]["loss_diff"]
    if role == "kaleido":
        assert log[-1]["loss_ar"] < 0.9 * log[0]["loss_ar"]  # measured 2.39 -> 1.80 in 40 steps

    half = dict(spec, train_steps=STEPS // 2)  # a run stopped at its checkpoint, then resumed with the full spec
    train(half, x, labels, tokens, tmp_path / "resumed", meta, progress=False)
    resumed = train(spec, x, labels, tokens, tmp_path / "resumed", meta, progress=False)
    assert all(torch.equal(full["ema"][k], resumed["ema"][k]) for k in full["ema"])

    model = checkpoint.build_denoiser(meta)
    model.load_state_dict(full["ema"])
    model.eval()
    exp = {"diffusion": spec["diffusion"], "sampler": {**config.block_defaults("sampler"), "name": "ddpm", "steps": 5}}
    method = "kaleido" if role == "kaleido" else "mdm"
    one = generate(exp, 3, method, 3.0, range(5), {role: model}, batch_size=5)
    two = generate(exp, 3, method, 3.0, range(5), {role: model}, batch_size=2)
    assert one["x"].dtype == np.uint8 and one["x"].shape == (5, 16, 16, 3)
    assert np.array_equal(one["x"], two["x"]), "samples depend on the batch size"
    if role == "kaleido":
        assert one["tokens"].shape == (5, 4) and np.array_equal(one["tokens"], two["tokens"])


def test_mdm_shifted_schedule_v_prediction_eps_loss_trains_and_samples(tmp_path, one_torch_thread):
    """ml-mdm's 256 px setting on the tiny NestedUNet: per-resolution shifted schedule, v output, loss on ε."""
    x, labels, tokens, meta, spec = _setup(tmp_path, "mdm")
    spec["diffusion"] = {**spec["diffusion"], "prediction": "v", "loss_target": "eps", "schedule_shifted": True}
    out = train(spec, x, labels, tokens, tmp_path / "run", meta, progress=False)
    assert out["log"][-1]["loss_diff"] < out["log"][0]["loss_diff"]
    model = checkpoint.build_denoiser(meta)
    model.load_state_dict(out["ema"])
    model.eval()
    sampler = {**config.block_defaults("sampler"), "name": "ddim", "steps": 5}
    one = generate({"diffusion": spec["diffusion"], "sampler": sampler}, 3, "mdm", 3.0, range(4), {"mdm": model},
                   batch_size=4)
    two = generate({"diffusion": spec["diffusion"], "sampler": sampler}, 3, "mdm", 3.0, range(4), {"mdm": model},
                   batch_size=3)
    assert one["x"].dtype == np.uint8 and np.array_equal(one["x"], two["x"])
    plain = generate({"diffusion": {**spec["diffusion"], "schedule_shifted": False}, "sampler": sampler}, 3, "mdm",
                     3.0, range(4), {"mdm": model}, batch_size=4)
    assert not np.array_equal(one["x"], plain["x"]), "the shift changed nothing"


def test_a_run_resumes_in_the_other_memory_layout(tmp_path, one_torch_thread):
    """``train.channels_last`` differs between the run that wrote the checkpoint and the one resuming it (a job moved
    between a GPU and the CPU): the optimizer state takes the parameters' layout, and training continues."""
    from kaleido.training import match_state_layouts

    x, labels, tokens, meta, spec = _setup(tmp_path, "mdm")
    half = dict(spec, train_steps=STEPS // 2)
    train(half, x, labels, tokens, tmp_path / "run", meta, progress=False)
    state = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    model = checkpoint.build_denoiser(meta).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())
    opt.load_state_dict(state["optimizer"])
    moments = [(p, opt.state[p]["exp_avg"]) for p in model.parameters() if p.dim() == 4]
    assert any(m.stride() != p.stride() for p, m in moments), "the checkpoint's layout already matched"
    match_state_layouts(opt)
    assert all(opt.state[p]["exp_avg"].stride() == p.stride() for p, _ in moments)
    assert all(torch.equal(opt.state[p]["exp_avg"], m) for p, m in moments)

    resumed = train(dict(spec, train={**spec["train"], "channels_last": True}), x, labels, tokens, tmp_path / "run",
                    meta, progress=False)
    assert len(resumed["log"]) == STEPS // 10 and np.isfinite(resumed["log"][-1]["loss"])

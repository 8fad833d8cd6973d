"""``prior: {pretrained: ...}``: Kaleido's AR prior started from a T5 / Flan-T5 checkpoint's decoder.

A tiny ``T5ForConditionalGeneration`` (seeded random weights) is saved with ``save_pretrained`` into a temp dir and
read through the real loading code: the resized vocabulary keeps the checkpoint's rows, the decoder blocks are the
checkpoint's, the prior computes the checkpoint's decoder function, training and sampling see the same weights
(sampling and resuming never read the checkpoint again), and the weights stage lists the checkpoint.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from image_helpers import word_tokenizer
from latent_images import draw

from kaleido import config
from kaleido.errors import ConfigError
from metrics.errors import InputError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CLASSES = ["circle", "square", "triangle"]
CKPT_VOCAB = 16  #: rows of the checkpoint's embedding
LATENT_VOCAB = 20  #: the latent tokenizer's size: 4 ids the checkpoint has no row for
STEPS = 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_t5(path, tied: bool, d_model: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny T5 (T5 v1.0 style when ``tied``: LM head = embedding, output scaled; else Flan-T5 style) saved with
    save_pretrained into ``path``; returns its state dict (the reference every check compares against)."""
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=CKPT_VOCAB, d_model=d_model, d_ff=48, d_kv=8, num_heads=4, num_layers=1,
                   num_decoder_layers=2, feed_forward_proj="relu" if tied else "gated-gelu", dropout_rate=0.1,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, tie_word_embeddings=tied)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(cfg)
    if not tied:  # an LM head of its own (transformers >= 5 ties at construction and unties on distinct weights)
        model.lm_head.weight = torch.nn.Parameter(torch.randn(CKPT_VOCAB, d_model))
    model.save_pretrained(path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("tied", [False, True])
def test_the_resized_vocabulary_keeps_the_checkpoint_s_rows_and_decoder(tmp_path, tied):
    from kaleido.models.t5 import T5LatentPrior

    ref = save_t5(tmp_path / "t5", tied)
    prior = T5LatentPrior.from_pretrained(str(tmp_path / "t5"), LATENT_VOCAB, enc_dim=64)
    emb, head = prior.decoder.embed_tokens.weight, prior.lm_head.weight
    assert emb.shape == head.shape == (LATENT_VOCAB, 32)
    assert torch.equal(emb[:CKPT_VOCAB], ref["shared.weight"])
    assert torch.equal(head[:CKPT_VOCAB], ref["lm_head.weight"])
    assert torch.allclose(emb[CKPT_VOCAB:], ref["shared.weight"].mean(0).expand(LATENT_VOCAB - CKPT_VOCAB, -1))
    assert torch.allclose(head[CKPT_VOCAB:], ref["lm_head.weight"].mean(0).expand(LATENT_VOCAB - CKPT_VOCAB, -1))
    assert prior.tied == tied and prior.output_scale == (32 ** -0.5 if tied else 1.0)
    assert prior.config.dropout_rate == 0.0  # the checkpoint's 0.1 would draw from the global generator
    decoder = {k: v for k, v in prior.decoder.state_dict().items() if not k.startswith("embed_tokens.")}
    assert len(decoder) == sum(k.startswith("decoder.") and "embed_tokens" not in k for k in ref) > 10
    for key, value in decoder.items():
        assert torch.equal(value, ref[f"decoder.{key}"]), key
    assert isinstance(prior.enc_proj, torch.nn.Linear)  # context width 64 -> d_model 32
    same = T5LatentPrior.from_pretrained(str(tmp_path / "t5"), LATENT_VOCAB, enc_dim=32)
    assert isinstance(same.enc_proj, torch.nn.Identity)
    bare = T5LatentPrior.from_pretrained(str(tmp_path / "t5"), LATENT_VOCAB, enc_dim=32, load_weights=False)
    assert bare.state_dict().keys() == same.state_dict().keys() and bare.tied == tied


@pytest.mark.parametrize("tied", [False, True])
def test_the_prior_computes_the_checkpoint_s_decoder_on_its_ids(tmp_path, tied):
    """Teacher-forced logits over the checkpoint's ids equal T5ForConditionalGeneration's on the same encoder
    states: the decoder, cross-attention, output scaling and LM head are the checkpoint's."""
    from transformers import T5ForConditionalGeneration
    from transformers.modeling_outputs import BaseModelOutput

    from kaleido.models.t5 import T5LatentPrior

    save_t5(tmp_path / "t5", tied)
    prior = T5LatentPrior.from_pretrained(str(tmp_path / "t5"), LATENT_VOCAB, enc_dim=32).eval()
    source = T5ForConditionalGeneration.from_pretrained(str(tmp_path / "t5")).eval()
    gen = torch.Generator().manual_seed(1)
    states, tokens = torch.randn(3, 5, 32, generator=gen), torch.randint(2, CKPT_VOCAB, (3, 4), generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        logits, _ = prior((states, mask), tokens)
        start = torch.zeros(3, 1, dtype=torch.int64)
        expected = source(encoder_outputs=BaseModelOutput(last_hidden_state=states), attention_mask=mask.long(),
                          decoder_input_ids=torch.cat([start, tokens[:, :-1]], dim=1)).logits
    torch.testing.assert_close(logits[..., :CKPT_VOCAB], expected, rtol=1e-5, atol=1e-5)


def _training_setup(tmp_path):
    """(x, labels, tokens (n, 4) with ids past the checkpoint's vocabulary, meta, spec, the checkpoint's state dict)
    of a tiny Kaleido whose prior is the saved checkpoint, as :mod:`kaleido.train` builds them."""
    ckpt = tmp_path / "t5"
    ref = save_t5(ckpt, tied=False)
    tok = word_tokenizer(tmp_path / "tok", [*CLASSES, "red", "green", "blue", "yellow"])
    data = draw(24, size=16, seed=1)
    labels = np.array([CLASSES.index(s) for s in data["gt_shapes"][:, 0]], dtype=np.int64)
    colour = np.array([["red", "green", "blue", "yellow"].index(c) for c in data["gt_colors"][:, 0]])
    tokens = np.stack([3 + labels, CKPT_VOCAB + colour, np.ones_like(labels), np.zeros_like(labels)], axis=1)
    arch = {"arch": "nested_unet", "size": "nested_tiny", "cond_dim": 32,
            "context": {"encoder": "t5_tiny", "tokenizer": tok, "max_length": 4},
            "prior": {"pretrained": str(ckpt)}, "pad_id": 0, "eos_id": 1}
    meta = {"role": "kaleido", "latent": "color", "arch": arch, "data_shape": [16, 16, 3], "num_classes": 3,
            "class_names": CLASSES, "vocab_size": LATENT_VOCAB, "seq_len": 4, "config_hash": "test"}
    spec = {"experiment": "img", "seed": 0, "role": "kaleido", "latent": "color", "train_steps": STEPS,
            "diffusion": {"timesteps": 100, "schedule": "cosine", "prediction": "eps"},
            "train": {"batch_size": 8, "lr": 2e-3, "warmup_steps": 0, "lr_schedule": "constant", "grad_clip": 1.0,
                      "ema_decay": 0.5, "cond_drop_prob": 0.2, "ar_loss_weight": 1.0, "checkpoint_every": 3,
                      "grad_accum": 1, "precision": "fp32", "compile": False, "log_every": 3}}
    return data["x"], labels, tokens.astype(np.int64), meta, spec, ref


def test_training_resuming_and_sampling_load_the_same_prior_weights(tmp_path):
    """Train from the checkpoint, resume a half run and load the model file for sampling with the checkpoint's
    weights deleted: the model file holds the whole resized prior, so neither reads (or re-resizes) them."""
    from kaleido import checkpoint
    from kaleido.generation import generate
    from kaleido.training import train

    x, labels, tokens, meta, spec, ref = _training_setup(tmp_path)
    start = checkpoint.build_denoiser(meta).prior.state_dict()
    assert torch.equal(start["lm_head.weight"][:CKPT_VOCAB], ref["lm_head.weight"])
    full = train(spec, x, labels, tokens, tmp_path / "full", meta, progress=False)
    train(dict(spec, train_steps=STEPS // 2), x, labels, tokens, tmp_path / "resumed", meta, progress=False)
    (tmp_path / "t5" / "model.safetensors").unlink()  # from here on only config.json is left
    resumed = train(spec, x, labels, tokens, tmp_path / "resumed", meta, progress=False)
    assert full["ema"].keys() == resumed["ema"].keys()
    assert all(torch.equal(full["ema"][k], resumed["ema"][k]) for k in full["ema"])
    trained = {k[len("prior."):]: v for k, v in full["ema"].items() if k.startswith("prior.")}
    assert trained.keys() == start.keys() and trained["lm_head.weight"].shape == (LATENT_VOCAB, 32)
    assert not torch.equal(trained["lm_head.weight"], start["lm_head.weight"])  # it trained

    checkpoint.save(tmp_path / "model.pt", {"ema": full["ema"], "meta": meta})  # what kaleido.train writes
    model, _ = checkpoint.load_denoiser(tmp_path / "model.pt")  # what the sample and edit stages call
    loaded = model.state_dict()
    assert loaded.keys() == full["ema"].keys()
    assert all(torch.equal(loaded[k], full["ema"][k]) for k in loaded)
    exp = {"diffusion": spec["diffusion"], "sampler": {**config.block_defaults("sampler"), "name": "ddpm", "steps": 3}}
    out = generate(exp, 3, "kaleido", 3.0, range(3), {"kaleido": model}, batch_size=3)
    assert out["x"].shape == (3, 16, 16, 3) and out["tokens"].shape == (3, 4)
    assert ((out["tokens"] >= 0) & (out["tokens"] < LATENT_VOCAB)).all()


def _shapes_config() -> dict:
    return config.load_yaml(config.Path(__file__).parents[1] / "config" / "shapes.yaml")


@pytest.mark.parametrize(("prior", "message"), [
    ({"size": "t5_tiny", "pretrained": "google/flan-t5-xl"}, "gives size and pretrained; accepted: exactly one of"),
    ({}, "gives neither size nor pretrained; accepted: exactly one of size"),
    ({"size": "t5_xl"}, "unknown random T5 size 't5_xl'; choose one of ['t5_small_random', 't5_tiny']"),
])
def test_a_prior_block_needs_exactly_one_known_source(prior, message):
    cfg = _shapes_config()
    cfg["experiments"]["shapes"]["models"]["kaleido"]["prior"] = prior
    with pytest.raises(ConfigError, match="config.experiments.shapes.models.kaleido.prior") as err:
        config.validate(cfg)
    assert message in str(err.value)


def test_a_missing_or_foreign_checkpoint_is_named(tmp_path):
    from transformers import GPT2Config

    from kaleido.models.t5 import T5LatentPrior, build_t5_prior

    with pytest.raises(InputError, match=r"T5 prior checkpoint '.*nowhere' not found locally.*save_pretrained"):
        T5LatentPrior.from_pretrained(str(tmp_path / "nowhere"), LATENT_VOCAB, enc_dim=32)
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ConfigError, match=r"is a 'gpt2' model; accepted: a T5 / Flan-T5 checkpoint"):
        build_t5_prior({"prior": {"pretrained": str(tmp_path / "gpt2")}}, LATENT_VOCAB, 32)
    with pytest.raises(ConfigError, match="model.prior: .* gives size and pretrained"):
        build_t5_prior({"prior": {"size": "t5_tiny", "pretrained": str(tmp_path / "gpt2")}}, LATENT_VOCAB, 32)


def test_the_weights_stage_lists_a_pretrained_prior_and_existing_slices_do_not_change(tmp_path, capsys):
    from kaleido import weights

    cfg = _shapes_config()
    before = config.validate(copy.deepcopy(cfg))
    assert before["experiments"]["shapes"]["models"]["kaleido"]["prior"] == {"size": "t5_tiny"}  # no default added
    assert "pretrained" not in yaml.safe_dump(config.stage_spec(before, "shapes", "train", role="kaleido",
                                                                latent="bbox"))
    cfg["experiments"]["shapes"]["models"]["kaleido"]["prior"] = {"pretrained": "acme/t5-prior@v1"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    after = config.validate(copy.deepcopy(cfg))
    assert "hf--acme--t5-prior--v1" in weights.all_artifacts(after)
    assert [a.name for a in weights.stage_artifacts(after, "shapes", "train", role="kaleido", latent="bbox")] \
        == ["hf--acme--t5-prior--v1"]
    assert "hf--acme--t5-prior--v1" in [a.name for a in weights.stage_artifacts(after, "shapes", "sample",
                                                                                method="kaleido", latent="bbox")]
    assert weights.stage_artifacts(after, "shapes", "train", role="mdm", latent="none") == []
    weights.main(["list", "--config", str(path)])
    assert "hf--acme--t5-prior--v1\thf\t" in capsys.readouterr().out
    paper = config.load(config.Path(__file__).parents[1] / "config" / "imagenet256.yaml")
    prior = weights.model_artifacts(paper["experiments"]["imagenet256"], "kaleido")
    assert "models.kaleido.prior.pretrained" in {a.what for a in prior}
    assert {a.name for a in prior} == {"hf--google--flan-t5-xl"}

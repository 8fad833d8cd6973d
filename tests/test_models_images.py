"""Image model modules: (Nested)UNet, T5 context encoder, T5 latent prior, ImageDenoiser (CPU, tiny configs)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from image_helpers import word_tokenizer

from kaleido.checkpoint import build_denoiser
from kaleido.errors import ConfigError
from kaleido.models.t5 import T5ContextEncoder, T5LatentPrior, build_t5_encoder, t5_config
from kaleido.models.unet import build_unet, image_pyramid, multiresolution_loss
from kaleido.models.unet_sizes import UNET_SIZES
from metrics.errors import InputError

WORDS = "a photo of the goldfish tabby cat tench dog red blue box left right".split()
CLASSES = ["goldfish", "tabby cat", "tench", "dog"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return word_tokenizer(tmp_path_factory.mktemp("tok"), WORDS)


def _arch(tokenizer_dir: str, arch: str = "unet", size: str = "unet_tiny") -> dict:
    return {"arch": arch, "size": size, "cond_dim": 32,
            "context": {"encoder": "t5_tiny", "tokenizer": tokenizer_dir, "max_length": 6}}


def test_unet_shapes_and_mask() -> None:
    torch.manual_seed(0)
    net = build_unet({"size": "unet_tiny"}, 3, 16)
    for p in net.parameters():  # zero-init output layers would hide the condition's effect
        torch.nn.init.normal_(p, std=0.05)
    x, t, cond = torch.randn(2, 3, 16, 16), torch.tensor([3, 700]), torch.randn(2, 5, 16)
    mask = torch.tensor([[True, True, False, False, False]] * 2)
    out = net(x, t, cond, mask)
    assert out.shape == x.shape
    cond2 = cond.clone()
    cond2[:, 2:] = torch.randn(2, 3, 16)
    torch.testing.assert_close(net(x, t, cond2, mask), out)  # masked positions are not attended
    assert not torch.allclose(net(x, t, cond2), net(x, t, cond))
    nested = build_unet({"size": "nested_tiny"}, 3, 16)
    outs = nested([x, torch.randn(2, 3, 8, 8)], t, cond, mask)
    assert [o.shape for o in outs] == [(2, 3, 16, 16), (2, 3, 8, 8)]
    with pytest.raises(ValueError, match="2 resolution"):
        nested(x, t, cond)
    with pytest.raises(ConfigError, match="unknown UNet size"):
        build_unet({"size": "huge"}, 3, 16)


def test_multiresolution_loss_closed_form() -> None:
    g = torch.Generator().manual_seed(1)
    preds = [torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 4, 4, generator=g)]
    targets = [torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 4, 4, generator=g)]
    expected = sum(w * ((p - q) ** 2).sum() / p.numel() for w, p, q in zip([1.0, 0.5], preds, targets, strict=True))
    torch.testing.assert_close(multiresolution_loss(preds, targets, [1.0, 0.5]), expected)
    torch.testing.assert_close(multiresolution_loss(preds[:1], targets[:1]), F.mse_loss(preds[0], targets[0]))
    low = image_pyramid(torch.arange(16.0).reshape(1, 1, 4, 4), [4, 2])[1]
    torch.testing.assert_close(low, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))  # 2x2 block means


def test_paper_config_is_500m_on_meta_device() -> None:
    with torch.device("meta"):
        net = build_unet({"size": "mdm_in256"}, 3, 1024)
    count = sum(p.numel() for p in net.parameters())
    print(f"mdm_in256 NestedUNet parameters: {count / 1e6:.1f}M")
    assert 450e6 < count < 550e6
    assert all(p.is_meta for p in net.parameters())


def test_t5_encoder_save_load_and_missing(tokenizer_dir: str, tmp_path) -> None:
    enc = T5ContextEncoder({"encoder": "t5_tiny", "tokenizer": tokenizer_dir, "max_length": 6, "seed": 3})
    states, mask = enc(["a tabby cat", "dog"])
    assert states.shape == (2, 6, 64) and mask.tolist()[1] == [True, True, False, False, False, False]
    assert not any(p.requires_grad for p in enc.parameters())
    enc.encoder.save_pretrained(tmp_path / "t5")  # the on-disk format from_pretrained reads
    loaded = T5ContextEncoder({"encoder": str(tmp_path / "t5"), "tokenizer": tokenizer_dir, "max_length": 6})
    torch.testing.assert_close(loaded(["a tabby cat", "dog"])[0], states)
    with pytest.raises(InputError, match="not found locally.*nothing is downloaded"):
        build_t5_encoder({"encoder": str(tmp_path / "absent-t5-xl")}, 32)
    with pytest.raises(InputError, match="tokenizer"):
        T5ContextEncoder({"tokenizer": str(tmp_path / "no-tokenizer")})


def _prior(seed: int = 0) -> tuple[T5LatentPrior, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    prior = T5LatentPrior(t5_config("t5_tiny", 24), 24, enc_dim=48).eval()
    states = torch.randn(5, 4, 48)
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True] * 3 + [False], [True] * 4,
                         [True] * 2 + [False] * 2])
    return prior, (states, mask)


def test_prior_teacher_forcing_and_sampling() -> None:
    prior, ctx = _prior()
    tokens = torch.randint(3, 24, (5, 7))
    logits, states = prior(ctx, tokens)
    assert logits.shape == (5, 7, 24) and states.shape == (5, 7, 64)
    assert prior.loss(logits, tokens).ndim == 0
    index = torch.arange(10, 15)
    ids, dec = prior.generate(ctx, 7, seed=11, index=index, stream=2, temperature=1.3, top_k=10, top_p=0.9)
    assert ids.shape == (5, 7) and dec.shape == (5, 7, 64)
    again = prior.generate(ctx, 7, seed=11, index=index, stream=2, temperature=1.3, top_k=10, top_p=0.9)[0]
    assert torch.equal(ids, again)
    one_by_one = torch.cat([prior.generate((ctx[0][i:i + 1], ctx[1][i:i + 1]), 7, seed=11, index=index[i:i + 1],
                                           stream=2, temperature=1.3, top_k=10, top_p=0.9)[0] for i in range(5)])
    assert torch.equal(one_by_one, ids)
    assert not torch.equal(prior.sample(ctx, 7, seed=12, index=index, stream=2), prior.sample(ctx, 7, 11, index, 2))
    # after EOS (id 1) every token is padding (id 0)
    for row in ids.tolist():
        if 1 in row:
            assert all(v == 0 for v in row[row.index(1) + 1:])


def test_prior_kv_cache_matches_full_recompute() -> None:
    """The cached decoding loop draws the same ids as re-running the decoder over the whole prefix each step."""
    prior, ctx = _prior(2)
    index = torch.arange(5)
    cached = prior.generate(ctx, 12, seed=5, index=index, stream=1, temperature=1.5)
    full = prior.generate(ctx, 12, seed=5, index=index, stream=1, temperature=1.5, use_cache=False)
    assert torch.equal(cached[0], full[0]) and torch.equal(cached[1], full[1])
    step = prior._cached_step(ctx)
    prefix = torch.full((5, 1), prior.start_id)
    for k in range(6):  # each cached step's state equals the last position of a full pass
        prefix = torch.cat([prefix, torch.randint(3, 24, (5, 1))], 1) if k else prefix
        torch.testing.assert_close(step(prefix), prior._decode(ctx, prefix)[:, -1], atol=1e-5, rtol=1e-5)


def test_prior_greedy_and_constraint_hook() -> None:
    prior, ctx = _prior(1)
    ids = prior.sample(ctx, 5, seed=0, index=torch.arange(5), stream=0, top_k=1)
    logits, _ = prior(ctx, ids)  # top_k=1 is greedy: each token is the argmax given its prefix
    done = torch.cumsum((ids == 1).long(), 1) - (ids == 1).long() > 0
    assert torch.equal(logits.argmax(-1)[~done], ids[~done])
    allowed = torch.tensor([5, 6, 7])
    seen = []

    def only_567(prefix: torch.Tensor, lg: torch.Tensor) -> torch.Tensor:
        seen.append(prefix.shape[1])
        keep = torch.full_like(lg, float("-inf"))
        keep[:, allowed] = 0.0
        return lg + keep

    ids = prior.sample(ctx, 6, seed=3, index=torch.arange(5), stream=0, constraint=only_567)
    assert torch.isin(ids, allowed).all() and seen == list(range(6))


def test_image_denoiser_interface(tokenizer_dir: str) -> None:
    meta = {"arch": _arch(tokenizer_dir, "nested_unet", "nested_tiny"), "data_shape": [16, 16, 3], "num_classes": 4,
            "vocab_size": 20, "seq_len": 5, "class_names": CLASSES}
    model = build_denoiser(meta)
    assert model.uses_latent and model.resolutions == [16, 8] and model.data_dim == 3 * (256 + 64)
    labels, tokens = torch.tensor([0, 3, 1]), torch.tensor([[4, 5, 1, 0, 0], [6, 1, 0, 0, 0], [7, 8, 9, 10, 1]])
    y, logits = model.encode(labels, tokens)
    assert y.shape == (3, 6 + 5, 32) and logits.shape == (3, 5, 20)
    drop = torch.tensor([True, False, True])
    y_drop, logits_drop = model.encode(labels, tokens, drop)
    torch.testing.assert_close(y_drop[0], model.null_condition(1)[0])  # class AND latent replaced
    torch.testing.assert_close(y_drop[1], y[1])
    torch.testing.assert_close(logits_drop, logits)  # the prior always sees the true class
    captions = model.encode(["a photo of the goldfish", "dog", "red box"], tokens)[0]
    assert captions.shape == y.shape
    x = model.images_to_data(torch.randn(3, 3, 16, 16))
    out = model(x, torch.tensor([1, 2, 3]), y)
    assert out.shape == x.shape == (3, model.data_dim)
    assert model.loss(out, x).ndim == 0
    # context + prior are usable by the generic sampler (toy signature)
    assert model.prior.sample(model.context(labels), 5, 0, torch.arange(3), 1).shape == (3, 5)
    reloaded = build_denoiser(meta)
    reloaded.load_state_dict(model.state_dict())
    assert not any(k.startswith("_frozen") or "encoder.block" in k for k in model.state_dict())
    torch.testing.assert_close(reloaded(x, torch.tensor([1, 2, 3]), y), out)
    mdm = build_denoiser({**meta, "vocab_size": 0, "arch": _arch(tokenizer_dir)})
    assert not mdm.uses_latent and mdm.encode(labels)[0].shape == (3, 6, 32) and mdm.data_dim == 768
    with pytest.raises(InputError, match="seq_len=5"):
        model.encode(labels, tokens[:, :3])


def test_tiny_overfit_loss_decreases(tokenizer_dir: str) -> None:
    torch.manual_seed(0)
    model = build_denoiser({"arch": _arch(tokenizer_dir, "nested_unet", "nested_tiny"), "data_shape": [16, 16, 3],
                            "num_classes": 4, "vocab_size": 20, "seq_len": 4, "class_names": CLASSES})
    labels, tokens = torch.arange(4), torch.randint(3, 20, (4, 4))
    x0 = model.images_to_data(torch.rand(4, 3, 16, 16) * 2 - 1)
    noise = torch.randn_like(x0)
    t = torch.tensor([100, 300, 500, 700])
    ab = torch.cos(t.float() / 1000 * torch.pi / 2)[:, None] ** 2
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):
        y, logits = model.encode(labels, tokens)
        loss = model.loss(model(x_t, t, y), noise) + model.prior.loss(logits, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_sizes_registry_and_arch_builders() -> None:
    from kaleido.models.archs import ARCHS

    assert {"unet_tiny", "nested_tiny", "mdm_in256"} <= set(UNET_SIZES)
    assert ARCHS.get("nested_unet")(0, 16, {"size": "nested_tiny"}).resolutions_depth == 2
    with pytest.raises(ConfigError, match="nested_unet"):
        ARCHS.get("unet")(0, 16, {"size": "nested_tiny"})


def test_every_denoiser_kind_offers_the_interface_the_stages_use(tokenizer_dir: str, default_config) -> None:
    """Vector MLP, image NestedUNet and the exact oracle: one protocol, and each converts its data both ways."""
    import numpy as np

    from kaleido.diffusion.schedule import Schedule
    from kaleido.models.exact_gmm import ExactGMMDenoiser
    from kaleido.models.interface import Denoiser, LatentPriorModel

    image = build_denoiser({"arch": _arch(tokenizer_dir, "nested_unet", "nested_tiny"), "data_shape": [16, 16, 3],
                            "num_classes": 4, "vocab_size": 20, "seq_len": 4, "class_names": CLASSES})
    vector = build_denoiser({"arch": {"arch": "mlp", "hidden": 16, "depth": 1, "emb_dim": 8}, "data_dim": 2,
                             "num_classes": 2, "vocab_size": 4, "seq_len": 1})
    oracle = ExactGMMDenoiser(default_config["experiments"]["toy2d"]["data"], Schedule.from_spec("linear", 1000), True)
    for model in (image, vector, oracle):
        assert isinstance(model, Denoiser), type(model).__name__
    assert isinstance(image.prior, LatentPriorModel) and isinstance(vector.prior, LatentPriorModel)
    assert (image.clip_x0, vector.clip_x0, oracle.clip_x0) == (1.0, None, None)
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    flat = image.data_to_model(pixels)
    assert flat.shape == (5, image.data_dim) and flat.dtype == torch.float32
    np.testing.assert_array_equal(image.model_to_data(flat), pixels)  # the full-resolution level round-trips
    points = np.random.default_rng(1).normal(size=(7, 2)).astype(np.float32)
    np.testing.assert_array_equal(vector.model_to_data(vector.data_to_model(points)), points)
    with pytest.raises(InputError, match="for an image architecture; got uint8 .* for ConditionalDenoiser"):
        vector.data_to_model(pixels)
    with pytest.raises(InputError, match="images must be uint8 .* got float32 .* for ImageDenoiser"):
        image.data_to_model(points)
    out, target = torch.randn(3, 2), torch.randn(3, 2)
    torch.testing.assert_close(vector.loss(out, target), torch.mean((out - target) ** 2))
    logits, tokens = torch.randn(3, 1, 4), torch.randint(0, 4, (3, 1))
    torch.testing.assert_close(vector.prior.loss(logits, tokens),
                               torch.nn.functional.cross_entropy(logits.reshape(-1, 4), tokens.reshape(-1)))

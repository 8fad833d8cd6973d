"""Image feature networks load from the exact on-disk formats (random tiny weights built here) and fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from img_nets import random_images, save_tiny_hf_dinov2, save_tiny_sscd, write_dinov2_hub

from metrics.features import FEATURE_NETS
from metrics.features import dinov2 as dinov2_net
from metrics.features import domain as domain_net

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning"),
              pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")]


@pytest.fixture()
def hub_home(tmp_path, monkeypatch):
    """A TORCH_HOME whose hub cache holds a stand-in facebookresearch/dinov2 repo."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    hub = tmp_path / "hub"
    write_dinov2_hub(hub)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    dinov2_net.load.cache_clear()
    yield hub
    torch.hub.set_dir(old)
    dinov2_net.load.cache_clear()


def test_dinov2_local_hub_equals_torch_fidelity_extractor(hub_home) -> None:
    from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2

    images = random_images(5, seed=0, size=40)
    ours = FEATURE_NETS.get("dinov2").with_options(batch_size=2)(images)
    reference = FeatureExtractorDinoV2("dinov2-vit-l-14", ["dinov2"])(torch.from_numpy(images).permute(0, 3, 1, 2))
    assert ours.shape == (5, 32) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference[0].numpy(), rtol=1e-5, atol=1e-5)
    assert FEATURE_NETS.get("dinov2-b")(images).shape == (5, 16)


def test_dinov2_dgm_matches_dgm_eval_transform(hub_home) -> None:
    """``dinov2-dgm`` = dgm-eval's DINOv2Encoder.transform (torchvision Resize((224, 224), BICUBIC) on a PIL image,
    ToTensor, Normalize) followed by the same hub model; differs from torch-fidelity's bilinear ``dinov2``."""
    from PIL import Image
    from torchvision import transforms

    images = random_images(4, seed=3, size=36)
    ours = FEATURE_NETS.get("dinov2-dgm").with_options(batch_size=3)(images)
    dgm_eval = transforms.Compose([transforms.Resize((224, 224), transforms.InterpolationMode.BICUBIC),
                                   transforms.ToTensor(),
                                   transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    model = dinov2_net.load("dinov2_vitl14", None, "cpu")
    with torch.no_grad():
        expected = model(torch.stack([dgm_eval(Image.fromarray(im)) for im in images]))
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(ours - FEATURE_NETS.get("dinov2")(images)).max() > 1e-3  # the resize matters


def test_dinov2_hf_backend_loads_save_pretrained_dir(tmp_path) -> None:
    from transformers import Dinov2Model

    directory = save_tiny_hf_dinov2(tmp_path / "dinov2-hf")
    images = random_images(3, seed=1, size=28)
    ours = FEATURE_NETS.get("dinov2-hf").with_options(weights=str(directory))(images)
    model = Dinov2Model.from_pretrained(directory).eval()
    with torch.no_grad():
        expected = model(pixel_values=dinov2_net.preprocess(torch.from_numpy(images).permute(0, 3, 1, 2)))
    np.testing.assert_allclose(ours, expected.pooler_output.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("net", "resize"), [("sscd", 288), ("sscd-320", [320, 320])])
def test_sscd_torchscript_matches_readme_pipeline(tmp_path, net, resize) -> None:
    """Our tensor pipeline vs the SSCD README's PIL one (Resize, ToTensor, Normalize), then L2 norm."""
    from PIL import Image
    from torchvision import transforms

    path = save_tiny_sscd(tmp_path / "sscd.torchscript.pt")
    images = random_images(4, seed=2, size=64)[:, :, :48]  # not square: the short side matters
    ours = FEATURE_NETS.get(net).with_options(weights=str(path), allow_unverified=True)(images)
    readme = transforms.Compose([transforms.Resize(resize), transforms.ToTensor(),
                                 transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    model = torch.jit.load(str(path))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model(torch.stack([readme(Image.fromarray(im)) for im in images])))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ours, expected.numpy(), atol=2e-3)


def _domain_data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=n)
    images = rng.integers(0, 60, size=(n, 16, 16, 3)).astype(np.uint8)
    images[labels == 1, :, :, 0] += 150  # class 1 is red
    return images, labels


def test_domain_cnn_is_deterministic_learns_and_round_trips(tmp_path) -> None:
    images, labels = _domain_data()
    first = domain_net.train(images, labels, seed=3, steps=30, batch_size=32, width=8, feature_dim=16)
    second = domain_net.train(images, labels, seed=3, steps=30, batch_size=32, width=8, feature_dim=16)
    other = domain_net.train(images, labels, seed=4, steps=30, batch_size=32, width=8, feature_dim=16)
    for name, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][name])
    assert not torch.equal(first["state_dict"]["head.weight"], other["state_dict"]["head.weight"])
    path = tmp_path / "domain.pt"
    torch.save(first, path)
    out = FEATURE_NETS.get("domain").with_options(weights=str(path), batch_size=16).outputs(images)
    assert out["features"].shape == (64, 16)
    assert (out["logits"].argmax(1) == labels).mean() > 0.9


def test_domain_cli_trains_and_writes_checkpoint(tmp_path) -> None:
    from metrics.io import save_npz_atomic

    images, labels = _domain_data(32)
    save_npz_atomic(tmp_path / "train.npz", x=images, labels=labels)
    assert domain_net.main(["train", "--data", str(tmp_path / "train.npz"), "--out", str(tmp_path / "d.pt"),
                            "--seed", "0", "--steps", "3", "--width", "8", "--feature-dim", "8"]) == 0
    checkpoint = torch.load(tmp_path / "d.pt", weights_only=True)
    assert checkpoint["format"] == domain_net.FORMAT and checkpoint["train"]["steps"] == 3


@pytest.mark.parametrize(("name", "message"), [
    ("inception", r"Inception-v3 .*weights not found at .*missing.*download https://"),
    ("vgg16", r"VGG-16 .*weights not found at .*missing.*download https://"),
    ("sscd", r"SSCD .*weights not found at .*missing.*sscd_disc_mixup"),
    ("domain", r"domain CNN weights not found at .*missing.*python -m metrics.features.domain train"),
    ("dinov2", r"DINOv2 .*not found at .*missing.*hubconf.py.*clone https://github.com/facebookresearch/dinov2"),
    ("dinov2-hf", r"DINOv2 .*not found at .*missing.*config.json.*save_pretrained"),
])
def test_missing_weights_name_file_and_remedy(tmp_path, name, message) -> None:
    net = FEATURE_NETS.get(name).with_options(weights=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=message):
        net(random_images(1, seed=0, size=8))


def test_bad_images_are_rejected() -> None:
    net = FEATURE_NETS.get("domain")
    with pytest.raises(ValueError, match=r"dtype float64; expected uint8"):
        net(np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"shape \(2, 8, 8\); expected \(n, H, W, 3\)"):
        net(np.zeros((2, 8, 8), dtype=np.uint8))


def test_sscd_channels_last_path_gives_the_same_descriptors(tmp_path) -> None:
    """The CUDA default's layout (channels-last weights and inputs) computes the same descriptors as NCHW."""
    from metrics.features import sscd

    path = str(save_tiny_sscd(tmp_path / "sscd.torchscript.pt"))
    images = random_images(5, seed=3, size=40)
    nchw = sscd.extract_outputs(images, batch_size=2, weights=path, channels_last=False)["features"]
    nhwc = sscd.extract_outputs(images, batch_size=2, weights=path, channels_last=True)["features"]
    np.testing.assert_allclose(nhwc, nchw, atol=1e-5)
    assert sscd.extract_outputs(images, batch_size=2, weights=path)["features"].shape == nchw.shape  # CPU: NCHW

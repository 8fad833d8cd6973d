"""Test helpers: random-weight feature networks saved in the exact on-disk formats the real loaders read."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import torch

#: hubconf.py of a stand-in facebookresearch/dinov2 repo: tiny ViT/14 with fixed random weights, CLS output
DINOV2_HUBCONF = '''
import torch
from torch import nn

dependencies = ["torch"]


class TinyViT(nn.Module):
    def __init__(self, dim=32, depth=2, heads=2, patch=14, image=224):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + (image // patch) ** 2, dim) * 0.1)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))[:, 0]


def _build(dim):
    torch.manual_seed(0)
    return TinyViT(dim=dim)


def dinov2_vitl14(pretrained=True, **kwargs):
    return _build(32)


def dinov2_vitb14(pretrained=True, **kwargs):
    return _build(16)
'''


def random_images(n: int, seed: int, size: int = 32, shift: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3) images: smooth random blobs plus noise, brightness shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, 4, 4, 3)).astype(np.float64)
    smooth = np.kron(coarse, np.ones((1, size // 4, size // 4, 1)))
    noisy = smooth + rng.normal(0, 20, size=smooth.shape) + shift
    return np.clip(noisy, 0, 255).astype(np.uint8)


def save_random_inception(path: Path, seed: int = 0) -> Path:
    """torch-fidelity ``inception-v3-compat`` state dict with random (He-normal) weights, as its loader reads it.

    The extractor is built once with its URL download and ``load_state_dict`` patched out (its defaults would
    make the 2048-d features vanish to 1e-8, so conv weights are He-normal re-initialised).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value=None), \
            mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", return_value=None):
        torch.manual_seed(seed)
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.05)
    torch.save(model.state_dict(), path)
    return path


def save_random_vgg16(path: Path, seed: int = 0) -> Path:
    """torchvision ``vgg16`` state dict with its default random init (the format torch-fidelity's vgg16 loads)."""
    import torchvision

    torch.manual_seed(seed)
    torch.save(torchvision.models.vgg16().state_dict(), path)
    return path


def write_dinov2_hub(root: Path) -> Path:
    """A local facebookresearch/dinov2 hub repo at ``root/facebookresearch_dinov2_main`` (tiny random ViT)."""
    repo = root / "facebookresearch_dinov2_main"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "hubconf.py").write_text(DINOV2_HUBCONF)
    return repo


#: ``transformers`` Dinov2Config fields of facebook/dinov2-large (ViT-L/14) and of a tiny stand-in
HF_DINOV2_CONFIGS = {
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
              "patch_size": 14, "image_size": 518, "layerscale_value": 1.0},
    "tiny": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "patch_size": 14, "image_size": 224},
}


def save_hf_dinov2(path: Path, size: str = "tiny") -> Path:
    """A random ``transformers`` Dinov2Model of ``size`` (:data:`HF_DINOV2_CONFIGS`) saved with ``save_pretrained``."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(**HF_DINOV2_CONFIGS[size])).save_pretrained(path)
    return path


def save_tiny_hf_dinov2(path: Path) -> Path:
    """A tiny random ``transformers`` Dinov2Model saved with ``save_pretrained``."""
    return save_hf_dinov2(path, "tiny")


class TinySSCD(torch.nn.Module):
    """Stand-in for the SSCD ResNet: conv + global pool + linear, any input size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 5, stride=4)
        self.fc = torch.nn.Linear(16, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def save_tiny_sscd(path: Path) -> Path:
    """A TorchScript file (``torch.jit.save`` of a scripted module), the SSCD release format."""
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(TinySSCD().eval()), str(path))
    return path


class ResNet50GeM(torch.nn.Module):
    """The SSCD release model's architecture (``sscd_disc_mixup``): torchvision ResNet-50 trunk, GeM pooling
    (p = 3), a linear 2048 -> 512 projection."""

    def __init__(self) -> None:
        import torchvision

        super().__init__()
        trunk = torchvision.models.resnet50()
        self.trunk = torch.nn.Sequential(*list(trunk.children())[:-2])
        self.embedding = torch.nn.Linear(2048, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.trunk(x).clamp(min=1e-6).pow(3.0).mean(dim=(2, 3)).pow(1.0 / 3.0)
        return self.embedding(features)


def save_sscd_resnet50(path: Path) -> Path:
    """A random-weight :class:`ResNet50GeM` as a TorchScript file (the SSCD release format)."""
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(ResNet50GeM().eval()), str(path))
    return path

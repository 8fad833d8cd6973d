"""Registry of denoiser trunk architectures (like DiT's ``DiT_models``): name -> builder(data_dim, cond_dim, spec).

Builders import their network lazily, so reading the registry's names (config validation) does not import torch.
"""

from __future__ import annotations

from typing import Any

from metrics.registry import Registry

ARCHS: Registry[Any] = Registry("model architecture")


@ARCHS.register("mlp")
def mlp(data_dim: int, cond_dim: int, spec: dict[str, Any]) -> Any:
    """:class:`kaleido.models.mlp.MLPNet` with ``hidden``, ``depth``, ``emb_dim`` from ``spec``."""
    from kaleido.models.mlp import MLPNet

    return MLPNet(data_dim, cond_dim, hidden=spec.get("hidden", 128), depth=spec.get("depth", 3),
                  emb_dim=spec.get("emb_dim", 32))


@ARCHS.register("unet")
def unet(data_dim: int, cond_dim: int, spec: dict[str, Any]) -> Any:
    """Single-resolution :class:`kaleido.models.unet.UNet` (``size`` from UNET_SIZES, ``in_channels``); image
    models only: the data is the flat image and the condition a sequence (B, S, cond_dim)."""
    from kaleido.errors import ConfigError
    from kaleido.models.unet import build_unet

    net = build_unet(spec, int(spec.get("in_channels", 3)), cond_dim)
    if net.inner is not None:
        raise ConfigError(f"arch 'unet' got a nested size {spec.get('size')!r}; use arch 'nested_unet'")
    return net


@ARCHS.register("nested_unet")
def nested_unet(data_dim: int, cond_dim: int, spec: dict[str, Any]) -> Any:
    """MDM :class:`kaleido.models.unet.UNet` with nested inner UNets (``size`` from UNET_SIZES)."""
    from kaleido.models.unet import build_unet

    return build_unet(spec, int(spec.get("in_channels", 3)), cond_dim)


# Archs whose denoiser is kaleido.models.image_denoiser.ImageDenoiser (checkpoint.build_denoiser dispatches on it).
IMAGE_ARCHS = frozenset({"unet", "nested_unet"})

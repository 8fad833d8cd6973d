"""Registry of denoiser trunk architectures (like DiT's ``DiT_models``): name -> builder(data_dim, cond_dim, spec).

Builders import their network lazily, so reading the registry's names (config validation) does not import torch.
"""

from __future__ import annotations

from typing import Any

from kaleido.registry import Registry

ARCHS: Registry[Any] = Registry("model architecture")


@ARCHS.register("mlp")
def mlp(data_dim: int, cond_dim: int, spec: dict[str, Any]) -> Any:
    """:class:`kaleido.models.mlp.MLPNet` with ``hidden``, ``depth``, ``emb_dim`` from ``spec``."""
    from kaleido.models.mlp import MLPNet

    return MLPNet(data_dim, cond_dim, hidden=spec.get("hidden", 128), depth=spec.get("depth", 3),
                  emb_dim=spec.get("emb_dim", 32))

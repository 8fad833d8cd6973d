"""Noise schedules, training losses and samplers (DDPM, Ho et al. 2020). Knows nothing about networks.

This package holds the sampler registry (light: the config reads the sampler names and their options without
importing torch); the samplers' code is in :mod:`kaleido.diffusion.samplers` and :mod:`kaleido.diffusion.ddpm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from metrics.registry import Registry, resolve


@dataclass(frozen=True)
class SamplerEntry:
    """A sampler: ``run(eps_fn, schedule, steps, noise_fn, progress, clip_x0, **options) -> x_0 (B, D)`` (a callable
    or a ``"module:function"`` reference, imported on first use) and the names of its own ``sampler:`` settings,
    passed to it as keywords (``eta`` of DDIM)."""

    run: Callable[..., Any] | str
    options: tuple[str, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return resolve(self.run)(*args, **kwargs)


SAMPLERS: Registry[SamplerEntry] = Registry("sampler")
SAMPLERS.register("ddpm")(SamplerEntry("kaleido.diffusion.ddpm:ddpm_sample"))
SAMPLERS.register("ddim")(SamplerEntry("kaleido.diffusion.samplers:ddim_sample", ("eta",)))
SAMPLERS.register("heun")(SamplerEntry("kaleido.diffusion.samplers:heun_sample"))

"""Guidance schemes (registry): combine denoiser evaluations into the guided ε̂ the sampler follows.

All act on ε̂ (equivalently on D̂, the map is affine). ``w = 1`` means no guidance.
- ``cfg``: ε̂ = ε_u + w (ε_c − ε_u)  (Ho & Salimans 2022)
- ``cads``: cfg whose conditional y is annealed with Gaussian noise (Sadat et al. 2024, eq. 3-4)
- ``autoguidance``: ε̂ = ε_bad + w (ε_good − ε_bad), the guide a worse model with the same condition
  (Karras et al. 2024, eq. 2; edm2 ``D = ref_D.lerp(D, w)``)

A guidance interval (Kynkäänniemi et al. 2024) applies any scheme's weight only for noise levels
σ_lo < σ(t) <= σ_hi, σ(t) = √((1-ᾱ_t)/ᾱ_t) (EDM's σ of the VP x_t); elsewhere w = 1 (the conditional model alone).

Each registry entry is a :class:`GuidanceScheme`: its function (a callable, or a ``"module:function"`` reference
imported when a sampler first uses it) and, for a scheme with settings, the JSON schema of the experiment's config
block of the same name (``cads:``) with every default. The config reads the entries, so a new scheme is a function
in a module of its own plus its registration. This package holds the registry and the interface (light: the config
imports it, so it belongs to every stage's code hash); the built-in schemes' code lives in
:mod:`kaleido.guidance.schemes`, which only sampling imports, so editing a scheme reruns sampling and not training.
Nothing here imports torch (configs are loaded by Snakemake and by every CLI before it parses its arguments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metrics.registry import Registry, resolve

if TYPE_CHECKING:
    import numpy as np
    import torch

#: stream ids of the counter RNG, so draws for different purposes never coincide
STREAM_DIFFUSION, STREAM_PRIOR, STREAM_CADS = 0, 1, 2


@dataclass
class GuidanceInputs:
    """What a scheme needs for one batch.

    ``net(x, t, y)`` is the main model's output converted to ε; ``guide`` likewise for the guiding model
    (autoguidance). ``y``/``y_null`` (B, C) are the main model's conditional/unconditional conditions,
    ``y_guide`` the guide's conditional one. ``index`` (B,) holds the global sample indices and ``seed`` the
    stage seed, for per-sample noise. ``timesteps`` is T of the training grid. ``interval`` (σ_lo, σ_hi) limits
    guidance to those noise levels; it needs ``alphas_cumprod`` (T,) of the schedule.
    """

    net: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    y: torch.Tensor
    y_null: torch.Tensor
    weight: float
    index: torch.Tensor
    seed: int
    timesteps: int
    options: dict[str, Any]
    guide: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    y_guide: torch.Tensor | None = None
    interval: tuple[float, float] | None = None
    alphas_cumprod: np.ndarray | None = None

    def weight_at(self, step: int) -> float:
        """The guidance weight at training-grid timestep ``step``: ``weight``, or 1 outside the interval."""
        if self.interval is None:
            return self.weight
        if self.alphas_cumprod is None:
            raise ValueError("a guidance interval needs the schedule's alphas_cumprod")
        abar = float(self.alphas_cumprod[step])
        return self.weight if self.interval[0] < ((1.0 - abar) / abar) ** 0.5 <= self.interval[1] else 1.0


EpsFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class GuidanceScheme:
    """A guidance scheme: ``make(inputs)`` returns ``eps(x (B, ...), t (B,) int64) -> ε̂ (B, ...)``; ``make`` may be
    given as ``"module:function"``, imported on first use.

    ``options``: JSON-schema properties of the experiment's config block named like the scheme (each with its
    ``default``; None = the scheme has no settings and no block); the sample stage hands the resolved block to
    ``make`` as ``inputs.options`` and hashes it into the stage's rerun trigger. ``check(options)`` returns what is
    wrong across options (a text naming the values) or None.
    """

    make: Callable[[GuidanceInputs], EpsFn] | str
    options: dict[str, dict[str, Any]] | None = None
    check: Callable[[dict[str, Any]], str | None] | None = None

    def __call__(self, inputs: GuidanceInputs) -> EpsFn:
        return self.function()(inputs)

    def function(self) -> Callable[[GuidanceInputs], EpsFn]:
        """``make`` as a callable (a ``"module:function"`` reference imported)."""
        return resolve(self.make)


SCHEMES: Registry[GuidanceScheme] = Registry("guidance scheme")


#: the ``cads`` block. Defaults: the Stable Diffusion setting of Sadat et al. 2024 seen in every public implementation
#: (methods.md); the paper tunes none of them for ImageNet.
CADS_OPTIONS: dict[str, dict[str, Any]] = {
    "tau1": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.6,
             "description": "diffusion time (1 = noise) below which the condition is clean"},
    "tau2": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.9,
             "description": "diffusion time above which the condition is pure noise"},
    "noise_scale": {"type": "number", "minimum": 0, "default": 0.25, "description": "s of eq. 3"},
    "psi": {"type": "number", "minimum": 0, "maximum": 1, "default": 1.0,
            "description": "mix of the rescaled and the raw annealed condition (eq. 4)"},
    "rescale": {"type": "boolean", "default": True, "description": "rescale to the clean condition's mean/std"},
}


def _cads_check(opts: dict[str, Any]) -> str | None:
    if opts["tau1"] >= opts["tau2"]:
        return f"tau1={opts['tau1']} must be smaller than tau2={opts['tau2']}"
    return None


#: the built-in schemes, implemented in kaleido.guidance.schemes
SCHEMES.register("cfg")(GuidanceScheme("kaleido.guidance.schemes:cfg"))
SCHEMES.register("cads")(GuidanceScheme("kaleido.guidance.schemes:cads", CADS_OPTIONS, _cads_check))
SCHEMES.register("autoguidance")(GuidanceScheme("kaleido.guidance.schemes:autoguidance"))

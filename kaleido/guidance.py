"""Guidance schemes (registry): combine denoiser evaluations into the guided ε̂ the sampler follows.

All act on ε̂ (equivalently on D̂, the map is affine). ``w = 1`` means no guidance.
- ``cfg``: ε̂ = ε_u + w (ε_c − ε_u)  (Ho & Salimans 2022)
- ``cads``: cfg whose conditional y is annealed with Gaussian noise (Sadat et al. 2024, eq. 3-4)
- ``autoguidance``: ε̂ = ε_bad + w (ε_good − ε_bad), the guide a worse model with the same condition
  (Karras et al. 2024, eq. 2; edm2 ``D = ref_D.lerp(D, w)``)

A guidance interval (Kynkäänniemi et al. 2024) applies any scheme's weight only for noise levels
σ_lo < σ(t) <= σ_hi, σ(t) = √((1-ᾱ_t)/ᾱ_t) (EDM's σ of the VP x_t); elsewhere w = 1 (the conditional model alone).

Each registry entry is a :class:`GuidanceScheme`: its function and, for a scheme with settings, the JSON schema of
the experiment's config block of the same name (``cads:``) with every default. The config reads the entries, so a
new scheme is this module's pattern in a module of its own plus its registration. Importing this module does not
import torch (configs are loaded by Snakemake and by every CLI before it parses its arguments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metrics.registry import Registry

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
    """A guidance scheme: ``make(inputs)`` returns ``eps(x (B, ...), t (B,) int64) -> ε̂ (B, ...)``.

    ``options``: JSON-schema properties of the experiment's config block named like the scheme (each with its
    ``default``; None = the scheme has no settings and no block); the sample stage hands the resolved block to
    ``make`` as ``inputs.options`` and hashes it into the stage's rerun trigger. ``check(options)`` returns what is
    wrong across options (a text naming the values) or None.
    """

    make: Callable[[GuidanceInputs], EpsFn]
    options: dict[str, dict[str, Any]] | None = None
    check: Callable[[dict[str, Any]], str | None] | None = None

    def __call__(self, inputs: GuidanceInputs) -> EpsFn:
        return self.make(inputs)


SCHEMES: Registry[GuidanceScheme] = Registry("guidance scheme")


def cfg_combine(net: Callable, x: torch.Tensor, t: torch.Tensor, y_cond: torch.Tensor, y_null: torch.Tensor,
                w: float) -> torch.Tensor:
    """ε_u + w (ε_c − ε_u) from one batched call of ``net`` on both conditions (one call of the conditional branch
    alone at w = 1). x (B, ...), t (B,), y_cond / y_null (B, C)."""
    import torch

    if w == 1.0:
        return net(x, t, y_cond)
    both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y_cond, y_null]))  # one batched call
    eps_c, eps_u = both.chunk(2)
    return eps_u + w * (eps_c - eps_u)


def cfg(g: GuidanceInputs) -> EpsFn:
    return lambda x, t: cfg_combine(g.net, x, t, g.y, g.y_null, g.weight_at(int(t[0])))


SCHEMES.register("cfg")(GuidanceScheme(cfg))


def cads_gamma(t: torch.Tensor | float, tau1: float, tau2: float) -> torch.Tensor:
    """γ(t) of CADS for diffusion time t ∈ [0, 1] (1 = pure noise): 1 below τ1, 0 above τ2, linear between."""
    import torch

    t = torch.as_tensor(t, dtype=torch.float64)
    return ((tau2 - t) / (tau2 - tau1)).clamp(0.0, 1.0)


def cads_condition(y: torch.Tensor, t_frac: float, noise: torch.Tensor, tau1: float, tau2: float,
                   noise_scale: float, psi: float, rescale: bool) -> torch.Tensor:
    """ŷ = √γ y + s √(1-γ) n, optionally rescaled back to y's mean/std and mixed by ψ (CADS eq. 3-4).

    Mean/std are scalars per sample (over that sample's whole embedding): the reference code takes them
    over the batch tensor, which would make a sample depend on its batch-mates.
    """
    gamma = float(cads_gamma(t_frac, tau1, tau2))
    y_hat = gamma**0.5 * y + noise_scale * (1.0 - gamma) ** 0.5 * noise
    if not rescale:
        return y_hat
    dims = tuple(range(1, y.ndim))
    mean_in, std_in = y.mean(dim=dims, keepdim=True), y.std(dim=dims, keepdim=True)
    mean_hat, std_hat = y_hat.mean(dim=dims, keepdim=True), y_hat.std(dim=dims, keepdim=True)
    y_rescaled = (y_hat - mean_hat) / std_hat * std_in + mean_in
    return psi * y_rescaled + (1.0 - psi) * y_hat


def cads(g: GuidanceInputs) -> EpsFn:
    """CFG on the annealed condition; ``g.options`` is the experiment's resolved ``cads`` block
    (:data:`CADS_OPTIONS`)."""
    from kaleido.rng import counter_normal

    opts = g.options

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = int(t[0])
        noise = counter_normal(g.seed, g.index, STREAM_CADS, step, tuple(g.y.shape[1:])).to(g.y)
        y = cads_condition(g.y, step / g.timesteps, noise, opts["tau1"], opts["tau2"], opts["noise_scale"],
                           opts["psi"], opts["rescale"])
        return cfg_combine(g.net, x, t, y, g.y_null, g.weight_at(step))

    return eps


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


SCHEMES.register("cads")(GuidanceScheme(cads, CADS_OPTIONS, _cads_check))


def autoguidance(g: GuidanceInputs) -> EpsFn:
    if g.guide is None or g.y_guide is None:
        raise ValueError("autoguidance needs the guiding ('bad') model and its condition")

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        good, weight = g.net(x, t, g.y), g.weight_at(int(t[0]))
        if weight == 1.0:
            return good
        bad = g.guide(x, t, g.y_guide)
        return bad + weight * (good - bad)

    return eps


SCHEMES.register("autoguidance")(GuidanceScheme(autoguidance))

"""The built-in guidance schemes' code (registered by reference in :mod:`kaleido.guidance`, which documents each).

Only sampling imports this module, so its source is in the sample stage's code hash and not in training's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kaleido.guidance import STREAM_CADS, EpsFn, GuidanceInputs


def cfg_combine(net: Callable, x: torch.Tensor, t: torch.Tensor, y_cond: torch.Tensor, y_null: torch.Tensor,
                w: float) -> torch.Tensor:
    """ε_u + w (ε_c − ε_u) from one batched call of ``net`` on both conditions (one call of the conditional branch
    alone at w = 1). x (B, ...), t (B,), y_cond / y_null (B, C)."""
    if w == 1.0:
        return net(x, t, y_cond)
    both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y_cond, y_null]))  # one batched call
    eps_c, eps_u = both.chunk(2)
    return eps_u + w * (eps_c - eps_u)


def cfg(g: GuidanceInputs) -> EpsFn:
    return lambda x, t: cfg_combine(g.net, x, t, g.y, g.y_null, g.weight_at(int(t[0])))



def cads_gamma(t: torch.Tensor | float, tau1: float, tau2: float) -> torch.Tensor:
    """γ(t) of CADS for diffusion time t ∈ [0, 1] (1 = pure noise): 1 below τ1, 0 above τ2, linear between."""
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
    (:data:`kaleido.guidance.CADS_OPTIONS`)."""
    from kaleido.rng import counter_normal

    opts = g.options

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = int(t[0])
        noise = counter_normal(g.seed, g.index, STREAM_CADS, step, tuple(g.y.shape[1:])).to(g.y)
        y = cads_condition(g.y, step / g.timesteps, noise, opts["tau1"], opts["tau2"], opts["noise_scale"],
                           opts["psi"], opts["rescale"])
        return cfg_combine(g.net, x, t, y, g.y_null, g.weight_at(step))

    return eps


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

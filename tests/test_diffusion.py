"""Schedules, the DDPM sampler against the exact-score oracle, and the guidance schemes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kaleido import config
from kaleido.diffusion.losses import diffusion_target, output_to_eps
from kaleido.diffusion.schedule import Schedule
from kaleido.guidance import SCHEMES, GuidanceInputs, cads_condition, cads_gamma
from kaleido.models.exact_gmm import ExactGMMDenoiser
from kaleido.sample import generate


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_schedules_are_monotone(name):
    s = Schedule.from_spec(name, 1000)
    assert np.all(np.diff(s.alphas_cumprod) < 0) and s.alphas_cumprod[0] > 0.99 and s.alphas_cumprod[-1] < 1e-3
    grid = s.respaced(100)
    assert len(grid) == 100 and grid[0] == 0 and grid[-1] == 999


def test_v_prediction_round_trip():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    a, b = torch.full((8, 1), 0.6), torch.full((8, 1), 0.8)
    x_t = a * x0 + b * eps
    v = diffusion_target("v", x0, eps, a, b)
    assert torch.allclose(output_to_eps("v", v, x_t, a, b), eps, atol=1e-6)


def test_cads_gamma_schedule():
    g = cads_gamma(torch.tensor([0.0, 0.6, 0.75, 0.9, 1.0], dtype=torch.float64), 0.6, 0.9)
    assert torch.allclose(g, torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0], dtype=torch.float64))


def test_cads_condition_limits_and_rescale():
    y = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    n = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(cads_condition(y, 0.1, n, 0.6, 0.9, 0.25, 1.0, True), y, atol=1e-6)  # gamma = 1: y
    pure = cads_condition(y, 0.95, n, 0.6, 0.9, 0.25, 1.0, False)
    assert torch.allclose(pure, 0.25 * n)  # gamma = 0: s * n
    rescaled = cads_condition(y, 0.95, n, 0.6, 0.9, 0.25, 1.0, True)
    assert torch.allclose(rescaled.mean(1), y.mean(1), atol=1e-5) and torch.allclose(rescaled.std(1), y.std(1))


def _inputs(net, weight, guide=None):
    y = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
    return GuidanceInputs(net=net, y=y, y_null=torch.zeros(5, 3), weight=weight, index=torch.arange(5), seed=0,
                          timesteps=1000, options={}, guide=guide, y_guide=torch.zeros(5, 3) if guide else None)


def test_autoguidance_equals_cfg_when_guide_is_the_unconditional_model():
    torch.manual_seed(0)
    lin = torch.nn.Linear(2 + 3, 2)

    def net(x, t, y):
        return lin(torch.cat([x, y], 1))

    x, t = torch.randn(5, 2), torch.full((5,), 500)
    cfg_eps = SCHEMES.get("cfg")(_inputs(net, 4.0))(x, t)
    ag_eps = SCHEMES.get("autoguidance")(_inputs(net, 4.0, guide=net))(x, t)
    assert torch.allclose(cfg_eps, ag_eps, atol=1e-6)


def _oracle_shares(default_config, method, weight, n=4000, steps=100):
    exp = config.validate(default_config)["experiments"]["toy2d"]
    exp["sampler"]["steps"] = steps
    exp["diffusion"]["prediction"] = "eps"  # the oracle outputs ε, whatever the trained models use
    sched = Schedule.from_spec(exp["diffusion"]["schedule"], exp["diffusion"]["timesteps"])
    model = ExactGMMDenoiser(exp["data"], sched, latent=(method == "kaleido"))
    out = generate(exp, seed=11, method=method, weight=weight, indices=range(n), models={method: model})
    centres = np.asarray(exp["data"]["centres"])[:, 0]
    mode = np.argmin(np.abs(out["x"][:, :1] - centres[None]), axis=1)
    lab = out["labels"]
    return (np.mean(mode[lab == 0] == 1) + np.mean(mode[lab == 1] == 2)) / 2  # inner-mode share per class


def test_exact_oracle_reproduces_cfg_collapse(default_config):
    """methods.md: centres -6, -1, 1, 6, sigma 0.5: inner share 0.14 / 0.07 / 0.02 at w = 3 / 5 / 8."""
    assert _oracle_shares(default_config, "mdm", 1.0) == pytest.approx(0.5, abs=0.03)
    assert _oracle_shares(default_config, "mdm", 3.0) == pytest.approx(0.14, abs=0.03)
    assert _oracle_shares(default_config, "mdm", 8.0) < 0.04


def test_exact_oracle_latent_sampler_keeps_modes(default_config):
    for w in (3.0, 25.0):
        assert _oracle_shares(default_config, "kaleido", w) == pytest.approx(0.5, abs=0.03)


def test_clipped_x0_keeps_eps_sampling_of_bounded_data_stable():
    """Data = a point mass at x* in [-1, 1]: the exact ε is (x_t - √ᾱ x*) / √(1-ᾱ). A network predicts it with a
    small error and, like any trained network, only within its training range (outputs bounded: here |ε̂| <= 4).
    The cosine schedule's ᾱ_T ≈ 2e-9 multiplies the error of ε̂ by ~2e4 in x̂_0 at the first step, x_t leaves the
    range the network knows and the chain never returns; clamping x̂_0 to the data range (ADM's clip_denoised,
    used for images) recovers x*."""
    from kaleido.diffusion.ddpm import ddpm_sample

    schedule = Schedule.from_spec("cosine", 1000)
    target = torch.linspace(-0.9, 0.9, 48).repeat(8, 1)
    gen = torch.Generator().manual_seed(0)

    def eps_fn(x, t):
        ab = torch.as_tensor(schedule.alphas_cumprod, dtype=x.dtype)[t][:, None]
        exact = (x - ab.sqrt() * target) / (1 - ab).sqrt()
        return exact.clamp(-4.0, 4.0) + 0.05 * torch.randn(x.shape, generator=gen)

    def noise_fn(k):
        return torch.randn(target.shape, generator=torch.Generator().manual_seed(1000 + k))

    raw = ddpm_sample(eps_fn, schedule, 50, noise_fn)
    clipped = ddpm_sample(eps_fn, schedule, 50, noise_fn, clip_x0=1.0)
    assert (clipped - target).abs().mean() < 0.05
    assert (raw - target).abs().mean() > 1.0  # why images need the clamp

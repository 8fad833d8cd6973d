"""Schedules, the DDPM sampler against the exact-score oracle, and the guidance schemes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kaleido import config
from kaleido.diffusion.losses import diffusion_target, output_to_eps
from kaleido.diffusion.schedule import Schedule
from kaleido.errors import ConfigError
from kaleido.generation import generate
from kaleido.guidance import SCHEMES, GuidanceInputs
from kaleido.guidance.schemes import cads_condition, cads_gamma
from kaleido.models.exact_gmm import ExactGMMDenoiser


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


@pytest.mark.slow  # samples the exact oracle at many weights (~20 s)
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


def _gaussian_ode_case(schedule_name: str, n: int = 2048, mu: float = 0.7, s: float = 0.3):
    """Data N(mu, s²): exact ε and the exact probability-flow ODE solution x̃_0 = μ + (x̃_T - μ) s/√(s²+σ_T²)
    for x̃_T = x_T/√ᾱ_T (the trajectory in σ is μ + c √(s² + σ²))."""
    schedule = Schedule.from_spec(schedule_name, 1000)
    x_T = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def eps_fn(x, t):
        ab = torch.as_tensor(schedule.alphas_cumprod, dtype=x.dtype)[t][:, None]
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * s * s + 1 - ab)

    ab_T = float(schedule.alphas_cumprod[-1])
    sigma_T2 = (1 - ab_T) / ab_T
    exact = mu + (x_T / ab_T**0.5 - mu) * s / (s * s + sigma_T2) ** 0.5
    return schedule, eps_fn, x_T, exact


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_ode_samplers_converge_to_the_closed_form_at_their_order(schedule_name):
    from kaleido.diffusion.samplers import SAMPLERS

    schedule, eps_fn, x_T, exact = _gaussian_ode_case(schedule_name)
    err = {(name, steps): float((SAMPLERS.get(name)(eps_fn, schedule, steps, lambda k: x_T) - exact).abs().max())
           for name in ("ddim", "heun") for steps in (50, 100)}
    assert 1.6 < err["ddim", 50] / err["ddim", 100] < 2.6  # first order
    assert err["heun", 50] / err["heun", 100] > 3.5  # second order
    assert err["heun", 100] < 2e-3 and err["heun", 100] < err["ddim", 100] / 10


def test_ddim_with_eta_one_is_ddpm_and_heun_counts_evaluations():
    from kaleido.diffusion.samplers import SAMPLERS

    schedule, eps_fn, x_T, _ = _gaussian_ode_case("cosine", n=256)

    def noise_fn(k):
        return x_T if k == 20 else torch.randn(x_T.shape, generator=torch.Generator().manual_seed(k),
                                               dtype=torch.float64)

    ddpm = SAMPLERS.get("ddpm")(eps_fn, schedule, 20, noise_fn)
    assert torch.allclose(SAMPLERS.get("ddim")(eps_fn, schedule, 20, noise_fn, eta=1.0), ddpm, atol=1e-10)
    calls = []
    SAMPLERS.get("heun")(lambda x, t: calls.append(int(t[0])) or eps_fn(x, t), schedule, 20, noise_fn)
    assert len(calls) == 2 * 20 - 2 and set(calls) <= set(schedule.respaced(20).tolist())


def test_guidance_interval_switches_the_weight_by_noise_level():
    schedule = Schedule.from_spec("cosine", 1000)
    torch.manual_seed(0)
    lin = torch.nn.Linear(2 + 3, 2)

    def net(x, t, y):
        return lin(torch.cat([x, y], 1))

    x = torch.randn(5, 2)
    sigma = np.sqrt((1 - schedule.alphas_cumprod) / schedule.alphas_cumprod)
    inside, outside = int(np.argmin(np.abs(sigma - 1.0))), int(np.argmin(np.abs(sigma - 20.0)))
    for step, expected_weight in ((inside, 4.0), (outside, 1.0)):
        g = _inputs(net, 4.0)
        g.interval, g.alphas_cumprod = (0.28, 5.42), schedule.alphas_cumprod
        assert g.weight_at(step) == expected_weight
        t = torch.full((5,), step)
        expected = SCHEMES.get("cfg")(_inputs(net, expected_weight))(x, t)
        assert torch.allclose(SCHEMES.get("cfg")(g)(x, t), expected, atol=1e-6)
        g.guide, g.y_guide = net, torch.zeros(5, 3)
        expected = SCHEMES.get("autoguidance")(_inputs(net, expected_weight, guide=net))(x, t)
        assert torch.allclose(SCHEMES.get("autoguidance")(g)(x, t), expected, atol=1e-6)


@pytest.mark.parametrize("sampler", [{"name": "ddim", "steps": 50}, {"name": "heun", "steps": 30},
                                     {"name": "ddim", "steps": 50, "eta": 1.0}])
def test_every_sampler_keeps_the_oracle_modes_without_guidance(default_config, sampler):
    exp = config.validate(default_config)["experiments"]["toy2d"]
    exp["sampler"].update(sampler)
    exp["diffusion"]["prediction"] = "eps"
    sched = Schedule.from_spec(exp["diffusion"]["schedule"], exp["diffusion"]["timesteps"])
    out = generate(exp, seed=11, method="mdm", weight=1.0, indices=range(3000),
                   models={"mdm": ExactGMMDenoiser(exp["data"], sched)})
    centres = np.asarray(exp["data"]["centres"])
    mode = np.argmin(np.abs(out["x"][:, :1] - centres[None, :, 0]), axis=1)
    near = np.abs(out["x"] - centres[mode]).max(axis=1) < 4 * exp["data"]["std"]
    assert near.mean() > 0.98  # samples land on the mixture's modes
    assert np.mean(mode[out["labels"] == 0] == 1) == pytest.approx(0.5, abs=0.05)


def test_given_latents_reproduce_the_prior_sampled_images(default_config):
    exp = config.validate(default_config)["experiments"]["toy2d"]
    exp["sampler"]["steps"] = 20
    exp["diffusion"]["prediction"] = "eps"
    sched = Schedule.from_spec(exp["diffusion"]["schedule"], exp["diffusion"]["timesteps"])
    models = {"kaleido": ExactGMMDenoiser(exp["data"], sched, latent=True)}
    drawn = generate(exp, seed=3, method="kaleido", weight=3.0, indices=range(40, 80), models=models)
    again = generate(exp, seed=3, method="kaleido", weight=3.0, indices=range(40, 80), models=models,
                     tokens=drawn["tokens"], batch_size=16)
    assert np.array_equal(again["x"], drawn["x"]) and np.array_equal(again["tokens"], drawn["tokens"])
    flipped = generate(exp, seed=3, method="kaleido", weight=3.0, indices=range(40, 80), models=models,
                       tokens=1 - drawn["tokens"])
    assert not np.allclose(flipped["x"], drawn["x"])


def test_prior_top_k_and_top_p_truncate_the_gru_prior(default_config):
    """top_k=1 (and a tiny nucleus) is greedy decoding; the exact oracle refuses truncation (it would drop modes)."""
    from kaleido.models.conditioning import LatentPrior

    torch.manual_seed(0)
    prior = LatentPrior(vocab_size=6, dim=16).eval()
    context, index = torch.randn(5, 16), torch.arange(5)
    greedy = prior.sample(context, 4, seed=1, index=index, stream=0, top_k=1)
    assert torch.equal(prior.sample(context, 4, seed=1, index=index, stream=0, top_p=1e-9), greedy)
    logits, _ = prior(context, greedy)
    assert torch.equal(logits.argmax(-1), greedy)  # each token is the argmax given its prefix
    free = torch.stack([prior.sample(context, 4, seed=s, index=index, stream=0) for s in range(8)])
    assert (free != greedy).any()  # untruncated sampling is not greedy
    exp = config.validate(default_config)["experiments"]["toy2d"]
    with pytest.raises(ConfigError, match="prior_top_k=2"):
        ExactGMMDenoiser(exp["data"], Schedule.from_spec("cosine", 100), latent=True).prior.sample(
            context, 1, seed=0, index=index, stream=0, top_k=2)

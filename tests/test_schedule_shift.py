"""MDM's per-resolution shifted schedule (ml-mdm ``schedule_shifted``) and the ε loss of a v-predicting network.

The shifted ᾱ is checked against the closed form and against ml-mdm's own arithmetic (SNR / s, then back to γ);
sampling a shifted schedule in the base schedule's space (:func:`in_base_space`) is checked against a direct
per-element implementation of DDPM's posterior and of DDIM in data space, the way ml-mdm's sampler runs with one γ per
element, with the same noise: the two chains agree to float64 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kaleido import config
from kaleido.diffusion.losses import diffusion_target, loss_pair, noised
from kaleido.diffusion.samplers import ddim_sample, ddpm_sample
from kaleido.diffusion.schedule import Schedule, in_base_space, level_snr_divisor
from kaleido.errors import ConfigError

LEVELS = [(3 * 8 * 8, 8), (3 * 4 * 4, 4), (3 * 2 * 2, 2)]  # a 3-level nested vector: 8 px, 4 px, 2 px


def test_level_divisor_is_the_resolution_ratio_to_the_power():
    s = level_snr_divisor(LEVELS, 1.0)
    assert s.shape == (sum(n for n, _ in LEVELS),)
    assert np.array_equal(np.unique(s[:192]), [4.0]) and np.array_equal(np.unique(s[192:240]), [2.0])
    assert np.array_equal(np.unique(s[240:]), [1.0])
    assert np.array_equal(np.unique(level_snr_divisor(LEVELS, 2.0)[:192]), [16.0])
    with pytest.raises(ValueError, match="power must be > 0"):
        level_snr_divisor(LEVELS, 0.0)


def test_shifted_alphas_match_the_closed_form_and_ml_mdm():
    diffusion = {"timesteps": 1000, "schedule": "cosine", "schedule_shifted": True, "schedule_shifted_power": 1.0}
    sched = Schedule.for_model(diffusion, LEVELS)
    base = Schedule.from_spec("cosine", 1000).alphas_cumprod
    t = torch.tensor([0, 250, 500, 999])
    sqrt_ab, sqrt_1mab = sched.coefficients(t, torch.float64)
    assert sqrt_ab.shape == (4, 252) and sqrt_1mab.shape == (4, 252)
    abar = sqrt_ab**2
    g = base[t.numpy()][:, None]
    for cols, s in ((slice(0, 192), 4.0), (slice(192, 240), 2.0), (slice(240, 252), 1.0)):
        # closed form: SNR'(t) = SNR(t) / s
        snr = (abar[:, cols] / (1 - abar[:, cols])).numpy()
        np.testing.assert_allclose(snr, np.broadcast_to(g / (1 - g) / s, snr.shape), rtol=1e-10)
        # ml-mdm's get_schedule_shifted: snr = γ / (1 - γ); scaled = snr / s; γ' = 1 / (1 + 1 / scaled)
        ml_mdm = 1 / (1 + 1 / ((g / (1 - g)) / s))
        np.testing.assert_allclose(abar[:, cols].numpy(), np.broadcast_to(ml_mdm, snr.shape), rtol=1e-10)
    np.testing.assert_allclose((sqrt_ab**2 + sqrt_1mab**2).numpy(), 1.0, rtol=1e-10)
    assert Schedule.for_model({**diffusion, "schedule_shifted": False}, LEVELS).snr_divisor is None
    with pytest.raises(ValueError, match="has no levels"):
        Schedule.for_model(diffusion, None)


def _gaussian_eps(sched: Schedule, variance: torch.Tensor):
    """The exact ε̂(x_t, t) of x_0 ~ N(0, diag(variance)) under the (per-element) shifted schedule."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sqrt_ab, sqrt_1mab = sched.coefficients(t, torch.float64)
        return sqrt_1mab * x / (sqrt_ab**2 * variance + sqrt_1mab**2)

    return eps


def _direct(sched: Schedule, eps_fn, steps: int, z: list[torch.Tensor], clip: float | None, eta_ddim: bool):
    """DDPM (or DDIM, η = 0) walked in data space with one ᾱ per element, as ml-mdm's NestedSampler does."""
    grid = sched.respaced(steps)
    s = torch.as_tensor(sched.snr_divisor)

    def shifted(ab: float) -> torch.Tensor:
        return ab / (ab + s * (1 - ab))

    ab_T = float(sched.alphas_cumprod[grid[-1]])
    x = (((1 - shifted(ab_T)) / (1 - ab_T)).sqrt() * z[len(grid)])  # x_T = c(T) y_T for the same draw
    for k in range(len(grid) - 1, -1, -1):
        ab, ab_prev = shifted(float(sched.alphas_cumprod[grid[k]])), shifted(
            float(sched.alphas_cumprod[grid[k - 1]]) if k > 0 else 1.0)
        eps = eps_fn(x, torch.full((x.shape[0],), int(grid[k])))
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        if eta_ddim:
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
            continue
        beta = 1 - ab / ab_prev
        mean = ab_prev.sqrt() * beta / (1 - ab) * x0 + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab) * x
        x = mean + (beta * (1 - ab_prev) / (1 - ab)).sqrt() * z[k] if k > 0 else mean
    return x


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_base_space_sampling_equals_the_per_element_chain(sampler, clip):
    diffusion = {"timesteps": 200, "schedule": "cosine", "schedule_shifted": True, "schedule_shifted_power": 1.0}
    sched = Schedule.for_model(diffusion, LEVELS)
    gen = torch.Generator().manual_seed(0)
    variance = torch.rand(252, generator=gen, dtype=torch.float64) * 0.5 + 0.05
    steps = 20
    z = [torch.randn(6, 252, generator=gen, dtype=torch.float64) for _ in range(steps + 1)]
    eps_x = _gaussian_eps(sched, variance)
    eps_y, clip_y, to_data = in_base_space(sched, eps_x, clip, torch.device("cpu"), torch.float64)
    run = ddpm_sample if sampler == "ddpm" else ddim_sample
    ours = to_data(run(eps_y, sched, steps, lambda k: z[k], clip_x0=clip_y).double())
    direct = _direct(sched, eps_x, steps, z, clip, eta_ddim=sampler == "ddim")
    torch.testing.assert_close(ours, direct, rtol=1e-9, atol=1e-9)
    if clip is not None:
        assert ours.abs().max() <= clip + 1e-12


def test_an_unshifted_schedule_passes_through():
    sched = Schedule.from_spec("cosine", 100)
    fn = lambda x, t: x  # noqa: E731
    eps, clip, to_data = in_base_space(sched, fn, 1.0, torch.device("cpu"))
    assert eps is fn and clip == 1.0 and to_data(torch.ones(2)).equal(torch.ones(2))


def test_eps_loss_of_a_v_network_is_the_v_loss_weighted_by_alpha_bar():
    sched = Schedule.for_model({"timesteps": 100, "schedule": "cosine", "schedule_shifted": True}, LEVELS)
    gen = torch.Generator().manual_seed(1)
    x0, noise, v_hat = (torch.randn(5, 252, generator=gen, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([3, 20, 50, 80, 99])
    x_t, sqrt_ab, sqrt_1mab = noised(sched, x0, t, noise)
    eps_hat, target = loss_pair("v", "eps", v_hat, x0, noise, x_t, sqrt_ab, sqrt_1mab)
    assert target is noise
    v = diffusion_target("v", x0, noise, sqrt_ab, sqrt_1mab)
    torch.testing.assert_close(eps_hat - noise, sqrt_ab * (v_hat - v))
    same, own = loss_pair("v", "prediction", v_hat, x0, noise, x_t, sqrt_ab, sqrt_1mab)
    assert same is v_hat and torch.equal(own, v)
    with pytest.raises(ValueError, match="accepted"):
        loss_pair("v", "x0", v_hat, x0, noise, x_t, sqrt_ab, sqrt_1mab)


def test_config_refuses_a_shifted_schedule_for_vector_models(default_config):
    cfg = {**default_config, "experiments": {"toy2d": {**default_config["experiments"]["toy2d"]}}}
    exp = cfg["experiments"]["toy2d"]
    exp["diffusion"] = {**exp["diffusion"], "schedule_shifted": True}
    with pytest.raises(ConfigError, match=r"schedule_shifted.*vector architectures"):
        config.validate(cfg)

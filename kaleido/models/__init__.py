"""Networks. Noise-agnostic: schedules, losses and samplers live in :mod:`kaleido.diffusion`."""

from kaleido.models.denoiser import ARCHS, ConditionalDenoiser

__all__ = ["ARCHS", "ConditionalDenoiser"]

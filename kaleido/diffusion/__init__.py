"""Noise schedules, training losses and samplers (DDPM, Ho et al. 2020). Knows nothing about networks."""

"""Networks. Noise-agnostic: schedules, losses and samplers live in :mod:`kaleido.diffusion`.

``archs`` is the registry of trunk architectures, ``denoiser`` the conditional denoiser (condition encoders +
trunk), ``conditioning`` the class context and Kaleido's AR latent prior, ``exact_gmm`` the toy's exact oracle.
"""

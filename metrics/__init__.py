"""Generative-model metrics on feature arrays: FD, precision/recall, density/coverage, Vendi, toy mode metrics.

Usable without Snakemake, from Python (:func:`compute_all` and the per-metric functions) or from the command
line (``python -m metrics from-features --real R.npy --fake F.npy --json``). Result keys live in
:mod:`metrics.keys`. The P/R/D/C function is ``metrics.prdc.prdc``; it is not re-exported here, so that
``metrics.prdc`` stays the module.
"""

from metrics.frechet import fd_from_features, frechet_distance, gaussian_stats
from metrics.modes import mode_assignment, mode_entropy, mode_entropy_per_class, mode_shares, modes_covered
from metrics.suite import compute_all
from metrics.vendi import vendi_by_condition, vendi_per_condition, vendi_score

__all__ = [
    "compute_all",
    "fd_from_features",
    "frechet_distance",
    "gaussian_stats",
    "mode_assignment",
    "mode_entropy",
    "mode_entropy_per_class",
    "mode_shares",
    "modes_covered",
    "vendi_by_condition",
    "vendi_per_condition",
    "vendi_score",
]

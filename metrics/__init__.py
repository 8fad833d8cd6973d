"""Generative-model metrics on feature arrays: FD, KID, IS, precision/recall, density/coverage, Vendi, MSS, toy modes.

Usable without Snakemake, from Python (:func:`compute_all` and the per-metric functions) or from the command
line (``python -m metrics from-features --real R.npy --fake F.npy --json``, ``python -m metrics from-images ...``).
Percentile-bootstrap 95% intervals: :func:`compute_with_ci`. Image feature networks: :mod:`metrics.features`.
Result keys live in :mod:`metrics.keys`. The P/R/D/C function is ``metrics.prdc.prdc``; it is not re-exported
here, so that ``metrics.prdc`` stays the module.

The re-exports are resolved lazily (PEP 562): importing one submodule (e.g. ``metrics.features`` for the config
schema) does not import every metric, so the DAG's code hashes tie each stage only to the metric code it runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compute_all": "metrics.suite",
    "compute_with_ci": "metrics.suite",
    "inception_score": "metrics.inception_score",
    "kid": "metrics.kid",
    "mss": "metrics.mss",
    "mss_by_condition": "metrics.mss",
    "fd_from_features": "metrics.frechet",
    "frechet_distance": "metrics.frechet",
    "gaussian_stats": "metrics.frechet",
    "mode_assignment": "metrics.modes",
    "mode_entropy": "metrics.modes",
    "mode_entropy_per_class": "metrics.modes",
    "mode_shares": "metrics.modes",
    "modes_covered": "metrics.modes",
    "vendi_by_condition": "metrics.vendi",
    "vendi_per_condition": "metrics.vendi",
    "vendi_score": "metrics.vendi",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")

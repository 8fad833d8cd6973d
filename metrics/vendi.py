"""Vendi score (Friedman & Dieng 2022) with the cosine-similarity kernel on L2-normalised features.

For X (n, d) with unit rows, K = X X^T has K_ii = 1. With lambda_i the eigenvalues of K / n (non-negative,
summing to 1), the Vendi score of order q is the exponential of their Rényi entropy (paper, eq. 1 and sec. 3):

    VS_q = exp( log(sum_i lambda_i^q) / (1 - q) )     q != 1
    VS_1 = exp( -sum_i lambda_i log lambda_i )        (0 log 0 = 0)
    VS_inf = 1 / max_i lambda_i

K / n and X^T X / n (d x d) share their non-zero eigenvalues, so the smaller of the two is decomposed
(``vendi_score.score_dual`` does the same). Unlike ``vendi_score.score_X``, the order q is honoured.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from metrics._validate import as_features, check_device, check_order, condition_groups, row_norms


def _similarity_spectrum(x: np.ndarray, device: torch.device | None = None) -> np.ndarray:
    """Eigenvalues of K / m for the cosine kernel of (m, d) float64 unit rows; rounding-level values set to 0.

    K / m and X^T X / m share their non-zero spectrum, so the smaller (min(m, d) square) is decomposed, with numpy
    on the CPU (``device`` None) or in torch on ``device``.
    """
    m, d = x.shape
    if device is None:
        eigvals = np.linalg.eigvalsh((x.T @ x if m > d else x @ x.T) / m)
    else:
        xt = torch.as_tensor(x, device=device)
        eigvals = torch.linalg.eigvalsh((xt.T @ xt if m > d else xt @ xt.T) / m).cpu().numpy()
    # Eigenvalues at rounding level are zero (as in numpy.linalg.matrix_rank); matters only for small q.
    tolerance = eigvals.max() * min(m, d) * np.finfo(np.float64).eps
    return np.where(eigvals > tolerance, eigvals, 0.0)


def _hill_number(probabilities: np.ndarray, q: float) -> float:
    """exp(Rényi entropy of order q) of a probability vector (zeros allowed: 0 log 0 = 0)."""
    p = probabilities[probabilities > 0]
    if q == 1.0:
        return float(np.exp(-np.sum(p * np.log(p))))
    if math.isinf(q):
        return float(1.0 / p.max())
    return float(np.exp(np.log(np.sum(p**q)) / (1.0 - q)))


def vendi_score(features: np.ndarray, q: float = 1.0, device: str | torch.device = "cpu") -> float:
    """Vendi score of order ``q`` of one feature set, cosine kernel.

    Args:
        features: (n, d) features, no all-zero rows; rows are L2-normalised here.
        q: order >= 0; 1 = Shannon (the paper's default), ``math.inf`` = 1 / largest eigenvalue.
        device: where the float64 (min(n, d))^2 Gram matrix is built and decomposed (CUDA: fast at 50K x 2048).
    Returns:
        Effective number of distinct samples, in [1, min(n, d)].
    """
    q = check_order(q)
    device = check_device(device)
    x = as_features(features, "features")
    x = x / row_norms(x, "features")[:, None]
    return _hill_number(_similarity_spectrum(x, None if device.type == "cpu" else device), q)


def vendi_by_condition(features: np.ndarray, labels: np.ndarray, q: float = 1.0) -> dict[object, float]:
    """Vendi score of each condition's samples.

    Args:
        features: (n, d) features. labels: (n,) condition id of each row (any sortable values).
    Returns:
        {condition id (Python scalar): Vendi score of the rows with that id}, in sorted id order.
    """
    q = check_order(q)
    x = as_features(features, "features")
    keys, groups = condition_groups(labels, x.shape[0])
    norms = row_norms(x, "features")
    scores = {}
    for key, group in zip(keys, groups, strict=True):
        scores[key] = _hill_number(_similarity_spectrum(x[group] / norms[group, None]), q)
    return scores


def vendi_per_condition(features: np.ndarray, labels: np.ndarray, q: float = 1.0) -> float:
    """Mean over conditions of the per-condition Vendi score (CADS / Kaleido protocol).

    Args:
        features: (n, d) features. labels: (n,) condition id of each row. q: order, as :func:`vendi_score`.
    Returns:
        Unweighted mean over the distinct conditions of :func:`vendi_by_condition`.
    """
    return float(np.mean(list(vendi_by_condition(features, labels, q).values())))

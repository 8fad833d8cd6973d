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


def _similarity_spectrum(x: np.ndarray | torch.Tensor, device: torch.device | None = None) -> np.ndarray:
    """Eigenvalues of K / m for the cosine kernel of (m, d) float64 unit rows (numpy, or a tensor already on
    ``device``); rounding-level values set to 0.

    K / m and X^T X / m share their non-zero spectrum, so the smaller (min(m, d) square) is decomposed, with numpy
    on the CPU (``device`` None) or in torch on ``device``.
    """
    m, d = x.shape
    if device is None:
        eigvals = np.linalg.eigvalsh((x.T @ x if m > d else x @ x.T) / m)
    else:
        xt = torch.as_tensor(x, device=device)
        eigvals = torch.linalg.eigvalsh((xt.T @ xt if m > d else xt @ xt.T) / m).cpu().numpy()
    return _clip_rounding(eigvals, m, d)


def _clip_rounding(eigvals: np.ndarray, m: int, d: int) -> np.ndarray:
    """(..., k) eigenvalues of Gram spectra of (m, d) unit rows, those at rounding level set to 0 (as in
    ``numpy.linalg.matrix_rank``); matters only for small q."""
    tolerance = eigvals.max(axis=-1, keepdims=True) * min(m, d) * np.finfo(np.float64).eps
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
    norms = row_norms(x, "features")
    if device.type == "cpu":
        return _hill_number(_similarity_spectrum(x / norms[:, None]), q)
    unit = torch.as_tensor(x, device=device) / torch.as_tensor(norms, device=device)[:, None]  # no host copy
    return _hill_number(_similarity_spectrum(unit, device), q)


def vendi_by_condition(features: np.ndarray, labels: np.ndarray, q: float = 1.0,
                       device: str | torch.device = "cpu") -> dict[object, float]:
    """Vendi score of each condition's samples.

    Args:
        features: (n, d) features. labels: (n,) condition id of each row (any sortable values).
        device: on the CPU one numpy Gram and ``eigvalsh`` per condition; elsewhere (CUDA) the rows go to the device
            once and the Grams of the conditions with the same number of rows are built in batched products there,
            then decomposed by one batched ``eigvalsh`` on the host (LAPACK, the same routine per matrix).
    Returns:
        {condition id (Python scalar): Vendi score of the rows with that id}, in sorted id order.
    """
    q = check_order(q)
    device = check_device(device)
    x = as_features(features, "features")
    keys, groups = condition_groups(labels, x.shape[0])
    norms = row_norms(x, "features")
    if device.type == "cpu":
        return {key: _hill_number(_similarity_spectrum(x[group] / norms[group, None]), q)
                for key, group in zip(keys, groups, strict=True)}
    unit = torch.as_tensor(x, device=device) / torch.as_tensor(norms, device=device)[:, None]
    sizes = np.array([len(group) for group in groups])
    d = x.shape[1]
    scores: dict[int, float] = {}
    for size in (int(s) for s in np.unique(sizes)):
        members = np.flatnonzero(sizes == size)
        block = max(1, _BLOCK_VALUES // (size * d))  # conditions per batched product: bounded device memory
        for first in range(0, len(members), block):
            chosen = members[first:first + block]
            rows = unit[torch.as_tensor(np.stack([groups[g] for g in chosen]), device=device)]  # (b, m, d)
            gram = (rows @ rows.mT if size <= d else rows.mT @ rows) / size
            spectra = _clip_rounding(np.linalg.eigvalsh(gram.cpu().numpy()), size, d)
            scores.update({int(g): _hill_number(spectrum, q) for g, spectrum in zip(chosen, spectra, strict=True)})
    return {key: scores[g] for g, key in enumerate(keys)}


#: float64 values of the rows gathered for one batched block of :func:`vendi_by_condition` on a device (1 GiB)
_BLOCK_VALUES = 1 << 27


def vendi_per_condition(features: np.ndarray, labels: np.ndarray, q: float = 1.0,
                        device: str | torch.device = "cpu") -> float:
    """Mean over conditions of the per-condition Vendi score (CADS / Kaleido protocol).

    Args:
        features: (n, d) features. labels: (n,) condition id of each row. q: order, as :func:`vendi_score`.
        device: as :func:`vendi_by_condition`.
    Returns:
        Unweighted mean over the distinct conditions of :func:`vendi_by_condition`.
    """
    return float(np.mean(list(vendi_by_condition(features, labels, q, device).values())))

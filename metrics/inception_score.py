"""Inception Score (Salimans et al. 2016) from classifier logits, exactly torch-fidelity 0.4's ``isc``.

IS = exp(E_x KL(p(y|x) || p(y))) per split, reported as mean and population std over ``splits`` equal-ish splits
(row i*N//splits to (i+1)*N//splits) of the rows shuffled by ``numpy.random.RandomState(seed).permutation``.
torch-fidelity feeds it the Inception ``logits_unbiased`` output (fc without bias, 1008 classes).
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from metrics import keys
from metrics._validate import as_features, check_positive_int

DEFAULT_SPLITS = 10
DEFAULT_SEED = 2020


def inception_score(logits: np.ndarray, *, splits: int = DEFAULT_SPLITS, shuffle: bool = True,
                    seed: int = DEFAULT_SEED) -> dict[str, float]:
    """IS of generated samples from their (n, classes) logits, n >= splits; float64 throughout.

    Returns:
        ``{keys.INCEPTION_SCORE: mean over splits, keys.INCEPTION_SCORE_STD: population std over splits}``.
    """
    splits = check_positive_int(splits, "is_splits")
    x = as_features(logits, "logits", min_rows=splits)
    n = x.shape[0]
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    log_p = log_softmax(x, axis=1)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        q = p[rows].mean(axis=0, keepdims=True)
        kl = (p[rows] * (log_p[rows] - np.log(q))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return {keys.INCEPTION_SCORE: float(np.mean(scores)), keys.INCEPTION_SCORE_STD: float(np.std(scores))}

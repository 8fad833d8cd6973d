"""Mean similarity score (MSS), the CADS / Kaleido per-condition diversity metric (lower = more diverse).

For each condition y, K_y = X_y X_y^T for the L2-normalised descriptors X_y (n_y, d) of its generated samples
(SSCD in the papers); MSS_y = mean of K_y's entries, diagonal included (the CADS reference code) or, with
``include_diagonal=False``, the mean of the n_y (n_y - 1) off-diagonal entries. MSS = unweighted mean over
conditions. Computed without building K_y: sum(K_y) = ||sum_i x_i||^2 and trace(K_y) = n_y.
"""

from __future__ import annotations

import numpy as np

from metrics._validate import as_features, condition_groups, row_norms


def mss_by_condition(features: np.ndarray, labels: np.ndarray, *, include_diagonal: bool = True
                     ) -> dict[object, float]:
    """MSS of each condition's samples.

    Args:
        features: (n, d) descriptors, no all-zero rows (L2-normalised here). labels: (n,) condition ids.
        include_diagonal: average the full K_y (True) or only its off-diagonal entries (False; needs n_y >= 2).
    Returns:
        {condition id (Python scalar): MSS of the rows with that id, in [-1, 1]}, sorted by id.
    """
    x = as_features(features, "features")
    keys, groups = condition_groups(labels, x.shape[0])
    norms = row_norms(x, "features")
    scores = {}
    for key, group in zip(keys, groups, strict=True):
        n = len(group)
        total = float(np.square((x[group] / norms[group, None]).sum(axis=0)).sum())  # sum of all entries of K_y
        if include_diagonal:
            scores[key] = total / (n * n)
        elif n < 2:
            raise ValueError(f"condition {key!r} has 1 sample; mss_include_diagonal=false needs >= 2 per condition")
        else:
            scores[key] = (total - n) / (n * (n - 1))
    return scores


def mss(features: np.ndarray, labels: np.ndarray, *, include_diagonal: bool = True) -> float:
    """Unweighted mean over conditions of :func:`mss_by_condition`."""
    return float(np.mean(list(mss_by_condition(features, labels, include_diagonal=include_diagonal).values())))

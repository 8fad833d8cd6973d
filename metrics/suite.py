"""All set metrics of one generated feature set against one reference feature set, in one call."""

from __future__ import annotations

import numpy as np
import torch

from metrics import keys
from metrics._validate import as_features, check_device, check_positive_int, check_same_dim
from metrics.frechet import fd_from_features
from metrics.prdc import prdc
from metrics.vendi import check_order, vendi_per_condition, vendi_score


def compute_all(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    k_pr: int = 3,
    k_dc: int = 5,
    vendi_q: float = 1.0,
    labels_fake: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    chunk_size: int = 1024,
) -> dict[str, float]:
    """FD, precision, recall, density, coverage and Vendi of ``fake`` against ``real``.

    Args:
        real: (n_real, d) reference features, n_real > max(k_pr, k_dc) and >= 2.
        fake: (n_fake, d) generated features, same d, n_fake > k_pr and >= 2, no all-zero rows (Vendi).
        k_pr: k for precision/recall. k_dc: k for density/coverage.
        vendi_q: order of the Vendi score (1 = Shannon, ``math.inf`` allowed).
        labels_fake: optional (n_fake,) condition id per fake row; adds the per-condition mean Vendi score.
        device: torch device for the k-NN distance blocks. chunk_size: rows per distance block.
    Returns:
        ``{keys.FD, keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE, keys.VENDI}`` -> float, plus
        ``keys.VENDI_PER_CONDITION`` when ``labels_fake`` is given. Vendi is over the fake set only.
    Raises:
        ValueError: naming the bad input (non-2-D or empty arrays, NaN/inf, mismatched d, bad k or labels).
    """
    k_pr = check_positive_int(k_pr, "k_pr")
    k_dc = check_positive_int(k_dc, "k_dc")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    vendi_q = check_order(vendi_q)
    device = check_device(device)
    real = as_features(real, "real", min_rows=max(2, k_pr + 1, k_dc + 1))
    fake = as_features(fake, "fake", min_rows=max(2, k_pr + 1))
    check_same_dim(real, fake)
    if labels_fake is not None:
        labels_fake = np.asarray(labels_fake)
        if labels_fake.shape != (fake.shape[0],):
            raise ValueError(
                f"labels_fake: shape {labels_fake.shape}; expected ({fake.shape[0]},), one condition id per fake row"
            )

    results = {keys.FD: fd_from_features(real, fake)}
    results.update(prdc(real, fake, k_pr=k_pr, k_dc=k_dc, chunk_size=chunk_size, device=device))
    results[keys.VENDI] = vendi_score(fake, q=vendi_q)
    if labels_fake is not None:
        results[keys.VENDI_PER_CONDITION] = vendi_per_condition(fake, labels_fake, q=vendi_q)
    return results

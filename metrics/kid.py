"""Kernel Inception Distance (Bińkowski et al. 2018), exactly torch-fidelity 0.4's definition.

KID is the unbiased MMD^2 estimate with the polynomial kernel k(x, y) = (gamma x.y + coef0)^degree
(defaults degree 3, gamma = 1 / d, coef0 = 1), averaged over ``subsets`` random pairs of subsets of
``subset_size`` rows each, drawn without replacement. Subsets are drawn as torch-fidelity draws them, from one
``numpy.random.RandomState(seed)``: for each subset first the generated rows, then the reference rows (its
``input1`` is the generated set), so the same seed gives the same subsets and the same number.

The kernel sums run in float64 with torch on ``device`` (torch-fidelity uses float32 numpy).
"""

from __future__ import annotations

import numpy as np
import torch

from metrics import keys
from metrics._validate import (
    as_features,
    check_device,
    check_feature_array,
    check_positive_int,
    check_same_dim,
    reads_on_demand,
)

#: torch-fidelity's defaults (``torch_fidelity.defaults.DEFAULTS``)
DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000
DEFAULT_SEED = 2020


def _mmd2_unbiased_poly(x: torch.Tensor, y: torch.Tensor, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD^2 of two (m, d) float64 samples under the polynomial kernel (torch-fidelity's ``mmd2``)."""
    m = x.shape[0]

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.T * gamma + coef0) ** degree

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    off_xx = k_xx.sum() - k_xx.diagonal().sum()
    off_yy = k_yy.sum() - k_yy.diagonal().sum()
    return float((off_xx + off_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    subsets: int = DEFAULT_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = DEFAULT_SEED,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """KID of ``fake`` against ``real`` (both (n, d) features, same d, n >= subset_size >= 2).

    Returns:
        ``{keys.KID: mean over subsets, keys.KID_STD: population std over subsets}`` (squared feature units;
        small negative values are valid and mean the sets are very close).
    """
    subsets = check_positive_int(subsets, "kid_subsets")
    subset_size = check_positive_int(subset_size, "kid_subset_size", minimum=2)
    degree = check_positive_int(degree, "kid_degree")
    device = check_device(device)
    on_demand = reads_on_demand(real)  # a reference on disk: only its subsets are read
    real = check_feature_array(real, "real") if on_demand else as_features(real, "real")
    fake = as_features(fake, "fake")
    check_same_dim(real, fake)
    for name, array in (("real", real), ("fake", fake)):
        if array.shape[0] < subset_size:
            raise ValueError(f"kid_subset_size={subset_size} exceeds the {array.shape[0]} {name} rows; "
                             f"use a subset size <= min(n_real, n_fake)")
    gamma = 1.0 / real.shape[1] if gamma is None else float(gamma)
    real_t = None if on_demand else torch.as_tensor(real, dtype=torch.float64, device=device)
    fake_t = torch.as_tensor(fake, dtype=torch.float64, device=device)
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        rows_fake = torch.as_tensor(rng.choice(len(fake), subset_size, replace=False), device=device)
        rows_real = rng.choice(len(real), subset_size, replace=False)
        subset_real = (torch.as_tensor(as_features(real[rows_real], "real"), device=device) if real_t is None
                       else real_t[torch.as_tensor(rows_real, device=device)])
        values[i] = _mmd2_unbiased_poly(fake_t[rows_fake], subset_real, degree, gamma, coef0)
    return {keys.KID: float(values.mean()), keys.KID_STD: float(values.std())}

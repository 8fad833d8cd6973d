"""Fréchet distance between Gaussian fits of two feature sets (FID when the features are Inception-v3 pool3).

FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))   (Heusel et al. 2017, eq. 6; Dowson & Landau 1982)

Everything is computed in float64. ``Tr((S1 S2)^(1/2))`` is the sum of the square roots of the eigenvalues of
S1 S2. S1 S2 is not symmetric, so instead of ``scipy.linalg.sqrtm`` (which can return spurious imaginary
parts) we use the similar matrix S1^(1/2) S2 S1^(1/2): it has the same eigenvalues, is symmetric positive
semi-definite for valid covariances, and its eigenvalues come from ``eigvalsh`` as real numbers. A clearly
negative eigenvalue (the analogue of a non-negligible imaginary part from ``sqrtm``) means an input is not a
covariance matrix and raises ValueError; rounding-level negatives are clipped to zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from metrics._validate import as_features, check_device, check_feature_array, check_same_dim, reads_on_demand

# Eigenvalues below -_NEG_EIG_RTOL * max|eigenvalue| are treated as a real error, not rounding.
_NEG_EIG_RTOL = 1e-9
# Relative asymmetry ||S - S^T||_max / ||S||_max tolerated in a covariance matrix before it is rejected.
_ASYM_RTOL = 1e-6


def gaussian_stats(features: np.ndarray, device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``features``, accumulated in float64.

    Args:
        features: (n, d) array, n >= 2 samples of d-dimensional features (any real dtype), or an array read on
            demand (:class:`metrics.store.ShardedArray`, ``numpy.memmap``: reduced 65536 rows at a time,
            :class:`Moments`, each chunk's products on ``device`` when given).
    Returns:
        ``(mu, sigma)``: mu of shape (d,), sigma of shape (d, d) (``np.cov(rowvar=False)``, divisor n - 1,
        as torch-fidelity's ``fid_features_to_statistics``).
    """
    if reads_on_demand(features):  # a feature set on disk: one chunk in memory at a time
        step = 65536
        return streaming_gaussian_stats((features[a:a + step] for a in range(0, len(features), step)), device)
    x = as_features(features, "features", min_rows=2)
    mu = x.mean(axis=0)
    sigma = np.atleast_2d(np.cov(x, rowvar=False))
    return mu, sigma


@dataclass(frozen=True)
class Moments:
    """Count, mean and scatter of a set of feature rows, mergeable: the Gaussian fit of a set too large to hold.

    ``n`` rows, ``mean`` (d,) and ``scatter`` (d, d) = sum of (x - mean)(x - mean)^T, all float64. Two parts merge
    exactly by Chan, Golub & LeVeque (1979): scatter = scatter_a + scatter_b + delta delta^T n_a n_b / n, with
    delta = mean_b - mean_a, so per-shard moments reduce to the one-pass result up to rounding (no
    sum-of-squares cancellation).
    """

    n: int
    mean: np.ndarray
    scatter: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray, device: str | torch.device | None = None) -> Moments:
        """Moments of one (n, d) chunk (n >= 1), the scatter product on ``device`` when given (float64 either way)."""
        x = as_features(features, "features")
        if device is None or torch.device(device).type == "cpu":
            mean = x.mean(axis=0)
            centred = x - mean
            return cls(len(x), mean, centred.T @ centred)
        rows = torch.as_tensor(x, device=device)
        mean_t = rows.mean(dim=0)
        centred_t = rows - mean_t
        return cls(len(x), mean_t.cpu().numpy(), (centred_t.T @ centred_t).cpu().numpy())

    def merge(self, other: Moments) -> Moments:
        check_same_dim(self.mean[None], other.mean[None])
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        return Moments(n, mean, self.scatter + other.scatter + np.outer(delta, delta) * (self.n * other.n / n))

    def gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu (d,), sigma (d, d)) with the unbiased divisor n - 1, as :func:`gaussian_stats`."""
        if self.n < 2:
            raise ValueError(f"features: {self.n} row(s); a covariance needs at least 2")
        return self.mean, self.scatter / (self.n - 1)


def streaming_gaussian_stats(chunks: Iterable[np.ndarray], device: str | torch.device | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of the rows of all ``chunks`` (each (n_k, d)), holding one chunk at a time
    (its scatter product on ``device`` when given)."""
    total: Moments | None = None
    for chunk in chunks:
        part = Moments.of(chunk, device)
        total = part if total is None else total.merge(part)
    if total is None:
        raise ValueError("features: no chunks; expected at least 2 rows")
    return total.gaussian()


def _check_stats(mu: np.ndarray, sigma: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one (mu (d,), sigma (d, d)) pair and return float64, symmetrised copies."""
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(f"mu{name}: shape {mu.shape}; expected a 1-D mean vector of shape (d,)")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise ValueError(f"sigma{name}: shape {sigma.shape}; expected ({d}, {d}) to match mu{name} of shape ({d},)")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"mu{name}/sigma{name} contain NaN or inf; statistics must be finite")
    scale = np.abs(sigma).max()
    if scale > 0 and np.abs(sigma - sigma.T).max() > _ASYM_RTOL * scale:
        raise ValueError(f"sigma{name} is not symmetric; expected a covariance matrix")
    return mu, 0.5 * (sigma + sigma.T)


def _psd_eigvalsh(matrix: torch.Tensor, what: str) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix, rounding-level negatives clipped to 0; ValueError if clearly negative."""
    return _clip_psd(torch.linalg.eigvalsh(matrix).cpu().numpy(), what)


def _clip_psd(eigvals: np.ndarray, what: str) -> np.ndarray:
    """Clip rounding-level negative eigenvalues to 0; raise ValueError if one is clearly negative."""
    scale = np.abs(eigvals).max(initial=0.0)
    if eigvals.min(initial=0.0) < -_NEG_EIG_RTOL * scale:
        raise ValueError(
            f"{what} has a negative eigenvalue {eigvals.min():.3e} (largest magnitude {scale:.3e}); "
            "expected positive semi-definite covariance matrices"
        )
    return np.clip(eigvals, 0.0, None)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     device: str | torch.device = "cpu") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in squared feature units.

    Args:
        mu1, mu2: (d,) means.
        sigma1, sigma2: (d, d) covariance matrices (symmetric positive semi-definite).
        device: where the float64 (d, d) eigen-decompositions and products run (CUDA: cuSOLVER; CPU: LAPACK).
    Returns:
        ``||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2))`` as a Python float, clipped
        at 0 (it is non-negative in exact arithmetic; rounding can make equal inputs give -1e-13).
    Raises:
        ValueError: on mismatched shapes, non-finite values, or matrices that are not (near-)PSD.
    """
    mu1, sigma1 = _check_stats(mu1, sigma1, "1")
    mu2, sigma2 = _check_stats(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 has shape {mu1.shape} but mu2 has shape {mu2.shape}; both must be (d,) for one d")

    device = check_device(device)
    s1 = torch.as_tensor(sigma1, device=device)
    s2 = torch.as_tensor(sigma2, device=device)
    # sigma1^(1/2) from its eigendecomposition (PSD square root).
    w1, v1 = torch.linalg.eigh(s1)
    w1 = torch.as_tensor(_clip_psd(w1.cpu().numpy(), "sigma1"), device=device)
    sqrt_sigma1 = (v1 * w1.sqrt()) @ v1.T
    _psd_eigvalsh(s2, "sigma2")  # only to reject a non-covariance sigma2 with a clear message
    # sigma1^(1/2) sigma2 sigma1^(1/2) is similar to sigma1 sigma2: same eigenvalues, but symmetric PSD.
    middle = sqrt_sigma1 @ s2 @ sqrt_sigma1
    eig_product = _psd_eigvalsh(0.5 * (middle + middle.T), "sigma1^(1/2) sigma2 sigma1^(1/2)")
    trace_covmean = float(np.sqrt(eig_product).sum())

    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean)
    return max(fd, 0.0)


def _gaussian_stats_torch(features: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gaussian_stats` with the float64 covariance product on ``device`` (same formula, divisor n - 1)."""
    if reads_on_demand(features):
        return gaussian_stats(features, device)
    x = torch.as_tensor(features, dtype=torch.float64, device=device)
    mu = x.mean(dim=0)
    centred = x - mu
    sigma = centred.T @ centred / (x.shape[0] - 1)
    return mu.cpu().numpy(), sigma.cpu().numpy()


def fd_from_features(real: np.ndarray, fake: np.ndarray, device: str | torch.device = "cpu") -> float:
    """Fréchet distance between Gaussian fits of ``real`` (n_real, d) and ``fake`` (n_fake, d); n_* >= 2.

    ``device``: where the float64 (d, d) covariances are accumulated and decomposed (a CUDA device makes the
    O(n d^2) and O(d^3) parts fast at 50K x 2048).
    """
    real, fake = _feature_rows(real, "real"), _feature_rows(fake, "fake")
    check_same_dim(real, fake)
    device = check_device(device)
    if device.type == "cpu":
        return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
    return frechet_distance(*_gaussian_stats_torch(real, device), *_gaussian_stats_torch(fake, device), device=device)


def _feature_rows(features: object, name: str) -> object:
    """An array read on demand, checked by shape and dtype (its values are checked as its chunks are read), or the
    features as a checked float64 array."""
    if reads_on_demand(features):
        return check_feature_array(features, name, min_rows=2)
    return as_features(features, name, min_rows=2)

"""Distance kernels of the exact k-NN (:mod:`metrics.knn`): the canonical float64 distance every decision uses, and
fast filters with a proven error bound that only decide what they can certify.

**Canonical distance.** Every "is d(x, y) < r" decision and every radius is made with one float64 formula that
depends only on the two rows, never on how rows are grouped into blocks, on the device or on the BLAS library:

* d <= :data:`LOW_DIM_MAX`: ``sqrt(sum_j (x_j - y_j)^2)``, accumulated one coordinate at a time (:func:`direct_dist`);
* d > :data:`LOW_DIM_MAX`: the Gram form ``sqrt(max(0, (|x|^2 + |y|^2) - 2 x.y))`` (as scikit-learn, which the
  ``prdc`` package uses), with every dot product (norms included) summed in a fixed pairwise order from
  correctly rounded float64 products (:func:`tree_dot`). Elementwise IEEE operations only: bit-identical on CPU and
  GPU, in any chunking. A row's distance to itself or to an exact duplicate is exactly 0.

**Filters** (d > LOW_DIM_MAX). The Gram form over whole blocks of rows is a matrix product; :class:`GramKernel`
computes it in ``float64``, ``float32`` (TF32 off) or ``tf32`` (tensor cores) and bounds the difference to the
canonical value, per pair, by ``E = kappa_f (|x'|^2 + |y'|^2) + kappa_64 (|x|^2 + |y|^2) + tau (1 + |x'| + |y'|)``
(x' = the centred rows the filter multiplies; Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
eq. 3.5: a d-term dot product in unit roundoff u, in any summation order, is off by at most
``gamma_d = d u / (1 - d u)`` times ``sum |x_k y_k|``; TF32 inputs keep 10 fraction bits, relative error 2^-10,
and tensor-core accumulation is counted as rounding toward zero, 2^-23; everything doubled for safety).
A pair whose filter value lies further than E from a decision threshold is decided by the filter; the others are
recomputed canonically. Answers therefore equal the canonical float64 ones whatever the filter precision; every
pair recomputed also checks the bound (a violation raises instead of returning a wrong number).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from metrics.keys import KNN_PRECISIONS

# Up to this dimension distances are the direct elementwise formula (cheap, exact kernel); above it the Gram form.
LOW_DIM_MAX = 8
#: filter precisions of the Gram kernel; "auto" resolves per device (:func:`resolve_precision`)
PRECISIONS = KNN_PRECISIONS
# Every proven error bound is multiplied by this before use.
_SAFETY = 2.0
# Relative margin between a squared radius and the squared values that certainly fall below / above it after sqrt.
_REL_MARGIN = 1e-10
#: rows whose float64 temporaries (norms, centring) exist at once while rows are prepared
PREPARE_ROWS = 32768
# Squared norms beyond this would overflow float32 sums of two of them.
_FLOAT32_NORM_MAX = 1e37


def direct_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sqrt(sum_j (x_j - y_j)^2)`` over the last axis of broadcastable float64 x, y, one coordinate at a time.

    Used for every low-dimensional distance (blocks and candidate pairs), so equal inputs give bit-equal output.
    """
    acc = (x[..., 0] - y[..., 0]).square_()
    for j in range(1, x.shape[-1]):
        acc.add_((x[..., j] - y[..., j]).square_())
    return acc.sqrt_()


def tree_dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of (m, d) float64 x and y, summed in a fixed pairwise order.

    The products are correctly rounded float64; the d of them (padded with zeros to a power of two) are added as
    ``v[:h] + v[h:]`` until one is left. Elementwise IEEE operations only, so the result depends on the two rows
    alone (not on m, the device or a BLAS kernel). Returns (m,) float64.
    """
    acc = x * y
    width = acc.shape[1]
    padded = 1 << max(width - 1, 0).bit_length()
    if padded != width:
        acc = torch.nn.functional.pad(acc, (0, padded - width))
    while acc.shape[1] > 1:
        half = acc.shape[1] // 2
        acc = acc[:, :half].add_(acc[:, half:])
    return acc[:, 0]


def resolve_precision(precision: str, device: torch.device) -> str:
    """The filter precision to use: ``precision`` if it names one, or for "auto": ``tf32`` on CUDA devices with
    tensor cores (compute capability >= 8.0), else ``float32``. ValueError names the accepted values."""
    if precision not in PRECISIONS:
        raise ValueError(f"knn_precision={precision!r}; expected one of {', '.join(map(repr, PRECISIONS))}")
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return "tf32"
    return "float32"


@contextlib.contextmanager
def matmul_mode(precision: str, device: torch.device) -> Iterator[None]:
    """CUDA float32 matrix products in TF32 (``precision == "tf32"``) or IEEE float32 (otherwise) inside the block,
    whatever the process-wide setting; the setting is restored afterwards. Nothing to do on the CPU."""
    if device.type != "cuda":
        yield
        return
    settings = torch.backends.cuda.matmul
    before = settings.fp32_precision
    settings.fp32_precision = "tf32" if precision == "tf32" else "ieee"
    try:
        yield
    finally:
        settings.fp32_precision = before


@dataclass(frozen=True)
class DeviceRows:
    """Consecutive rows ``start .. start + len - 1`` of a feature set, on the device, as a kernel needs them.

    ``exact``: (r, d) the input values (float32 or float64; the canonical formula reads them as float64);
    ``norms``: (r,) float64 canonical squared norms ``tree_dot(x, x)`` (low dimension: unused zeros);
    ``filt``: (r, d) what the filter multiplies (centred, filter dtype; ``exact`` itself for an exact kernel or an
    uncentred float64 filter); ``filt_norms``: (r,) float64 squared norms of ``filt``; ``filt_norms_cast``: the same
    in the filter dtype.
    """

    start: int
    exact: torch.Tensor
    norms: torch.Tensor
    filt: torch.Tensor
    filt_norms: torch.Tensor
    filt_norms_cast: torch.Tensor

    def __len__(self) -> int:
        return self.exact.shape[0]

    def rows(self, first: int, stop: int) -> DeviceRows:
        """Local rows ``first .. stop - 1`` (views), with their global start."""
        return replace(self, start=self.start + first, exact=self.exact[first:stop], norms=self.norms[first:stop],
                       filt=self.filt[first:stop], filt_norms=self.filt_norms[first:stop],
                       filt_norms_cast=self.filt_norms_cast[first:stop])


class LowDimKernel:
    """d <= LOW_DIM_MAX: block values are the canonical distances themselves (:func:`direct_dist`), so every
    decision is made on them directly (no filter, no recomputation)."""

    exact = True
    filter_dtype = torch.float64

    def row_bytes(self, dim: int, source_itemsize: int) -> int:
        """Device bytes per row held (float64 copy)."""
        return dim * 8 + 8

    def block_bytes(self) -> int:
        """Device bytes per block element (the distances and their temporaries)."""
        return 24

    def storage_dtype(self, source: torch.dtype) -> torch.dtype:
        """Rows are held in float64 on the device."""
        return torch.float64

    def prepare(self, rows: torch.Tensor, start: int) -> DeviceRows:
        exact = rows.to(torch.float64)
        zeros = torch.zeros(exact.shape[0], dtype=torch.float64, device=exact.device)
        return DeviceRows(start, exact, zeros, exact, zeros, zeros)

    def values(self, query: DeviceRows, keys: DeviceRows) -> torch.Tensor:
        """(Q, K) float64 canonical distances."""
        return direct_dist(query.exact[:, None, :], keys.exact[None, :, :])

    def to_distance(self, values: torch.Tensor) -> torch.Tensor:
        return values


class GramKernel:
    """d > LOW_DIM_MAX: block values are filter approximations of the raw squared distance
    ``(|x|^2 + |y|^2) - 2 x.y`` in ``precision``; :meth:`slack_rows` / :meth:`slack_cols` bound their error, and
    :meth:`exact_values` gives the canonical raw squared distance of chosen pairs.

    ``centre``: (d,) float64 vector subtracted from every row before a float32/TF32 product (distances do not
    change; the products' error, which scales with the norms multiplied, shrinks when the data sit far from 0).
    """

    exact = False

    def __init__(self, precision: str, dim: int, device: torch.device, centre: torch.Tensor | None = None) -> None:
        if precision not in PRECISIONS[1:]:
            raise ValueError(f"knn_precision={precision!r}; expected one of {', '.join(map(repr, PRECISIONS[1:]))}")
        self.precision, self.dim, self.device = precision, dim, device
        self.filter_dtype = torch.float64 if precision == "float64" else torch.float32
        u64, u32 = 2.0**-53, 2.0**-24
        if precision == "float64":  # products and sums in float64; the filter uses the canonical norms
            product, accumulate, unit, centring = 0.0, _gamma(dim, u64), u64, 0.0
        elif precision == "float32":  # each fused multiply-add rounds once in float32
            product, accumulate, unit, centring = 0.0, _gamma(dim, u32), u32, u32 + u64
        else:  # TF32: inputs cut to 10 fraction bits, products exact in float32, sums counted as truncating
            product, accumulate, unit, centring = (1 + 2.0**-10) ** 2 - 1, _gamma(dim, 2.0**-23), u32, u32 + u64
        self.centre = None if precision == "float64" or centre is None else centre.to(device, torch.float64)
        # |filter - exact centred value| / (|x'|^2 + |y'|^2): product, accumulation and the six roundings of the
        # filter's own sums (norm casts, bias adds) and of the centring (4 u_c: |x'||y'| terms of both rows)
        self.kappa_filter = _SAFETY * (product + accumulate * (1 + product) + 6 * unit + 4 * centring)
        # |canonical - exact| / (|x|^2 + |y|^2): tree sums of the dot and the norms, and the two canonical roundings
        self.kappa_canonical = _SAFETY * (2 * _gamma(dim, u64) + 4 * u64)
        # absolute part: products and inputs flushed to zero below the smallest normal number
        self.tau = _SAFETY * 4 * dim * torch.finfo(self.filter_dtype).tiny

    def row_bytes(self, dim: int, source_itemsize: int) -> int:
        """Device bytes per row held: the input rows, plus the filter's centred copy when it has one."""
        copy = 0 if self.precision == "float64" else dim * 4
        exact = dim * (8 if self.precision == "float64" else source_itemsize)
        return exact + copy + 40

    def block_bytes(self) -> int:
        """Device bytes per block element: the values and the masks / temporaries the callers make of them."""
        return 2 * torch.finfo(self.filter_dtype).bits // 8 + 8

    def storage_dtype(self, source: torch.dtype) -> torch.dtype:
        """The dtype rows are held in on the device: float64 for a float64 filter (exact for float32 input), else
        the input's own."""
        return torch.float64 if self.precision == "float64" else source

    def prepare(self, rows: torch.Tensor, start: int) -> DeviceRows:
        """Rows ``start ..`` (:meth:`storage_dtype`, on the device) with their canonical norms and filter copy,
        computed :data:`PREPARE_ROWS` rows at a time (float64 temporaries bounded, whatever the row count)."""
        count = rows.shape[0]
        norms = torch.empty(count, dtype=torch.float64, device=rows.device)
        if self.precision == "float64":
            for a in range(0, count, PREPARE_ROWS):
                part = rows[a:a + PREPARE_ROWS]
                norms[a:a + PREPARE_ROWS] = tree_dot(part, part)
            return DeviceRows(start, rows, norms, rows, norms, norms)
        filt = torch.empty(rows.shape, dtype=torch.float32, device=rows.device)
        filt_norms = torch.empty(count, dtype=torch.float64, device=rows.device)
        for a in range(0, count, PREPARE_ROWS):
            part = rows[a:a + PREPARE_ROWS].to(torch.float64)
            norms[a:a + PREPARE_ROWS] = tree_dot(part, part)
            centred = part - self.centre if self.centre is not None else part
            filt[a:a + PREPARE_ROWS] = centred
            part = filt[a:a + PREPARE_ROWS].to(torch.float64)
            filt_norms[a:a + PREPARE_ROWS] = tree_dot(part, part)
        biggest = float(filt_norms.max()) if count else 0.0
        if biggest > _FLOAT32_NORM_MAX:
            raise ValueError(f"rows {start}..{start + count - 1}: squared norms up to {biggest:.3g} overflow "
                             f"knn_precision={self.precision!r}; use knn_precision='float64'")
        return DeviceRows(start, rows, norms, filt, filt_norms, filt_norms.to(self.filter_dtype))

    def values(self, query: DeviceRows, keys: DeviceRows) -> torch.Tensor:
        """(Q, K) filter values ``(|x'|^2 + |y'|^2) - 2 x'.y'`` in the filter dtype (within E of canonical)."""
        with matmul_mode(self.precision, self.device):
            block = query.filt @ keys.filt.T
        return block.mul_(-2.0).add_(keys.filt_norms_cast[None, :]).add_(query.filt_norms_cast[:, None])

    def _slack(self, filt_a: torch.Tensor, norms_a: torch.Tensor, filt_b: torch.Tensor, norms_b: torch.Tensor
               ) -> torch.Tensor:
        return (self.kappa_filter * (filt_a + filt_b) + self.kappa_canonical * (norms_a + norms_b)
                + self.tau * (1 + filt_a.sqrt() + filt_b.sqrt()))

    def slack_pairs(self, query: DeviceRows, q_index: torch.Tensor, keys: DeviceRows, k_index: torch.Tensor
                    ) -> torch.Tensor:
        """(m,) float64 error bound E of the pairs (query row q_index[i], key row k_index[i])."""
        return self._slack(query.filt_norms[q_index], query.norms[q_index], keys.filt_norms[k_index],
                           keys.norms[k_index])

    def slack_rows(self, query: DeviceRows, keys: DeviceRows) -> torch.Tensor:
        """(Q,) float64 bound of E over each query row's pairs with any of ``keys``."""
        return self._slack(query.filt_norms, query.norms, keys.filt_norms.max(), keys.norms.max())

    def slack_cols(self, query: DeviceRows, keys: DeviceRows) -> torch.Tensor:
        """(K,) float64 bound of E over each key row's pairs with any of ``query``."""
        return self._slack(query.filt_norms.max(), query.norms.max(), keys.filt_norms, keys.norms)

    def exact_values(self, query: DeviceRows, q_index: torch.Tensor, keys: DeviceRows, k_index: torch.Tensor
                     ) -> torch.Tensor:
        """(m,) float64 canonical raw squared distances ``(|x|^2 + |y|^2) - 2 tree_dot(x, y)`` of the pairs."""
        dots = tree_dot(query.exact[q_index].to(torch.float64), keys.exact[k_index].to(torch.float64))
        return (query.norms[q_index] + keys.norms[k_index]) - 2.0 * dots

    def to_distance(self, values: torch.Tensor) -> torch.Tensor:
        """Canonical distances from canonical raw squared distances."""
        return values.clamp_min(0.0).sqrt()

    def below(self, squared: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
        """Filter-dtype thresholds t with: filter value < t implies canonical distance < sqrt(squared) (squared is
        a canonical clamped squared radius, >= 0); -inf where squared is 0 (nothing is closer than 0)."""
        low = squared * (1 - _REL_MARGIN) - slack * (1 + _REL_MARGIN)
        low = torch.where(squared > 0, low, torch.full_like(low, -math.inf))
        return _round(low, self.filter_dtype, down=True)

    def above(self, squared: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
        """Filter-dtype thresholds t with: filter value > t implies canonical distance >= sqrt(squared), and
        canonical raw squared distance < squared implies filter value < t."""
        return _round(squared * (1 + _REL_MARGIN) + slack * (1 + _REL_MARGIN), self.filter_dtype, down=False)


def _gamma(terms: int, unit: float) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of an n-term float sum or dot product."""
    if terms * unit >= 0.5:
        raise ValueError(f"feature dimension {terms} is too large for an error bound at unit roundoff {unit:.3g}")
    return terms * unit / (1 - terms * unit)


def _round(values: torch.Tensor, dtype: torch.dtype, *, down: bool) -> torch.Tensor:
    """float64 ``values`` in ``dtype``, rounded toward -inf (``down``) or +inf, so comparisons stay on the safe side."""
    cast = values.to(dtype)
    if dtype == torch.float64:
        return cast
    back = cast.to(torch.float64)
    wrong = back > values if down else back < values
    step = torch.full_like(cast, -math.inf if down else math.inf)
    return torch.where(wrong, torch.nextafter(cast, step), cast)

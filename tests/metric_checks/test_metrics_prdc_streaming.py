"""The streamed brute-force P/R/D/C (``metrics.knn``) gives exactly the in-memory numbers, whatever the chunk sizes,
the filter precision and the way the reference is stored (array, ``numpy.memmap``, ``.npy`` shards, an ``.npz``
member read in place), and exactly the numbers of the implementation it replaced (whole-set blocks, BLAS Gram
distances in float64) on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics import keys, knn_kernels
from metrics.io import save_npz_atomic
from metrics.prdc import check_reference, prdc, reference_rows
from metrics.store import ShardedArray, npz_member_rows

ALL_KEYS = (keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE)


def _blockwise_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """The implementation before streaming, as a test oracle: each set's radii from (n, n) float64 distance blocks
    ``sqrt(max(0, |x|^2 + |y|^2 - 2 x @ y.T))`` (torch, BLAS), self set to 0, (k+1)-th smallest; strict tests."""
    x, y = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.square().sum(1)[:, None] + b.square().sum(1)[None, :] - 2.0 * (a @ b.T)).clamp_min_(0.0).sqrt_()

    def radii(a: torch.Tensor, k: int) -> torch.Tensor:
        block = dist(a, a)
        block.fill_diagonal_(0.0)
        return torch.topk(block, k + 1, dim=1, largest=False, sorted=True).values[:, k]

    cross = dist(x, y)  # (n_real, n_fake)
    inside_pr = cross < radii(x, k_pr)[:, None]
    inside_dc = cross < radii(x, k_dc)[:, None]
    return {keys.PRECISION: float(inside_pr.any(0).double().mean()),
            keys.RECALL: float((cross < radii(y, k_pr)[None, :]).any(1).double().mean()),
            keys.DENSITY: float(np.int64(inside_dc.sum()) / (k_dc * y.shape[0])),
            keys.COVERAGE: float(inside_dc.any(1).double().mean())}


def _clouds(n_real: int, n_fake: int, dim: int, seed: int, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Class clusters, as image features are: real and fake rows around the same 7 centres, fake a bit wider (less
    so in high dimension, where distances concentrate)."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(7, dim)) + 5.0
    real = centres[rng.integers(0, 7, n_real)] + rng.normal(size=(n_real, dim))
    fake = centres[rng.integers(0, 7, n_fake)] + (1 + 0.6 / dim**0.5) * rng.normal(size=(n_fake, dim))
    return real.astype(dtype), fake.astype(dtype)


@pytest.mark.parametrize(("dim", "dtype"), [(16, np.float32), (64, np.float64), (2048, np.float32)])
def test_equals_the_blockwise_implementation_in_every_precision_and_chunking(dim: int, dtype: type) -> None:
    real, fake = _clouds(260, 190, dim, seed=dim, dtype=dtype)
    expected = _blockwise_prdc(real, fake, 3, 5)
    assert 0 < expected[keys.PRECISION] < 1 and 0 < expected[keys.RECALL] < 1  # not a trivial case
    for precision in ("float64", "float32"):
        for chunk_size, key_chunk_size in ((1024, 0), (7, 19), (64, 260)):
            got = prdc(real, fake, 3, 5, chunk_size=chunk_size, key_chunk_size=key_chunk_size, method="brute",
                       precision=precision)
            assert got == expected, (precision, chunk_size, key_chunk_size)


@pytest.mark.parametrize("k", [3, 5])
def test_ties_on_a_high_dimensional_integer_lattice(k: int) -> None:
    # Small integers: every float64 Gram product is exact in any summation order, so the old blockwise numbers are
    # exact too; the many equal distances and duplicate rows put pairs on every radius, which the float32 filter
    # cannot decide and must hand to the canonical formula (and rows with near-ties must fetch more candidates).
    rng = np.random.default_rng(k)
    real = rng.integers(0, 2, size=(240, 12)).astype(np.float32)
    fake = rng.integers(0, 2, size=(200, 12)).astype(np.float32)
    expected = _blockwise_prdc(real, fake, k, k)
    for precision in ("float64", "float32"):
        for chunk_size, key_chunk_size in ((1024, 0), (5, 11)):
            assert prdc(real, fake, k, k, chunk_size=chunk_size, key_chunk_size=key_chunk_size, method="brute",
                        precision=precision) == expected, (precision, chunk_size)


def test_memory_mapped_and_sharded_references_equal_the_in_memory_result(tmp_path) -> None:
    real, fake = _clouds(300, 150, 40, seed=3)
    in_memory = prdc(real, fake, 3, 5, method="brute")
    np.save(tmp_path / "real.npy", real)
    memmap = np.load(tmp_path / "real.npy", mmap_mode="r")
    files, counts, offsets = [], [], []
    for part, rows in enumerate(np.array_split(real, 3)):  # three .npy shards, read with os.pread
        np.save(tmp_path / f"real-{part}.npy", rows)
        files.append(tmp_path / f"real-{part}.npy")
        counts.append(len(rows))
        offsets.append((tmp_path / f"real-{part}.npy").stat().st_size - rows.nbytes)
    sharded = ShardedArray(files, counts, (40,), np.dtype(np.float32), offsets)
    save_npz_atomic(tmp_path / "reference.npz", meta={}, features=real, labels=np.zeros(300, dtype=np.int64))
    member = npz_member_rows(tmp_path / "reference.npz", "features")  # the feature stage's file, read in place
    for stored in (memmap, sharded, member):
        for chunk_size, key_chunk_size in ((1024, 0), (6, 23)):
            got = prdc(stored, fake, 3, 5, chunk_size=chunk_size, key_chunk_size=key_chunk_size, method="brute")
            assert got == in_memory, (type(stored).__name__, chunk_size, key_chunk_size)


def test_low_dimensional_streaming_equals_the_kd_tree_on_ties() -> None:
    rng = np.random.default_rng(2)
    real = rng.integers(0, 4, size=(300, 3)) * 0.1
    fake = rng.integers(0, 4, size=(260, 3)) * 0.1 + 0.05 * rng.integers(0, 2, size=(260, 3))
    tree = prdc(real, fake, 3, 5, method="tree")
    assert prdc(real, fake, 3, 5, method="brute", chunk_size=9, key_chunk_size=31) == tree
    assert prdc(real, fake, 3, 5, method="brute") == tree


def test_canonical_distance_is_independent_of_blocking_and_exact_for_duplicates() -> None:
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(50, 2048)))
    whole = knn_kernels.tree_dot(x, x.flip(0))
    parts = torch.cat([knn_kernels.tree_dot(x[a:a + 7], x.flip(0)[a:a + 7]) for a in range(0, 50, 7)])
    assert torch.equal(whole, parts)
    kernel = knn_kernels.GramKernel("float64", 2048, torch.device("cpu"))
    rows = kernel.prepare(torch.cat([x[:3], x[:3]]), 0)
    index = torch.arange(3)
    assert torch.equal(kernel.exact_values(rows, index, rows, index + 3), torch.zeros(3, dtype=torch.float64))


def test_a_filter_error_beyond_its_bound_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    # A bound that is too small must stop the run, never let a wrong decision through.
    real, fake = _clouds(120, 90, 32, seed=1)
    original = knn_kernels.GramKernel.__init__

    def no_bound(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.kappa_filter = self.kappa_canonical = self.tau = 0.0

    monkeypatch.setattr(knn_kernels.GramKernel, "__init__", no_bound)
    with pytest.raises(RuntimeError, match="proven bound"):
        prdc(real, fake, 3, 5, method="brute", precision="float32")


def test_streamed_input_errors_name_the_row() -> None:
    real, fake = _clouds(100, 80, 16, seed=4)
    real[77, 3] = np.nan
    with pytest.raises(ValueError, match=r"real: 1 row\(s\) contain NaN values \(first bad row 77\)"):
        prdc(real, fake, method="brute", key_chunk_size=30)
    with pytest.raises(ValueError, match="precision='fp16'; expected one of"):
        prdc(fake, fake, precision="fp16")
    with pytest.raises(ValueError, match="key_chunk_size=-1"):
        prdc(fake, fake, key_chunk_size=-1)


def test_reference_subset_is_seeded_and_checked() -> None:
    rows = reference_rows(1000, 100, seed=7)
    assert rows is not None and len(rows) == 100 and len(set(rows.tolist())) == 100
    assert np.array_equal(rows, np.sort(rows)) and np.array_equal(rows, reference_rows(1000, 100, seed=7))
    assert not np.array_equal(rows, reference_rows(1000, 100, seed=8))
    assert reference_rows(1000, "full", seed=7) is None
    with pytest.raises(ValueError, match="prdc_reference=2000 exceeds the 1000 reference rows"):
        reference_rows(1000, 2000, seed=0)
    for bad in ("all", 1, True, 2.5):
        with pytest.raises(ValueError, match="expected 'full'"):
            check_reference(bad)


def test_bootstrap_computes_the_reference_radii_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference set's k-NN radii (the 1.28M x 1.28M part at ImageNet scale) are computed once for all bootstrap
    resamples of the generated rows, with the same intervals as recomputing them every time."""
    from metrics import prdc as prdc_module
    from metrics.suite import compute_with_ci

    real, fake = _clouds(300, 120, 16, seed=5)
    sources: list[str] = []
    counted = prdc_module.knn_radii

    def counting(source, *args, **kwargs):
        sources.append(source.name)
        return counted(source, *args, **kwargs)

    monkeypatch.setattr(prdc_module, "knn_radii", counting)
    run = {"metrics": ["prdc"], "bootstrap_resamples": 4, "bootstrap_seed": 3, "k_pr": 3, "k_dc": 5}
    values, ci = compute_with_ci(real, fake, **run)
    assert sources.count("real") == 1 and sources.count("fake") == 5  # the point estimate + 4 resamples
    monkeypatch.setattr(prdc_module._REAL_RADII, "get", lambda *args: None)  # recompute every time
    fresh_values, fresh_ci = compute_with_ci(real, fake, **run)
    assert sources.count("real") == 1 + 5
    assert values == fresh_values and ci == fresh_ci
    other = real.copy()  # a different reference object with the same values is not served the cached radii
    monkeypatch.undo()
    monkeypatch.setattr(prdc_module, "knn_radii", counting)
    prdc(real, fake, k_pr=3, k_dc=5)
    before = sources.count("real")
    prdc(other, fake, k_pr=3, k_dc=5)
    assert sources.count("real") == before + 1

"""``kaleido.evaluate`` writes the new metrics and the ``ci95`` block (present only with bootstrap resamples)."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import run_evaluate

from metrics import keys
from metrics.errors import InputError
from metrics.io import save_npz_atomic
from metrics.suite import compute_with_ci

N = 60


@pytest.fixture()
def inputs(tmp_path, default_config):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(80, 2)).astype(np.float32)
    fake = (rng.normal(size=(N, 2)) + 0.3).astype(np.float32)
    labels = np.arange(N) % 2
    save_npz_atomic(tmp_path / "real.npz", features=real, labels=np.arange(80) % 2)
    save_npz_atomic(tmp_path / "fake.npz", features=fake, labels=labels)
    save_npz_atomic(tmp_path / "shard.npz", meta={"config": {}}, x=fake, labels=labels)
    return {"dir": tmp_path, "real": real, "fake": fake, "labels": labels, "config": default_config}


def _run(inputs, **metric_options) -> dict:
    cfg = inputs["config"]
    exp = cfg["experiments"]["toy2d"]
    exp["num_samples"] = N
    exp["metrics"].update(metric_options)
    d = inputs["dir"]
    return run_evaluate(d, cfg)


def test_metrics_and_ci95_written(inputs) -> None:
    record = _run(inputs, bootstrap_resamples=4, kid_subsets=5, kid_subset_size=1000, mss_include_diagonal=False)
    options = record["metric_options"]
    assert options["kid_subset_size"] == N and options["bootstrap_resamples"] == 4  # capped at min(n_real, n_fake)
    assert options["num_reference"] == len(inputs["real"])
    values, ci = compute_with_ci(inputs["real"], inputs["fake"], labels_fake=inputs["labels"], bootstrap_resamples=4,
                                 bootstrap_seed=options["bootstrap_seed"], kid_subsets=5, kid_subset_size=N,
                                 mss_include_diagonal=False)
    for name, value in values.items():
        assert record["metrics"][name] == pytest.approx(value, rel=1e-12), name
    assert {keys.KID, keys.MSS, keys.VENDI_PER_CONDITION} <= set(record["metrics"])
    assert record[keys.CI95] == {k: [pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12)]
                                 for k, (lo, hi) in ci.items()}
    assert keys.MODES_COVERED in record["metrics"] and keys.MODES_COVERED not in record[keys.CI95]


def test_no_ci95_key_without_resamples(inputs) -> None:
    record = _run(inputs, bootstrap_resamples=0)
    assert keys.CI95 not in record and keys.FD in record["metrics"]


def test_diversity_protocol_uses_the_first_samples_of_the_first_conditions(inputs) -> None:
    """MSS and per-condition Vendi on conditions x per_condition rows (the paper's 1K x 10), checked against a
    direct numpy computation on those rows; the other metrics stay on every sample."""
    record = _run(inputs, bootstrap_resamples=0, kid_subsets=0, diversity_conditions=2, diversity_per_condition=7)
    fake, labels = inputs["fake"], inputs["labels"]
    rows = np.concatenate([np.flatnonzero(labels == c)[:7] for c in (0, 1)])
    mss, vendi = [], []
    for c in (0, 1):
        x = fake[rows][labels[rows] == c].astype(np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        k = x @ x.T
        mss.append(k.mean())
        eig = np.clip(np.linalg.eigvalsh(k / len(x)), 0.0, None)
        eig = eig[eig > 0]
        vendi.append(np.exp(-(eig * np.log(eig)).sum()))
    assert record["metrics"][keys.MSS] == pytest.approx(np.mean(mss), rel=1e-9)
    assert record["metrics"][keys.VENDI_PER_CONDITION] == pytest.approx(np.mean(vendi), rel=1e-9)
    options = record["metric_options"]
    assert (options["diversity_conditions"], options["diversity_per_condition"], options["diversity_num_samples"]) \
        == (2, 7, 14)
    everything = _run(inputs, bootstrap_resamples=0, kid_subsets=0, diversity_conditions=0, diversity_per_condition=0)
    assert everything["metrics"][keys.FD] == record["metrics"][keys.FD]  # FD etc. still on all N samples
    assert everything["metrics"][keys.MSS] != record["metrics"][keys.MSS]


def test_diversity_protocol_rejects_too_few_samples(inputs) -> None:
    with pytest.raises(InputError, match=r"diversity_per_condition=40: conditions with fewer samples: 0 \(30\)"):
        _run(inputs, bootstrap_resamples=0, kid_subsets=0, diversity_conditions=1, diversity_per_condition=40)
    with pytest.raises(InputError, match="diversity_conditions=3, but the samples hold 2 conditions"):
        _run(inputs, bootstrap_resamples=0, kid_subsets=0, diversity_conditions=3, diversity_per_condition=2)


def test_extra_feature_network_adds_suffixed_fd_vendi_mss(inputs) -> None:
    """``--extra NET REAL FAKE``: FD, Vendi (overall and per condition) and MSS of another network's features, keyed
    ``<metric>_<net>``, equal to the suite on those features; the main network's metrics are unchanged."""
    d = inputs["dir"]
    rng = np.random.default_rng(5)
    real_b = rng.normal(size=(80, 4)).astype(np.float32)
    fake_b = (rng.normal(size=(N, 4)) * 1.5).astype(np.float32)
    save_npz_atomic(d / "real_b.npz", features=real_b, labels=np.arange(80) % 2)
    save_npz_atomic(d / "fake_b.npz", features=fake_b, labels=inputs["labels"])
    cfg = inputs["config"]
    exp = cfg["experiments"]["toy2d"]
    exp["num_samples"] = N
    exp["metrics"].update(bootstrap_resamples=3, kid_subsets=0, extra_feature_nets={"dinov2-dgm": None})
    record = run_evaluate(d, cfg, "--extra", "dinov2-dgm", str(d / "real_b.npz"), str(d / "fake_b.npz"))
    seed = record["metric_options"]["bootstrap_seed"]
    values, ci = compute_with_ci(real_b, fake_b, labels_fake=inputs["labels"], bootstrap_resamples=3,
                                 bootstrap_seed=seed, metrics=["fid", "vendi", "mss"])
    for key in (keys.FD, keys.VENDI, keys.VENDI_PER_CONDITION, keys.MSS):
        assert record["metrics"][f"{key}_dinov2_dgm"] == pytest.approx(values[key], rel=1e-12), key
        assert record[keys.CI95][f"{key}_dinov2_dgm"] == [pytest.approx(v, rel=1e-12) for v in ci[key]]
    assert "precision_dinov2_dgm" not in record["metrics"]
    main, _ = compute_with_ci(inputs["real"], inputs["fake"], labels_fake=inputs["labels"], kid_subsets=0)
    assert record["metrics"][keys.FD] == pytest.approx(main[keys.FD], rel=1e-12)


def test_one_sample_per_condition_leaves_out_per_condition_metrics(inputs) -> None:
    """A captioned set sampled once per caption: MSS and per-condition Vendi are undefined (each would be 1 by
    construction) and left out, and the bootstrap is not stratified (strata of one row give intervals of width 0)."""
    d = inputs["dir"]
    singletons = np.arange(N)
    save_npz_atomic(d / "fake.npz", features=inputs["fake"], labels=singletons)  # the shard keeps the toy's classes
    record = _run(inputs, bootstrap_resamples=4)
    assert keys.MSS not in record["metrics"] and keys.VENDI_PER_CONDITION not in record["metrics"]
    values, ci = compute_with_ci(inputs["real"], inputs["fake"], bootstrap_resamples=4,
                                 bootstrap_seed=record["metric_options"]["bootstrap_seed"])
    assert record["metrics"][keys.FD] == pytest.approx(values[keys.FD], rel=1e-12)
    low, high = record[keys.CI95][keys.FD]
    assert (low, high) == (pytest.approx(ci[keys.FD][0], rel=1e-12), pytest.approx(ci[keys.FD][1], rel=1e-12))
    assert high > low

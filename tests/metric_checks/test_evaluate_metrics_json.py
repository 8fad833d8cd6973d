"""``kaleido.evaluate`` writes the new metrics and the ``ci95`` block (present only with bootstrap resamples)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from kaleido import evaluate
from kaleido.io import save_npz_atomic
from metrics import keys
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
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    evaluate.main(["--config", str(d / "config.yaml"), "--experiment", "toy2d", "--method", "mdm", "--latent",
                   "none", "--guidance", "8", "--real", str(d / "real.npz"), "--fake", str(d / "fake.npz"),
                   "--out", str(d / "m.json"), str(d / "shard.npz")])
    return json.loads((d / "m.json").read_text())


def test_metrics_and_ci95_written(inputs) -> None:
    record = _run(inputs, bootstrap_resamples=4, kid_subsets=5, kid_subset_size=1000, mss_include_diagonal=False)
    options = record["metric_options"]
    assert options["kid_subset_size"] == N and options["bootstrap_resamples"] == 4  # capped at min(n_real, n_fake)
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

"""``metrics.prdc_reference``: P/R/D/C against the whole reference set (``full``, the paper's protocol and the
default, absent from every stage slice) or against a seeded subset of N rows; the k-NN speed settings
(``knn_key_chunk_size``, ``knn_precision``) stay outside the slices."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from stage_helpers import run_evaluate

from kaleido import config
from kaleido.errors import ConfigError
from kaleido.seeding import derive_seed
from metrics import keys
from metrics.io import save_npz_atomic
from metrics.prdc import prdc, reference_rows
from metrics.suite import compute_all

N_REAL, N_FAKE, DIM = 400, 60, 12
REPO = Path(__file__).resolve().parents[2]


def _evaluate_slice(cfg: dict) -> dict:
    return config.stage_spec(config.validate(copy.deepcopy(cfg)), "toy2d", "evaluate", method="mdm", latent="none",
                             guidance="8")


def test_full_reference_and_speed_settings_leave_the_slice_unchanged(default_config) -> None:
    before = _evaluate_slice(default_config)
    assert "prdc_reference" not in before["metrics"]
    metrics_block = default_config["experiments"]["toy2d"]["metrics"]
    metrics_block.update(prdc_reference="full", knn_key_chunk_size=4096, knn_precision="float64")
    assert _evaluate_slice(default_config) == before
    metrics_block["prdc_reference"] = 50000
    after = _evaluate_slice(default_config)
    assert after["metrics"]["prdc_reference"] == 50000 and after != before
    resolved = config.validate(copy.deepcopy(default_config))["experiments"]["toy2d"]["metrics"]
    assert (resolved["knn_key_chunk_size"], resolved["knn_precision"]) == (4096, "float64")


@pytest.mark.parametrize(("key", "value"), [("prdc_reference", "all"), ("prdc_reference", 1),
                                            ("knn_precision", "fp16"), ("knn_key_chunk_size", -1)])
def test_bad_settings_are_named(default_config, key: str, value: object) -> None:
    default_config["experiments"]["toy2d"]["metrics"][key] = value
    with pytest.raises(ConfigError, match=f"metrics.{key}"):
        config.validate(default_config)


@pytest.fixture()
def feature_files(tmp_path: Path, default_config: dict) -> dict:
    rng = np.random.default_rng(5)
    real = rng.normal(size=(N_REAL, DIM)).astype(np.float32)
    fake = (1.1 * rng.normal(size=(N_FAKE, DIM)) + 0.1).astype(np.float32)
    labels = np.arange(N_FAKE) % 2
    save_npz_atomic(tmp_path / "real.npz", features=real, labels=np.zeros(N_REAL, dtype=np.int64))
    save_npz_atomic(tmp_path / "fake.npz", features=fake, labels=labels)
    save_npz_atomic(tmp_path / "shard.npz", meta={"config": {}}, x=fake[:, :2], labels=labels)
    exp = default_config["experiments"]["toy2d"]
    exp["num_samples"] = N_FAKE
    exp["metrics"].update(bootstrap_resamples=0, kid_subsets=0)
    return {"dir": tmp_path, "real": real, "fake": fake, "config": default_config}


def _evaluate(files: dict, **metric_options) -> dict:
    cfg = copy.deepcopy(files["config"])
    cfg["experiments"]["toy2d"]["metrics"].update(metric_options)
    d = files["dir"]
    return run_evaluate(d, cfg)


def test_evaluate_uses_a_seeded_subset_for_prdc_only(feature_files: dict) -> None:
    full = _evaluate(feature_files)
    options = full["metric_options"]
    assert options["prdc_reference"] == "full" and options[keys.PRDC_NUM_REFERENCE] == N_REAL == options[
        "num_reference"]
    expected_full = prdc(feature_files["real"], feature_files["fake"], 3, 5)
    assert {name: full["metrics"][name] for name in expected_full} == expected_full

    subset = _evaluate(feature_files, prdc_reference=150, knn_key_chunk_size=37, knn_precision="float64")
    options = subset["metric_options"]
    seed = derive_seed("toy2d", feature_files["config"]["experiments"]["toy2d"]["seed"], "evaluate",
                       "prdc_reference")
    assert options[keys.PRDC_REFERENCE_SEED] == seed and options[keys.PRDC_NUM_REFERENCE] == 150
    rows = reference_rows(N_REAL, 150, seed)
    expected = prdc(feature_files["real"][rows], feature_files["fake"], 3, 5)
    assert {name: subset["metrics"][name] for name in expected} == expected != expected_full
    assert subset["metrics"][keys.FD] == full["metrics"][keys.FD]  # FD keeps the whole reference set


def test_compute_all_and_the_command_line_take_the_subset(feature_files: dict) -> None:
    real, fake = feature_files["real"], feature_files["fake"]
    rows = reference_rows(N_REAL, 120, 9)
    expected = prdc(real[rows], fake, 3, 5)
    got = compute_all(real, fake, metrics=["prdc"], prdc_reference=120, prdc_reference_seed=9)
    assert got == expected
    d = feature_files["dir"]
    np.save(d / "real.npy", real)
    np.save(d / "fake.npy", fake)
    done = subprocess.run([sys.executable, "-m", "metrics", "from-features", "--real", str(d / "real.npy"), "--fake",
                           str(d / "fake.npy"), "--metrics", "prdc", "--prdc-reference", "120", "--json",
                           "--key-chunk-size", "50", "--knn-precision", "float32"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["prdc_reference"] == 120
    assert {name: record[name] for name in expected} == prdc(real[reference_rows(N_REAL, 120, 0)], fake, 3, 5)
    bad = subprocess.run([sys.executable, "-m", "metrics", "from-features", "--real", str(d / "real.npy"), "--fake",
                          str(d / "fake.npy"), "--prdc-reference", "everything"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'everything' is neither 'full' nor an integer >= 2" in bad.stderr

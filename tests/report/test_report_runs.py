"""What a run holds (params/metrics/tags) and the pieces of the figures, without MLflow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from report_data import write_run

from kaleido.report.collect import load_metric_records
from kaleido.report.figures import select_toy_rows, shared_limits
from kaleido.report.runs import (
    CONTENT_HASH_TAG,
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    RUN_KEY_TAG,
    flatten,
    metric_run_spec,
    mlflow_key,
)
from kaleido.report.samples import load_toy_points
from kaleido.report.tracking import default_artifact_root, sqlite_path
from metrics.io import read_json, write_json_atomic


def test_flatten_dotted_strings_and_limits() -> None:
    flat = flatten({"b": {"c": 1, "d": [1, 2], "e": {}}, "a": None, "x y": "v" * 7000, "bad*key": True})
    assert flat == {"a": "None", "b.c": "1", "b.d": "[1, 2]", "b.e": "{}", "x y": "v" * MAX_PARAM_VALUE_LENGTH,
                    "bad_key": "True"}


def test_mlflow_key_is_valid() -> None:
    assert mlflow_key("a/../b//c:d") == "a/_/b/c_d"
    assert mlflow_key("/lead") == "lead" and mlflow_key("") == "_"
    assert len(mlflow_key("k" * 400)) == MAX_KEY_LENGTH


def test_metric_run_spec(tmp_path: Path) -> None:
    path = tmp_path / write_run(tmp_path, "toy2d", "kaleido", "kmeans", 8.0)
    (record,) = load_metric_records([path])
    record.metrics["nan_metric"] = math.nan
    spec = metric_run_spec(record, scatter_points=100)
    assert spec.run_name == "kaleido/kmeans/w8" and spec.tags[RUN_KEY_TAG] == "toy2d/kaleido/kmeans/w8"
    assert CONTENT_HASH_TAG not in spec.tags  # set only once the run is complete
    assert "nan_metric" not in spec.metrics and spec.metrics["modes_covered"] == 3.0
    assert spec.params["train.lr"] == "0.0001" and spec.tags["pkg.numpy"] == "2.3.0"
    assert spec.make_artifacts is not None
    assert metric_run_spec(record, scatter_points=100).content_hash == spec.content_hash
    assert metric_run_spec(record, scatter_points=50).content_hash != spec.content_hash


def test_metric_run_tags_every_weight_check(tmp_path: Path) -> None:
    """The MLflow run of a metric JSON carries the digest and verification of every weight file behind it."""
    path = tmp_path / write_run(tmp_path, "shapes", "mdm", "none", 4.0, dataset="shapes")
    doc = read_json(path)
    doc["feature_weights"] = {"inception": [{"name": "inception-v3-compat", "sha256": "6726825d" + "0" * 56,
                                             "verified": True}],
                              "sscd": [{"name": "sscd_disc_mixup", "sha256": "ab" * 32, "verified": False}]}
    write_json_atomic(path, doc)
    (record,) = load_metric_records([path])
    tags = metric_run_spec(record, scatter_points=0).tags
    assert tags["kaleido.weights.inception-v3-compat.sha256"] == "6726825d" + "0" * 56
    assert tags["kaleido.weights.inception-v3-compat.verified"] == "True"
    assert tags["kaleido.weights.sscd_disc_mixup.verified"] == "False"


def test_toy_points_and_rows(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = [write_run(tmp_path, "toy2d", m, lat, g, per_shard=100) for m, lat in
             (("mdm", "none"), ("kaleido", "kmeans"), ("mdm_cads", "none")) for g in (1.0, 8.0, 3.0)]
    records = load_metric_records(paths)
    xy, labels = load_toy_points(records[0].samples, 150)  # crosses into the second shard
    assert xy.shape == (150, 2) and xy.dtype == np.float32 and labels.shape == (150,)
    columns, rows = select_toy_rows(records, [1, 5, 8, 25])
    assert columns == [1.0, 8.0]
    assert [(r.method, r.latent) for r in rows] == [("mdm", "none"), ("kaleido", "kmeans")]
    assert all(run is not None and run.guidance == g for r in rows for run, g in zip(r.runs, columns, strict=True))
    columns, _ = select_toy_rows(records, [100])  # none sampled: fall back to every weight
    assert columns == [1.0, 3.0, 8.0]
    limits = shared_limits([xy])
    assert (limits[:, 0] < xy.min(axis=0)).all() and (limits[:, 1] > np.percentile(xy, 99, axis=0)).all()


def test_sqlite_paths() -> None:
    assert sqlite_path("sqlite:///results/mlflow.db") == Path("results/mlflow.db")
    assert sqlite_path("sqlite:////abs/m.db") == Path("/abs/m.db")
    assert sqlite_path("http://host:5000") is None and default_artifact_root("http://host:5000") is None
    assert default_artifact_root("sqlite:////abs/m.db") == Path("/abs/mlartifacts")

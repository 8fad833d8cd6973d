"""End-to-end report CLI against a real MLflow sqlite store: outputs, idempotence, updates, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from report_data import IMAGE_GUIDANCE, IMAGE_SERIES, TOY_GUIDANCE, TOY_SERIES

import kaleido
from kaleido.report.cli import main
from kaleido.report.runs import CONTENT_HASH_TAG, RUN_KEY_TAG
from metrics.io import read_json, write_json_atomic, write_text_atomic

REPO_ROOT = Path(kaleido.__file__).resolve().parent.parent
EXPECTED_KEYS = sorted([f"toy2d/{m}/{lat}/w{g:g}" for m, lat in TOY_SERIES for g in TOY_GUIDANCE]
                       + [f"shapes/{m}/{lat}/w{g:g}" for m, lat in IMAGE_SERIES for g in IMAGE_GUIDANCE]
                       + ["toy2d/latents/kmeans", "toy2d/table1", "shapes/table1"])


def _cli_args(inputs: dict[str, Any], uri: str) -> list[str]:
    return ["--metrics", *inputs["metrics"], "--extra-json", *inputs["extra"], "--out-dir", "reports",
            "--tracking-uri", uri, "--toy-guidance", "1", "5", "8", "25", "--toy-max-points", "400"]


def _active_runs(uri: str) -> dict[str, list]:
    """Active runs of every kaleido/* experiment, grouped by run-key tag."""
    client = MlflowClient(uri)
    experiments = [e for e in client.search_experiments() if e.name.startswith("kaleido/")]
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ACTIVE_ONLY,
                              max_results=1000)
    grouped: dict[str, list] = {}
    for run in runs:
        grouped.setdefault(run.data.tags[RUN_KEY_TAG], []).append(run)
    return grouped


def _assert_png(path: Path, min_bytes: int = 5000) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert path.stat().st_size > min_bytes, path
    pixels = imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and float(np.std(pixels)) > 0.01, path


def test_report_outputs_idempotent_and_updates(report_inputs: dict[str, Any]) -> None:
    root: Path = report_inputs["root"]
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    assert main(_cli_args(report_inputs, uri)) == 0

    # table1.csv: columns, one row per key, sorted
    csv = root / "reports" / "table1.csv"
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("experiment,method,latent,guidance,fd,precision,recall,density,coverage,vendi,"
                               "modes_covered,mode_entropy,")
    assert "num_samples" in lines[0] and "feature_net" in lines[0]
    keys = [tuple(line.split(",")[:4]) for line in lines[1:]]
    assert keys == [("shapes", "mdm", "none", "2"), ("shapes", "kaleido", "text", "2"),
                    ("toy2d", "mdm", "none", "1"), ("toy2d", "mdm", "none", "8"),
                    ("toy2d", "mdm_cads", "none", "1"), ("toy2d", "mdm_cads", "none", "8"),
                    ("toy2d", "kaleido", "kmeans", "1"), ("toy2d", "kaleido", "kmeans", "8")]
    assert (root / "reports" / "table1.md").read_text().count("## ") == 2

    # figures
    figures = root / "reports" / "figures"
    for name in ("fid_recall_vs_guidance_toy2d", "fid_recall_vs_guidance_shapes", "toy_modes"):
        _assert_png(figures / f"{name}.png")
        assert (figures / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"

    # MLflow: one finished run per key, with params, metrics, tags and artifacts; artifacts beside the db
    runs = _active_runs(uri)
    assert sorted(runs) == EXPECTED_KEYS and all(len(v) == 1 for v in runs.values())
    run = runs["toy2d/kaleido/kmeans/w8"][0]
    assert run.info.run_name == "kaleido/kmeans/w8" and run.info.status == "FINISHED"
    assert run.data.params["data.modes"] == "8" and run.data.params["sample.guidance"] == "[1, 5, 8, 25]"
    assert run.data.metrics["fd"] == pytest.approx(1 / 8 + 0.7) and "modes_covered" in run.data.metrics
    tags = run.data.tags
    assert tags["git.commit"] == "a" * 40 and tags["git.dirty"] == "true" and tags["pkg.torch"] == "2.14.1"
    assert tags["kaleido.config_hash"] == "0123456789abcdef" and tags["kaleido.code_hash"] == "fedcba9876543210"
    client = MlflowClient(uri)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"metrics", "samples"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "samples")] == ["samples/samples_scatter.png"]
    assert run.info.artifact_uri.startswith((root / "store" / "mlartifacts" / "toy2d").as_uri())
    _assert_png(Path(client.download_artifacts(run.info.run_id, "samples/samples_scatter.png", str(root))), 2000)
    assert not (root / "mlruns").exists()
    extra = runs["toy2d/latents/kmeans"][0]
    assert extra.info.run_name == "toy2d/latents/kmeans" and extra.data.metrics == {"latent_accuracy": 0.99}
    # parent runs: one per experiment, holding its tables and figures; every other run is a child of its own
    parent = runs["toy2d/table1"][0]
    assert parent.info.run_name == "table1" and tags.get("mlflow.parentRunId") == parent.info.run_id
    assert extra.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "tables")} == {
        f"tables/{name}" for name in ("table1.csv", "table1.md", "table1_toy2d.csv", "table1_toy2d.md",
                                      "table1_toy2d.tex")}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "figures")} == {
        f"figures/{name}.{ext}" for name in ("fid_recall_vs_guidance_toy2d", "toy_modes") for ext in ("png", "pdf")}
    assert parent.data.tags["pkg.snakemake"][0].isdigit()
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's runs view
    image_run = runs["shapes/kaleido/text/w2"][0]
    assert image_run.data.tags["mlflow.parentRunId"] == runs["shapes/table1"][0].info.run_id
    assert "modes_covered" not in image_run.data.metrics
    assert {a.path for a in client.list_artifacts(image_run.info.run_id)} == {"metrics"}

    run_ids = read_json(root / "reports" / "mlflow_runs.json")
    assert list(run_ids) == EXPECTED_KEYS and run_ids == {k: v[0].info.run_id for k, v in runs.items()}

    # second run with identical inputs: identical bytes, same runs, nothing created
    outputs = [csv, root / "reports" / "table1.md", root / "reports" / "mlflow_runs.json"]
    first_bytes = {p: p.read_bytes() for p in outputs}
    assert main(_cli_args(report_inputs, uri)) == 0
    assert {p: p.read_bytes() for p in first_bytes} == first_bytes
    again = _active_runs(uri)
    assert {k: [r.info.run_id for r in v] for k, v in again.items()} == {k: [v] for k, v in run_ids.items()}
    assert client.get_run(run.info.run_id).info.end_time == run.info.end_time

    # a changed metric JSON replaces exactly its run
    changed = root / "results/toy2d/metrics/kaleido/kmeans/w8.json"
    doc = read_json(changed)
    doc["metrics"]["fd"] = 0.5
    write_json_atomic(changed, doc)
    assert main(_cli_args(report_inputs, uri)) == 0
    after = _active_runs(uri)
    assert sorted(after) == EXPECTED_KEYS and all(len(v) == 1 for v in after.values())
    new_run = after["toy2d/kaleido/kmeans/w8"][0]
    assert new_run.info.run_id != run.info.run_id and new_run.data.metrics["fd"] == 0.5
    assert new_run.data.tags[CONTENT_HASH_TAG] != tags[CONTENT_HASH_TAG]
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    # ... and the parents (the combined table changed); the other children are kept, re-pointed at the new parent
    replaced = {"toy2d/kaleido/kmeans/w8", "toy2d/table1", "shapes/table1"}
    unchanged = {k: v[0].info.run_id for k, v in after.items() if k not in replaced}
    assert unchanged == {k: v for k, v in run_ids.items() if k not in replaced}
    new_parent = after["toy2d/table1"][0].info.run_id
    assert new_parent != parent.info.run_id
    assert all(v[0].data.tags["mlflow.parentRunId"] == new_parent for k, v in after.items()
               if k.startswith("toy2d/") and k != "toy2d/table1")
    assert read_json(root / "reports" / "mlflow_runs.json")["toy2d/kaleido/kmeans/w8"] == new_run.info.run_id
    assert "0.5," in csv.read_text()


def test_interrupted_run_is_replaced(report_inputs: dict[str, Any]) -> None:
    root: Path = report_inputs["root"]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    args = _cli_args({**report_inputs, "metrics": report_inputs["metrics"][:1], "extra": []}, uri)
    assert main(args) == 0
    (key,) = (k for k in _active_runs(uri) if not k.endswith("/table1"))
    client = MlflowClient(uri)
    stale = _active_runs(uri)[key][0]
    client.set_terminated(stale.info.run_id, "FAILED")  # as if the report had died mid-run
    assert main(args) == 0
    runs = _active_runs(uri)[key]
    assert len(runs) == 1 and runs[0].info.run_id != stale.info.run_id and runs[0].info.status == "FINISHED"


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def test_module_entry_point_default_store(report_inputs: dict[str, Any]) -> None:
    """``python -m kaleido.report`` in the working directory, default tracking URI sqlite:///results/mlflow.db."""
    root: Path = report_inputs["root"]
    command = [sys.executable, "-m", "kaleido.report", "--metrics", *report_inputs["metrics"], "--out-dir", "reports"]
    done = subprocess.run(command, cwd=root, env=_subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (root / "results" / "mlflow.db").is_file() and (root / "results" / "mlartifacts" / "toy2d").is_dir()
    assert not (root / "mlruns").exists()
    run_ids = json.loads((root / "reports" / "mlflow_runs.json").read_text())
    assert len(run_ids) == len(report_inputs["metrics"]) + 2  # + a parent run per experiment
    csv = (root / "reports" / "table1.csv").read_bytes()

    # the in-process CLI run on the same store changes nothing
    assert main(["--metrics", *report_inputs["metrics"], "--out-dir", "reports"]) == 0
    assert json.loads((root / "reports" / "mlflow_runs.json").read_text()) == run_ids
    assert (root / "reports" / "table1.csv").read_bytes() == csv


def test_cli_errors_name_the_files(report_inputs: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root: Path = report_inputs["root"]
    bad = root / "results" / "broken.json"
    write_text_atomic(bad, "{not json")
    command = [sys.executable, "-m", "kaleido.report", "--metrics", *report_inputs["metrics"], str(bad),
               "--out-dir", "reports"]
    done = subprocess.run(command, cwd=root, env=_subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "broken.json" in done.stderr and "not valid JSON" in done.stderr
    assert not (root / "reports").exists() and not (root / "results" / "mlflow.db").exists()

    duplicate = root / "results" / "dup.json"
    duplicate.write_bytes((root / report_inputs["metrics"][0]).read_bytes())
    assert main(["--metrics", *report_inputs["metrics"], str(duplicate), "--out-dir", "reports"]) == 2
    message = capsys.readouterr().err
    assert "duplicate run toy2d/mdm/none/w1" in message
    assert report_inputs["metrics"][0] in message and str(duplicate) in message
    assert not (root / "reports").exists()

    missing_shard = root / report_inputs["metrics"][0]
    doc = read_json(missing_shard)
    doc["samples"].append("results/toy2d/samples/nope.npz")
    write_json_atomic(missing_shard, doc)
    assert main(["--metrics", *report_inputs["metrics"], "--out-dir", "reports"]) == 2
    assert "nope.npz" in capsys.readouterr().err
    assert not (root / "reports").exists()

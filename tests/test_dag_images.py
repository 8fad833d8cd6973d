"""The image pipeline through the real DAG: shapes data -> offline latents -> NestedUNet MDM / Kaleido (T5 prior)
-> sampling (CFG, autoguidance) -> `domain` CNN features -> metrics with bootstrap intervals -> report (paper
table, sample grid, MLflow). Tiny sizes: the numbers mean nothing, the wiring is what is tested."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import yaml
from dag_helpers import REPO, env_for, make_workdir, snakemake, tiny_shapes
from loopback_hub import LoopbackServer
from metric_checks.img_nets import save_tiny_sscd

from kaleido.latents import tokenizer as tok
from kaleido.latents.formats import parse_bbox
from metrics.io import load_npz, read_json
from metrics.weights import WEIGHTS

pytestmark = pytest.mark.slow

METHODS = ["mdm", "mdm_autoguidance", "kaleido"]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("shapes_dag"))
    cfg = tiny_shapes(yaml.safe_load((REPO / "config" / "shapes.yaml").read_text()), methods=METHODS, guidance=[4],
                      edits=[{"latent": "bbox", "edit": "move", "guidance": 4, "count": 8}])
    cfg["experiments"]["shapes"]["latents"] = {"bbox": {}}
    # a second feature network (a tiny random SSCD in its TorchScript release format): the paper's MSS / Vendi
    # columns. Fetched once by the weights stage from a loopback server standing in for the internet, its digest
    # pinned (SSCD publishes none); then the DAG runs offline from that cache.
    sscd = save_tiny_sscd(workdir / "sscd.pt").read_bytes()
    cfg["experiments"]["shapes"]["metrics"]["extra_feature_nets"] = {"sscd": None}
    cfg["weights"] = {"sha256": {"sscd_disc_mixup": hashlib.sha256(sscd).hexdigest()}}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    caches = {"TORCH_HOME": str(workdir / "torch"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    with LoopbackServer() as server:
        server.add_file(WEIGHTS.get("sscd_disc_mixup").url.split("://", 1)[1], sscd)
        fetch = subprocess.run([sys.executable, "-m", "kaleido.weights", "fetch", "--config", "config/config.yaml"],
                               cwd=workdir, env={**env_for(workdir), **caches, "KALEIDO_WEIGHTS_ENDPOINT": server.url},
                               capture_output=True, text=True, timeout=120)
    assert fetch.returncode == 0 and "sscd_disc_mixup: verified, downloaded" in fetch.stdout, fetch.stderr
    cfg["weights"]["offline"] = True
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(workdir, "--cores", "2", "reports/table1.csv", env=caches)
    return workdir


def test_image_samples_and_latents(shapes_run):
    shard = load_npz(shapes_run / "results/shapes/samples/kaleido/bbox/w4/shard000.npz")
    assert shard["x"].dtype == np.uint8 and shard["x"].shape == (24, 32, 32, 3)
    assert list(shard["class_names"]) == ["circle", "square", "triangle"]
    assert shard["tokens"].shape[0] == 24  # the prior's latent tokens, saved beside the images
    # sampler.prior_grammar (default on): the model file carries its grammar, every finished latent string parses
    latents = shapes_run / "results/shapes/latents"
    tokenizer = tok.load_pretrained(str(latents / "bbox_tokenizer"))
    names = [str(n) for n in load_npz(latents / "bbox.npz")["names"]]
    ended = (shard["tokens"] == tokenizer.eos_token_id).any(axis=1)
    assert ended.sum() >= 8, ended.sum()  # measured: 11-12 of 24 end within the tiny prior's 70 tokens
    for text in np.array(tok.decode(tokenizer, shard["tokens"]))[ended]:
        parse_bbox(text, names)
    assert np.array_equal(shard["latent_ok"], ended)  # recorded per sample; evaluate reports the share
    metrics = read_json(shapes_run / "results/shapes/metrics/kaleido/bbox/w4.json")["metrics"]
    other = load_npz(shapes_run / "results/shapes/samples/kaleido/bbox/w4/shard001.npz")["latent_ok"]
    assert metrics["latent_well_formed"] == pytest.approx(np.concatenate([ended, other]).mean())  # both shards
    quality = read_json(shapes_run / "results/shapes/latents/bbox_quality.json")["metrics"]
    assert quality["count_accuracy"] == 1.0 and quality["mean_iou"] > 0.9


def test_image_report(shapes_run):
    reports = shapes_run / "reports"
    with open(reports / "table1_shapes.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["latent"]) for r in rows] == [("mdm", "none"), ("mdm_autoguidance", "none"),
                                                         ("kaleido", "bbox")]
    assert all(float(r["fd"]) > 0 and r["fd_ci_low"] and r["mss"] for r in rows)
    assert all(r["mss_sscd"] and r["vendi_sscd"] and r["fd_sscd_ci_low"] for r in rows)  # the extra network
    markdown = (reports / "table1_shapes.md").read_text()
    assert "FD (domain) ↓" in markdown and "MSS (sscd) ↓" in markdown and "Vendi (sscd) ↑" in markdown
    grid = reports / "figures" / "samples_shapes_w4.png"
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and grid.stat().st_size > 5000
    metrics = read_json(shapes_run / "results/shapes/metrics/kaleido/bbox/w4.json")
    assert metrics["feature_net"] == "domain" and "ci95" in metrics
    assert {"fd_sscd", "mss_sscd", "vendi_sscd", "vendi_per_condition_sscd"} <= set(metrics["metrics"])
    assert "precision_sscd" not in metrics["metrics"] and "fd_sscd" in metrics["ci95"]
    # the weight file behind the sscd columns: fetched by the weights job (offline: checked, not downloaded)
    sscd = metrics["feature_weights"]["sscd"]
    assert [(c["name"], c["verified"]) for c in sscd] == [("sscd_disc_mixup", True)] and metrics["feature_weights"][
        "domain"] == []
    record = read_json(shapes_run / "results/weights/sscd_disc_mixup.json")
    assert record["check"]["sha256"] == sscd[0]["sha256"] and record["offline"] and not record["downloaded"]
    assert "Unverified weights" not in markdown


def test_latent_edit_stage(shapes_run):
    """The tiny prior may not write editable latents yet; whatever it wrote, the stage accounts for all 8 samples,
    regenerates the edited ones' originals exactly, and the report draws the pairs and logs the rates."""
    rates = read_json(shapes_run / "results/shapes/edits/kaleido/bbox/w4/move.json")
    m = rates["metrics"]
    assert rates["stage"] == "edit_kaleido_w4_move" and rates["provenance"]["config"]["edit"]["count"] == 8
    assert m["num_edited"] + m["num_not_editable"] + m["num_too_long"] == 8
    if m["num_edited"]:
        assert m["reproduced_fraction"] == 1.0 and 0 <= m["edit_success_rate"] <= 1
    figure = shapes_run / "reports" / "figures" / "edit_shapes_kaleido_bbox_w4_move.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = read_json(shapes_run / "reports" / "mlflow_runs.json")
    assert "shapes/edit_kaleido_w4_move/bbox" in runs

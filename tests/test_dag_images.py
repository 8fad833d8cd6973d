"""The image pipeline through the real DAG: shapes data -> offline latents -> NestedUNet MDM / Kaleido (T5 prior)
-> sampling (CFG, autoguidance) -> `domain` CNN features -> metrics with bootstrap intervals -> report (paper
table, sample grid, MLflow). Tiny sizes: the numbers mean nothing, the wiring is what is tested."""

from __future__ import annotations

import copy
import csv
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from dag_helpers import REPO, env_for, make_workdir, snakemake, tiny_shapes
from image_helpers import captioned_shapes
from loopback_hub import LoopbackServer
from metric_checks.img_nets import save_tiny_sscd

from kaleido.latents import tokenizer as tok
from kaleido.latents.formats import parse_bbox
from metrics.io import load_npz, read_json
from metrics.store import TextColumn, load_data
from metrics.weights import WEIGHTS

pytestmark = pytest.mark.slow

METHODS = ["mdm", "mdm_autoguidance", "kaleido"]
#: the captioned experiment's set size and the captions its 48 samples cycle through
CAPTIONED_ITEMS, CAPTIONED_CONDITIONS = 128, 12


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("shapes_dag"))
    cfg = tiny_shapes(yaml.safe_load((REPO / "config" / "shapes.yaml").read_text()), methods=METHODS, guidance=[4],
                      edits=[{"latent": "bbox", "edit": "move", "guidance": 4, "count": 8}])
    cfg["experiments"]["shapes"]["latents"] = {"bbox": {}}
    # train / sample / edit jobs on one torch thread each, so that `--cores 2` runs two of them at once: the tiny
    # models gain little from a second thread (a kaleido train job 10.4 s on one, 8.1 s on two), and on a loaded
    # 2-core machine a 2-thread job's threads wait for each other. Latents keep resources.default's 2 (its
    # worker pool); the loader still gets its one worker process (max(1, threads - 1)).
    for rule in ("train", "sample"):
        cfg["resources"][rule]["cpus_per_task"] = 1
    # the text-to-image path (config/cc12m.yaml in miniature): a captioned set read by the `captions` data set from
    # a path<TAB>caption file, each image its own condition, the T5 context over each batch's captions, sampled on
    # 12 held-out captions x 4 samples so that the per-caption diversity (MSS, per-condition Vendi) is defined
    captioned = copy.deepcopy(cfg["experiments"]["shapes"])
    captioned_shapes(workdir / "captioned", CAPTIONED_ITEMS, held_out=CAPTIONED_CONDITIONS)
    captioned.update(data={"name": "captions", "tsv": "captioned/captions.tsv", "image_size": 32, "workers": 1,
                           "eval_captions": "captioned/eval_captions.txt"},
                     methods=["mdm", "kaleido"], sample_conditions=CAPTIONED_CONDITIONS)
    for model in captioned["models"].values():
        model["context"]["max_length"] = 16  # captions run to ~12 words
    cfg["experiments"]["captioned"] = captioned
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


def test_captioned_experiment(shapes_run):
    """The text-to-image path through the real DAG: captions data -> T5 context over each caption -> MDM and
    Kaleido (bbox) -> metrics -> its rows in reports/table1.csv beside the class-conditional experiment's."""
    tsv = (shapes_run / "captioned" / "captions.tsv").read_text().splitlines()[1:]
    captions = [line.split("\t")[1] for line in tsv]
    held_out = (shapes_run / "captioned" / "eval_captions.txt").read_text().splitlines()
    shard = load_npz(shapes_run / "results/captioned/samples/kaleido/bbox/w4/shard000.npz")
    # sampled on the held-out captions (data.eval_captions), cycling through them (sample_conditions)
    assert list(shard["class_names"]) == held_out and not set(held_out) <= set(captions)
    assert list(shard["labels"]) == [i % CAPTIONED_CONDITIONS for i in range(24)]
    with open(shapes_run / "reports" / "table1.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["experiment"] == "captioned"]
    assert [(r["method"], r["latent"]) for r in rows] == [("mdm", "none"), ("kaleido", "bbox")]
    assert all(float(r["fd"]) > 0 and r["fd_ci_low"] != r["fd_ci_high"] for r in rows)
    assert all(0 < float(r["mss"]) < 1 and r["vendi_per_condition"] for r in rows)  # 4 samples per caption
    data = load_data(shapes_run / "results/captioned/data/train.npz")
    assert isinstance(data["captions"], TextColumn) and list(data["captions"][:]) == captions  # read in place
    assert "class_names" not in data
    model = torch.load(shapes_run / "results/captioned/train/kaleido/bbox/model.pt", weights_only=True)
    assert model["meta"]["condition_text"] == "captions" and "class_names" not in model["meta"]  # T5 per batch
    rates = read_json(shapes_run / "results/captioned/edits/kaleido/bbox/w4/move.json")["metrics"]
    assert rates["num_edited"] + rates["num_not_editable"] + rates["num_too_long"] == 8  # the edit stage too


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

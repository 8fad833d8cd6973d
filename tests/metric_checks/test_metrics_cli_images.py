"""``python -m metrics from-images`` and ``extract`` with an image network (the domain CNN, trained here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from img_nets import random_images
from PIL import Image

from metrics import keys
from metrics.cli import main
from metrics.features import FEATURE_NETS
from metrics.features.domain import train
from metrics.io import load_npz, save_npz_atomic
from metrics.suite import compute_with_ci


@pytest.fixture()
def image_inputs(tmp_path: Path) -> dict[str, Path]:
    real = random_images(30, seed=0, size=16)
    fake = random_images(24, seed=1, size=16, shift=30)
    labels = np.repeat(np.arange(3), 8)
    (tmp_path / "real").mkdir()
    for i, image in enumerate(real):
        Image.fromarray(image).save(tmp_path / "real" / f"{i:03d}.png")
    save_npz_atomic(tmp_path / "fake0.npz", x=fake[:10], labels=labels[:10])
    save_npz_atomic(tmp_path / "fake1.npz", x=fake[10:], labels=labels[10:])
    torch.save(train(real, np.arange(30) % 3, seed=0, steps=2, width=8, feature_dim=8), tmp_path / "domain.pt")
    return {"dir": tmp_path, "real": real, "fake": fake, "labels": labels}


def test_from_images_equals_api_on_extracted_features(image_inputs, capsys) -> None:
    d = image_inputs["dir"]
    code = main(["from-images", "--real", str(d / "real"), "--fake", str(d / "fake0.npz"), str(d / "fake1.npz"),
                 "--net", "domain", "--weights", str(d / "domain.pt"), "--metrics", "fid,prdc,vendi,mss,kid",
                 "--kid-subsets", "4", "--kid-subset-size", "10", "--bootstrap-resamples", "3", "--seed", "5",
                 "--json", "--out", str(d / "m.json")])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((d / "m.json").read_text())
    net = FEATURE_NETS.get("domain").with_options(weights=str(d / "domain.pt"))
    values, ci = compute_with_ci(net(image_inputs["real"]), net(image_inputs["fake"]),
                                 labels_fake=image_inputs["labels"], kid_subsets=4, kid_subset_size=10,
                                 bootstrap_resamples=3, bootstrap_seed=5)
    for name, value in values.items():
        assert printed[name] == pytest.approx(value, rel=1e-6), name
    assert printed[keys.CI95] == {k: [pytest.approx(lo, rel=1e-6), pytest.approx(hi, rel=1e-6)]
                                  for k, (lo, hi) in ci.items()}
    assert printed["feature_net"] == "domain" and printed[keys.NUM_REAL] == 30 and printed[keys.FEATURE_DIM] == 8


def test_from_images_user_errors(image_inputs, capsys) -> None:
    d = image_inputs["dir"]
    base = ["from-images", "--real", str(d / "real"), "--net", "domain", "--weights", str(d / "domain.pt")]
    assert main([*base, "--fake", str(d / "real"), "--metrics", "fid,mss"]) == 2
    assert "metric 'mss' needs per-image condition labels" in capsys.readouterr().err
    assert main([*base, "--fake", str(d / "fake0.npz"), "--metrics", "fid,lpips"]) == 2
    assert "expected a non-empty subset of ['fid', 'prdc', 'vendi', 'mss', 'kid', 'is']" in capsys.readouterr().err
    assert main([*base, "--fake", str(d / "nope")]) == 2
    assert "nope: does not exist; expected a folder of PNG/JPEG images" in capsys.readouterr().err
    (d / "notes.txt").write_text("not images")
    assert main([*base, "--fake", str(d / "notes.txt")]) == 2
    assert "notes.txt: not a folder of PNG/JPEG images" in capsys.readouterr().err


def test_extract_image_net_writes_features_logits_and_preprocessing(image_inputs) -> None:
    d = image_inputs["dir"]
    assert main(["extract", "--net", "domain", "--weights", str(d / "domain.pt"), "--batch-size", "7",
                 "--out", str(d / "f.npz"), str(d / "fake0.npz"), str(d / "fake1.npz")]) == 0
    out = load_npz(d / "f.npz", required=("features", "labels", "logits"))
    net = FEATURE_NETS.get("domain").with_options(weights=str(d / "domain.pt"))
    np.testing.assert_allclose(out["features"], net(image_inputs["fake"]), rtol=1e-5, atol=1e-6)
    assert out["logits"].shape == (24, 3) and list(out["labels"]) == list(image_inputs["labels"])
    assert out["meta"]["config"]["preprocessing"].startswith("domain CNN")
    assert len(out["meta"]["config"]["feature_weights_sha256"]) == 64


def test_feature_stage_takes_network_options_from_config(image_inputs, default_config) -> None:
    import yaml

    from kaleido.features import main as feature_stage

    d = image_inputs["dir"]
    default_config["experiments"]["toy2d"]["metrics"].update(feature_weights=str(d / "domain.pt"),
                                                             feature_batch_size=5)
    (d / "config.yaml").write_text(yaml.safe_dump(default_config))
    feature_stage(["--net", "domain", "--config", str(d / "config.yaml"), "--experiment", "toy2d",
                   "--out", str(d / "f.npz"), str(d / "fake0.npz")])
    meta = load_npz(d / "f.npz")["meta"]["config"]
    assert meta["feature_weights"] == str(d / "domain.pt") and meta["feature_precision"] == "fp32"

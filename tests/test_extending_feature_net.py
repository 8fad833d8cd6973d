"""A new feature network from one module plus one registry line, run by the metrics CLI and the harness's feature
stage.

The plugin below is what README "Extending" tells a user to write: an ``extract_outputs`` function and one
``FEATURE_NETS.register`` line naming the module itself (``ImageFeatureNet(__name__)``). Its features have a closed
form (per-channel pixel mean and standard deviation), so the FD the CLI reports is checked against scipy's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from dag_helpers import REPO, tiny_shapes
from scipy import linalg
from stage_helpers import run_module

from metrics.io import load_npz

PLUGIN = '''"""``pixel_stats``: per-channel mean and standard deviation of an image's pixels in [0, 1] (6 numbers)."""
import numpy as np

from metrics.features import FEATURE_NETS, ImageFeatureNet

PREPROCESSING = "uint8 -> x/255, native resolution"


def extract_outputs(images, *, batch_size, device, weights, variant, precision):
    x = images.astype(np.float64) / 255.0  # (n, H, W, 3)
    return {"features": np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1).astype(np.float32)}


FEATURE_NETS.register("pixel_stats")(ImageFeatureNet(__name__))
'''


def pixel_stats(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float64) / 255.0
    return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1).astype(np.float32).astype(np.float64)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """FD from its definition with scipy's matrix square root (the check, independent of metrics.frechet)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def plugin_env(where) -> dict[str, str]:
    (where / "pixel_stats_net.py").write_text(PLUGIN)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), os.environ.get("PYTHONPATH", "")])}


def test_a_feature_network_in_its_own_module_runs_through_the_metrics_cli(tmp_path):
    env = plugin_env(tmp_path)
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, size=(64, 12, 12, 3), dtype=np.uint8)
    fake = np.clip(real.astype(int) + rng.integers(-40, 80, size=real.shape), 0, 255).astype(np.uint8)
    for name, images in (("real", real), ("fake", fake)):
        np.savez(tmp_path / f"{name}.npz", x=images, labels=np.zeros(len(images), dtype=np.int64))
    cmd = [sys.executable, "-m", "metrics", "--plugin", "pixel_stats_net", "from-images", "--real", "real.npz",
           "--fake", "fake.npz", "--net", "pixel_stats", "--metrics", "fid", "--json"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    result = result.get("metrics", result)
    assert result["fd"] == pytest.approx(frechet(pixel_stats(real), pixel_stats(fake)), rel=1e-6)

    out = subprocess.run([c for c in cmd if c not in ("--plugin", "pixel_stats_net")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "pixel_stats" in out.stderr and "inception" in out.stderr, out.stderr


def test_a_feature_network_plugin_runs_in_the_harness_feature_stage(tmp_path):
    env = plugin_env(tmp_path)
    cfg = tiny_shapes(yaml.safe_load((REPO / "config" / "shapes.yaml").read_text()), methods=["mdm"], guidance=[1],
                      edits=[], latents={})
    cfg["plugins"] = ["pixel_stats_net"]  # the one line that registers the network
    exp = cfg["experiments"]["shapes"]
    exp["data"].update(num_train=32, image_size=16)
    exp["metrics"].update(feature_net="pixel_stats")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    common = ["--config", str(config), "--experiment", "shapes"]
    out = run_module(["-m", "kaleido.data", *common, "--out", "data.npz"], tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    out = run_module(["-m", "kaleido.features", *common, "--net", "pixel_stats", "--out", "features.npz",
                      "data.npz"], tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    features = load_npz(tmp_path / "features.npz")
    np.testing.assert_allclose(features["features"], pixel_stats(load_npz(tmp_path / "data.npz")["x"]), rtol=1e-6)
    recorded = features["meta"]["config"]
    assert recorded["feature_net"] == "pixel_stats" and recorded["preprocessing"] == "uint8 -> x/255, native resolution"

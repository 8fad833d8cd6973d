"""A new guidance scheme from one module plus one config line, run by the real training and sample stage CLIs.

The plugin below is what README "Extending" tells a user to write: a registry entry with its settings schema, and a
method that uses it. The config names the module under ``plugins:``; nothing in the package changes.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from stage_helpers import run_module, train_cmd

from metrics.io import load_npz

PLUGIN = '''"""CFG whose weight ramps from 1 at pure noise to w at the data: w(t) = 1 + (w - 1) (1 - t/T)^power."""
from kaleido.guidance import SCHEMES, GuidanceScheme
from kaleido.guidance.schemes import cfg_combine
from kaleido.methods import METHODS, Method


def ramp(g):
    def eps(x, t):
        w = 1.0 + (g.weight - 1.0) * (1.0 - int(t[0]) / g.timesteps) ** g.options["power"]
        return cfg_combine(g.net, x, t, g.y, g.y_null, w)
    return eps


SCHEMES.register("ramp")(GuidanceScheme(ramp, {"power": {"type": "number", "minimum": 0, "default": 1.0}}))
METHODS.register("mdm_ramp")(Method("mdm_ramp", "mdm", "ramp"))
'''


COMPARE = """
import numpy as np
from kaleido import checkpoint, config
from kaleido.generation import generate
exp = config.load("config.yaml")["experiments"]["toy2d"]  # imports the plugins the config names
models = {"mdm": checkpoint.load_denoiser("mdm/model.pt")[0]}
run = lambda method, w: generate(exp, 5, method, w, range(64), models, batch_size=64)["x"]
print(np.array_equal(run("mdm", 1.0), run("mdm_ramp", 1.0)), np.array_equal(run("mdm", 8.0), run("mdm_ramp", 8.0)))
"""


def _sample(tmp, config, method, weight, out):
    return run_module(["-m", "kaleido.sample", "--config", str(config), "--experiment", "toy2d", "--method", method,
                       "--latent", "none", "--guidance", weight, "--shard", "0", "--model", "mdm=mdm/model.pt",
                       "--out", out], tmp)


@pytest.mark.slow
def test_a_guidance_scheme_in_its_own_module_runs_through_the_stages(tmp_path, tiny_config):
    (tmp_path / "ramp_guidance.py").write_text(PLUGIN)  # `python -m` finds modules in the working directory
    tiny_config["plugins"] = ["ramp_guidance"]
    exp = tiny_config["experiments"]["toy2d"]
    exp["methods"] = ["mdm", "mdm_ramp"]
    exp["ramp"] = {"power": 2}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    out = run_module(["-m", "kaleido.data", "--config", str(config), "--experiment", "toy2d", "--out", "data.npz"],
                     tmp_path)
    assert out.returncode == 0, out.stderr
    out = run_module(train_cmd(config, "mdm/model.pt", role="mdm", latent="none"), tmp_path)
    assert out.returncode == 0, out.stderr
    out = _sample(tmp_path, config, "mdm_ramp", "8", "mdm_ramp_8.npz")
    assert out.returncode == 0, out.stderr
    ramp = load_npz(tmp_path / "mdm_ramp_8.npz")
    spec = ramp["meta"]["config"]  # the stage records its slice: the scheme's resolved block, the plugin's hash
    assert spec["ramp"] == {"power": 2} and set(spec["plugins"]) == {"ramp_guidance"}
    assert ramp["x"].shape == (exp["shard_size"], 2) and np.isfinite(ramp["x"]).all()
    # same noise (one seed) through both schemes: w = 1 is no guidance under either, so the samples are equal; at
    # w = 8 the ramp guides less than constant CFG, so they differ
    compare = run_module(["-c", COMPARE], tmp_path)
    assert compare.returncode == 0, compare.stderr
    assert compare.stdout.split() == ["True", "False"]

    exp["ramp"] = {"powr": 2}
    config.write_text(yaml.safe_dump(tiny_config))
    out = _sample(tmp_path, config, "mdm_ramp", "8", "bad.npz")
    assert out.returncode == 2 and "config.experiments.toy2d.ramp: Additional properties are not allowed" in out.stderr
    assert not (tmp_path / "bad.npz").exists()

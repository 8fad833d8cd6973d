"""A new latent type from one module plus one config line, run by the real data, latents, training and sample CLIs.

The plugin below is what README "Extending" tells a user to write: one :class:`kaleido.latents.LatentType` entry
(options check, extraction, strict parser and its writer; no grammar, no quality: the base class's defaults) in a
module outside the package, found through ``PYTHONPATH`` and named by the config's ``plugins:`` list.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml
from dag_helpers import REPO, tiny_shapes
from stage_helpers import run_module

from metrics.io import load_npz, read_json

PLUGIN = '''"""``brightness`` latent: the mean luminance of the image in ``bins`` levels, written ``bright 3``."""
import re

import numpy as np

from kaleido.checks import check_int, check_keys
from kaleido.latents import EXTRACTORS, LatentType
from kaleido.latents.formats import LatentFormatError
from kaleido.latents.images import COMMON_KEYS, LatentStrings, check_common

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


class Brightness(LatentType):
    keys = COMMON_KEYS | {"bins"}

    def validate(self, spec, where):
        check_keys(spec, self.keys, where)
        check_common(spec, where, ("offline",))
        check_int(spec, "bins", where, 2, 100)

    def extract_strings(self, images, ctx, spec, seed):
        bins = spec.get("bins", 4)
        mean = (images.astype(np.float64) @ LUMA).mean(axis=(1, 2))  # (n,) in [0, 255]
        levels = np.minimum((mean / 256 * bins).astype(int), bins - 1)
        return LatentStrings(np.array([self.write(int(level)) for level in levels]))

    def parse(self, text, names=None, **context):
        match = re.fullmatch(r"bright (0|[1-9][0-9]*)", text) if isinstance(text, str) else None
        if match is None:
            raise LatentFormatError(f"brightness latent {text!r}: expected 'bright N', N a canonical integer")
        return int(match[1])

    def write(self, level):
        return f"bright {level}"


EXTRACTORS.register("brightness")(Brightness())
'''

#: run with the plugin loaded as a stage loads it (the config): the strings of the latents file and the latents the
#: prior sampled go through the registry's parser and the entry's writer and come back unchanged
CHECK = '''import sys
from tokenizers import Tokenizer
from kaleido import config
from kaleido.latents import EXTRACTORS
from kaleido.latents.formats import parse_latent
from metrics.io import load_npz

config.load(sys.argv[1])
entry = EXTRACTORS.get("brightness")
assert entry.grammar is None and entry.quality(["bright 1"], [[]], None) == {}  # the base class's defaults
written = [str(s) for s in load_npz("brightness.npz")["strings"]]
sampled = Tokenizer.from_file("brightness_tokenizer/tokenizer.json").decode_batch(
    load_npz("shard.npz")["tokens"].tolist(), skip_special_tokens=True)
for text in written + sampled:
    assert entry.write(parse_latent("brightness", text)) == text, text
print(" ".join(sampled))
'''


@pytest.mark.slow
def test_a_latent_type_in_its_own_module_runs_through_the_stages(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "brightness_latent.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])}
    cfg = tiny_shapes(yaml.safe_load((REPO / "config" / "shapes.yaml").read_text()), methods=["kaleido"],
                      guidance=[1], edits=[], num_samples=4, shard_size=4, latents={"brightness": {"bins": 4}})
    cfg["plugins"] = ["brightness_latent"]  # the one line that registers the new type
    exp = cfg["experiments"]["shapes"]
    exp["data"].update(num_train=24, image_size=16)
    # enough for the prior to spell "bright N" greedily (ema_decay 0: sample the trained weights, not their average)
    exp["train"].update(steps=20, batch_size=8, prior_lr=1e-2, ema_decay=0.0, checkpoint_every=20, log_every=10)
    exp["sampler"].update(steps=2, prior_top_k=1)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    common = ["--config", str(config), "--experiment", "shapes"]

    def stage(*args: str) -> None:
        out = run_module(list(args), tmp_path, env=env)
        assert out.returncode == 0, out.stderr

    stage("-m", "kaleido.data", *common, "--out", "data.npz")
    stage("-m", "kaleido.latents", *common, "--latent", "brightness", "--data", "data.npz", "--out", "brightness.npz",
          "--quality", "brightness_quality.json")
    latents = load_npz(tmp_path / "brightness.npz")
    assert len(latents["strings"]) == 24 and all(re.fullmatch(r"bright [0-3]", str(s)) for s in latents["strings"])
    assert len(latents["names"]) == 0 and latents["meta"]["config"]["latent_spec"] == {"bins": 4}
    quality = read_json(tmp_path / "brightness_quality.json")["metrics"]
    assert quality["num_items"] == 24 and "mean_iou" not in quality  # no quality of its own: no object metrics

    stage("-m", "kaleido.train", *common, "--role", "kaleido", "--latent", "brightness", "--data", "data.npz",
          "--latents", "brightness.npz", "--out", "model.pt", "--threads", "1", "--quiet")
    stage("-m", "kaleido.sample", *common, "--method", "kaleido", "--latent", "brightness", "--guidance", "1",
          "--shard", "0", "--model", "kaleido=model.pt", "--out", "shard.npz", "--threads", "1", "--quiet")
    shard = load_npz(tmp_path / "shard.npz")
    assert shard["x"].shape == (4, 16, 16, 3) and shard["tokens"].shape[0] == 4
    assert set(shard["meta"]["config"]["plugins"]) == {"brightness_latent"}

    (tmp_path / "check.py").write_text(CHECK)
    out = run_module(["check.py", str(config)], tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"(bright [0-3] ){3}bright [0-3]", out.stdout.strip()), out.stdout  # the samples' latents

    # without the plugin the type is unknown, and the error says which types there are
    out = run_module(["-m", "kaleido.latents", *common, "--latent", "brightness", "--data", "data.npz", "--out",
                      "x.npz"], tmp_path, env={**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert out.returncode == 2 and "brightness_latent" in out.stderr and not (tmp_path / "x.npz").exists()


def test_every_string_latent_entry_writes_back_what_it_parses():
    from kaleido.latents import EXTRACTORS, string_latents
    from kaleido.latents.formats import parse_latent

    examples = {"bbox": "red circle (1, 2, 3, 4); blue square (0, 0, 1000, 1000)",
                "blob": "red circle (500, 20, 300, 100, 179)", "color": "color (53, 80, -67, 61); color (0, 0, 0, 3)",
                "voken": "<v3>#<v10>", "text": "A red circle on a dark background.",
                "combined": "A red circle. | red circle (1, 2, 3, 4) | <v1>#<v0>"}
    assert set(string_latents()) >= set(examples) and "kmeans" not in string_latents()
    for latent, text in examples.items():
        assert EXTRACTORS.get(latent).write(parse_latent(latent, text, num_tokens=2, codebook_size=16)) == text


def test_the_registry_refuses_an_entry_without_the_interface():
    from kaleido.latents import EXTRACTORS, LatentType

    class Half:  # not a LatentType: no parse, write, quality, grammar, ...
        kind = "strings"

        def validate(self, spec, where):
            pass

    class Odd(LatentType):
        kind = "pixels"

    with pytest.raises(TypeError, match=r"'half': Half lacks \['grammar', 'extract', "):
        EXTRACTORS.register("half")(Half())
    with pytest.raises(TypeError, match="kind 'pixels'; accepted: \\['vector', 'strings'\\]"):
        EXTRACTORS.register("odd")(Odd())
    assert "half" not in EXTRACTORS and "odd" not in EXTRACTORS

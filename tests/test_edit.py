"""Latent edits: the string edits and their success tests, and ``run_edit``'s regeneration with the same noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from dag_helpers import REPO, tiny_shapes
from image_helpers import word_tokenizer
from latent_images import draw

from kaleido import checkpoint, config
from kaleido.edit import encode_fixed, run_edit
from kaleido.errors import ConfigError
from kaleido.generation import generate, sample_seed
from kaleido.latents import EXTRACTORS
from kaleido.latents import tokenizer as tok
from kaleido.latents.edits import EDITS, MOVE_SHIFT
from kaleido.latents.images import ImageContext

NAMES = ["red circle", "blue circle", "green circle", "red square", "blue square"]


def test_move_shifts_the_first_box_toward_the_room_and_is_judged_by_the_nearest_detection():
    move = EDITS.get("move")
    before = "red circle (100, 100, 300, 300); blue square (600, 600, 700, 700)"
    after = move.apply(before, 0, NAMES)
    assert after == f"red circle ({100 + MOVE_SHIFT}, 100, {300 + MOVE_SHIFT}, 300); blue square (600, 600, 700, 700)"
    assert move.apply("red circle (800, 0, 990, 100)", 0, NAMES).startswith(f"red circle ({800 - MOVE_SHIFT}, 0")
    assert move.apply("red circle (0, 0, 1000, 100)", 0, NAMES) is None  # no room to move
    assert move.apply("", 0, NAMES) is None
    assert move.took_effect(before, after, "red circle (390, 110, 610, 290)")
    assert not move.took_effect(before, after, "red circle (110, 110, 290, 290)")  # still where it was
    assert not move.took_effect(before, after, "")


def test_recolor_renames_the_first_object_within_its_shape():
    recolor = EDITS.get("recolor")
    before = "red circle (100, 100, 300, 300)"
    assert recolor.apply(before, 0, NAMES) == "blue circle (100, 100, 300, 300)"
    assert recolor.apply(before, 1, NAMES) == "green circle (100, 100, 300, 300)"  # index picks among colours
    assert recolor.apply("blue square (0, 0, 10, 10)", 5, NAMES) == "red square (0, 0, 10, 10)"
    after = recolor.apply(before, 0, NAMES)
    assert recolor.took_effect(before, after, "blue circle (110, 90, 310, 300)")
    assert not recolor.took_effect(before, after, "red circle (110, 90, 310, 300)")
    assert not recolor.took_effect(before, after, "blue circle (600, 600, 900, 900)")  # elsewhere: not this one


def test_edit_config_entries_are_checked():
    cfg = yaml.safe_load((REPO / "config" / "shapes.yaml").read_text())
    exp = cfg["experiments"]["shapes"]
    exp["edits"] = [{"latent": "color", "edit": "move", "guidance": 3}]
    with pytest.raises(ConfigError, match=r"edits\[0\]\.latent: 'color'; edit 'move' accepts \['bbox'\]"):
        config.validate(cfg)
    exp["edits"] = [{"latent": "bbox", "edit": "move", "guidance": 5}]
    with pytest.raises(ConfigError, match=r"guidance: 5 is not in the guidance grid \[1, 3, 7\]"):
        config.validate(cfg)
    exp["edits"] = [{"latent": "bbox", "edit": "move", "guidance": 3, "method": "mdm"}]
    with pytest.raises(ConfigError, match=r"method: 'mdm'; accepted: the experiment's latent methods"):
        config.validate(cfg)


def test_encode_fixed_pads_and_flags_strings_longer_than_the_model_reads(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(word_tokenizer(tmp_path / "tok", ["red", "circle", "blue"]))
    ids, fits = encode_fixed(tokenizer, ["red circle", "red circle blue circle"], 4)
    assert ids.shape == (2, 4) and fits.tolist() == [True, False]
    assert ids[0].tolist()[:3] == tokenizer("red circle")["input_ids"] and ids[1].tolist() == [0] * 4


def test_run_edit_regenerates_originals_exactly_and_reads_the_edits(tmp_path, monkeypatch):
    """A random-weight Kaleido model fed the true bbox latents of drawn images: the originals must come back
    bit-identical from (seed, index, latent); the rates are computed from the extractor on both images."""
    torch.set_num_threads(1)
    cfg = config.validate(tiny_shapes(yaml.safe_load((REPO / "config" / "shapes.yaml").read_text()),
                                      edits=[{"latent": "bbox", "edit": "move", "guidance": 4, "count": 6}]))
    exp = cfg["experiments"]["shapes"]
    exp["data"]["image_size"] = 16
    images = draw(8, size=16, seed=3)["x"]
    extractor = EXTRACTORS.get("bbox")
    found = extractor.extract_strings(images, ImageContext(np.zeros(8, np.int64), None, None), {}, 0)
    tokenizer = tok.build("offline", list(found.strings), [])
    ids, _ = tok.encode(tokenizer, list(found.strings))
    meta = {"arch": {"arch": "nested_unet", "size": "nested_tiny", "cond_dim": 32,
                     "context": {"encoder": "t5_tiny", "max_length": 4}, "prior": {"size": "t5_tiny"}},
            "data_shape": [16, 16, 3], "num_classes": 3, "class_names": ["circle", "square", "triangle"],
            "vocab_size": len(tokenizer), "seq_len": ids.shape[1] + 2}
    model = checkpoint.build_denoiser(meta).eval()
    tokens, _ = encode_fixed(tokenizer, list(found.strings), meta["seq_len"])
    item = exp["edits"][0]
    seed = sample_seed("shapes", exp, "kaleido", "bbox", "4")
    samples = generate(exp, seed, "kaleido", 4.0, range(8), {"kaleido": model}, tokens=tokens)
    samples["class_names"] = np.array(meta["class_names"])
    import kaleido.generation

    fed = []  # what run_edit samples from (the real generate() still runs; run_edit imports it when called)
    monkeypatch.setattr(kaleido.generation, "generate",
                        lambda *a, **kw: fed.append(kw["tokens"]) or generate(*a, **kw))
    result = run_edit(exp, "shapes", item, model, tokenizer, found.names, samples)
    metrics, arrays = result["metrics"], result["arrays"]
    editable = [EDITS.get("move").apply(s, i, found.names) is not None for i, s in enumerate(found.strings[:6])]
    assert metrics["num_edited"] == sum(editable) > 0 and metrics["num_not_editable"] == 6 - sum(editable)
    assert metrics["reproduced_fraction"] == 1.0
    assert arrays["x_after"].shape == arrays["x_before"].shape == (sum(editable), 16, 16, 3)
    edited = [EDITS.get("move").apply(s, i, found.names) for i, s in enumerate(found.strings[:6])]
    expected_after, _ = encode_fixed(tokenizer, [e for e in edited if e is not None], meta["seq_len"])
    assert np.array_equal(fed[0], np.concatenate([tokens[:6][editable], expected_after]))
    assert 0.0 <= metrics["edit_success_rate"] <= 1.0 and 0.0 <= metrics["control_rate"] <= 1.0
    assert list(arrays["latent_before"]) == [s for s, e in zip(found.strings[:6], editable, strict=True) if e]

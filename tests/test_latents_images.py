"""Image latents: the paper's string formats and their parsers, offline extractors, tokenizer, the stage CLI."""

from __future__ import annotations

import numpy as np
import pytest
from latent_images import PALETTE, draw, draw_antialiased

from kaleido.errors import ConfigError
from kaleido.latents import EXTRACTORS
from kaleido.latents import formats as fmt
from kaleido.latents import tokenizer as tok
from kaleido.latents.images import ImageContext
from kaleido.latents.quality import box_iou, ground_truth, latent_quality, match
from kaleido.latents.segment import Segment
from metrics.errors import InputError

NAMES = ["red circle", "blue square"]
SPEC = {"palette": {k: list(v) for k, v in PALETTE.items()}}


@pytest.fixture(scope="module")
def drawn():
    return draw(60, seed=1)


def _ctx(data):
    return ImageContext(data["labels"], ["shapes"])


# --- formats and parsers -------------------------------------------------------------------------------------


def test_round_trips():
    boxes = [fmt.Box("red circle", 0, 12, 999, 1000), fmt.Box("blue square", 5, 5, 5, 5)]
    assert fmt.format_bbox(boxes) == "red circle (0, 12, 999, 1000); blue square (5, 5, 5, 5)"
    assert fmt.parse_bbox(fmt.format_bbox(boxes), NAMES) == boxes
    blobs = [fmt.Blob("red circle", 500, 20, 300, 100, 179), fmt.Blob("blue square", 0, 0, 0, 0, 0)]
    assert fmt.parse_blob(fmt.format_blob(blobs), NAMES) == blobs
    colours = [fmt.ColorCluster(53, 80, -67, 61), fmt.ColorCluster(0, -128, 127, 0)]
    assert fmt.format_color(colours) == "color (53, 80, -67, 61); color (0, -128, 127, 0)"
    assert fmt.parse_color(fmt.format_color(colours)) == colours
    ids = list(range(32))
    assert fmt.parse_voken(fmt.format_voken(ids), 32, 40) == ids
    assert fmt.format_voken([3, 10]) == "<v3>#<v10>"
    combined = fmt.format_combined("a red circle.", fmt.format_bbox(boxes), fmt.format_voken(ids))
    assert fmt.parse_combined(combined, NAMES, 32, 40) == ("a red circle.", boxes, ids)
    assert fmt.parse_bbox("") == [] and fmt.parse_blob("") == []


@pytest.mark.parametrize("text, reason", [
    ("red circle (1, 2, 3)", "3 numbers, expected 4"),
    ("red circle (1, 2, 3, 4, 5)", "5 numbers, expected 4"),
    ("red circle (1, 2, 3, 1001)", "y2=1001 out of range"),
    ("red circle (1, -2, 3, 4)", "y1=-2 out of range"),
    ("red circle (5, 2, 3, 4)", "x1 <= x2"),
    ("green circle (1, 2, 3, 4)", "unknown name 'green circle'"),
    ("red circle 1, 2, 3, 4", "expected 'name (n1, ..., n4)'"),
    ("red circle (1, 2, 3, 4", "expected 'name (n1, ..., n4)'"),
    ("red circle (1, 2, 3, 4); blue square (1, 2", "item 1"),
    ("red circle (1, 2.5, 3, 4)", "not integers"),
    ("red circle (01, 2, 3, 4)", "not integers"),
    ("red circle (1,2,3,4)", "1 numbers, expected 4"),
    ("(1, 2, 3, 4)", "expected 'name"),
])
def test_bbox_rejects(text, reason):
    with pytest.raises(fmt.LatentFormatError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        fmt.parse_bbox(text, NAMES)


@pytest.mark.parametrize("text, reason", [
    ("red circle (1, 2, 3, 4)", "4 numbers, expected 5"),
    ("red circle (1, 2, 3, 4, 180)", "theta=180 out of range"),
    ("red circle (1, 2, 3, 4, 10)", "r_minor=4 exceeds r_major=3"),
    ("red circle (1, 2000, 3, 2, 10)", "yc=2000"),
])
def test_blob_rejects(text, reason):
    with pytest.raises(fmt.LatentFormatError, match=reason):
        fmt.parse_blob(text, NAMES)


@pytest.mark.parametrize("text, reason", [
    ("color (101, 0, 0, 5)", "L=101"), ("color (50, 0, 128, 5)", "b=128"), ("color (50, 0, 0)", "3 numbers"),
    ("colour (50, 0, 0, 5)", "unknown name"), ("color (50, 0, 0, 101)", "share=101"),
])
def test_color_rejects(text, reason):
    with pytest.raises(fmt.LatentFormatError, match=reason):
        fmt.parse_color(text)


@pytest.mark.parametrize("text, reason", [
    (fmt.format_voken(range(31)), "31 ids, expected exactly 32"),
    (fmt.format_voken(range(31)) + "#", "id 31 ''"),
    (fmt.format_voken(range(31)) + "#<v40>", "out of range"),
    (fmt.format_voken(range(31)) + "#7", "expected '<vN>'"),
    (fmt.format_voken(range(31)) + "#<v07>", "canonical"),
    ("", "0 ids"),
])
def test_voken_rejects(text, reason):
    with pytest.raises(fmt.LatentFormatError, match=reason):
        fmt.parse_voken(text, 32, 40)


def test_parse_latent_dispatch():
    assert fmt.parse_latent("bbox", "red circle (1, 2, 3, 4)", NAMES) == [fmt.Box("red circle", 1, 2, 3, 4)]
    assert fmt.parse_latent("voken", "<v1>#<v2>", num_tokens=2, codebook_size=3) == [1, 2]
    assert fmt.parse_latent("text", "a dog.") == "a dog."
    for latent, text, msg in [("text", "", "non-empty"), ("text", "a | b", "without '|'"),
                              ("voken", "<v1>", "needs codebook_size"), ("edges", "x", "unknown latent type")]:
        with pytest.raises(fmt.LatentFormatError, match=msg):
            fmt.parse_latent(latent, text)


def test_combined_rejects():
    with pytest.raises(fmt.LatentFormatError, match="2 parts"):
        fmt.parse_combined("text | red circle (1, 2, 3, 4)", NAMES, 2, 10)
    with pytest.raises(fmt.LatentFormatError, match="1 ids"):
        fmt.parse_combined("text | red circle (1, 2, 3, 4) | <v1>", NAMES, 2, 10)
    with pytest.raises(fmt.LatentFormatError, match="contains the separator"):
        fmt.format_combined("a | b", "", "<v1>")


# --- geometry against independent references ------------------------------------------------------------------


def test_ellipse_matches_skimage_regionprops():
    from skimage.measure import regionprops

    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    u, v = xx - 30, yy - 25
    t = np.radians(30.0)  # image coordinates (y down): major axis at 30° from +x towards +y
    mask = ((u * np.cos(t) + v * np.sin(t)) / 20) ** 2 + ((-u * np.sin(t) + v * np.cos(t)) / 8) ** 2 <= 1
    xc, yc, ra, rb, theta = Segment(mask, np.zeros(3), "", "").ellipse()
    props = regionprops(mask.astype(np.uint8))[0]
    cy, cx = props.centroid
    assert xc * 64 == pytest.approx(cx + 0.5) and yc * 64 == pytest.approx(cy + 0.5)
    # regionprops: axis length = 4 sqrt(eigenvalue) of the point-mass central moments; ours adds each pixel's own
    # variance 1/12 (a uniform unit square), so 2 r = 4 sqrt(eigenvalue + 1/12)
    assert 2 * ra * 64 == pytest.approx(4 * np.sqrt((props.axis_major_length / 4) ** 2 + 1 / 12), rel=1e-9)
    assert 2 * rb * 64 == pytest.approx(4 * np.sqrt((props.axis_minor_length / 4) ** 2 + 1 / 12), rel=1e-9)
    assert ra * 64 == pytest.approx(20, rel=0.02) and rb * 64 == pytest.approx(8, rel=0.03)
    assert theta == pytest.approx(30.0, abs=0.5)


def test_box_iou_and_matching_closed_form():
    a = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]])
    b = np.array([[0.5, 0.5, 1, 1], [0.25, 0, 0.75, 0.5]])
    np.testing.assert_allclose(box_iou(a, b), [[0, 1 / 3], [1, 0]])
    assert match(a, b) == [(0, 1, pytest.approx(1 / 3)), (1, 0, 1.0)]


# --- offline extractors ---------------------------------------------------------------------------------------


def test_offline_bbox_blob_on_drawn_shapes(drawn):
    truth = ground_truth(drawn)
    for latent, min_iou in (("bbox", 0.97), ("blob", 0.7)):
        res = EXTRACTORS.get(latent).extract_strings(drawn["x"], _ctx(drawn), SPEC, 0)
        assert res.strings.dtype.kind == "U" and res.strings.shape == (60,)
        q = latent_quality(latent, list(res.strings), truth, res.names)
        # measured on this drawer: bbox IoU 0.996, blob (ellipse box) 0.78; count/colour/shape all 1.0
        assert q["mean_iou"] > min_iou, q
        assert q["count_accuracy"] == 1.0 and q["color_accuracy"] == 1.0 and q["shape_accuracy"] == 1.0, q


def test_object_order_largest_first_or_as_found(drawn):
    found = EXTRACTORS.get("bbox").extract_strings(drawn["x"], _ctx(drawn), {**SPEC, "order": "found"}, 0).strings
    by_area = EXTRACTORS.get("bbox").extract_strings(drawn["x"], _ctx(drawn), SPEC, 0).strings  # default: area
    for f, a in zip(found, by_area, strict=True):
        boxes = fmt.parse_bbox(a)
        assert sorted(boxes, key=lambda b: (b.y1, b.x1)) == fmt.parse_bbox(f)  # the finder: top-to-bottom
        assert [b.area for b in boxes] == sorted((b.area for b in boxes), reverse=True)
    assert sum(f != a for f, a in zip(found, by_area, strict=True)) > 5  # the order differs on some images
    blobs = EXTRACTORS.get("blob").extract_strings(drawn["x"], _ctx(drawn), SPEC, 0).strings
    for text in blobs:
        areas = [b.r_major * b.r_minor for b in fmt.parse_blob(text)]
        assert areas == sorted(areas, reverse=True)
    with pytest.raises(ConfigError, match=r"order: 'size'; accepted: \['area', 'found'\]"):
        EXTRACTORS.get("bbox").validate({"order": "size"}, "latents.bbox")


def test_offline_quality_on_antialiased_noisy_shapes():
    """Harder images: edges anti-aliased (4x supersampling), Gaussian noise std 4. Measured on 1000 such images:
    bbox IoU 0.857, count 0.999, colour 1.0, shape 0.925; blob (ellipse box) IoU 0.721; colour-cluster recall 0.886.
    On these 60: 0.853 / 1.0 / 1.0 / 0.926; 0.728; 0.959. Thresholds sit a bit below."""
    data = draw_antialiased(60, seed=11, noise=4)
    truth = ground_truth(data)
    res = {lat: EXTRACTORS.get(lat).extract_strings(data["x"], _ctx(data), SPEC if lat != "color" else {}, 0)
           for lat in ("bbox", "blob", "color")}
    q = {lat: latent_quality(lat, list(r.strings), truth, r.names or None) for lat, r in res.items()}
    assert q["bbox"]["mean_iou"] > 0.83 and q["bbox"]["count_accuracy"] > 0.95, q
    assert q["bbox"]["color_accuracy"] > 0.97 and q["bbox"]["shape_accuracy"] > 0.88, q
    assert q["blob"]["mean_iou"] > 0.7, q
    assert q["color"]["color_recall"] > 0.85, q


def test_offline_color_and_voken(drawn):
    truth = ground_truth(drawn)
    res = EXTRACTORS.get("color").extract_strings(drawn["x"], _ctx(drawn), {"num_colors": 4}, 0)
    parsed = [fmt.parse_color(s) for s in res.strings]
    assert all(1 <= len(p) <= 4 and 98 <= sum(c.share for c in p) <= 102 for p in parsed)
    assert latent_quality("color", list(res.strings), truth, None)["color_recall"] > 0.95
    spec = {"codebook_size": 32}
    res = EXTRACTORS.get("voken").extract_strings(drawn["x"], _ctx(drawn), spec, seed=5)
    ids = np.array([fmt.parse_voken(s, 32, 32) for s in res.strings])
    np.testing.assert_array_equal(ids, res.arrays["voken_ids"])
    assert res.arrays["voken_codebook"].shape == (32, 8 * 4 * 3)
    assert len(res.added_tokens) == 32 and len(np.unique(ids)) > 8
    again = EXTRACTORS.get("voken").extract_strings(drawn["x"], _ctx(drawn), spec, seed=5)
    np.testing.assert_array_equal(again.strings, res.strings)  # seeded
    # every patch id is its nearest codebook centre (the VQ definition), checked by brute force
    from kaleido.latents.voken import patch_features

    feats = patch_features(drawn["x"][:5], (4, 8))
    dist = ((feats[..., None, :] - res.arrays["voken_codebook"]) ** 2).sum(-1)
    chosen = np.take_along_axis(dist, ids[:5, :, None], axis=-1)[..., 0]
    np.testing.assert_allclose(chosen, dist.min(-1), rtol=1e-5, atol=1e-5)  # ties between equal centres allowed


def test_offline_text_and_combined(drawn):
    res = EXTRACTORS.get("text").extract_strings(drawn["x"], _ctx(drawn), SPEC, 0)
    words = [len(s.split()) for s in res.strings]
    assert min(words) >= 50 and max(words) <= 80
    assert len(set(res.strings)) > 50  # varies with the image
    truth = ground_truth(drawn)
    for s, objs in zip(res.strings, truth, strict=True):
        assert all(f"{o.color} {o.shape}" in s for o in objs)
    comb = EXTRACTORS.get("combined").extract_strings(drawn["x"][:8], _ctx(drawn), {"bbox": SPEC, "text": SPEC,
                                                                                    "voken": {"codebook_size": 16}}, 0)
    for s in comb.strings:
        text, boxes, ids = fmt.parse_combined(s, comb.names, 32, 16)
        assert len(text.split()) >= 50 and len(ids) == 32


def test_validation_errors():
    bad = [("bbox", {"sourc": "offline"}, "unknown key"), ("bbox", {"source": "pretrained"}, "detector_path"),
           ("blob", {"source": "pretrained"}, "sam_path"), ("voken", {"grid": [4, 4]}, "num_tokens"),
           ("voken", {"source": "pretrained"}, "vq_path"), ("color", {"num_colors": 0}, "num_colors"),
           ("color", {"source": "pretrained"}, "source"), ("text", {"min_words": 90}, "exceeds max_words"),
           ("bbox", {"palette": {"red": [300, 0, 0]}}, "palette"), ("combined", {"voken": {"codebook_size": 1}},
                                                                     "codebook_size")]
    for latent, spec, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            EXTRACTORS.get(latent).validate(spec, f"config.experiments.e.latents.{latent}")
    for latent in ("bbox", "blob", "color", "voken", "text", "combined"):
        EXTRACTORS.get(latent).validate({}, "x")
    with pytest.raises(InputError, match="uint8"):
        EXTRACTORS.get("bbox").extract_strings(np.zeros((2, 8, 8, 3)), _ctx(draw(2)), {}, 0)


# --- tokenizer ------------------------------------------------------------------------------------------------


def test_offline_tokenizer_round_trip(tmp_path, drawn):
    from transformers import AutoTokenizer

    strings = list(EXTRACTORS.get("combined").extract_strings(drawn["x"][:10], _ctx(drawn),
                                                              {"voken": {"codebook_size": 16}}, 0).strings)
    tokenizer = tok.build("offline", strings, fmt.voken_vocabulary(16))
    ids, mask = tok.encode(tokenizer, strings)
    assert ids.dtype == np.int64 and ids.shape == mask.shape and tokenizer.pad_token_id == 0
    assert np.all(ids[mask == 0] == 0) and np.all(ids[np.arange(len(ids)), mask.sum(1) - 1] == 1)  # ... </s> <pad>
    assert tok.decode(tokenizer, ids) == strings
    tok.save(tokenizer, tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    np.testing.assert_array_equal(tok.encode(loaded, strings)[0], ids)
    assert tok.decode(loaded, ids) == strings
    v5 = loaded.convert_tokens_to_ids("<v5>")
    assert loaded("<v5>#<v5>")["input_ids"] == [v5, loaded.convert_tokens_to_ids("#"), v5, 1]
    unseen = "yellow triangle (987, 6, 999, 1000)"  # numbers as digits: any value is encodable, exactly
    assert tok.decode(loaded, tok.encode(loaded, [unseen])[0]) == [unseen]


def test_pretrained_tokenizer_missing_is_clear(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="(?s)not available offline.*huggingface-cli download"):
        tok.load_pretrained("t5-xl-not-cached")


# --- config validation (schema + the extractors' validate) ------------------------------------------------------


@pytest.mark.parametrize("block, msg", [
    ({"bbox": {"source": "pretraind"}}, "latents.bbox.source"),
    ({"voken": {"codebook_size": 1}}, "latents.voken.codebook_size"),
    ({"color": {"num_colors": 4, "k": 3}}, "Additional properties"),
    ({"text": {"min_words": 90}}, "min_words=90 exceeds max_words=80"),
    ({"combined": {"voken": {"grid": [2, 2]}}}, "gives 4 tokens"),
    ({"blob": {"source": "pretrained"}}, "needs sam_path"),
])
def test_config_rejects_bad_latent_blocks(default_config, block, msg):
    from kaleido import config

    default_config["experiments"]["toy2d"]["latents"] = block
    with pytest.raises(ConfigError, match=msg):
        config.validate(default_config)


def test_config_accepts_latent_blocks(default_config):
    from kaleido import config

    default_config["experiments"]["toy2d"]["latents"] = {
        "kmeans": {"clusters_per_class": 2}, "bbox": {"palette": {"red": [255, 0, 0]}, "shapes": ["circle"]},
        "blob": {"source": "pretrained", "sam_path": "/models/sam-vit-base", "detector_path": "/models/detr"},
        "color": {"num_colors": 3}, "voken": {"grid": [4, 8], "codebook_size": 64},
        "text": {"source": "pretrained", "captioner_path": "/models/qwen-vl", "tokenizer": "t5-xl"},
        "combined": {"voken": {"codebook_size": 64}}}
    config.validate(default_config)


# --- the stage CLI on image data ----------------------------------------------------------------------------------


def test_latents_cli_on_images(default_config, tmp_path):
    import yaml
    from transformers import AutoTokenizer

    from kaleido.latents.__main__ import main
    from metrics.io import load_npz, read_json, save_npz_atomic

    default_config["experiments"]["toy2d"]["latents"] = {"bbox": SPEC, "voken": {"codebook_size": 16}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(default_config))
    data = draw(40, seed=4)
    save_npz_atomic(tmp_path / "train.npz", class_names=np.array(["shapes"]), **data)
    outdir = tmp_path / "results" / "toy2d" / "latents"
    for latent in ("bbox", "voken"):
        main(["--config", str(tmp_path / "c.yaml"), "--experiment", "toy2d", "--latent", latent,
              "--data", str(tmp_path / "train.npz"), "--out", str(outdir / f"{latent}.npz"),
              "--quality", str(outdir / f"{latent}_quality.json")])
        out = load_npz(outdir / f"{latent}.npz", required=("strings", "input_ids", "attention_mask", "vocab_size",
                                                            "tokens", "pad_token_id", "tokenizer_dir", "names"))
        assert out["strings"].dtype.kind == "U" and out["input_ids"].dtype == np.int64
        assert out["input_ids"].shape == out["attention_mask"].shape and out["input_ids"].shape[0] == 40
        assert str(out["tokenizer_dir"]) == f"{latent}_tokenizer"
        tokenizer = AutoTokenizer.from_pretrained(outdir / f"{latent}_tokenizer")
        assert int(out["vocab_size"]) == len(tokenizer) and int(out["pad_token_id"]) == tokenizer.pad_token_id
        assert tokenizer.batch_decode(out["input_ids"].tolist(), skip_special_tokens=True) == list(out["strings"])
        quality = read_json(outdir / f"{latent}_quality.json")["metrics"]
        assert quality["num_items"] == 40 and quality["images_per_second"] > 0
    assert quality["distinct_strings"] > 30 and "voken_codebook" in out
    bbox_quality = read_json(outdir / "bbox_quality.json")["metrics"]
    assert bbox_quality["mean_iou"] > 0.97 and bbox_quality["count_accuracy"] == 1.0
    assert set(out["names"]) == set()  # voken has no object vocabulary
    assert set(load_npz(outdir / "bbox.npz")["names"]) >= {"red circle", "blue triangle"}


def test_t5_style_tokenizer_by_path_round_trip(tmp_path):
    """A SentencePiece-unigram T5 tokenizer (tiny vocabulary) saved with save_pretrained, loaded by path."""
    from transformers import T5Tokenizer

    pieces = list("abcdefghijklmnopqrstuvwxyz0123456789(),;#.|")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(c, -1.0) for c in pieces] + \
        [("▁" + c, -1.5) for c in pieces]
    T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(tmp_path / "t5")
    strings = ["red circle (10, 200, 30, 40); blue square (1, 2, 3, 4)", fmt.format_voken([3, 0, 12]),
               fmt.format_combined("a red circle.", "red circle (1, 2, 3, 4)", fmt.format_voken([1, 2, 3]))]
    tokenizer = tok.build(str(tmp_path / "t5"), strings, fmt.voken_vocabulary(16))
    ids, mask = tok.encode(tokenizer, strings)
    assert tokenizer.pad_token_id == 0 and len(tokenizer) == len(vocab) + 16
    assert tok.decode(tokenizer, ids) == strings
    assert fmt.parse_combined(tok.decode(tokenizer, ids)[2], None, 3, 16)[2] == [1, 2, 3]

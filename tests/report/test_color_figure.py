"""The colour-cluster comparison figure: real colour latents (offline extractor + tokenizer, through the latents
stage) decoded from a Kaleido shard's tokens and drawn beside the images they describe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from stage_helpers import run_module

from kaleido.latents.formats import ColorCluster
from kaleido.report.collect import MetricRecord
from kaleido.report.colors import DEFAULT_PER_CLASS, EDGE_GREY, color_rows, palette_image, write_color_figures
from metrics.io import load_npz, save_npz_atomic

SIZE = 32


def _record(shard: Path, method: str, latent: str) -> MetricRecord:
    return MetricRecord(path=shard.with_suffix(".json"), experiment="shapes", dataset="shapes", method=method,
                        latent=latent, guidance=3.0, num_samples=24, feature_net="domain", metrics={},
                        metric_options={}, samples=(str(shard),), provenance={}, content_hash="0" * 16, raw={})


def test_palettes_decode_the_kaleido_tokens_and_match_their_images(tmp_path, default_config):
    cfg = default_config
    exp = cfg["experiments"]["toy2d"]
    exp["data"] = {"name": "shapes", "num_train": 24, "image_size": SIZE}
    exp["latents"] = {"color": {}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    common = ["--config", str(tmp_path / "c.yaml"), "--experiment", "toy2d"]
    for args in (["-m", "kaleido.data", *common, "--out", "train.npz"],
                 ["-m", "kaleido.latents", *common, "--latent", "color", "--data", "train.npz", "--out", "color.npz"]):
        done = run_module(args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    data, latents = load_npz(tmp_path / "train.npz"), load_npz(tmp_path / "color.npz")
    # a Kaleido shard whose latents are the extracted ones: each palette must then show its own image's colours
    save_npz_atomic(tmp_path / "kaleido.npz", x=data["x"], labels=data["labels"], tokens=latents["tokens"],
                    class_names=data["class_names"])
    save_npz_atomic(tmp_path / "mdm.npz", x=data["x"][::-1].copy(), labels=data["labels"][::-1].copy(),
                    class_names=data["class_names"])
    mdm, kaleido = _record(tmp_path / "mdm.npz", "mdm", "none"), _record(tmp_path / "kaleido.npz", "kaleido", "color")

    rows, classes, names, size = color_rows(mdm, kaleido, tmp_path / "color_tokenizer", 4, DEFAULT_PER_CLASS)
    assert [label for label, _ in rows] == ["MDM", "AR colour clusters", "Kaleido (colour)"]
    assert names == [str(n) for n in data["class_names"]] and size == SIZE and classes == sorted(set(data["labels"]))
    palettes, images = rows[1][1], rows[2][1]
    assert palettes.shape == images.shape
    checked = 0
    for cell in range(palettes.shape[1] // SIZE):  # gaps between classes shift cells; find them by content
        x0 = cell * SIZE + (cell // DEFAULT_PER_CLASS) * 2
        image, palette = images[:, x0:x0 + SIZE], palettes[:, x0:x0 + SIZE]
        if image.shape[1] < SIZE or (image == 255).all():
            continue
        colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
        stripes, widths = np.unique(palette[0], axis=0, return_counts=True)
        # the widest stripe is the largest cluster: the image's most frequent colour (the background)
        assert np.abs(stripes[widths.argmax()].astype(int) - colours[counts.argmax()].astype(int)).max() <= 6
        checked += 1
    assert checked == len(classes) * DEFAULT_PER_CLASS

    written = write_color_figures([mdm, kaleido], {"shapes": tmp_path / "color.npz"}, tmp_path / "figures")
    assert sorted(p.name for p in written) == ["colors_shapes_w3.pdf", "colors_shapes_w3.png"]
    assert all(p.stat().st_size > 1000 for p in written)
    assert write_color_figures([mdm], {"shapes": tmp_path / "color.npz"}, tmp_path / "none") == []  # no Kaleido run


def test_palette_stripes_follow_the_shares_and_an_unreadable_latent_is_marked():
    cell = palette_image([ColorCluster(50, 0, 0, 75), ColorCluster(100, 0, 0, 25)], 9)  # 8 columns + grey edge
    assert (cell[:, :6] == cell[0, 0]).all() and (cell[:, 6:8] == 255).all() and cell[0, 0, 0] < 200
    assert (cell[:, 8] == EDGE_GREY).all()
    tiny = palette_image([ColorCluster(10, 0, 0, 99), ColorCluster(60, 60, 40, 1)], 9)
    assert (tiny[0, 6:8] == tiny[0, 6]).all() and (tiny[0, 6] != tiny[0, 0]).any()  # a 1 % cluster keeps 2 columns
    empty = palette_image([], 8)
    assert (np.diag(empty[..., 0]) == 255).all() and empty[0, 1, 0] == 160

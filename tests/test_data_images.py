"""Image data sets (shapes, digits, imagefolder, captions) and the sharded, checksummed data store."""

from __future__ import annotations

import io
import json
import re
import tarfile

import numpy as np
import pytest
from PIL import Image

from kaleido.data import DATASETS
from kaleido.data.pictures import center_crop_resize
from kaleido.errors import ConfigError
from metrics.errors import InputError
from metrics.store import load_data, save_data

SHAPES = {"name": "shapes", "num_train": 300}


@pytest.fixture(scope="module")
def shapes() -> dict[str, np.ndarray]:
    return DATASETS.get("shapes").generate(SHAPES, seed=7)


def test_shapes_deterministic_and_prefix_stable(shapes):
    again = DATASETS.get("shapes").generate({**SHAPES, "num_train": 50}, seed=7)
    for key, value in again.items():
        if key != "class_names":
            assert np.array_equal(value, shapes[key][:50]), key
    other = DATASETS.get("shapes").generate({**SHAPES, "num_train": 50}, seed=8)
    assert not np.array_equal(other["x"], again["x"])


def test_shapes_ground_truth_matches_pixels(shapes):
    """Every object's box holds its palette colour; outside every box is background; object 0 is the largest."""
    from kaleido.latents.segment import DEFAULT_PALETTE

    x, count, boxes = shapes["x"], shapes["gt_count"], shapes["gt_boxes"]
    assert x.shape == (300, 32, 32, 3) and x.dtype == np.uint8
    assert count.min() == 1 and count.max() == 3 and len(np.unique(count)) == 3
    for i in range(len(x)):
        covered = np.zeros((32, 32), dtype=bool)
        sides = []
        for k in range(count[i]):
            x1, y1, x2, y2 = (boxes[i, k] * 32).round().astype(int)
            patch = x[i, y1:y2, x1:x2]
            colour = DEFAULT_PALETTE[shapes["gt_colors"][i, k]]
            assert tuple(shapes["gt_rgb"][i, k]) == colour
            # the box is tight: the colour touches all four edges of the box
            hit = np.all(patch == colour, axis=-1)
            assert hit[0].any() and hit[-1].any() and hit[:, 0].any() and hit[:, -1].any()
            covered[y1:y2, x1:x2] = True
            sides.append(max(x2 - x1, y2 - y1))
        assert np.all(x[i][~covered] == (20, 20, 30))
        assert sides[0] >= max(sides) - 1  # drawn largest; a circle's box can lose a pixel row
        assert shapes["class_names"][shapes["labels"][i]] == shapes["gt_shapes"][i, 0]
        for k in range(count[i]):
            assert f"{shapes['gt_colors'][i, k]} {shapes['gt_shapes'][i, k]}" in shapes["captions"][i]


def test_shapes_classes_have_many_modes(shapes):
    """Each class mixes colours, counts and positions: the multi-modality CFG collapses."""
    for c in range(3):
        members = shapes["labels"] == c
        assert members.sum() > 60
        assert len(np.unique(shapes["gt_colors"][members, 0])) == 8
        assert len(np.unique(shapes["gt_count"][members])) == 3
        centres_x = shapes["gt_boxes"][members, 0][:, [0, 2]].mean(axis=1)
        assert centres_x.min() < 0.3 and centres_x.max() > 0.7


def test_shapes_offline_bbox_recovers_ground_truth(shapes):
    """The data set and the offline object finder agree (the latent type the paper's bbox rows use)."""
    from kaleido.latents import EXTRACTORS
    from kaleido.latents.images import ImageContext
    from kaleido.latents.quality import ground_truth, latent_quality

    result = EXTRACTORS.get("bbox").extract_strings(shapes["x"][:100], ImageContext(labels=shapes["labels"][:100]),
                                                    {}, 0)
    truth = ground_truth({k: v[:100] for k, v in shapes.items()})
    quality = latent_quality("bbox", list(result.strings), truth, result.names)
    assert quality["count_accuracy"] == 1.0 and quality["color_accuracy"] == 1.0
    assert quality["mean_iou"] > 0.95


def test_shapes_options():
    spec = {**SHAPES, "num_train": 20, "image_size": 64, "antialias": 4, "label": "count", "max_objects": 2,
            "colors": ["red", "blue"], "shapes": ["circle", "square"]}
    DATASETS.get("shapes").validate(spec, "d")
    data = DATASETS.get("shapes").generate(spec, seed=0)
    assert data["x"].shape == (20, 64, 64, 3)
    assert set(np.unique(data["gt_colors"])) <= {"", "red", "blue"}
    assert np.array_equal(data["labels"], data["gt_count"] - 1)
    assert list(data["class_names"]) == ["one object", "two objects"]
    assert len(np.unique(data["x"].reshape(-1, 3), axis=0)) > 3  # anti-aliased edges blend colours


@pytest.mark.parametrize("bad, message", [
    ({"image_size": 300}, "image_size: 300 is not an integer in [8, 256]"),
    ({"colors": ["red", "purple"]}, "colors: ['red', 'purple']; accepted"),
    ({"label": "size"}, "label: 'size'; accepted: ['shape', 'color', 'count']"),
    ({"shapes": ["circle"]}, "label: 'shape' needs at least two shapes"),
    ({"background": [0, 0]}, "background: [0, 0]; accepted: [r, g, b]"),
    ({"colour": "red"}, "unknown key(s) ['colour']"),
])
def test_shapes_config_errors(bad, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        DATASETS.get("shapes").validate({**SHAPES, **bad}, "config.experiments.s.data")


def test_digits_are_sklearn_digits():
    from sklearn.datasets import load_digits

    data = DATASETS.get("digits").generate({"name": "digits", "image_size": 32}, seed=0)
    ref = load_digits()
    assert data["x"].shape == (1797, 32, 32, 3) and np.array_equal(data["labels"], ref.target)
    back = data["x"][..., 0].reshape(1797, 8, 4, 8, 4).mean(axis=(2, 4)) / 255 * 16  # block means -> 8x8
    corr = np.corrcoef(back.ravel(), ref.images.ravel())[0, 1]
    assert corr > 0.97
    sub = DATASETS.get("digits").generate({"name": "digits", "num_train": 100}, seed=3)
    assert len(sub["x"]) == 100 and data["captions"][0] == "a handwritten zero"


def test_center_crop_matches_adm():
    """ADM's centre crop: box-halving while the short side >= 2x target, bicubic resize, central square."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(256, 384, 3), dtype=np.uint8)
    out = center_crop_resize(Image.fromarray(arr), 64)
    # 256x384 -> BOX 128x192 -> BOX 64x96 (no resize needed: short side is 64) -> central 64x64 columns 16..80
    halved = arr.reshape(128, 2, 192, 2, 3).astype(np.float64).mean(axis=(1, 3))
    halved = halved.reshape(64, 2, 96, 2, 3).mean(axis=(1, 3))
    diff = np.abs(out - halved[:, 16:80])  # PIL's fixed-point box filter rounds (up, ~+0.5) at each pass
    assert diff.max() <= 2 and np.corrcoef(out.ravel(), halved[:, 16:80].ravel())[0, 1] > 0.999
    # a non-square image with stripes on the sides keeps only the central content
    img = np.zeros((100, 160, 3), dtype=np.uint8)
    img[:, 30:130] = (0, 255, 0)
    out = center_crop_resize(Image.fromarray(img), 32)
    assert out.shape == (32, 32, 3) and np.all(out[:, 2:-2] == (0, 255, 0))


def _folder(root):
    for name, colour in (("n002", (0, 0, 255)), ("n001", (255, 0, 0))):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (80, 60), colour).save(root / name / "a.JPEG", quality=95)
        Image.new("L", (40, 50), 128).save(root / name / "b.png")
        Image.new("P", (30, 30)).save(root / name / "c.png")
        (root / name / "notes.txt").write_text("not an image")


def test_imagefolder(tmp_path, capfd):
    _folder(tmp_path / "train")
    (tmp_path / "map.txt").write_text("n001 tench, Tinca tinca\nn002 goldfish\n")
    spec = {"name": "imagefolder", "root": str(tmp_path / "train"), "image_size": 16,
            "class_map": str(tmp_path / "map.txt"), "workers": 1}
    DATASETS.get("imagefolder").validate(spec, "d")
    data = DATASETS.get("imagefolder").generate(spec, seed=0)
    assert data["x"].shape == (6, 16, 16, 3) and capfd.readouterr().err == ""  # decoded on demand, not yet
    data["x"] = np.asarray(data["x"])
    assert list(data["class_names"]) == ["tench", "goldfish"]
    assert list(data["files"]) == ["n001/a.JPEG", "n001/b.png", "n001/c.png", "n002/a.JPEG", "n002/b.png", "n002/c.png"]
    assert np.array_equal(data["labels"], [0, 0, 0, 1, 1, 1])
    assert data["x"].shape == (6, 16, 16, 3)
    assert np.abs(data["x"][0].astype(int) - (255, 0, 0)).max() <= 3
    assert np.all(data["x"][1] == 128)
    assert "converted to 8-bit RGB: 2 L, 2 P of 6 images" in capfd.readouterr().err


def test_imagefolder_errors(tmp_path):
    spec = {"name": "imagefolder", "root": str(tmp_path / "train"), "image_size": 16, "workers": 1}
    with pytest.raises(InputError, match="is not a directory"):
        DATASETS.get("imagefolder").generate(spec, seed=0)
    _folder(tmp_path / "train")
    (tmp_path / "train" / "n001" / "d.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match=r"n001/d\.png: unreadable image"):
        np.asarray(DATASETS.get("imagefolder").generate(spec, seed=0)["x"])  # when the data stage decodes it
    (tmp_path / "map.txt").write_text("n001 tench\n")
    with pytest.raises(InputError, match=r"no name for 1 class directories \(first: \['n002'\]\)"):
        DATASETS.get("imagefolder").generate({**spec, "class_map": str(tmp_path / "map.txt")}, seed=0)


def _jpeg(colour, size=(48, 40)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _add(archive, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def test_captions_tsv_and_webdataset(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "img" / "0.jpg")
    Image.new("RGB", (40, 50), (0, 0, 255)).save(tmp_path / "img" / "1.png")
    (tmp_path / "pairs.tsv").write_text("path\tcaption\nimg/0.jpg\ta red square\nimg/1.png\ta blue square\n")
    spec = {"name": "captions", "tsv": str(tmp_path / "pairs.tsv"), "image_size": 16, "workers": 1}
    DATASETS.get("captions").validate(spec, "d")
    data = DATASETS.get("captions").generate(spec, seed=0)
    assert list(data["captions"]) == ["a red square", "a blue square"] and np.array_equal(data["labels"], [0, 1])
    assert "class_names" not in data and DATASETS.get("captions").condition_text == "captions"  # one per item
    for shard, offset in (("00000", 0), ("00001", 3)):
        with tarfile.open(tmp_path / f"cc-{shard}.tar", "w") as archive:
            for k in range(3):
                _add(archive, f"{offset + k:06d}.jpg", _jpeg((80 * k, 0, 0)))
                if k == 2:
                    _add(archive, f"{offset + k:06d}.json", json.dumps({"caption": f"json {offset + k}"}).encode())
                else:
                    _add(archive, f"{offset + k:06d}.txt", f"caption {offset + k}".encode())
    wds = {"name": "captions", "shards": str(tmp_path / "cc-*.tar"), "image_size": 16, "max_items": 5}
    data = DATASETS.get("captions").generate(wds, seed=0)
    assert list(data["captions"]) == ["caption 0", "caption 1", "json 2", "caption 3", "caption 4"]
    assert data["x"].shape == (5, 16, 16, 3) and abs(int(data["x"][1, 8, 8, 0]) - 80) <= 3


def test_captions_errors(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of 'tsv'"):
        DATASETS.get("captions").validate({"name": "captions"}, "d")
    with tarfile.open(tmp_path / "a.tar", "w") as archive:
        _add(archive, "000.jpg", _jpeg((0, 0, 0)))
    with pytest.raises(InputError, match=r"a\.tar: sample '000' lacks .* a caption"):
        DATASETS.get("captions").generate({"name": "captions", "shards": str(tmp_path / "a.tar")}, seed=0)
    payload = (tmp_path / "a.tar").read_bytes()
    (tmp_path / "b.tar").write_bytes(payload[:700])
    with pytest.raises(InputError, match=r"b\.tar: unreadable or truncated"):
        DATASETS.get("captions").generate({"name": "captions", "shards": str(tmp_path / "b.tar")}, seed=0)
    (tmp_path / "p.tsv").write_text("missing.jpg\tcaption\n")
    with pytest.raises(InputError, match=r"p\.tsv:1: image .*missing\.jpg not found"):
        DATASETS.get("captions").generate({"name": "captions", "tsv": str(tmp_path / "p.tsv")}, seed=0)


def test_sharded_store_roundtrip_and_corruption(tmp_path, shapes):
    path = tmp_path / "train.npz"
    save_data(path, shapes, {"config": "test"}, shard_size=128)
    shards = sorted(tmp_path.glob("train.x-*.npy"))
    assert [p.name for p in shards] == [f"train.x-0000{k}-of-00003.npy" for k in range(3)]
    loaded = load_data(path)
    for key, value in shapes.items():
        assert np.array_equal(loaded[key], value), key
    assert loaded["meta"] == {"config": "test"} and "x_shards" not in loaded
    raw = bytearray(shards[1].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shards[1].write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"train\.x-00001-of-00003\.npy: checksum mismatch"):
        load_data(path)
    shards[1].write_bytes(bytes(raw[:1000]))
    with pytest.raises(InputError, match=r"train\.x-00001-of-00003\.npy: checksum mismatch"):
        load_data(path)
    shards[1].unlink()
    with pytest.raises(InputError, match=r"train\.x-00001-of-00003\.npy: shard listed in .*train\.npz is missing"):
        load_data(path)
    save_data(tmp_path / "small.npz", shapes, {}, shard_size=1000)  # fits in one: no shards
    assert not list(tmp_path.glob("small.x-*")) and np.array_equal(load_data(tmp_path / "small.npz")["x"], shapes["x"])


def test_data_and_latents_stages_on_sharded_shapes(tmp_path, default_config):
    """The data stage writes shards + index; the latents stage reads them and refuses a corrupted shard by name."""
    import yaml
    from stage_helpers import run_module

    cfg = default_config
    exp = cfg["experiments"]["toy2d"]
    exp["data"] = {"name": "shapes", "num_train": 300, "shard_size": 128}
    exp["latents"]["bbox"] = {}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    common = ["--config", str(tmp_path / "c.yaml"), "--experiment", "toy2d"]
    done = run_module(["-m", "kaleido.data", *common, "--out", "data/train.npz"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "data").glob("train.x-*.npy"))) == 3
    data = load_data(tmp_path / "data" / "train.npz")
    assert np.array_equal(data["x"], DATASETS.get("shapes").generate(exp["data"], seed=_data_seed(exp))["x"])
    latents = ["-m", "kaleido.latents", *common, "--latent", "bbox", "--data", "data/train.npz", "--out", "bbox.npz",
               "--quality", "q.json"]
    done = run_module(latents, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    quality = json.loads((tmp_path / "q.json").read_text())["metrics"]
    assert quality["num_items"] == 300 and quality["count_accuracy"] == 1.0
    shard = tmp_path / "data" / "train.x-00002-of-00003.npy"
    shard.write_bytes(shard.read_bytes()[:-10])
    done = run_module(latents, cwd=tmp_path)
    assert done.returncode == 2 and "train.x-00002-of-00003.npy: checksum mismatch" in done.stderr
    assert "Traceback" not in done.stderr


def _data_seed(exp):
    from kaleido.seeding import derive_seed

    return derive_seed("toy2d", exp["seed"], "data")

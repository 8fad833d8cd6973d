"""Bad inputs to the metrics CLI: each kind is refused with exit 2 and one line naming the file and the remedy, or
converted correctly and the conversion stated; nothing is computed on silently wrong data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from img_nets import random_images
from PIL import Image

from metrics.cli import main
from metrics.errors import InputError
from metrics.features._batching import run_batched
from metrics.features.domain import train
from metrics.images import load_image_set, to_rgb


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture()
def features(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "real.npy", rng.normal(size=(60, 4)))
    np.save(tmp_path / "fake.npy", rng.normal(size=(60, 4)))
    return tmp_path


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.npy", b"", "empty.npy: is empty; expected a .npy file written by numpy"),
    ("text.npy", b"0.1 0.2\n0.3 0.4\n", "text.npy: does not start with the numpy header"),
    ("truncated.npy", None, "truncated.npy: truncated or unreadable numpy file"),
    ("text.npz", b"features: 1 2 3\n", "text.npz: is not a zip archive"),
    ("empty.npz", b"", "empty.npz: is empty; expected a .npz file"),
])
def test_garbled_feature_files_are_named(features, capsys, name, content, message) -> None:
    path = features / name
    if content is None:  # a real .npy cut in the middle of its data
        whole = (features / "fake.npy").read_bytes()
        content = whole[: len(whole) // 2]
    path.write_bytes(content)
    assert main(["from-features", "--real", str(features / "real.npy"), "--fake", str(path)]) == 2
    err = _one_line_error(capsys)
    assert message in err and "allow_pickle" not in err


@pytest.mark.parametrize("labels", [np.linspace(0.0, 1.0, 60), np.arange(60, dtype=np.float32) % 3])
def test_float_labels_are_refused(features, capsys, labels) -> None:
    np.save(features / "labels.npy", labels)
    assert main(["from-features", "--real", str(features / "real.npy"), "--fake", str(features / "fake.npy"),
                 "--labels-fake", str(features / "labels.npy")]) == 2
    assert f"dtype {labels.dtype}; expected integer (or string) condition ids" in _one_line_error(capsys)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path, capsys) -> None:
    values = np.array([[0, 257, 32768], [65535, 1000, 40000]], dtype=np.uint16)
    (tmp_path / "grey").mkdir()
    Image.fromarray(values).save(tmp_path / "grey" / "a.png")
    with Image.open(tmp_path / "grey" / "a.png") as image:
        assert image.mode.startswith("I")  # PIL reads it as a wide mode, which convert("RGB") would clip
    images, _ = load_image_set([tmp_path / "grey"])
    expected = np.rint(values * (255 / 65535)).astype(np.uint8)
    np.testing.assert_array_equal(images[0], np.repeat(expected[..., None], 3, axis=-1))
    assert "16-bit, scaled to 8 bits" in capsys.readouterr().err


def test_images_without_a_value_range_are_refused() -> None:
    with pytest.raises(InputError, match="img.tif: floating-point image"):
        to_rgb(Image.new("F", (4, 4), 0.5), "img.tif")
    with pytest.raises(InputError, match=r"img.tif: 32-bit integer image with values in \[0, 100000\]"):
        to_rgb(Image.fromarray(np.array([[0, 100000]], dtype=np.int32)), "img.tif")
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    rgb, how = to_rgb(rgba, "x.png")
    assert how == "RGBA" and np.asarray(rgb).tolist() == [[[10, 20, 30]] * 2] * 2


def test_missing_folder_says_it_does_not_exist(tmp_path, capsys) -> None:
    np.savez(tmp_path / "fake.npz", x=random_images(4, seed=0, size=8), labels=np.arange(4))
    assert main(["from-images", "--real", str(tmp_path / "nowhere"), "--fake", str(tmp_path / "fake.npz"),
                 "--net", "identity"]) == 2
    assert "nowhere: does not exist" in _one_line_error(capsys)


def test_resolution_mismatch_warns(tmp_path, capsys) -> None:
    np.savez(tmp_path / "small.npz", x=random_images(6, seed=0, size=8), labels=np.arange(6) % 2)
    np.savez(tmp_path / "large.npz", x=random_images(6, seed=1, size=16), labels=np.arange(6) % 2)
    domain = tmp_path / "domain.pt"
    torch.save(train(random_images(12, seed=2, size=8), np.arange(12) % 2, seed=0, steps=1, width=8,
                     feature_dim=4), domain)
    assert main(["from-images", "--real", str(tmp_path / "small.npz"), "--fake", str(tmp_path / "large.npz"),
                 "--net", "domain", "--weights", str(domain), "--metrics", "fid"]) == 0
    assert "warning: real images are 8x8, generated 16x16" in capsys.readouterr().err


def _wrong_weights(tmp_path: Path) -> dict[str, Path]:
    np.savez(tmp_path / "weights.npz", w=np.zeros(3))
    torch.save({"format": "kaleido-domain-cnn-v1", "config": {"num_classes": 2}, "state_dict": {"w": torch.zeros(1)}},
               tmp_path / "other.pt")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "state_dict.pt")
    return {"npz": tmp_path / "weights.npz", "other": tmp_path / "other.pt", "state_dict": tmp_path / "state_dict.pt"}


@pytest.mark.parametrize(("net", "kind"), [("domain", "npz"), ("domain", "other"), ("domain", "state_dict"),
                                           ("inception", "npz"), ("inception", "state_dict"), ("sscd", "npz"),
                                           ("sscd", "state_dict")])
def test_wrong_weight_files_are_named(tmp_path, capsys, net, kind) -> None:
    """Past the digest check (allowed unverified), a file of another format is named with the format expected."""
    weights = _wrong_weights(tmp_path)[kind]
    np.savez(tmp_path / "imgs.npz", x=random_images(3, seed=0, size=16), labels=np.arange(3))
    assert main(["extract", "--net", net, "--weights", str(weights), "--allow-unverified-weights",
                 "--out", str(tmp_path / "f.npz"), str(tmp_path / "imgs.npz")]) == 2
    err = _one_line_error(capsys)
    assert str(weights) in err and ("cannot be loaded as" in err or "not a domain-CNN checkpoint" in err), err
    assert len(err) < 600  # not thousands of state-dict keys
    assert not (tmp_path / "f.npz").exists()


def test_missing_weights_path_is_said_plainly(tmp_path, capsys) -> None:
    np.savez(tmp_path / "imgs.npz", x=random_images(3, seed=0, size=16), labels=np.arange(3))
    for net in ("domain", "dinov2-hf"):
        assert main(["extract", "--net", net, "--out", str(tmp_path / "f.npz"), str(tmp_path / "imgs.npz")]) == 2
        err = _one_line_error(capsys)
        assert "weights not set (no weights path was given)" in err and "None" not in err


def test_a_batch_that_does_not_fit_names_the_remedy() -> None:
    """A real allocator failure (a forward asking for 2^60 floats), reported with the batch and the remedies."""
    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": torch.empty(2**60, dtype=torch.float32)}

    with pytest.raises(InputError, match=r"out of memory on cpu .* batch of 2 images of 8x8 .*lower the batch size"):
        run_batched(random_images(2, seed=0, size=8), forward, batch_size=64, device="cpu")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_precision_the_device_cannot_run_is_named(precision: str) -> None:
    """bf16 is CUDA autocast (refused on the CPU with the remedy); an unknown name lists the accepted ones."""
    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": batch.float().mean((2, 3))}

    message = ("precision='fp16'; expected one of ('fp32', 'bf16')" if precision == "fp16" else
               f"precision='{precision}' needs a CUDA device, got device='cpu'; use precision='fp32'")
    with pytest.raises(ValueError, match=re.escape(message)):
        run_batched(random_images(2, seed=0, size=8), forward, batch_size=2, device="cpu", precision=precision)


def test_non_finite_features_are_refused_once_checked_arrays_are_not_rescanned() -> None:
    """``compute_all`` scans its inputs once; within ``checked_features`` only the arrays it vouches for skip the
    scan (shape still checked), and any other array, or the same one outside the block, is scanned as before."""
    from metrics._validate import as_features, checked_features
    from metrics.suite import compute_all

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 5)), rng.normal(size=(30, 5))
    fake[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"fake: 1 row\(s\) contain NaN values \(first bad row 7\)"):
        compute_all(real, fake, metrics=("fid", "vendi"))
    with checked_features(fake):
        assert as_features(fake, "fake") is fake  # vouched for: not rescanned
        with pytest.raises(ValueError, match="real: 40 row"):
            as_features(np.where(np.arange(5) == 0, np.inf, real), "real")  # not vouched for: scanned (all 40 rows)
        with pytest.raises(ValueError, match=r"shape \(30, 5\) has 30 row\(s\); at least 31 required"):
            as_features(fake, "fake", min_rows=31)
    with pytest.raises(ValueError, match="fake: 1 row"):
        as_features(fake, "fake")

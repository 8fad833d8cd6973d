"""Bad image inputs to the metrics CLI: clear errors naming the file, or the documented, counted RGB conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metrics.cli import main
from metrics.images import load_image_set


def _png(path, size=8, mode="RGB"):
    array = np.random.default_rng(len(str(path))).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)


def test_empty_mixed_unreadable_and_converted_folders(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{empty}: no .png/.jpg/.jpeg files"):
        load_image_set([empty])

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _png(mixed / "a.png", 8)
    _png(mixed / "b.png", 16)
    with pytest.raises(ValueError, match=r"b.png: size \(16, 16\) differs from a.png's \(8, 8\)"):
        load_image_set([mixed])

    broken = tmp_path / "broken"
    broken.mkdir()
    _png(broken / "a.png")
    (broken / "b.png").write_bytes(b"\x89PNG not really")
    assert main(["from-images", "--real", str(broken), "--fake", str(broken), "--net", "identity"]) == 2
    assert "b.png: unreadable image" in capsys.readouterr().err

    modes = tmp_path / "modes"
    modes.mkdir()
    _png(modes / "a.png", mode="L")
    _png(modes / "b.png", mode="RGBA")
    _png(modes / "c.png")
    images, labels = load_image_set([modes])
    assert images.shape == (3, 8, 8, 3) and images.dtype == np.uint8 and labels is None
    assert "converted to 8-bit RGB: 1 L, 1 RGBA of 3 images" in capsys.readouterr().err

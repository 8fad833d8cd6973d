"""Image sets from disk: directories of PNG/JPEG files or ``.npz`` shards (uint8 ``x`` (n, H, W, 3), ``labels``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metrics.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


#: PIL modes of more than 8 bits per channel, and the bits their integer values span
_WIDE_MODES = {"I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16}


def to_rgb(image: Any, name: str) -> tuple[Any, str | None]:
    """One PIL image as an 8-bit RGB PIL image, and how it was converted (None if it already was 8-bit RGB).

    Serves the metrics' image folders and the harness's data sets. 16-bit greyscale is scaled to 8 bits
    (round(v · 255 / 65535)), not clipped as ``Image.convert`` would; 32-bit integer images beyond 16 bits and float
    images have no implied range and are refused (:class:`InputError` naming ``name``); other modes (L, P, RGBA,
    CMYK, ...) go through ``Image.convert("RGB")`` (alpha dropped).
    """
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image, None
    if mode in _WIDE_MODES or mode == "I":
        values = np.asarray(image).astype(np.int64)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise InputError(f"{name}: 32-bit integer image with values in [{values.min()}, {values.max()}]; expected "
                             "8- or 16-bit images (save it as 8-bit RGB PNG/JPEG)")
        grey = np.rint(values * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB"), f"{mode} (16-bit, scaled to 8 bits)"
    if mode == "F":
        raise InputError(f"{name}: floating-point image (PIL mode 'F') has no implied value range; save it as 8-bit "
                         "RGB PNG/JPEG")
    return image.convert("RGB"), mode


def report_conversions(converted: Mapping[str, int], where: str, total: int) -> None:
    """One stderr line counting the images converted from each mode (nothing when none was)."""
    converted = {mode: n for mode, n in converted.items() if n}
    if converted:
        summary = ", ".join(f"{n} {mode}" for mode, n in sorted(converted.items()))
        print(f"{where}: converted to 8-bit RGB: {summary} of {total} images", file=sys.stderr)


def _read_dir(directory: Path) -> np.ndarray:
    """uint8 (n, H, W, 3) RGB of the image files directly in ``directory``, in sorted file-name order.

    Other modes are converted and the conversions counted on stderr (alpha is dropped, palettes and greyscale
    expanded, 16-bit greyscale scaled to 8 bits).
    """
    from PIL import Image

    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{directory}: no {'/'.join(IMAGE_SUFFIXES)} files; expected a folder of images")
    images, converted = [], {}
    for path in files:
        try:
            with Image.open(path) as image:
                rgb, how = to_rgb(image, str(path))
                array = np.asarray(rgb)
        except OSError as err:  # PIL.UnidentifiedImageError, truncated files
            raise ValueError(f"{path}: unreadable image ({err}); remove or replace it") from None
        if how is not None:
            converted[how] = converted.get(how, 0) + 1
        if images and array.shape != images[0].shape:
            raise ValueError(f"{path}: size {array.shape[:2]} differs from {files[0].name}'s {images[0].shape[:2]}; "
                             "all images of a set must have one size")
        images.append(array)
    report_conversions(converted, str(directory), len(files))
    return np.stack(images)


def load_image_set(paths: Sequence[str | os.PathLike[str]]) -> tuple[np.ndarray, np.ndarray | None]:
    """Concatenate image folders and/or ``.npz`` shards, in the given order.

    Returns:
        ``(images, labels)``: uint8 (n, H, W, 3) RGB; int64 (n,) labels if every input is a shard with ``labels``,
        else None.
    """
    from metrics.features import check_images
    from metrics.store import load_data

    images, labels = [], []
    for path in map(Path, paths):
        if path.is_dir():
            images.append(_read_dir(path))
            labels.append(None)
        elif path.suffix == ".npz":
            data = load_data(path, required=("x",))
            images.append(check_images(data["x"]))
            labels.append(data.get("labels"))
        elif not path.exists():
            raise ValueError(f"{path}: does not exist; expected a folder of PNG/JPEG images or an .npz shard")
        else:
            raise ValueError(f"{path}: not a folder of PNG/JPEG images or an .npz shard with key 'x'")
    if len({im.shape[1:] for im in images}) > 1:
        raise ValueError(f"inputs have different image sizes {sorted({im.shape[1:] for im in images})}")
    joined_labels = None if any(lb is None for lb in labels) else np.concatenate(labels).astype(np.int64)
    return np.concatenate(images), joined_labels

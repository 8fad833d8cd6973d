"""Image sets from disk: directories of PNG/JPEG files or ``.npz`` shards (uint8 ``x`` (n, H, W, 3), ``labels``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_dir(directory: Path) -> np.ndarray:
    """uint8 (n, H, W, 3) RGB of the image files directly in ``directory``, in sorted file-name order."""
    from PIL import Image

    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{directory}: no {'/'.join(IMAGE_SUFFIXES)} files; expected a folder of images")
    images, converted = [], {}
    for path in files:
        try:
            with Image.open(path) as image:
                if image.mode != "RGB":  # the documented fallback: convert, and say how many were converted
                    converted[image.mode] = converted.get(image.mode, 0) + 1
                array = np.asarray(image.convert("RGB"))
        except OSError as err:  # PIL.UnidentifiedImageError, truncated files
            raise ValueError(f"{path}: unreadable image ({err}); remove or replace it") from None
        if images and array.shape != images[0].shape:
            raise ValueError(f"{path}: size {array.shape[:2]} differs from {files[0].name}'s {images[0].shape[:2]}; "
                             "all images of a set must have one size")
        images.append(array)
    if converted:
        summary = ", ".join(f"{count} {mode}" for mode, count in sorted(converted.items()))
        print(f"{directory}: converted to RGB: {summary} of {len(files)} images", file=sys.stderr)
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
        else:
            raise ValueError(f"{path}: not a folder of PNG/JPEG images or an .npz shard with key 'x'")
    if len({im.shape[1:] for im in images}) > 1:
        raise ValueError(f"inputs have different image sizes {sorted({im.shape[1:] for im in images})}")
    joined_labels = None if any(lb is None for lb in labels) else np.concatenate(labels).astype(np.int64)
    return np.concatenate(images), joined_labels

"""Reading real images for the data sets: decode to RGB, ADM/DiT centre crop + resize, parallel loading.

The crop is ADM's ``center_crop_arr`` (Dhariwal & Nichol 2021, used by DiT for ImageNet 256): halve the image
with a box filter while its short side is at least twice the target, resize with bicubic so the short side equals
the target, then cut the central square.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kaleido.checks import check_int
from metrics.errors import InputError
from metrics.images import report_conversions, to_rgb

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".webp", ".bmp")


def center_crop_resize(image: Any, size: int) -> np.ndarray:
    """``image`` (a PIL image, RGB) -> (size, size, 3) uint8, as ADM's ``center_crop_arr``."""
    from PIL import Image

    while min(image.size) >= 2 * size:
        image = image.resize(tuple(v // 2 for v in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(v * scale) for v in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return np.ascontiguousarray(arr[top:top + size, left:left + size])


def decode(source: str | os.PathLike[str] | bytes, size: int, name: str) -> tuple[np.ndarray, str]:
    """One image file (path or encoded bytes) -> ((size, size, 3) uint8, its original PIL mode).

    Other modes are converted to 8-bit RGB by :func:`metrics.images.to_rgb` (16-bit greyscale scaled, not clipped);
    unreadable files raise :class:`InputError` naming ``name``.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            rgb, how = to_rgb(image, name)
            return center_crop_resize(rgb, size), how or "RGB"
    except InputError:
        raise
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError, truncated data, decompression bombs
        raise InputError(f"{name}: unreadable image ({err}); remove or replace it") from None


def _decode_path(args: tuple[str, int]) -> tuple[np.ndarray, str]:
    return decode(args[0], args[1], args[0])


def decode_files(paths: Sequence[str | os.PathLike[str]], size: int, workers: int = 1,
                 desc: str = "images") -> np.ndarray:
    """Decode ``paths`` in order to (n, size, size, 3) uint8 with ``workers`` processes and a progress bar; print
    how many images were converted from which mode."""
    from tqdm import tqdm

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    modes: Counter[str] = Counter()
    jobs = [(str(p), size) for p in paths]
    mapper: Callable[..., Any]
    if workers > 1 and len(jobs) > 64:
        pool = ProcessPoolExecutor(max_workers=workers)
        mapper = pool.map
    else:
        pool, mapper = None, map
    try:
        for i, (array, mode) in enumerate(tqdm(mapper(_decode_path, jobs, **({"chunksize": 64} if pool else {})),
                                               total=len(jobs), desc=desc, unit="img", mininterval=5)):
            out[i] = array
            modes[mode] += 1
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    report_modes(modes, desc)
    return out


@dataclass(frozen=True)
class ImageFiles:
    """Image files decoded on demand: an array-like of shape (n, size, size, 3) uint8 whose slices decode just
    those files (in parallel, :func:`decode_files`). A data set returns it as its ``x`` so that the data stage
    (:func:`metrics.store.save_data`) decodes and writes one shard at a time; ``np.asarray`` decodes them all."""

    reads_on_demand = True  # metrics.features.check_images: check shape/dtype, do not decode

    paths: Sequence[Path]
    size: int
    workers: int = 1
    desc: str = "images"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.size, self.size, 3)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | slice) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            index = range(len(self.paths))[key]
            return decode(self.paths[index], self.size, str(self.paths[index]))[0]
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise IndexError("ImageFiles takes an int or a slice with step 1")
        start, stop, _ = key.indices(len(self.paths))
        part = f" [{start}:{stop}]" if (start, stop) != (0, len(self.paths)) else ""
        return decode_files(self.paths[start:stop], self.size, self.workers, desc=f"{self.desc}{part}")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


def report_modes(modes: Counter[str], desc: str) -> None:
    """Count the decoded images' conversions (``modes``: how -> images, "RGB" for none) on stderr."""
    report_conversions({mode: n for mode, n in modes.items() if mode != "RGB"}, desc, sum(modes.values()))


def list_images(directory: Path) -> list[Path]:
    """Image files directly in ``directory``, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def check_loader_options(spec: dict[str, Any], where: str) -> None:
    """The options every data set of real image files shares: ``image_size`` (8..1024), ``workers``, ``shard_size``."""
    check_int(spec, "image_size", where, lo=8, hi=1024)
    check_int(spec, "workers", where)
    check_int(spec, "shard_size", where)

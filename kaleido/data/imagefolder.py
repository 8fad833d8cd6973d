"""``imagefolder``: an ImageNet-style tree ``root/<class>/*.JPEG`` (the paper's ImageNet 256 setting).

Images are decoded to RGB (other modes converted and counted), centre-cropped and resized as in ADM/DiT
(:func:`kaleido.data.pictures.center_crop_resize`) to ``image_size``. Classes are the sub-directories in sorted
order (ImageNet's synset order); ``class_map`` names a text file of ``<directory> <readable name ...>`` lines
(e.g. ImageNet's ``LOC_synset_mapping.txt``: ``n01440764 tench, Tinca tinca``) whose names become the
``class_names`` the text encoder reads; without it the directory names are used.

Keys: ``root`` (required), ``image_size`` (default 256), ``class_map``, ``max_per_class`` (first N files of each
class, by name), ``workers`` (decoding processes, default 8), ``shard_size``.
Arrays: ``x`` (n, S, S, 3) uint8, ``labels`` (n,) int64, ``class_names`` (C,), ``files`` (n,) paths relative to root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kaleido.checks import check_int, check_keys, check_str
from kaleido.data import DATASETS
from kaleido.data.pictures import ImageFiles, check_loader_options, list_images
from metrics.errors import InputError


def read_class_map(path: Path) -> dict[str, str]:
    """``<directory> <name ...>`` per line -> {directory: name}; a name with commas keeps its first part."""
    if not path.is_file():
        raise InputError(f"data.class_map: {path} not found; expected a text file of '<directory> <name>' lines")
    out = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise InputError(f"{path}:{number}: {line!r} is not '<directory> <name>'")
        out[parts[0]] = parts[1].split(",")[0].strip()
    return out


class ImageFolder:
    keys = {"name", "root", "image_size", "class_map", "max_per_class", "workers", "shard_size"}

    def validate(self, spec: dict[str, Any], where: str) -> None:
        # Paths are checked when the data stage runs, so a cluster config can be dry-run on a laptop.
        check_keys(spec, self.keys, where, required={"name", "root"})
        check_str(spec, "root", where, "a directory path")
        check_str(spec, "class_map", where, "a file path")
        check_int(spec, "max_per_class", where)
        check_loader_options(spec, where)

    def classes(self, spec: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(directory names, readable class names), sorted by directory."""
        root = Path(spec["root"]).expanduser()
        if not root.is_dir():
            raise InputError(f"data.root: {root} is not a directory; expected root/<class>/<image files>")
        dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not dirs:
            raise InputError(f"data.root: {root} has no class sub-directories; expected root/<class>/<image files>")
        if "class_map" not in spec:
            return dirs, dirs
        mapping = read_class_map(Path(spec["class_map"]).expanduser())
        missing = [d for d in dirs if d not in mapping]
        if missing:
            raise InputError(f"data.class_map: {spec['class_map']} has no name for {len(missing)} class directories "
                             f"(first: {missing[:3]})")
        return dirs, [mapping[d] for d in dirs]

    def num_classes(self, spec: dict[str, Any]) -> int:
        return len(self.classes(spec)[0])

    def generate(self, spec: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        root = Path(spec["root"]).expanduser()
        dirs, names = self.classes(spec)
        files, labels = [], []
        for label, directory in enumerate(dirs):
            found = list_images(root / directory)[:spec.get("max_per_class")]
            if not found:
                raise InputError(f"data.root: class directory {root / directory} holds no image files")
            files += found
            labels += [label] * len(found)
        x = ImageFiles(files, spec.get("image_size", 256), spec.get("workers", 8), desc=f"imagefolder {root}")
        return {"x": x, "labels": np.array(labels, dtype=np.int64), "class_names": np.array(names),
                "files": np.array([str(f.relative_to(root)) for f in files])}


DATASETS.register("imagefolder")(ImageFolder())

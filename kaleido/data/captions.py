"""``captions``: image + caption pairs (CC12M-style), the text-to-image path.

Two sources (exactly one):

- ``tsv``: a tab-separated file of ``<image path>\t<caption>`` lines (paths relative to the TSV's directory); a
  header line ``path\tcaption`` (or ``image\tcaption``) is skipped.
- ``shards``: a glob of webdataset ``.tar`` shards: members ``<key>.<ext>`` grouped by key, the image in
  ``jpg``/``jpeg``/``png``/``webp`` and the caption in ``txt`` (or the ``caption`` field of ``json``).

Images are decoded to RGB and centre-cropped/resized to ``image_size`` (ADM). Each item is its own condition
(``condition_text = "captions"``): ``labels`` = 0..n-1 index the captions, which the data index holds as a text
column read in place (:class:`metrics.store.TextColumn`); the text encoder reads each batch's captions, and sample
i gets caption i mod N (N = ``sample_conditions``, else the set's size).

Keys: ``tsv`` | ``shards``, ``image_size`` (default 64), ``max_items``, ``workers``, ``shard_size``,
``eval_captions``: a UTF-8 file of held-out captions, one per line, that sampling draws its conditions from instead
of the training captions (:func:`read_caption_lines`; the sample and edit jobs read it, training never does).
Arrays: ``x`` (n, S, S, 3) uint8, ``labels`` (n,), ``captions`` (n,).
"""

from __future__ import annotations

import glob
import json
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from kaleido.checks import check_int, check_keys, check_str
from kaleido.data import DATASETS
from kaleido.data.pictures import IMAGE_EXTENSIONS, ImageFiles, check_loader_options, decode, report_modes
from kaleido.errors import ConfigError
from metrics.errors import InputError

HEADERS = {("path", "caption"), ("image", "caption")}


def read_tsv(path: Path, limit: int | None) -> tuple[list[Path], list[str]]:
    """(image paths, captions) of a ``path<TAB>caption`` file, in file order."""
    if not path.is_file():
        raise InputError(f"data.tsv: {path} not found; expected a '<image path>\\t<caption>' file")
    files, captions = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip():
            raise InputError(f"{path}:{number}: {line[:80]!r} is not '<image path>\\t<caption>'")
        if number == 1 and tuple(p.strip().lower() for p in parts) in HEADERS:
            continue
        image = path.parent / parts[0].strip()
        if not image.is_file():
            raise InputError(f"{path}:{number}: image {image} not found")
        files.append(image)
        captions.append(parts[1].strip())
        if limit is not None and len(files) == limit:
            break
    if not files:
        raise InputError(f"data.tsv: {path} lists no images")
    return files, captions


def read_caption_lines(path: Path) -> np.ndarray:
    """The captions of a held-out caption file (UTF-8, one per line, blank lines skipped), in file order, as a
    numpy unicode array (n,). InputError naming the file when it is missing or holds no caption."""
    if not path.is_file():
        raise InputError(f"data.eval_captions: {path} not found; expected a UTF-8 file of captions, one per line")
    captions = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not captions:
        raise InputError(f"data.eval_captions: {path} holds no caption")
    return np.array(captions)


def read_shards(pattern: str, size: int, limit: int | None) -> tuple[np.ndarray, list[str]]:
    """Decode the (image, caption) pairs of webdataset tar shards matching ``pattern``, in shard and member order."""
    tars = sorted(glob.glob(str(Path(pattern).expanduser())))
    if not tars:
        raise InputError(f"data.shards: no file matches {pattern!r}; expected webdataset .tar shards")
    images, captions, modes = [], [], Counter()
    for tar in tars:
        samples: dict[str, dict[str, bytes]] = {}
        try:
            with tarfile.open(tar) as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    base = member.name.rsplit("/", 1)[-1]
                    key, _, ext = base.partition(".")
                    handle = archive.extractfile(member)
                    samples.setdefault(f"{member.name[:-len(base)]}{key}", {})[ext.lower()] = handle.read()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise InputError(f"{tar}: unreadable or truncated tar shard ({err})") from None
        for key, fields in samples.items():
            image_ext = next((e for e in fields if f".{e}" in IMAGE_EXTENSIONS), None)
            text = fields["txt"].decode("utf-8").strip() if "txt" in fields else (
                json.loads(fields["json"]).get("caption", "") if "json" in fields else "")
            if image_ext is None or not text:
                raise InputError(f"{tar}: sample {key!r} lacks an image ({'/'.join(IMAGE_EXTENSIONS)}) or a caption "
                                 f"(txt, or json with 'caption'); it has {sorted(fields)}")
            array, mode = decode(fields[image_ext], size, f"{tar}:{key}.{image_ext}")
            modes[mode] += 1
            images.append(array)
            captions.append(text)
            if limit is not None and len(images) == limit:
                report_modes(modes, f"captions {pattern}")
                return np.stack(images), captions
    report_modes(modes, f"captions {pattern}")
    return np.stack(images), captions


class Captions:
    condition_text = "captions"
    keys = {"name", "tsv", "shards", "image_size", "max_items", "workers", "shard_size", "eval_captions"}

    def validate(self, spec: dict[str, Any], where: str) -> None:
        check_keys(spec, self.keys, where, required={"name"})
        if ("tsv" in spec) == ("shards" in spec):
            raise ConfigError(f"{where}: give exactly one of 'tsv' (a path<TAB>caption file) or 'shards' (a glob of "
                              "webdataset .tar files)")
        check_str(spec, "tsv", where, "a file path")
        check_str(spec, "shards", where, "a glob of .tar files")
        check_str(spec, "eval_captions", where, "a file of held-out captions, one per line")
        check_int(spec, "max_items", where)
        check_loader_options(spec, where)

    def generate(self, spec: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        size, limit = spec.get("image_size", 64), spec.get("max_items")
        if "tsv" in spec:
            files, captions = read_tsv(Path(spec["tsv"]).expanduser(), limit)
            x = ImageFiles(files, size, spec.get("workers", 8), desc=f"captions {spec['tsv']}")
        else:
            x, captions = read_shards(spec["shards"], size, limit)
        # object, not unicode: a unicode array is as wide as the longest caption for every item (~12 GB for CC12M)
        return {"x": x, "labels": np.arange(len(x), dtype=np.int64), "captions": np.array(captions, dtype=object)}

    def num_classes(self, spec: dict[str, Any]) -> int:
        raise ConfigError("a captioned set has one condition per item: its count is the set's size")


DATASETS.register("captions")(Captions())

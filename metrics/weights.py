"""The feature networks' pretrained files: where each comes from, its published digest, where the loaders read it,
and the one check every load and every fetch goes through.

Two kinds of entry, both in torch hub's cache (``$TORCH_HOME/hub``, what torch-fidelity and ``torch.hub`` use, so
an existing cache is reused and nothing is fetched twice):

* :class:`WeightFile` — a checkpoint in ``hub/checkpoints/<file name of its URL>``. Its digest is the full SHA-256
  where one is pinned, else the hash prefix torch hub's naming convention puts in the file name
  (``weights-inception-2015-12-05-6726825d.pth``: the SHA-256 starts with ``6726825d``), else none is published.
* :class:`HubRepo` — the code of a GitHub repository ``torch.hub.load`` runs (``hub/<owner>_<repo>_<ref>``). A branch
  has no fixed digest; its archive's SHA-256 is recorded when fetched.

:func:`check_file` is what "verified" means everywhere: the file's SHA-256 matches the pinned digest (or the
caller's own pin). A mismatch, or a file without any digest, is refused unless the caller allows unverified
weights, and the returned record says which was the case, so every number can carry it.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from metrics.errors import InputError
from metrics.registry import Registry
from metrics.store import sha256_file

#: environment variable naming a mirror that serves every source URL under ``<mirror>/<host>/<path>``
ENDPOINT_ENV = "KALEIDO_WEIGHTS_ENDPOINT"
#: torch hub's convention: the hex digits after the last "-" of a checkpoint's name start its SHA-256
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")


def hub_dir() -> Path:
    """torch hub's cache directory (``$TORCH_HOME/hub``, default ``~/.cache/torch/hub``), as torch reports it."""
    import torch

    return Path(torch.hub.get_dir())


@dataclass(frozen=True)
class WeightFile:
    """A checkpoint file fetched from ``url`` into torch hub's ``checkpoints`` directory."""

    name: str
    url: str
    what: str
    size_mb: int
    sha256: str | None = None  # full digest, where a source publishes one

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def digest(self) -> str | None:
        """The published digest: the full SHA-256, else the prefix in the file name, else None."""
        if self.sha256:
            return self.sha256
        match = _HASH_IN_NAME.search(self.filename)
        return match.group(1) if match else None

    def default_path(self) -> Path:
        return hub_dir() / "checkpoints" / self.filename


@dataclass(frozen=True)
class HubRepo:
    """The code of GitHub repository ``owner/repo`` at ``ref``, laid out as ``torch.hub.load`` caches it."""

    name: str
    owner: str
    repo: str
    ref: str
    what: str
    size_mb: int = 1

    @property
    def url(self) -> str:
        return f"https://github.com/{self.owner}/{self.repo}/zipball/{self.ref}"

    def default_path(self) -> Path:
        return hub_dir() / f"{self.owner}_{self.repo}_{self.ref}"


WEIGHTS: Registry[WeightFile | HubRepo] = Registry("pretrained weight file")
for _entry in (
    WeightFile("inception-v3-compat", "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth", "FID Inception-v3 (torch-fidelity)", 92),
    WeightFile("vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth", "VGG-16 (torchvision IMAGENET1K_V1)",
               528),
    WeightFile("dinov2_vitl14", "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
               "DINOv2 ViT-L/14 checkpoint", 1161),
    WeightFile("dinov2_vitb14", "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
               "DINOv2 ViT-B/14 checkpoint", 330),
    WeightFile("sscd_disc_mixup", "https://dl.fbaipublicfiles.com/sscd-copy-detection/sscd_disc_mixup.torchscript.pt",
               "SSCD ResNet-50 disc_mixup (TorchScript)", 94),
    HubRepo("dinov2-repo", "facebookresearch", "dinov2", "main", "DINOv2 model code (torch.hub repository)"),
):
    WEIGHTS.register(_entry.name)(_entry)


class WeightsDigestError(InputError):
    """A weight file whose SHA-256 is not the expected one (or that has none to compare with) was refused."""


def check_file(path: str | os.PathLike[str], entry: WeightFile, *, pin: str | None = None,
               allow_unverified: bool = False) -> dict[str, Any]:
    """Check the weight file at ``path`` against ``entry``'s published digest, or where none is published against
    ``pin`` (the caller's own full SHA-256; one contradicting a published digest is refused).

    Returns:
        {"name", "path", "sha256" (hex, the file's), "expected" (digest or None), "verified" (bool)}.
    Raises:
        FileNotFoundError if ``path`` is not a file; :class:`WeightsDigestError` when the digest does not match
        or there is none, unless ``allow_unverified``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{entry.what} weights not found at {path}")
    digest = file_sha256(path)
    published = entry.digest()
    if pin and published and not pin.lower().startswith(published):
        raise InputError(f"{entry.name}: the pinned SHA-256 {pin} contradicts its published digest {published}; "
                         "a pin is for files without one. To use other weights, allow them unverified")
    expected = (published or pin or "").lower() or None
    verified = expected is not None and digest.startswith(expected)
    if not verified and not allow_unverified:
        allow = (f"allow unverified weights (config `weights.allow_unverified: [{entry.name}]`, "
                 "`--allow-unverified-weights` on `python -m metrics`), which every result then records")
        if expected is None:
            raise WeightsDigestError(f"{path}: {entry.what} has no published digest to check (its SHA-256 is "
                                     f"{digest}); pin the digest of the file you trust (config `weights.sha256: "
                                     f"{{{entry.name}: <sha256>}}`) or {allow}")
        raise WeightsDigestError(f"{path}: SHA-256 {digest} does not match the {entry.what} digest {expected} "
                                 f"(source {entry.url}); these are not the weights the metric is defined with. "
                                 f"Delete the file and fetch it again (`python -m kaleido.weights fetch --config C`, "
                                 f"or download {entry.url}), or {allow}")
    return {"name": entry.name, "path": str(path), "sha256": digest, "expected": expected, "verified": verified}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, computed once per process while its size and modification time stay the same."""
    path = Path(path)
    stat = path.stat()
    return _cached_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, computed once per process per (path, size, mtime)."""
    del size, mtime_ns  # part of the cache key only
    return sha256_file(path)


def source_url(url: str, endpoint: str | None = None) -> str:
    """``url``, or its copy on a mirror (``endpoint``, else ``$KALEIDO_WEIGHTS_ENDPOINT``) at
    ``<mirror>/<host><path>``."""
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
    if not endpoint:
        return url
    parts = urlsplit(url)
    return f"{endpoint.rstrip('/')}/{parts.netloc}{parts.path}"


def _content_length(url: str) -> int | None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "torch.hub"})
    with urllib.request.urlopen(request, timeout=60) as response:
        length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def download_file(entry: WeightFile, dest: Path | None = None, *, endpoint: str | None = None, pin: str | None = None,
                  allow_unverified: bool = False, progress: bool = True) -> dict[str, Any]:
    """Download ``entry`` with ``torch.hub.download_url_to_file`` and move it to ``dest`` (default: its cache
    path) only once its length and digest are checked; a refused or interrupted download leaves nothing at ``dest``.

    Returns :func:`check_file`'s record of the file at ``dest``.
    """
    import torch

    dest = Path(dest) if dest is not None else entry.default_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = source_url(entry.url, endpoint)
    expected_size = _content_length(url)
    staged = dest.with_name(dest.name + ".unverified")  # never read by a loader; replaced by the next fetch
    staged.unlink(missing_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(staged), hash_prefix=None, progress=progress)
        size = staged.stat().st_size
        if expected_size is not None and size != expected_size:
            raise InputError(f"download of {url} stopped at {size} of {expected_size} bytes; fetch it again")
        try:
            record = check_file(staged, entry, pin=pin, allow_unverified=allow_unverified)
        except WeightsDigestError as err:
            raise WeightsDigestError(f"refused the download of {url} (nothing was written to {dest}): "
                                     f"{str(err).split(': ', 1)[1]}") from None
        os.replace(staged, dest)
    finally:
        staged.unlink(missing_ok=True)
    return {**record, "path": str(dest), "source": url}


def download_repo(entry: HubRepo, dest: Path | None = None, *, endpoint: str | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Download ``entry``'s GitHub archive with torch hub's downloader and unpack it to ``dest`` (default: where
    ``torch.hub.load`` looks), replacing any previous copy only when the new one is complete."""
    import torch

    dest = Path(dest) if dest is not None else entry.default_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = source_url(entry.url, endpoint)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp:
        archive = Path(tmp) / "archive.zip"
        torch.hub.download_url_to_file(url, str(archive), hash_prefix=None, progress=progress)
        try:
            with zipfile.ZipFile(archive) as zf:
                top = {name.split("/", 1)[0] for name in zf.namelist()}
                if len(top) != 1:
                    raise InputError(f"{url}: expected a GitHub archive with one top-level folder, found {sorted(top)}")
                zf.extractall(tmp)
        except zipfile.BadZipFile:
            raise InputError(f"{url}: the download is not a zip archive (interrupted?); fetch it again") from None
        digest = sha256_file(archive)
        old = Path(tmp) / "previous"
        if dest.exists():
            os.replace(dest, old)
        os.replace(Path(tmp) / top.pop(), dest)
        shutil.rmtree(old, ignore_errors=True)
    # code at a branch: nothing to verify against; the archive's digest says which code ran
    return {"name": entry.name, "path": str(dest), "sha256": digest, "expected": None, "verified": None,
            "source": url}

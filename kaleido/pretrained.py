"""Pretrained models a config names (latent extractors, the T5 context encoder, tokenizers): a local directory, or
a Hugging Face Hub repository read from the local Hugging Face cache, where ``python -m kaleido.weights fetch``
puts it with ``huggingface_hub.snapshot_download``.

A value is a local path when it starts with ``/``, ``./``, ``../`` or ``~``, or names an existing path; any other
value is a hub repository: ``name``, ``org/name`` or ``org/name@revision`` (a branch, tag or commit; default
``main``), e.g. ``google/owlv2-base-patch16-ensemble`` or ``google/flan-t5-xl@<commit>``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metrics.errors import InputError
from metrics.store import sha256_file

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
FETCH_HINT = "fetch it on a host with internet: `python -m kaleido.weights fetch --config C`"


@dataclass(frozen=True)
class HubModel:
    """A Hugging Face Hub model repository at a revision (None = the default branch)."""

    repo_id: str
    revision: str | None = None

    @property
    def name(self) -> str:
        """A file-name-safe identity: ``hf--<org>--<name>[--<revision>]``."""
        return "--".join(["hf", *self.repo_id.split("/"), *([self.revision] if self.revision else [])])

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def is_local(value: str) -> bool:
    """Whether a config value names a local path rather than a hub repository."""
    return value.startswith(("/", "./", "../", "~")) or Path(value).expanduser().exists()


def parse(value: str, where: str = "pretrained model") -> HubModel | Path:
    """A local path, or the :class:`HubModel` ``value`` names; an :class:`InputError` for anything else."""
    if is_local(value):
        return Path(value).expanduser()
    repo_id, _, revision = value.partition("@")
    if not _REPO_ID.match(repo_id) or "@" in revision or (value.endswith("@")):
        raise InputError(f"{where}: {value!r} is neither a local path (absolute, or starting with ./ or ~) nor a "
                         "Hugging Face repository (name, org/name or org/name@revision)")
    return HubModel(repo_id, revision or None)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve(value: str, where: str = "pretrained model") -> str:
    """The local directory (or file) to load ``value`` from: the path itself, or the hub repository's snapshot
    in the local cache (nothing is downloaded); a missing snapshot is an :class:`InputError` saying how to fetch."""
    ref = parse(value, where)
    if isinstance(ref, Path):
        return str(ref)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(ref.repo_id, revision=ref.revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as err:
        raise InputError(f"{where}: {ref} is not in the Hugging Face cache {hf_cache_dir()} ({type(err).__name__}); "
                         f"{FETCH_HINT}, or point HF_HOME at a cache that holds it, or give a local directory "
                         "written by save_pretrained") from None


def git_blob_sha1(path: str | os.PathLike[str]) -> str:
    """The git object id of a file's content (what the hub uses as the ETag of a file not stored in LFS)."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def verify_snapshot(snapshot: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file of a hub cache snapshot against the digest the hub published for it.

    The cache stores each file as ``blobs/<etag>``: the SHA-256 of the content for LFS files (the weights), the git
    blob id for the others. Returns {"files": n, "bytes": total, "verified": bool, "mismatched": [relative paths]};
    a file outside that layout (a local ``save_pretrained`` directory) makes ``verified`` False.
    """
    snapshot = Path(snapshot)
    files, total, mismatched, unverifiable = 0, 0, [], []
    for path in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        blob = path.resolve()
        files, total = files + 1, total + blob.stat().st_size
        etag, relative = blob.name, str(path.relative_to(snapshot))
        if _SHA256.match(etag):
            ok = sha256_file(blob) == etag
        elif _GIT_SHA1.match(etag):
            ok = git_blob_sha1(blob) == etag
        else:
            unverifiable.append(relative)
            continue
        if not ok:
            mismatched.append(relative)
    return {"files": files, "bytes": total, "verified": files > 0 and not mismatched and not unverifiable,
            "mismatched": mismatched, "unverifiable": unverifiable}

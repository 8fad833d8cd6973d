"""The loopback hub stands in for the internet: the real torch.hub and huggingface_hub download from it."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch.hub
from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from loopback_hub import LoopbackServer, git_blob_sha1

WEIGHTS = bytes(range(256)) * 16  # 4 KiB: LFS
CONFIG = b'{"hidden": 8}'  # small json: plain git blob
REPO = "org/name"


@pytest.fixture(autouse=True)
def _hermetic_hub(monkeypatch):
    """huggingface_hub reads these variables once, at import (maybe in another test, with HF_HUB_OFFLINE set).

    Telemetry off: else the first request of the process also fetches {constants.ENDPOINT}/api/agent-harnesses,
    i.e. huggingface.co unless ENDPOINT is patched (``endpoint=`` does not reach it).
    """
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)


@pytest.fixture()
def server():
    with LoopbackServer() as server:
        yield server


def _fetch(url: str, dst: Path) -> None:
    torch.hub.download_url_to_file(url, str(dst), hash_prefix=hashlib.sha256(WEIGHTS).hexdigest()[:12],
                                   progress=False)


def test_torch_hub_download_and_faults(server, tmp_path):
    url = server.add_file("x/w.pth", WEIGHTS)
    assert url == f"{server.url}/x/w.pth"
    dst = tmp_path / "w.pth"
    _fetch(url, dst)
    assert dst.read_bytes() == WEIGHTS
    dst.unlink()

    server.fault("x/w.pth", "corrupt")
    with pytest.raises(RuntimeError, match="invalid hash value"):
        _fetch(url, dst)
    assert list(tmp_path.iterdir()) == []  # neither dst nor a leftover .partial

    server.fault("x/w.pth", "truncate", at=100)
    with pytest.raises(RuntimeError, match="invalid hash value"):
        _fetch(url, dst)
    assert list(tmp_path.iterdir()) == []
    # urllib's read(n) returns b"" at a premature EOF instead of raising IncompleteRead: without hash_prefix,
    # torch.hub keeps the truncated body as if it were complete.
    torch.hub.download_url_to_file(url, str(dst), progress=False)
    assert dst.read_bytes() == WEIGHTS[:100]
    dst.unlink()

    server.fault("/x/w.pth", "clear")
    _fetch(url, dst)
    assert dst.read_bytes() == WEIGHTS
    assert server.count("GET", "/x/w.pth") == 5
    assert server.count("HEAD") == 0


def test_snapshot_download_cache_layout_and_reuse(server, tmp_path):
    sha = server.add_hf_repo(REPO, {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    assert len(sha) == 40 and sha == server.add_hf_repo(REPO, {"model.safetensors": WEIGHTS, "config.json": CONFIG})

    snapshot = Path(snapshot_download(REPO, cache_dir=tmp_path, endpoint=server.url))
    storage = tmp_path / "models--org--name"
    assert snapshot == storage / "snapshots" / sha
    assert (storage / "refs" / "main").read_text() == sha
    assert (snapshot / "config.json").read_bytes() == CONFIG
    assert (snapshot / "model.safetensors").read_bytes() == WEIGHTS
    assert (snapshot / "config.json").resolve() == storage / "blobs" / git_blob_sha1(CONFIG)
    assert (snapshot / "model.safetensors").resolve() == storage / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()
    assert len(server.requests) == 6 and server.count("HEAD", "/resolve/") == 2  # file order varies: 8 threads
    assert server.count("GET", f"/api/models/{REPO}/revision/main") == 1
    assert server.count("GET", f"/api/models/{REPO}/tree/{sha}") == 1
    assert server.count("GET", "/resolve/") == 2

    # Cached: "main" costs one repo-info call, the pinned sha none; no file is fetched again.
    before = len(server.requests)
    assert Path(snapshot_download(REPO, cache_dir=tmp_path, endpoint=server.url)) == snapshot
    assert Path(snapshot_download(REPO, revision=sha, cache_dir=tmp_path, endpoint=server.url)) == snapshot
    assert server.requests[before:] == [("GET", f"/api/models/{REPO}/revision/main")]

    # Pinned sha into an empty cache: no repo-info call, files fetched at that commit.
    pinned = Path(snapshot_download(REPO, revision=sha, cache_dir=tmp_path / "fresh", endpoint=server.url))
    assert (pinned / "model.safetensors").read_bytes() == WEIGHTS
    assert server.count("GET", "/revision/") == 2
    assert server.count("GET", f"/resolve/{sha}/model.safetensors") == 2


def test_patched_constants_reach_the_server_without_endpoint(server, tmp_path, monkeypatch):
    server.add_hf_repo(REPO, {"config.json": CONFIG})
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    assert Path(snapshot_download(REPO, cache_dir=tmp_path)).joinpath("config.json").read_bytes() == CONFIG
    assert Path(hf_hub_download(REPO, "config.json", cache_dir=tmp_path / "b")).read_bytes() == CONFIG


def test_hf_fault_corrupts_bytes_but_not_headers(server, tmp_path):
    """huggingface_hub does not hash plain-HTTP downloads: a corrupt body lands under its claimed sha256."""
    server.add_hf_repo(REPO, {"model.safetensors": WEIGHTS})
    server.fault(f"{REPO}/model.safetensors", "corrupt")
    path = Path(hf_hub_download(REPO, "model.safetensors", cache_dir=tmp_path, endpoint=server.url))
    assert path.resolve().name == hashlib.sha256(WEIGHTS).hexdigest()
    assert path.read_bytes() == bytes(b ^ 0xFF for b in WEIGHTS)


def test_unknowns_raise_hub_errors(server, tmp_path):
    server.add_hf_repo(REPO, {"config.json": CONFIG})
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("org/missing", cache_dir=tmp_path, endpoint=server.url)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="dev", cache_dir=tmp_path, endpoint=server.url)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.bin", cache_dir=tmp_path, endpoint=server.url)
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(server.url + "/nowhere", timeout=5)
    assert error.value.code == 404 and "error" in json.loads(error.value.read())


def test_closes_and_watchdog_stops_it(tmp_path):
    server = LoopbackServer(watchdog_s=0.2)
    server.add_file("a", b"x")
    server._thread.join(timeout=3)
    assert not server._thread.is_alive()
    with pytest.raises(OSError):
        torch.hub.download_url_to_file(server.url + "/a", str(tmp_path / "a"), progress=False)
    assert server.url.startswith("http://127.0.0.1:")

"""A loopback HTTP server on 127.0.0.1 that stands in for the internet in tests of weights fetching.

It serves plain files (as ``torch.hub.download_url_to_file`` fetches them) and the part of the Hugging Face Hub
that ``huggingface_hub`` 2.4.0's ``snapshot_download`` / ``hf_hub_download`` use over plain HTTP (no ``X-Xet-*``
headers, so Xet is never used). A cold ``snapshot_download(repo_id)`` makes, in order:

* ``GET /api/models/{repo_id}/revision/main`` (``repo_info``; skipped when the revision is a 40-hex sha);
* ``GET /api/models/{repo_id}/tree/{sha}?recursive=true&expand=false`` (files only; cached on disk afterwards in
  ``models--org--name/trees/{sha}.json``, so a warm call makes only the ``repo_info`` call, a pinned one none);
* per file, ``HEAD`` then ``GET /{repo_id}/resolve/{sha}/{filename}``, in parallel threads. LFS files are answered
  with ``200`` directly: the real Hub redirects to a CDN, but 2.4.0 only needs ``X-Repo-Commit``, ``X-Linked-Etag``
  and ``X-Linked-Size`` on the answer it stops at (same-origin redirects are followed, so they would need them too).

Errors carry the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), so
huggingface_hub raises ``RepositoryNotFoundError`` / ``RevisionNotFoundError`` / ``RemoteEntryNotFoundError``.

Pointing huggingface_hub 2.4.0 at the server:

* pass ``endpoint=server.url`` to ``snapshot_download`` / ``hf_hub_download`` / ``HfApi`` (most reliable);
* for code that takes no endpoint, monkeypatch BOTH ``huggingface_hub.constants.ENDPOINT`` (read by each new
  ``HfApi``) and ``constants.HUGGINGFACE_CO_URL_TEMPLATE`` (file URLs are built from it and rewritten only for an
  explicit ``endpoint=``): patching ``ENDPOINT`` alone sends the file requests to huggingface.co;
* ``HF_ENDPOINT`` in ``os.environ`` is read once, at import: it works only for a subprocess started with it set.
  ``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_TELEMETRY`` are frozen at import the same way. Unless telemetry is off,
  the first request of a process also GETs ``{constants.ENDPOINT}/api/agent-harnesses`` (here: a 404, harmless).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

SOCKET_TIMEOUT_S = 5.0
WATCHDOG_S = 300.0
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
FAULT_MODES = ("corrupt", "truncate", "clear")
_API = re.compile(r"/api/models/(?P<repo>.+?)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+))?")
_RESOLVE = re.compile(r"/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob holding ``data`` (the ETag the Hub gives non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(data: bytes) -> bytes:
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
        hashlib.sha256(data).hexdigest().encode(), len(data))


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    fault_key: str | None = None  # the `fault` path of a served file; None for API answers and errors


def _json(status: int, obj: object, **headers: str) -> _Reply:
    return _Reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **headers})


def _not_found(message: str, code: str | None = None, **headers: str) -> _Reply:
    codes = {"X-Error-Code": code, "X-Error-Message": message} if code else {}
    return _json(404, {"error": message}, **codes, **headers)


@dataclass(frozen=True)
class _Repo:
    repo_id: str
    sha: str
    files: dict[str, bytes]
    lfs: frozenset[str]

    def info(self) -> dict:
        siblings = [{"rfilename": name} for name in sorted(self.files)]
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": self.sha, "private": False, "siblings": siblings}

    def tree(self) -> list[dict]:
        entries = []
        for name, data in sorted(self.files.items()):
            entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": name}
            if name in self.lfs:  # git holds a pointer file; its "lfs" part describes the content
                pointer = _lfs_pointer(data)
                lfs = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
                entry |= {"oid": git_blob_sha1(pointer), "lfs": lfs}
            entries.append(entry)
        return entries

    def file_headers(self, name: str) -> dict[str, str]:
        data = self.files[name]
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": self.sha}
        if name in self.lfs:
            etag = f'"{hashlib.sha256(data).hexdigest()}"'
            return headers | {"ETag": etag, "X-Linked-Etag": etag, "X-Linked-Size": str(len(data))}
        return headers | {"ETag": f'"{git_blob_sha1(data)}"'}


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = SOCKET_TIMEOUT_S  # applied to every connection socket

    def do_HEAD(self) -> None:
        self._serve(with_body=False)

    def do_GET(self) -> None:
        self._serve(with_body=True)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _serve(self, with_body: bool) -> None:
        hub = self.server.hub
        hub._record(self.command, self.path)
        reply = hub._route(urlsplit(self.path).path)
        mode, at = hub._fault_for(reply.fault_key) if with_body else (None, 0)
        body = bytes(b ^ 0xFF for b in reply.body) if mode == "corrupt" else reply.body
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            try:
                self.wfile.write(body[:at] if mode == "truncate" else body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up; nothing to tell it
        self.close_connection = True  # one request per connection: a truncated body ends at the socket close


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: LoopbackServer


class LoopbackServer:
    """An HTTP server on 127.0.0.1 serving added files and Hub repos; use as ``with LoopbackServer() as server:``.

    It starts serving at construction and stops on ``close()`` / leaving the ``with`` block, or by itself after
    ``watchdog_s`` seconds.
    """

    def __init__(self, watchdog_s: float = WATCHDOG_S) -> None:
        self._lock = threading.Lock()
        self._log: list[tuple[str, str]] = []
        self._files: dict[str, bytes] = {}
        self._repos: dict[str, _Repo] = {}
        self._faults: dict[str, tuple[str, int]] = {}
        self._closed = False
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="loopback-hub", daemon=True)
        self._thread.start()
        self._watchdog = threading.Timer(min(watchdog_s, WATCHDOG_S), self.close)
        self._watchdog.daemon = True
        self._watchdog.start()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and release the port (idempotent; the watchdog calls it too)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._watchdog.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path with query) of every request served so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = None, contains: str = "") -> int:
        """How many requests had this method (any if None) and a path containing ``contains``."""
        return sum(1 for m, p in self.requests if method in (None, m) and contains in p)

    def add_file(self, path: str, data: bytes) -> str:
        """Serve ``data`` at GET/HEAD ``{url}/{path}``; return that URL."""
        path = path.strip("/")
        with self._lock:
            self._files[path] = bytes(data)
        return f"{self.url}/{path}"

    def add_hf_repo(self, repo_id: str, files: dict[str, bytes], *, lfs: set[str] | None = None) -> str:
        """Add a model repo with one commit, reachable as revision "main" or its sha; return the sha.

        ``lfs`` names the files served as LFS (default: those over 1 KiB or with a weights suffix).
        """
        files = {name: bytes(data) for name, data in files.items()}
        if lfs is None:
            lfs = {name for name, data in files.items() if len(data) > 1024 or name.endswith(LFS_SUFFIXES)}
        content = {"repo": repo_id, "files": {n: git_blob_sha1(d) for n, d in files.items()}, "lfs": sorted(lfs)}
        sha = hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()
        with self._lock:
            self._repos[repo_id] = _Repo(repo_id, sha, files, frozenset(lfs))
        return sha

    def fault(self, path: str, mode: str, *, at: int = 0) -> None:
        """Spoil the next GETs of ``path`` (a plain file's path, or ``"{repo_id}/{filename}"``) until "clear".

        "corrupt": same length and headers, every byte flipped; "truncate": the full Content-Length header, then
        only ``at`` bytes of the body, then the socket closes; "clear": serve normally again.
        """
        if mode not in FAULT_MODES:
            raise ValueError(f"fault mode must be one of {FAULT_MODES}, not {mode!r}")
        with self._lock:
            if mode == "clear":
                self._faults.pop(path.strip("/"), None)
            else:
                self._faults[path.strip("/")] = (mode, at)

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self._log.append((method, path))

    def _fault_for(self, key: str | None) -> tuple[str | None, int]:
        with self._lock:
            return self._faults.get(key or "", (None, 0))

    def _route(self, raw_path: str) -> _Reply:
        path = unquote(raw_path)
        if (data := self._files.get(path.strip("/"))) is not None:
            headers = {"Content-Type": "application/octet-stream", "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            return _Reply(200, data, headers, fault_key=path.strip("/"))
        if match := _API.fullmatch(raw_path):
            repo, error = self._lookup(unquote(match["repo"]), unquote(match["rev"] or "main"))
            if repo is None:
                return error
            return _json(200, repo.tree() if match["kind"] == "tree" else repo.info())
        if match := _RESOLVE.fullmatch(raw_path):
            repo, error = self._lookup(unquote(match["repo"]), unquote(match["rev"]))
            if repo is None:
                return error
            name = unquote(match["file"])
            if name not in repo.files:
                return _not_found(f"Entry {name} not found", "EntryNotFound", **{"X-Repo-Commit": repo.sha})
            return _Reply(200, repo.files[name], repo.file_headers(name), fault_key=f"{repo.repo_id}/{name}")
        return _not_found(f"{path} not found")

    def _lookup(self, repo_id: str, revision: str) -> tuple[_Repo, None] | tuple[None, _Reply]:
        repo = self._repos.get(repo_id)
        if repo is None:
            return None, _not_found(f"Repository {repo_id} not found", "RepoNotFound")
        if revision not in ("main", repo.sha):
            return None, _not_found(f"Revision {revision} not found in {repo_id}", "RevisionNotFound")
        return repo, None

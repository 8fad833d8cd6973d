"""What made an output: config hash, code version (git + source hash of the modules used), package versions.

:func:`source_hash` also serves Snakemake: each rule passes the hash of the project modules its CLI imports
as a ``params`` value, so editing a module reruns exactly the jobs whose code changed (Snakemake alone only
sees ``script:`` files, not the package modules they import).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from metrics import versions

#: Top-level packages whose source counts as "our code" for hashing.
PROJECT_PACKAGES = ("kaleido", "metrics")
#: Third-party packages whose versions are recorded with every output.
RECORDED_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "pandas", "snakemake", "mlflow", "matplotlib")


def config_hash(obj: Any) -> str:
    """Return a 16-hex-digit SHA-256 of ``obj``'s canonical JSON (key-sorted), stable across runs."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _module_file(name: str) -> Path | None:
    """Source file of project module ``name`` (found on disk, without importing anything), else None."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = _ROOT.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _imported_project_modules(name: str, path: Path) -> frozenset[str]:
    """Names of project modules imported (absolutely or relatively) by the module ``name`` at ``path`` (parsed once
    per process: the rules' entry points share most of their modules)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # "from pkg import name" may import a submodule or an attribute: try both.
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            if candidate.split(".")[0] not in PROJECT_PACKAGES:
                continue
            parts = candidate.split(".")
            # importing a.b.c executes a/__init__.py and a/b/__init__.py too
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                if _module_file(prefix) is not None:
                    found.add(prefix)
    return frozenset(found)


@functools.cache
def project_modules(*entry_points: str) -> tuple[tuple[str, Path], ...]:
    """All project modules transitively imported by ``entry_points`` (module names), sorted by name."""
    seen: dict[str, Path] = {}
    stack = list(entry_points)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            raise ModuleNotFoundError(f"cannot hash module {name!r}: not found as a .py file")
        seen[name] = path
        if name in entry_points and path.name == "__init__.py" and (path.parent / "__main__.py").is_file():
            stack.append(f"{name}.__main__")  # `python -m package` runs __main__.py
        stack.extend(_imported_project_modules(name, path) - seen.keys())
    return tuple(sorted(seen.items()))


def source_hash(*entry_points: str) -> str:
    """SHA-256 (16 hex digits) over the source of every project module that ``entry_points`` import."""
    digest = hashlib.sha256()
    for name, path in project_modules(*entry_points):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def git_state() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding this package."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


@functools.cache
def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`RECORDED_PACKAGES` (None where not installed) and Python."""
    return versions.package_versions(RECORDED_PACKAGES)


def provenance(entry_point: str, config: Any) -> dict[str, Any]:
    """The record every output carries: config + its hash, code hash of ``entry_point``, git state, packages.

    Deliberately has no timestamp or hostname, so equal inputs give byte-equal outputs.
    """
    return {
        "config": config,
        "config_hash": config_hash(config),
        "entry_point": entry_point,
        "code_hash": source_hash(entry_point),
        "git": git_state(),
        "packages": package_versions(),
    }

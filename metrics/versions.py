"""Installed package versions, recorded next to every output (a leaf module: the harness records more names)."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """``{"python": version, name: installed version or None, ...}`` for each distribution in ``names``."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions

"""A validated name -> object registry (a leaf module: feature networks and metrics here; methods, data sets, latent
extractors, models, samplers and guidance schemes in the harness), and the plugin hook that fills registries from
modules outside the packages.

A *plugin* is any importable module that registers entries when imported (``@FEATURE_NETS.register("mine")``...).
:func:`load_plugins` imports the modules named in the environment variable ``KALEIDO_PLUGINS`` (comma-separated) and
those passed to it (a harness config's ``plugins:`` list, ``python -m metrics --plugin``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; refuses duplicates and answers unknown names with the accepted ones."""

    #: every registry made, so :func:`plugin_kinds` can tell which kinds a plugin adds to
    instances: list[Registry] = []

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str | None] = {}  # name -> the module outside the packages that registered it
        Registry.instances.append(self)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its target under ``name``."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            self._origins[name] = _registering_module()
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; accepted: {sorted(self._entries)}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """The names in registration order (built-in entries first, then those of plugins)."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))


#: environment variable naming plugin modules, comma-separated
PLUGINS_ENV = "KALEIDO_PLUGINS"


def plugin_names(extra: Iterable[str] = ()) -> list[str]:
    """The plugin modules of ``$KALEIDO_PLUGINS`` followed by ``extra``, without repeats, in order."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()] + list(extra)
    return list(dict.fromkeys(names))


def resolve(ref: Callable | str) -> Callable:
    """``ref`` itself, or the function a ``"module:function"`` reference names (imported now): registry entries
    name their code by reference where the registry is read without it (configs are checked without torch)."""
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _registering_module() -> str | None:
    """The module whose code registers an entry: the innermost caller outside ``kaleido`` and ``metrics`` (a plugin,
    however and whenever it was imported), or None when a module of the packages registers it at import (built in).
    Functions of the packages on the way (``register_metric``, a registry's checks) are passed through."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] not in ("kaleido", "metrics"):
            return module
        if frame.f_code.co_name == "<module>":
            return None
        frame = frame.f_back
    return None


def plugin_kinds(name: str) -> frozenset[str]:
    """The kinds of registry (``Registry.kind``) module ``name`` registered entries in (empty: none)."""
    return frozenset(registry.kind for registry in Registry.instances if name in registry._origins.values())


def load_plugins(extra: Iterable[str] = ()) -> list[str]:
    """Import every plugin module (:func:`plugin_names`); return their names. Importing twice is a no-op.

    A module that cannot be imported stops with an ``ImportError`` naming it and where plugins are looked up
    (``sys.path``: the working directory for ``python -m``, and ``PYTHONPATH``).
    """
    names = plugin_names(extra)
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                raise ImportError(f"plugin module {name!r} (from ${PLUGINS_ENV} or the config's plugins) was not "
                                  f"found; put it in the working directory or on PYTHONPATH") from None
            raise
    return names

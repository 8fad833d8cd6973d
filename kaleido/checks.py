"""Config-block checks shared by the data sets and latent extractors: each raises :class:`ConfigError` naming the
key path, the bad value and what is accepted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaleido.errors import ConfigError


def check_keys(spec: Mapping[str, Any], accepted: set[str], where: str, required: set[str] = frozenset()) -> None:
    """``spec`` may only use ``accepted`` keys and must have every ``required`` one."""
    unknown = set(spec) - accepted
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; accepted: {sorted(accepted)}")
    for key in sorted(required - set(spec)):
        raise ConfigError(f"{where}.{key}: missing (required keys: {sorted(required)})")


def check_int(spec: Mapping[str, Any], key: str, where: str, lo: int = 1, hi: int | None = None) -> None:
    """``spec[key]``, when present, is an integer in ``[lo, hi]``."""
    if key not in spec:
        return
    value = spec[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        accepted = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}"
        raise ConfigError(f"{where}.{key}: {value!r} is not {accepted}")


def check_number(spec: Mapping[str, Any], key: str, where: str, lo: float = 0.0, hi: float | None = None) -> None:
    """``spec[key]``, when present, is a number in ``(lo, hi]``."""
    if key not in spec:
        return
    value = spec[key]
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not value > lo
            or (hi is not None and value > hi)):
        accepted = f"a number in ({lo}, {hi}]" if hi is not None else f"a number > {lo}"
        raise ConfigError(f"{where}.{key}: {value!r} is not {accepted}")


def check_str(spec: Mapping[str, Any], key: str, where: str, what: str = "a non-empty string") -> None:
    """``spec[key]``, when present, is a non-empty string."""
    if key in spec and (not isinstance(spec[key], str) or not spec[key]):
        raise ConfigError(f"{where}.{key}: {spec[key]!r} is not {what}")


def check_choice(spec: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...]) -> None:
    """``spec[key]``, when present, is one of ``choices``."""
    if key in spec and spec[key] not in choices:
        raise ConfigError(f"{where}.{key}: {spec[key]!r}; accepted: {list(choices)}")


def check_subset(spec: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...] | list[str]) -> None:
    """``spec[key]``, when present, is a non-empty list of distinct names from ``choices``."""
    if key not in spec:
        return
    value = spec[key]
    if (not isinstance(value, list) or not value or len(set(map(str, value))) != len(value)
            or not all(v in choices for v in value)):
        raise ConfigError(f"{where}.{key}: {value!r}; accepted: a non-empty list of distinct names from "
                          f"{list(choices)}")

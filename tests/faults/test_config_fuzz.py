"""Malformed configs (fuzzed with hypothesis): every one is either valid or a ConfigError naming the bad key.

A mutation replaces one value anywhere in the default config with a value of a random type, deletes a key, or
adds an unknown key. ``kaleido.config.validate`` must never raise anything but ConfigError (no TypeError or
KeyError from a semantic check meeting an unexpected type), and its message must point at the mutated key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaleido import config
from kaleido.errors import ConfigError

DEFAULT = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path (tuples of dict keys / list indices) into ``node``."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


PATHS = _paths(DEFAULT)
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                   st.text(max_size=8), st.lists(st.integers(-3, 3), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _parent(cfg: dict, path: tuple) -> Any:
    node = cfg
    for part in path[:-1]:
        node = node[part]
    return node


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), action=st.sampled_from(["replace", "delete", "add"]), value=VALUES,
       new_key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
def test_mutated_config_is_valid_or_a_config_error_naming_the_key(path, action, value, new_key):
    cfg = copy.deepcopy(DEFAULT)
    parent, key = _parent(cfg, path), path[-1]
    if action == "replace":
        parent[key] = value
    elif action == "delete":
        del parent[key]  # list items too: a shorter list
    else:
        target = parent[key]
        if not isinstance(target, dict) or new_key in target:
            return
        target[new_key] = value
    try:
        config.validate(cfg)
    except ConfigError as err:
        message = str(err)
        named = [str(p) for p in path if not isinstance(p, int)]
        # the message names the mutated key, its parent, the added key, or (for cross-key checks) a key path
        assert any(name in message for name in [*named, new_key]), message

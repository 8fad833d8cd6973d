"""Static guards over the project's code: nothing deserialises or executes untrusted input.

Every ``torch.load`` passes ``weights_only=True``, every ``np.load`` keeps ``allow_pickle`` off, YAML is read with
``safe_load``, ``torch.hub.load`` is only called with ``source="local"``, and there is no ``eval``/``exec``/
``pickle.load``. The scan parses the code (AST), so comments and strings do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kaleido", "metrics")


def _calls() -> list[tuple[str, int, str, ast.Call]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    found.append((str(path.relative_to(ROOT)), node.lineno, ast.unparse(node.func), node))
    return found


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value == value


CALLS = _calls()


def test_the_scan_sees_the_loaders():
    names = {func for _, _, func, _ in CALLS}
    assert {"torch.load", "np.load", "yaml.safe_load"} <= names, "the scan no longer finds the known loaders"


def _allow_pickle_on(call: ast.Call) -> bool:
    value = _keyword(call, "allow_pickle")
    return value is not None and not _is_const(value, False)


#: rule -> predicate(function name, call) that is True for an unsafe call
UNSAFE = {
    "eval_exec": lambda func, call: func in ("eval", "exec", "compile", "__import__"),
    "torch_load": lambda func, call: func.endswith("torch.load") and not _is_const(_keyword(call, "weights_only"),
                                                                                   True),
    "np_load": lambda func, call: func.endswith("np.load") and _allow_pickle_on(call),
    "yaml": lambda func, call: func in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"),
    "pickle": lambda func, call: func.split(".")[0] in ("pickle", "dill") and func.endswith(("load", "loads")),
    "hub": lambda func, call: func.endswith("hub.load") and not _is_const(_keyword(call, "source"), "local"),
}


@pytest.mark.parametrize("rule", sorted(UNSAFE))
def test_no_unsafe_deserialisation_or_execution(rule):
    bad = [(where, line, func) for where, line, func, call in CALLS if UNSAFE[rule](func, call)]
    assert not bad, f"unsafe calls ({rule}): {bad}"

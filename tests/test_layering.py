"""The import layering of design.md, checked on the source: no module imports from a layer above its own, no stage
imports another stage, and ``metrics`` runs copied alone with ``kaleido`` unimportable."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

#: From the ground up. A module belongs to the first layer one of whose prefixes names it (longest prefix wins).
LEAF, METRICS, BLOCKS, PLUMBING, STAGES = range(5)
LAYER_OF_PREFIX: dict[str, int] = {
    "metrics.errors": LEAF, "metrics.io": LEAF, "metrics.registry": LEAF, "metrics.store": LEAF,
    "metrics.versions": LEAF, "metrics._validate": LEAF,
    "kaleido.errors": LEAF, "kaleido.seeding": LEAF, "kaleido.rng": LEAF, "kaleido.provenance": LEAF,
    "kaleido.checks": LEAF, "kaleido.dryrun": LEAF, "kaleido.malloc": LEAF,
    "metrics": METRICS,
    "kaleido.diffusion": BLOCKS, "kaleido.latents": BLOCKS, "kaleido.models": BLOCKS, "kaleido.data": BLOCKS,
    "kaleido.methods": BLOCKS, "kaleido.guidance": BLOCKS, "kaleido.checkpoint": BLOCKS,
    "kaleido.preemption": BLOCKS, "kaleido.distributed": BLOCKS, "kaleido.pretrained": BLOCKS,
    "kaleido.config": PLUMBING, "kaleido.cli": PLUMBING, "kaleido.generation": PLUMBING, "kaleido.training": PLUMBING,
    "kaleido.train": STAGES, "kaleido.sample": STAGES, "kaleido.edit": STAGES, "kaleido.evaluate": STAGES,
    "kaleido.features": STAGES, "kaleido.report": STAGES, "kaleido.weights": STAGES, "kaleido.data.__main__": STAGES,
    "kaleido.latents.__main__": STAGES,
}
LAYER_NAMES = ("leaf helpers", "metrics", "building blocks", "config/CLI plumbing", "stages")


def _layer(module: str) -> tuple[int, str]:
    """(layer, the prefix that placed it); a stage's prefix is its identity for the stage-to-stage rule."""
    if module == "kaleido":  # the package's own __init__ (imports nothing); not a prefix for the rest
        return LEAF, module
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        if prefix in LAYER_OF_PREFIX:
            return LAYER_OF_PREFIX[prefix], prefix
    raise AssertionError(f"module {module} has no layer: add it to LAYER_OF_PREFIX")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_imports(path: Path, module: str) -> set[str]:
    """Absolute names of the project modules (or their attributes) ``module`` imports, anywhere in its body."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("kaleido", "metrics")}


def upward_imports() -> list[str]:
    """Every import that runs against the layering, as 'importer (layer) -> imported (layer)'."""
    bad = []
    for path in sorted([*REPO.glob("kaleido/**/*.py"), *REPO.glob("metrics/**/*.py")]):
        module = _module_name(path)
        own, own_prefix = _layer(module)
        for name in sorted(_project_imports(path, module)):
            if module.split(".")[0] == "metrics" and name.split(".")[0] == "kaleido":
                bad.append(f"{module} ({LAYER_NAMES[own]}) -> {name} (the harness)")
                continue
            other, other_prefix = _layer(name)
            if other > own or (own == other == STAGES and own_prefix != other_prefix):
                bad.append(f"{module} ({LAYER_NAMES[own]}) -> {name} ({LAYER_NAMES[other]})")
    return bad


def test_no_module_imports_from_a_layer_above_it() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch) -> None:
    """The walk itself: a metrics module importing the harness, and a stage importing a stage, are reported."""
    fake = tmp_path / "metrics"
    fake.mkdir()
    (fake / "leaky.py").write_text("def f():\n    from kaleido.io import atomic_path\n")
    (tmp_path / "kaleido").mkdir()
    (tmp_path / "kaleido" / "edit.py").write_text("from kaleido.sample import generate\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert upward_imports() == ["kaleido.edit (stages) -> kaleido.sample.generate (stages)",
                                "metrics.leaky (metrics) -> kaleido.io.atomic_path (the harness)"]


BLOCK_KALEIDO = "import sys; sys.modules['kaleido'] = None; "


@pytest.fixture(scope="module")
def metrics_alone(tmp_path_factory) -> Path:
    """A folder holding a copy of ``metrics/`` and nothing else of the repository."""
    root = tmp_path_factory.mktemp("metrics_alone")
    shutil.copytree(REPO / "metrics", root / "metrics", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _run_alone(root: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_KALEIDO + code], cwd=root, capture_output=True, text=True)


def test_every_metrics_module_imports_without_kaleido(metrics_alone) -> None:
    names = sorted(_module_name(p).replace(".__main__", "") for p in REPO.glob("metrics/**/*.py"))
    code = ("import importlib; mods = " + repr(names) + "\nfor m in mods: importlib.import_module(m)\n"
            "import metrics; assert metrics.__file__.startswith(" + repr(str(metrics_alone)) + "), metrics.__file__")
    out = _run_alone(metrics_alone, code)
    assert out.returncode == 0, out.stderr


def test_metrics_cli_runs_without_kaleido(metrics_alone) -> None:
    rng = np.random.default_rng(0)
    d = metrics_alone
    np.save(d / "real.npy", rng.normal(size=(200, 4)))
    np.save(d / "fake.npy", rng.normal(size=(150, 4)) + 0.5)
    np.savez(d / "items.npz", x=rng.normal(size=(30, 2)).astype(np.float32), labels=np.arange(30) % 3)
    images = rng.integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8)
    np.savez(d / "imgs.npz", x=images, labels=np.arange(12) % 2)
    run = "import runpy, sys; sys.argv = ['metrics'] + sys.argv[1:]; runpy.run_module('metrics', run_name='__main__')"
    for argv in (["from-features", "--real", "real.npy", "--fake", "fake.npy", "--json"],
                 ["extract", "--net", "identity", "--out", "feats.npz", "items.npz"],
                 ["from-images", "--real", "imgs.npz", "--fake", "imgs.npz", "--net", "identity",
                  "--metrics", "fid,vendi,mss", "--json"]):
        out = subprocess.run([sys.executable, "-c", BLOCK_KALEIDO + run, *argv], cwd=d, capture_output=True,
                             text=True)
        assert out.returncode == 0, (argv, out.stderr)
    with np.load(d / "feats.npz") as feats:
        np.testing.assert_array_equal(feats["features"], np.load(d / "items.npz")["x"])


def test_loading_and_slicing_every_shipped_config_does_not_import_torch() -> None:
    """Config validation runs in every stage; the stages that build no network (data, latents offline, features of
    the identity net, report) must not pay torch's import (~1.4 s and ~470 MiB of RSS) for it."""
    code = ("import sys\nfrom pathlib import Path\nfrom kaleido import config\n"
            "for path in sorted(Path('config').glob('*.yaml')):\n"
            "    cfg = config.load(path)\n"
            "    for name in cfg['experiments']:\n"
            "        config.stage_spec(cfg, name, 'data')\n"
            "assert 'torch' not in sys.modules, 'config loading imported torch'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

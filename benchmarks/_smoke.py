"""``--smoke`` for the benchmark scripts: the same code paths at tiny sizes on the CPU, in seconds.

A benchmark nothing runs rots. Every script in ``benchmarks/`` takes ``--smoke`` (``tests/test_benchmarks_smoke.py``
runs each one that way): its measurement and printing run as in the real run, on sizes set in one dict per script,
which replace the parser's defaults (options given on the command line still win). The first line printed says that
the numbers are not measurements; anything the smoke run leaves out is named in a line of its own (:func:`skip`).
Torch computes on one thread per process (``OMP_NUM_THREADS``, inherited by the stages a script starts): on a
loaded machine, torch's default of one thread per core spends its time waiting for the others (an 8-second smoke
run took 73 s beside a test run on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
FLAG = "--smoke"
BANNER = "smoke run: tiny sizes on CPU, numbers are not measurements"


def requested(argv: Sequence[str] | None = None) -> bool:
    """Whether ``--smoke`` is on the command line, known before parsing (arguments a smoke run makes up itself, such
    as a scratch directory, are required only without it)."""
    return FLAG in (sys.argv[1:] if argv is None else argv)


def parse_args(parser: argparse.ArgumentParser, sizes: Mapping[str, Any],
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser``'s arguments with ``--smoke`` added; under it ``sizes`` (dest -> value) are the defaults and
    :data:`BANNER` is printed first."""
    parser.add_argument(FLAG, action="store_true",
                        help="tiny sizes on the CPU, seconds: checks that the code paths run (numbers are not "
                             "measurements)")
    if requested(argv):
        unknown = set(sizes) - {action.dest for action in parser._actions}
        if unknown:
            raise ValueError(f"smoke sizes for arguments the parser lacks: {sorted(unknown)}")
        parser.set_defaults(**sizes)
    args = parser.parse_args(argv)
    if args.smoke:
        print(BANNER, flush=True)
        threads = int(os.environ.setdefault("OMP_NUM_THREADS", "1"))
        if "torch" in sys.modules:  # imported before the variable was set
            sys.modules["torch"].set_num_threads(threads)
    return args


def skip(what: str, why: str) -> None:
    """Say what a smoke run leaves out of the real run, and why."""
    print(f"smoke run skips {what}: {why}", flush=True)


@contextlib.contextmanager
def scratch(keep: Path | None = None, prefix: str = "kaleido_smoke_") -> Iterator[Path]:
    """``keep`` when given (left in place), else a new temporary directory, removed afterwards; after an error it is
    kept, and said so, for the logs of the stages that failed."""
    if keep is not None:
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    except BaseException:
        print(f"failed: its scratch directory {path} is kept", file=sys.stderr, flush=True)
        raise
    shutil.rmtree(path, ignore_errors=True)


def _dag_helpers() -> ModuleType:
    """``tests/dag_helpers.py`` (the tests' config shrinkers), imported on first use."""
    if str(REPO / "tests") not in sys.path:
        sys.path.insert(0, str(REPO / "tests"))
    import dag_helpers

    return dag_helpers


def toy_config(root: Path | None = None) -> dict[str, Any]:
    """``config/config.yaml`` with its toy experiment at seconds-scale sizes: the tests' ``tiny_experiment``, then
    MDM and Kaleido only (a model without and one with a latent), w = 8 only (the report's weight), one shard of 64
    samples, 20 training steps, 5 sampler steps. With ``root``, results and reports go under it."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = _dag_helpers().tiny_experiment(cfg, methods=["mdm", "kaleido"], guidance=[8], num_samples=64,
                                         shard_size=64)
    exp = cfg["experiments"]["toy2d"]
    exp["data"]["num_train"] = 256
    exp["train"].update(steps=20, batch_size=64, warmup_steps=0, checkpoint_every=10)
    exp["sampler"]["steps"] = 5
    if root is not None:
        cfg.update(results_dir=str(root / "results"), reports_dir=str(root / "reports"))
    return cfg


def tiny_shapes(cfg: dict[str, Any]) -> dict[str, Any]:
    """``config/shapes.yaml`` (as ``cfg``) shrunk by the tests' ``tiny_shapes`` (same stages and models)."""
    return _dag_helpers().tiny_shapes(cfg)


def write_yaml(path: Path, cfg: Mapping[str, Any]) -> Path:
    """Write ``cfg`` to ``path`` (its folder made) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
    return path

"""Shared CLI plumbing: the common arguments every stage takes and user-facing error reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kaleido import config as config_mod
from kaleido.errors import ConfigError
from kaleido.malloc import keep_freed_memory
from metrics.errors import InputError


def _prog() -> str | None:
    """``python -m kaleido.<stage>`` when run as a module (argparse would show the file name, e.g. ``sample.py``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return None if spec is None else f"python -m {spec.name.removesuffix('.__main__')}"


def stage_parser(description: str) -> argparse.ArgumentParser:
    """``--config FILE --experiment NAME --out PATH [--threads N]``, the arguments every stage shares."""
    parser = argparse.ArgumentParser(prog=_prog(), description=description)
    parser.add_argument("--config", required=True, type=Path, help="config YAML (validated against the schema)")
    parser.add_argument("--experiment", required=True, help="experiment name under `experiments:`")
    parser.add_argument("--out", required=True, type=Path, help="output file (written atomically)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser


def load_stage_config(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(validated config, the experiment's block); also applies ``--threads``."""
    if args.threads:
        import torch  # only stages that compute with torch pass --threads

        torch.set_num_threads(args.threads)
    cfg = config_mod.load(args.config)
    config_mod.check_name("experiment", args.experiment)
    return cfg, config_mod.experiment(cfg, args.experiment)


def run_cli(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run ``main``; user errors (bad config, bad input file) print one clear line and exit 2, no traceback. The
    process first gets malloc thresholds that suit its tensors (:func:`kaleido.malloc.keep_freed_memory`)."""
    keep_freed_memory()
    try:
        main(argv)
    except (ConfigError, InputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyError as err:  # registry lookups: "unknown method 'x'; accepted: [...]"
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # disk full, read-only or unreachable file system: one line, not a traceback
        print(f"error: {err.strerror or err}", file=sys.stderr)
        sys.exit(1)

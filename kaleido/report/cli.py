"""``python -m kaleido.report``: metric JSON files -> table1, figures, MLflow runs.

Usage::

    python -m kaleido.report --metrics results/*/metrics/*/*/w*.json \\
        [--extra-json results/*/latents/*/quality.json] --out-dir reports \\
        [--tracking-uri sqlite:///results/mlflow.db] [--toy-guidance 1 5 8 25] [--toy-max-points 3000]

Writes (atomically) ``{out}/table1.csv``, ``{out}/table1.md``,
``{out}/figures/fid_recall_vs_guidance_{experiment}.png/.pdf``, ``{out}/figures/toy_modes.png/.pdf`` (toy data
only) and ``{out}/mlflow_runs.json`` (run key -> MLflow run id), after syncing one MLflow run per input.
Inputs are all validated before anything is written; exit status 2 on bad inputs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kaleido.io import write_json_atomic, write_text_atomic
from kaleido.report.collect import ReportInputError, load_extra_records, load_metric_records
from kaleido.report.samples import check_toy_samples

log = logging.getLogger("kaleido.report")

DEFAULT_TOY_GUIDANCE: tuple[float, ...] = (1.0, 5.0, 8.0, 25.0)
DEFAULT_TOY_MAX_POINTS = 3000


@dataclass(frozen=True)
class ReportOutputs:
    """Paths written by :func:`run_report` and the MLflow run id per run key."""

    table_csv: Path
    table_md: Path
    figures: tuple[Path, ...]
    runs_json: Path
    run_ids: dict[str, str]


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    from kaleido.report.tracking import DEFAULT_TRACKING_URI

    parser = argparse.ArgumentParser(prog="python -m kaleido.report",
                                     description="Metric JSON files -> table1.csv/.md, figures, one MLflow run per "
                                                 "(experiment, method, latent, guidance) and mlflow_runs.json.")
    parser.add_argument("--metrics", nargs="+", required=True, metavar="JSON",
                        help="metric JSON files, one per (experiment, method, latent, guidance)")
    parser.add_argument("--extra-json", nargs="*", default=[], metavar="JSON",
                        help="extra per-experiment JSON files (e.g. latent recovery), logged to MLflow only")
    parser.add_argument("--out-dir", type=Path, default=Path("reports"),
                        help="folder of table1.*, figures/ and mlflow_runs.json (default: reports)")
    parser.add_argument("--tracking-uri", default=None,
                        help=f"MLflow store (default: $MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING_URI})")
    parser.add_argument("--artifact-root", type=Path, default=None,
                        help="artifact folder of newly created MLflow experiments (default: <sqlite db dir>/"
                             "mlartifacts; server default for other stores)")
    parser.add_argument("--toy-guidance", nargs="+", type=float, default=list(DEFAULT_TOY_GUIDANCE),
                        metavar="W",
                        help="guidance weights shown as columns of toy_modes, where sampled (default: 1 5 8 25)")
    parser.add_argument("--toy-max-points", type=_positive_int, default=DEFAULT_TOY_MAX_POINTS,
                        help="samples per toy scatter panel: the first points of the first shards "
                             f"(default: {DEFAULT_TOY_MAX_POINTS})")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log each MLflow run created/replaced")
    return parser


def run_report(metrics: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], tracking_uri: str,
               extra_json: Sequence[str | os.PathLike[str]] = (), toy_guidance: Sequence[float] = DEFAULT_TOY_GUIDANCE,
               toy_max_points: int = DEFAULT_TOY_MAX_POINTS, artifact_root: Path | None = None) -> ReportOutputs:
    """Validate every input, write table1 + figures, sync MLflow, write ``mlflow_runs.json``.

    Raises:
        ReportInputError: a metric/extra JSON is missing, malformed or duplicates another's key (all named).
    """
    from kaleido.report.figures import write_guidance_figures, write_toy_modes
    from kaleido.report.runs import extra_run_spec, metric_run_spec
    from kaleido.report.table import build_table, table_to_csv, table_to_markdown
    from kaleido.report.tracking import default_artifact_root, make_client, sync_runs

    records = load_metric_records(metrics)
    extras = load_extra_records(extra_json)
    check_toy_samples(records)
    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"

    table = build_table(records)
    write_text_atomic(out_dir / "table1.csv", table_to_csv(table))
    write_text_atomic(out_dir / "table1.md", table_to_markdown(table, records))
    figures = write_guidance_figures(table, figures_dir)
    figures += write_toy_modes(records, toy_guidance, toy_max_points, figures_dir)
    log.info("wrote %s, table1.md (%d rows) and %d figure files", out_dir / "table1.csv", len(table), len(figures))

    specs = [metric_run_spec(r, toy_max_points) for r in records] + [extra_run_spec(e) for e in extras]
    root = artifact_root if artifact_root is not None else default_artifact_root(tracking_uri)
    synced = sync_runs(make_client(tracking_uri), specs, root)
    log.info("mlflow %s: %d created, %d replaced, %d unchanged", tracking_uri, len(synced.created),
             len(synced.replaced), len(synced.unchanged))
    runs_json = out_dir / "mlflow_runs.json"
    write_json_atomic(runs_json, dict(sorted(synced.run_ids.items())))
    return ReportOutputs(out_dir / "table1.csv", out_dir / "table1.md", tuple(figures), runs_json, synced.run_ids)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 for bad inputs)."""
    import matplotlib

    from kaleido.report.tracking import default_tracking_uri

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)  # summaries always, each run with -v
    matplotlib.use("Agg")
    try:
        outputs = run_report(args.metrics, args.out_dir, args.tracking_uri or default_tracking_uri(),
                             extra_json=args.extra_json, toy_guidance=args.toy_guidance,
                             toy_max_points=args.toy_max_points, artifact_root=args.artifact_root)
    except (ReportInputError, FileNotFoundError, ValueError) as err:  # input problems name their file
        print(f"kaleido.report: error: {err}", file=sys.stderr)
        return 2
    log.info("wrote %s (%d MLflow runs)", outputs.runs_json, len(outputs.run_ids))
    return 0

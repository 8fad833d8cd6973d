"""``python -m kaleido.report``: metric JSON files -> table1, figures, MLflow runs.

Usage::

    python -m kaleido.report --metrics results/*/metrics/*/*/w*.json \\
        [--extra-json results/*/latents/*/quality.json] --out-dir reports \\
        [--tracking-uri sqlite:///results/mlflow.db] [--toy-guidance 1 5 8 25] [--toy-max-points 3000] \\
        [--table-guidance toy2d=best_fd shapes=3] [--edits results/*/edits/*/*/w*/*.npz] \\
        [--color-latents shapes=results/shapes/latents/color.npz]

Writes (atomically) ``{out}/table1.csv`` (every run, with 95 % interval columns), ``{out}/table1.md``,
``{out}/table1_{experiment}.csv/.md/.tex`` (the paper's layout, :mod:`kaleido.report.paper_table`),
``{out}/figures/fid_recall_vs_guidance_{experiment}.png/.pdf``, ``{out}/figures/toy_modes.png/.pdf`` (toy data
only), ``{out}/figures/samples_{experiment}_w{g}.png/.pdf`` (image experiments: sample grids),
``{out}/figures/edit_{experiment}_{method}_{latent}_w{g}_{edit}.png/.pdf`` (latent-edit pairs, ``--edits``),
``{out}/figures/colors_{experiment}_w{g}.png/.pdf`` (MDM | Kaleido's sampled colour clusters | Kaleido images,
``--color-latents``) and
``{out}/mlflow_runs.json`` (run key -> MLflow run id), after syncing the MLflow runs: per experiment a parent run
holding the tables and figures, and as its children one run per metric JSON, extra JSON and training log
(``--train-logs``: step metrics, the training curves).
Inputs are all validated before anything is written; exit status 2 on bad inputs.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kaleido.report.collect import ReportInputError, load_extra_records, load_metric_records
from kaleido.report.samples import check_toy_samples
from metrics.io import write_json_atomic, write_text_atomic
from metrics.registry import load_plugins

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


def _table_guidance(text: str) -> tuple[str, float | str]:
    from kaleido.report.paper_table import BEST_FD

    experiment, sep, value = text.partition("=")
    if not sep or not experiment:
        raise argparse.ArgumentTypeError(f"{text!r}: expected EXPERIMENT=WEIGHT, EXPERIMENT={BEST_FD} or "
                                         "EXPERIMENT/METHOD=WEIGHT")
    if value == BEST_FD and "/" not in experiment:
        return experiment, BEST_FD
    try:
        return experiment, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the weight must be a number or {BEST_FD}") from None


def _color_latents(text: str) -> tuple[str, str]:
    experiment, sep, path = text.partition("=")
    if not sep or not experiment or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected EXPERIMENT=PATH of its color latents .npz")
    return experiment, path


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
    parser.add_argument("--train-logs", nargs="*", default=[], metavar="JSONL",
                        help="<results>/<experiment>/train/<role>/<latent>/train_log.jsonl files: one MLflow run "
                             "each, its fields as step metrics")
    parser.add_argument("--edits", nargs="*", default=[], metavar="NPZ",
                        help="latent-edit outputs of python -m kaleido.edit: one figure of image pairs each")
    parser.add_argument("--color-latents", nargs="+", default=[], metavar="EXP=NPZ", type=_color_latents,
                        help="an experiment's colour latents file (its tokenizer decodes Kaleido's sampled colour "
                             "latents): one colour-cluster comparison figure per guidance weight")
    parser.add_argument("--table-guidance", nargs="+", default=[], metavar="EXP=W", type=_table_guidance,
                        help="guidance weight of each row of table1_<EXP> (a number, or best_fd: each row at its "
                             "lowest FD; default best_fd); EXP/METHOD=W: the weight of a method on its own grid")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first: a plugin whose metrics get table columns (repeatable; the DAG "
                             "passes the config's plugins; also $KALEIDO_PLUGINS)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log each MLflow run created/replaced")
    return parser


def run_report(metrics: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], tracking_uri: str,
               extra_json: Sequence[str | os.PathLike[str]] = (), toy_guidance: Sequence[float] = DEFAULT_TOY_GUIDANCE,
               toy_max_points: int = DEFAULT_TOY_MAX_POINTS, artifact_root: Path | None = None,
               table_guidance: Mapping[str, float | str] | None = None,
               train_logs: Sequence[str | os.PathLike[str]] = (),
               edits: Sequence[str | os.PathLike[str]] = (),
               color_latents: Mapping[str, str | os.PathLike[str]] | None = None) -> ReportOutputs:
    """Validate every input, write table1 + figures, sync MLflow, write ``mlflow_runs.json``.

    Raises:
        ReportInputError: a metric/extra JSON is missing, malformed or duplicates another's key (all named).
    """
    from kaleido.report.colors import write_color_figures
    from kaleido.report.edits import write_edit_figures
    from kaleido.report.figures import write_guidance_figures, write_toy_modes
    from kaleido.report.grids import write_sample_grids
    from kaleido.report.paper_table import write_paper_tables
    from kaleido.report.runs import extra_run_spec, metric_run_spec, summary_run_spec, training_run_spec
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
    tables = write_paper_tables(records, table_guidance or {}, out_dir)
    figures = write_guidance_figures(table, figures_dir)
    figures += write_toy_modes(records, toy_guidance, toy_max_points, figures_dir)
    figures += write_sample_grids(records, figures_dir)
    figures += write_edit_figures(edits, figures_dir)
    figures += write_color_figures(records, color_latents or {}, figures_dir)
    log.info("wrote %s, table1.md (%d rows), %d paper tables and %d figure files", out_dir / "table1.csv",
             len(table), len(tables), len(figures))

    specs = [summary_run_spec(name, _experiment_files(name, records, [*tables, *figures], out_dir))
             for name in sorted({r.experiment for r in records})]
    specs += [metric_run_spec(r, toy_max_points) for r in records] + [extra_run_spec(e) for e in extras]
    specs += [training_run_spec(Path(p)) for p in train_logs]
    root = artifact_root if artifact_root is not None else default_artifact_root(tracking_uri)
    synced = sync_runs(make_client(tracking_uri), specs, root)
    log.info("mlflow %s: %d created, %d replaced, %d unchanged", tracking_uri, len(synced.created),
             len(synced.replaced), len(synced.unchanged))
    runs_json = out_dir / "mlflow_runs.json"
    write_json_atomic(runs_json, dict(sorted(synced.run_ids.items())))
    return ReportOutputs(out_dir / "table1.csv", out_dir / "table1.md", tuple(figures), runs_json, synced.run_ids)


def _experiment_files(experiment: str, records: Sequence, files: Sequence[Path], out_dir: Path) -> list[Path]:
    """The combined tables plus the tables and figures of one experiment (the toy-mode figure goes with every toy
    experiment)."""
    toy = any(r.experiment == experiment and r.is_toy for r in records)
    stems = {f"table1_{experiment}", f"table1_{experiment}_best_fd", f"fid_recall_vs_guidance_{experiment}",
             *(["toy_modes"] if toy else [])}
    mine = [p for p in files if p.stem in stems
            or re.fullmatch(rf"(samples|colors)_{re.escape(experiment)}_w[^_]+", p.stem)
            or p.stem.startswith(f"edit_{experiment}_")]
    return [out_dir / "table1.csv", out_dir / "table1.md", *mine]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 for bad inputs)."""
    import matplotlib

    from kaleido.report.tracking import default_tracking_uri

    args = build_parser().parse_args(argv)
    load_plugins(args.plugin)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)  # summaries always, each run with -v
    matplotlib.use("Agg")
    try:
        outputs = run_report(args.metrics, args.out_dir, args.tracking_uri or default_tracking_uri(),
                             extra_json=args.extra_json, toy_guidance=args.toy_guidance,
                             toy_max_points=args.toy_max_points, artifact_root=args.artifact_root,
                             table_guidance=dict(args.table_guidance), train_logs=args.train_logs,
                             edits=args.edits, color_latents=dict(args.color_latents))
    except (ReportInputError, FileNotFoundError, ValueError) as err:  # input problems name their file
        print(f"kaleido.report: error: {err}", file=sys.stderr)
        return 2
    log.info("wrote %s (%d MLflow runs)", outputs.runs_json, len(outputs.run_ids))
    return 0

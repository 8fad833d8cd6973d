"""``table1.csv`` and ``table1.md``: one row per (experiment, method, latent, guidance).

The CSV is byte-stable for equal inputs: rows in :meth:`MetricRecord.sort_key` order, columns in a fixed
order, every number printed with ``%.6g``, empty cells for missing values, ``\\n`` line ends, no timestamps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from kaleido.report.collect import MetricRecord, core_metrics

KEY_COLUMNS: tuple[str, ...] = ("experiment", "method", "latent", "guidance")
INFO_COLUMNS: tuple[str, ...] = ("num_samples", "feature_net")
#: Printed number format of the CSV (six significant digits) and of the Markdown table (four).
CSV_FLOAT_FORMAT = "%.6g"
MARKDOWN_FLOAT_FORMAT = "%.4g"
#: Column titles of the Markdown table where the raw name is unclear.
MARKDOWN_TITLES = {"guidance": "w", "fd": "FD", "modes_covered": "modes", "num_samples": "N"}


def _option_columns(records: Sequence[MetricRecord], taken: set[str]) -> dict[str, str]:
    """``metric_options`` key -> column name (prefixed with ``option.`` where it would clash)."""
    keys = sorted({key for record in records for key in record.metric_options})
    return {key: (f"option.{key}" if key in taken else key) for key in keys}


def metric_columns(records: Sequence[MetricRecord]) -> list[str]:
    """:func:`~kaleido.report.collect.core_metrics`, then every other numeric metric found in ``records``
    (alphabetical)."""
    core = core_metrics()
    extra = sorted({name for record in records for name in record.metrics} - set(core))
    return [*core, *extra]


def ci_columns(records: Sequence[MetricRecord]) -> list[str]:
    """``<metric>_ci_low``, ``<metric>_ci_high`` for every metric that has a bootstrap interval in some record."""
    with_ci = {name for record in records for name in record.ci95}
    return [f"{name}_ci_{end}" for name in metric_columns(records) if name in with_ci for end in ("low", "high")]


def build_table(records: Sequence[MetricRecord]) -> pd.DataFrame:
    """Table1 as a DataFrame, rows in ``records`` order (already sorted by :func:`load_metric_records`).

    Columns: :data:`KEY_COLUMNS`, the core metrics, other numeric metrics (alphabetical), the 95 % interval
    bounds (:func:`ci_columns`), :data:`INFO_COLUMNS`, then the ``metric_options`` keys (alphabetical). Metric
    and interval columns are float (NaN where a run lacks the value).
    """
    metrics = metric_columns(records)
    intervals = ci_columns(records)
    options = _option_columns(records, {*KEY_COLUMNS, *metrics, *intervals, *INFO_COLUMNS})
    rows = []
    for record in records:
        row: dict[str, Any] = {"experiment": record.experiment, "method": record.method, "latent": record.latent,
                               "guidance": record.guidance}
        row.update({name: record.metrics.get(name, math.nan) for name in metrics})
        for column in intervals:
            name, end = column.rsplit("_ci_", 1)
            row[column] = record.ci95.get(name, (math.nan, math.nan))[0 if end == "low" else 1]
        row.update({"num_samples": record.num_samples, "feature_net": record.feature_net})
        row.update({column: record.metric_options.get(key) for key, column in options.items()})
        rows.append(row)
    columns = [*KEY_COLUMNS, *metrics, *intervals, *INFO_COLUMNS, *options.values()]
    table = pd.DataFrame(rows, columns=columns)
    table["guidance"] = table["guidance"].astype(float)
    table[[*metrics, *intervals]] = table[[*metrics, *intervals]].astype(float)
    return table


def format_cell(value: Any, float_format: str = CSV_FLOAT_FORMAT) -> str:
    """One cell as text: floats with ``float_format``, ints exactly, missing (None/NaN) empty, bools lower-case."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_format % value
    if hasattr(value, "item"):  # numpy scalar
        return format_cell(value.item(), float_format)
    return str(value)


def _as_text(table: pd.DataFrame, float_format: str) -> pd.DataFrame:
    return pd.DataFrame({column: [format_cell(value, float_format) for value in table[column].tolist()]
                         for column in table.columns}, columns=table.columns, dtype=object)


def table_to_csv(table: pd.DataFrame) -> str:
    """The CSV text of :func:`build_table`'s frame (byte-stable, see module docstring)."""
    return _as_text(table, CSV_FLOAT_FORMAT).to_csv(index=False, lineterminator="\n")


def _unique_text(values: Sequence[Any]) -> str:
    found = sorted({format_cell(value, "%g") for value in values} - {""})
    return ", ".join(found) if found else "n/a"


def experiment_header(records: Sequence[MetricRecord]) -> str:
    """One line describing how the metrics of one experiment were computed (feature net, k, sample count)."""
    options: dict[str, list[Any]] = {}
    for record in records:
        for key, value in record.metric_options.items():
            options.setdefault(key, []).append(value)
    parts = [f"dataset `{_unique_text([r.dataset for r in records])}`",
             f"feature network `{_unique_text([r.feature_net for r in records])}`",
             f"k = {_unique_text(options.pop('k_pr', []))} (precision/recall)",
             f"k = {_unique_text(options.pop('k_dc', []))} (density/coverage)",
             f"{_unique_text([r.num_samples for r in records])} samples per run"]
    if options:
        parts.append("other options: " + ", ".join(f"{key} = {_unique_text(values)}"
                                                   for key, values in sorted(options.items())))
    return "; ".join(parts) + "."


def table_to_markdown(table: pd.DataFrame, records: Sequence[MetricRecord]) -> str:
    """Markdown with one section per experiment: a header line (:func:`experiment_header`) and a table.

    Metric columns that are empty for every run of an experiment are left out of its table.
    """
    sections = ["# Table 1", ""]
    for experiment, group in table.groupby("experiment", sort=False):
        shown_metrics = [c for c in metric_columns(records) if c in group and group[c].notna().any()]
        columns = ["method", "latent", "guidance", *shown_metrics, "num_samples"]
        shown = _as_text(group[columns], MARKDOWN_FLOAT_FORMAT)
        shown.columns = [MARKDOWN_TITLES.get(c, c) for c in columns]
        markdown = shown.to_markdown(index=False, disable_numparse=True,
                                     colalign=["left", "left", *["right"] * (len(columns) - 2)])
        header = experiment_header([r for r in records if r.experiment == experiment])
        sections += [f"## {experiment}", "", header, "", markdown, ""]
    return "\n".join(sections)

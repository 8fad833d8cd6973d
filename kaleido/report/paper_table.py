"""The paper's Table 1 layout, one table per experiment: ``table1_<experiment>.csv`` / ``.md`` / ``.tex``.

One row per (method, latent) -- MDM, MDM + CADS, MDM + autoguidance, Kaleido (one row per latent type),
Kaleido + CADS -- at one guidance weight per row, chosen by ``report.guidance`` in the experiment's config: a
number (the paper reports CFG 4.0) or ``best_fd`` (each row at its own lowest FD over the guidance grid). Columns:
the guidance used, then FD (FID with Inception features), precision, recall, density, coverage, MSS, Vendi, ... each
with its bootstrap 95 % interval when the metrics have one, the feature network named in the FD header; then the
metrics of each extra feature network (``metrics.extra_feature_nets``), titled with it: "FD (dinov2)",
"MSS (sscd)", "Vendi (sscd)", ... The columns, their titles, order and direction come from the metric registry
(:mod:`metrics.metric_registry`, plugins included). The best value of each column is bold in Markdown and LaTeX
(lowest where lower is better, highest elsewhere).

The CSV keeps numbers unrounded (``%.6g``), the interval bounds in ``<metric>_ci_low`` / ``_ci_high`` columns; the
Markdown and LaTeX print ``value ± half-width`` of the interval.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kaleido.report.collect import MetricRecord, ReportInputError, method_rank
from kaleido.report.style import series_label
from kaleido.report.table import CSV_FLOAT_FORMAT, format_cell
from metrics.features import FEATURE_NETS
from metrics.io import write_text_atomic
from metrics.metric_registry import table_keys

BEST_FD = "best_fd"
#: counts, printed without decimals
INTEGER_METRICS = frozenset({"modes_covered"})


@dataclass(frozen=True)
class Column:
    """A metric column: ``metric`` key in the metric JSON, printed ``title``, whether lower is better, and the
    title by feature network where it changes with it (FD -> FID)."""

    metric: str
    title: str
    lower_is_better: bool
    title_by_net: Callable[[str], str] | None = None

    def title_for(self, feature_net: str) -> str:
        return self.title_by_net(feature_net) if self.title_by_net is not None else self.title


#: columns of numbers the harness computes outside the metric registry (kaleido.evaluate's toy mode metrics),
#: each with its place among the registry's columns (``ResultKey.column_order``)
HARNESS_COLUMNS: tuple[tuple[float, Column], ...] = ((90, Column("modes_covered", "Modes", False)),)


def paper_columns() -> list[Column]:
    """Table 1's metric columns: every result key of the metric registry with a title (plugins included) and the
    harness's own, in ``column_order`` (FD, precision, recall, density, coverage, MSS, Vendi, Vendi / class,
    modes, KID, IS, then the plugins' in registration order)."""
    ranked = [(key.column_order, Column(key.name, key.title, key.lower_is_better, key.title_by_net))
              for key in table_keys()]
    return [column for _, column in sorted([*ranked, *HARNESS_COLUMNS], key=lambda item: item[0])]


def extra_columns(names: Sequence[str]) -> list[Column]:
    """Columns of extra-network metrics among ``names`` (e.g. ``mss_sscd`` -> "MSS (sscd)"), by network then metric
    (the registry's keys with ``per_net``)."""
    bases = [key for key in table_keys() if key.per_net]
    nets = {n.replace("-", "_"): n for n in FEATURE_NETS.names()}
    found = []
    for suffix, net in sorted(nets.items()):
        for base in bases:
            if f"{base.name}_{suffix}" in names:
                found.append(Column(f"{base.name}_{suffix}", f"{base.title} ({net})", base.lower_is_better))
    return found


def _lowest_fd(runs: Sequence[MetricRecord]) -> MetricRecord:
    scored = [r for r in runs if not math.isnan(r.metrics.get("fd", math.nan))]
    return min(scored, key=lambda r: (r.metrics["fd"], r.guidance)) if scored else runs[0]


def select_rows(records: Sequence[MetricRecord], choice: float | str,
                by_method: Mapping[str, float] | None = None) -> list[MetricRecord]:
    """One record per (method, latent) of one experiment, at guidance ``choice`` or its best FD (:data:`BEST_FD`).

    ``by_method``: the weight of a method that runs on its own guidance grid (``report.guidance_by_method``), used
    in place of a numeric ``choice``. Raises :class:`ReportInputError` when a series lacks its weight.
    """
    series: dict[tuple[str, str], list[MetricRecord]] = {}
    for record in records:
        series.setdefault((record.method, record.latent), []).append(record)
    chosen = []
    for (method, latent), runs in sorted(series.items(), key=lambda kv: (method_rank(kv[0][0]), kv[0][1])):
        if choice == BEST_FD:
            chosen.append(_lowest_fd(runs))
            continue
        weight = float((by_method or {}).get(method, choice))
        match = [r for r in runs if r.guidance == weight]
        if not match:
            raise ReportInputError(f"report.guidance {weight:g} of experiment {runs[0].experiment}: {method}/{latent} "
                                   f"has guidance {sorted(r.guidance for r in runs)}; use one of them or "
                                   f"'{BEST_FD}'")
        chosen.append(match[0])
    return chosen


def off_choice(table: pd.DataFrame, choice: float | str) -> list[bool]:
    """Per row: whether it is not at the stated weight ``choice`` (a method on its own guidance grid)."""
    return [choice != BEST_FD and float(w) != float(choice) for w in table["guidance"].tolist()]


#: how the Markdown / LaTeX tables mark a row that is not at the stated weight, and what the mark means
OFF_CHOICE_NOTE = ("† = at the weight `report.guidance_by_method` states for a method that runs on its own guidance "
                   "grid")


def paper_table(records: Sequence[MetricRecord], choice: float | str,
                by_method: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Rows of :func:`select_rows`; columns ``method``, ``latent``, ``row`` (label), ``guidance``, then per metric
    present: the value and, when it has intervals, ``<metric>_ci_low`` / ``<metric>_ci_high``."""
    rows = select_rows(records, choice, by_method)
    frame: dict[str, list] = {"method": [r.method for r in rows], "latent": [r.latent for r in rows],
                              "row": [series_label(r.method, r.latent) for r in rows],
                              "guidance": [r.guidance for r in rows]}
    for column in [*paper_columns(), *extra_columns(sorted({k for r in rows for k in r.metrics}))]:
        values = [r.metrics.get(column.metric, math.nan) for r in rows]
        if all(math.isnan(v) for v in values):
            continue
        frame[column.metric] = values
        if any(column.metric in r.ci95 for r in rows):
            for end, index in (("low", 0), ("high", 1)):
                frame[f"{column.metric}_ci_{end}"] = [r.ci95.get(column.metric, (math.nan,) * 2)[index] for r in rows]
    return pd.DataFrame(frame)


def shown_columns(table: pd.DataFrame) -> list[Column]:
    return [c for c in paper_columns() if c.metric in table] + extra_columns(list(table.columns))


def best_rows(table: pd.DataFrame, column: Column) -> set[int]:
    """The row position holding the column's best value when it is best beyond doubt, else nothing.

    Beyond doubt: no other row prints the same value, and where the table has bootstrap intervals, the best row's
    interval is clear of every other row's (a difference inside the noise is not marked).
    """
    values = table[column.metric].astype(float).tolist()
    rows = [i for i, v in enumerate(values) if not math.isnan(v)]
    if len(rows) < 2:
        return set()
    rows.sort(key=lambda i: values[i] if column.lower_is_better else -values[i])
    best, others = rows[0], rows[1:]
    if any(cell_parts(table, i, column.metric)[0] == cell_parts(table, best, column.metric)[0] for i in others):
        return set()  # a tie as printed
    low_key, high_key = f"{column.metric}_ci_low", f"{column.metric}_ci_high"
    if low_key in table:
        low, high = table[low_key].astype(float).tolist(), table[high_key].astype(float).tolist()
        for i in others:
            if math.isnan(low[best]) or math.isnan(low[i]):
                continue
            overlaps = high[best] >= low[i] if column.lower_is_better else low[best] <= high[i]
            if overlaps:
                return set()
    return {best}


def _decimals(value: float) -> int:
    magnitude = abs(value)
    return 3 if magnitude < 10 else 2 if magnitude < 100 else 1


def cell_parts(table: pd.DataFrame, i: int, metric: str) -> tuple[str, str]:
    """(value text, half-width text or "") of one cell, with the value's number of decimals."""
    value = float(table[metric].iloc[i])
    if math.isnan(value):
        return "", ""
    places = 0 if metric in INTEGER_METRICS else _decimals(value)
    text = f"{value:.{places}f}"
    low_key, high_key = f"{metric}_ci_low", f"{metric}_ci_high"
    if low_key in table:
        low, high = float(table[low_key].iloc[i]), float(table[high_key].iloc[i])
        if not (math.isnan(low) or math.isnan(high)):
            return text, f"{(high - low) / 2:.{places}f}"
    return text, ""


def headers(table: pd.DataFrame, feature_net: str, latex: bool) -> list[str]:
    down, up = (r"$\downarrow$", r"$\uparrow$") if latex else ("\u2193", "\u2191")
    out = ["Method", "w"]
    for column in shown_columns(table):
        out.append(f"{column.title_for(feature_net)} {down if column.lower_is_better else up}")
    return out


def to_csv(table: pd.DataFrame) -> str:
    """Unrounded values and interval bounds (``%.6g``), byte-stable."""
    text = pd.DataFrame({c: [format_cell(v, CSV_FLOAT_FORMAT) for v in table[c].tolist()] for c in table.columns},
                        columns=table.columns, dtype=object)
    return text.to_csv(index=False, lineterminator="\n")


def protocol(records: Sequence[MetricRecord]) -> str:
    """How the numbers of ``records`` (one experiment) were computed, as one line for the table header: samples per
    row against how many reference items, the k of P/R and D/C, the feature network of each column group and the
    diversity subset (a value the records disagree on is shown as all its values, "/"-separated)."""

    def values(found: set[object]) -> str:
        found.discard(None)
        return "/".join(sorted(str(v) for v in found)) if found else "?"

    def option(key: str) -> str:
        return values({r.metric_options.get(key) for r in records})

    main = {r.feature_net for r in records}
    extra = sorted({net for r in records for net in (r.raw.get("feature_weights") or {})} - main)
    line = (f"Protocol: {values({r.num_samples for r in records})} samples per row vs {option('num_reference')} "
            f"reference items (the training set); FD, precision/recall (k = {option('k_pr')}), density/coverage "
            f"(k = {option('k_dc')}) and Vendi on {values(set(main))} features")
    if extra:
        line += f"; FD, Vendi and MSS also on {', '.join(extra)}"
    conditions, per_condition = option("diversity_conditions"), option("diversity_per_condition")
    if conditions not in ("?", "0") or per_condition not in ("?", "0"):
        line += f"; MSS and per-condition Vendi on {conditions} conditions x {per_condition} samples"
    return line + "."


def unverified_weights(records: Sequence[MetricRecord]) -> str:
    """The weight files behind ``records`` that were used without a matching digest (``weights.allow_unverified``),
    as one line for the table header ("" when every file was verified)."""
    found = sorted({f"{check['name']} (sha256 {check['sha256'][:12]})"
                    for record in records for checks in (record.raw.get("feature_weights") or {}).values()
                    for check in checks if check.get("verified") is False})
    return f"Unverified weights (config weights.allow_unverified): {', '.join(found)}." if found else ""


def to_markdown(table: pd.DataFrame, experiment: str, feature_net: str, choice: float | str, note: str = "") -> str:
    """A Markdown section: title, how the guidance was chosen, the table with bold best values and ± intervals;
    ``note`` (lines, e.g. :func:`protocol` and :func:`unverified_weights`) goes under the title."""
    columns = shown_columns(table)
    best = {c.metric: best_rows(table, c) for c in columns}
    lines = ["| " + " | ".join(headers(table, feature_net, latex=False)) + " |",
             "|" + "|".join([":---", "---:"] + ["---:"] * len(columns)) + "|"]
    off = off_choice(table, choice)
    for i in range(len(table)):
        cells = [str(table["row"].iloc[i]), f"{float(table['guidance'].iloc[i]):g}" + ("†" if off[i] else "")]
        for column in columns:
            value, half = cell_parts(table, i, column.metric)
            value = f"**{value}**" if value and i in best[column.metric] else value
            cells.append(f"{value} ± {half}" if half else value)
        lines.append("| " + " | ".join(cells) + " |")
    how = "each row at its lowest FD over the guidance grid" if choice == BEST_FD else f"guidance w = {choice:g}"
    if any(off):
        how += f" ({OFF_CHOICE_NOTE})"
    if any(c.endswith("_ci_low") for c in table.columns):
        how += "; ± = half-width of the bootstrap 95 % interval"
    notes = [line for part in note.splitlines() for line in (part, "")]  # each note its own paragraph
    return "\n".join([f"## Table 1: {experiment}", "", f"{how}; bold = best beyond the printed precision and the "
                      "95 % intervals (where computed).", "", *notes, *lines, ""])


_LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: pd.DataFrame, experiment: str, feature_net: str, choice: float | str, note: str = "") -> str:
    """A ``tabular`` fragment for ``\\input`` (needs no package): bold best values, ``$\\pm$`` intervals;
    ``note``'s lines as comment lines under the first."""
    columns = shown_columns(table)
    best = {c.metric: best_rows(table, c) for c in columns}
    how = "lowest FD per row" if choice == BEST_FD else f"w = {choice:g}"
    off = off_choice(table, choice)
    if any(off):
        how += "; " + OFF_CHOICE_NOTE.replace("†", r"$^\dagger$").replace("`", "")
    out = [f"% Table 1, experiment {latex_escape(experiment)} ({how}); generated by kaleido.report",
           *[f"% {line}" for line in note.splitlines()],
           r"\begin{tabular}{l" + "r" * (len(columns) + 1) + "}", r"\hline",
           " & ".join(headers(table, feature_net, latex=True)) + r" \\", r"\hline"]
    for i in range(len(table)):
        cells = [latex_escape(str(table["row"].iloc[i])),
                 f"{float(table['guidance'].iloc[i]):g}" + (r"$^\dagger$" if off[i] else "")]
        for column in columns:
            value, half = cell_parts(table, i, column.metric)
            value = rf"\textbf{{{value}}}" if value and i in best[column.metric] else value
            cells.append(rf"{value} $\pm$ {half}" if half else value)
        out.append(" & ".join(cells) + r" \\")
    out += [r"\hline", r"\end{tabular}", ""]
    return "\n".join(out)


def write_paper_tables(records: Sequence[MetricRecord], choices: Mapping[str, float | str],
                       out_dir: str | os.PathLike[str]) -> list[Path]:
    """``table1_<experiment>.csv/.md/.tex`` per experiment at its guidance choice (``choices``: experiment ->
    weight or :data:`BEST_FD`, the default; ``"<experiment>/<method>"`` -> the weight of a method on its own grid),
    and ``table1_<experiment>_best_fd.*`` beside it when the choice is a weight. Returns the written paths."""
    written = []
    by_experiment: dict[str, list[MetricRecord]] = {}
    for record in records:
        by_experiment.setdefault(record.experiment, []).append(record)
    for experiment, group in by_experiment.items():
        choice = choices.get(experiment, BEST_FD)
        by_method = {key.partition("/")[2]: float(weight) for key, weight in choices.items()
                     if key.startswith(f"{experiment}/")}
        nets = sorted({r.feature_net for r in group})
        net = nets[0] if len(nets) == 1 else "/".join(nets)
        note = "\n".join(line for line in (protocol(group), unverified_weights(group)) if line)
        views = [(f"table1_{experiment}", choice)]
        if choice != BEST_FD:  # the stated weight is the comparison; each row at its best FD is the view beside it
            views.append((f"table1_{experiment}_{BEST_FD}", BEST_FD))
        for name, view in views:
            table = paper_table(group, view, by_method)
            stem = Path(out_dir) / name
            for suffix, text in ((".csv", to_csv(table)), (".md", to_markdown(table, experiment, net, view, note)),
                                 (".tex", to_latex(table, experiment, net, view, note))):
                write_text_atomic(stem.with_suffix(suffix), text)
                written.append(stem.with_suffix(suffix))
    return written

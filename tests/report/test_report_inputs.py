"""Input validation, sort order and table1 contents (no MLflow)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest
from report_data import write_run

from kaleido.report.collect import ReportInputError, load_extra_records, load_metric_records, method_rank
from kaleido.report.table import build_table, format_cell, table_to_csv, table_to_markdown
from metrics.io import write_json_atomic, write_text_atomic

EXPECTED_COLUMNS = ["experiment", "method", "latent", "guidance", "fd", "precision", "recall", "density", "coverage",
                    "vendi", "modes_covered", "mode_entropy"]


def test_method_order_fixed_then_alphabetical() -> None:
    names = ["zeta", "kaleido_cads", "alpha", "mdm", "kaleido", "mdm_autoguidance", "mdm_cads"]
    assert sorted(names, key=method_rank) == ["mdm", "mdm_cads", "mdm_autoguidance", "kaleido", "kaleido_cads",
                                              "alpha", "zeta"]


def test_records_sorted_by_experiment_method_latent_numeric_guidance(tmp_path: Path) -> None:
    paths = [write_run(tmp_path, exp, m, lat, g, dataset="shapes")
             for exp in ("b_exp", "a_exp") for m, lat in (("zz_custom", "none"), ("kaleido", "text"),
                                                          ("kaleido", "boxes"), ("mdm", "none"))
             for g in (25.0, 5.0, 1.5)]
    records = load_metric_records(tmp_path / p for p in paths)
    keys = [(r.experiment, r.method, r.latent, r.guidance) for r in records]
    assert keys[:9] == [("a_exp", "mdm", "none", 1.5), ("a_exp", "mdm", "none", 5.0), ("a_exp", "mdm", "none", 25.0),
                        ("a_exp", "kaleido", "boxes", 1.5), ("a_exp", "kaleido", "boxes", 5.0),
                        ("a_exp", "kaleido", "boxes", 25.0), ("a_exp", "kaleido", "text", 1.5),
                        ("a_exp", "kaleido", "text", 5.0), ("a_exp", "kaleido", "text", 25.0)]
    assert keys[9][1] == "zz_custom" and keys[12][0] == "b_exp"
    assert records[0].run_name == "mdm/none/w1.5" and records[0].run_key == "a_exp/mdm/none/w1.5"


def test_table_columns_rows_and_empty_mode_cells(tmp_path: Path) -> None:
    paths = [write_run(tmp_path, "toy2d", "kaleido", "kmeans", 8.0), write_run(tmp_path, "toy2d", "mdm", "none", 8.0),
             write_run(tmp_path, "shapes", "mdm", "none", 2.0, dataset="shapes")]
    records = load_metric_records(tmp_path / p for p in paths)
    table = build_table(records)
    assert list(table.columns[:12]) == EXPECTED_COLUMNS
    assert {"num_samples", "feature_net", "mss", "k_pr", "k_dc"} <= set(table.columns)
    assert table[["experiment", "method"]].values.tolist() == [["shapes", "mdm"], ["toy2d", "mdm"],
                                                                ["toy2d", "kaleido"]]
    text = table_to_csv(table)
    parsed = pd.read_csv(io.StringIO(text))
    assert math.isnan(parsed.loc[0, "modes_covered"]) and parsed.loc[1, "modes_covered"] == 3
    assert text.splitlines()[1].startswith("shapes,mdm,none,2,")  # guidance printed as %g, no "2.0"
    assert format_cell(1281167) == "1281167" and format_cell(0.123456789) == "0.123457" and format_cell(None) == ""
    markdown = table_to_markdown(table, records)
    assert "## shapes" in markdown and "## toy2d" in markdown
    assert "feature network `inception`" in markdown and "k = 3 (precision/recall)" in markdown
    shapes_section = markdown.split("## toy2d")[0]
    assert "modes" not in shapes_section.split("\n\n", 3)[-1].splitlines()[0]  # empty mode columns dropped


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / write_run(tmp_path, "toy2d", "mdm", "none", 1.0)
    bad = tmp_path / "bad.json"
    write_text_atomic(bad, '{"experiment": "toy2d", ')
    with pytest.raises(ReportInputError, match=r"bad\.json.*not valid JSON"):
        load_metric_records([good, bad])
    with pytest.raises(ReportInputError, match=r"missing\.json: file not found"):
        load_metric_records([good, tmp_path / "missing.json"])


def test_missing_field_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "partial.json"
    write_json_atomic(path, {"experiment": "toy2d", "dataset": "toy2d", "method": "mdm", "latent": "none",
                             "guidance": "eight", "num_samples": 10, "feature_net": "identity"})
    with pytest.raises(ReportInputError) as err:
        load_metric_records([path])
    message = str(err.value)
    assert "partial.json: 'guidance' must be a finite number" in message
    assert "partial.json: 'metrics' must be a JSON object" in message


def test_duplicate_key_names_both_files(tmp_path: Path) -> None:
    first = tmp_path / write_run(tmp_path, "toy2d", "mdm", "none", 8.0)
    second = tmp_path / "copy" / "w8.json"
    second.parent.mkdir()
    second.write_bytes(first.read_bytes().replace(b'"guidance": 8.0', b'"guidance": 8'))
    with pytest.raises(ReportInputError, match="duplicate run toy2d/mdm/none/w8") as err:
        load_metric_records([first, second])
    assert str(first) in str(err.value) and str(second) in str(err.value)


def test_extra_records(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    write_json_atomic(path, {"experiment": "toy2d", "latent": "kmeans", "metrics": {"latent_accuracy": 0.99}})
    (record,) = load_extra_records([path])
    assert record.run_name == "toy2d/latents/kmeans" and record.metrics == {"latent_accuracy": 0.99}
    with pytest.raises(ReportInputError, match="duplicate extra run"):
        load_extra_records([path, path])

"""The paper's Table 1 layout: row selection by guidance, bold best values, ± intervals, LaTeX that compiles."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from report_data import write_run

from kaleido.report.collect import ReportInputError, load_metric_records
from kaleido.report.paper_table import BEST_FD, paper_table, to_latex, to_markdown, write_paper_tables
from metrics.io import read_json, write_json_atomic

SERIES = (("mdm", "none"), ("mdm_cads", "none"), ("kaleido", "bbox"), ("kaleido", "color"))
GUIDANCE = (1.0, 4.0, 7.0)


def _records(root: Path, with_ci: bool = True):
    paths = []
    for method, latent in SERIES:
        for w in GUIDANCE:
            # FD is lowest at w = 4 for MDM, at w = 7 for the others; recall falls with w (kaleido's less)
            fd = {4.0: 5.0, 1.0: 9.0, 7.0: 7.0}[w] if method == "mdm" else {7.0: 3.0, 4.0: 4.0, 1.0: 8.0}[w]
            fd += latent == "color"
            rel = write_run(root, "shapes", method, latent, w, dataset="shapes", fd=fd)
            doc = read_json(root / rel)
            doc["metrics"]["recall"] = (0.6 if method == "kaleido" else 0.4) / w
            if with_ci:
                doc["ci95"] = {"fd": [fd - 0.5, fd + 1.5], "recall": [0.0, 0.1]}
            write_json_atomic(root / rel, doc)
            paths.append(root / rel)
    return load_metric_records(paths)


def test_rows_at_the_chosen_guidance(tmp_path):
    records = _records(tmp_path)
    at4 = paper_table(records, 4.0)
    assert list(at4["row"]) == ["MDM", "MDM + CADS", "Kaleido (bbox)", "Kaleido (color)"]
    assert list(at4["guidance"]) == [4.0] * 4 and list(at4["fd"]) == [5.0, 4.0, 4.0, 5.0]
    best = paper_table(records, BEST_FD)
    assert list(best["guidance"]) == [4.0, 7.0, 7.0, 7.0] and list(best["fd"]) == [5.0, 3.0, 3.0, 4.0]
    assert list(best["fd_ci_low"]) == [4.5, 2.5, 2.5, 3.5]
    with pytest.raises(ReportInputError, match=r"report.guidance 2 of experiment shapes: mdm/none has guidance "
                                                r"\[1.0, 4.0, 7.0\]"):
        paper_table(records, 2.0)


def test_a_method_on_its_own_grid_is_shown_at_its_stated_weight_and_marked(tmp_path):
    """guidance_by_method: autoguidance runs at w = 1.5, 2, 3 only; at the stated w = 4 its row is at the weight
    report.guidance_by_method states for it (2), marked in the Markdown and LaTeX; without one it is an error."""
    records = _records(tmp_path)
    paths = [tmp_path / write_run(tmp_path, "shapes", "mdm_autoguidance", "none", w, dataset="shapes", fd=fd)
             for w, fd in ((1.5, 6.0), (2.0, 4.5), (3.0, 2.5))]
    records = [*records, *load_metric_records(paths)]
    table = paper_table(records, 4.0, {"mdm_autoguidance": 2.0})
    assert list(table["row"])[:3] == ["MDM", "MDM + CADS", "MDM + autoguidance"]
    assert list(table["guidance"]) == [4.0, 4.0, 2.0, 4.0, 4.0] and table["fd"].iloc[2] == 4.5
    markdown = to_markdown(table, "shapes", "inception", 4.0)
    assert "| MDM + autoguidance | 2† |" in markdown and "| MDM | 4 |" in markdown
    assert "† = at the weight `report.guidance_by_method` states" in markdown
    latex = to_latex(table, "shapes", "inception", 4.0)
    assert r"MDM + autoguidance & 2$^\dagger$ &" in latex and "guidance_by_method" in latex.splitlines()[0]
    assert "†" not in to_markdown(paper_table(records, BEST_FD), "shapes", "inception", BEST_FD)
    with pytest.raises(ReportInputError, match=r"mdm_autoguidance/none has guidance \[1.5, 2.0, 3.0\]"):
        paper_table(records, 4.0)
    out = write_paper_tables(records, {"shapes": 4.0, "shapes/mdm_autoguidance": 3.0}, tmp_path / "reports")
    assert "| MDM + autoguidance | 3† |" in (tmp_path / "reports" / "table1_shapes.md").read_text() and out
    _pdflatex(tmp_path / "tex", latex)


def test_markdown_bolds_the_best_and_prints_intervals(tmp_path):
    table = paper_table(_records(tmp_path), 4.0)
    text = to_markdown(table, "shapes", "inception", 4.0)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| Method"))
    assert header.startswith("| Method | w | FID ↓ | Precision ↑ | Recall ↑ |") and "MSS ↓" in header
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ") and line != header}
    # FD 4.0 is lowest for two rows (a tie: not bold); interval [3.5, 5.5] -> ± 1.000; recall 0.15 ties likewise
    assert "| 4.000 ± 1.000 |" in rows["MDM + CADS"] and "| 4.000 ± 1.000 |" in rows["Kaleido (bbox)"]
    assert "| 5.000 ± 1.000 |" in rows["MDM"]
    assert "0.150 ± 0.050" in rows["Kaleido (color)"] and "**" not in text
    assert "guidance w = 4" in text


@pytest.mark.parametrize(("values", "intervals", "lower", "bold"), [
    ([3.0, 4.0, 5.0], None, True, {0}),                                 # unique best, no intervals
    ([3.0, 3.0004, 5.0], None, True, set()),                            # a tie as printed (3.000)
    ([0.9, 0.7, 0.8], None, False, {0}),                                # higher is better
    ([3.0, 4.0, 5.0], [(2.5, 3.5), (3.6, 4.4), (4.5, 5.5)], True, {0}),  # intervals clear of each other
    ([3.0, 4.0, 5.0], [(2.0, 4.1), (3.6, 4.4), (4.5, 5.5)], True, set()),  # best's interval reaches the second's
    ([0.9, 0.7, 0.8], [(0.85, 0.95), (0.6, 0.8), (0.75, 0.86)], False, set()),
    ([7.0], None, True, set()),                                          # one row: nothing to compare
])
def test_bold_only_where_best_beyond_doubt(values, intervals, lower, bold):
    import pandas as pd

    from kaleido.report.paper_table import Column, best_rows

    frame = {"m": values}
    if intervals is not None:
        frame.update(m_ci_low=[lo for lo, _ in intervals], m_ci_high=[hi for _, hi in intervals])
    assert best_rows(pd.DataFrame(frame), Column("m", "M", lower)) == bold


def test_latex_compiles(tmp_path):
    """The fragment inside a minimal document, through a real pdflatex when one is installed."""
    table = paper_table(_records(tmp_path), BEST_FD)
    fragment = to_latex(table, "shapes_v2", "dinov2", BEST_FD)
    assert r"FD-DINOv2 $\downarrow$" in fragment and r"3.000 $\pm$ 1.000" in fragment and r"\textbf" not in fragment
    assert "shapes\\_v2" in fragment and fragment.count(r"\\") == 1 + len(table)
    _pdflatex(tmp_path, fragment)


def _pdflatex(folder: Path, fragment: str) -> None:
    """Compile ``fragment`` inside a minimal document with a real pdflatex (skips the test without one)."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (apt-get install texlive-latex-base); structure checked above")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.tex").write_text(fragment)
    (folder / "doc.tex").write_text("\\documentclass{article}\n\\begin{document}\n\\input{table.tex}\n"
                                    "\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (folder / "doc.pdf").stat().st_size > 1000


def test_written_files_and_csv_bounds(tmp_path):
    records = _records(tmp_path, with_ci=False)
    written = write_paper_tables(records, {"shapes": 7.0}, tmp_path / "reports")
    assert sorted(p.name for p in written) == ["table1_shapes.csv", "table1_shapes.md", "table1_shapes.tex",
                                               "table1_shapes_best_fd.csv", "table1_shapes_best_fd.md",
                                               "table1_shapes_best_fd.tex"]
    best = (tmp_path / "reports" / "table1_shapes_best_fd.csv").read_text().splitlines()
    assert best[1].startswith("mdm,none,MDM,4,5,")  # MDM's lowest FD is at w = 4
    only_best = write_paper_tables(records, {}, tmp_path / "best_only")
    assert sorted(p.name for p in only_best) == ["table1_shapes.csv", "table1_shapes.md", "table1_shapes.tex"]
    csv = (tmp_path / "reports" / "table1_shapes.csv").read_text().splitlines()
    assert csv[0].startswith("method,latent,row,guidance,fd,precision,recall") and "_ci_" not in csv[0]
    assert csv[1].startswith("mdm,none,MDM,7,7,")
    assert "±" not in (tmp_path / "reports" / "table1_shapes.md").read_text()


def test_every_method_has_a_row_label_a_colour_and_a_place():
    from kaleido.methods import METHODS
    from kaleido.report.collect import METHOD_ORDER
    from kaleido.report.style import METHOD_COLORS, METHOD_LABELS

    assert set(METHOD_LABELS) == set(METHOD_COLORS) == set(METHOD_ORDER) == set(METHODS.names())
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)


def test_unverified_weights_are_stated_in_the_table_header(tmp_path):
    """A number made with weights allowed unverified (config weights.allow_unverified) says so above its table."""
    records = _records(tmp_path)
    check = {"name": "sscd_disc_mixup", "path": "/c/sscd.pt", "sha256": "ab" * 32, "expected": None}
    for record in records:
        doc = read_json(record.path)
        doc["feature_weights"] = {"inception": [], "sscd": [{**check, "verified": record.method != "kaleido"}]}
        write_json_atomic(record.path, doc)
    written = write_paper_tables(load_metric_records([r.path for r in records]), {"shapes": 4.0}, tmp_path / "out")
    note = "Unverified weights (config weights.allow_unverified): sscd_disc_mixup (sha256 abababababab)."
    for path in written:
        text = path.read_text()
        if path.suffix == ".md":
            assert note in text.splitlines()
        elif path.suffix == ".tex":
            assert f"% {note}" in text.splitlines()
    for record in records:  # all verified: no note
        doc = read_json(record.path)
        doc["feature_weights"]["sscd"][0]["verified"] = True
        write_json_atomic(record.path, doc)
    again = write_paper_tables(load_metric_records([r.path for r in records]), {"shapes": 4.0}, tmp_path / "out2")
    assert not any("Unverified" in p.read_text() for p in again)


def test_the_table_header_states_the_protocol(tmp_path):
    """Samples vs reference items, the k of P/R and D/C, the networks of the columns and the diversity subset."""
    records = _records(tmp_path)
    for record in records:
        doc = read_json(record.path)
        doc["metric_options"].update(num_reference=20000, diversity_conditions=3, diversity_per_condition=10)
        doc["feature_weights"] = {"inception": [], "sscd": []}
        write_json_atomic(record.path, doc)
    written = write_paper_tables(load_metric_records([r.path for r in records]), {"shapes": 4.0}, tmp_path / "out")
    line = ("Protocol: 600 samples per row vs 20000 reference items (the training set); FD, precision/recall (k = 3), "
            "density/coverage (k = 5) and Vendi on inception features; FD, Vendi and MSS also on sscd; MSS and "
            "per-condition Vendi on 3 conditions x 10 samples.")
    markdown = next(p for p in written if p.name == "table1_shapes.md").read_text().splitlines()
    latex = next(p for p in written if p.name == "table1_shapes.tex").read_text().splitlines()
    assert line in markdown and f"% {line}" in latex

"""``python -m metrics from-features`` end to end, as a Snakemake rule or a person would call it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metrics import compute_all, keys
from metrics.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "metrics", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture()
def feature_files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(150, 6)).astype(np.float32)
    fake = (rng.normal(size=(120, 6)) + 0.4).astype(np.float32)
    labels = np.repeat(np.arange(3), 40)
    np.save(tmp_path / "real.npy", real)
    np.savez(tmp_path / "fake.npz", features=fake, other=np.zeros(3))
    np.save(tmp_path / "labels.npy", labels)
    np.savez(tmp_path / "no_key.npz", feats=fake)
    nan_fake = fake.copy()
    nan_fake[5, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan_fake)
    return {
        "real": tmp_path / "real.npy",
        "fake": tmp_path / "fake.npz",
        "labels": tmp_path / "labels.npy",
        "no_key": tmp_path / "no_key.npz",
        "nan": tmp_path / "nan.npy",
        "dir": tmp_path,
    }


def test_json_output_matches_api(feature_files: dict[str, Path]) -> None:
    out_file = feature_files["dir"] / "sub" / "metrics.json"
    proc = _run(
        "from-features",
        "--real",
        str(feature_files["real"]),
        "--fake",
        str(feature_files["fake"]),
        "--k",
        "3",
        "--k-dc",
        "5",
        "--labels-fake",
        str(feature_files["labels"]),
        "--json",
        "--out",
        str(out_file),
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)  # exactly one JSON object on stdout
    expected = compute_all(
        np.load(feature_files["real"]),
        np.load(feature_files["fake"])["features"],
        k_pr=3,
        k_dc=5,
        labels_fake=np.load(feature_files["labels"]),
    )
    for name, value in expected.items():
        assert record[name] == pytest.approx(value, rel=1e-12), name
    assert record[keys.K_PR] == 3 and record[keys.K_DC] == 5 and record[keys.FEATURE_DIM] == 6
    assert record[keys.NUM_REAL] == 150 and record[keys.NUM_FAKE] == 120
    assert json.loads(out_file.read_text()) == record


def test_table_output(feature_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "from-features",
            "--real",
            str(feature_files["real"]),
            "--fake",
            str(feature_files["fake"]),
            "--vendi-q",
            "inf",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert set(keys.SET_METRIC_KEYS) <= set(names)
    assert "vendi_q" in names and lines[names.index("vendi_q")].split()[1] == "inf"


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("missing", "no such file"),
        ("no_key", "expected an array named 'features'"),
        ("nan", "contain NaN"),
    ],
)
def test_user_errors_exit_2_without_traceback(feature_files: dict[str, Path], which: str, message: str) -> None:
    fake = feature_files["dir"] / "missing.npy" if which == "missing" else feature_files[which]
    proc = _run("from-features", "--real", str(feature_files["real"]), "--fake", str(fake), "--json")
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_in_process_errors(feature_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    real, fake = str(feature_files["real"]), str(feature_files["fake"])
    assert main(["from-features", "--real", real, "--fake", fake, "--k", "0"]) == 2
    assert "k_pr=0" in capsys.readouterr().err
    txt = feature_files["dir"] / "x.txt"
    txt.write_text("1 2 3")
    assert main(["from-features", "--real", str(txt), "--fake", fake]) == 2
    assert "unsupported suffix '.txt'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as excinfo:  # argparse usage errors also exit with 2
        main(["from-features", "--real", real])
    assert excinfo.value.code == 2

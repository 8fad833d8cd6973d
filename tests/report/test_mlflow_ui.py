"""The runs as a researcher sees them: `mlflow ui` on the report's store, rendered by a real headless Chromium.

The rendered DOM (after the UI's JavaScript ran) must show the experiment's parent run and a training run's
curves; a screenshot of each page is kept in the test's temporary folder. Skips where Chromium is not installed
(`apt-get install chromium`; `.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kaleido.report.cli import main
from metrics.io import read_json, write_text_atomic

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# slow: starts the MLflow server and a headless browser (~50 s on 2 cores)
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)"), pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1600,1000", "--run-all-compositor-stages-before-draw",
                           "--virtual-time-budget=30000", *args, url],
                          capture_output=True, text=True, timeout=180)


def test_mlflow_ui_shows_parent_runs_and_training_curves(report_inputs, tmp_path):
    root: Path = report_inputs["root"]
    log = root / "results/toy2d/train/kaleido/kmeans/train_log.jsonl"
    write_text_atomic(log, "".join(f'{{"step": {s}, "loss": {2.0 / s}, "loss_diff": {1.0 / s}, "seconds": {s}}}\n'
                                   for s in (10, 20, 30)))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    assert main(["--metrics", *report_inputs["metrics"], "--out-dir", "reports", "--tracking-uri", uri,
                 "--train-logs", str(log.relative_to(root))]) == 0
    run_ids = read_json(root / "reports" / "mlflow_runs.json")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host",
                               "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(base, timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow ui did not start"
                time.sleep(1)
        from mlflow import MlflowClient

        experiment = MlflowClient(uri).get_experiment_by_name("kaleido/toy2d").experiment_id
        runs_page = f"{base}/#/experiments/{experiment}/runs?workflowType=machine_learning"
        dom = _chromium(runs_page, "--dump-dom").stdout
        assert "table1" in dom and "matching runs" in dom, dom[-2000:]
        train_page = (f"{base}/#/experiments/{experiment}/runs/{run_ids['toy2d/train/kaleido/kmeans']}"
                      "/model-metrics?workflowType=machine_learning")
        dom = _chromium(train_page, "--dump-dom").stdout
        assert "train/kaleido/kmeans" in dom and "loss_diff" in dom, dom[-2000:]
        for name, url in (("runs", runs_page), ("training", train_page)):
            shot = tmp_path / f"mlflow_{name}.png"
            _chromium(url, f"--screenshot={shot}")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)

"""A new metric from one module plus one registry line, run by the metrics CLI and by the harness's DAG.

The plugin below is what README "Extending" tells a user to write: one :func:`metrics.metric_registry.register_metric`
call in a module outside the package, named by ``--plugin`` (the metrics CLI) or the config's ``plugins:`` list (the
harness). Its number has a closed form, computed here with numpy.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from dag_helpers import SMALL_TARGET, executed_rules, snakemake

from metrics.io import read_json

PLUGIN = '''"""``norm_gap``: |mean ||x||_p over the generated rows - the same over the reference rows|."""
import numpy as np

from metrics.metric_registry import Metric, Option, ResultKey, register_metric


def norm_gap(inputs, *, norm_gap_order):
    def mean_norm(x):
        return float(np.linalg.norm(x, ord=norm_gap_order, axis=1).mean())

    return {"norm_gap": abs(mean_norm(inputs.fake) - mean_norm(inputs.real))}


register_metric(Metric(
    "norm_gap", norm_gap, (ResultKey("norm_gap", lower_is_better=True, title="Norm gap", column_order=55),),
    (Option("norm_gap_order", 2, "order p of the row norm", schema={"type": "integer", "minimum": 1}),),
    needs=("real",), reference="closed form (numpy.linalg.norm)"))
'''


def closed_form(real: np.ndarray, fake: np.ndarray, p: int) -> float:
    return abs(np.linalg.norm(fake, ord=p, axis=1).mean() - np.linalg.norm(real, ord=p, axis=1).mean())


def test_a_metric_in_its_own_module_runs_through_the_metrics_cli(tmp_path):
    (tmp_path / "norm_gap_metric.py").write_text(PLUGIN)
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(200, 8)), rng.normal(0.3, 1.2, size=(150, 8))
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "metrics", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)

    common = ["from-features", "--real", "real.npy", "--fake", "fake.npy", "--json"]
    out = cli("--plugin", "norm_gap_metric", *common, "--metrics", "fid,norm_gap", "--norm-gap-order", "1")
    assert out.returncode == 0, out.stderr
    result = read_json_text(out.stdout)
    assert result["norm_gap"] == pytest.approx(closed_form(real, fake, 1), rel=1e-12)
    assert "fd" in result and "precision" not in result  # only the metrics asked for
    out = cli("--plugin", "norm_gap_metric", *common)  # by default every metric that applies, the plugin's too
    assert out.returncode == 0, out.stderr
    result = read_json_text(out.stdout)
    assert result["norm_gap"] == pytest.approx(closed_form(real, fake, 2), rel=1e-12) and "recall" in result

    out = cli(*common, "--metrics", "norm_gap")  # without the plugin: unknown, and the error lists the metrics
    assert out.returncode == 2 and "norm_gap" in out.stderr and "fid" in out.stderr, out.stderr


def read_json_text(text: str) -> dict:
    import json

    data = json.loads(text)
    return data.get("metrics", data)


@pytest.mark.slow
def test_a_metric_plugin_joins_the_dag_and_its_table_column(run_copy):
    (run_copy / "norm_gap_metric.py").write_text(PLUGIN)  # the workdir is on the jobs' PYTHONPATH
    path = run_copy / "config" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["plugins"] = ["norm_gap_metric"]  # the one line that registers the metric
    cfg["experiments"]["toy2d"]["metrics"]["norm_gap_order"] = 1
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(run_copy, "--cores", "2", SMALL_TARGET)

    results = sorted((run_copy / "results" / "toy2d" / "metrics").rglob("*.json"))
    assert results
    for result in results:
        record = read_json(result)
        assert record["metrics"]["norm_gap"] >= 0 and record["metric_options"]["norm_gap_order"] == 1
    assert "norm_gap" in (run_copy / SMALL_TARGET).read_text().splitlines()[0]
    table = (run_copy / "reports" / "table1_toy2d.md").read_text()
    assert "| Norm gap ↓ |" in table, table  # its column, titled and directed by its registry entry
    assert "train" not in executed_rules(proc) and "sample" not in executed_rules(proc)  # a metric reruns metrics

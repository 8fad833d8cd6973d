"""Bad numbers reaching the metric step (NaN features, mismatched feature dimensions) stop it with a clear error
naming the file; no metric JSON is written."""

from __future__ import annotations

import numpy as np
import pytest
from dag_helpers import env_for
from stage_helpers import run_module

from metrics.io import load_npz, save_npz_atomic

pytestmark = pytest.mark.slow

EXP = "results/toy2d"


@pytest.mark.parametrize(("damage", "expected"), [
    ("nan", "contain NaN values (first bad row 7)"),
    ("dimension", "feature dimensions differ: real has d=2, fake has d=3"),
])
def test_evaluate_refuses_bad_features(finished_run, tmp_path, damage, expected):
    fake = load_npz(finished_run / EXP / "features/identity/mdm/none/w8.npz")
    features = fake["features"].astype(np.float64)
    if damage == "nan":
        features[7, 1] = np.nan
    else:
        features = np.concatenate([features, features[:, :1]], axis=1)
    bad = tmp_path / "fake.npz"
    save_npz_atomic(bad, meta=fake.get("meta"), features=features, labels=fake["labels"])
    (config,) = (finished_run / "results" / ".configs").glob("*.yaml")
    out = tmp_path / "metrics.json"
    proc = run_module(["-m", "kaleido.evaluate", "--config", str(config), "--experiment", "toy2d", "--method", "mdm",
                       "--latent", "none", "--guidance", "8", "--real",
                       str(finished_run / EXP / "features/identity/reference.npz"), "--fake", str(bad), "--out",
                       str(out), *map(str, sorted((finished_run / EXP / "samples/mdm/none/w8").glob("*.npz")))],
                      tmp_path, env=env_for(finished_run))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert expected in proc.stderr and str(bad) in proc.stderr, proc.stderr
    assert not out.exists()


def test_singular_covariances_give_the_exact_distance_and_non_covariances_an_error():
    """Rank-deficient covariances (fewer samples than dimensions, constant features) are valid: the PSD square-root
    formulation gives the closed form with no ε offset. A matrix that is not a covariance is a clear error."""
    from metrics.frechet import frechet_distance

    zero = np.zeros(3)
    # N(0, diag(1, 0, 0)) vs N(0, diag(4, 0, 0)): FD = 1 + 4 - 2 * sqrt(1 * 4) = 1
    assert frechet_distance(zero, np.diag([1.0, 0, 0]), zero, np.diag([4.0, 0, 0])) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="negative eigenvalue"):
        frechet_distance(zero, np.diag([1.0, -1.0, 0]), zero, np.eye(3))

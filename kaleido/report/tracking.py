"""Idempotent MLflow sync: exactly one active, finished run per run key, matching its :class:`RunSpec`.

For each spec the experiment ``kaleido/{experiment}`` is searched for active runs whose
:data:`~kaleido.report.runs.RUN_KEY_TAG` tag holds the spec's key:

- one FINISHED run whose :data:`~kaleido.report.runs.CONTENT_HASH_TAG` equals the spec's hash -> kept untouched;
- otherwise every run of the key is deleted (soft delete; ``mlflow gc`` purges) and a fresh run is created.

Runs nest: each experiment has a parent run (its tables and figures) and the metric, latent-quality and training
runs are its children (tag ``mlflow.parentRunId``). Parents are synced first; a kept child whose parent was
replaced only gets its parent tag updated.

A fresh run gets its content hash tag only after its params, metrics and artifacts are all logged and is then
marked FINISHED, so a run interrupted half-way never looks complete and is replaced by the next sync.
The report CLI is the only MLflow writer of the harness (no parallel jobs race on the store).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kaleido.report.runs import CONTENT_HASH_TAG, RUN_KEY_TAG, RunSpec

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: Default store when neither ``--tracking-uri`` nor ``MLFLOW_TRACKING_URI`` is given.
DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
#: MLflow experiment name of a config experiment.
EXPERIMENT_NAME = "kaleido/{experiment}"
#: The UI opens these experiments in its "Machine learning" view (runs, metrics, charts), not the GenAI one.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
#: MLflow's tag nesting a run under another in the UI.
PARENT_TAG = "mlflow.parentRunId"
#: Batch limits of ``log_batch`` (mlflow.utils.validation).
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else :data:`DEFAULT_TRACKING_URI`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(tracking_uri: str) -> Path | None:
    """Database file of a ``sqlite:///path`` URI (relative to the current directory unless absolute)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    path = tracking_uri[len(prefix):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def default_artifact_root(tracking_uri: str) -> Path | None:
    """``<db dir>/mlartifacts`` for a sqlite store (so nothing lands in the CWD's ``mlruns/``), else None
    (a server or file store decides where artifacts go)."""
    db = sqlite_path(tracking_uri)
    return None if db is None else db.resolve().parent / "mlartifacts"


@dataclass
class SyncResult:
    """Outcome of :func:`sync_runs`: run id per run key and which keys were created/replaced/kept."""

    run_ids: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def make_client(tracking_uri: str) -> MlflowClient:
    """An :class:`MlflowClient` for ``tracking_uri``; a sqlite store is first made complete by
    :func:`~kaleido.report.sqlite_store.prepare_sqlite_store` (created atomically, a killed creation's leftovers
    repaired).

    Raises:
        InputError: the sqlite store is unusable and holds runs (see ``prepare_sqlite_store``).
    """
    from mlflow.tracking import MlflowClient

    from kaleido.report.sqlite_store import prepare_sqlite_store

    db = sqlite_path(tracking_uri)
    if db is not None:
        prepare_sqlite_store(db, default_artifact_root(tracking_uri))
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, experiment: str, artifact_root: Path | None) -> str:
    """Id of the MLflow experiment of ``experiment``, created (artifacts under ``artifact_root/experiment``) or
    restored as needed."""
    name = EXPERIMENT_NAME.format(experiment=experiment)
    found = client.get_experiment_by_name(name)
    if found is None:
        location = None if artifact_root is None else (artifact_root / experiment).resolve().as_uri()
        log.info("mlflow: creating experiment %s (artifacts: %s)", name, location or "store default")
        return client.create_experiment(name, artifact_location=location,
                                        tags={"kaleido.experiment": experiment, **EXPERIMENT_TAGS})
    if found.lifecycle_stage == "deleted":
        log.info("mlflow: restoring deleted experiment %s", name)
        client.restore_experiment(found.experiment_id)
    for key, value in EXPERIMENT_TAGS.items():  # experiments made by older versions
        if found.tags.get(key) != value:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def _active_runs(client: MlflowClient, experiment_id: str) -> Iterator[Run]:
    from mlflow.entities import ViewType

    token = None
    while True:
        page = client.search_runs([experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                  order_by=["attributes.start_time ASC"], page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def runs_by_key(client: MlflowClient, experiment_id: str) -> dict[str, list[Run]]:
    """Active runs of an experiment grouped by their run-key tag (runs without the tag are ignored)."""
    grouped: dict[str, list[Run]] = {}
    for run in _active_runs(client, experiment_id):
        key = run.data.tags.get(RUN_KEY_TAG)
        if key is not None:
            grouped.setdefault(key, []).append(run)
    return grouped


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def create_run(client: MlflowClient, experiment_id: str, spec: RunSpec, parent_id: str | None = None) -> str:
    """Create and fill a fresh run for ``spec`` (a child of ``parent_id``); return its id (marked FAILED and
    re-raised on error)."""
    from mlflow.entities import Metric, Param

    tags = {**spec.tags, RUN_KEY_TAG: spec.run_key, **({PARENT_TAG: parent_id} if parent_id else {})}
    run = client.create_run(experiment_id, run_name=spec.run_name, tags=tags)
    run_id = run.info.run_id
    try:
        for chunk in _chunks([Param(k, v) for k, v in sorted(spec.params.items())], _MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=chunk)
        timestamp = int(time.time() * 1000)
        metrics = [Metric(k, v, timestamp, step) for k, points in sorted(spec.metric_history.items())
                   for step, v in points]
        metrics += [Metric(k, v, timestamp, 0) for k, v in sorted(spec.metrics.items()) if k not in spec.metric_history]
        for chunk in _chunks(metrics, _MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=chunk)
        for path, artifact_dir in spec.artifacts:
            client.log_artifact(run_id, str(path), artifact_dir)
        if spec.make_artifacts is not None:
            with tempfile.TemporaryDirectory(prefix="kaleido-report-") as folder:
                for path, artifact_dir in spec.make_artifacts(Path(folder)):
                    client.log_artifact(run_id, str(path), artifact_dir)
        client.set_tag(run_id, CONTENT_HASH_TAG, spec.content_hash)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def sync_runs(client: MlflowClient, specs: Sequence[RunSpec], artifact_root: Path | None = None) -> SyncResult:
    """Make the store hold exactly one active, finished run per spec (see module docstring).

    Runs of keys not among ``specs`` are left alone.
    """
    keys = [spec.run_key for spec in specs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate run keys: {sorted({k for k in keys if keys.count(k) > 1})}")
    result = SyncResult()
    for experiment in sorted({spec.experiment for spec in specs}):
        experiment_id = ensure_experiment(client, experiment, artifact_root)
        existing = runs_by_key(client, experiment_id)
        # parents first, so children can point at them
        for spec in sorted((s for s in specs if s.experiment == experiment), key=lambda s: s.parent_key is not None):
            parent_id = result.run_ids.get(spec.parent_key) if spec.parent_key else None
            runs = existing.get(spec.run_key, [])
            keep = next((r for r in runs if r.info.status == "FINISHED"
                         and r.data.tags.get(CONTENT_HASH_TAG) == spec.content_hash), None)
            for run in runs:
                if run is not keep:
                    client.delete_run(run.info.run_id)
            if keep is not None:
                if parent_id and keep.data.tags.get(PARENT_TAG) != parent_id:  # the parent was replaced
                    client.set_tag(keep.info.run_id, PARENT_TAG, parent_id)
                result.run_ids[spec.run_key] = keep.info.run_id
                result.unchanged.append(spec.run_key)
                continue
            result.run_ids[spec.run_key] = create_run(client, experiment_id, spec, parent_id)
            (result.replaced if runs else result.created).append(spec.run_key)
            log.debug("mlflow: %s run %s", "replaced" if runs else "created", spec.run_key)
    return result

"""What one MLflow run holds: params, metrics, tags and artifacts of a metric or extra JSON, as a :class:`RunSpec`.

Nothing here talks to MLflow; :mod:`kaleido.report.tracking` writes the specs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaleido.provenance import config_hash
from kaleido.report.collect import ExtraRecord, MetricRecord

#: Bump when what a run holds changes for equal inputs (new tags, params, artifacts): every run is then replaced.
RUN_FORMAT_VERSION = 1
#: MLflow limits (mlflow.utils.validation): key length, param and tag value length.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
#: Tag holding the run key: how the report finds a key's existing run.
RUN_KEY_TAG = "kaleido.run_key"
#: Tag holding :attr:`RunSpec.content_hash`: an existing run is kept only while it matches.
CONTENT_HASH_TAG = "kaleido.content_hash"

_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\- /]")

#: Writes extra artifacts into the given temporary folder; returns (file, artifact sub-folder) pairs.
ArtifactMaker = Callable[[Path], list[tuple[Path, str | None]]]


@dataclass(frozen=True)
class RunSpec:
    """Everything one MLflow run should hold; equal specs (same ``content_hash``) mean an unchanged run."""

    experiment: str
    run_key: str
    run_name: str
    content_hash: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: tuple[tuple[Path, str | None], ...] = ()
    make_artifacts: ArtifactMaker | None = field(default=None, compare=False, repr=False)


def mlflow_key(key: str) -> str:
    """``key`` made valid for MLflow: unsupported characters -> ``_``, no ``//``, no leading ``/`` or ``.``,
    at most :data:`MAX_KEY_LENGTH` characters."""
    key = _BAD_KEY_CHARS.sub("_", key)
    key = re.sub(r"/+", "/", key).strip("/ ")
    key = re.sub(r"(^|/)\.+(?=/|$)", r"\1_", key)  # "." and ".." path segments
    return (key or "_")[:MAX_KEY_LENGTH]


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> ``{"a.b.c": "value"}`` with string values; lists stay one JSON-encoded value.

    Keys are made MLflow-valid (:func:`mlflow_key`) and values cut to :data:`MAX_PARAM_VALUE_LENGTH`; when two
    keys collide after that, the first (in sorted order) wins.
    """
    flat: dict[str, str] = {}
    for name in sorted(config, key=str):
        value = config[name]
        dotted = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            for key, text in flatten(value, f"{dotted}.").items():
                flat.setdefault(key, text)
        else:
            flat.setdefault(mlflow_key(dotted), _value_text(value)[:MAX_PARAM_VALUE_LENGTH])
    return flat


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The finite metrics, keys made MLflow-valid (NaN, None and inf are left out)."""
    return {mlflow_key(name): float(value) for name, value in sorted(metrics.items())
            if value is not None and math.isfinite(value)}


def provenance_tags(provenance: Mapping[str, Any]) -> dict[str, str]:
    """Tags from a provenance record: git commit/dirty, config and code hash, ``pkg.<name>`` versions."""
    git = provenance.get("git") if isinstance(provenance.get("git"), Mapping) else {}
    dirty = git.get("dirty")
    tags = {
        "git.commit": str(git.get("commit") or "unknown"),
        "git.dirty": "unknown" if dirty is None else str(bool(dirty)).lower(),
        "kaleido.config_hash": str(provenance.get("config_hash") or "unknown"),
        "kaleido.code_hash": str(provenance.get("code_hash") or "unknown"),
        "kaleido.entry_point": str(provenance.get("entry_point") or "unknown"),
    }
    if git.get("commit"):
        tags["mlflow.source.git.commit"] = str(git["commit"])
    packages = provenance.get("packages") if isinstance(provenance.get("packages"), Mapping) else {}
    for name, version in sorted(packages.items()):
        tags[mlflow_key(f"pkg.{name}")] = "not installed" if version is None else str(version)
    return {key: value[:MAX_TAG_VALUE_LENGTH] for key, value in tags.items()}


def _config_params(provenance: Mapping[str, Any]) -> dict[str, str]:
    config = provenance.get("config")
    return flatten(config) if isinstance(config, Mapping) else {}


def metric_run_spec(record: MetricRecord, scatter_points: int) -> RunSpec:
    """The run of one metric JSON: config params, numeric metrics, provenance tags, the JSON (+ a toy scatter).

    Args:
        record: the validated metric JSON.
        scatter_points: samples in the run's scatter artifact (toy data only; 0 disables the scatter).
    """
    toy_scatter = record.is_toy and scatter_points > 0
    tags = {
        RUN_KEY_TAG: record.run_key,
        "kaleido.experiment": record.experiment,
        "kaleido.dataset": record.dataset,
        "kaleido.method": record.method,
        "kaleido.latent": record.latent,
        "kaleido.guidance": f"{record.guidance:g}",
        "kaleido.num_samples": str(record.num_samples),
        "kaleido.feature_net": record.feature_net,
        "kaleido.metrics_json": str(record.path),
        "kaleido.metrics_json_hash": record.content_hash,
        **{mlflow_key(f"kaleido.metric_options.{k}"): _value_text(v)[:MAX_TAG_VALUE_LENGTH]
           for k, v in sorted(record.metric_options.items())},
        **provenance_tags(record.provenance),
    }
    content_hash = config_hash({"format": RUN_FORMAT_VERSION, "input": record.content_hash, "kind": "metrics",
                                "scatter_points": scatter_points if toy_scatter else 0})

    def make_scatter(folder: Path) -> list[tuple[Path, str | None]]:
        from kaleido.report.figures import write_run_scatter  # matplotlib only when a run is (re)created

        return [(write_run_scatter(record, scatter_points, folder / "samples_scatter.png"), "samples")]

    return RunSpec(experiment=record.experiment, run_key=record.run_key, run_name=record.run_name,
                   content_hash=content_hash, params=_config_params(record.provenance),
                   metrics=finite_metrics(record.metrics), tags=tags, artifacts=((record.path, "metrics"),),
                   make_artifacts=make_scatter if toy_scatter else None)


def extra_run_spec(record: ExtraRecord) -> RunSpec:
    """The run of one extra JSON (e.g. latent-recovery quality): its metrics, provenance and the JSON itself."""
    tags = {
        RUN_KEY_TAG: record.run_key,
        "kaleido.experiment": record.experiment,
        "kaleido.latent": record.latent,
        "kaleido.extra_json": str(record.path),
        "kaleido.extra_json_hash": record.content_hash,
        **provenance_tags(record.provenance),
    }
    content_hash = config_hash({"format": RUN_FORMAT_VERSION, "input": record.content_hash, "kind": "extra"})
    return RunSpec(experiment=record.experiment, run_key=record.run_key, run_name=record.run_name,
                   content_hash=content_hash, params=_config_params(record.provenance),
                   metrics=finite_metrics(record.metrics), tags=tags, artifacts=((record.path, "extra"),))

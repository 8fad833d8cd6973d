"""What one MLflow run holds: params, metrics, tags and artifacts of a metric or extra JSON, as a :class:`RunSpec`.

Nothing here talks to MLflow; :mod:`kaleido.report.tracking` writes the specs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaleido.provenance import config_hash
from kaleido.report.collect import ExtraRecord, MetricRecord, ReportInputError

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
    #: step metrics (name -> ((step, value), ...)), e.g. training curves; ``metrics`` hold the final values
    metric_history: dict[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    #: run key of the parent run (MLflow tag ``mlflow.parentRunId``); not part of ``content_hash``
    parent_key: str | None = None


def summary_key(experiment: str) -> str:
    """Run key of an experiment's parent run, which holds its tables and figures."""
    return f"{experiment}/table1"


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
        **{mlflow_key(f"kaleido.weights.{check['name']}.{field}"): str(check[field])
           for checks in (record.raw.get("feature_weights") or {}).values() for check in checks
           for field in ("sha256", "verified")},
    }
    content_hash = config_hash({"format": RUN_FORMAT_VERSION, "input": record.content_hash, "kind": "metrics",
                                "scatter_points": scatter_points if toy_scatter else 0})

    def make_scatter(folder: Path) -> list[tuple[Path, str | None]]:
        from kaleido.report.figures import write_run_scatter  # matplotlib only when a run is (re)created

        return [(write_run_scatter(record, scatter_points, folder / "samples_scatter.png"), "samples")]

    return RunSpec(experiment=record.experiment, run_key=record.run_key, run_name=record.run_name,
                   content_hash=content_hash, params=_config_params(record.provenance),
                   metrics=finite_metrics(record.metrics), tags=tags, artifacts=((record.path, "metrics"),),
                   make_artifacts=make_scatter if toy_scatter else None, parent_key=summary_key(record.experiment))


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
                   metrics=finite_metrics(record.metrics), tags=tags, artifacts=((record.path, "extra"),),
                   parent_key=summary_key(record.experiment))


def _file_hash(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def summary_run_spec(experiment: str, files: Sequence[Path]) -> RunSpec:
    """The parent run of an experiment: its tables (``tables/``) and figures (``figures/``) as artifacts, tagged
    with the snakemake and kaleido versions; replaced whenever a file's bytes change."""
    files = sorted(files, key=lambda p: p.name)
    tags = {RUN_KEY_TAG: summary_key(experiment), "kaleido.experiment": experiment,
            "pkg.snakemake": _version("snakemake"), "pkg.mlflow": _version("mlflow")}
    content_hash = config_hash({"format": RUN_FORMAT_VERSION, "files": _file_hash(files), "kind": "summary"})
    artifacts = tuple((p, "figures" if p.suffix in (".png", ".pdf") else "tables") for p in files)
    return RunSpec(experiment=experiment, run_key=summary_key(experiment), run_name="table1",
                   content_hash=content_hash, tags=tags, artifacts=artifacts)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def training_log_location(path: Path) -> tuple[str, str, str]:
    """(experiment, role, latent) of ``results/<experiment>/train/<role>/<latent>/train_log.jsonl``."""
    parts = path.parts
    if len(parts) < 5 or parts[-4] != "train" or path.name != "train_log.jsonl":
        raise ReportInputError(f"{path}: a training log must be <results>/<experiment>/train/<role>/<latent>/"
                               "train_log.jsonl")
    return parts[-5], parts[-3], parts[-2]


def training_run_spec(path: Path) -> RunSpec:
    """A training run's curves: every numeric field of ``train_log.jsonl`` as a step metric (final values as
    the run's metrics), the log as an artifact."""
    experiment, role, latent = training_log_location(path)
    history: dict[str, list[tuple[int, float]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            entry = json.loads(line)
            step = int(entry["step"])
        except (ValueError, KeyError, TypeError) as err:
            raise ReportInputError(f"{path}:{number}: not a training log line with a 'step' ({err})") from None
        for name, value in entry.items():
            if name != "step" and isinstance(value, int | float) and not isinstance(value, bool) \
                    and math.isfinite(value):
                history.setdefault(mlflow_key(name), []).append((step, float(value)))
    key = f"{experiment}/train/{role}/{latent}"
    tags = {RUN_KEY_TAG: key, "kaleido.experiment": experiment, "kaleido.role": role, "kaleido.latent": latent,
            "kaleido.train_log": str(path)}
    content_hash = config_hash({"format": RUN_FORMAT_VERSION, "files": _file_hash([path]), "kind": "train"})
    return RunSpec(experiment=experiment, run_key=key, run_name=f"train/{role}/{latent}", content_hash=content_hash,
                   metrics={name: points[-1][1] for name, points in history.items()}, tags=tags,
                   artifacts=((path, "train"),), metric_history={k: tuple(v) for k, v in history.items()},
                   parent_key=summary_key(experiment))

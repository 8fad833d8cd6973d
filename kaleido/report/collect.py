"""Read and validate the report's inputs: per-run metric JSON files and per-experiment extra JSON files.

A metric JSON (written by ``kaleido.evaluate``) describes one (experiment, method, latent, guidance) run::

    {"experiment": "toy2d", "dataset": "toy2d", "method": "mdm", "latent": "none", "guidance": 8.0,
     "num_samples": 50000, "feature_net": "identity", "metrics": {"fd": 0.12, ...},
     "metric_options": {"k_pr": 3, ...}, "samples": ["results/.../shard000.npz", ...], "provenance": {...}}

Every problem is reported with the file it comes from; all problems of one call are reported together.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaleido.config import format_guidance
from kaleido.provenance import config_hash
from metrics.io import read_json
from metrics.metric_registry import always_keys

#: Fixed method order of table1 and the figures; methods not listed follow alphabetically.
METHOD_ORDER: tuple[str, ...] = ("mdm", "mdm_cads", "mdm_autoguidance", "mdm_interval", "kaleido", "kaleido_cads",
                                 "kaleido_interval")
#: Toy mode metrics (kaleido.evaluate, outside the metric registry) that every table has a column for.
TOY_METRICS: tuple[str, ...] = ("modes_covered", "mode_entropy")
#: ``dataset`` value of the 2-D toy data (paper fig. 3); its samples are plotted.
TOY_DATASET = "toy2d"

#: Names used in file names, run names and MLflow experiment names.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def core_metrics() -> tuple[str, ...]:
    """Metrics every table has a column for (empty where a run lacks one, e.g. mode metrics on images): the keys
    every metric run returns (:func:`metrics.metric_registry.always_keys`: FD, precision, recall, density,
    coverage, Vendi and plugins'), then :data:`TOY_METRICS`."""
    return (*always_keys(), *TOY_METRICS)


class ReportInputError(ValueError):
    """One or more report inputs are missing, malformed or clash; the message names every file involved."""


def method_rank(method: str) -> tuple[int, str]:
    """Sort key of a method name: position in :data:`METHOD_ORDER`, then alphabetical for the others."""
    if method in METHOD_ORDER:
        return METHOD_ORDER.index(method), ""
    return len(METHOD_ORDER), method


def guidance_tag(guidance: float) -> str:
    """Guidance weight as it appears in run names, keys and figure names: ``8.0 -> "w8"``, ``1.5 -> "w1.5"``
    (the path form of :func:`kaleido.config.format_guidance` after a ``w``)."""
    return f"w{format_guidance(guidance)}"


@dataclass(frozen=True)
class MetricRecord:
    """One validated metric JSON file.

    ``metrics`` keeps the numeric entries only (``null`` becomes NaN); ``content_hash`` is a 16-hex hash of
    the file's parsed content (key order and whitespace do not matter).
    """

    path: Path
    experiment: str
    dataset: str
    method: str
    latent: str
    guidance: float
    num_samples: int
    feature_net: str
    metrics: dict[str, float]
    metric_options: dict[str, Any]
    samples: tuple[str, ...]
    provenance: dict[str, Any]
    content_hash: str
    raw: dict[str, Any] = field(repr=False)
    #: bootstrap 95 % interval (low, high) per metric, for metrics that have one (``metrics.bootstrap_resamples``)
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, float]:
        """Identity of the run: (experiment, method, latent, guidance)."""
        return self.experiment, self.method, self.latent, self.guidance

    @property
    def run_name(self) -> str:
        """MLflow run name, unique within the experiment: ``{method}/{latent}/w{guidance:g}``."""
        return f"{self.method}/{self.latent}/{guidance_tag(self.guidance)}"

    @property
    def run_key(self) -> str:
        """Globally unique run key: ``{experiment}/{method}/{latent}/w{guidance:g}``."""
        return f"{self.experiment}/{self.run_name}"

    @property
    def is_toy(self) -> bool:
        """Whether the samples are 2-D toy points that can be scattered."""
        return self.dataset == TOY_DATASET

    def sort_key(self) -> tuple[Any, ...]:
        """Order of table1: experiment, method (:func:`method_rank`), latent, guidance (numeric)."""
        return self.experiment, method_rank(self.method), self.latent, self.guidance


@dataclass(frozen=True)
class ExtraRecord:
    """One validated extra per-experiment JSON file: latent-recovery quality of one latent extractor (``stage``
    ``latents``, the default) or the rates of one latent edit (``edit_<method>_w<g>_<edit>``)."""

    path: Path
    experiment: str
    latent: str
    metrics: dict[str, float]
    provenance: dict[str, Any]
    content_hash: str
    raw: dict[str, Any] = field(repr=False)
    stage: str = "latents"

    @property
    def run_name(self) -> str:
        """MLflow run name: ``{experiment}/{stage}/{latent}``."""
        return f"{self.experiment}/{self.stage}/{self.latent}"

    @property
    def run_key(self) -> str:
        """Globally unique run key (equal to the run name)."""
        return self.run_name


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a ``metrics`` mapping as floats; ``null`` -> NaN, bools -> 0/1, others dropped."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if value is None:
            out[name] = math.nan
        elif isinstance(value, bool) or _is_number(value):
            out[name] = float(value)
    return out


class _Checker:
    """Collects the problems of one JSON document, each prefixed with the file name."""

    def __init__(self, path: Path, doc: Any) -> None:
        self.path = path
        self.doc = doc if isinstance(doc, dict) else {}
        self.problems: list[str] = [] if isinstance(doc, dict) else [f"{path}: top level must be a JSON object"]

    def name(self, key: str) -> str:
        value = self.doc.get(key)
        if not isinstance(value, str) or not _NAME_RE.match(value):
            self.problems.append(f"{self.path}: {key!r} must be a name of letters, digits, '_', '.', '-' "
                                 f"(got {value!r})")
            return ""
        return value

    def string(self, key: str) -> str:
        value = self.doc.get(key)
        if not isinstance(value, str) or not value:
            self.problems.append(f"{self.path}: {key!r} must be a non-empty string (got {value!r})")
            return ""
        return value

    def number(self, key: str) -> float:
        value = self.doc.get(key)
        if not _is_number(value) or not math.isfinite(value):
            self.problems.append(f"{self.path}: {key!r} must be a finite number (got {value!r})")
            return math.nan
        return float(value)

    def integer(self, key: str) -> int:
        value = self.doc.get(key)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.problems.append(f"{self.path}: {key!r} must be a non-negative integer (got {value!r})")
            return 0
        return value

    def mapping(self, key: str, required: bool = True) -> dict[str, Any]:
        if key not in self.doc and not required:
            return {}
        value = self.doc.get(key)
        if not isinstance(value, dict):
            self.problems.append(f"{self.path}: {key!r} must be a JSON object (got {type(value).__name__})")
            return {}
        return value

    def intervals(self, key: str) -> dict[str, tuple[float, float]]:
        """An optional mapping name -> [low, high] of numbers (NaN allowed: a metric undefined on a resample)."""
        out = {}
        for name, bounds in self.mapping(key, required=False).items():
            if (not isinstance(bounds, list) or len(bounds) != 2
                    or not all(b is None or _is_number(b) for b in bounds)):
                self.problems.append(f"{self.path}: {key}.{name} must be [low, high] (got {bounds!r})")
                continue
            out[name] = tuple(math.nan if b is None else float(b) for b in bounds)
        return out

    def string_list(self, key: str) -> tuple[str, ...]:
        value = self.doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problems.append(f"{self.path}: {key!r} must be a list of file paths")
            return ()
        return tuple(value)


def _read(path: Path, problems: list[str]) -> Any:
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError) as err:  # read_json names the file
        problems.append(str(err))
    except OSError as err:
        problems.append(f"{path}: cannot read ({err})")
    return None


def parse_metric_record(path: Path, doc: Any) -> tuple[MetricRecord | None, list[str]]:
    """Validate one parsed metric JSON; return the record (None if invalid) and the problems found."""
    check = _Checker(path, doc)
    record = MetricRecord(
        path=path,
        experiment=check.name("experiment"),
        dataset=check.string("dataset"),
        method=check.name("method"),
        latent=check.name("latent"),
        guidance=check.number("guidance"),
        num_samples=check.integer("num_samples"),
        feature_net=check.string("feature_net"),
        metrics=numeric_metrics(check.mapping("metrics")),
        metric_options=check.mapping("metric_options", required=False),
        samples=check.string_list("samples"),
        provenance=check.mapping("provenance", required=False),
        content_hash=config_hash(doc),
        raw=check.doc,
        ci95=check.intervals("ci95"),
    )
    return (None if check.problems else record), check.problems


def parse_extra_record(path: Path, doc: Any) -> tuple[ExtraRecord | None, list[str]]:
    """Validate one parsed extra JSON (needs ``experiment``, ``latent``, ``metrics``)."""
    check = _Checker(path, doc)
    record = ExtraRecord(
        path=path,
        experiment=check.name("experiment"),
        latent=check.name("latent"),
        metrics=numeric_metrics(check.mapping("metrics")),
        provenance=check.mapping("provenance", required=False),
        content_hash=config_hash(doc),
        raw=check.doc,
        stage=check.name("stage") if isinstance(doc, dict) and "stage" in doc else "latents",
    )
    return (None if check.problems else record), check.problems


def _raise_if(problems: Sequence[str]) -> None:
    if problems:
        head = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        raise ReportInputError(f"{head} with the report inputs:\n  " + "\n  ".join(problems))


def _load_records(paths: Iterable[str | os.PathLike[str]], parse: Any, key: Any, kind: str) -> list[Any]:
    """Read and validate JSON files with ``parse(path, doc) -> (record | None, problems)``.

    Raises :class:`ReportInputError` listing every missing/malformed file and every duplicate ``key(record)``
    with both files that claim it.
    """
    problems: list[str] = []
    by_key: dict[Any, tuple[Path, Any]] = {}
    for raw_path in paths:
        path = Path(raw_path)
        doc = _read(path, problems)
        if doc is None:
            continue
        record, found = parse(path, doc)
        problems.extend(found)
        if record is None:
            continue
        if key(record) in by_key:
            problems.append(f"duplicate {kind} {record.run_key}: both {by_key[key(record)][0]} and {path}")
            continue
        by_key[key(record)] = (path, record)
    _raise_if(problems)
    return [record for _, record in by_key.values()]


def load_metric_records(paths: Iterable[str | os.PathLike[str]]) -> list[MetricRecord]:
    """Metric JSON files, validated and sorted (:meth:`MetricRecord.sort_key`); see :func:`_load_records`."""
    records = _load_records(paths, parse_metric_record, lambda r: r.key, "run")
    return sorted(records, key=MetricRecord.sort_key)


def load_extra_records(paths: Iterable[str | os.PathLike[str]]) -> list[ExtraRecord]:
    """Extra JSON files, validated and sorted by run key; see :func:`_load_records`."""
    return sorted(_load_records(paths, parse_extra_record, lambda r: r.run_key, "extra run"), key=lambda r: r.run_key)

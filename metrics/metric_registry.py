"""The metric registry: one entry per metric, from which the suite, the command line, the harness and the tables
take everything they know about it.

A :class:`Metric` declares its name (what ``compute_all(metrics=...)``, ``--metrics`` and ``kaleido.evaluate``
select it by), the function computing it from a :class:`MetricInputs`, the result keys it returns
(:class:`ResultKey`: direction, table title and place, whether bootstrapped, whether also per extra feature
network), its options with their defaults (:class:`Option`: keyword of ``compute_all``, command-line flag, key of
the config's ``metrics:`` block), what it needs beyond the generated features (``real``, ``labels``, ``logits``)
and its reference implementation. :func:`register_metric` validates an entry and adds it to :data:`METRICS`.

Adding a metric: write a module that calls :func:`register_metric` and name it as a plugin
(:func:`metrics.registry.load_plugins`: ``python -m metrics --plugin MODULE``, ``$KALEIDO_PLUGINS``, or a harness
config's ``plugins:`` list). This module imports no torch and no metric code: the built-in entries name their
functions in :mod:`metrics.metric_functions` by reference, imported when a metric runs.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics import keys
from metrics.registry import Registry

#: what a metric may need beyond the generated features, and the compute_all argument that gives it
NEEDS: dict[str, str] = {"real": "real", "labels": "labels_fake", "logits": "logits_fake"}
#: compute_all / compute_with_ci parameters that no option may shadow
RESERVED = frozenset({"real", "fake", "labels_fake", "logits_fake", "device", "chunk_size", "key_chunk_size",
                      "knn_precision", "metrics", "bootstrap_resamples", "bootstrap_seed"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class MetricInputs:
    """What a metric's compute function receives, checked by :func:`metrics.suite.compute_all`.

    ``real``: (n_real, d) float64 reference features (None when no selected metric needs them), or, when the
    caller passed one, an array read on demand (:class:`metrics.store.ShardedArray`, ``numpy.memmap``: any real
    dtype, not yet checked finite; slice it in row chunks, or ``np.asarray`` it to load it whole); ``fake``:
    (n_fake, d) float64 generated features, finite, same d; ``labels``: (n_fake,) condition ids or None;
    ``logits``: (n_fake, classes) classifier logits or None; ``device``: the torch device for heavy linear algebra;
    ``chunk_size``: query rows per distance block; ``key_chunk_size``: key rows per distance block and rows held on
    the device at once (0 = from free memory); ``knn_precision``: the k-NN distance filter (``keys.KNN_PRECISIONS``;
    speed only, the numbers are the same).
    """

    real: Any
    fake: np.ndarray
    labels: np.ndarray | None
    logits: np.ndarray | None
    device: Any
    chunk_size: int
    key_chunk_size: int = 0
    knn_precision: str = "auto"


@dataclass(frozen=True)
class ResultKey:
    """One number a metric returns.

    ``name``: its key in the results and the metric JSON; ``title``: its column title in the paper's Table 1
    (None: no column) and ``column_order`` its place there (ascending; ties keep registry order);
    ``title_by_net``: the title given the feature network, where the name changes with it (FD -> FID);
    ``needs``: inputs it needs beyond its metric's ("labels": a per-condition number, which the harness computes
    on the diversity subset); ``bootstrap``: False for a spread that gets no interval; ``per_net``: also computed
    on every extra feature network, keyed ``<name>_<net>``.
    """

    name: str
    lower_is_better: bool
    title: str | None = None
    column_order: float = math.inf
    title_by_net: Callable[[str], str] | None = None
    needs: tuple[str, ...] = ()
    bootstrap: bool = True
    per_net: bool = False

    def title_for(self, feature_net: str) -> str | None:
        """The column title on ``feature_net``'s features."""
        return self.title_by_net(feature_net) if self.title_by_net is not None else self.title


@dataclass(frozen=True)
class Option:
    """A setting of one metric: a keyword of ``compute_all``, a command-line flag and a ``metrics:`` config key.

    ``check`` turns a value into the one used or raises ValueError naming it; ``parse`` reads the command-line
    text (default: the type of ``default``; a boolean option is a switch flipping its default); ``flag``: the
    command-line flag (default ``--<name with dashes>``); ``schema``: the value's JSON schema in the config;
    ``rows_cap``: a row count capped at min(n_real, n_fake) by the command line and the harness (the capped value
    is recorded); ``config``: False for an API-only setting (neither a config key nor recorded).
    """

    name: str
    default: Any
    help: str
    check: Callable[[Any], Any] | None = None
    parse: Callable[[str], Any] | None = None
    flag: str | None = None
    schema: Mapping[str, Any] | None = None
    rows_cap: bool = False
    config: bool = True

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Metric:
    """One registry entry: a metric (or a group of numbers computed together).

    ``compute(inputs: MetricInputs, **options) -> {key: float}`` gets the entry's own options as keywords and
    returns a subset of ``keys`` (those whose ``needs`` are met). ``needs``: "real", "labels", "logits".
    ``switch``: an integer option whose 0 turns the metric off (``compute_all`` takes 0 when it is not given, so
    the metric runs only when asked for; the command line and the harness use its default). ``min_rows(options)
    -> (real rows, fake rows)`` the metric needs (at least 2 each in any case). ``reference``: the implementation
    its numbers are checked against (package and URL).
    """

    name: str
    compute: Callable[..., Mapping[str, float]] | str
    keys: tuple[ResultKey, ...]
    options: tuple[Option, ...] = ()
    needs: tuple[str, ...] = ()
    switch: str | None = None
    min_rows: Callable[[Mapping[str, Any]], tuple[int, int]] | None = None
    reference: str = ""
    description: str = ""


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    """Validate ``metric`` and add it to :data:`METRICS`; returns it. Raises ValueError naming the problem: a bad
    name, a key or option another metric already has, an option shadowing a ``compute_all`` parameter, an
    unknown need, a switch that is not an integer option."""
    where = f"metric {metric.name!r}"
    if not _METRIC_NAME.match(metric.name or ""):
        raise ValueError(f"{where}: names are lower-case letters, digits, '_' and '-', starting with a letter")
    if not (callable(metric.compute) or (isinstance(metric.compute, str) and ":" in metric.compute)):
        raise ValueError(f"{where}: compute must be a function (inputs: MetricInputs, **options) -> {{key: value}} "
                         "or a 'module:function' reference to one")
    if not metric.keys:
        raise ValueError(f"{where}: declares no result keys")
    others = registered()
    taken_keys = {key.name: entry.name for entry in others for key in entry.keys}
    taken_options = {option.name: entry.name for entry in others for option in entry.options}
    for need in (*metric.needs, *(n for key in metric.keys for n in key.needs)):
        if need not in NEEDS:
            raise ValueError(f"{where}: needs {need!r}; accepted: {sorted(NEEDS)}")
    names = [key.name for key in metric.keys]
    for name in names:
        if not _NAME.match(name) or names.count(name) > 1 or name in taken_keys:
            owner = taken_keys.get(name, metric.name)
            raise ValueError(f"{where}: result key {name!r} is not a lower-case identifier or is already returned "
                             f"by metric {owner!r}")
    option_names = [option.name for option in metric.options]
    for name in option_names:
        if not _NAME.match(name) or option_names.count(name) > 1 or name in taken_options or name in RESERVED:
            owner = taken_options.get(name, "compute_all" if name in RESERVED else metric.name)
            raise ValueError(f"{where}: option {name!r} is not a lower-case identifier or is already taken by "
                             f"{owner!r}")
    if metric.switch is not None:
        switch = next((o for o in metric.options if o.name == metric.switch), None)
        if switch is None or isinstance(switch.default, bool) or not isinstance(switch.default, int):
            raise ValueError(f"{where}: switch {metric.switch!r} must name one of its integer options")
    return METRICS.register(metric.name)(metric)


def registered() -> list[Metric]:
    """The registered metrics in registration order (built-ins, then plugins)."""
    return [METRICS.get(name) for name in METRICS.in_order()]


def metric_names() -> list[str]:
    """Names of the registered metrics in registration order (the ``metrics=`` / ``--metrics`` choices)."""
    return METRICS.in_order()


def all_keys() -> list[ResultKey]:
    """Every result key, in registration order."""
    return [key for metric in registered() for key in metric.keys]


def all_options() -> list[Option]:
    """Every option, in registration order."""
    return [option for metric in registered() for option in metric.options]


def config_options() -> list[Option]:
    """The options that are config keys and are recorded beside the numbers."""
    return [option for option in all_options() if option.config]


def always_keys() -> tuple[str, ...]:
    """Keys that ``compute_all`` returns for any two feature sets (metrics that need nothing but the real set and
    have no switch, keys with no needs), in registration order."""
    return tuple(key.name for metric in registered() if set(metric.needs) <= {"real"} and metric.switch is None
                 for key in metric.keys if set(key.needs) <= {"real"})


def plain_metrics() -> list[str]:
    """Metrics that need nothing but the two feature sets (no labels, logits or switch): the command line's
    default choice for images."""
    return [metric.name for metric in registered() if set(metric.needs) <= {"real"} and metric.switch is None]


def spread_keys() -> tuple[str, ...]:
    """Keys that are never bootstrapped (spreads over subsets or splits)."""
    return tuple(key.name for key in all_keys() if not key.bootstrap)


def per_net_keys() -> tuple[str, ...]:
    """Keys also computed on every extra feature network (``<key>_<net>``)."""
    return tuple(key.name for key in all_keys() if key.per_net)


def per_net_metrics() -> list[str]:
    """Metrics computed on an extra feature network: those returning a :func:`per_net_keys` key."""
    return [metric.name for metric in registered() if any(key.per_net for key in metric.keys)]


def per_condition(selected: Iterable[str] | None = None) -> tuple[list[str], tuple[str, ...]]:
    """(metrics, keys) among ``selected`` (None = all) that are computed per condition (a key needing labels):
    what the diversity protocol recomputes on its subset."""
    chosen = set(metric_names() if selected is None else selected)
    found = [m for m in registered() if m.name in chosen and any("labels" in k.needs or "labels" in m.needs
                                                                  for k in m.keys)]
    return ([m.name for m in found],
            tuple(k.name for m in found for k in m.keys if "labels" in k.needs or "labels" in m.needs))


def table_keys() -> list[ResultKey]:
    """Keys with a Table 1 column, in column order."""
    return sorted((key for key in all_keys() if key.title is not None), key=lambda key: key.column_order)


def resolve_options(given: Mapping[str, Any], *, selected: Sequence[str] | None, num_real: int, num_fake: int
                    ) -> dict[str, Any]:
    """Every option's value for a run of the metrics ``selected`` (None = all that apply) on n_real x n_fake rows,
    as the command line and the harness pass them to ``compute_all`` and record them.

    ``given`` values (None = not given) replace the defaults; a switch is 0 when its metric is not selected by
    name (None: when not given); ``rows_cap`` options are capped at min(num_real, num_fake).
    """
    known = {option.name for option in all_options()}
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"unknown metric options {unknown}; registered: {sorted(known)}")
    out = {option.name: option.default for option in all_options()}
    out.update({name: value for name, value in given.items() if value is not None})
    for metric in registered():
        if metric.switch is None:
            continue
        off = metric.name not in selected if selected is not None else given.get(metric.switch) is None
        if off:
            out[metric.switch] = 0
    for option in all_options():
        if option.rows_cap:
            out[option.name] = min(out[option.name], num_real, num_fake)
    return out


def config_properties() -> dict[str, dict[str, Any]]:
    """The JSON-schema properties of the config's ``metrics:`` block that the registry defines (one per config
    option: its schema, default and help)."""
    return {option.name: {**(option.schema or {}), "default": option.default, "description": option.help}
            for option in config_options()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One command-line flag per config option (``dest`` = the option's name, default None = not given)."""
    for option in config_options():
        if isinstance(option.default, bool):
            action = "store_false" if option.default else "store_true"
            parser.add_argument(option.cli_flag, dest=option.name, action=action, default=None,
                                help=f"{option.name} = {str(not option.default).lower()} ({option.help}; default "
                                     f"{str(option.default).lower()})")
            continue
        parse = option.parse or type(option.default)
        parser.add_argument(option.cli_flag, dest=option.name, type=parse, default=None,
                            help=f"{option.help} (default {option.default})")


def parse_order(text: str) -> float:
    """argparse type for a Vendi order: a number >= 0 or 'inf'."""
    value = float(text)
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0 or 'inf'")
    return value


def _integer(name: str, minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        from metrics._validate import check_positive_int

        return check_positive_int(value, name, minimum=minimum)

    return check


def _order(value: Any) -> float:
    from metrics._validate import check_order

    return check_order(value)


def _reference(value: Any) -> int | str:
    from metrics._validate import check_reference

    return check_reference(value)


def parse_reference(text: str) -> int | str:
    """argparse type for ``prdc_reference``: 'full' or an integer N >= 2."""
    if text == "full":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'full' nor an integer >= 2")
    return value


def fd_title(feature_net: str) -> str:
    """FD's name by feature network: FID (Inception), FD-DINOv2, else FD (<net>)."""
    if feature_net == "inception":
        return "FID"
    if feature_net.startswith("dinov2"):
        return "FD-DINOv2"
    return f"FD ({feature_net})"


# ---- the built-in metrics (methods.md, "Metrics"); their code is metrics.metric_functions ----

register_metric(Metric(
    "fid", "metrics.metric_functions:fd", (ResultKey(keys.FD, True, "FD", 10, title_by_net=fd_title, per_net=True),),
    needs=("real",),
    reference="torch-fidelity frechet_distance (https://github.com/toshas/torch-fidelity)",
    description="Fréchet distance between Gaussian fits of the two feature sets (FID on Inception features)"))
register_metric(Metric(
    "prdc", "metrics.metric_functions:prdc_metric",
    (ResultKey(keys.PRECISION, False, "Precision", 20), ResultKey(keys.RECALL, False, "Recall", 30),
     ResultKey(keys.DENSITY, False, "Density", 40), ResultKey(keys.COVERAGE, False, "Coverage", 50)),
    (Option("k_pr", 3, "k for precision/recall", _integer("k_pr", 1), flag="--k", schema={"type": "integer",
                                                                                              "minimum": 1}),
     Option("k_dc", 5, "k for density/coverage", _integer("k_dc", 1), schema={"type": "integer", "minimum": 1}),
     Option("prdc_reference", "full", "P/R/D/C reference rows: full (the whole reference set, the paper's "
            "protocol) or N (a subset of N rows, seeded by prdc_reference_seed)", _reference, parse=parse_reference,
            schema={"oneOf": [{"const": "full"}, {"type": "integer", "minimum": 2}], "x-absent-means": "full"}),
     Option("prdc_reference_seed", 0, "seed of the prdc_reference subset (the harness derives it from the "
            "experiment seed)", _integer("prdc_reference_seed", 0), config=False)),
    needs=("real",), min_rows=lambda o: (max(o["k_pr"], o["k_dc"]) + 1, o["k_pr"] + 1),
    reference="prdc.compute_prdc (https://github.com/clovaai/generative-evaluation-prdc)",
    description="k-NN precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)"))
register_metric(Metric(
    "vendi", "metrics.metric_functions:vendi",
    (ResultKey(keys.VENDI, False, "Vendi", 70, per_net=True),
     ResultKey(keys.VENDI_PER_CONDITION, False, "Vendi / class", 80, needs=("labels",), per_net=True)),
    (Option("vendi_q", 1.0, "order of the Vendi score", _order, parse=parse_order,
            schema={"type": "number", "minimum": 0}),),
    reference="vendi_score.score_dual (https://github.com/vertaix/Vendi-Score)",
    description="Vendi score of the generated set (and mean per condition given labels)"))
register_metric(Metric(
    "mss", "metrics.metric_functions:mss_metric", (ResultKey(keys.MSS, True, "MSS", 60, per_net=True),),
    (Option("mss_include_diagonal", True, "MSS averages the full similarity matrix; false: its off-diagonal entries",
            flag="--mss-off-diagonal", schema={"type": "boolean"}),),
    needs=("labels",), reference="CADS reference code (Sadat et al. 2024), mean of the cosine-similarity matrix",
    description="mean similarity score per condition (CADS / Kaleido), lower = more diverse"))
register_metric(Metric(
    "kid", "metrics.metric_functions:kid_metric",
    (ResultKey(keys.KID, True, "KID", 100), ResultKey(keys.KID_STD, True, bootstrap=False)),
    (Option("kid_subsets", 100, "KID subsets (0 = no KID)", _integer("kid_subsets", 0),
            schema={"type": "integer", "minimum": 0}),
     Option("kid_subset_size", 1000, "KID subset size, capped at the set sizes", rows_cap=True,
            schema={"type": "integer", "minimum": 2}),
     Option("kid_seed", 2020, "seed of the KID subsets (torch-fidelity's)", config=False)),
    needs=("real",), switch="kid_subsets",
    reference="torch-fidelity kid_features_to_metric (https://github.com/toshas/torch-fidelity)",
    description="kernel Inception distance (Bińkowski et al. 2018): unbiased polynomial-kernel MMD^2"))
register_metric(Metric(
    "is", "metrics.metric_functions:inception_score_metric",
    (ResultKey(keys.INCEPTION_SCORE, False, "IS", 110), ResultKey(keys.INCEPTION_SCORE_STD, False, bootstrap=False)),
    (Option("is_splits", 10, "Inception Score splits", schema={"type": "integer", "minimum": 1}),),
    needs=("logits",), reference="torch-fidelity isc_features_to_metric (https://github.com/toshas/torch-fidelity)",
    description="Inception Score (Salimans et al. 2016) from classifier logits"))

"""Load, validate and slice the harness configuration.

One source of truth for both Snakemake (``workflow/rules/common.smk``) and the stage CLIs: the JSON schema in
``kaleido/schema/config.schema.yaml`` checks structure and types (its name enumerations are filled from the code's
registries, and registry entries with settings add their blocks), :func:`validate` fills in every ``default`` the
schema states (the one place defaults live) and adds the checks a schema cannot express, and :func:`stage_spec`
returns the slice of the config a stage reads, which the stage records in its output and Snakemake uses as a rerun
trigger.

A setting added after runs exist carries ``x-absent-means: <value>`` in the schema: the value that reproduces what
the code did before the setting existed. While a config resolves it to that value the setting is left out of the
stage slices (:func:`stage_spec`), so adding it reruns nothing; a config (or a later default) that picks another
value changes the slice and reruns what it affects.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from kaleido.data import DATASETS
from kaleido.diffusion import SAMPLERS
from kaleido.errors import ConfigError
from kaleido.guidance import SCHEMES
from kaleido.latents import EXTRACTORS
from kaleido.latents.edits import EDITS
from kaleido.methods import METHODS, NO_LATENT, ROLES
from kaleido.models.archs import ARCHS
from kaleido.models.t5_sizes import prior_source
from metrics.features import FEATURE_NETS, PRECISIONS
from metrics.keys import KNN_PRECISIONS
from metrics.metric_registry import config_properties
from metrics.registry import load_plugins, plugin_kinds, plugin_names

#: Snakemake rules that accept per-rule resources (plus ``default``)
RULES = ("default", "data", "latents", "train", "sample", "features", "evaluate", "report")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


@functools.cache
def schema() -> dict[str, Any]:
    """The JSON schema with every registry enumeration filled in."""
    text = resources.files("kaleido").joinpath("schema/config.schema.yaml").read_text(encoding="utf-8")
    sch = yaml.safe_load(text)
    d = sch["$defs"]
    exp = d["experiment"]["properties"]
    d["model"]["properties"]["arch"]["enum"] = ARCHS.names()
    exp["data"]["properties"]["name"]["enum"] = DATASETS.names()
    exp["latents"]["propertyNames"]["enum"] = EXTRACTORS.names()
    exp["models"]["propertyNames"]["enum"] = ROLES.names()
    exp["sampler"]["properties"]["name"]["enum"] = SAMPLERS.names()
    exp["methods"]["items"]["enum"] = METHODS.names()
    exp["guidance_by_method"]["propertyNames"]["enum"] = METHODS.names()
    exp["report"]["properties"]["guidance_by_method"]["propertyNames"]["enum"] = METHODS.names()
    exp["edits"]["items"]["properties"]["edit"]["enum"] = EDITS.names()
    exp["metrics"]["properties"]["feature_net"]["enum"] = FEATURE_NETS.names()
    exp["metrics"]["properties"]["knn_precision"]["enum"] = list(KNN_PRECISIONS)
    exp["metrics"]["properties"]["feature_precision"]["enum"] = list(PRECISIONS)
    sch["properties"]["resources"]["propertyNames"] = {"enum": list(RULES)}
    metric_options = exp["metrics"]["properties"]
    for name, prop in config_properties().items():
        if name in metric_options:
            raise ConfigError(f"metric option {name!r} would replace the metrics setting {name!r}; rename the option")
        metric_options[name] = prop
    for name in SCHEMES.names():
        options = SCHEMES.get(name).options
        if options is None:
            continue
        if name in exp:
            raise ConfigError(f"guidance scheme {name!r}: its settings block would replace the experiment key "
                              f"{name!r}; register the scheme under another name")
        exp[name] = {"type": "object", "additionalProperties": False, "default": {}, "properties": options,
                     "description": f"settings of the {name} guidance scheme (kaleido.guidance)"}
    return sch


def _fill_defaults(validator_class: Any) -> Any:
    """``validator_class`` that also writes each missing property's schema ``default`` into the instance (a deep
    copy), before checking it, so nested blocks with a default of ``{}`` get their own defaults too."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator: Any, props: dict[str, Any], instance: Any, sch: dict[str, Any]) -> Any:
        if isinstance(instance, dict):
            for key, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, sch)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_DefaultsValidator = _fill_defaults(jsonschema.Draft202012Validator)


def with_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a schema-valid ``cfg`` with every default the schema states filled in."""
    cfg = copy.deepcopy(cfg)
    for _ in _DefaultsValidator(schema()).iter_errors(cfg):
        pass
    return cfg


def block_defaults(block: str) -> dict[str, Any]:
    """The defaults of experiment block ``block`` (``"sampler"``, ``"train"``, ``"cads"``, ...), for code that builds
    a block by hand (benchmarks)."""
    props = schema()["$defs"]["experiment"]["properties"][block]["properties"]
    return {k: copy.deepcopy(v["default"]) for k, v in props.items() if "default" in v}


def _block_settings(block: str) -> dict[str, Any]:
    """The schema properties of experiment block ``block``."""
    return schema()["$defs"]["experiment"]["properties"].get(block, {}).get("properties", {})


def _as_before(block: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` of experiment block ``block`` as a slice holds them: without the settings that hold their
    ``x-absent-means`` value, and without those marked ``x-not-in-slice`` (speed and memory only, never the
    output: ``sampler.batch_size``)."""
    props = _block_settings(block)

    def kept(key: str, value: Any) -> bool:
        prop = props.get(key)
        if not isinstance(prop, dict):
            return True
        return not prop.get("x-not-in-slice") and not ("x-absent-means" in prop and prop["x-absent-means"] == value)

    return {k: v for k, v in values.items() if kept(k, v)}


def _key_path(parts: Any) -> str:
    out = "config"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _schema_errors(cfg: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema())
    messages = []
    for err in sorted(validator.iter_errors(cfg), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        where = _key_path(err.absolute_path)
        if err.validator == "enum" and err.validator_value == []:
            continue
        messages.append(f"{where}: {err.message}")
    return messages


_YAML_TYPES: dict[str, tuple[type, ...]] = {"number": (int, float), "integer": (int,), "boolean": (bool,),
                                            "null": (type(None),)}


def _coerce_scalar_strings(cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``cfg`` whose strings stand where the schema wants a number, integer, boolean or null replaced by
    their YAML reading when it has that type.

    Snakemake's ``--config key='{a: {b: [1, 3]}}'`` parses nested values with YAML's BaseLoader, so every scalar
    arrives as a string; this reads them as the config file would have.
    """
    cfg = copy.deepcopy(cfg)
    validator = jsonschema.Draft202012Validator(schema())
    for _ in range(100):  # each pass fixes every wrong-typed string it sees; nested ones may surface next pass
        changed = False
        for err in validator.iter_errors(cfg):
            wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
            if err.validator != "type" or not isinstance(err.instance, str) or not err.absolute_path:
                continue
            try:
                value = yaml.safe_load(err.instance)
            except yaml.YAMLError:
                continue
            types = tuple(t for name in wanted for t in _YAML_TYPES.get(name, ()))
            if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
                *parents, last = err.absolute_path
                holder = cfg
                for part in parents:
                    holder = holder[part]
                holder[last] = value
                changed = True
        if not changed:
            return cfg
    return cfg


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check ``cfg`` and return a resolved deep copy (defaults filled in); raise :class:`ConfigError` otherwise.

    The error lists every problem found, each as ``config.<key path>: <what is wrong / what is accepted>``.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
    _import_plugins(cfg.get("plugins", []))
    cfg = _coerce_scalar_strings(cfg)
    problems = _schema_errors(cfg)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    cfg = with_defaults(cfg)
    misplaced = sorted(rule for rule, block in cfg.get("resources", {}).items()
                       if "jobs" in block and rule != "latents")
    if misplaced:
        raise ConfigError(f"config.resources.{misplaced[0]}.jobs: only resources.latents takes `jobs` (the latent "
                          "extraction jobs); sampling is split by the experiment's shard_size")
    for name, exp in cfg["experiments"].items():
        where = f"config.experiments.{name}"
        DATASETS.get(exp["data"]["name"]).validate(exp["data"], f"{where}.data")
        for latent, spec in exp["latents"].items():
            EXTRACTORS.get(latent).validate(spec, f"{where}.latents.{latent}")
        for method in exp["methods"]:
            for role in METHODS.get(method).roles:
                if role not in exp["models"]:
                    raise ConfigError(f"{where}.methods: method {method!r} needs models.{role}, which is missing; "
                                      f"defined models: {sorted(exp['models'])}")
            _check_same_data_space(exp["models"], METHODS.get(method).roles, f"{where}.models", method)
            if ROLES.get(METHODS.get(method).model).uses_latent and not exp["latents"]:
                raise ConfigError(f"{where}.methods: method {method!r} needs at least one latent type under "
                                  f"{where}.latents; accepted latent types: {EXTRACTORS.names()}")
        for role, model in exp["models"].items():
            if "prior" in model:  # exactly one of size / pretrained
                prior_source(model["prior"], f"{where}.models.{role}.prior")
        for scheme in SCHEMES.names():
            check = SCHEMES.get(scheme).check
            problem = check(exp[scheme]) if check else None
            if problem:
                raise ConfigError(f"{where}.{scheme}: {problem}")
        if exp["sampler"]["steps"] > exp["diffusion"]["timesteps"]:
            raise ConfigError(f"{where}.sampler.steps: {exp['sampler']['steps']} exceeds diffusion.timesteps="
                              f"{exp['diffusion']['timesteps']}")
        own = {key for name in SAMPLERS.names() for key in SAMPLERS.get(name).options}
        mine = SAMPLERS.get(exp["sampler"]["name"]).options
        extra = sorted((set(exp["sampler"]) & own) - set(mine))
        if extra:
            raise ConfigError(f"{where}.sampler: {extra} do not apply to sampler {exp['sampler']['name']!r}; its "
                              f"options: {list(mine) or 'none'}")
        _check_shifted_schedule(exp, f"{where}.diffusion")
        if exp["guidance_interval"]["sigma_lo"] >= exp["guidance_interval"]["sigma_hi"]:
            raise ConfigError(f"{where}.guidance_interval: sigma_lo={exp['guidance_interval']['sigma_lo']} must be "
                              f"smaller than sigma_hi={exp['guidance_interval']['sigma_hi']}")
        others = [n for n in FEATURE_NETS.names() if n not in ("identity", exp["metrics"]["feature_net"])]
        for net in exp["metrics"]["extra_feature_nets"]:
            if net not in others:
                raise ConfigError(f"{where}.metrics.extra_feature_nets: {net!r}; accepted: image feature networks "
                                  f"other than feature_net {exp['metrics']['feature_net']!r}: {others}")
        exp["edits"] = [_check_edit(exp, item, f"{where}.edits[{i}]") for i, item in enumerate(exp["edits"])]
        unused = sorted(set(exp["guidance_by_method"]) - set(exp["methods"]))
        if unused:
            raise ConfigError(f"{where}.guidance_by_method: {unused} are not among the experiment's methods "
                              f"{exp['methods']}")
        _check_report_guidance(exp, f"{where}.report")
    return cfg


def _check_shifted_schedule(exp: dict[str, Any], where: str) -> None:
    """A per-resolution shifted schedule needs image models (their nested levels are what it shifts)."""
    from kaleido.models.archs import IMAGE_ARCHS

    if not exp["diffusion"]["schedule_shifted"]:
        return
    vectors = sorted(role for role, model in exp["models"].items() if model["arch"] not in IMAGE_ARCHS)
    if vectors:
        raise ConfigError(f"{where}.schedule_shifted: true shifts the schedule per image resolution level, but "
                          f"models {vectors} are vector architectures; accepted: models of {sorted(IMAGE_ARCHS)} "
                          "only, or schedule_shifted: false")


def _import_plugins(names: Any) -> None:
    """Import the config's ``plugins`` (and ``$KALEIDO_PLUGINS``) so their registry entries exist before the schema's
    name lists are built."""
    if not (isinstance(names, list) and all(isinstance(n, str) and n for n in names)):
        raise ConfigError(f"config.plugins: {names!r}; expected a list of importable module names")
    before = set(sys.modules)
    try:
        load_plugins(names)
    except ImportError as err:
        raise ConfigError(f"config.plugins: {err}") from None
    if set(sys.modules) - before:
        schema.cache_clear()  # new registry entries: new names and settings blocks


#: stage -> the registry kinds whose entries its jobs run: a plugin adding to one of them is in the stage's slice (a
#: stage downstream of a rerun job reruns anyway, as its inputs change)
STAGE_PLUGIN_KINDS: dict[str, frozenset[str]] = {
    "data": frozenset({"data set"}),
    "latents": frozenset({"latent extractor"}),
    "train": frozenset({"model architecture", "model role", "method", "latent extractor"}),
    "sample": frozenset({"model architecture", "model role", "method", "latent extractor", "guidance scheme",
                         "sampler"}),
    "features": frozenset({"feature network", "pretrained weight file"}),
    "evaluate": frozenset({"metric"}),
}
STAGE_PLUGIN_KINDS["edit"] = STAGE_PLUGIN_KINDS["sample"] | {"latent edit"}


def plugin_sources(cfg: dict[str, Any], stage: str | None = None) -> dict[str, str]:
    """{plugin module: SHA-256 (16 hex digits) of its source file} of the plugins that may change ``stage``'s output
    (None: all): those that registered entries in a registry the stage reads (:data:`STAGE_PLUGIN_KINDS`), and those
    that registered nothing themselves (what they change is unknown).
    Part of the stage's slice, so adding or editing a metric plugin reruns the metrics, not the training."""
    out = {}
    for name in plugin_names(cfg.get("plugins", [])):
        kinds = plugin_kinds(name)
        if stage is not None and kinds and not kinds & STAGE_PLUGIN_KINDS[stage]:
            continue
        path = getattr(sys.modules.get(name), "__file__", None)
        out[name] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else "unknown"
    return out


def _check_report_guidance(exp: dict[str, Any], where: str) -> None:
    """``report.guidance`` is ``best_fd`` or a weight of the grid, and every method whose own grid lacks that weight
    has its row weight in ``report.guidance_by_method``, one of its grid."""
    choice, by_method = exp["report"]["guidance"], exp["report"].get("guidance_by_method", {})
    if choice != "best_fd" and choice not in exp["guidance"]:
        raise ConfigError(f"{where}.guidance: {choice!r} is not one of the guidance weights {exp['guidance']}; "
                          "accepted: one of them or 'best_fd'")
    for method in exp["methods"]:
        grid = guidance_grid(exp, method)
        if method in by_method and by_method[method] not in grid:
            raise ConfigError(f"{where}.guidance_by_method.{method}: {by_method[method]!r} is not in its guidance "
                              f"grid {grid}")
        if choice != "best_fd" and choice not in grid and method not in by_method:
            raise ConfigError(f"{where}.guidance: {choice!r} is not in the guidance grid {grid} of method "
                              f"{method!r} (guidance_by_method); state its row's weight in "
                              f"{where}.guidance_by_method.{method}, one of {grid}")


def _check_edit(exp: dict[str, Any], item: dict[str, Any], where: str) -> dict[str, Any]:
    """An ``edits`` entry must name a latent the experiment extracts and the edit accepts, a latent method the
    experiment runs, a weight of its guidance grid and at most one shard of samples."""
    edit = EDITS.get(item["edit"])
    if item["latent"] not in exp["latents"] or item["latent"] not in edit.latents:
        raise ConfigError(f"{where}.latent: {item['latent']!r}; edit {item['edit']!r} accepts "
                          f"{sorted(set(edit.latents) & set(exp['latents'])) or list(edit.latents)} "
                          f"(of the experiment's latents {sorted(exp['latents'])})")
    if item["method"] not in exp["methods"] or not ROLES.get(METHODS.get(item["method"]).model).uses_latent:
        accepted = [m for m in exp["methods"] if ROLES.get(METHODS.get(m).model).uses_latent]
        raise ConfigError(f"{where}.method: {item['method']!r}; accepted: the experiment's latent methods {accepted}")
    grid = guidance_grid(exp, item["method"])
    if item["guidance"] not in grid:
        raise ConfigError(f"{where}.guidance: {item['guidance']} is not in the guidance grid {grid} of method "
                          f"{item['method']!r}")
    if item["count"] > min(exp["shard_size"], exp["num_samples"]):
        raise ConfigError(f"{where}.count: {item['count']} exceeds the samples of one shard "
                          f"({min(exp['shard_size'], exp['num_samples'])})")
    return item


def edit_runs(exp: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(method, latent, guidance as formatted in paths, edit) of every configured edit."""
    return [(e["method"], e["latent"], format_guidance(e["guidance"]), e["edit"]) for e in exp["edits"]]


def edit_item(exp: dict[str, Any], method: str, latent: str, guidance: str, edit: str) -> dict[str, Any]:
    """The ``edits`` entry of (method, latent, formatted guidance, edit)."""
    for item, key in zip(exp["edits"], edit_runs(exp), strict=True):
        if key == (method, latent, guidance, edit):
            return item
    raise ConfigError(f"no edits entry for method={method} latent={latent} guidance={guidance} edit={edit}; "
                      f"configured: {edit_runs(exp)}")


def _data_space(model: dict[str, Any]) -> tuple[str, int]:
    """What a model's predictions live in: image denoisers of one arch and nesting depth share one flat vector
    layout; the toy MLPs share the data space (depth 0)."""
    from kaleido.models.archs import IMAGE_ARCHS
    from kaleido.models.unet_sizes import resolve_spec

    if model["arch"] not in IMAGE_ARCHS:
        return "vector", 0
    return model["arch"], len(resolve_spec({k: v for k, v in model.items() if k in ("size", "levels")})["levels"])


def _check_same_data_space(models: dict[str, Any], roles: tuple[str, ...], where: str, method: str) -> None:
    """The models one method combines (autoguidance: main and guide) must predict in the same space."""
    spaces = {role: _data_space(models[role]) for role in roles}
    if len(set(spaces.values())) > 1:
        described = ", ".join(f"{role}: arch {arch!r} with {depth} resolution level(s)"
                              for role, (arch, depth) in spaces.items())
        raise ConfigError(f"{where}: method {method!r} mixes the predictions of {described}; use one arch and the "
                          "same number of nested levels for these models (autoguidance's guide is the same family, "
                          "smaller or trained shorter)")


def load(path: str | Path) -> dict[str, Any]:
    """Load and validate a config file."""
    return validate(load_yaml(path))


def experiment(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        return cfg["experiments"][name]
    except KeyError:
        raise ConfigError(f"unknown experiment {name!r}; the config defines {sorted(cfg['experiments'])}") from None


# --- the grid the DAG expands --------------------------------------------------------------------------------


def format_guidance(weight: float) -> str:
    """Guidance weight as it appears in paths: 8 -> '8', 2.5 -> '2.5'."""
    return f"{float(weight):g}"


def guidance_grid(exp: dict[str, Any], method: str) -> list[float]:
    """The guidance weights ``method`` runs at: its ``guidance_by_method`` grid, else the experiment's."""
    return exp.get("guidance_by_method", {}).get(method, exp["guidance"])


def all_guidance(exp: dict[str, Any]) -> list[float]:
    """Every guidance weight some method of the experiment runs at, ascending."""
    return sorted({float(w) for method in exp["methods"] for w in guidance_grid(exp, method)})


def parse_guidance(exp: dict[str, Any], text: str, where: str = "guidance", method: str | None = None) -> float:
    """The configured guidance weight whose formatted value is ``text`` (error if it is not in the grid of
    ``method``, or of the experiment when None)."""
    grid = exp["guidance"] if method is None else guidance_grid(exp, method)
    for weight in grid:
        if format_guidance(weight) == text:
            return float(weight)
    raise ConfigError(f"{where}: {text!r} is not in the configured guidance grid "
                      f"{[format_guidance(w) for w in grid]}" + (f" of method {method!r}" if method else ""))


@dataclass(frozen=True)
class Run:
    """One row of Table 1."""

    experiment: str
    method: str
    latent: str
    guidance: str  # formatted, as in paths


def latent_jobs(cfg: dict[str, Any], exp: dict[str, Any], latent: str) -> int:
    """Extraction jobs of ``latent``: ``resources.latents.jobs`` where the experiment's images are sharded
    (``data.shard_size``) and the extractor's strings are per image; else 1 (the stage's one job extracts all)."""
    jobs = int(cfg.get("resources", {}).get("latents", {}).get("jobs", 1))
    extractor = EXTRACTORS.get(latent)
    spec = exp["latents"][latent]
    if jobs <= 1 or not exp["data"].get("shard_size") or extractor.kind != "strings" or not extractor.per_item(spec):
        return 1
    return jobs


def latents_of(exp: dict[str, Any], method: str) -> list[str]:
    return sorted(exp["latents"]) if ROLES.get(METHODS.get(method).model).uses_latent else [NO_LATENT]


def runs(cfg: dict[str, Any]) -> list[Run]:
    return [Run(name, method, latent, format_guidance(w))
            for name, exp in cfg["experiments"].items()
            for method in exp["methods"]
            for latent in latents_of(exp, method)
            for w in guidance_grid(exp, method)]


def trained_models(cfg: dict[str, Any], name: str) -> list[tuple[str, str]]:
    """(role, latent) pairs the experiment trains."""
    exp = experiment(cfg, name)
    out = set()
    for method in exp["methods"]:
        for role in METHODS.get(method).roles:
            for latent in (sorted(exp["latents"]) if ROLES.get(role).uses_latent else [NO_LATENT]):
                out.add((role, latent))
    return sorted(out)


def num_shards(exp: dict[str, Any]) -> int:
    return -(-exp["num_samples"] // exp["shard_size"])


def shard_range(exp: dict[str, Any], shard: int) -> range:
    """Global sample indices of ``shard``."""
    if not 0 <= shard < num_shards(exp):
        raise ConfigError(f"shard {shard} out of range [0, {num_shards(exp)})")
    return range(shard * exp["shard_size"], min((shard + 1) * exp["shard_size"], exp["num_samples"]))


def train_steps(exp: dict[str, Any], role: str) -> int:
    steps = exp["train"]["steps"]
    if ROLES.get(role).shortened:
        steps = max(1, round(steps * exp["train"]["bad_model_steps_fraction"]))
    return steps


# --- per-stage slices (recorded in outputs; Snakemake rerun triggers) ------------------------------------------


def feature_options(exp: dict[str, Any], net: str) -> dict[str, Any]:
    """The ``metrics.feature_*`` options that extract ``net``'s features: a network listed in
    ``extra_feature_nets`` has its own weights there and shares the main network's run options."""
    opts = exp["metrics"]
    options = {k: v for k, v in opts.items() if k.startswith("feature_")}
    if net in opts["extra_feature_nets"]:
        options["feature_weights"] = opts["extra_feature_nets"][net]
    return options


def feature_slice_options(exp: dict[str, Any], net: str) -> dict[str, Any]:
    """:func:`feature_options` as the features slice holds them (settings at their ``x-absent-means`` value left
    out, so that a key added later does not rerun finished feature jobs)."""
    return _as_before("metrics", feature_options(exp, net))


def _block(exp: dict[str, Any], key: str) -> Any:
    """Experiment block ``key`` as a slice holds it: without settings at their ``x-absent-means`` value."""
    value = exp[key]
    return _as_before(key, value) if isinstance(value, dict) else value


def _data_slice(cfg: dict[str, Any], exp: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    return {"data": _block(exp, "data")}


def _latents_slice(cfg: dict[str, Any], exp: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    return {"latent_spec": exp["latents"][keys["latent"]]}


def _train_slice(cfg: dict[str, Any], exp: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    role = keys["role"]
    return {"diffusion": _block(exp, "diffusion"), "model": exp["models"][role], "train": _block(exp, "train"),
            "train_steps": train_steps(exp, role)}


def _sample_slice(cfg: dict[str, Any], exp: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    method = METHODS.get(keys["method"])
    out = {"diffusion": _block(exp, "diffusion"), "sampler": _block(exp, "sampler"), "num_samples": exp["num_samples"],
           "shard_size": exp["shard_size"], "guidance_scheme": method.guidance}
    if exp.get("sample_conditions"):  # only when set: the slices of configs without it are unchanged
        out["sample_conditions"] = exp["sample_conditions"]
    if exp["data"].get("eval_captions"):  # a captioned set sampled on held-out captions
        out["eval_captions"] = exp["data"]["eval_captions"]
    if SCHEMES.get(method.guidance).options is not None:  # only the settings of the scheme it runs
        out[method.guidance] = _block(exp, method.guidance)
    if method.interval:
        out["guidance_interval"] = _block(exp, "guidance_interval")
    return out


def _edit_slice(cfg: dict[str, Any], exp: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    """The sampling slice of its samples, how latents are read off images, and the edit itself."""
    sample = {k: keys[k] for k in ("method", "latent", "guidance")}
    return {**_sample_slice(cfg, exp, sample), "shard": "0", "latent_spec": exp["latents"][keys["latent"]],
            "edit": edit_item(exp, keys["method"], keys["latent"], keys["guidance"], keys["edit"])}


def _features_slice(cfg: dict[str, Any], exp: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    """Only what changes the features: the network and how it runs, and the data set."""
    net = keys.get("net", exp["metrics"]["feature_net"])
    return {"data": _block(exp, "data"), "num_samples": exp["num_samples"], "feature_net": net,
            "feature_options": feature_slice_options(exp, net)}


def _evaluate_slice(cfg: dict[str, Any], exp: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    return {"metrics": _block(exp, "metrics"), "num_samples": exp["num_samples"], "data": _block(exp, "data")}


#: stage -> the settings its jobs read (beyond experiment, seed, wildcards and plugins)
STAGE_SLICES: dict[str, Any] = {
    "data": _data_slice, "latents": _latents_slice, "train": _train_slice, "sample": _sample_slice,
    "edit": _edit_slice, "features": _features_slice, "evaluate": _evaluate_slice,
}


def stage_spec(cfg: dict[str, Any], name: str, stage: str, **keys: str) -> dict[str, Any]:
    """The part of the config that stage ``stage`` of experiment ``name`` reads, plus its wildcard ``keys``.

    Changing anything outside this slice does not change the stage's output, so it must not rerun it.
    """
    if stage not in STAGE_SLICES:
        raise ValueError(f"unknown stage {stage!r}; stages with a config slice: {sorted(STAGE_SLICES)}")
    exp = experiment(cfg, name)
    spec: dict[str, Any] = {"experiment": name, "stage": stage, "seed": exp["seed"], **keys}
    plugins = plugin_sources(cfg, stage)
    if plugins:
        spec["plugins"] = plugins
    spec.pop("net", None)  # features: recorded as feature_net
    return {**spec, **STAGE_SLICES[stage](cfg, exp, keys)}


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(kind: str, value: str) -> str:
    """Names that become path components must be plain (no separators, no '..')."""
    if not _SAFE_NAME.match(value) or ".." in value:
        raise ConfigError(f"{kind} {value!r} is not a safe name (letters, digits, '_', '-', '.'; no '..')")
    return value

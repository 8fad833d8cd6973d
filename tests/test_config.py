"""Config validation: every error names the key, the bad value and what is accepted."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from kaleido import config
from kaleido.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_default_config_is_valid(default_config):
    cfg = config.validate(default_config)
    exp = cfg["experiments"]["toy2d"]
    assert exp["cads"]["tau1"] == 0.6  # default filled in
    own = exp["guidance_by_method"]
    assert len(config.runs(cfg)) == sum(len(own.get(m, exp["guidance"])) for m in exp["methods"])


def test_a_method_may_run_on_its_own_guidance_grid(default_config):
    exp = default_config["experiments"]["toy2d"]
    exp["guidance_by_method"] = {"mdm_autoguidance": [1, 1.5, 2]}
    cfg = config.validate(copy.deepcopy(default_config))
    grids: dict[str, list[str]] = {}
    for run in config.runs(cfg):
        grids.setdefault(run.method, []).append(run.guidance)
    assert grids["mdm_autoguidance"] == ["1", "1.5", "2"] and grids["mdm"] == ["1", "3", "5", "8", "25"]
    toy = cfg["experiments"]["toy2d"]
    assert config.parse_guidance(toy, "1.5", "--guidance", method="mdm_autoguidance") == 1.5
    with pytest.raises(ConfigError, match=r"'1.5' is not in the configured guidance grid .* of method 'mdm'"):
        config.parse_guidance(toy, "1.5", "--guidance", method="mdm")
    assert config.all_guidance(toy) == [1, 1.5, 2, 3, 5, 8, 25]
    exp["guidance_by_method"] = {"mdm_autoguidance": [1, 1.5, 2]}
    exp["report"] = {"guidance": 8}
    assert ("report.guidance: 8 is not in the guidance grid [1, 1.5, 2] of method 'mdm_autoguidance' "
            "(guidance_by_method); state its row's weight in config.experiments.toy2d.report.guidance_by_method."
            "mdm_autoguidance, one of [1, 1.5, 2]") in _error(copy.deepcopy(default_config))
    exp["report"] = {"guidance": 8, "guidance_by_method": {"mdm_autoguidance": 3}}
    assert "report.guidance_by_method.mdm_autoguidance: 3 is not in its guidance grid [1, 1.5, 2]" in _error(
        copy.deepcopy(default_config))
    exp["report"] = {"guidance": "best_fd"}
    exp["guidance_by_method"] = {"kaleido_interval": [1, 2]}
    assert "guidance_by_method: ['kaleido_interval'] are not among the experiment's methods" in _error(
        copy.deepcopy(default_config))
    exp["guidance_by_method"] = {"mdn": [1]}
    assert "'mdn'" in _error(copy.deepcopy(default_config))


def _error(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        config.validate(cfg)
    return str(info.value)


def test_unknown_method_names_key_value_and_choices(default_config):
    default_config["experiments"]["toy2d"]["methods"].append("mdn")
    msg = _error(default_config)
    assert "config.experiments.toy2d.methods[5]" in msg and "'mdn'" in msg and "'kaleido'" in msg


def test_unknown_latent_type(default_config):
    default_config["experiments"]["toy2d"]["latents"]["bboxx"] = {}
    msg = _error(default_config)
    assert "config.experiments.toy2d.latents" in msg and "'bboxx'" in msg and "'kmeans'" in msg


def test_negative_sample_count(default_config):
    default_config["experiments"]["toy2d"]["num_samples"] = -5
    msg = _error(default_config)
    assert "config.experiments.toy2d.num_samples" in msg and "-5" in msg and "minimum of 1" in msg


def test_wrong_type(default_config):
    default_config["experiments"]["toy2d"]["train"]["lr"] = "fast"
    msg = _error(default_config)
    assert "config.experiments.toy2d.train.lr" in msg and "'fast'" in msg and "number" in msg


def test_missing_key(default_config):
    del default_config["experiments"]["toy2d"]["guidance"]
    msg = _error(default_config)
    assert "config.experiments.toy2d" in msg and "'guidance' is a required property" in msg


def test_unknown_key_rejected(default_config):
    default_config["experiments"]["toy2d"]["sampler"]["stpes"] = 10
    assert "'stpes' was unexpected" in _error(default_config)


def test_dataset_specific_checks(default_config):
    bad = copy.deepcopy(default_config)
    bad["experiments"]["toy2d"]["data"]["mode_classes"] = [0, 0, 1]
    assert "config.experiments.toy2d.data.mode_classes" in _error(bad)
    bad = copy.deepcopy(default_config)
    bad["experiments"]["toy2d"]["data"]["std"] = 0
    assert "config.experiments.toy2d.data.std: 0" in _error(bad)


def test_method_needing_a_latent_without_latents(default_config):
    default_config["experiments"]["toy2d"]["latents"] = {}
    msg = _error(default_config)
    assert "method 'kaleido' needs at least one latent type" in msg


def test_autoguidance_models_share_one_data_space(default_config):
    models = default_config["experiments"]["toy2d"]["models"]
    image = {"cond_dim": 32, "context": {"encoder": "t5_tiny"}}
    models["mdm"] = {"arch": "nested_unet", "size": "nested_tiny", **image}
    models["mdm_bad"] = {"arch": "unet", "size": "unet_tiny", **image}
    msg = _error(default_config)
    assert ("config.experiments.toy2d.models: method 'mdm_autoguidance' mixes the predictions of mdm: arch "
            "'nested_unet' with 2 resolution level(s), mdm_bad: arch 'unet' with 1 resolution level(s)") in msg


@pytest.mark.parametrize("name", ["config.yaml", "shapes.yaml", "imagenet256.yaml", "cc12m.yaml"])
def test_shipped_configs_are_valid(repo, name):
    config.load(repo / "config" / name)


def test_cads_window_order(default_config):
    default_config["experiments"]["toy2d"]["cads"]["tau1"] = 0.95
    assert "tau1=0.95 must be smaller than tau2=0.9" in _error(default_config)


def test_sampler_names_come_from_the_registry_and_options_belong_to_their_sampler(default_config):
    from kaleido.diffusion import SAMPLERS

    sampler = config.schema()["$defs"]["experiment"]["properties"]["sampler"]["properties"]
    assert sampler["name"]["enum"] == SAMPLERS.names() == ["ddim", "ddpm", "heun"]
    assert all(option in sampler for name in SAMPLERS.names() for option in SAMPLERS.get(name).options)
    default_config["experiments"]["toy2d"]["sampler"]["eta"] = 0.5
    assert "['eta'] do not apply to sampler 'ddpm'" in _error(default_config)
    default_config["experiments"]["toy2d"]["sampler"]["name"] = "ddim"
    config.validate(copy.deepcopy(default_config))
    default_config["experiments"]["toy2d"]["sampler"]["name"] = "euler"
    assert "'euler'" in _error(default_config) and "heun" in _error(default_config)


def test_guidance_interval_order_and_stage_spec(default_config):
    default_config["experiments"]["toy2d"]["methods"].append("mdm_interval")
    cfg = config.validate(copy.deepcopy(default_config))
    interval = config.stage_spec(cfg, "toy2d", "sample", method="mdm_interval", latent="none", guidance="8",
                                 shard="0")
    plain = config.stage_spec(cfg, "toy2d", "sample", method="mdm", latent="none", guidance="8", shard="0")
    assert "guidance_interval" not in plain  # only interval methods read it: editing it reruns only them
    assert interval["guidance_interval"] == config.block_defaults("guidance_interval")
    default_config["experiments"]["toy2d"]["guidance_interval"] = {"sigma_lo": 3.0, "sigma_hi": 1.0}
    assert "sigma_lo=3.0 must be smaller than sigma_hi=1.0" in _error(default_config)


def test_unsafe_experiment_name(default_config):
    default_config["experiments"]["../evil"] = default_config["experiments"]["toy2d"]
    assert "'../evil'" in _error(default_config)


def test_stage_spec_slices(default_config):
    cfg = config.validate(default_config)
    sample = config.stage_spec(cfg, "toy2d", "sample", method="mdm", latent="none", guidance="8", shard="0")
    train = config.stage_spec(cfg, "toy2d", "train", role="mdm", latent="none")
    assert "sampler" in sample and "sampler" not in train
    assert "cads" not in sample  # plain CFG does not read the CADS options
    train_cfg = cfg["experiments"]["toy2d"]["train"]
    bad = config.stage_spec(cfg, "toy2d", "train", role="mdm_bad", latent="none")
    assert bad["train_steps"] == round(train_cfg["steps"] * train_cfg["bad_model_steps_fraction"])


def test_guidance_formatting_round_trip(default_config):
    exp = config.validate(default_config)["experiments"]["toy2d"]
    exp["guidance"] = [1, 2.5, 25]
    assert [config.format_guidance(w) for w in exp["guidance"]] == ["1", "2.5", "25"]
    assert config.parse_guidance(exp, "2.5") == 2.5
    with pytest.raises(ConfigError, match="not in the configured guidance grid"):
        config.parse_guidance(exp, "3")


def test_extra_feature_nets_are_other_image_networks_and_key_their_own_features_spec(default_config):
    cfg = copy.deepcopy(default_config)
    metrics = cfg["experiments"]["toy2d"]["metrics"]
    metrics["extra_feature_nets"] = {"sscd": "/models/sscd.pt", "dinov2": None}
    resolved = config.validate(cfg)
    main = config.stage_spec(resolved, "toy2d", "features")
    sscd = config.stage_spec(resolved, "toy2d", "features", net="sscd")
    assert main["feature_net"] == "identity" and "net" not in main
    assert sscd["feature_net"] == "sscd" and sscd["feature_options"]["feature_weights"] == "/models/sscd.pt"
    metrics["extra_feature_nets"] = {"sscd": "/models/other.pt", "dinov2": None}  # new weights: only sscd changes
    changed = config.validate(cfg)
    assert config.stage_spec(changed, "toy2d", "features") == main
    assert config.stage_spec(changed, "toy2d", "features", net="sscd") != sscd
    for bad in ("identity", "nonsense"):
        metrics["extra_feature_nets"] = {bad: None}
        with pytest.raises(ConfigError, match=rf"metrics.extra_feature_nets: '{bad}'; accepted: image feature"):
            config.validate(cfg)


def test_strings_where_the_schema_wants_numbers_are_read_as_yaml(default_config):
    """What Snakemake's --config passes for nested values: every scalar a string."""
    exp = default_config["experiments"]["toy2d"]
    exp["guidance"], exp["num_samples"], exp["train"]["steps"] = ["1", "2.5", "8"], "300", "40"
    exp["metrics"]["bootstrap_resamples"] = "0"
    cfg = config.validate(copy.deepcopy(default_config))["experiments"]["toy2d"]
    assert cfg["guidance"] == [1, 2.5, 8] and cfg["num_samples"] == 300 and cfg["train"]["steps"] == 40
    assert config.validate(copy.deepcopy(default_config)) == config.validate(
        {**default_config, "experiments": {"toy2d": {**exp, "guidance": [1, 2.5, 8], "num_samples": 300,
                                                     "train": {**exp["train"], "steps": 40},
                                                     "metrics": {**exp["metrics"], "bootstrap_resamples": 0}}}})
    exp["train"]["steps"] = "many"
    with pytest.raises(ConfigError, match="train.steps: 'many' is not of type 'integer'"):
        config.validate(default_config)


def test_the_paper_config_compares_every_row_at_the_paper_s_weight(repo):
    """The paper's ImageNet Table 1 is at CFG 4.0 (figures at 7.0): every row at one stated weight, not each at its
    own best FD."""
    exp = config.load(repo / "config" / "imagenet256.yaml")["experiments"]["imagenet256"]
    assert exp["report"]["guidance"] == 4.0 and not exp["report"].get("guidance_by_method")
    assert all({4.0, 7.0} <= set(config.guidance_grid(exp, method)) for method in exp["methods"])


def _every_stage_hash(cfg: dict) -> dict[str, str]:
    """{job: hash of its stage slice} of every data/latents/train/sample/evaluate/features job of ``cfg``."""
    from kaleido.provenance import config_hash

    out = {}
    for name, exp in cfg["experiments"].items():
        out[f"{name}/data"] = config_hash(config.stage_spec(cfg, name, "data"))
        out[f"{name}/features"] = config_hash(config.stage_spec(cfg, name, "features"))
        for latent in exp["latents"]:
            out[f"{name}/latents/{latent}"] = config_hash(config.stage_spec(cfg, name, "latents", latent=latent))
        for role, latent in config.trained_models(cfg, name):
            out[f"{name}/train/{role}/{latent}"] = config_hash(
                config.stage_spec(cfg, name, "train", role=role, latent=latent))
        for run in config.runs(cfg):
            keys = {"method": run.method, "latent": run.latent, "guidance": run.guidance}
            out[f"{name}/sample/{run}"] = config_hash(config.stage_spec(cfg, name, "sample", shard="000", **keys))
            out[f"{name}/evaluate/{run}"] = config_hash(config.stage_spec(cfg, name, "evaluate", **keys))
    return out


def test_defaults_are_filled_from_the_schema_into_nested_blocks(default_config):
    exp = default_config["experiments"]["toy2d"]
    for key in ("cads", "guidance_interval", "report", "guidance_by_method", "edits"):
        exp.pop(key, None)
    exp["train"].pop("ema_decay", None)
    default_config.pop("weights", None)
    cfg = config.validate(default_config)
    toy = cfg["experiments"]["toy2d"]
    assert toy["cads"] == config.block_defaults("cads") == {"tau1": 0.6, "tau2": 0.9, "noise_scale": 0.25,
                                                            "psi": 1.0, "rescale": True}
    assert toy["guidance_interval"] == {"sigma_lo": 0.28, "sigma_hi": 5.42}
    assert toy["report"] == {"guidance": "best_fd"} and toy["guidance_by_method"] == {}
    assert toy["edits"] == []
    assert toy["train"]["ema_decay"] == 0.999 and toy["sampler"]["precision"] == "auto"
    assert cfg["weights"] == {"offline": False, "allow_unverified": [], "sha256": {}, "endpoint": None}
    assert "ema_decay" not in default_config["experiments"]["toy2d"]["train"]  # the input is not changed
    shapes = config.load_yaml(config.Path(__file__).parents[1] / "config" / "shapes.yaml")
    for item in shapes["experiments"]["shapes"]["edits"]:
        item.pop("count"), item.pop("method", None)
    edits = config.validate(shapes)["experiments"]["shapes"]["edits"]
    assert [(e["method"], e["count"]) for e in edits] == [("kaleido", 16)] * 2  # items of a list, too


def test_a_new_setting_at_its_absent_value_reruns_nothing_and_another_value_reruns_what_reads_it(
        default_config, monkeypatch):
    before = _every_stage_hash(config.validate(copy.deepcopy(default_config)))
    original = config.schema()
    for default, changed in ((0.5, set()), (0.7, {"train", "sample"})):
        sch = copy.deepcopy(original)
        exp = sch["$defs"]["experiment"]["properties"]
        exp["train"]["properties"]["new_knob"] = {"type": "number", "default": default, "x-absent-means": 0.5}
        exp["sampler"]["properties"]["new_knob"] = {"type": "number", "default": default, "x-absent-means": 0.5}
        monkeypatch.setattr(config, "schema", lambda sch=sch: sch)
        cfg = config.validate(copy.deepcopy(default_config))
        assert cfg["experiments"]["toy2d"]["train"]["new_knob"] == default  # stages read it as usual
        after = _every_stage_hash(cfg)
        moved = {job.split("/")[1] for job in before if before[job] != after[job]}
        assert moved == changed, (default, moved)


def test_a_guidance_scheme_s_settings_block_comes_from_its_registry_entry(default_config):
    from kaleido.guidance import SCHEMES

    properties = config.schema()["$defs"]["experiment"]["properties"]
    assert properties["cads"]["properties"] is SCHEMES.get("cads").options
    assert "cfg" not in properties and "autoguidance" not in properties  # no settings, no block
    default_config["experiments"]["toy2d"]["cads"] = {"tau1": 0.9, "tau2": 0.6}
    assert "config.experiments.toy2d.cads: tau1=0.9 must be smaller than tau2=0.6" in _error(default_config)
    default_config["experiments"]["toy2d"]["cads"] = {"tau": 0.5}
    assert "config.experiments.toy2d.cads: Additional properties are not allowed ('tau' was unexpected)" in _error(
        default_config)


def test_the_sample_batch_size_is_a_speed_setting_outside_the_slice(default_config):
    """Samples depend on their index alone, so ``sampler.batch_size`` (memory per forward) reruns nothing."""
    before = config.stage_spec(config.validate(copy.deepcopy(default_config)), "toy2d", "sample", method="mdm")
    default_config["experiments"]["toy2d"]["sampler"]["batch_size"] = 64
    cfg = config.validate(default_config)
    assert cfg["experiments"]["toy2d"]["sampler"]["batch_size"] == 64
    assert config.stage_spec(cfg, "toy2d", "sample", method="mdm") == before
    paper = config.load(REPO / "config" / "imagenet256.yaml")
    assert paper["experiments"]["imagenet256"]["sampler"]["batch_size"] == 64  # not the 2048 of the toy


def test_a_registry_records_the_plugin_module_that_registered_an_entry(tmp_path, monkeypatch):
    """What a plugin registered (so which stage slices hold its source) does not depend on who imported it first."""
    import sys
    import types

    from metrics.registry import Registry, load_plugins, plugin_kinds

    holder = types.ModuleType("widget_registry")
    holder.WIDGETS = Registry("widget")
    monkeypatch.setitem(sys.modules, "widget_registry", holder)
    (tmp_path / "widget_plugin.py").write_text("from widget_registry import WIDGETS\nWIDGETS.register('w')(object())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import widget_plugin  # noqa: F401  (imported by other code before load_plugins sees it)

    assert load_plugins(["widget_plugin"]) == ["widget_plugin"] and plugin_kinds("widget_plugin") == {"widget"}
    assert plugin_kinds("kaleido.latents.color") == frozenset()  # built-in entries have no plugin origin
    monkeypatch.delitem(sys.modules, "widget_plugin")
    Registry.instances.remove(holder.WIDGETS)

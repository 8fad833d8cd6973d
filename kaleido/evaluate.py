"""Metrics of one (method, latent, guidance) sample set against the reference set -> one metric JSON.

    python -m kaleido.evaluate --config C --experiment toy2d --method mdm --latent none --guidance 8 \
        --real results/toy2d/features/identity/reference.npz --fake results/toy2d/features/identity/mdm/none/w8.npz \
        --out results/toy2d/metrics/mdm/none/w8.json [shard.npz ...]

Set metrics (every entry of the metric registry, :mod:`metrics.metric_registry`, that applies: FD, precision/recall,
density/coverage, Vendi, KID, per-condition Vendi and MSS, the Inception Score when the generated features file
holds ``logits``, and plugin metrics) come from the feature files (the per-condition ones on the
``metrics.diversity_conditions`` x ``diversity_per_condition`` subset when set: the paper's 1K x 10), with
percentile-bootstrap 95% intervals under the top-level key ``ci95`` when ``metrics.bootstrap_resamples`` > 0.
For the toy data set the mode metrics (modes covered, per-class mode entropy) come from the raw samples in the
shard files and the generator's true mode centres; for ``shapes`` images, class accuracy and colour / count
entropies read off the images by the offline object finder (:mod:`kaleido.data.shapes_modes`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaleido import config
from kaleido.cli import load_stage_config, run_cli, stage_parser
from kaleido.data import DATASETS
from kaleido.data.shapes_modes import shapes_mode_metrics
from kaleido.methods import METHODS, NO_LATENT, ROLES
from kaleido.provenance import provenance
from kaleido.seeding import derive_seed
from metrics import keys
from metrics.errors import InputError
from metrics.io import load_npz, write_json_atomic
from metrics.metric_registry import (
    all_options,
    config_options,
    per_condition,
    per_net_keys,
    per_net_metrics,
    resolve_options,
)
from metrics.store import npz_member_rows


def toy_mode_metrics(samples: np.ndarray, labels: np.ndarray, data_spec: dict[str, Any], min_share: float
                     ) -> dict[str, float]:
    """``modes_covered``, ``mode_entropy`` (nats, mean over classes) and per-class entropies of 2-D samples."""
    from metrics.modes import mode_entropy, mode_entropy_per_class, modes_covered  # imports torch

    centres = np.asarray(data_spec["centres"], dtype=np.float64)
    classes = np.asarray(data_spec["mode_classes"], dtype=np.int64)
    out: dict[str, float] = {
        keys.MODES_COVERED: modes_covered(samples, labels, centres, classes, min_share=min_share),
        keys.MODE_ENTROPY: mode_entropy(samples, labels, centres, classes),
    }
    for c, h in sorted(mode_entropy_per_class(samples, labels, centres, classes).items()):
        out[f"{keys.MODE_ENTROPY}_class{c}"] = h
    return out


def conditions_repeat(labels: np.ndarray) -> bool:
    """Whether some condition has two or more generated samples. When none has (a captioned set sampled with one
    sample per caption), the per-condition metrics (MSS, per-condition Vendi) are undefined and not computed, and
    the bootstrap is not stratified by condition (strata of one row would give intervals of width 0)."""
    return len(labels) > 0 and int(np.unique(labels, return_counts=True)[1].max()) >= 2


def network_metrics(real_path: Path, fake_path: Path, exp: dict[str, Any], bootstrap_seed: int,
                    groups: Sequence[str] | None = None, prdc_reference_seed: int = 0
                    ) -> tuple[dict[str, float], dict[str, tuple[float, float]], np.ndarray | None, dict[str, Any],
                               int]:
    """Metrics of one network's generated features against its reference features, with bootstrap intervals.

    The registered metrics ``groups`` (:mod:`metrics.metric_registry`; None = every one that applies, with the
    options of the config's ``metrics`` block, else the entry's default). The per-condition ones (MSS and
    per-condition Vendi built in) follow the diversity protocol (``metrics.diversity_conditions`` x
    ``diversity_per_condition``) when set, and are left out when no condition has two samples
    (:func:`conditions_repeat`). The reference features are read in place from their ``.npz``
    (:func:`metrics.store.npz_member_rows`), chunk by chunk, never loaded whole (ImageNet's 1.28M x 2048 are
    10 GB); ``metrics.prdc_reference`` = N draws P/R/D/C's N reference rows with ``prdc_reference_seed``. Returns
    (values, ci95, the protocol's rows or None, the metric options used (``kid_subset_size`` capped at the set
    sizes), the number of reference rows).
    """
    from metrics.suite import compute_with_ci, condition_subset  # torch: the command line answers --help without it

    opts = exp["metrics"]
    real_features = npz_member_rows(real_path, "features")
    fake = load_npz(fake_path, required=("features", "labels"))
    if len(fake["features"]) != exp["num_samples"]:
        raise InputError(f"{fake_path}: {len(fake['features'])} generated items, config asks for "
                         f"num_samples={exp['num_samples']}; rerun the sample and features steps")
    options = resolve_options({o.name: opts.get(o.name) for o in all_options()}, selected=groups,
                              num_real=len(real_features), num_fake=len(fake["features"]))
    options["prdc_reference_seed"] = prdc_reference_seed
    run = {"bootstrap_resamples": opts["bootstrap_resamples"], "bootstrap_seed": bootstrap_seed,
           "device": opts["knn_device"], "chunk_size": opts["knn_chunk_size"],
           "key_chunk_size": opts["knn_key_chunk_size"], "knn_precision": opts["knn_precision"], **options}
    labels = fake["labels"] if conditions_repeat(fake["labels"]) else None
    try:
        values, ci95 = compute_with_ci(real_features, fake["features"], labels_fake=labels,
                                       logits_fake=fake.get("logits"), metrics=groups, **run)
        rows = None
        per_condition_metrics, per_condition_keys = per_condition(groups)
        protocol = opts["diversity_conditions"] or opts["diversity_per_condition"]
        if protocol and per_condition_metrics and labels is not None:
            # the paper's 1K x 10 protocol
            rows = condition_subset(fake["labels"], opts["diversity_conditions"], opts["diversity_per_condition"])
            sub, sub_ci = compute_with_ci(real_features, fake["features"][rows], labels_fake=fake["labels"][rows],
                                          metrics=per_condition_metrics, **run)
            for key in per_condition_keys:
                values[key] = sub[key]
                if key in sub_ci:
                    ci95[key] = sub_ci[key]
    except ValueError as err:
        raise InputError(f"metrics of {fake_path} vs {real_path}: {err}") from None
    return values, ci95, rows, options, len(real_features)


def parser() -> argparse.ArgumentParser:
    """The stage's command line."""
    out = stage_parser(__doc__.split("\n\n")[0])
    out.add_argument("--method", required=True, help=f"the method that made the samples, one of {METHODS.names()}")
    out.add_argument("--latent", required=True, help=f"its latent type, or '{NO_LATENT}'")
    out.add_argument("--guidance", required=True, help="its guidance weight, as formatted in the method's grid")
    out.add_argument("--real", required=True, type=Path, help="reference features npz")
    out.add_argument("--fake", required=True, type=Path, help="generated features npz")
    out.add_argument("--extra", nargs=3, action="append", default=[], metavar=("NET", "REAL", "FAKE"),
                     help="features of another network (metrics.extra_feature_nets): its FD, Vendi and MSS (the "
                          "registry's per-network keys) are added as <metric>_<net> (repeat per network)")
    out.add_argument("samples", nargs="+", type=Path, help="the sample shards the features came from")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    cfg, exp = load_stage_config(args)
    weight = config.parse_guidance(exp, args.guidance, "--guidance", method=args.method)
    opts = exp["metrics"]
    spec = config.stage_spec(cfg, args.experiment, "evaluate", method=args.method, latent=args.latent,
                             guidance=args.guidance)
    bootstrap_seed = derive_seed(args.experiment, exp["seed"], "evaluate", "bootstrap")
    prdc_reference_seed = derive_seed(args.experiment, exp["seed"], "evaluate", "prdc_reference")
    values, ci95, diversity_rows, metric_options, num_reference = network_metrics(
        args.real, args.fake, exp, bootstrap_seed, prdc_reference_seed=prdc_reference_seed)
    kept = per_net_keys()
    for net, real_path, fake_path in args.extra:  # FD, Vendi and MSS on another network: keys "<metric>_<net>"
        extra, extra_ci, *_ = network_metrics(Path(real_path), Path(fake_path), exp, bootstrap_seed,
                                              groups=per_net_metrics())
        suffix = "_" + net.replace("-", "_")
        values.update({k + suffix: v for k, v in extra.items() if k in kept})
        ci95.update({k + suffix: v for k, v in extra_ci.items() if k in kept})
    shards = [load_npz(p, required=("x", "labels")) for p in args.samples]
    # The whole lineage of these numbers, for MLflow: every stage's config slice (each upstream slice is what its
    # stage recorded or, for training, what the DAG hashed; a change there reruns it and so this step too).
    method = METHODS.get(args.method)
    lineage = {
        "evaluate": spec,
        "sample": shards[0].get("meta", {}).get("config", {}),
        "train": {role: config.stage_spec(cfg, args.experiment, "train", role=role,
                                          latent=args.latent if ROLES.get(role).uses_latent else NO_LATENT)
                  for role in method.roles},
    }
    samples, labels = np.concatenate([s["x"] for s in shards]), np.concatenate([s["labels"] for s in shards])
    if all("latent_ok" in s for s in shards):  # Kaleido with a latent grammar: share of well-formed latents
        values[keys.LATENT_WELL_FORMED] = float(np.concatenate([s["latent_ok"] for s in shards]).mean())
    if exp["data"]["name"] == "toy2d":
        values.update(toy_mode_metrics(samples, labels, exp["data"], opts["modes_min_share"]))
    elif exp["data"]["name"] == "shapes":
        data = DATASETS.get("shapes")
        values.update(shapes_mode_metrics(samples, labels, data.class_names(exp["data"]),
                                          exp["data"].get("label", "shape")))
    record: dict[str, Any] = {
        "experiment": args.experiment, "dataset": exp["data"]["name"], "method": args.method, "latent": args.latent,
        "guidance": weight, "num_samples": exp["num_samples"], "feature_net": opts["feature_net"],
        "metrics": {k: (float(v) if isinstance(v, float | np.floating) else int(v)) for k, v in values.items()},
        "metric_options": {**{o.name: metric_options[o.name] for o in config_options()},
                           **{k: opts[k] for k in ("modes_min_share", "bootstrap_resamples")},
                           "bootstrap_seed": bootstrap_seed,
                           "num_reference": num_reference,
                           keys.PRDC_NUM_REFERENCE: (num_reference if metric_options["prdc_reference"] == "full"
                                                     else metric_options["prdc_reference"]),
                           keys.PRDC_REFERENCE_SEED: prdc_reference_seed,
                           "diversity_conditions": opts["diversity_conditions"],
                           "diversity_per_condition": opts["diversity_per_condition"],
                           "diversity_num_samples": int(exp["num_samples"] if diversity_rows is None
                                                        else len(diversity_rows))},
        "samples": [str(p) for p in args.samples],
        # the digest check of every weight file behind these numbers (metrics.weights.check_file records)
        "feature_weights": {net: load_npz(path, keys=()).get("meta", {}).get("config", {})
                            .get("feature_weights_checks", []) for net, path in
                            [(opts["feature_net"], args.fake), *((net, fake) for net, _, fake in args.extra)]},
        "provenance": provenance("kaleido.evaluate", lineage),
    }
    if opts["bootstrap_resamples"]:
        record[keys.CI95] = {k: [low, high] for k, (low, high) in ci95.items()}
    write_json_atomic(args.out, record)


if __name__ == "__main__":
    run_cli(main)

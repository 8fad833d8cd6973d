"""The weights stage: every pretrained artifact a config refers to, fetched once through its own library into the
cache its loader reads, checked against its published digest, and recorded.

    python -m kaleido.weights list  --config C             what the config needs, where it goes, how big
    python -m kaleido.weights fetch --config C [NAME ...]  download what is missing (on a host with internet)
    python -m kaleido.weights check --config C [NAME ...]  presence and digests only; never touches the network

With one NAME, ``--record FILE`` writes that artifact's record (the DAG's ``weights`` rule: a local job, so on a
cluster it runs on the host that runs Snakemake, before any GPU job that needs the artifact is submitted).

Kinds, each through its own library's mechanism and cache (an existing cache is reused; nothing is fetched twice):

* ``torch-hub-file``: a feature network's checkpoint (:data:`metrics.weights.WEIGHTS`), by torch hub's downloader
  into ``$TORCH_HOME/hub/checkpoints``; its SHA-256 is checked before the file is moved into place.
* ``torch-hub-repo``: the DINOv2 model code ``torch.hub.load`` runs, its GitHub archive unpacked where torch hub
  looks (``$TORCH_HOME/hub/<owner>_<repo>_<ref>``).
* ``hf``: a Hugging Face repository (:mod:`kaleido.pretrained`), by ``huggingface_hub.snapshot_download`` into
  ``$HF_HOME/hub``; every file is checked against the hub's digest (SHA-256 for LFS files, git blob id otherwise)
  and a damaged file is removed from the cache.
* ``local``: a path the config gives; checked for presence.

Config (top-level ``weights``): ``offline`` (check only; also ``HF_HUB_OFFLINE=1`` or ``--offline``),
``allow_unverified`` (artifact names allowed without a matching digest, recorded in every result),
``sha256`` (name -> the digest you trust, for files without a published one), ``endpoint`` (a mirror serving
``<endpoint>/<host>/<path>`` of every torch hub URL; Hugging Face reads ``HF_ENDPOINT``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaleido import config as config_mod
from kaleido.cli import run_cli
from kaleido.methods import METHODS
from kaleido.models.t5_sizes import T5_SIZES
from kaleido.pretrained import FETCH_HINT, HubModel, parse, verify_snapshot
from kaleido.provenance import provenance
from metrics.errors import InputError
from metrics.features import FEATURE_NETS
from metrics.io import write_json_atomic
from metrics.weights import WEIGHTS, HubRepo, WeightFile, WeightsDigestError

#: config keys of a latent extractor's spec and of a model's ``context`` that name a pretrained model
PRETRAINED_KEYS = ("captioner_path", "detector_path", "sam_path", "vq_path", "tokenizer", "encoder")
#: config keys of a model's ``prior`` that name a pretrained model (``size`` is a random-init T5 size)
PRIOR_KEYS = ("pretrained",)
#: values of those keys that name no file: the in-stage tokenizer, random-init T5 sizes
NOT_PRETRAINED = ("offline", *T5_SIZES)
#: files of other frameworks in a hub repository, never read by the PyTorch loaders (flan-t5-xl would triple in size)
FOREIGN_FORMATS = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "tf_model*", "flax_model*", "onnx/*",
                   "coreml/*"]


@dataclass(frozen=True)
class Artifact:
    """One pretrained thing a config needs: ``name`` (its job and record), ``kind``, where it comes from."""

    name: str
    kind: str  # torch-hub-file | torch-hub-repo | hf | local
    source: str
    what: str
    size_mb: int | None
    ref: WeightFile | HubRepo | HubModel | Path

    def path(self) -> str:
        """Where the loaders read it (for ``hf``: the repository's folder in the cache)."""
        if isinstance(self.ref, HubModel):
            from kaleido.pretrained import hf_cache_dir

            return str(hf_cache_dir() / ("models--" + self.ref.repo_id.replace("/", "--")))
        return str(self.ref if isinstance(self.ref, Path) else self.ref.default_path())


def _registered(name: str) -> Artifact:
    entry = WEIGHTS.get(name)
    kind = "torch-hub-file" if isinstance(entry, WeightFile) else "torch-hub-repo"
    return Artifact(name, kind, entry.url, entry.what, entry.size_mb, entry)


def _named(value: str, what: str) -> Artifact:
    ref = parse(value, what)
    if isinstance(ref, Path):  # the folder's name, and a hash of its path so that two folders never share a job
        digest = hashlib.sha256(str(ref).encode()).hexdigest()[:8]
        return Artifact(f"local--{ref.name}-{digest}", "local", str(ref), what, None, ref)
    return Artifact(ref.name, "hf", str(ref), what, None, ref)


def feature_artifacts(exp: dict[str, Any], net: str) -> list[Artifact]:
    """What feature network ``net`` of experiment ``exp`` loads: its registered files, the first replaced by the
    configured weights path (a local file, or a hub repository for ``dinov2-hf``)."""
    network = FEATURE_NETS.get(net)
    weights = config_mod.feature_options(exp, net)["feature_weights"]
    files = list(getattr(network, "files", ()))
    out = [_registered(name) for name in (files[1:] if weights is not None else files)]
    if weights is not None:
        out.insert(0, _named(weights, f"{net} feature network weights"))
    return out


def _spec_artifacts(spec: dict[str, Any], where: str, keys: tuple[str, ...] = PRETRAINED_KEYS) -> list[Artifact]:
    return [_named(spec[key], f"{where}.{key}") for key in keys
            if isinstance(spec.get(key), str) and spec[key] not in NOT_PRETRAINED]


def latent_artifacts(exp: dict[str, Any], latent: str) -> list[Artifact]:
    """The pretrained models latent type ``latent`` is extracted with (none for the offline extractors)."""
    spec = exp["latents"][latent]
    return _spec_artifacts(spec, f"latents.{latent}") if spec.get("source") == "pretrained" else []


def model_artifacts(exp: dict[str, Any], role: str) -> list[Artifact]:
    """The pretrained context encoder / tokenizer and AR prior of model ``role`` (none for random-init sizes)."""
    model = exp["models"][role]
    return (_spec_artifacts(model.get("context", {}), f"models.{role}.context")
            + _spec_artifacts(model.get("prior", {}), f"models.{role}.prior", PRIOR_KEYS))


def stage_artifacts(cfg: dict[str, Any], name: str, stage: str, **keys: str) -> list[Artifact]:
    """The artifacts one job of ``stage`` needs (``net`` for features; ``latent`` for latents; ``role`` for train;
    ``method`` for sample; ``method`` and ``latent`` for edit)."""
    exp = config_mod.experiment(cfg, name)
    if stage == "features":
        found = feature_artifacts(exp, keys["net"])
    elif stage == "latents":
        found = latent_artifacts(exp, keys["latent"])
    elif stage == "train":
        found = model_artifacts(exp, keys["role"])
    elif stage in ("sample", "edit"):
        found = [a for role in METHODS.get(keys["method"]).roles for a in model_artifacts(exp, role)]
        found += latent_artifacts(exp, keys["latent"]) if stage == "edit" else []
    else:
        raise ValueError(f"unknown stage {stage!r}")
    return list({a.name: a for a in found}.values())  # one model may serve as encoder and tokenizer


def all_artifacts(cfg: dict[str, Any]) -> dict[str, Artifact]:
    """Every artifact of every experiment, by name (first use first)."""
    found: dict[str, Artifact] = {}
    for exp in cfg["experiments"].values():
        metrics = exp["metrics"]
        nets = [metrics["feature_net"], *metrics["extra_feature_nets"]]
        groups = [*(feature_artifacts(exp, net) for net in nets),
                  *(latent_artifacts(exp, latent) for latent in exp["latents"]),
                  *(model_artifacts(exp, role) for role in exp["models"])]
        for artifact in (a for group in groups for a in group):
            found.setdefault(artifact.name, artifact)
    return found


def policy(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config's ``weights`` block (validated, defaults filled), with ``offline`` also set by HF_HUB_OFFLINE;
    names in ``allow_unverified`` / ``sha256`` must be artifacts or registered files the config uses."""
    block = dict(cfg["weights"])
    used = set(all_artifacts(cfg)) | {name for exp in cfg["experiments"].values()
                                      for net in [exp["metrics"]["feature_net"], *exp["metrics"]["extra_feature_nets"]]
                                      for name in getattr(FEATURE_NETS.get(net), "files", ())}
    for key in ("allow_unverified", "sha256"):
        unknown = sorted(set(block[key]) - used)
        if unknown:
            raise InputError(f"config weights.{key}: {unknown} name nothing this config uses; its artifacts and "
                             f"weight files: {sorted(used) or 'none'}")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        block["offline"] = True
    return block


def _check_torch_hub(artifact: Artifact, rules: dict[str, Any]) -> dict[str, Any]:
    from metrics.weights import check_file

    path = Path(artifact.path())
    if isinstance(artifact.ref, HubRepo):
        if not (path / "hubconf.py").is_file():
            raise FileNotFoundError(f"{artifact.what}: {path} has no hubconf.py; {FETCH_HINT}")
        return {"path": str(path), "verified": None}
    if not path.is_file():
        raise FileNotFoundError(f"{artifact.what}: {path} not found; {FETCH_HINT}")
    return check_file(path, artifact.ref, pin=rules["sha256"].get(artifact.name),
                      allow_unverified=artifact.name in rules["allow_unverified"])


def _check_hf(artifact: Artifact, rules: dict[str, Any]) -> dict[str, Any]:
    from kaleido.pretrained import resolve

    snapshot = Path(resolve(str(artifact.ref), artifact.what))
    report = verify_snapshot(snapshot)
    if report["mismatched"] or (not report["verified"] and artifact.name not in rules["allow_unverified"]):
        bad = report["mismatched"] or report["unverifiable"]
        raise WeightsDigestError(f"{artifact.what}: {artifact.ref} in {snapshot}: files {bad[:5]} do not match the "
                                 "digests the hub published for them; fetch again (`python -m kaleido.weights fetch "
                                 f"--config C {artifact.name}`) or allow it: weights.allow_unverified: "
                                 f"[{artifact.name}]")
    return {"path": str(snapshot), "commit": snapshot.name, **report}


def check(artifact: Artifact, rules: dict[str, Any]) -> dict[str, Any]:
    """The artifact as it is now in its cache: present and matching its digest, else an error saying what to do."""
    if artifact.kind == "local":
        if not artifact.ref.exists():
            raise FileNotFoundError(f"{artifact.what}: {artifact.ref} does not exist; put the files there or name a "
                                    "Hugging Face repository instead (org/name[@revision])")
        return {"path": str(artifact.ref), "verified": None}
    if artifact.kind == "hf":
        return _check_hf(artifact, rules)
    return _check_torch_hub(artifact, rules)


def _remove_mismatched(snapshot: Path, relatives: list[str]) -> None:
    """Take damaged files out of the hub cache (their snapshot link and blob), so no later load reads them."""
    for relative in relatives:
        link = snapshot / relative
        blob = link.resolve()
        link.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)


def fetch(artifact: Artifact, rules: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the artifact's check record, whether anything was downloaded): download only what is missing or damaged."""
    try:
        return check(artifact, rules), False
    except (FileNotFoundError, InputError) as err:
        if rules["offline"] or artifact.kind == "local":
            raise
        missing = err
    print(f"fetching {artifact.name} ({artifact.what}, {artifact.source}): {missing}", flush=True)
    try:
        if artifact.kind == "hf":
            from huggingface_hub import snapshot_download

            snapshot = Path(snapshot_download(artifact.ref.repo_id, revision=artifact.ref.revision,
                                              ignore_patterns=FOREIGN_FORMATS))
            report = verify_snapshot(snapshot)
            if report["mismatched"]:
                _remove_mismatched(snapshot, report["mismatched"])
                raise WeightsDigestError(f"{artifact.what}: the download of {artifact.ref} gave files "
                                         f"{report['mismatched'][:5]} whose content does not match the hub's "
                                         "digest; they were removed from the cache; fetch again")
        elif isinstance(artifact.ref, HubRepo):
            from metrics.weights import download_repo

            download_repo(artifact.ref, endpoint=rules["endpoint"])
        else:
            from metrics.weights import download_file

            download_file(artifact.ref, endpoint=rules["endpoint"], pin=rules["sha256"].get(artifact.name),
                          allow_unverified=artifact.name in rules["allow_unverified"])
    except OSError as err:  # URLError, connection and HTTP errors of both downloaders
        raise InputError(f"{artifact.name}: could not download {artifact.source} ({type(err).__name__}: {err}). "
                         "Run `python -m kaleido.weights fetch --config C` on a host with internet (under SLURM "
                         "the weights jobs are local rules: they run where snakemake runs), or set "
                         "weights.offline: true and fill the caches by hand") from None
    return check(artifact, rules), True


def _selected(cfg: dict[str, Any], names: Sequence[str]) -> list[Artifact]:
    found = all_artifacts(cfg)
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise InputError(f"unknown artifact(s) {unknown}; this config needs: {sorted(found) or 'none'}")
    return [found[name] for name in names] if names else list(found.values())


def parser() -> argparse.ArgumentParser:
    """The stage's command line."""
    out = argparse.ArgumentParser(prog="python -m kaleido.weights", description=__doc__.split("\n\n")[0])
    sub = out.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, text in (("list", "what the config needs: name, kind, size, source and where it goes"),
                          ("fetch", "download what is missing or damaged, then check it"),
                          ("check", "check presence and digests only (no network)")):
        cmd = sub.add_parser(command, help=text, description=text)
        cmd.add_argument("--config", required=True, type=Path, help="config YAML (validated against the schema)")
        if command != "list":
            cmd.add_argument("names", nargs="*", help="artifact names (default: every one the config needs)")
            cmd.add_argument("--record", type=Path, help="with one name: write its record (JSON) to this file")
        if command == "fetch":
            cmd.add_argument("--offline", action="store_true", help="check only, as `check` (also HF_HUB_OFFLINE=1)")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    cfg = config_mod.load(args.config)
    rules = policy(cfg)
    if args.command == "list":
        if not all_artifacts(cfg):
            print(f"{args.config}: no pretrained artifacts (every model and feature network is built in the DAG)")
        for a in all_artifacts(cfg).values():
            size = f"~{a.size_mb} MB" if a.size_mb else "size: see source"
            print(f"{a.name}\t{a.kind}\t{size}\t{a.source}\t-> {a.path()}")
        return
    if getattr(args, "offline", False) or args.command == "check":
        rules["offline"] = True
    chosen = _selected(cfg, args.names)
    if args.record is not None and len(chosen) != 1:
        raise InputError(f"--record writes one artifact's record; name exactly one (got {len(chosen)})")
    for artifact in chosen:
        record, downloaded = fetch(artifact, rules)
        state = "verified" if record.get("verified") else ("present" if record.get("verified") is None
                                                           else "UNVERIFIED (allowed)")
        print(f"{artifact.name}: {state}, {'downloaded' if downloaded else 'already in the cache'}: "
              f"{record['path']}", flush=True)
        if args.record is not None:
            settings = {"name": artifact.name, "kind": artifact.kind, "source": artifact.source,
                        "what": artifact.what, "allowed_unverified": artifact.name in rules["allow_unverified"],
                        "pinned_sha256": rules["sha256"].get(artifact.name), "offline": rules["offline"]}
            write_json_atomic(args.record, {**settings, "check": record, "downloaded": downloaded,
                                            "provenance": provenance("kaleido.weights", settings)})


if __name__ == "__main__":
    run_cli(main)


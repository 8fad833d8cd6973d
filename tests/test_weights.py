"""The weights stage against a loopback server standing in for the internet (tests/loopback_hub.py): fetch lands
in the caches the loaders read, a second fetch downloads nothing, corrupted or interrupted downloads are refused and
leave nothing that later passes for complete, offline mode only checks, and a wrong-digest Inception file stops the
metrics naming the file and both digests."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from loopback_hub import LoopbackServer
from metric_checks.img_nets import random_images, save_tiny_sscd

from metrics.features import FEATURE_NETS
from metrics.weights import WEIGHTS, WeightsDigestError

REPO = Path(__file__).resolve().parent.parent
HF_REPO = "kaleido-test/shapes-tokenizer"


def _mirror_path(name: str) -> str:
    """Where a registered file sits on a mirror: <host><path> of its source URL."""
    url = WEIGHTS.get(name).url
    return url.split("://", 1)[1]


def _hub_zip() -> bytes:
    """A GitHub-style archive (one top-level folder) of a stand-in facebookresearch/dinov2 repository."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("facebookresearch-dinov2-abc123/hubconf.py", "dependencies = ['torch']\n")
    return buffer.getvalue()


def _tokenizer_files(tmp: Path) -> dict[str, bytes]:
    from kaleido.latents.tokenizer import build_offline

    build_offline(["red circle", "blue square", "green triangle"] * 10, vocab_size=300).save_pretrained(tmp)
    return {p.name: p.read_bytes() for p in tmp.iterdir() if p.is_file()}


@pytest.fixture()
def hub(tmp_path):
    """(server, bytes served per artifact, env pointing every downloader at it and the caches at tmp_path)."""
    sscd = save_tiny_sscd(tmp_path / "sscd.pt").read_bytes()
    inception = b"not the FID Inception weights" * 100
    with LoopbackServer() as server:
        server.add_file(_mirror_path("sscd_disc_mixup"), sscd)
        server.add_file(_mirror_path("inception-v3-compat"), inception)
        server.add_file("github.com/facebookresearch/dinov2/zipball/main", _hub_zip())
        server.add_file(_mirror_path("dinov2_vitl14"), b"a stand-in checkpoint")
        server.add_hf_repo(HF_REPO, _tokenizer_files(tmp_path / "tok"))
        env = {**_base_env(), "TORCH_HOME": str(tmp_path / "torch"), "HF_HOME": str(tmp_path / "hf"),
               "HF_ENDPOINT": server.url, "KALEIDO_WEIGHTS_ENDPOINT": server.url}
        yield server, {"sscd": sscd, "inception": inception}, env


def _base_env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TORCH_HOME", "KALEIDO_WEIGHTS"))}
    return {**env, "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO)}


def _config(tmp_path: Path, sscd_digest: str, **weights) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "shapes.yaml").read_text())
    exp = cfg["experiments"]["shapes"]
    exp["metrics"].update(feature_net="inception", extra_feature_nets={"sscd": None, "dinov2": None})
    exp["models"]["mdm"]["context"]["tokenizer"] = HF_REPO
    cfg["weights"] = {"sha256": {"sscd_disc_mixup": sscd_digest},
                      "allow_unverified": ["inception-v3-compat", "dinov2_vitl14"], **weights}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kaleido.weights", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def _file_gets(server: LoopbackServer) -> int:
    return sum(1 for method, path in server.requests if method == "GET" and "/api/" not in path)


@pytest.mark.slow
def test_fetch_lands_where_the_loaders_read_and_a_second_run_downloads_nothing(tmp_path, hub):
    server, served, env = hub
    config = _config(tmp_path, hashlib.sha256(served["sscd"]).hexdigest())
    listed = _weights(env, "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    names = [line.split("\t")[0] for line in listed.stdout.splitlines()]
    assert sorted(names) == ["dinov2-repo", "dinov2_vitl14", "hf--kaleido-test--shapes-tokenizer",
                             "inception-v3-compat", "sscd_disc_mixup"]
    first = _weights(env, "fetch", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("downloaded") == 5 and "sscd_disc_mixup: verified" in first.stdout
    assert "inception-v3-compat: UNVERIFIED (allowed)" in first.stdout
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert (checkpoints / WEIGHTS.get("sscd_disc_mixup").filename).read_bytes() == served["sscd"]
    assert (tmp_path / "torch" / "hub" / "facebookresearch_dinov2_main" / "hubconf.py").is_file()
    assert sorted(p.name for p in checkpoints.iterdir()) == sorted(
        WEIGHTS.get(n).filename for n in ("sscd_disc_mixup", "inception-v3-compat", "dinov2_vitl14"))
    # the loaders read those caches: SSCD by its default path, the tokenizer by its repository name
    load = ("import numpy as np, sys; from metrics.features import FEATURE_NETS; from kaleido.models.t5 import "
            "load_tokenizer; net = FEATURE_NETS.get('sscd').with_options(weights_sha256=sys.argv[1]); "
            "print(net(np.zeros((2, 32, 32, 3), np.uint8)).shape, load_tokenizer(sys.argv[2]).pad_token)")
    loaded = subprocess.run([sys.executable, "-c", load, hashlib.sha256(served["sscd"]).hexdigest(), HF_REPO],
                            env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["(2,", "24)", "<pad>"]  # the tiny SSCD gives 24-d descriptors
    before = len(server.requests)
    second = _weights(env, "fetch", "--config", str(config), "--record", str(tmp_path / "r.json"), "sscd_disc_mixup")
    again = _weights(env, "fetch", "--config", str(config))
    assert second.returncode == again.returncode == 0, second.stderr + again.stderr
    assert len(server.requests) == before and again.stdout.count("already in the cache") == 5
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["check"]["verified"] is True and record["downloaded"] is False
    assert record["check"]["sha256"] == hashlib.sha256(served["sscd"]).hexdigest()


@pytest.mark.slow
def test_corrupted_and_interrupted_downloads_leave_nothing_that_passes(tmp_path, hub):
    server, served, env = hub
    config = _config(tmp_path, hashlib.sha256(served["sscd"]).hexdigest())
    dest = tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS.get("sscd_disc_mixup").filename
    server.fault(_mirror_path("sscd_disc_mixup"), "corrupt")
    corrupt = _weights(env, "fetch", "--config", str(config), "sscd_disc_mixup")
    assert corrupt.returncode == 2 and "refused the download" in corrupt.stderr, corrupt.stderr
    assert hashlib.sha256(served["sscd"]).hexdigest() in corrupt.stderr  # the expected digest is named
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
    server.fault(_mirror_path("sscd_disc_mixup"), "truncate", at=1000)
    cut = _weights(env, "fetch", "--config", str(config), "sscd_disc_mixup")
    assert cut.returncode == 2 and not dest.exists(), cut.stderr
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []  # no partial file left to pass later
    check = _weights(env, "check", "--config", str(config), "sscd_disc_mixup")
    assert check.returncode == 2 and "not found" in check.stderr and "kaleido.weights fetch" in check.stderr
    server.fault(_mirror_path("sscd_disc_mixup"), "clear")
    assert _weights(env, "fetch", "--config", str(config), "sscd_disc_mixup").returncode == 0
    assert dest.read_bytes() == served["sscd"]
    # a Hugging Face file whose content does not match the hub's digest is refused and taken out of the cache
    lfs = "tokenizer.json"
    server.fault(f"{HF_REPO}/{lfs}", "corrupt")
    bad = _weights(env, "fetch", "--config", str(config), "hf--kaleido-test--shapes-tokenizer")
    assert bad.returncode == 2 and lfs in bad.stderr and "removed from the cache" in bad.stderr, bad.stderr
    snapshots = list((tmp_path / "hf" / "hub").glob("models--kaleido-test--shapes-tokenizer/snapshots/*"))
    assert snapshots and not (snapshots[0] / lfs).exists()
    assert _weights(env, "check", "--config", str(config), "hf--kaleido-test--shapes-tokenizer").returncode == 2
    server.fault(f"{HF_REPO}/{lfs}", "clear")
    assert _weights(env, "fetch", "--config", str(config), "hf--kaleido-test--shapes-tokenizer").returncode == 0


def test_offline_checks_only_and_names_what_is_missing(tmp_path, hub):
    server, served, env = hub
    config = _config(tmp_path, hashlib.sha256(served["sscd"]).hexdigest(), offline=True)
    result = _weights(env, "fetch", "--config", str(config), "sscd_disc_mixup")
    assert result.returncode == 2 and "not found" in result.stderr and "kaleido.weights fetch" in result.stderr
    hf = _weights({**env, "HF_HUB_OFFLINE": "1"}, "fetch", "--config", str(_config(tmp_path, "0" * 64)),
                  "hf--kaleido-test--shapes-tokenizer")
    assert hf.returncode == 2 and "not in the Hugging Face cache" in hf.stderr, hf.stderr
    assert server.requests == []


def test_unknown_names_in_the_weights_rules_are_refused(tmp_path, hub):
    _, served, env = hub
    config = _config(tmp_path, hashlib.sha256(served["sscd"]).hexdigest(), allow_unverified=["sscd-typo"])
    result = _weights(env, "check", "--config", str(config))
    assert result.returncode == 2 and "sscd-typo" in result.stderr and "sscd_disc_mixup" in result.stderr


def test_a_wrong_digest_inception_file_stops_fid_naming_file_and_digests(tmp_path, capsys):
    wrong = tmp_path / WEIGHTS.get("inception-v3-compat").filename
    wrong.write_bytes(b"some other network")
    found = hashlib.sha256(wrong.read_bytes()).hexdigest()
    with pytest.raises(WeightsDigestError) as err:
        FEATURE_NETS.get("inception").with_options(weights=str(wrong))(random_images(2, seed=0))
    assert str(wrong) in str(err.value) and found in str(err.value) and "6726825d" in str(err.value)
    from metrics.cli import main

    np.savez(tmp_path / "imgs.npz", x=random_images(3, seed=0, size=16), labels=np.arange(3))
    assert main(["from-images", "--real", str(tmp_path / "imgs.npz"), "--fake", str(tmp_path / "imgs.npz"),
                 "--net", "inception", "--weights", str(wrong), "--metrics", "fid"]) == 2
    message = capsys.readouterr().err
    assert str(wrong) in message and found in message and "6726825d" in message


def test_registered_sources_are_the_libraries_own():
    """The registry's URLs are the ones torch-fidelity and torchvision download themselves."""
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert WEIGHTS.get("inception-v3-compat").url == URL_INCEPTION_V3
    assert WEIGHTS.get("inception-v3-compat").digest() == "6726825d"
    assert WEIGHTS.get("vgg16").url == torchvision.models.VGG16_Weights.IMAGENET1K_V1.url


@pytest.mark.slow
def test_the_paper_config_fetches_its_weights_in_local_jobs_ahead_of_the_gpu_jobs(tmp_path):
    """`snakemake -n --profile slurm` of the ImageNet config: one local weights job per artifact, and every job that
    loads one (features, latents, training, sampling) takes its record as an input."""
    from dag_helpers import make_workdir, snakemake

    from kaleido.config import load
    from kaleido.dryrun import submitted_jobs
    from kaleido.weights import all_artifacts

    workdir = make_workdir(tmp_path / "imagenet")
    proc = snakemake(workdir, "-n", "--profile", "slurm", "reports/table1.csv", "--configfile",
                     "config/imagenet256.yaml", timeout=600)
    text = proc.stdout + proc.stderr
    names = sorted(all_artifacts(load(REPO / "config" / "imagenet256.yaml")))
    assert len(names) == 9 and "inception-v3-compat" in names and "hf--google--flan-t5-xl" in names
    assert sorted(re.findall(r"^rule weights:\n\s+output: results/weights/(\S+)\.json$", text,
                             flags=re.MULTILINE)) == names
    assert "weights" not in submitted_jobs(text)  # a local rule (test_dag_small keeps LOCAL_RULES in step)
    jobs = [b for b in re.split(r"\n(?=\s*rule )", text) if b.strip().startswith("rule ") and "input:" in b]
    needs = {"features/inception/reference.npz": ["inception-v3-compat"],
             "features/sscd/reference.npz": ["sscd_disc_mixup"],
             "features/dinov2-dgm/reference.npz": ["dinov2-repo", "dinov2_vitl14"],
             "latents/text.npz": ["hf--Qwen--Qwen2-VL-7B-Instruct", "hf--google--flan-t5-xl"],
             "latents/blob.npz": ["hf--google--owlv2-base-patch16-ensemble", "hf--facebook--sam-vit-base"],
             "train/kaleido/bbox/model.pt": ["hf--google--flan-t5-xl"],
             "samples/mdm/none/w4/shard000.npz": ["hf--google--flan-t5-xl"]}
    for output, records in needs.items():
        job = [b for b in jobs if output in b.split("output:")[1].split("\n")[0]]
        assert len(job) == 1, output
        inputs = job[0].split("output:")[0]
        assert all(f"results/weights/{name}.json" in inputs for name in records), (output, inputs)


def test_a_pin_checks_the_network_s_weight_file_also_behind_its_code(tmp_path, monkeypatch):
    """DINOv2 loads code (the hub repo, its `weights` path) and a checkpoint: a pin applies to the checkpoint."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoint = WEIGHTS.get("dinov2_vitl14").default_path()
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"a checkpoint")
    digest = hashlib.sha256(b"a checkpoint").hexdigest()
    net = FEATURE_NETS.get("dinov2")
    assert net.weight_file == "dinov2_vitl14" and FEATURE_NETS.get("sscd").weight_file == "sscd_disc_mixup"
    assert [(c["name"], c["verified"]) for c in net.with_options(weights_sha256=digest).weight_checks()] == [
        ("dinov2_vitl14", True)]
    with pytest.raises(WeightsDigestError, match="no published digest"):
        net.weight_checks()
    with pytest.raises(ValueError, match="contradicts its published digest"):
        FEATURE_NETS.get("inception").with_options(weights=str(checkpoint), weights_sha256=digest).weight_checks()

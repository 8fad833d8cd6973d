"""Training (loss decreases, exact resume after a kill, NaN guard) and sampling (batch/shard independence)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from stage_helpers import run_module as _run
from stage_helpers import train_cmd as _train_cmd

from kaleido import checkpoint, config, distributed
from kaleido.generation import generate
from kaleido.training import NonFiniteLossError, train
from metrics.errors import InputError


def test_loss_decreases_and_model_loads(tiny):
    tmp, path, _ = tiny
    assert _run(_train_cmd(path, "a/model.pt"), tmp).returncode == 0
    log = [yaml.safe_load(line) for line in (tmp / "a" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss_diff"] < 0.7 * log[0]["loss_diff"]
    # p(z | c) is uniform over a class's 2 modes, so the AR prior's cross-entropy cannot beat ln 2: it should reach it
    assert abs(log[-1]["loss_ar"] - np.log(2)) < 0.03
    model, meta = checkpoint.load_denoiser(tmp / "a" / "model.pt")
    assert meta["vocab_size"] == 2 and model.uses_latent
    # weights from other model code (here: a layer removed) are refused with the remedy, not a torch traceback
    stale = checkpoint.load(tmp / "a" / "model.pt")
    stale["ema"].pop(next(iter(stale["ema"])))
    checkpoint.save(tmp / "stale.pt", stale)
    with pytest.raises(InputError, match=r"stale.pt: its weights do not fit this version's model \(Missing key"):
        checkpoint.load_denoiser(tmp / "stale.pt")


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])])
def test_killed_training_resumes_to_identical_weights(tiny, device):
    """Kill the training process after its first checkpoint; the rerun must end with the uninterrupted weights
    (bit for bit on the CPU; on CUDA the resume must load a checkpoint mapped to the GPU, generator state included)."""
    tmp, path, _ = tiny
    cmd = lambda out: [*_train_cmd(path, out), "--device", device]  # noqa: E731
    done = _run(cmd("full/model.pt"), tmp)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([sys.executable, *cmd("killed/model.pt")], cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (tmp / "killed" / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp / "killed" / "model.pt").exists(), "killed before the end: no final model"
    resumed_run = _run(cmd("killed/model.pt"), tmp)
    assert resumed_run.returncode == 0, resumed_run.stderr
    full, resumed = (torch.load(tmp / d / "model.pt", weights_only=True)["ema"] for d in ("full", "killed"))
    assert full.keys() == resumed.keys()
    same = torch.equal if device == "cpu" else lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert all(same(full[k], resumed[k]) for k in full)


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_kept_aside_and_training_starts_over(tiny):
    """The DAG reruns a training job whose config slice changed: the old run's checkpoint must neither stop it nor be
    resumed from; it is kept beside as ``checkpoint.<hash>.stale.pt``."""
    tmp, path, _ = tiny
    assert _run(_train_cmd(path, "run/model.pt"), tmp).returncode == 0
    first = torch.load(tmp / "run" / "model.pt", weights_only=True)
    cfg = yaml.safe_load(path.read_text())
    cfg["experiments"]["toy2d"]["train"]["lr"] = 2 * cfg["experiments"]["toy2d"]["train"].get("lr", 1e-3)
    path.write_text(yaml.safe_dump(cfg))
    (tmp / "run" / "model.pt").unlink()  # as Snakemake removes a job's outputs before rerunning it
    again = _run(_train_cmd(path, "run/model.pt"), tmp)
    assert again.returncode == 0, again.stderr
    stale = tmp / "run" / f"checkpoint.{first['meta']['config_hash']}.stale.pt"
    assert stale.is_file() and "training starts over" in again.stderr
    second = torch.load(tmp / "run" / "model.pt", weights_only=True)
    assert second["meta"]["config_hash"] != first["meta"]["config_hash"]
    log = [json.loads(line) for line in (tmp / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 50 and log[-1]["step"] == 300  # trained from step 0 again, not resumed at the end
    assert not all(torch.equal(first["ema"][k], second["ema"][k]) for k in first["ema"])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])])
@pytest.mark.parametrize("checkpoint_every", [1, 1000])
def test_non_finite_loss_names_step_and_is_never_saved(tiny, device, checkpoint_every):
    """The loop checks a step's loss once the next step is queued (no per-step host sync), yet names the step that
    produced it, and checks before any checkpoint: a save every step keeps no non-finite weights."""
    tmp, _, cfg = tiny
    spec = config.stage_spec(cfg, "toy2d", "train", role="mdm", latent="none")
    spec["train"]["checkpoint_every"] = checkpoint_every
    meta = {"arch": cfg["experiments"]["toy2d"]["models"]["mdm"], "data_dim": 2, "num_classes": 2, "vocab_size": 0,
            "seq_len": 0, "config_hash": "x"}
    x = np.full((64, 2), np.nan, dtype=np.float32)
    run = tmp / f"nan_{device}_{checkpoint_every}"
    with pytest.raises(NonFiniteLossError, match="at step 0"):
        train(spec, x, np.zeros(64, dtype=np.int64), None, run, meta, progress=False,
              group=distributed.init(device))
    assert not (run / "checkpoint.pt").exists()


def test_samples_do_not_depend_on_batch_size_or_shard(tiny):
    tmp, path, cfg = tiny
    assert _run(_train_cmd(path, "k/model.pt"), tmp).returncode == 0
    exp = cfg["experiments"]["toy2d"]
    models = {"kaleido": checkpoint.load_denoiser(tmp / "k" / "model.pt")[0]}
    full = generate(exp, 99, "kaleido_cads", 8.0, range(0, 600), models, batch_size=600)
    batched = generate(exp, 99, "kaleido_cads", 8.0, range(0, 600), models, batch_size=64)
    shard = generate(exp, 99, "kaleido_cads", 8.0, range(300, 600), models, batch_size=100)
    for key in ("x", "tokens", "labels", "index"):
        assert np.array_equal(full[key], batched[key]), key
        assert np.array_equal(full[key][300:], shard[key]), key
    assert set(np.unique(full["tokens"])) == {0, 1}


def test_sample_cli_rejects_wrong_inputs(tiny):
    tmp, path, _ = tiny
    base = ["-m", "kaleido.sample", "--config", str(path), "--experiment", "toy2d", "--shard", "0", "--out", "s.npz"]
    out = _run(base + ["--method", "mdm", "--latent", "none", "--guidance", "3"], tmp)
    assert out.returncode == 2 and "'3' is not in the configured guidance grid ['1', '8']" in out.stderr
    out = _run(base + ["--method", "mdn", "--latent", "none", "--guidance", "8"], tmp)
    assert out.returncode == 2 and "unknown method 'mdn'" in out.stderr
    (tmp / "broken.pt").write_bytes(b"not a checkpoint")
    out = _run(base + ["--method", "mdm", "--latent", "none", "--guidance", "8", "--model", "mdm=broken.pt"], tmp)
    assert out.returncode == 2 and "broken.pt: truncated or corrupted" in out.stderr


def test_prior_lr_puts_the_latent_prior_in_its_own_adam_group(tiny):
    from kaleido.training import param_groups

    _, _, cfg = tiny
    meta = {"arch": cfg["experiments"]["toy2d"]["models"]["kaleido"], "data_dim": 2, "num_classes": 2,
            "vocab_size": 2, "seq_len": 1, "config_hash": "x"}
    model = checkpoint.build_denoiser(meta)
    (one,) = param_groups(model, {"lr": 1e-3})
    assert one["base_lr"] == 1e-3 and len(one["params"]) == len(list(model.parameters()))
    rest, prior = param_groups(model, {"lr": 1e-3, "prior_lr": 5e-3})
    assert (rest["base_lr"], prior["base_lr"]) == (1e-3, 5e-3)
    assert {id(p) for p in prior["params"]} == {id(p) for p in model.prior.parameters()}
    assert len(rest["params"]) + len(prior["params"]) == len(list(model.parameters()))
    # MDM has no prior: one group whatever prior_lr says
    mdm = checkpoint.build_denoiser({**meta, "arch": cfg["experiments"]["toy2d"]["models"]["mdm"], "vocab_size": 0,
                                     "seq_len": 0})
    assert len(param_groups(mdm, {"lr": 1e-3, "prior_lr": 5e-3})) == 1

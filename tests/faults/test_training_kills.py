"""Training killed between and during checkpoint writes resumes to exactly the uninterrupted run's weights (CPU).

"During" is injected deterministically: the training process runs with ``os.replace`` wrapped so that it dies
(``os._exit``, no cleanup, like SIGKILL) at its N-th checkpoint write, either with the temporary file complete but
not yet renamed, or with the temporary file cut in half. "Between" is a real SIGKILL at a seeded random moment.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from stage_helpers import run_module, train_cmd

pytestmark = pytest.mark.slow

#: run kaleido.train, dying at the N-th write of checkpoint.pt (env KALEIDO_FAULT_AT) in mode KALEIDO_FAULT_MODE
DYING_TRAINER = """
import os, runpy, sys
at, mode, calls = int(os.environ["KALEIDO_FAULT_AT"]), os.environ["KALEIDO_FAULT_MODE"], [0]
real_replace = os.replace
def replace(src, dst):
    if str(dst).endswith("checkpoint.pt"):
        calls[0] += 1
        if calls[0] == at:
            if mode == "half_written":
                os.truncate(src, os.path.getsize(src) // 2)
            os._exit(137)
    return real_replace(src, dst)
os.replace = replace
sys.argv = ["kaleido.train", *sys.argv[1:]]
runpy.run_module("kaleido.train", run_name="__main__")
"""


def _ema(path):
    return torch.load(path, weights_only=True)["ema"]


def test_kills_during_and_between_checkpoint_writes(tiny, tiny_config):
    tmp, _, _ = tiny
    cfg = copy.deepcopy(tiny_config)
    cfg["experiments"]["toy2d"]["train"].update(steps=800, checkpoint_every=100)
    config = tmp / "long.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert run_module(train_cmd(config, "full/model.pt"), tmp).returncode == 0

    cmd = train_cmd(config, "killed/model.pt")[2:]  # drop "-m kaleido.train"
    outcomes = []
    for at, mode in [(1, "before_rename"), (1, "half_written"), (2, "half_written"), (1, "before_rename")]:
        env = dict(os.environ, KALEIDO_FAULT_AT=str(at), KALEIDO_FAULT_MODE=mode)
        proc = run_module(["-c", DYING_TRAINER, *cmd], tmp, env=env)
        outcomes.append((mode, proc.returncode))
        assert proc.returncode == 137, proc.stderr[-2000:]
    rng = random.Random(7)
    ckpt = tmp / "killed" / "checkpoint.pt"
    for _ in range(3):  # SIGKILL at a random moment after the run wrote a new checkpoint
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
        proc = subprocess.Popen([sys.executable, *train_cmd(config, "killed/model.pt")], cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and (
                not ckpt.exists() or ckpt.stat().st_mtime_ns == before):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        outcomes.append(("sigkill", proc.wait(), torch.load(ckpt, weights_only=True)["step"]))
    assert not (tmp / "killed" / "model.pt").exists(), f"training finished before the kills: {outcomes}"
    final = run_module(train_cmd(config, "killed/model.pt"), tmp)
    assert final.returncode == 0, final.stderr[-2000:]
    full, resumed = _ema(tmp / "full" / "model.pt"), _ema(tmp / "killed" / "model.pt")
    assert all(torch.equal(full[k], resumed[k]) for k in full), outcomes
    leftovers = sorted(p.name for p in (tmp / "killed").iterdir() if p.name.startswith("."))
    assert leftovers == [], f"temporary files of killed writes were left behind: {leftovers}"
    print(f"\ntraining kills: {outcomes}")

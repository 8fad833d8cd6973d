"""Training killed between and during checkpoint writes resumes to exactly the uninterrupted run's weights (CPU).

"During" is injected deterministically: the training process runs with ``os.replace`` wrapped so that it dies
(``os._exit``, no cleanup, like SIGKILL) at its N-th checkpoint write, either with the temporary file complete but
not yet renamed, or with the temporary file cut in half. "Between" is a real SIGKILL at a seeded random moment.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
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


def test_kills_during_and_between_checkpoint_writes(tiny):
    tmp, config, _ = tiny
    assert run_module(train_cmd(config, "full/model.pt"), tmp).returncode == 0

    cmd = train_cmd(config, "killed/model.pt")[2:]  # drop "-m kaleido.train"
    outcomes = []
    for at, mode in [(1, "before_rename"), (1, "half_written"), (2, "half_written"), (1, "before_rename")]:
        env = dict(os.environ, KALEIDO_FAULT_AT=str(at), KALEIDO_FAULT_MODE=mode)
        proc = run_module(["-c", DYING_TRAINER, *cmd], tmp, env=env)
        outcomes.append((mode, proc.returncode))
        assert proc.returncode == 137, proc.stderr[-2000:]
    rng = random.Random(7)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, *train_cmd(config, "killed/model.pt")], cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            outcomes.append(("sigkill", proc.wait()))
    assert not (tmp / "killed" / "model.pt").exists(), f"training finished before the kills: {outcomes}"
    final = run_module(train_cmd(config, "killed/model.pt"), tmp)
    assert final.returncode == 0, final.stderr[-2000:]
    full, resumed = _ema(tmp / "full" / "model.pt"), _ema(tmp / "killed" / "model.pt")
    assert all(torch.equal(full[k], resumed[k]) for k in full), outcomes
    leftovers = sorted(p.name for p in (tmp / "killed").iterdir() if p.name.startswith("."))
    assert leftovers == [], f"temporary files of killed writes were left behind: {leftovers}"

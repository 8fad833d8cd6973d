"""SIGTERM / SIGUSR1 (SLURM's time-limit and early-warning signals) make training checkpoint and exit with
EXIT_PREEMPTED; the rerun resumes to exactly the uninterrupted weights."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch
from stage_helpers import run_module, train_cmd

from kaleido import checkpoint
from kaleido.preemption import EXIT_PREEMPTED

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_checkpoints_and_the_rerun_resumes_exactly(tiny, signum):
    tmp, config, _ = tiny
    assert run_module(train_cmd(config, "full/model.pt"), tmp).returncode == 0
    proc = subprocess.Popen([sys.executable, *train_cmd(config, "stopped/model.pt")], cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = tmp / "stopped" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    stopped_at = checkpoint.load(ckpt)["step"]
    assert f"stopped by {signum.name} at step {stopped_at}" in err
    assert not (tmp / "stopped" / "model.pt").exists()
    assert stopped_at % 100, "expected a stop between the periodic checkpoints (every 100 steps)"

    assert run_module(train_cmd(config, "stopped/model.pt"), tmp).returncode == 0
    full = torch.load(tmp / "full" / "model.pt", weights_only=True)["ema"]
    resumed = torch.load(tmp / "stopped" / "model.pt", weights_only=True)["ema"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)

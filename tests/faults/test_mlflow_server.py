"""The cluster MLflow recipe: `slurm/mlflow_server.sh` listens on loopback only, and the report stage logs to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dag_helpers import REPO, env_for, executed_rules
from faults_helpers import TARGET, mlflow_runs, tracked_runs

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses (hex, as in /proc/net/tcp*) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_server_binds_loopback_and_receives_the_report(run_copy, finished_run):
    port = _free_port()
    env = dict(os.environ, PYTHON=sys.executable, MLFLOW_PORT=str(port),
               MLFLOW_BACKEND_STORE=f"sqlite:///{run_copy / 'server' / 'mlflow.db'}",
               MLFLOW_ARTIFACTS=str(run_copy / "server" / "artifacts"))
    server = subprocess.Popen(["bash", str(REPO / "slurm" / "mlflow_server.sh")], cwd=run_copy, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the MLflow server did not come up"
            time.sleep(0.5)
        assert _listening_addresses(port) == {"0100007F"}, "the server must listen on 127.0.0.1 only"

        uri = f"http://127.0.0.1:{port}"
        run_env = env_for(run_copy)
        run_env["MLFLOW_TRACKING_URI"] = uri
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", TARGET], cwd=run_copy,
                              env=run_env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert executed_rules(proc) == ["report"]  # the tracking URI is a parameter of the report only
        served = tracked_runs(uri)
        local = mlflow_runs(finished_run)
        assert served == local
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

"""Graceful stop on SIGTERM / SIGUSR1: finish the current step, checkpoint, exit with :data:`EXIT_PREEMPTED`.

SLURM sends SIGTERM at the time limit (then SIGKILL after ``KillWait``, 30 s by default) and, with
``--signal=USR1@300``, SIGUSR1 five minutes before it; a rerun or a Snakemake retry resumes from the checkpoint.
"""

from __future__ import annotations

import signal
from types import FrameType

#: exit status of a run that stopped on a signal after saving its checkpoint (EX_TEMPFAIL: "try again")
EXIT_PREEMPTED = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionFlag:
    """Set by SIGTERM / SIGUSR1 while installed (a context manager restoring the previous handlers)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    @property
    def raised(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> PreemptionFlag:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Preempted(Exception):  # noqa: N818 (not an error: the run stopped on request and can resume)
    """Training stopped on a signal after saving its checkpoint at ``step``."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved, rerun to resume")
        self.signum, self.step = signum, step

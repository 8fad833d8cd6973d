"""Process-group setup for multi-process training (``torchrun``), and the few collectives the loop needs.

``torchrun --standalone --nproc_per_node N -m kaleido.train ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and
the rendezvous variables; under SLURM, ``srun torchrun --nnodes $SLURM_NNODES --rdzv-backend c10d
--rdzv-endpoint $(scontrol show hostnames $SLURM_NODELIST | head -1):29500 ...`` does the same across nodes. A
plain ``python -m kaleido.train`` is one process (world size 1) and never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the training processes; ``device`` is the one it computes on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every file (logs, checkpoints, the model) and shows the progress bar."""
        return self.rank == 0

    def shard(self, batch: int) -> slice:
        """This rank's rows of a global batch of ``batch`` rows (equal slices; ``batch`` must divide evenly)."""
        per_rank = batch // self.world_size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """All-reduce average of a tensor over the ranks (identity for one process)."""
        if self.world_size == 1:
            return values
        out = values.detach().clone()
        torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
        return out / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one (e.g. a preemption signal reached one rank)."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def init(device: str = "cpu") -> ProcessGroup:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on CUDA).

    ``device``: ``cpu``, ``cuda`` (each rank takes ``cuda:$LOCAL_RANK``) or an explicit ``cuda:K`` (one process).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA device is visible to this process")
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return ProcessGroup(rank=rank, world_size=world, device=dev)


def shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

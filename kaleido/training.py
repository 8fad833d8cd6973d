"""The training loop of stage II: a diffusion denoiser (MDM, the autoguidance guide, or Kaleido with its AR prior).

Kaleido's objective is L = L_diff + η L_AR (paper §3.2), the AR prior teacher-forced on the extracted latents.
Every draw is a function of the seed and the step: the batch order of :mod:`kaleido.data.batches` and t / noise /
dropout from a generator seeded per step, so the step is the whole loader and generator state a checkpoint needs,
and a resumed run ends with exactly the weights of an uninterrupted one. Batches stream from the data set's shards
through data-loader workers; nothing holds the set. The stage's command line is :mod:`kaleido.train`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from kaleido import checkpoint, distributed
from kaleido.data.batches import LoaderSettings, StepBatches, stream
from kaleido.diffusion.losses import loss_pair, noised
from kaleido.diffusion.schedule import Schedule
from kaleido.preemption import Preempted, PreemptionFlag
from kaleido.seeding import derive_seed
from metrics.errors import InputError


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message names the step (which fixes the batch and its draws)."""


def param_groups(model: nn.Module, tr: dict[str, Any]) -> list[dict[str, Any]]:
    """Adam parameter groups: everything at ``train.lr``; a latent prior (``model.prior``) at ``train.prior_lr``
    when set. Each group's ``base_lr`` is the peak the warmup/decay schedule scales."""
    prior = getattr(model, "prior", None)
    prior_lr = tr.get("prior_lr")  # null (its default) is left out of the stage slice: see kaleido.config
    if prior is None or prior_lr is None:
        return [{"params": list(model.parameters()), "lr": tr["lr"], "base_lr": tr["lr"]}]
    prior_ids = {id(p) for p in prior.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) not in prior_ids], "lr": tr["lr"], "base_lr": tr["lr"]},
            {"params": list(prior.parameters()), "lr": prior_lr, "base_lr": prior_lr}]


def learning_rate(step: int, total: int, base: float, warmup: int, schedule: str) -> float:
    """Linear warmup over ``warmup`` steps, then constant or cosine decay to 0 at ``total``."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- ema + (1 - decay) (model - ema), parameter by parameter, as one multi-tensor op (one lerp kernel per
    parameter was ~800 launches a step for mdm_in256); the values are those of ``lerp_`` per tensor."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)


def uses_channels_last(tr: dict[str, Any], device: torch.device) -> bool:
    """Whether ``train.channels_last`` ("auto": on CUDA) puts the denoiser in channels-last memory on ``device``.

    The compiled bf16 step of ``mdm_in256`` at batch 32 on one H100 went from 22.3 % MFU (channels-last with ATen's
    group norm, which spent the gain on layout copies; NCHW was no faster) to 26.3-27.8 % with the per-channel group
    norm (kaleido.models.group_norm; benchmarks/logs/denoiser_knobs_h100_group_norm.log)."""
    setting = tr.get("channels_last", "auto")  # absent (a spec made before the key) means auto
    return device.type == "cuda" if setting == "auto" else bool(setting)


def match_state_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each optimizer state tensor its parameter's memory layout: a checkpoint written by a run with the other
    layout (``train.channels_last`` on another device) loads with the strides it was saved with, and the fused and
    multi-tensor Adam kernels expect a state tensor laid out as its parameter."""
    for group in opt.param_groups:
        for param in group["params"]:
            state = opt.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


class _LossCheck:
    """Raises :class:`NonFiniteLossError` for a non-finite loss one step late, so the host never waits for the GPU to
    drain: each step's losses are copied behind an event (to page-locked memory on CUDA) and the step before is
    checked once the next step's work is queued (an ``if`` on the loss tensor itself synchronised every step and
    left the GPU idle while the host launched the next one). A non-finite step's update has then reached the
    weights in memory, never a log line or a checkpoint: :meth:`flush` checks the last step, and the loop calls it
    before each. The error names the step that produced the loss."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.pending: tuple[int, torch.Tensor, torch.cuda.Event | None] | None = None

    def push(self, step: int, parts: torch.Tensor) -> None:
        """Queue step ``step``'s (loss, loss_diff, loss_ar); check the step queued before."""
        previous = self.pending
        if parts.device.type == "cuda":
            host = torch.empty(parts.shape, dtype=parts.dtype, pin_memory=True)
            host.copy_(parts.detach(), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.pending = (step, host, event)
        else:
            self.pending = (step, parts.detach().clone(), None)
        if previous is not None:
            self._check(*previous)

    def flush(self) -> None:
        """Check the last queued step (waits for its losses)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            self._check(*pending)

    def _check(self, step: int, host: torch.Tensor, event: torch.cuda.Event | None) -> None:
        if event is not None:
            event.synchronize()
        if not math.isfinite(float(host[0])):
            raise NonFiniteLossError(f"non-finite loss {float(host[0])} at step {step} (batch {step} of the order "
                                     f"seeded {self.seed}); lower train.lr or check the data")


class _Objective(nn.Module):
    """The training forward (condition encoding + denoising) as one module, so DDP / compile see one forward.

    Returns the network output (B, ...) and the AR prior's teacher-forced logits (B, L, V) or None.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                tokens: torch.Tensor | None, drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, logits = self.model.encode(labels, tokens, drop)
        return self.model(x_t, t, y), logits



def _resumable_checkpoint(path: Path, config_hash: str, device: torch.device, announce: bool) -> dict | None:
    """The state of the checkpoint at ``path`` to resume from, or None to start over: none exists, or it belongs to
    another config (the DAG reruns a job whose slice changed) or to an earlier training loop. Such a checkpoint is
    kept beside, renamed ``checkpoint.<its config hash>.stale.pt``, never deleted; ``announce``: say so (rank 0)."""
    try:
        state = checkpoint.load(path, map_location=device)
    except FileNotFoundError:  # none, or rank 0 set it aside just now
        return None
    if "generator" not in state and state["meta"]["config_hash"] == config_hash:
        return state
    old = state["meta"].get("config_hash", "unknown")
    why = ("an earlier training loop (batches from a generator, not the per-epoch order)" if "generator" in state
           else f"another config (hash {old} != {config_hash})")
    if announce:
        stale = path.with_name(f"checkpoint.{old}.stale.pt")
        os.replace(path, stale)
        print(f"note: {path} was made by {why}; kept as {stale.name}, training starts over", file=sys.stderr)
    return None


def train(spec: dict[str, Any], x: Any, labels: np.ndarray, tokens: np.ndarray | None, run_dir: Path,
          meta: dict[str, Any], progress: bool = True, group: distributed.ProcessGroup | None = None,
          preemption: PreemptionFlag | None = None, loader: LoaderSettings | None = None,
          condition_texts: Any = None) -> dict[str, Any]:
    """Train (resuming from ``run_dir/checkpoint.pt``) the denoiser ``meta`` describes; return its final state.

    x (n, D) float32 vectors or uint8 images (n, H, W, C), in memory or a :class:`metrics.store.ShardedArray` (the
    model's ``data_to_model`` converts each batch on the device); labels (n,) int64 classes; tokens (n, L) int64
    latents or None; ``condition_texts`` (n,) the item texts of a captioned set (``meta["condition_text"]``; a
    :class:`metrics.store.TextColumn`), encoded by the frozen T5 batch by batch before the compiled step. Batches
    stream through ``loader``'s worker processes in the order of :class:`kaleido.data.batches.StepBatches` (a
    seeded permutation per epoch); t, noise and dropout of the global
    batch come from a device generator seeded by (seed, step). Each of the ``group``'s ranks trains on its equal
    slice of the global batch, so N processes reproduce the one-process run with the same ``batch_size`` (up to the
    order of floating-point sums in the gradient all-reduce), and a resumed run continues with the batches of its
    checkpointed step. ``train.grad_accum`` splits a rank's slice into micro-batches. When ``preemption`` is
    raised, the current step finishes, the checkpoint is saved and :class:`Preempted` is raised.
    """
    group = group or distributed.ProcessGroup(rank=0, world_size=1, device=torch.device("cpu"))
    loader = loader or LoaderSettings()
    tr, steps = spec["train"], spec["train_steps"]
    batch, accum = tr["batch_size"], tr["grad_accum"]
    if batch % (group.world_size * accum):
        raise InputError(f"train.batch_size={batch} must be divisible by the number of processes "
                         f"({group.world_size}) x train.grad_accum ({accum})")
    device = group.device
    prediction, loss_target = spec["diffusion"]["prediction"], spec["diffusion"].get("loss_target", "prediction")
    seed = derive_seed(spec["experiment"], spec["seed"], "train", spec["role"], spec["latent"])
    ckpt_path = run_dir / "checkpoint.pt"
    state = _resumable_checkpoint(ckpt_path, meta["config_hash"], device, group.rank == 0)
    torch.manual_seed(seed)  # parameter init
    # a resumed run takes every weight from its checkpoint: a pretrained prior's checkpoint is not read again
    model = checkpoint.build_denoiser(meta, pretrained_weights=state is None).to(device)
    if uses_channels_last(tr, device):
        model.to(memory_format=torch.channels_last)
    per_batch_text = meta.get("condition_text") is not None
    if per_batch_text:
        if condition_texts is None or len(condition_texts) != len(x):
            raise InputError(f"this model reads each item's {meta['condition_text']}: train() needs them, one per "
                             f"item ({len(x)}), got {None if condition_texts is None else len(condition_texts)}")
        model.condition_texts = condition_texts
    schedule = Schedule.for_model(spec["diffusion"], model.level_layout)
    ema = copy.deepcopy(model).requires_grad_(False)
    # paper's Adam settings; on CUDA the fused kernel (one launch for all parameters instead of a multi-tensor
    # loop: benchmarks/denoiser_knobs_gpu.py)
    opt = torch.optim.Adam(param_groups(model, tr), betas=(0.9, 0.99), eps=1e-8, fused=device.type == "cuda")
    step, log = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        match_state_layouts(opt)
        step, log = state["step"], state["log"]

    objective: nn.Module = _Objective(model)
    if group.world_size > 1:
        objective = DistributedDataParallel(objective, device_ids=[device] if device.type == "cuda" else None)
    if tr["compile"]:
        objective = torch.compile(objective)
    autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16,
                                 enabled=tr["precision"] == "bf16")
    rows, micro = group.shard(batch), batch // group.world_size // accum
    batches = StepBatches(x, labels, tokens, batch, rows, seed)
    on_device = isinstance(x, torch.Tensor) and x.device.type != "cpu"
    items_stream = stream(batches, step, steps, workers=loader.workers, prefetch=loader.prefetch,
                          pin_memory=device.type == "cuda" and not on_device)
    loss_check = _LossCheck(seed)
    started = time.perf_counter()  # wall seconds in the log: this run's throughput (resumed runs restart at 0)
    bar = tqdm(total=steps, initial=step, desc=f"train {spec['role']}/{spec['latent']}",
               disable=not (progress and group.is_main))
    for items in items_stream:
        x0_rank = model.data_to_model(items["x"].to(device, non_blocking=True))
        y_rank = items["labels"].to(device, non_blocking=True)
        if per_batch_text:  # the batch's captions through the frozen T5, once, outside the compiled step
            with autocast():  # bf16 training: the T5 in bf16 too (T5-XL over 512 x 128 tokens is ~160 TFLOP)
                y_rank = tuple(v.float() if v.is_floating_point() else v for v in model.context(items["labels"]))
        z_rank = items["tokens"].to(device, non_blocking=True) if "tokens" in items else None
        # t, noise and dropout of the global batch from a generator on the device seeded by (seed, step), sliced to
        # this rank's rows: the same on any number of processes, and a resumed run needs no generator state.
        gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "step", step))
        t_rank = torch.randint(schedule.timesteps, (batch,), generator=gen, device=device)[rows]
        noise_rank = torch.randn((batch, *x0_rank.shape[1:]), generator=gen, device=device)[rows]
        drop_rank = (torch.rand(batch, generator=gen, device=device) < tr["cond_drop_prob"])[rows]
        for param_group in opt.param_groups:
            param_group["lr"] = learning_rate(step, steps, param_group["base_lr"], tr["warmup_steps"],
                                              tr["lr_schedule"])
        opt.zero_grad(set_to_none=True)
        parts = torch.zeros(3, device=device)  # loss, loss_diff, loss_ar (means over this rank's rows)
        for k in range(accum):
            part = slice(k * micro, (k + 1) * micro)
            x0, t, noise = x0_rank[part], t_rank[part], noise_rank[part]
            y_cls = tuple(v[part] for v in y_rank) if isinstance(y_rank, tuple) else y_rank[part]
            z = z_rank[part] if z_rank is not None else None
            x_t, sqrt_ab, sqrt_1mab = noised(schedule, x0, t, noise)
            last = k == accum - 1
            sync = objective.no_sync() if group.world_size > 1 and not last else contextlib.nullcontext()
            with sync:
                with autocast():
                    output, logits = objective(x_t, t, y_cls, z, drop_rank[part])
                loss_diff = model.loss(*loss_pair(prediction, loss_target, output.float(), x0, noise, x_t, sqrt_ab,
                                                  sqrt_1mab))
                loss_ar = model.prior.loss(logits.float(), z) if logits is not None else torch.zeros((), device=device)
                loss = loss_diff + tr["ar_loss_weight"] * loss_ar
                (loss / accum).backward()
            parts += torch.stack([loss, loss_diff, loss_ar]).detach() / accum
        parts = group.mean(parts)
        loss_check.push(step, parts)
        torch.nn.utils.clip_grad_norm_(model.parameters(), tr["grad_clip"])
        opt.step()
        ema_update(ema, model, tr["ema_decay"])
        step += 1
        bar.update(1)
        stop = group.any(preemption is not None and preemption.raised)
        save = step % tr["checkpoint_every"] == 0 or step == steps or stop
        log_line = step % tr["log_every"] == 0 or step == steps
        if save or log_line:
            loss_check.flush()  # no non-finite step is logged or saved (on every rank: all raise at one step)
        if log_line:
            loss_v, diff_v, ar_v = parts.tolist()
            log.append({"step": step, "loss": loss_v, "loss_diff": diff_v, "loss_ar": ar_v,
                        "seconds": round(time.perf_counter() - started, 3)})
            bar.set_postfix(loss=f"{loss_v:.4f}")
        if save and group.is_main:
            checkpoint.save(ckpt_path, {"model": model.state_dict(), "ema": ema.state_dict(),
                                        "optimizer": opt.state_dict(), "step": step, "log": log, "meta": meta})
        if stop and step < steps:
            group.barrier()
            raise Preempted(preemption.signal if preemption and preemption.signal else signal.SIGTERM, step)
    bar.close()
    return {"ema": ema.state_dict(), "meta": meta, "log": log}


def loader_settings(x: Any, workers: int | None, prefetch: int, threads: int | None) -> LoaderSettings:
    """The loader for ``x``: in-process for a set in memory (nothing to read), else worker processes on the CPUs
    the job has beside the training process."""
    if workers is None:
        in_memory = isinstance(x, (np.ndarray, torch.Tensor))
        workers = 0 if in_memory else max(1, min(8, (threads or os.cpu_count() or 2) - 1))
    if workers < 0 or prefetch < 1:
        raise InputError(f"--loader-workers {workers} / --prefetch {prefetch}: expected workers >= 0, prefetch >= 1")
    return LoaderSettings(workers=workers, prefetch=prefetch)

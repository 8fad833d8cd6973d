"""Generation of samples by global index: the function both the sample stage and the edit stage run.

Sample i has class ``i mod C`` and all of its randomness (x_T, every ancestral step, its latent tokens, CADS
noise) is a pure function of (experiment, seed, method, latent, guidance, i): any shard, batch size or device
order reproduces it. Kaleido draws z ~ p_AR(z | c) first and returns it beside x.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from kaleido.diffusion import SAMPLERS
from kaleido.diffusion.losses import output_to_eps
from kaleido.diffusion.samplers import run_sampler
from kaleido.diffusion.schedule import Schedule, in_base_space
from kaleido.errors import ConfigError
from kaleido.guidance import SCHEMES, STREAM_DIFFUSION, STREAM_PRIOR, GuidanceInputs
from kaleido.guidance import schemes as _builtin_schemes  # noqa: F401  (named by reference: in sample's code hash)
from kaleido.latents import grammar
from kaleido.methods import METHODS
from kaleido.models.interface import Denoiser
from kaleido.rng import counter_normal
from kaleido.seeding import derive_seed


class FastPath(NamedTuple):
    """How the denoiser forward runs while sampling (:func:`fast_path`)."""

    precision: str  # "fp32" or "bf16" (autocast)
    compile: bool  # torch.compile of the denoiser
    cuda_graphs: bool = False  # the compiled forward replayed as a CUDA graph (mode="reduce-overhead")
    channels_last: bool = False  # the denoiser's weights (so its activations) in channels-last memory


def fast_path(sampler: dict[str, Any], device: torch.device) -> FastPath:
    """The :class:`FastPath` of ``sampler.precision`` / ``sampler.compile`` on ``device``.

    "auto" (the default of both) is bf16 autocast + ``torch.compile`` on CUDA and eager fp32 on the CPU, where the
    samples are bit-for-bit those of every earlier run. The sampler's own arithmetic (x_t updates, guidance
    combination, ε conversion) stays fp32 on every path. ``sampler.channels_last`` ("auto": on CUDA) puts the
    denoiser in channels-last memory, its group norms reading that layout (kaleido.models.group_norm): the compiled
    CFG call of ``mdm_in256`` at 128 rows went from 29.8 % to 39.9 % of the bf16 peak on one H100, in one run
    (benchmarks/logs/denoiser_knobs_h100_group_norm.log; with ATen's group norm channels-last had given nothing,
    benchmarks/logs/sampling_gpu_h200_channels_last.log), and sampling end to end from 9.96 to 13.27 img/s
    (38.4 % of the peak; benchmarks/logs/sampling_gpu_h100_channels_last_group_norm.log). Larger batches gave
    nothing.

    ``sampler.cuda_graphs`` (default on) applies where the denoiser is compiled on CUDA: the compiled forward is
    recorded once per batch shape and replayed as one CUDA graph (``torch.compile(mode="reduce-overhead")``), so a
    small model's step is not bound by launching its hundreds of kernels one by one. Measured on one H100
    (benchmarks/logs/sampling_gpu_h100_cuda_graphs_*.log): the shapes study's 1.1M-parameter denoiser at 32 px,
    batch 1024, 1,295 -> 1,468 img/s; ``mdm_in256`` at 256 px, batch 64, 9.91 -> 10.10 img/s (29.2 % of the bf16
    peak); the samples bit-identical to the compiled forward's.
    """
    cuda = device.type == "cuda"
    precision, compiled = sampler["precision"], sampler["compile"]
    compiled = cuda if compiled == "auto" else compiled
    channels_last = sampler.get("channels_last", "auto")  # absent (a config made before the key) means auto
    return FastPath(("bf16" if cuda else "fp32") if precision == "auto" else precision, compiled,
                    bool(sampler.get("cuda_graphs", True)) and compiled and cuda,
                    cuda if channels_last == "auto" else bool(channels_last))


#: the fewest samples a batch computes: a smaller batch (the tail of a shard) gets copies of its last index, whose
#: outputs are dropped. CPU GEMM libraries choose their kernel by the row count, and the kernels round differently
#: (MKL on an AVX2 CPU: one kernel for 1 row, one for 2-3, one from 4 rows on; any row's result is the same for every
#: larger count and position), so without the padding a sample's bits (its latent tokens, its condition embedding,
#: every denoiser call) would depend on which batch it fell in, i.e. on ``sampler.batch_size``. A copy draws
#: exactly its original's randomness (all of it is a function of the index) and every step is per row.
MIN_ROWS = 16


def _padded_rows(rows: int) -> torch.Tensor:
    """Positions (max(rows, MIN_ROWS),) int64 that pick a batch of ``rows`` padded with copies of its last row."""
    return torch.arange(max(rows, MIN_ROWS)).clamp_(max=rows - 1)


def _eps_net(model: Denoiser, schedule: Schedule, prediction: str, path: FastPath):
    """The ε-predicting call of ``model`` on ``path``; puts ``model``'s weights in the path's memory layout."""
    model.to(memory_format=torch.channels_last if path.channels_last else torch.contiguous_format)
    forward = (torch.compile(model, mode="reduce-overhead" if path.cuda_graphs else None) if path.compile
               else model)

    def net(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if path.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # each call is a new replay: no output outlives its step
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=path.precision == "bf16"):
            out = forward(x, t, y)
        if path.cuda_graphs:
            out = out.clone()  # the graph's output buffer is rewritten by its next replay
        return output_to_eps(prediction, out.float(), x, *schedule.coefficients(t, x.dtype, x.ndim))

    return net


def sample_conditions(exp: dict[str, Any], num_classes: int) -> int:
    """How many conditions the samples cycle through (sample i gets condition i mod this): the experiment's
    ``sample_conditions``, or every one of the model's ``num_classes`` when it is 0 / absent."""
    wanted = int(exp.get("sample_conditions") or 0)
    if wanted > num_classes:
        raise ConfigError(f"sample_conditions: {wanted}, but there are {num_classes} conditions (the data set's "
                          f"classes, or the captions sampled from); expected 0 (all) or at most {num_classes}")
    return wanted or num_classes


@torch.no_grad()
def generate(exp: dict[str, Any], seed: int, method: str, weight: float, indices: Sequence[int],
             models: dict[str, Denoiser], batch_size: int = 2048, progress: bool = False,
             tokens: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Samples for global ``indices``: ``x`` as the data set holds it (the model's ``model_to_data``: (n, D) float32
    or uint8 images (n, H, W, C)), ``labels`` (n,), ``index`` (n,), ``tokens`` (n, L).

    ``tokens`` (n, L) int64, for a latent method: use these latents instead of drawing them from the prior (latent
    editing: the same indices and seed give the same diffusion noise, so only the latent differs).
    """
    spec = METHODS.get(method)
    main, guide = models[spec.model], models.get(spec.guide_model) if spec.guide_model else None
    schedule = Schedule.for_model(exp["diffusion"], main.level_layout)
    prediction = exp["diffusion"]["prediction"]
    index_all = torch.as_tensor(list(indices), dtype=torch.int64)
    texts = getattr(main, "condition_texts", None)  # a captioned model's: the training or held-out captions
    conditions = sample_conditions(exp, main.num_classes if texts is None else len(texts))
    device = next((t.device for t in (*main.parameters(), *main.buffers())), torch.device("cpu"))
    path = fast_path(exp["sampler"], device)
    main_net = _eps_net(main, schedule, prediction, path)
    guide_net = _eps_net(guide, schedule, prediction, path) if guide is not None else None
    xs, toks = [], []
    latent_grammar = main.latent_grammar  # image models trained on bbox / blob latents
    constraint = {}  # the toy prior takes no constraint: pass one only where a grammar exists
    if exp["sampler"]["prior_grammar"] and latent_grammar:
        constraint["constraint"] = grammar.from_meta(latent_grammar, main.prior.eos_id)
    for start in tqdm(range(0, len(index_all), batch_size), desc=f"sample {method} w={weight:g}",
                      disable=not progress):
        index = index_all[start:start + batch_size]
        rows = len(index)
        pick = _padded_rows(rows)  # the batch computed: at least MIN_ROWS samples, the first `rows` kept
        index = index[pick]
        labels = (index % conditions).to(device)
        # a captioned model's T5 reads the batch's captions once, for the prior and the denoiser alike
        cond = main.context(labels) if getattr(main, "condition_text", None) else labels
        z = None
        if main.uses_latent and tokens is not None:
            z = torch.as_tensor(tokens[start:start + batch_size], dtype=torch.int64)[pick].to(device)
        elif main.uses_latent:
            z = main.prior.sample(main.context(cond), main.seq_len, seed, index, STREAM_PRIOR,
                                  exp["sampler"]["prior_temperature"], top_k=exp["sampler"]["prior_top_k"],
                                  top_p=exp["sampler"]["prior_top_p"], **constraint).to(device)
        if z is not None:
            toks.append(z[:rows].cpu())
        y, _ = main.encode(cond, z)
        inputs = GuidanceInputs(net=main_net, y=y, y_null=main.null_condition(len(index)),
                                weight=weight, index=index, seed=seed, timesteps=schedule.timesteps,
                                options=exp[spec.guidance] if SCHEMES.get(spec.guidance).options is not None else {},
                                interval=(exp["guidance_interval"]["sigma_lo"], exp["guidance_interval"]["sigma_hi"])
                                if spec.interval else None, alphas_cumprod=schedule.alphas_cumprod)
        if guide is not None:
            inputs.guide, inputs.y_guide = guide_net, guide.encode(labels)[0]
        # a shifted schedule is sampled in the base schedule's space, exactly (kaleido.diffusion.schedule)
        eps_fn, clip_x0, to_data = in_base_space(schedule, SCHEMES.get(spec.guidance)(inputs), main.clip_x0, device)
        # the per-step noise is hashed on the model's device: on the CPU it took ~60 % of a CUDA sampling step of
        # mdm_in256 (13M normals per step at batch 64; benchmarks/denoiser_knobs_gpu.py vs sampling_gpu.py). The
        # hash is integer arithmetic (the same bits anywhere); the float64 Box-Muller may differ by an ulp between
        # CPU and GPU libm, so CUDA samples are deterministic per device, as the bf16 forward already makes them.
        index_dev = index.to(device)
        noise_fn = lambda k, index=index_dev: counter_normal(  # noqa: E731
            seed, index, STREAM_DIFFUSION, k, (main.data_dim,))
        sampler = exp["sampler"]
        xs.append(to_data(run_sampler(sampler["name"], eps_fn, schedule, sampler["steps"], noise_fn,
                                      {k: sampler[k] for k in SAMPLERS.get(sampler["name"]).options if k in sampler},
                                      clip_x0=clip_x0))[:rows].cpu())
    out = {"x": main.model_to_data(torch.cat(xs)), "labels": (index_all % conditions).numpy(),
           "index": index_all.numpy()}
    if toks:
        out["tokens"] = torch.cat(toks).numpy()
        if latent_grammar:  # which drawn latents parse: a weak prior shows here first
            out["latent_ok"] = grammar.well_formed(latent_grammar, out["tokens"], main.prior.eos_id,
                                                   main.prior.pad_id)
    return out


def sample_seed(experiment: str, exp: dict[str, Any], method: str, latent: str, guidance: str) -> int:
    return derive_seed(experiment, exp["seed"], "sample", method, latent, guidance)

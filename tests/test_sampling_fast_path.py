"""The sampling fast path (``sampler.precision`` / ``sampler.compile``, default "auto"): eager fp32 on the CPU, so a
seed gives exactly what it gave before; bf16 autocast + torch.compile on CUDA, deterministic per index on that path
and close to eager fp32 for the same noise (the distribution-level check is benchmarks/sampling_gpu.py fidelity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kaleido import checkpoint, config
from kaleido.generation import fast_path, generate


def _model(device: str) -> torch.nn.Module:
    meta = {"arch": {"arch": "nested_unet", "size": "nested_tiny", "cond_dim": 32,
                     "context": {"encoder": "t5_tiny", "max_length": 4}},
            "data_shape": [16, 16, 3], "num_classes": 3, "class_names": ["a", "b", "c"], "config_hash": "test"}
    torch.manual_seed(0)
    return checkpoint.build_denoiser(meta).to(device).eval()


def _exp(**sampler) -> dict:
    return {"diffusion": {"timesteps": 1000, "schedule": "cosine", "prediction": "eps"},
            "sampler": {**config.block_defaults("sampler"), "name": "ddpm", "steps": 4, **sampler}}


def test_auto_is_eager_fp32_on_the_cpu_and_the_fast_path_on_cuda():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    default = config.block_defaults("sampler")  # what a config that leaves the keys out resolves to
    assert default["precision"] == default["compile"] == "auto"
    assert default["channels_last"] == "auto"
    assert fast_path(default, cpu) == ("fp32", False, False, False)
    assert fast_path(default, cuda) == ("bf16", True, default["cuda_graphs"], True)
    assert fast_path({**default, "precision": "fp32", "compile": False, "channels_last": False}, cuda) == \
        ("fp32", False, False, False)
    assert fast_path({**default, "precision": "bf16", "channels_last": True}, cpu) == ("bf16", False, False, True)


def test_cuda_graphs_apply_only_to_a_forward_compiled_on_cuda():
    graphs = {**config.block_defaults("sampler"), "cuda_graphs": True}
    assert fast_path(graphs, torch.device("cuda")).cuda_graphs
    assert not fast_path({**graphs, "compile": False}, torch.device("cuda")).cuda_graphs
    assert not fast_path({**graphs, "compile": True}, torch.device("cpu")).cuda_graphs


def test_default_cpu_samples_are_the_eager_fp32_samples_bit_for_bit():
    model = _model("cpu")
    default = generate(_exp(), 7, "mdm", 3.0, range(6), {"mdm": model}, batch_size=6)
    eager = generate(_exp(precision="fp32", compile=False), 7, "mdm", 3.0, range(6),
                     {"mdm": model}, batch_size=6)
    assert np.array_equal(default["x"], eager["x"])
    bf16 = generate(_exp(precision="bf16"), 7, "mdm", 3.0, range(6), {"mdm": model}, batch_size=6)
    assert bf16["x"].shape == eager["x"].shape and bf16["x"].dtype == np.uint8


def test_channels_last_sampling_is_the_same_and_leaves_the_model_as_the_default_needs_it():
    """``sampler.channels_last`` (the CUDA default) on the CPU: the same samples up to float rounding; a later call
    on the default path puts the weights back, so its samples are the default's bit for bit."""
    model = _model("cpu")
    default = generate(_exp(), 7, "mdm", 3.0, range(6), {"mdm": model}, batch_size=6)
    nhwc = generate(_exp(channels_last=True), 7, "mdm", 3.0, range(6), {"mdm": model}, batch_size=6)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    diff = np.abs(nhwc["x"].astype(np.int16) - default["x"].astype(np.int16))
    assert diff.max() <= 1, diff.max()
    again = generate(_exp(), 7, "mdm", 3.0, range(6), {"mdm": model}, batch_size=6)
    assert np.array_equal(again["x"], default["x"])


def test_the_sampler_keys_are_validated(tiny_config):
    from kaleido.errors import ConfigError

    tiny_config["experiments"]["toy2d"]["sampler"]["precision"] = "fp16"
    with pytest.raises(ConfigError, match="precision"):
        config.validate(tiny_config)
    tiny_config["experiments"]["toy2d"]["sampler"].update(precision="bf16", compile=False)
    assert config.validate(tiny_config)["experiments"]["toy2d"]["sampler"]["precision"] == "bf16"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fast_path_on_cuda_is_deterministic_per_index_and_close_to_eager():
    model = _model("cuda")
    fast = generate(_exp(), 3, "mdm", 3.0, range(8), {"mdm": model}, batch_size=4)
    again = generate(_exp(), 3, "mdm", 3.0, range(8), {"mdm": model}, batch_size=4)
    halves = [generate(_exp(), 3, "mdm", 3.0, part, {"mdm": model}, batch_size=4) for part in (range(4), range(4, 8))]
    assert np.array_equal(fast["x"], again["x"])  # the same indices, path and batch size: the same samples
    assert np.array_equal(fast["x"], np.concatenate([h["x"] for h in halves]))  # any shard split
    eager = generate(_exp(precision="fp32", compile=False), 3, "mdm", 3.0, range(8),
                     {"mdm": model}, batch_size=4)
    diff = np.abs(fast["x"].astype(np.int16) - eager["x"].astype(np.int16))
    assert diff.mean() < 8, diff.mean()  # same noise: bf16 rounding moves pixels a little (uint8 scale)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_replay_the_compiled_forward_bit_for_bit():
    model = _model("cuda")
    compiled = generate(_exp(), 3, "mdm", 3.0, range(10), {"mdm": model}, batch_size=4)  # batches 4, 4, 2
    graphs = generate(_exp(cuda_graphs=True), 3, "mdm", 3.0, range(10), {"mdm": model}, batch_size=4)
    again = generate(_exp(cuda_graphs=True), 3, "mdm", 3.0, range(10), {"mdm": model}, batch_size=4)
    assert np.array_equal(graphs["x"], again["x"])
    assert np.array_equal(graphs["x"], compiled["x"])

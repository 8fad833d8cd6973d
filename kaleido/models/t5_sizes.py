"""Random-init T5 sizes for CPU tests and small runs (T5Config keyword arguments); torch-free, so the config and
the weights stage can tell a size name from a pretrained model's name without importing torch."""

from __future__ import annotations

from typing import Any

T5_SIZES: dict[str, dict[str, Any]] = {
    "t5_tiny": {"d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4, "num_layers": 2},
    "t5_small_random": {"d_model": 256, "d_ff": 1024, "d_kv": 32, "num_heads": 8, "num_layers": 4},
}

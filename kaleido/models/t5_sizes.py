"""Random-init T5 sizes for CPU tests and small runs (T5Config keyword arguments), and the check of a model's
``prior`` block; torch-free, so the config and the weights stage can tell a size name from a pretrained model's name
without importing torch."""

from __future__ import annotations

from typing import Any

from kaleido.errors import ConfigError

T5_SIZES: dict[str, dict[str, Any]] = {
    "t5_tiny": {"d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4, "num_layers": 2},
    "t5_small_random": {"d_model": 256, "d_ff": 1024, "d_kv": 32, "num_heads": 8, "num_layers": 4},
}

#: the keys of a model's ``prior`` block that say where the AR prior's decoder comes from (exactly one is given)
PRIOR_SOURCES = ("size", "pretrained")
#: the ``prior`` block of an image model that has none
DEFAULT_PRIOR = {"size": "t5_tiny"}


def prior_source(spec: dict[str, Any], where: str = "prior") -> tuple[str, str]:
    """``("size", name)`` (random init, a :data:`T5_SIZES` name) or ``("pretrained", name_or_path)`` (the decoder of
    a T5 / Flan-T5 checkpoint) for a model's ``prior`` block; a :class:`ConfigError` unless exactly one is given."""
    given = [key for key in PRIOR_SOURCES if key in spec]
    if len(given) != 1:
        raise ConfigError(f"{where}: {spec!r} gives {' and '.join(given) if given else 'neither size nor pretrained'};"
                          f" accepted: exactly one of size (a random-init T5 size: {sorted(T5_SIZES)}) or pretrained "
                          "(a T5 / Flan-T5 checkpoint: a save_pretrained directory or a Hugging Face name, e.g. "
                          "google/flan-t5-xl)")
    key = given[0]
    value = spec[key]
    if key == "size" and value not in T5_SIZES:
        raise ConfigError(f"{where}.size: unknown random T5 size {value!r}; choose one of {sorted(T5_SIZES)}, or "
                          "give prior.pretrained (a T5 / Flan-T5 checkpoint) instead")
    return key, value

"""Feature networks (registry): map a set of items to an (n, d) float array the metrics compare.

An extractor declares the input array it reads from a sample/data file (``input_key``) and turns a batch of
those arrays into features. ``identity`` serves vector data (the 2-D toy experiment). The image networks
(``inception``, ``dinov2``, ``dinov2-b``, ``dinov2-hf``, ``dinov2-dgm``, ``sscd``, ``sscd-320``, ``vgg16``,
``domain``) read uint8 (n, H, W, 3)
RGB images under ``x``; their code (torch, torch-fidelity, transformers) is imported only when they run, so this
registry imports with numpy alone. Options (weights path, batch size, device, precision) are set with
:meth:`ImageFeatureNet.with_options`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from metrics.errors import InputError
from metrics.registry import Registry

#: the math of a feature network's forward: "fp32" = PyTorch's default (TF32 convolutions on Ampere and later GPUs,
#: as torch-fidelity runs), "bf16" = autocast on CUDA (moves FD by ~3e-2: quick looks only). float16 autocast is not
#: offered: it moves Inception's FD by 8.6e-4 to 1.1e-2 against TF32, 4-50x the 2e-4 budget against torch-fidelity
#: (benchmarks/feature_precision.py)
PRECISIONS = ("fp32", "bf16")


def check_images(images: object) -> np.ndarray:
    """``images`` as a uint8 (n, H, W, 3) RGB array (n >= 1), else :class:`InputError` naming the shape/dtype.

    Serves the feature networks and the harness's latent extractors alike. An array-like that reads its items on
    demand (``reads_on_demand``: :class:`metrics.store.ShardedArray`, images decoded from files) is checked by its
    ``dtype``/``shape`` and returned as is, so that callers slice it batch by batch instead of loading the set."""
    array = images if getattr(images, "reads_on_demand", False) else np.asarray(images)
    if array.dtype != np.uint8:
        raise InputError(f"images: dtype {array.dtype}; expected uint8 (n, H, W, 3) RGB images")
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise InputError(f"images: shape {array.shape}; expected (n, H, W, 3) with n >= 1 (NHWC, RGB)")
    return array


class FeatureNet(Protocol):
    #: name of the array the extractor reads from an input ``.npz`` (``x`` for vectors and images)
    input_key: str

    def __call__(self, items: np.ndarray) -> np.ndarray:
        """items (n, ...) -> features (n, d) float32."""


@dataclass(frozen=True)
class Identity:
    """Features = the flattened data itself (for low-dimensional synthetic data)."""

    input_key: str = "x"

    def __call__(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(items, dtype=np.float32).reshape(len(items), -1)


@dataclass(frozen=True)
class ImageFeatureNet:
    """An image network implemented by module ``metrics.features.<module>``, or, where no such module exists, by the
    module named ``module`` (a plugin's own: ``ImageFeatureNet(__name__)``); imported on first use.

    The module provides ``extract_outputs(images, *, batch_size, device, weights, variant, precision)`` returning
    {"features": float32 (n, d), ...extra outputs such as "logits"}. ``files``: the registered files
    (:data:`metrics.weights.WEIGHTS`) it loads; ``weights`` is the path of the first of them, a weight file or
    directory (None = its place in torch hub's cache; never downloaded here: ``python -m kaleido.weights fetch``
    does that; networks without registered files take their own, e.g. the DAG-trained ``domain`` CNN).
    ``precision`` is one of :data:`PRECISIONS` (bf16: autocast on CUDA only). Every registered weight file
    is checked against its digest before use (:func:`metrics.weights.check_file`): ``weights_sha256`` pins the
    caller's own digest for its weight file (:attr:`weight_file`, for files without a published digest),
    ``allow_unverified`` lets a file without a matching digest through (the records say so). ``compile``: on CUDA,
    ``torch.compile`` of the forward (:func:`metrics.features._batching.compiled_forward`; modules that batch through
    ``run_batched`` get it without an argument of their own).
    """

    module: str
    variant: str = ""
    files: tuple[str, ...] = ()
    weights: str | None = None
    batch_size: int = 64
    device: str = "cpu"
    precision: str = "fp32"
    weights_sha256: str | None = None
    allow_unverified: bool = False
    compile: bool = False
    input_key: str = "x"

    def with_options(self, **options: Any) -> ImageFeatureNet:
        """A copy with some of ``weights``, ``batch_size``, ``device``, ``precision``, ``weights_sha256``,
        ``allow_unverified``, ``compile`` replaced (None = keep)."""
        return dataclasses.replace(self, **{k: v for k, v in options.items() if v is not None})

    @property
    def module_name(self) -> str:
        """The importable name of the implementing module."""
        inside = f"metrics.features.{self.module}"
        return inside if "." not in self.module and importlib.util.find_spec(inside) is not None else self.module

    def implementation(self) -> Any:
        """The implementing module, checked for what the harness calls: ``extract_outputs`` and ``PREPROCESSING`` (a
        text recorded beside the features, e.g. "uint8 -> x/255, bilinear resize 224")."""
        module = importlib.import_module(self.module_name)
        missing = [name for name in ("extract_outputs", "PREPROCESSING") if not hasattr(module, name)]
        if missing:
            raise TypeError(f"feature network module {self.module_name!r} lacks {missing}: it must define "
                            "extract_outputs(images, *, batch_size, device, weights, variant, precision) and "
                            "PREPROCESSING (a text saying how images are prepared)")
        return module

    def weight_paths(self) -> list[tuple[str, Path]]:
        """(registered name, path) of every file in ``files``: ``weights`` for the first, else its cache path."""
        from metrics.weights import WEIGHTS

        return [(name, Path(self.weights) if position == 0 and self.weights is not None
                 else WEIGHTS.get(name).default_path()) for position, name in enumerate(self.files)]

    @property
    def weight_file(self) -> str | None:
        """The registered name of the network's weight file (its first file that is not code), or None."""
        from metrics.weights import WEIGHTS, WeightFile

        return next((name for name in self.files if isinstance(WEIGHTS.get(name), WeightFile)), None)

    def weight_checks(self) -> list[dict[str, Any]]:
        """One :func:`metrics.weights.check_file` record per registered weight file the network loads and that
        exists (a missing one is reported by the loader, with where it was looked for; code repositories are not
        weights). ``weights_sha256`` pins :attr:`weight_file`. Raises on a refused file."""
        from metrics.weights import WEIGHTS, WeightFile, check_file

        return [check_file(path, entry, pin=self.weights_sha256 if name == self.weight_file else None,
                           allow_unverified=self.allow_unverified)
                for name, path in self.weight_paths()
                if isinstance(entry := WEIGHTS.get(name), WeightFile) and path.is_file()]

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 (n, H, W, 3) images -> {"features": float32 (n, d), ...} (e.g. "logits" for Inception)."""
        images = check_images(images)
        self.weight_checks()  # refuse unexpected weights before any work (digests are cached per process)
        module = self.implementation()
        from metrics.features._batching import compiled_forward

        with compiled_forward(self.compile):
            return module.extract_outputs(images, batch_size=self.batch_size, device=self.device,
                                          weights=self.weights, variant=self.variant, precision=self.precision)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.outputs(images)["features"]


FEATURE_NETS: Registry[FeatureNet] = Registry("feature network")
FEATURE_NETS.register("identity")(Identity())
FEATURE_NETS.register("inception")(ImageFeatureNet("inception", files=("inception-v3-compat",)))
FEATURE_NETS.register("dinov2")(ImageFeatureNet("dinov2", variant="dinov2_vitl14",
                                                files=("dinov2-repo", "dinov2_vitl14")))
FEATURE_NETS.register("dinov2-b")(ImageFeatureNet("dinov2", variant="dinov2_vitb14",
                                                  files=("dinov2-repo", "dinov2_vitb14")))
FEATURE_NETS.register("dinov2-hf")(ImageFeatureNet("dinov2", variant="hf"))
FEATURE_NETS.register("dinov2-dgm")(ImageFeatureNet("dinov2_dgm", variant="dinov2_vitl14",
                                                    files=("dinov2-repo", "dinov2_vitl14")))
FEATURE_NETS.register("sscd")(ImageFeatureNet("sscd", files=("sscd_disc_mixup",)))
FEATURE_NETS.register("sscd-320")(ImageFeatureNet("sscd", variant="square320", files=("sscd_disc_mixup",)))
FEATURE_NETS.register("vgg16")(ImageFeatureNet("vgg16", files=("vgg16",)))
FEATURE_NETS.register("domain")(ImageFeatureNet("domain"))

"""What training and sampling call on a denoiser, whatever its kind: :class:`Denoiser` (and its latent prior).

Implemented by :class:`~kaleido.models.denoiser.ConditionalDenoiser` (vectors),
:class:`~kaleido.models.image_denoiser.ImageDenoiser` (images as a flat multi-resolution vector) and the exact
score oracle :class:`~kaleido.models.exact_gmm.ExactGMMDenoiser`; vector denoisers take their data-space half
from :class:`VectorData`. A new kind of denoiser implements this protocol and needs no branch in the stages.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from metrics.errors import InputError


@runtime_checkable
class LatentPriorModel(Protocol):
    """p_AR(z | c): teacher-forced logits for training, seeded ancestral sampling, and its own L_AR."""

    def __call__(self, context: Any, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context, tokens (B, L) -> next-token logits (B, L, V) and the state the denoiser is conditioned on."""

    def sample(self, context: Any, seq_len: int, seed: int, index: torch.Tensor, stream: int, **options: Any
               ) -> torch.Tensor:
        """Tokens (B, seq_len); token k of sample i depends only on (seed, index[i], stream, k)."""

    def loss(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """L_AR (scalar) of teacher-forced ``logits`` (B, L, V) against ``tokens`` (B, L)."""


@runtime_checkable
class Denoiser(Protocol):
    """A conditional denoiser f(x_t, t, y) and the conversions between the data set's arrays and its inputs.

    Shapes: x (B, data_dim) float; t (B,) int timesteps; labels (B,) int; tokens (B, seq_len) int; y as ``encode``
    builds it.
    """

    num_classes: int
    data_dim: int
    seq_len: int
    prior: LatentPriorModel | None
    #: |x0| bound applied while sampling (images live in [-1, 1]); None for unbounded vectors
    clip_x0: float | None
    #: the bbox/blob grammar record the prior's sampling can be constrained by
    #: (:func:`kaleido.latents.grammar.grammar_meta`), or None
    latent_grammar: dict[str, Any] | None
    #: (elements, resolution) of each nested resolution level of the flat vector, outermost first (what a
    #: per-resolution shifted schedule needs: :meth:`kaleido.diffusion.schedule.Schedule.for_model`); None for vectors
    level_layout: list[tuple[int, int]] | None

    @property
    def uses_latent(self) -> bool:
        """True for a latent-augmented (Kaleido) denoiser, whose ``prior`` draws z ~ p(z | c)."""

    def context(self, labels: Any) -> Any:
        """The class (or caption) context the latent prior is conditioned on, for ``labels`` (B,)."""

    def encode(self, labels: Any, tokens: torch.Tensor | None = None, drop: torch.Tensor | None = None
               ) -> tuple[Any, torch.Tensor | None]:
        """Condition y and, for Kaleido, the prior's teacher-forced logits (B, L, V) (else None)."""

    def null_condition(self, batch: int) -> Any:
        """The unconditional y of ``batch`` samples."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: Any) -> torch.Tensor:
        """The network output (B, data_dim) (ε, x0 or v, per the diffusion's prediction)."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The diffusion loss (scalar) of ``output`` against ``target``, both (B, data_dim)."""

    def data_to_model(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A batch of a data set's ``x`` (n, ...), numpy or a tensor -> the model's input vectors (n, data_dim)
        float32 on the input's device (CPU for numpy)."""

    def model_to_data(self, x: torch.Tensor) -> np.ndarray:
        """Generated vectors (n, data_dim) (CPU) -> arrays as the data set holds them."""


def not_model_input(x: np.ndarray, model: object) -> InputError:
    """The error for data a denoiser cannot take: images for a vector model, or anything but uint8 images for an
    image model."""
    return InputError(f"images must be uint8 (n, H, W, C) for an image architecture; got {x.dtype} {x.shape} "
                      f"for {type(model).__name__}")


class VectorData:
    """The data-space half of :class:`Denoiser` for denoisers of flat float vectors: identity conversions and the
    MSE over all entries."""

    clip_x0: float | None = None
    latent_grammar: dict[str, Any] | None = None
    level_layout: list[tuple[int, int]] | None = None

    def data_to_model(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Vectors (n, ...) (numpy, or a tensor on any device) flattened to (n, D) float32 on the input's device;
        images are refused (they need an image architecture)."""
        if x.ndim == 4:
            raise not_model_input(x, self)
        if isinstance(x, torch.Tensor):
            return x.reshape(len(x), -1).float()
        return torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32))

    def model_to_data(self, x: torch.Tensor) -> np.ndarray:
        """(n, D) -> float32 numpy."""
        return x.numpy().astype(np.float32)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error over every entry."""
        return torch.mean((output - target) ** 2)

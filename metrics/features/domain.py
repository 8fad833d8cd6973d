"""The in-DAG domain feature network: a small CNN classifier trained on the experiment's own images and labels.

    python -m metrics.features.domain train --data train.npz --out domain.pt --seed 0 [--steps 2000]

Architecture: 4 stride-2 3x3 conv blocks (width w, 2w, 4w, 4w; GroupNorm + SiLU), global average pool,
linear -> ``feature_dim`` -> SiLU (the features), linear -> classes. Input: uint8 (n, H, W, 3) scaled to [-1, 1];
any H, W (global pooling). Training: Adam, cross-entropy, minibatches drawn from ``torch.Generator`` seeded by
``seed``, on CPU with deterministic algorithms, so the same data + seed give the same file. The file is a plain
dict {"format", "config", "state_dict", "train"} written with ``torch.save`` and read with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metrics._validate import check_positive_int
from metrics.errors import InputError
from metrics.features import check_images
from metrics.features._batching import loading_weights, missing_weights, run_batched

FORMAT = "kaleido-domain-cnn-v1"
PREPROCESSING = "domain CNN: uint8 -> x/127.5 - 1, native resolution"


class DomainCNN(nn.Module):
    """Small CNN; :meth:`features` gives the penultimate (b, feature_dim) activations."""

    def __init__(self, num_classes: int, width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        chans = (3, width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(chans[-1], feature_dim), nn.SiLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (b, 3, H, W) -> float32 (b, feature_dim)."""
        return self.embed(self.body(images.float() / 127.5 - 1.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (b, 3, H, W) -> class logits (b, num_classes)."""
        return self.head(self.features(images))


def train(images: np.ndarray, labels: np.ndarray, *, seed: int, steps: int = 2000, batch_size: int = 128,
          lr: float = 1e-3, width: int = 32, feature_dim: int = 128) -> dict[str, Any]:
    """Train a :class:`DomainCNN` on uint8 (n, H, W, 3) images and int (n,) labels in [0, classes); CPU.

    Returns:
        The checkpoint dict (see module docstring); ``train`` holds the settings and the final-batch accuracy.
    """
    images = check_images(images)
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"labels: shape {labels.shape} dtype {labels.dtype}; expected ({len(images)},) ints >= 0")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    num_classes = int(labels.max()) + 1
    config = {"num_classes": num_classes, "width": width, "feature_dim": feature_dim}
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        model = DomainCNN(**config)
        generator = torch.Generator().manual_seed(seed)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        x_all = torch.from_numpy(images).permute(0, 3, 1, 2)
        y_all = torch.from_numpy(labels.astype(np.int64))
        accuracy = 0.0
        for _ in range(steps):
            rows = torch.randint(0, len(images), (min(batch_size, len(images)),), generator=generator)
            logits = model(x_all[rows])
            loss = nn.functional.cross_entropy(logits, y_all[rows])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            accuracy = float((logits.argmax(1) == y_all[rows]).float().mean())
    finally:
        torch.use_deterministic_algorithms(deterministic)
    return {"format": FORMAT, "config": config, "state_dict": model.state_dict(),
            "train": {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, "num_images": len(images),
                      "last_batch_accuracy": accuracy}}


@functools.lru_cache(maxsize=2)
def load(weights: str | None, device: str) -> DomainCNN:
    """The trained :class:`DomainCNN` from a checkpoint written by ``train`` (``torch.load(weights_only=True)``)."""
    if weights is None or not Path(weights).is_file():
        raise missing_weights("domain CNN", None if weights is None else Path(weights),
                              "train it with `python -m metrics.features.domain train --data TRAIN.npz --out FILE "
                              "--seed N` and set that file as the feature network's weights path")
    expected = f"a checkpoint of `python -m metrics.features.domain train` (format {FORMAT!r})"
    with loading_weights("domain CNN", weights, expected):
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise InputError(f"{weights}: not a domain-CNN checkpoint; expected {expected}")
    with loading_weights("domain CNN", weights, expected):
        model = DomainCNN(**checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
    return model.eval().requires_grad_(False).to(device)


def extract_outputs(images: np.ndarray, *, batch_size: int = 64, device: str = "cpu", weights: str | None = None,
                    variant: str = "", precision: str = "fp32") -> dict[str, np.ndarray]:
    """uint8 (n, H, W, 3) -> {"features": float32 (n, feature_dim), "logits": float32 (n, classes)}."""
    del variant
    model = load(weights, str(device))

    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        features = model.features(batch)
        return {"features": features, "logits": model.head(features)}

    return run_batched(images, forward, batch_size=batch_size, device=device, precision=precision, desc="domain")


def extract(images: np.ndarray, batch_size: int = 64, device: str = "cpu", **options: object) -> np.ndarray:
    """uint8 (n, H, W, 3) -> float32 (n, feature_dim) penultimate-layer features."""
    return extract_outputs(images, batch_size=batch_size, device=device, **options)["features"]


def main(argv: Sequence[str] | None = None) -> int:
    """``train`` subcommand: fit on --data (.npz with uint8 ``x`` (n, H, W, 3), int ``labels``), save to --out."""
    from metrics.io import atomic_path
    from metrics.store import load_data

    parser = argparse.ArgumentParser(prog="python -m metrics.features.domain", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the domain CNN on a training-image .npz")
    tr.add_argument("--data", required=True, nargs="+", type=Path, help=".npz file(s) with keys 'x' and 'labels'")
    tr.add_argument("--out", required=True, type=Path, help="output checkpoint (.pt)")
    tr.add_argument("--seed", required=True, type=int, help="seed of the initialisation and the batch order")
    tr.add_argument("--steps", type=int, default=2000, help="Adam steps (default 2000)")
    tr.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    tr.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    tr.add_argument("--width", type=int, default=32, help="channels of the first convolution (default 32)")
    tr.add_argument("--feature-dim", type=int, default=128,
                    help="width of the feature layer, the features' dimension (default 128)")
    args = parser.parse_args(argv)
    try:
        data = [load_data(p) for p in args.data]
        checkpoint = train(np.concatenate([d["x"] for d in data]), np.concatenate([d["labels"] for d in data]),
                           seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           width=args.width, feature_dim=args.feature_dim)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with atomic_path(args.out, suffix=".pt") as tmp:
        torch.save(checkpoint, tmp)
    print(f"domain CNN: {checkpoint['train']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

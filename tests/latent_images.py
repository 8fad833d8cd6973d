"""A tiny independent shape drawer for the latent tests (numpy only): images + ground truth in the shapes format."""

from __future__ import annotations

import numpy as np

PALETTE = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}


def draw(n: int, size: int = 32, seed: int = 0, max_objects: int = 3) -> dict[str, np.ndarray]:
    """Non-overlapping filled circles/squares/triangles on a dark background, with ``gt_*`` arrays."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    images[:] = (20, 20, 30)
    count = np.zeros(n, dtype=np.int64)
    boxes = np.zeros((n, max_objects, 4))
    colors = np.full((n, max_objects), "", dtype="<U16")
    shapes = np.full((n, max_objects), "", dtype="<U16")
    rgb = np.zeros((n, max_objects, 3), dtype=np.uint8)
    for i in range(n):
        occupied = np.zeros((size, size), dtype=bool)
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _attempt in range(20):
                s = int(rng.integers(7, 13)) * size // 32
                x0, y0 = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
                shape = str(rng.choice(["circle", "square", "triangle"]))
                inside = (xx >= x0) & (xx < x0 + s) & (yy >= y0) & (yy < y0 + s)
                if shape == "circle":
                    mask = (xx - x0 - s / 2) ** 2 + (yy - y0 - s / 2) ** 2 <= (s / 2) ** 2
                elif shape == "triangle":  # apex at the top centre
                    mask = inside & (np.abs(xx - x0 - s / 2) <= (yy - y0) / 2)
                else:
                    mask = inside
                grown = np.zeros_like(mask)
                gap = 2 * size // 32
                grown[max(0, y0 - gap):y0 + s + gap, max(0, x0 - gap):x0 + s + gap] = True
                if not (grown & occupied).any():
                    break
            else:
                continue
            colour = str(rng.choice(list(PALETTE)))
            images[i][mask] = PALETTE[colour]
            occupied |= mask
            ys, xs = np.nonzero(mask)
            k = count[i]
            boxes[i, k] = (xs.min() / size, ys.min() / size, (xs.max() + 1) / size, (ys.max() + 1) / size)
            colors[i, k], shapes[i, k], rgb[i, k] = colour, shape, PALETTE[colour]
            count[i] += 1
    return {"x": images, "labels": np.zeros(n, dtype=np.int64), "gt_count": count, "gt_boxes": boxes,
            "gt_colors": colors, "gt_shapes": shapes, "gt_rgb": rgb}


def draw_antialiased(n: int, seed: int = 0, noise: float = 0.0, factor: int = 4) -> dict[str, np.ndarray]:
    """As :func:`draw`, rendered at ``factor`` x resolution and box-downsampled to 32x32 (anti-aliased edges), plus
    Gaussian pixel noise of std ``noise`` (uint8 units)."""
    data = draw(n, size=32 * factor, seed=seed)
    x = data["x"].reshape(n, 32, factor, 32, factor, 3).astype(np.float64).mean(axis=(2, 4))
    x = x + np.random.default_rng(seed + 1).normal(0.0, noise, x.shape) if noise else x
    return {**data, "x": np.clip(x, 0, 255).round().astype(np.uint8)}

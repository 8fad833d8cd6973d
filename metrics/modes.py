"""Mode metrics for the toy mixture experiment (paper fig. 2/3): which true modes each class's samples reach.

Every sample is assigned to its nearest true centre. A sample of class c counts for a mode only if that mode
belongs to class c; samples that land in another class's mode count for nothing (they are neither coverage
nor diversity of class c).
"""

from __future__ import annotations

import numpy as np

from metrics._validate import as_features, check_same_dim


def mode_assignment(samples: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) of each sample; exact ties go to the lower index.

    Args:
        samples: (n, d) points (d = 2 for the toy). centres: (m, d) true mode centres.
    Returns:
        (n,) int64 array with values in [0, m).
    """
    x = as_features(samples, "samples")
    c = as_features(centres, "centres")
    check_same_dim(x, c, "samples", "centres")
    sq_dist = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)  # (n, m); m is a handful of modes
    return np.argmin(sq_dist, axis=1).astype(np.int64)


def _own_mode_counts(
    samples: np.ndarray, labels: np.ndarray, centres: np.ndarray, centre_classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate inputs and count, for every mode j, the samples of class(j) assigned to j.

    Returns:
        ``(own_counts (m,) int64, class_sizes (m,) int64 = number of samples of class(j), centre_classes (m,))``.
    """
    assignment = mode_assignment(samples, centres)
    labels = np.asarray(labels)
    centre_classes = np.asarray(centre_classes)
    n, m = assignment.shape[0], np.asarray(centres).shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels: shape {labels.shape}; expected ({n},), one class id per sample")
    if centre_classes.shape != (m,):
        raise ValueError(f"centre_classes: shape {centre_classes.shape}; expected ({m},), one class id per centre")
    unknown = np.setdiff1d(labels, centre_classes)
    if unknown.size:
        raise ValueError(
            f"labels: class id(s) {unknown.tolist()} own no centre; accepted class ids: "
            f"{np.unique(centre_classes).tolist()}"
        )
    own = labels == centre_classes[assignment]  # (n,) sample landed in a mode of its own class
    own_counts = np.bincount(assignment[own], minlength=m)
    class_sizes = np.array([(labels == cls).sum() for cls in centre_classes], dtype=np.int64)
    return own_counts, class_sizes, centre_classes


def mode_shares(samples: np.ndarray, labels: np.ndarray, centres: np.ndarray, centre_classes: np.ndarray) -> np.ndarray:
    """Share of each mode's own class's samples that are assigned to it.

    Args:
        samples: (n, d) points. labels: (n,) class id per sample. centres: (m, d). centre_classes: (m,) class id
        of each centre (every sample label must own at least one centre).
    Returns:
        (m,) float64: for mode j of class c, #{samples of class c nearest to centre j} / #{samples of class c}
        (0 when class c has no samples). Shares of one class's modes sum to <= 1; the rest of that class's
        samples landed in other classes' modes.
    """
    own_counts, class_sizes, _ = _own_mode_counts(samples, labels, centres, centre_classes)
    return np.divide(own_counts, class_sizes, out=np.zeros(own_counts.shape[0]), where=class_sizes > 0)


def modes_covered(
    samples: np.ndarray,
    labels: np.ndarray,
    centres: np.ndarray,
    centre_classes: np.ndarray,
    min_share: float = 0.05,
) -> int:
    """Number of true modes that receive at least ``min_share`` of their own class's samples.

    Args:
        samples, labels, centres, centre_classes: as :func:`mode_shares`.
        min_share: threshold in (0, 1] on a mode's share of its class's samples.
    Returns:
        Integer in [0, m].
    """
    if not 0.0 < float(min_share) <= 1.0:
        raise ValueError(f"min_share={min_share!r}; expected a fraction in (0, 1]")
    return int((mode_shares(samples, labels, centres, centre_classes) >= min_share).sum())


def mode_entropy_per_class(
    samples: np.ndarray, labels: np.ndarray, centres: np.ndarray, centre_classes: np.ndarray
) -> dict[object, float]:
    """Shannon entropy (nats) of each class's samples over that class's own modes.

    For class c with own-mode counts n_j (samples of class c nearest to centre j, j a mode of c), the entropy of
    p_j = n_j / sum_j n_j; samples in other classes' modes are left out. It is log(#modes of c) for an even
    split and 0 when all of them sit in one mode, or when none of class c's samples reach its own modes.

    Returns:
        {class id (Python scalar): entropy in nats}, for every class that owns a centre, in sorted order.
    """
    own_counts, _, centre_classes = _own_mode_counts(samples, labels, centres, centre_classes)
    entropies = {}
    for cls in np.unique(centre_classes):
        counts = own_counts[centre_classes == cls]
        total = counts.sum()
        p = counts[counts > 0] / total if total > 0 else np.zeros(0)
        entropies[cls.item()] = float(-(p * np.log(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    return entropies


def mode_entropy(samples: np.ndarray, labels: np.ndarray, centres: np.ndarray, centre_classes: np.ndarray) -> float:
    """Mean over classes of :func:`mode_entropy_per_class` (nats); log(2) for two evenly used modes per class."""
    return float(np.mean(list(mode_entropy_per_class(samples, labels, centres, centre_classes).values())))

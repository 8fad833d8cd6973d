"""Seeds derived from names: every random draw in the harness is keyed by (experiment, stage, ..., index).

:func:`derive_seed` turns any tuple of names into a 63-bit seed; :mod:`kaleido.rng` turns a seed and a sample
index into batch- and device-independent random numbers.
"""

from __future__ import annotations

import hashlib


def derive_seed(*keys: object) -> int:
    """A 63-bit seed from the SHA-256 of ``keys`` (e.g. ``("toy2d", 0, "sample", "mdm", "none", "8")``)."""
    blob = "\x1f".join(repr(k) if isinstance(k, float) else str(k) for k in keys).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1

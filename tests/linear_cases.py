"""Inputs shared by ``tests/test_linear_tiles.py`` and
``tests/test_linear_jax.py``: 37 rows, hidden 16, 1000 classes (37000
logits, above ``kernels.MIN_SIZE``), float32, logits a few units in size."""

from __future__ import annotations

import numpy as np

N, H, V = 37, 16, 1000
IGNORED_ROWS = [2, 20]  # their target is -100 where ignore_index is given


def data(seed: int = 0) -> dict[str, np.ndarray]:
    """hidden ``h``, weight ``w``, bias ``b``, class weights ``cw``, targets
    ``t`` (see :func:`targets`) and per-row cotangents ``g``."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, V, N)
    t[IGNORED_ROWS] = -100
    return {
        "h": rng.standard_normal((N, H)).astype(np.float32),
        "w": (rng.standard_normal((V, H)) * 0.6).astype(np.float32),
        "b": (rng.standard_normal(V) * 0.5).astype(np.float32),
        "cw": rng.uniform(0.5, 2.0, V).astype(np.float32),
        "t": t,
        "g": rng.standard_normal(N).astype(np.float32),
    }


def targets(d: dict, opts: dict) -> np.ndarray:
    """The targets for the options ``opts``: -100 (ignored) where they give
    ``ignore_index``, else a valid class in its place."""
    t = d["t"].copy()
    if "ignore_index" not in opts:
        t[t == -100] = 7
    return t

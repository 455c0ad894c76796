"""``reduction='none' | 'mean' | 'sum'``, accumulated accurately on every backend.

Where the library has float64 (NumPy, PyTorch off MPS, CuPy, Dask,
array-api-strict, JAX with x64) the sum is accumulated in float64. XLA reduces
float32 as a tree, already within about an ulp, so JAX without x64 uses its own
sum. MLX's CPU sum runs one element after another in float32 and drifts by
``n * eps``; there a pairwise sum with an error-free transformation (TwoSum) at
every level keeps the result within a few ulp at any length.
"""

from __future__ import annotations

import math
from typing import Any

from ._backend import Backend

__all__ = ["reduce"]


def _pairwise_two_sum(xp: Any, flat: Any, n: int, dtype: Any) -> Any:
    """Sum of a 1-D float32 array: pairwise, compensated with TwoSum."""
    errors = []
    x = flat
    while n > 1:
        if n % 2:
            x = xp.concat([x, xp.zeros((1,), dtype=dtype)])
            n += 1
        pairs = xp.reshape(x, (n // 2, 2))
        a, b = pairs[:, 0], pairs[:, 1]
        s = a + b
        bv = s - a
        errors.append(xp.sum((a - (s - bv)) + (b - bv)))
        x, n = s, n // 2
    total = x[0] if n == 1 else xp.zeros((), dtype=dtype)
    if errors:
        correction = errors[0]
        for e in errors[1:]:
            correction = correction + e
        total = total + correction
    return total


def reduce(be: Backend, loss: Any, reduction: str) -> Any:
    """Apply ``reduction`` to ``loss`` and cast the result to the caller's dtype."""
    if reduction == "none":
        return be.finish(loss)
    xp = be.xp
    n = math.prod(loss.shape)
    if be.wide != loss.dtype and be.wide == getattr(xp, "float64", None):
        total = xp.sum(loss, dtype=be.wide)
    elif be.name != "mlx" or loss.dtype == getattr(xp, "float64", None):
        total = xp.sum(loss)
    else:
        flat = xp.reshape(loss, (n,))
        total = _pairwise_two_sum(xp, flat, n, loss.dtype)
    if reduction == "mean":
        total = total / n
    return be.finish(total)

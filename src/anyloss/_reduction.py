"""``reduction='none' | 'mean' | 'sum'``, accumulated accurately on every backend.

Where the library has float64 (NumPy, CuPy, Dask, array-api-strict, JAX with
x64) the sum is accumulated in float64. PyTorch (cascaded sums on the CPU, a
tree on GPUs) and XLA (a tree) already sum float32 to within about an ulp, so
torch and JAX without x64 use their own sums. MLX's CPU sum runs one element
after another in float32 and drifts by ``n * eps``; there a pairwise sum with an
error-free transformation (TwoSum) at every level keeps the result within a few
ulp at any length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._backend import Backend, reduced_shape
from ._compensated import two_sum

__all__ = ["Total", "amax", "reduce"]


@dataclass(frozen=True)
class Total:
    """A loss a kernel has already summed: ``total`` (a 0-d array of the
    call's library, differentiable where it is) over ``count`` elements.
    :func:`reduce` takes it in place of the per-element values for
    ``'mean'`` and ``'sum'``."""

    total: Any
    count: int


def amax(be: Backend, x: Any, axis: Any = None, keepdims: bool = False, empty: float = 0.0) -> Any:
    """``xp.max(x, axis=axis, keepdims=keepdims)`` that also takes empty arrays.

    A maximum over axes that hold no element has no identity (NumPy, JAX and
    MLX raise a ValueError, torch an IndexError): it is ``empty`` here, a value
    the caller chooses. A result with no element is built directly, since Dask
    fails on the maximum of blocks without rows. Only shapes are looked at.
    """
    shape = tuple(x.shape)
    if all(d != 0 for d in shape):  # (an unknown Dask size, NaN, is not 0)
        return be.xp.max(x, axis=axis, keepdims=keepdims)
    out, _ = reduced_shape(shape, axis, keepdims)
    if any(d != d for d in out):  # a Dask size not known yet
        return be.xp.max(x, axis=axis, keepdims=keepdims)
    return be.full(out, empty, x.dtype)


def _compensated_sum(xp: Any, flat: Any, n: int) -> Any:
    """Sum of a 1-D float32 array to within about an ulp: pairwise over
    contiguous halves, with the rounding error of every addition (TwoSum)
    carried along elementwise and added back at the end."""
    x, err = flat, None
    while n > 1:
        if n % 2:
            pad = xp.zeros_like(x[:1])  # (on x's device)
            x = xp.concat([x, pad])
            err = None if err is None else xp.concat([err, pad])
            n += 1
        half = n // 2
        s, e = two_sum(x[:half], x[half:])
        err = e if err is None else err[:half] + err[half:] + e
        x, n = s, half
    total = xp.reshape(x, ())
    return total if err is None else total + xp.reshape(err, ())


def _total(be: Backend, loss: Any) -> Any:
    """The sum of every element of ``loss``, accumulated accurately."""
    xp = be.xp
    if be.name == "torch":
        # torch sums float32 in cascaded blocks (CPU) or a tree (CUDA): within
        # an ulp at any length (measured: <= 0.92 ulp up to 2**24 elements),
        # and a float64 sum would cost a cast of the whole loss
        return xp.sum(loss)
    if be.wide != loss.dtype and be.wide == getattr(xp, "float64", None):
        return xp.sum(loss, dtype=be.wide)
    if be.name != "mlx" or loss.dtype == getattr(xp, "float64", None):
        return xp.sum(loss)
    # The value is the compensated sum; the gradient (all ones) is taken
    # through the plain sum, which autodiff handles cheaply.
    n = math.prod(loss.shape)
    plain = xp.sum(loss)  # 0 where loss is empty (the MLX adapter never sums nothing)
    if n == 0:
        return plain
    exact = _compensated_sum(xp, xp.reshape(be.stop_gradient(loss), (n,)), n)
    # an inf or NaN total is the plain one, and so is a finite total whose
    # pairwise partial sums overflow (TwoSum turns inf into inf - inf)
    correction = exact - plain
    correction = xp.where(xp.isfinite(correction), correction, be.scalar(0.0, plain.dtype))
    return plain + be.stop_gradient(correction)


def reduce(be: Backend, loss: Any, reduction: str, denominator: Any = None) -> Any:
    """Apply ``reduction`` to ``loss`` and cast the result to the caller's dtype.

    ``loss`` is the per-element (or per-row) loss, or a :class:`Total`.

    ``'mean'`` divides the sum by the number of elements, or, where
    ``denominator`` is given (an array, e.g. the class weight applied to each
    example, 0 for ignored ones), by the sum of ``denominator``.
    """
    if isinstance(loss, Total):
        if reduction == "none":
            raise ValueError("reduce(): a Total has no per-element values for reduction='none'")
        total, n = loss.total, loss.count
        if reduction == "mean":
            total = total / n if n else total * be.scalar(float("nan"), total.dtype)
        return be.finish(total)
    if reduction == "none":
        return be.finish(loss)
    xp = be.xp
    total = _total(be, loss)
    if reduction == "mean":
        n = math.prod(loss.shape)
        if n == 0:
            # the mean of nothing is NaN, as in MLX and NumPy: 0 * NaN rather
            # than 0 / 0, which Dask would warn about when it computes
            total = total * be.scalar(float("nan"), total.dtype)
        elif denominator is not None:
            total = total / _total(be, be.cast(denominator, loss.dtype))
        else:
            if n != n:  # Dask with sizes not known yet: count lazily
                n = xp.sum(xp.ones_like(loss, dtype=total.dtype))
            total = total / n
    return be.finish(total)

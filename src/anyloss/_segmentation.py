"""Overlap losses for segmentation: soft Dice."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ._backend import Backend, resolve
from ._checks import (
    Reduction,
    check_reduction,
    float_arg,
    normalize_axis,
    number,
    public,
    same_shape,
)
from ._compensated import (
    dd_add,
    dd_constant,
    dd_div,
    dd_finish,
    dd_sums,
    exact_value,
    fused,
    two_prod,
    two_sum,
)
from ._reduction import reduce
from ._typing import Array, ArrayLike

__all__ = [
    "dice_loss",
]


def _axes(func: str, axis: object, ndim: int) -> tuple[int, ...] | None:
    """``axis`` (an int, a tuple/list of ints, or None) as sorted, distinct axes."""
    if axis is None:
        return None
    if isinstance(axis, tuple | list):
        axes = [normalize_axis(func, a, ndim, "inputs") for a in axis]
        if len(set(axes)) != len(axes):
            raise ValueError(f"{func}(): axis {tuple(axis)} names an axis more than once")
        return tuple(sorted(axes))
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(
            f"{func}(): axis must be an int, a tuple of ints or None, got {type(axis).__name__}"
        )
    return (normalize_axis(func, axis, ndim, "inputs"),)


@public
def dice_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    smooth: float = 1.0,
    reduction: Reduction = "mean",
) -> Array:
    r"""Compute the soft Dice loss.

    With probabilities :math:`x`, targets :math:`t` and sums over ``axis``:

    .. math::

        \ell = 1 - \frac{2 \sum x t + s}{\sum x + \sum t + s}
             = \frac{\sum \left(x (1 - t) + t (1 - x)\right)}{\sum x + \sum t + s}

    where :math:`s` is ``smooth``. The right-hand form is what is evaluated:
    its numerator is a sum of nonnegative terms, so a near-perfect overlap
    (a ratio close to 1) keeps its small loss exactly instead of losing it to
    the cancellation in ``1 - ratio``; the sums run in float64 where the
    library has it. A pair with nothing in it (all sums 0, ``smooth = 0``)
    gives 0, the limit as ``smooth`` goes to 0, not NaN.

    Keras' ``dice(y_true, y_pred, axis=None)`` has no smoothing and adds
    ``1e-7`` to the denominator only: ``dice_loss(y_pred, y_true, axis=...,
    smooth=0.0)`` matches it to that ``1e-7`` (Keras gives 1, not 0, for an
    empty pair).

    Args:
        inputs: Predicted probabilities.
        targets: Targets (probabilities or ``{0, 1}`` masks), with the shape of
            ``inputs``.
        axis: The axis or axes summed over (an int, a tuple of ints, or
            ``None`` for all axes: one value for the whole array).
            Default: ``-1``.
        smooth: Smoothing added to the numerator and denominator, ``>= 0``.
            Default: ``1.0``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The Dice loss (per example: the shape of ``inputs`` without ``axis``),
        in the array library and dtype of ``inputs``.

    Raises:
        ValueError: Shapes that do not match, ``smooth < 0``, an axis named
            twice, an unknown reduction.
        IndexError: An axis out of range (also a ``ValueError``).

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> probs = np.array([[0.9, 0.8, 0.1, 0.0], [0.2, 0.1, 0.7, 0.6]], dtype=np.float32)
        >>> masks = np.array([[1, 1, 0, 0], [1, 1, 0, 0]])
        >>> anyloss.dice_loss(probs, masks, reduction="none")
        array([0.0833333, 0.652174], dtype=float32)
        >>> anyloss.dice_loss(probs, masks, smooth=0.0)
        array(0.469298, dtype=float32)
        >>> anyloss.dice_loss(probs, masks, axis=None)
        array(0.404762, dtype=float32)
    """
    func = "dice_loss"
    check_reduction(func, reduction)
    s = number(func, "smooth", smooth, low=0.0, high=float("inf"), high_open=True)
    be = resolve(func, ("inputs", inputs), ("targets", targets))
    xp = be.xp
    dtype = be.wide
    x = float_arg(be, func, "inputs", inputs, dtype)
    t = float_arg(be, func, "targets", targets, dtype)
    same_shape(func, ("inputs", x), ("targets", t))
    axes = _axes(func, axis, x.ndim)
    zero, one = be.scalar(0.0, dtype), be.scalar(1.0, dtype)
    mismatch = xp.sum(x * (one - t) + t * (one - x), axis=axes)
    total = xp.sum(x, axis=axes) + xp.sum(t, axis=axes) + be.scalar(s, dtype)
    empty = total == zero
    loss = xp.where(empty, zero, mismatch / xp.where(empty, one, total))
    if be.float32_only and all(x.shape):
        summed = tuple(range(x.ndim)) if axes is None else axes
        loss = exact_value(be, fused(be, _dice_dd, summed, s)(x, t), loss)
    return reduce(be, loss, reduction)


def _dice_dd(be: Backend, x: Any, t: Any, axes: tuple[int, ...], smooth: float) -> Any:
    """The value of the Dice loss in float32 double words (no derivative):
    each ``x (1 - t) + t (1 - x) = (x + t) - 2 x t`` exactly (TwoSum and an
    exact product: near-perfect overlap cancels there), the sums of it, of
    ``x`` and of ``t`` compensated, ``smooth`` a double word, one quotient."""
    xp = be.xp
    x, t = be.stop_gradient(x), be.stop_gradient(t)
    dt = x.dtype
    zero = be.scalar(0.0, dt)
    # the summed axes last, as one
    kept = [i for i in range(x.ndim) if i not in axes]
    shape = (*(x.shape[i] for i in kept), math.prod(x.shape[i] for i in axes))
    x, t = (xp.reshape(xp.permute_dims(v, (*kept, *axes)), shape) for v in (x, t))
    sum_hi, sum_err = two_sum(x, t)
    prod, prod_err = two_prod(x, t, be)
    term = dd_add((sum_hi, sum_err), (-2.0 * prod, -2.0 * prod_err))
    mismatch, sx, st = dd_sums(be, [term, (x, xp.zeros_like(x)), (t, xp.zeros_like(t))], -1)
    total = dd_add(dd_add(sx, st), dd_constant(be, smooth, dt))
    empty = total[0] == zero
    ratio = dd_div(be, mismatch, (xp.where(empty, be.scalar(1.0, dt), total[0]), total[1]))
    return xp.where(empty, zero, dd_finish(be, *ratio))

"""Losses between probability distributions: Kullback-Leibler divergence."""

from __future__ import annotations

from ._backend import resolve
from ._checks import (
    Reduction,
    broadcast_shape,
    check_reduction,
    float_arg,
    normalize_axis,
    public,
)
from ._reduction import reduce
from ._typing import Array, ArrayLike
from .kernels import fast

__all__ = ["kl_div_loss"]


@public
def kl_div_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    axis: int = -1,
    reduction: Reduction = "none",
) -> Array:
    r"""Compute the Kullback-Leibler divergence.

    .. math::

        \ell = \sum_c e^{t_c} (t_c - x_c)

    where :math:`x` and :math:`t` are log-probabilities of the predicted and
    the target distribution along ``axis``. A class with target probability
    exactly 0 (``t = -inf``) contributes exactly 0 (``0 log 0 = 0``). The terms
    cancel for near-equal distributions, so the sum is computed in float64
    where the array library has it and returned in the input dtype.

    Args:
        inputs: Log-probabilities of the predicted distribution.
        targets: Log-probabilities of the target distribution (broadcast
            against ``inputs``).
        axis: The distribution axis. Default: ``-1``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The KL divergence, in the array library and dtype of ``inputs``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> q = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
        >>> p = np.array([[np.log(0.5), np.log(0.5)], [0.0, -np.inf]])
        >>> anyloss.kl_div_loss(q, p).tolist()  # 0 and log(1/0.9)
        [0.0, 0.105360515657826]
    """
    func = "kl_div_loss"
    check_reduction(func, reduction)
    be = resolve(func, ("inputs", inputs), ("targets", targets))
    xp = be.xp
    x = float_arg(be, func, "inputs", inputs)
    t = float_arg(be, func, "targets", targets)
    ndim = len(broadcast_shape(func, ("inputs", x), ("targets", t)))
    ax = normalize_axis(func, axis, ndim, "the broadcast inputs")
    out = fast(be, func, reduction, inputs=x, targets=t, axis=ax)
    if out is not None:
        return out
    x, t = be.cast(x, be.wide), be.cast(t, be.wide)
    zero = be.scalar(0.0, be.wide)
    absent = t == be.scalar(-float("inf"), be.wide)
    t_present = xp.where(absent, zero, t)  # no -inf - (-inf) in the unused branch
    e = xp.exp(t_present)
    # where exp(t) underflows to 0 the term is 0: t - x may overflow there
    # (t = -FLT_MAX, x = FLT_MAX) and 0 * inf would be NaN
    dead = absent | (e == zero)
    x_live = xp.where(dead, t_present, x)
    terms = xp.where(dead, zero, e * (t_present - x_live))
    return reduce(be, xp.sum(terms, axis=ax), reduction)

"""Losses between probability distributions: Kullback-Leibler divergence."""

from __future__ import annotations

from typing import Any

from ._backend import Backend, resolve
from ._checks import (
    Reduction,
    broadcast_shape,
    check_reduction,
    float_arg,
    normalize_axis,
    public,
)
from ._compensated import dd_finish, dd_sum, fused, two_prod, two_sum
from ._compensated_exp_log import dd_exp
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
    where the array library has it (else in float32 double words: ``hi +
    lo`` pairs that keep every rounding error) and returned in the input
    dtype.

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
    if be.float32_only:
        return reduce(be, _kl_div_pairs(be, x, t, ax), reduction)
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


def _kl_div_pairs(be: Backend, x: Any, t: Any, axis: int) -> Any:
    """The divergence in float32 alone (MLX, JAX without x64): ``e^t``
    (:func:`~anyloss._compensated_exp_log.dd_exp`), ``t - x`` and their
    product as double words, summed along ``axis`` as if in twice the
    precision. Near-equal distributions make the terms ``p (t - x)`` cancel to
    about ``|t - x|`` of their size; in float32 alone the rounding of ``exp``
    was then thousands of ulp of the result."""
    hi, lo = fused(be, _kl_div_terms)(x, t)
    return dd_finish(be, *dd_sum(be, hi, lo, axis))


def _kl_div_terms(be: Backend, x: Any, t: Any) -> tuple[Any, Any]:
    """The terms ``e^t (t - x)`` as double words (0 where ``e^t`` is)."""
    xp = be.xp
    dt = x.dtype
    zero = be.scalar(0.0, dt)
    absent = t == be.scalar(-float("inf"), dt)
    t_present = xp.where(absent, zero, t)
    p, p_lo = dd_exp(be, t_present)
    dead = absent | (p == zero)
    d, d_lo = two_sum(t_present, -xp.where(dead, t_present, x))
    plain = p * d
    # (TwoSum of an infinite d, or a product beyond Dekker's range: the plain term)
    exact = xp.isfinite(d_lo) & (xp.abs(d) < be.scalar(2.0**64, dt))
    d = xp.where(exact, d, zero)
    hi, lo = two_prod(p, d, be)
    lo = lo + (p * xp.where(exact, d_lo, zero) + p_lo * d)
    hi = xp.where(dead, zero, xp.where(exact, hi, plain))
    return hi, xp.where(dead | ~exact, zero, lo)

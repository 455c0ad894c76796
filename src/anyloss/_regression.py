"""Regression losses: L1, MSE, smooth L1, Huber, log-cosh, Gaussian NLL."""

from __future__ import annotations

import math
from typing import Any

from ._backend import Backend, resolve
from ._checks import (
    Reduction,
    broadcast_shape,
    check_reduction,
    flag,
    float_arg,
    number,
    public,
    same_shape,
)
from ._compensated import (
    dd_add,
    dd_constant,
    dd_finish,
    exact_value,
    fused,
    pow2,
    scaled_up,
    two_prod,
    two_square,
    two_sum,
)
from ._compensated_exp_log import dd_exp, dd_log, log_of_pair
from ._reduction import amax, reduce
from ._typing import Array, ArrayLike
from .kernels import fast

__all__ = [
    "gaussian_nll_loss",
    "huber_loss",
    "l1_loss",
    "log_cosh_loss",
    "mse_loss",
    "smooth_l1_loss",
]

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# log(cosh(e)) = log1p(2 sinh(e/2)^2) is exact to a few ulp for every |e| where
# sinh(e/2)^2 does not overflow (float32: |e| < ~88); beyond _LOGCOSH_SWITCH the
# asymptotic form |e| - log 2 + log1p(exp(-2|e|)) has no cancellation left.
_LOGCOSH_SWITCH = 20.0


def _pair(
    func: str, predictions: Any, targets: Any, names: tuple[str, str], wide: bool = False
) -> tuple[Any, Any, Any]:
    be = resolve(func, (names[0], predictions), (names[1], targets))
    dtype = be.wide if wide else be.work
    p = float_arg(be, func, names[0], predictions, dtype)
    t = float_arg(be, func, names[1], targets, dtype)
    return be, p, t


@public
def l1_loss(predictions: ArrayLike, targets: ArrayLike, reduction: Reduction = "mean") -> Array:
    r"""Compute the L1 (mean absolute error) loss.

    .. math::

        \ell = |p - t|

    Args:
        predictions: The predicted values.
        targets: The target values, with the shape of ``predictions``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The L1 loss, in the array library and dtype of ``predictions``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.l1_loss(np.array([0.0, 1.0, 4.0]), np.array([1.0, 1.0, 1.0]))
        array(1.33333333)
    """
    func = "l1_loss"
    check_reduction(func, reduction)
    be, p, t = _pair(func, predictions, targets, ("predictions", "targets"))
    same_shape(func, ("predictions", p), ("targets", t))
    out = fast(be, func, reduction, predictions=p, targets=t)
    if out is not None:
        return out
    return reduce(be, be.xp.abs(p - t), reduction)


@public
def mse_loss(predictions: ArrayLike, targets: ArrayLike, reduction: Reduction = "mean") -> Array:
    r"""Compute the mean squared error loss.

    .. math::

        \ell = (p - t)^2

    Args:
        predictions: The predicted values.
        targets: The target values, with the shape of ``predictions``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The squared error, in the array library and dtype of ``predictions``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.mse_loss(np.zeros(4), np.array([0.0, 1.0, 2.0, 3.0]), reduction="none")
        array([0., 1., 4., 9.])
    """
    func = "mse_loss"
    check_reduction(func, reduction)
    be, p, t = _pair(func, predictions, targets, ("predictions", "targets"))
    same_shape(func, ("predictions", p), ("targets", t))
    out = fast(be, func, reduction, predictions=p, targets=t)
    if out is not None:
        return out
    if reduction != "none" and be.dtype == be.work and p.dtype != getattr(be.xp, "float64", None):
        # float32 squares may overflow one by one where their mean does not
        # (torch's fused mse_loss squares in float32 too)
        return _mse_total(be, p, t, reduction)
    d = p - t
    return reduce(be, d * d, reduction)


def _pow2_scale(be: Any, x: Any) -> Any:
    """A power of two near max |x| (1 where that is 0 or not finite), a
    constant for differentiation: dividing by it is exact."""
    xp = be.xp
    m = be.stop_gradient(amax(be, xp.abs(x)))  # 0 (so 1) for an empty x
    usable = (m > be.scalar(0.0, m.dtype)) & (m < be.scalar(float("inf"), m.dtype))
    m = xp.where(usable, m, be.scalar(1.0, m.dtype))
    # floor(log2 m) - 1: float32 log2(FLT_MAX) rounds to 128, 2^128 is inf;
    # at least the smallest normal number (-126): 2^-150 is 0
    k = xp.maximum(xp.floor(xp.log2(m)) - be.scalar(1.0, m.dtype), be.scalar(-126.0, m.dtype))
    return be.stop_gradient(xp.pow(be.scalar(2.0, m.dtype), k))


def _mse_total(be: Any, p: Any, t: Any, reduction: str) -> Any:
    """``'mean'``/``'sum'`` of float32 squares that may overflow one by one
    (``1e20 ** 2``) while their mean does not: in float64 where the library
    has it, else scaled by a power of two ``c`` as ``c * (sum (d/c)^2) * c``."""
    if be.wide != p.dtype:
        d = be.cast(p, be.wide) - be.cast(t, be.wide)
        return reduce(be, d * d, reduction)
    d = p - t
    c = _pow2_scale(be, d)
    u = d / c
    return (reduce(be, u * u, reduction) * c) * c


@public
def smooth_l1_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    beta: float = 1.0,
    reduction: Reduction = "mean",
) -> Array:
    r"""Compute the smooth L1 loss.

    .. math::

        \ell = \begin{cases}
            0.5\, d^2 / \beta & d < \beta \\
            d - 0.5\, \beta & \text{otherwise}
        \end{cases}
        \qquad d = |p - t|

    Args:
        predictions: The predicted values.
        targets: The target values, with the shape of ``predictions``.
        beta: Where the loss changes from quadratic to linear, ``>= 0``
            (``0`` gives the L1 loss). Default: ``1.0``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The smooth L1 loss, in the array library and dtype of ``predictions``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.smooth_l1_loss(np.array([0.5, 3.0]), np.zeros(2), reduction="none")
        array([0.125, 2.5  ])
    """
    func = "smooth_l1_loss"
    check_reduction(func, reduction)
    beta = number(func, "beta", beta, low=0.0)
    be, p, t = _pair(func, predictions, targets, ("predictions", "targets"))
    same_shape(func, ("predictions", p), ("targets", t))
    out = fast(be, func, reduction, predictions=p, targets=t, beta=beta)
    if out is not None:
        return out
    xp = be.xp
    d = xp.abs(p - t)
    if beta == 0.0:
        return reduce(be, d, reduction)
    b = be.scalar(beta)
    quadratic = d < b
    dq = xp.where(quadratic, d, be.scalar(0.0))  # no inf in the unused branch
    # (0.5 d) (d / beta): d / beta < 1, so nothing overflows (d * d would for
    # d > 1e154 under beta = 1e308); a huge beta divides at 2^-64 the scale,
    # since XLA's CPU code multiplies by 1 / beta, which flushes to 0 above
    # 2^126 in float32
    big = beta > 2.0**64
    ratio = (dq * 2.0**-64) / be.scalar(beta * 2.0**-64) if big else dq / b
    loss = xp.where(quadratic, (0.5 * dq) * ratio, d - 0.5 * beta)
    return reduce(be, loss, reduction)


@public
def huber_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    delta: float = 1.0,
    reduction: Reduction = "none",
) -> Array:
    r"""Compute the Huber loss.

    .. math::

        \ell = \begin{cases}
            \tfrac12 a^2 & a \le \delta \\
            \delta (a - \tfrac12 \delta) & \text{otherwise}
        \end{cases}
        \qquad a = |x - t|

    Args:
        inputs: The predicted values.
        targets: The target values (broadcast against ``inputs``).
        delta: Where the loss changes from quadratic to linear, ``>= 0``.
            Default: ``1.0``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The Huber loss, in the array library and dtype of ``inputs``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.huber_loss(np.array([0.5, 3.0]), np.zeros(2))
        array([0.125, 2.5  ])
    """
    func = "huber_loss"
    check_reduction(func, reduction)
    delta = number(func, "delta", delta, low=0.0)
    be, x, t = _pair(func, inputs, targets, ("inputs", "targets"))
    broadcast_shape(func, ("inputs", x), ("targets", t))
    out = fast(be, func, reduction, inputs=x, targets=t, delta=delta)
    if out is not None:
        return out
    xp = be.xp
    a = xp.abs(x - t)
    if delta == float("inf"):  # no linear part (delta * 0 would be inf * 0)
        loss = (0.5 * a) * a
    else:
        quadratic = xp.minimum(a, be.scalar(delta))
        loss = (0.5 * quadratic) * quadratic + delta * (a - quadratic)
    return reduce(be, loss, reduction)


@public
def log_cosh_loss(inputs: ArrayLike, targets: ArrayLike, reduction: Reduction = "none") -> Array:
    r"""Compute the log-cosh loss.

    .. math::

        \ell = \log\cosh(x - t)

    Evaluated as ``log1p(2 sinh(e/2)^2)`` for moderate errors (no cancellation
    for tiny ones, where a ``logaddexp`` form returns negative values) and as
    ``|e| - log 2 + log1p(exp(-2|e|))`` for large ones (no overflow).

    Args:
        inputs: The predicted values.
        targets: The target values (broadcast against ``inputs``).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The log-cosh loss, in the array library and dtype of ``inputs``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.log_cosh_loss(np.array([1e-4, 1.0, 1e4]), np.zeros(3))
        array([4.99999999e-09, 4.33780830e-01, 9.99930685e+03])
    """
    func = "log_cosh_loss"
    check_reduction(func, reduction)
    be, x, t = _pair(func, inputs, targets, ("inputs", "targets"))
    broadcast_shape(func, ("inputs", x), ("targets", t))
    out = fast(be, func, reduction, inputs=x, targets=t)
    if out is not None:
        return out
    xp = be.xp
    # in float64 where the library has it: float32 results are then rounded
    # once (sinh, log1p and the subtraction each round in float32)
    x, t = be.cast(x, be.wide), be.cast(t, be.wide)
    a = xp.abs(x - t)
    small = a < be.scalar(_LOGCOSH_SWITCH, be.wide)
    # Each branch sees only the values it is used for, so neither produces an
    # inf whose zero cotangent would turn into NaN in the gradient.
    a_small = xp.where(small, a, be.scalar(0.0, be.wide))
    a_large = xp.where(small, be.scalar(_LOGCOSH_SWITCH, be.wide), a)
    s = xp.sinh(0.5 * a_small)
    near = xp.log1p(2.0 * (s * s))
    e = xp.exp(-a_large)  # exp(-2|e|) as e * e: -2|e| would overflow at 2e38
    far = (a_large - _LOG2) + xp.log1p(e * e)
    loss = xp.where(small, near, far)
    if be.float32_only:
        loss = exact_value(be, fused(be, _log_cosh_dd)(x, t), loss)
    return reduce(be, loss, reduction)


_SERIES_BELOW, _TINY = 2.0**-6, 2.0**-40


def _log_cosh_dd(be: Backend, x: Any, t: Any) -> Any:
    """The value of ``log cosh(x - t)`` in float32 double words (no
    derivative): the difference exact (TwoSum), then

    - below ``2^-6``: ``a^2 / 2 (1 - a^2 / 6 + 2 a^4 / 45)`` (the next term
      is below ``2^-43`` of the sum), ``a^2`` a double word, at the scale
      ``2^64`` below ``2^-40`` (the error terms of ``a^2`` would be
      subnormal, flushed by XLA);
    - above: ``a - log 2 + log(1 + e^(-2a))`` with :func:`dd_exp` and
      :func:`dd_log`: the terms cancel to ``2^-13`` of ``log 2`` at most.
    """
    xp = be.xp
    x, t = be.stop_gradient(x), be.stop_gradient(t)
    dt = x.dtype
    zero, one = be.scalar(0.0, dt), be.scalar(1.0, dt)
    d, d_lo = two_sum(x, -t)
    a, a_lo = xp.abs(d), xp.where(d < zero, -d_lo, d_lo)
    # the series, scaled up where tiny
    (b, b_lo), down = scaled_up(be, _TINY, (a, a_lo))
    sq, sq_err = two_square(b, be)
    half = (0.5 * sq, 0.5 * sq_err + b * b_lo)
    z = a * a  # unscaled: the relative terms of the series
    delta = z * (be.scalar(-1.0 / 6.0, dt) + z * be.scalar(2.0 / 45.0, dt))
    series = dd_finish(be, *dd_add(half, (half[0] * delta, zero))) * down * down
    # the exponential form
    e, e_lo = dd_exp(be, -2.0 * a, differentiable=False)
    w, w_err = two_sum(e, one)  # 1 + e^(-2a), the constant second
    log_w = log_of_pair(be, (w, w_err + (e_lo - 2.0 * (a_lo * e))))
    shifted = dd_add((a, a_lo), dd_constant(be, -_LOG2, dt))
    far = dd_finish(be, *dd_add(shifted, log_w))
    return xp.where(a < be.scalar(_SERIES_BELOW, dt), series, far)


@public
def gaussian_nll_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    vars: ArrayLike,
    full: bool = False,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> Array:
    r"""Compute the negative log likelihood of a Gaussian.

    .. math::

        \ell = \frac12\left(\log v + \frac{(t - \mu)^2}{v}\right)
               + \frac12\log(2\pi)\,[\text{full}],
        \qquad v = \max(\text{vars}, \epsilon)

    The two terms cancel when ``log v`` is negative; the loss is computed in
    float64 where the array library has it, else in double words of the input
    dtype (float64 inputs; float32 on MLX and JAX without x64), and returned
    in the input dtype. ``d^2 / v`` is formed at a scale where
    neither ``d * d`` nor ``d / v`` overflows, so subnormal variances and
    errors of ``1e200`` give the finite true value.

    Args:
        inputs: The predicted means.
        targets: The samples, with the shape of ``inputs``.
        vars: The predicted variances, with the shape of ``inputs``.
        full: Whether to add the constant ``0.5 * log(2 * pi)``. Default: ``False``.
        eps: Lower bound on the variance, ``>= 0``. Default: ``1e-6``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The Gaussian NLL, in the array library and dtype of ``inputs``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> mu, y, var = np.array([0.0, 1.0]), np.array([1.0, 1.0]), np.array([1.0, 0.5])
        >>> anyloss.gaussian_nll_loss(mu, y, var, reduction="none")
        array([ 0.5       , -0.34657359])
    """
    func = "gaussian_nll_loss"
    check_reduction(func, reduction)
    full = flag(func, "full", full)
    eps = number(func, "eps", eps, low=0.0)
    be = resolve(func, ("inputs", inputs), ("targets", targets), ("vars", vars))
    mu = float_arg(be, func, "inputs", inputs)
    y = float_arg(be, func, "targets", targets)
    v = float_arg(be, func, "vars", vars)
    same_shape(func, ("inputs", mu), ("targets", y), ("vars", v))
    out = fast(be, func, reduction, inputs=mu, targets=y, vars=v, full=full, eps=eps)
    if out is not None:
        return out
    if _widest(be, mu):
        return reduce(be, fused(be, _gaussian_nll_dd, full, eps)(mu, y, v), reduction)
    mu, y, v = (be.cast(a, be.wide) for a in (mu, y, v))
    xp = be.xp
    v = xp.maximum(v, be.scalar(eps, be.wide))
    d = y - mu
    loss = 0.5 * (xp.log(v) + _square_over(be, d, v))
    if full:
        loss = loss + _HALF_LOG_2PI
    return reduce(be, loss, reduction)


# 0.5 log(2 pi) as a double word of each precision
_HALF_LOG_2PI_PAIR = {
    24: (0.9189385175704956, 1.563417661998301e-08),
    53: (0.9189385332046728, -3.8782941580672414e-17),
}


def _widest(be: Any, x: Any) -> bool:
    """Whether ``x`` has no wider type to be computed in: float64, or float32
    where the library has no float64. The cancelling terms then run in
    double words."""
    return bool(x.dtype == be.wide)


def _gaussian_nll_dd(be: Any, mu: Any, y: Any, v: Any, full: bool, eps: float) -> Any:
    """The Gaussian NLL in double words, for inputs of the widest dtype
    (float64; float32 on MLX and JAX without x64).

    ``log v`` and ``d^2 / v`` cancel where the loss is near 0, so both are
    carried as ``hi + lo`` (error-free transformations) and the loss is
    rounded once: ``d = y - mu`` by TwoSum, ``d^2 / v`` by an exact square
    and a corrected quotient (at the scale of ``_square_over``), ``log v``
    by :func:`~anyloss._compensated_exp_log.dd_log`.
    Where ``v`` is 0 or not finite, the plain formula.
    """
    xp = be.xp
    dt = v.dtype
    one = be.scalar(1.0, dt)
    v = xp.maximum(v, be.scalar(eps, dt))
    ok = (v > be.scalar(0.0, dt)) & (v < be.scalar(float("inf"), dt))
    plain = 0.5 * (xp.log(v) + _square_over(be, y - mu, v))
    if full:
        plain = plain + _HALF_LOG_2PI
    v = xp.where(ok, v, one)
    d, d_lo = two_sum(y, -mu)
    # d^2 / v = (u^2 + 2 u u_lo) / w, u = d 2^-a, w = v 2^-2a (exact)
    a = be.stop_gradient(xp.ceil((xp.log2(v) + one) * be.scalar(0.5, dt)))
    k = pow2(be, -a)
    u, u_lo, w = d * k, d_lo * k, (v * k) * k
    sq, sq_err = two_square(u, be)
    sq_lo = sq_err + 2.0 * (u * u_lo)
    q = sq / w
    t, t_err = two_prod(q, w, be)
    q_lo = (((sq - t) - t_err) + sq_lo) / w
    hi, lo = dd_log(be, v)
    # + d^2 / v, halved, + the constant
    hi, err = two_sum(hi, q)
    lo = err + (lo + q_lo)
    hi, lo = 0.5 * hi, 0.5 * lo
    if full:
        c_hi, c_lo = _HALF_LOG_2PI_PAIR[53 if "64" in str(dt) else 24]
        hi, err = two_sum(hi, be.scalar(c_hi, dt))
        lo = err + (lo + c_lo)
    total = hi + lo
    return xp.where(ok & xp.isfinite(total), total, plain)


def _square_over(be: Any, d: Any, v: Any) -> Any:
    """``d^2 / v`` for ``v > 0`` without overflow or underflow on the way.

    With ``2^a`` about ``sqrt(v)`` (``2a`` in ``(log2 v + 1, log2 v + 3]``),
    ``u = d 2^-a`` and ``w = v 2^-2a`` in ``(1/8, 1/2]`` are exact scalings
    and ``d^2 / v = u^2 / w``: ``u^2`` overflows only where the result does,
    and ``d * d`` (1e200 squared) or ``d / v`` (a subnormal variance) is
    never formed. The same two roundings as ``(d * d) / v``.
    """
    xp = be.xp
    dt = v.dtype
    a = xp.ceil((xp.log2(v) + be.scalar(1.0, dt)) * be.scalar(0.5, dt))
    a = be.stop_gradient(xp.where(xp.isfinite(a), a, be.scalar(0.0, dt)))
    k = pow2(be, -a)  # |a| <= 538: a normal number
    u = d * k
    w = (v * k) * k
    return (u * u) / w

"""Count regression: Poisson negative log likelihood."""

from __future__ import annotations

import math
from typing import Any

from . import kernels
from ._backend import Backend, resolve
from ._checks import Reduction, check_reduction, flag, float_arg, number, public, same_shape
from ._compensated import dd_finish, fast_two_sum, fused, two_prod, two_sum
from ._compensated_exp_log import dd_exp, dd_log
from ._reduction import reduce
from ._typing import Array, ArrayLike

__all__ = [
    "poisson_nll_loss",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# Taylor coefficients of expm1(d) - d = d^2 (1/2! + d/3! + d^2/4! + ...)
_EXPM1_MINUS = tuple(1.0 / math.factorial(k) for k in range(2, 12))
# q - log1p(q) = q s - 2 s^3 (1/3 + s^2/5 + s^4/7 + ...), s = q / (2 + q)
_ATANH = tuple(1.0 / k for k in range(3, 16, 2))


def _horner(be: Backend, z: Any, coefficients: tuple[float, ...]) -> Any:
    acc = be.scalar(coefficients[-1], z.dtype)
    for c in reversed(coefficients[:-1]):
        acc = acc * z + c
    return acc


def _expm1_minus(be: Backend, d: Any) -> Any:
    """``expm1(d) - d``; a series where the subtraction would cancel (float32)."""
    xp = be.xp
    direct = xp.expm1(d) - d
    if be.wide == getattr(xp, "float64", None):
        return direct  # float32 inputs: the cancellation is far below float32 rounding
    small = xp.abs(d) < be.scalar(0.5, d.dtype)
    ds = xp.where(small, d, be.scalar(0.0, d.dtype))
    return xp.where(small, ds * ds * _horner(be, ds, _EXPM1_MINUS), direct)


def _minus_log1p(be: Backend, q: Any, log_ratio: Any) -> Any:
    """``q - log1p(q)``, given ``log_ratio = log1p(q)`` computed apart.

    Near ``q = 0`` the subtraction cancels: ``log1p`` (float64) or a series
    (float32). Away from it ``log_ratio`` is used, since ``1 + q`` loses a
    tiny rate ``(lambda + eps) / t`` entirely (``q = -1`` in float32).
    """
    xp = be.xp
    small = xp.abs(q) < be.scalar(0.5, q.dtype)
    qs = xp.where(small, q, be.scalar(0.0, q.dtype))
    if be.wide == getattr(xp, "float64", None):
        near = qs - xp.log1p(qs)  # float32 inputs: far below float32 rounding
    else:
        s = qs / (2.0 + qs)
        near = qs * s - 2.0 * (s * s * s) * _horner(be, s * s, _ATANH)
    return xp.where(small, near, q - log_ratio)


@public
def poisson_nll_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: Reduction = "mean",
) -> Array:
    r"""Compute the negative log likelihood of a Poisson distribution.

    With ``log_input=True`` the inputs are log-rates :math:`x`, otherwise
    rates :math:`\lambda`:

    .. math::

        \ell = e^{x} - t x
        \qquad \text{or} \qquad
        \ell = \lambda - t \log(\lambda + \epsilon),

    as ``torch.nn.functional.poisson_nll_loss``. ``full=True`` adds the
    Stirling approximation of :math:`\log t!`,
    :math:`t \log t - t + \frac12 \log(2 \pi t)`, for :math:`t > 1` (and
    nothing for :math:`t \le 1`, as PyTorch does). With it the loss is
    evaluated as :math:`t\,(e^{d} - 1 - d) + \frac12 \log(2 \pi t)`,
    :math:`d = x - \log t` (rates: :math:`t\,(q - \log(1 + q)) - \epsilon +
    \frac12 \log(2 \pi t)`, :math:`q = (\lambda + \epsilon - t) / t`), the same
    value without the cancellation of its large terms near the minimum; all in
    float64 where the array library has it (log-rates on float32-only
    libraries: in float32 double words). A target of exactly 0 contributes
    no :math:`t x` term, even where :math:`x = -\infty`.

    ``keras.losses.poisson(t, p)`` (mean over the last axis, epsilon ``1e-7``)
    is ``poisson_nll_loss(p, t, log_input=False, eps=1e-7, reduction="none")
    .mean(axis=-1)``.

    Args:
        inputs: Log-rates (``log_input=True``) or rates.
        targets: Observed counts, with the shape of ``inputs``.
        log_input: Whether ``inputs`` are log-rates. Default: ``True``.
        full: Whether to add the Stirling term. Default: ``False``.
        eps: Added to the rate inside the logarithm when ``log_input=False``,
            ``> 0``. Default: ``1e-8``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The Poisson NLL, in the array library and dtype of ``inputs``.

    Raises:
        ValueError: ``inputs`` and ``targets`` of different shapes,
            ``eps <= 0``, an unknown reduction.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> x = np.log(np.array([1.0, 2.0, 4.0], dtype=np.float32))
        >>> t = np.array([1.0, 2.0, 8.0], dtype=np.float32)
        >>> anyloss.poisson_nll_loss(x, t, reduction="none")
        array([ 1.        ,  0.61370564, -7.090355  ], dtype=float32)
        >>> anyloss.poisson_nll_loss(x, t, full=True, reduction="none")
        array([1.       , 1.2655121, 3.5038367], dtype=float32)
        >>> anyloss.poisson_nll_loss(np.exp(x), t, log_input=False)
        array(-1.8255498, dtype=float32)
    """
    func = "poisson_nll_loss"
    check_reduction(func, reduction)
    log_input = flag(func, "log_input", log_input)
    full = flag(func, "full", full)
    eps = number(func, "eps", eps, low=0.0, low_open=True)
    be = resolve(func, ("inputs", inputs), ("targets", targets))
    xp = be.xp
    wide = be.wide
    x = float_arg(be, func, "inputs", inputs)
    t = float_arg(be, func, "targets", targets)
    same_shape(func, ("inputs", x), ("targets", t))
    out = kernels.fast(
        be, func, reduction, inputs=x, targets=t, log_input=log_input, full=full, eps=eps
    )
    if out is not None:
        return out
    x = float_arg(be, func, "inputs", inputs, wide)
    t = float_arg(be, func, "targets", targets, wide)
    if be.float32_only and log_input:
        return reduce(be, fused(be, _log_input_pairs, full)(x, t), reduction)
    zero, one = be.scalar(0.0, wide), be.scalar(1.0, wide)
    # t = 0 contributes no t * x (t * log(rate)) term: masking the factor too
    # keeps 0 * inf out of the value, the gradient and Dask's warnings
    absent = t == zero
    if log_input:
        tx = xp.where(absent, zero, t * xp.where(absent, zero, x))
        loss = xp.exp(x) - tx
    else:
        log_rate = xp.log(xp.where(absent, one, x + eps))  # absent: t = 0 < 1, unused below
        loss = x - xp.where(absent, zero, t * log_rate)
    if not full:
        return reduce(be, loss, reduction)
    big = t > one
    tb = xp.where(big, t, be.scalar(2.0, wide))  # the t <= 1 entries are not used
    log_t = xp.log(tb)
    if log_input:
        scaled = tb * _expm1_minus(be, x - log_t)
    else:
        q = ((x - tb) + eps) / tb
        scaled = tb * _minus_log1p(be, q, log_rate - log_t) - eps
    with_stirling = scaled + (0.5 * log_t + _HALF_LOG_2PI)
    return reduce(be, xp.where(big, with_stirling, loss), reduction)


def _log_input_pairs(be: Backend, x: Any, t: Any, full: bool) -> Any:
    """The loss of log-rates in float32 alone (MLX, JAX without x64), in
    double words where it cancels.

    ``e^x - t x`` (:func:`~anyloss._compensated_exp_log.dd_exp` and an
    exact product): the two terms are equal at ``x = log t`` for
    ``t = e``, near it in general. With ``full`` (``t > 1``),
    ``t (e^d - 1 - d) + log(2 pi t) / 2`` needs ``d = x - log t`` to the
    rounding of ``d`` itself, not of ``log t``: ``log t`` as a double word
    (:func:`~anyloss._compensated_exp_log.dd_log`); ``e^d - 1 - d`` by its
    series for ``|d| < 0.5``, else from ``dd_exp(d)``.
    """
    xp = be.xp
    dt = x.dtype
    zero, one = be.scalar(0.0, dt), be.scalar(1.0, dt)
    absent = t == zero
    e_hi, e_lo = dd_exp(be, x)
    tx_plain = xp.where(absent, zero, t * xp.where(absent, zero, x))
    plain = e_hi - tx_plain
    # (a product beyond Dekker's range, an infinite x: the plain loss)
    exact = ~absent & (xp.abs(x) < be.scalar(2.0**64, dt)) & (t < be.scalar(2.0**64, dt))
    tx, tx_lo = two_prod(xp.where(exact, t, zero), xp.where(exact, x, zero), be)
    hi, err = two_sum(e_hi, -tx)
    loss = xp.where(exact, dd_finish(be, hi, err + (e_lo - tx_lo)), plain)
    loss = xp.where(xp.isfinite(loss), loss, plain)
    if not full:
        return loss
    big = t > one
    tb = xp.where(big, t, be.scalar(2.0, dt))  # the t <= 1 entries are not used
    log_t, log_t_lo = dd_log(be, tb)
    d, d_lo = two_sum(x, -log_t)
    d, d_lo = fast_two_sum(d, d_lo - log_t_lo)
    small = xp.abs(d) < be.scalar(0.5, dt)
    ds = xp.where(small, d, zero)
    # e^(d + d_lo) - 1 - d - d_lo = f(d) + (e^d - 1) d_lo, f(d) = d^2 (1/2 + d/6 + ...)
    near = ds * ds * _horner(be, ds, _EXPM1_MINUS) + ds * xp.where(small, d_lo, zero)
    g_hi, g_lo = dd_exp(be, xp.where(small, zero, d))
    a, a_err = two_sum(g_hi, -one)
    b, b_err = two_sum(a, -d)
    far = b + ((b_err + a_err) + (g_lo + (g_hi - one) * d_lo))
    scaled = tb * xp.where(small, near, far)
    with_stirling = scaled + (0.5 * log_t + _HALF_LOG_2PI)
    return xp.where(big, with_stirling, loss)

"""Regression losses: L1, MSE, smooth L1, Huber, log-cosh, Gaussian NLL."""

from __future__ import annotations

import math
import sys
from typing import Any

from ._backend import resolve
from ._checks import (
    Reduction,
    broadcast_shape,
    check_reduction,
    float_arg,
    number,
    public,
    same_shape,
)
from ._reduction import reduce
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


def _torch_native(be: Any, name: str, p: Any, t: Any, reduction: str, **kw: float) -> Any:
    """``torch.nn.functional.<name>`` where it computes exactly our formula in
    one fused kernel (forward and backward), else None. Inputs of one shape only
    (torch warns when it broadcasts)."""
    if be.name != "torch" or p.shape != t.shape:
        return None
    functional = sys.modules["torch"].nn.functional
    return be.finish(getattr(functional, name)(p, t, reduction=reduction, **kw))


@public
def l1_loss(predictions: Any, targets: Any, reduction: Reduction = "mean") -> Any:
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
    if out is None:
        out = _torch_native(be, "l1_loss", p, t, reduction)
    if out is not None:
        return out
    return reduce(be, be.xp.abs(p - t), reduction)


@public
def mse_loss(predictions: Any, targets: Any, reduction: Reduction = "mean") -> Any:
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
    if out is None:
        out = _torch_native(be, "mse_loss", p, t, reduction)
    if out is not None:
        return out
    d = p - t
    return reduce(be, d * d, reduction)


@public
def smooth_l1_loss(
    predictions: Any,
    targets: Any,
    beta: float = 1.0,
    reduction: Reduction = "mean",
) -> Any:
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
    if out is None:
        out = _torch_native(be, "smooth_l1_loss", p, t, reduction, beta=beta)
    if out is not None:
        return out
    xp = be.xp
    d = xp.abs(p - t)
    if beta == 0.0:
        return reduce(be, d, reduction)
    b = be.scalar(beta)
    quadratic = d < b
    dq = xp.where(quadratic, d, be.scalar(0.0))  # no inf in the unused branch
    loss = xp.where(quadratic, (0.5 / beta) * (dq * dq), d - 0.5 * beta)
    return reduce(be, loss, reduction)


@public
def huber_loss(
    inputs: Any,
    targets: Any,
    delta: float = 1.0,
    reduction: Reduction = "none",
) -> Any:
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
    if out is None and delta > 0:
        out = _torch_native(be, "huber_loss", x, t, reduction, delta=delta)
    if out is not None:
        return out
    xp = be.xp
    a = xp.abs(x - t)
    quadratic = xp.minimum(a, be.scalar(delta))
    loss = 0.5 * (quadratic * quadratic) + delta * (a - quadratic)
    return reduce(be, loss, reduction)


@public
def log_cosh_loss(inputs: Any, targets: Any, reduction: Reduction = "none") -> Any:
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
    a = xp.abs(x - t)
    small = a < be.scalar(_LOGCOSH_SWITCH)
    # Each branch sees only the values it is used for, so neither produces an
    # inf whose zero cotangent would turn into NaN in the gradient.
    a_small = xp.where(small, a, be.scalar(0.0))
    a_large = xp.where(small, be.scalar(_LOGCOSH_SWITCH), a)
    s = xp.sinh(0.5 * a_small)
    near = xp.log1p(2.0 * (s * s))
    e = xp.exp(-a_large)  # exp(-2|e|) as e * e: -2|e| would overflow at 2e38
    far = (a_large - _LOG2) + xp.log1p(e * e)
    return reduce(be, xp.where(small, near, far), reduction)


@public
def gaussian_nll_loss(
    inputs: Any,
    targets: Any,
    vars: Any,
    full: bool = False,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> Any:
    r"""Compute the negative log likelihood of a Gaussian.

    .. math::

        \ell = \frac12\left(\log v + \frac{(t - \mu)^2}{v}\right)
               + \frac12\log(2\pi)\,[\text{full}],
        \qquad v = \max(\text{vars}, \epsilon)

    The two terms cancel when ``log v`` is negative; the loss is computed in
    float64 where the array library has it and returned in the input dtype.

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
    eps = number(func, "eps", eps, low=0.0)
    be = resolve(func, ("inputs", inputs), ("targets", targets), ("vars", vars))
    mu = float_arg(be, func, "inputs", inputs)
    y = float_arg(be, func, "targets", targets)
    v = float_arg(be, func, "vars", vars)
    same_shape(func, ("inputs", mu), ("targets", y), ("vars", v))
    out = fast(be, func, reduction, inputs=mu, targets=y, vars=v, full=full, eps=eps)
    if out is not None:
        return out
    mu, y, v = (be.cast(a, be.wide) for a in (mu, y, v))
    xp = be.xp
    v = xp.maximum(v, be.scalar(eps, be.wide))
    d = y - mu
    loss = 0.5 * (xp.log(v) + d * (d / v))  # d * d may overflow where d^2/v does not
    if full:
        loss = loss + _HALF_LOG_2PI
    return reduce(be, loss, reduction)

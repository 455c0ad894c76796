"""Focal losses: sigmoid (binary) and softmax (multi-class) focal loss, with logits."""

from __future__ import annotations

import numbers
from typing import Any

from . import kernels
from ._backend import Backend, convert, resolve
from ._checks import (
    Reduction,
    check_reduction,
    checked_class_indices,
    float_arg,
    need_classes,
    no_nan,
    normalize_axis,
    number,
    poison,
    public,
    same_shape,
    shape_of,
    shapes_match,
    unit_interval,
)
from ._classification import _softplus, _take_along, _weighted
from ._compensated import (
    dd_add,
    dd_constant,
    dd_div,
    dd_finish,
    dd_mul,
    dd_sums,
    exact_value,
    fused,
    scaled_up,
    two_square,
    two_sum,
)
from ._compensated_exp_log import dd_exp, dd_pow, exp, log_of_pair
from ._reduction import amax, reduce
from ._typing import Array, ArrayLike

__all__ = [
    "sigmoid_focal_loss",
    "softmax_focal_loss",
]

# NumPy, Dask and array-api-strict compute in float64 (cheap on a CPU, and they
# have no autodiff to keep in float32): rounding of ``x - max`` or of a
# logarithm, amplified by ``exp`` and the focal power, then cannot show.
_WIDE_LIBRARIES = ("numpy", "dask", "array_api_strict")


def _compute_dtype(be: Backend, elementwise: bool = False) -> Any:
    """float64 where it is cheap; for an elementwise loss on torch too (its
    float32 roundings of sigma, its square and the softplus add up to 4.2 ulp)."""
    if be.name in _WIDE_LIBRARIES or (elementwise and be.name == "torch"):
        return be.wide
    return be.work


def _focal_power(be: Backend, m: Any, gamma: float) -> Any:
    """``m ** gamma`` for ``m >= 0``, with a finite gradient where ``m == 0``.

    ``0 ** gamma`` is 0 (``gamma > 0``), but its derivative ``gamma * 0 **
    (gamma - 1)`` is infinite for ``gamma < 1`` and turns the chain rule's
    ``inf * 0`` into NaN; there the power is taken of 1 and discarded.
    """
    xp = be.xp
    zero, one = be.scalar(0.0, m.dtype), be.scalar(1.0, m.dtype)
    positive = m > zero
    power = xp.pow(xp.where(positive, m, one), be.scalar(gamma, m.dtype))
    return xp.where(positive, power, zero)


def _expand(be: Backend, x: Any, axis: int) -> Any:
    """``x`` with a new axis of size 1 at ``axis``."""
    if be.name == "dask":  # indexing keeps chunk sizes Dask does not know yet
        return x[(slice(None),) * axis + (None,)]
    return be.xp.expand_dims(x, axis=axis)


def _log_softmax(be: Backend, x: Any, axis: int) -> tuple[Any, Any]:
    """``log p`` and ``1 - p`` for ``p = softmax(x)`` along ``axis``, exact for
    confident predictions.

    The shift ``x - max`` is carried as ``hi + lo`` (TwoSum, error-free): the
    rounding of ``hi`` (up to half an ulp of ``|x - max|``, 1e-6 at 40) would
    otherwise come back from ``exp`` as a relative error of the tiny terms
    that a confident prediction's ``1 - p`` is made of, and the focal power
    multiplies it by ``gamma``; ``exp(hi + lo)`` is ``exp(hi) (1 + lo)`` to
    float precision. ``rest``, the sum of every term but one maximum (other
    maxima count 1 exactly), is kept apart from the leading 1: the normalizer
    is ``log1p(rest)``, and a maximum's ``1 - p`` is ``rest / (1 + rest)``
    directly; elsewhere ``1 - p = -expm1(log p)``, with ``p <= 1/2``. The
    gradients are those of the plain formulas: ``lo`` and the corrections are
    constants for autodiff.
    """
    xp = be.xp
    zero, one = be.scalar(0.0, x.dtype), be.scalar(1.0, x.dtype)
    m = be.stop_gradient(amax(be, x, axis=axis, keepdims=True))
    # -inf logits: TwoSum would form inf - inf (NaN, and a warning on Dask);
    # their shift is -inf exactly and their term 0 whatever lo is
    finite = xp.isfinite(x)
    hi, lo = two_sum(xp.where(finite, x, m), -m)
    hi = xp.where(finite, hi, x - m)
    lo = be.stop_gradient(xp.where(finite & xp.isfinite(lo), lo, zero))
    e = exp(be, hi)
    below = hi < zero
    rest = xp.sum(xp.where(below, e + e * lo, zero), axis=axis)
    rest = rest + ((x.shape[axis] - 1) - xp.sum(be.cast(below, x.dtype), axis=axis))
    lse = xp.log1p(rest)
    if be.differentiable:
        plain = xp.log(xp.sum(e, axis=axis))
        lse = plain + be.stop_gradient(lse - plain)
    log_p = hi + (lo - _expand(be, lse, axis))
    not_p = -xp.expm1(log_p)
    top = _expand(be, rest / (one + rest), axis)
    if be.differentiable:  # the value of `top`, the gradient of `not_p`
        top = not_p + be.stop_gradient(top - not_p)
    return log_p, xp.where(below, not_p, top)


# -- float32 alone: the values in double words --------------------------------
#
# On MLX and JAX without x64 the float32 formulas above round a dozen times,
# and the focal power multiplies the relative error of 1 - p by gamma (4.2 ulp
# for the sigmoid focal loss, 5.2 for the softmax one, on ordinary logits).
# There the values are computed in double words (``exp``, ``log`` and the
# power included) and rounded once; the derivatives stay those of the float32
# formulas (:func:`exact_value`).

Pair = tuple[Any, Any]


def _dd_focal_power(be: Backend, m: Pair, gamma: float) -> Pair:
    """``m^gamma`` for a double word ``m >= 0``."""
    if gamma == 1.0:
        return m
    if gamma == 2.0:
        sq, err = two_square(m[0], be)
        return sq, err + 2.0 * (m[0] * m[1])
    return dd_pow(be, m[0], m[1], gamma)


# a confident prediction's loss is a product of small factors (1e-37): the
# error terms of a product below 2^-100 are subnormal, flushed by XLA
_TINY = 2.0**-20


def _sigmoid_focal_dd(be: Backend, x: Any, t: Any, alpha: float | None, gamma: float) -> Any:
    """The value of :func:`sigmoid_focal_loss` from double words (no
    derivative): ``e = exp(-|x|)``, ``1 + e``, its logarithm (the softplus),
    the sigmoids as quotients, ``1 - t`` and ``alpha_t``, each a double word;
    ``ce = log(1 + e) + (1 - t) x`` (``x >= 0``; ``- t x`` below) is a sum of
    nonnegative terms."""
    xp = be.xp
    x, t = be.stop_gradient(x), be.stop_gradient(t)
    dt = x.dtype
    zero, one = be.scalar(0.0, dt), be.scalar(1.0, dt)
    positive = x >= zero
    e = dd_exp(be, -xp.abs(x), differentiable=False)
    w, w_err = two_sum(e[0], one)  # 1 + e, the constant second
    w = (w, w_err + e[1])
    nt = two_sum(-t, one)  # 1 - t
    k = (xp.where(positive, nt[0], -t), xp.where(positive, nt[1], zero))
    loss, down = scaled_up(be, _TINY, dd_add(log_of_pair(be, w), dd_mul(be, k, (x, zero))))
    if gamma != 0.0:
        big, small = dd_div(be, (one, zero), w), dd_div(be, e, w)
        first = tuple(xp.where(positive, s, b) for s, b in zip(small, big, strict=True))
        second = tuple(xp.where(positive, b, s) for s, b in zip(small, big, strict=True))
        m = dd_add(dd_mul(be, (t, zero), first), dd_mul(be, nt, second))  # 1 - p_t
        loss = dd_mul(be, _dd_focal_power(be, m, gamma), loss)
    if alpha is not None:
        a_t = dd_add(
            dd_mul(be, dd_constant(be, alpha, dt), (t, zero)),
            dd_mul(be, dd_constant(be, 1.0 - alpha, dt), nt),
        )
        loss = dd_mul(be, a_t, loss)
    return dd_finish(be, *loss) * down


def _softmax_focal_dd(be: Backend, x: Any, axis: int, gamma: float) -> Any:
    """``-(1 - p)^gamma log p`` for every entry of ``softmax(x)`` along
    ``axis``, from double words (no derivative): the shift ``x - max``
    (TwoSum), its ``exp`` (:func:`dd_exp`), the sum of the terms below the
    maximum (``rest``; other maxima count 1), ``T = 1 + rest``, ``log T``,
    ``log p = x - max - log T`` and ``1 - p = (T - e) / T`` (``rest / T`` at
    a maximum: no cancellation)."""
    xp = be.xp
    x = be.stop_gradient(x)
    dt = x.dtype
    zero, one = be.scalar(0.0, dt), be.scalar(1.0, dt)
    m = amax(be, x, axis=axis, keepdims=True)
    finite = xp.isfinite(x)
    hi, lo = two_sum(xp.where(finite, x, m), -m)
    hi = xp.where(finite, hi, x - m)
    lo = xp.where(finite & xp.isfinite(lo), lo, zero)
    e_hi, e_lo = dd_exp(be, hi, differentiable=False)
    e = (e_hi, e_lo + e_hi * lo)  # e^(hi + lo) = e^hi (1 + lo)
    below = hi < zero
    ((rest, rest_lo),) = dd_sums(
        be, [(xp.where(below, e[0], zero), xp.where(below, e[1], zero))], axis
    )
    others = (x.shape[axis] - 1) - xp.sum(be.cast(below, dt), axis=axis)  # other maxima
    rest, rest_err = two_sum(rest, others)
    total_hi, total_err = two_sum(rest, one)  # the constant second
    total = tuple(_expand(be, v, axis) for v in (total_hi, total_err + (rest_err + rest_lo)))
    log_total = log_of_pair(be, total)
    log_p = dd_add((hi, lo), (-log_total[0], -log_total[1]))
    not_p = dd_div(be, dd_add(total, (-e[0], -e[1])), total)
    minus_log_p, down = scaled_up(be, _TINY, (-log_p[0], -log_p[1]))
    unit = dd_mul(be, _dd_focal_power(be, not_p, gamma), minus_log_p)
    return dd_finish(be, *unit) * down


@public
def sigmoid_focal_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike = None,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "none",
) -> Array:
    r"""Compute the sigmoid focal loss of Lin et al. (2017) from logits.

    With logits :math:`x`, targets :math:`t`, :math:`p = \sigma(x)` and
    :math:`p_t = p t + (1 - p)(1 - t)`:

    .. math::

        \ell = \alpha_t (1 - p_t)^{\gamma}
               \left(t \operatorname{softplus}(-x) + (1 - t) \operatorname{softplus}(x)\right),
        \qquad \alpha_t = \alpha t + (1 - \alpha)(1 - t)

    The cross entropy is the sum of softplus terms (as in
    :func:`~anyloss.binary_cross_entropy`), and :math:`1 - p_t = t \sigma(-x) + (1 - t)
    \sigma(x)` is a sum of sigmoids evaluated from :math:`e^{-|x|}`, so a
    confident prediction keeps its tiny exact value: ``x = 15, t = 1`` gives
    ``7.2e-21``, not 0. ``gamma = 0`` and ``alpha = None`` is exactly the
    binary cross entropy.

    Args:
        inputs: Logits.
        targets: Targets in ``{0, 1}`` (soft targets in ``[0, 1]`` use the same
            formula), with the shape of ``inputs``; outside ``[0, 1]`` they are
            a ``ValueError`` where their values can be read (eagerly).
        weights: Optional weights with the shape of ``inputs``. Default: ``None``.
        alpha: Weight of the positive class in ``[0, 1]`` (negatives get
            ``1 - alpha``), or ``None`` for no class balancing. Default: ``0.25``.
        gamma: Focusing parameter, ``gamma >= 0``. Default: ``2.0``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The sigmoid focal loss, in the array library and dtype of ``inputs``.

    Raises:
        ValueError: Shapes that do not match, ``alpha`` outside ``[0, 1]``,
            ``gamma < 0``, an unknown reduction.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([2.0, -1.0, 0.0, 15.0], dtype=np.float32)
        >>> targets = np.array([1, 1, 0, 1])
        >>> anyloss.sigmoid_focal_loss(logits, targets)
        array([4.50891e-04, 1.75467e-01, 1.29965e-01, 7.15629e-21], dtype=float32)
        >>> anyloss.sigmoid_focal_loss(logits, targets, alpha=None, gamma=0.0)
        array([1.26928e-01, 1.31326e+00, 6.93147e-01, 3.05902e-07], dtype=float32)
        >>> anyloss.sigmoid_focal_loss(logits, targets, reduction="sum")
        array(0.305883, dtype=float32)
    """
    func = "sigmoid_focal_loss"
    check_reduction(func, reduction)
    a = None if alpha is None else number(func, "alpha", alpha, low=0.0, high=1.0)
    g = number(func, "gamma", gamma, low=0.0, high=float("inf"), high_open=True)
    be = resolve(func, ("inputs", inputs), ("targets", targets), ("weights", weights))
    xp = be.xp
    dtype = _compute_dtype(be, elementwise=True)
    x = float_arg(be, func, "inputs", inputs)
    t = float_arg(be, func, "targets", targets)
    same_shape(func, ("inputs", x), ("targets", t))
    unit_interval(
        be,
        func,
        "targets",
        t,
        "for labels in {-1, 1} map them to {0, 1} with (t + 1) / 2",
    )
    fast_loss = kernels.values(be, func, "none", inputs=x, targets=t, alpha=a, gamma=g)
    if fast_loss is not None:
        return reduce(be, _weighted(be, func, fast_loss, weights), reduction)
    x = float_arg(be, func, "inputs", inputs, dtype)
    t = float_arg(be, func, "targets", targets, dtype)
    zero, one = be.scalar(0.0, dtype), be.scalar(1.0, dtype)
    not_t = one - t
    loss = t * _softplus(be, -x) + not_t * _softplus(be, x)
    if g != 0.0:
        # sigma(|x|) and sigma(-|x|) from e = exp(-|x|) <= 1 (no overflow); -|x|
        # is selected per sign so its gradient is right at x = 0 too.
        positive = x >= zero
        e = exp(be, xp.where(positive, -x, x))
        big = one / (one + e)
        small = e / (one + e)
        # 1 - p_t = t sigma(-x) + (1 - t) sigma(x): a sum of nonnegative terms
        m = xp.where(positive, t * small + not_t * big, t * big + not_t * small)
        loss = _focal_power(be, m, g) * loss
    if a is not None:
        loss = (be.scalar(a, dtype) * t + be.scalar(1.0 - a, dtype) * not_t) * loss
    if be.float32_only and dtype == be.wide:
        loss = exact_value(be, fused(be, _sigmoid_focal_dd, a, g)(x, t), loss)
    return reduce(be, _weighted(be, func, loss, weights), reduction)


def _class_alpha(be: Backend, func: str, alpha: Any, num_classes: int, dtype: Any) -> Any:
    """``alpha`` as a Python float, or as a 1-D array of ``num_classes`` weights."""
    if isinstance(alpha, numbers.Real) or getattr(alpha, "ndim", None) == 0:
        return number(func, "alpha", alpha, low=0.0, high=float("inf"), high_open=True)
    arr = float_arg(be, func, "alpha", alpha, dtype)
    no_nan(be, func, "alpha", arr)
    if arr.ndim != 1 or not shapes_match(shape_of(arr), (num_classes,)):
        raise ValueError(
            f"{func}(): alpha.shape={shape_of(arr)} must be ({num_classes},): one "
            f"weight per class (or pass a single float for all classes)"
        )
    return arr


@public
def softmax_focal_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike = None,
    axis: int = -1,
    alpha: ArrayLike = None,
    gamma: float = 2.0,
    reduction: Reduction = "none",
) -> Array:
    r"""Compute the multi-class (softmax) focal loss from logits.

    With :math:`p = \operatorname{softmax}(x)` along ``axis`` and target
    distribution :math:`q` (one-hot for class indices):

    .. math::

        \ell = -\sum_c \alpha_c\, q_c\, (1 - p_c)^{\gamma} \log p_c

    :math:`\log p` is a max-shifted log-softmax (the shift carried exactly)
    whose normalizer is ``log1p`` of the sum of the terms below the maximum;
    :math:`1 - p_c` is that sum over one plus it for the top class and
    ``-expm1(log p_c)`` for the others. A confident correct prediction thus
    keeps its tiny exact loss instead of rounding to 0. A class whose target
    probability is exactly 0 contributes nothing, even where its logit is
    ``-inf``. ``gamma = 0`` and ``alpha = None`` is :func:`~anyloss.cross_entropy`.

    Args:
        logits: Unnormalized scores.
        targets: Integer class indices (the shape of ``logits`` without
            ``axis``) or class probabilities / one-hot vectors (the shape of
            ``logits``). Which one is decided by ``targets.ndim == logits.ndim``.
        weights: Optional weights with the shape of the per-example loss.
            Default: ``None``.
        axis: The class axis. Default: ``-1``.
        alpha: Class weights: ``None`` (all 1), a float ``>= 0`` for every
            class, or a 1-D array with one weight per class. Default: ``None``.
        gamma: Focusing parameter, ``gamma >= 0``. Default: ``2.0``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The softmax focal loss, in the array library and dtype of ``logits``.

    Raises:
        ValueError: Shapes that do not match, ``alpha`` of the wrong length,
            negative or NaN, ``gamma < 0``, an unknown reduction, class indices
            out of range where their values can be read (under ``jax.jit``,
            ``mx.compile``, ``torch.compile`` or on Dask such an example's loss is NaN instead).
        TypeError: Class indices that are not integers.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([[2.0, -1.0, 0.0], [0.0, 0.0, 20.0]], dtype=np.float32)
        >>> anyloss.softmax_focal_loss(logits, np.array([0, 2]))
        array([4.14426e-03, 7.00521e-26], dtype=float32)
        >>> anyloss.softmax_focal_loss(logits, np.array([0, 0]), alpha=[0.5, 1.0, 1.0])
        array([2.07213e-03, 1.00000e+01], dtype=float32)
        >>> probs = np.array([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]], dtype=np.float32)
        >>> anyloss.softmax_focal_loss(logits, probs, gamma=0.0)
        array([1.16985e+00, 4.12231e-09], dtype=float32)
    """
    func = "softmax_focal_loss"
    check_reduction(func, reduction)
    g = number(func, "gamma", gamma, low=0.0, high=float("inf"), high_open=True)
    alpha_is_array = alpha is not None and not (
        isinstance(alpha, numbers.Real) or getattr(alpha, "ndim", None) == 0
    )
    be = resolve(
        func,
        ("logits", logits),
        ("targets", targets),
        ("weights", weights),
        *((("alpha", alpha),) if alpha_is_array else ()),
        dtype_free=("alpha",),
    )
    xp = be.xp
    dtype = _compute_dtype(be)
    x = float_arg(be, func, "logits", logits, dtype)
    if x.ndim == 0:
        raise ValueError(f"{func}(): logits must have at least 1 dimension, got a scalar")
    ax = normalize_axis(func, axis, x.ndim, "logits")
    num_classes = shape_of(x)[ax]
    need_classes(func, "logits", shape_of(x), ax)
    a = None if alpha is None else _class_alpha(be, func, alpha, num_classes, dtype)

    t = convert(be, f"{func}(): targets", targets)
    as_probs = t.ndim == x.ndim
    expected = shape_of(x) if as_probs else shape_of(x)[:ax] + shape_of(x)[ax + 1 :]
    if not shapes_match(shape_of(t), expected):
        raise ValueError(
            f"{func}(): targets.shape={shape_of(t)} does not match logits.shape="
            f"{shape_of(x)}; expected {expected} for class "
            f"{'probabilities' if as_probs else 'indices'} along axis {axis}"
        )

    if isinstance(a, float):
        a_classes: Any = be.scalar(a, dtype)
    elif a is not None:
        shape = [1] * x.ndim
        shape[ax] = num_classes
        a_classes = xp.reshape(a, tuple(shape))

    # a fast path's per-row values (with a per-class alpha under probabilities),
    # then alpha where it is a factor per row, the bad indices and the weights
    invalid = None
    if as_probs:
        q = float_arg(be, func, "targets", t, dtype)
        per_class = None if a is None or isinstance(a, float) else a
        fast_loss = kernels.values(
            be, func, "none", logits=x, targets=q, axis=ax, alpha=per_class, gamma=g
        )
    else:
        idx, invalid = checked_class_indices(
            be,
            func,
            "targets",
            t,
            num_classes,
            f"axis {ax} of logits with shape {shape_of(x)}",
            ignore_supported=False,
        )
        fast_loss = kernels.values(
            be, func, "none", logits=x, targets=idx, axis=ax, alpha=None, gamma=g
        )
    if fast_loss is not None:
        if isinstance(a, float):
            fast_loss = a_classes * fast_loss
        elif a is not None and not as_probs:
            fast_loss = _take_along(be, a_classes, idx, ax) * fast_loss
        loss = poison(be, fast_loss, invalid)
        return reduce(be, _weighted(be, func, loss, weights, num_classes, "alpha"), reduction)

    log_p, not_p = _log_softmax(be, x, ax)
    zero = be.scalar(0.0, dtype)
    exact = be.float32_only and g != 0.0 and dtype == be.wide
    if as_probs:
        # 0 log 0 = 0: an absent class's log-probability (maybe -inf) is masked
        # before it is used, so no 0 * inf appears in the value or the gradient
        log_p = xp.where(q == zero, zero, log_p)
        unit = -log_p
        if g != 0.0:
            unit = _focal_power(be, not_p, g) * unit
        if exact:
            unit = exact_value(
                be, xp.where(q == zero, zero, fused(be, _softmax_focal_dd, ax, g)(x)), unit
            )
        terms = q * unit
        if a is not None:
            terms = a_classes * terms
        loss = xp.sum(terms, axis=ax)
    else:
        log_p_y = _take_along(be, log_p, idx, ax)
        loss = -log_p_y
        if g != 0.0:
            loss = _focal_power(be, _take_along(be, not_p, idx, ax), g) * loss
        if exact:
            loss = exact_value(
                be, _take_along(be, fused(be, _softmax_focal_dd, ax, g)(x), idx, ax), loss
            )
        if isinstance(a, float):
            loss = a_classes * loss
        elif a is not None:
            loss = _take_along(be, a_classes, idx, ax) * loss
        loss = poison(be, loss, invalid)
    return reduce(be, _weighted(be, func, loss, weights, num_classes, "alpha"), reduction)

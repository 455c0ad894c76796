"""Losses on embeddings and rankings: cosine similarity, triplet, margin ranking."""

from __future__ import annotations

import math
from typing import Any

from ._backend import Backend, resolve
from ._checks import (
    Reduction,
    broadcast_shape,
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
    dd_dots,
    dd_finish,
    dd_sqrt,
    dd_sums,
    exact_square,
    exact_value,
    fused,
    sum3,
    two_prod,
    two_square,
    two_sum,
)
from ._compensated_exp_log import dd_pow
from ._reduction import amax, reduce
from ._typing import Array, ArrayLike
from .kernels import fast

__all__ = ["cosine_similarity_loss", "margin_ranking_loss", "triplet_loss"]


def _scale(be: Backend, x: Any, axis: int) -> Any:
    """max |x| along ``axis`` (kept), 1 where that is 0 or not finite.

    Dividing by it keeps squares and p-th powers from overflowing or
    underflowing. The scale is a constant for differentiation: every formula
    using it is invariant to it, so its gradient contributes nothing.
    """
    xp = be.xp
    s = be.stop_gradient(amax(be, xp.abs(x), axis=axis, keepdims=True))  # 0 (so 1) for D = 0
    usable = (s > be.scalar(0.0, s.dtype)) & (s < be.scalar(float("inf"), s.dtype))
    return xp.where(usable, s, be.scalar(1.0, s.dtype))


_BIG = 2.0**64


def _unscale(be: Backend, x: Any, s: Any) -> Any:
    """``x / s`` for a positive scale ``s``, as ``(x 2^-64) / (s 2^-64)`` where
    ``s > 2^64``: XLA's CPU code divides by multiplying with ``1 / s``, which
    is subnormal, and flushed to 0, for a float32 ``s`` above ``2^126``
    (entries below ``2^-62`` that underflow are negligible next to ``s``)."""
    xp = be.xp
    f = xp.where(s > _BIG, be.scalar(1.0 / _BIG, s.dtype), be.scalar(1.0, s.dtype))
    return (x * f) / (s * f)


# -- double-word arithmetic ---------------------------------------------------
#
# The dot products, norms and distances are carried as unevaluated sums hi + lo
# of the computation dtype (see _compensated.py) and summed with every rounding
# error kept: the result is as if computed in twice the precision, and does not
# depend on the memory layout (C or Fortran order) as a library's own sum can.
# That dtype is float64 where the library has it (float32 inputs are widened
# first) and float32 on MLX and on JAX without x64: there too the loss is within
# a few ulp, where a plain float32 sum is hundreds of ulp off.


def _pow2_below(be: Backend, peak: Any) -> Any:
    """``2^(floor(log2 peak) - 1)`` for ``0 < peak < inf``: below ``peak`` even
    where log2 rounds up (float32 ``log2(FLT_MAX)`` is 128, and 2^128 is inf),
    and at least the smallest normal number (2^-1075 is 0). Dividing by it is
    exact; a constant for differentiation."""
    xp = be.xp
    dt = peak.dtype
    low = -1022.0 if float(xp.finfo(dt).max) > 1e300 else -126.0
    k = xp.maximum(xp.floor(xp.log2(peak)) - be.scalar(1.0, dt), be.scalar(low, dt))
    return be.stop_gradient(xp.pow(be.scalar(2.0, dt), k))


def _pow2_scale(be: Backend, x: Any, axis: int) -> Any:
    """A power of two near max |x| along ``axis`` (kept; 1 where that is 0 or
    not finite): dividing by it is exact."""
    return _pow2_below(be, _scale(be, x, axis))


@public
def cosine_similarity_loss(
    x1: ArrayLike,
    x2: ArrayLike,
    axis: int = 1,
    eps: float = 1e-8,
    reduction: Reduction = "none",
) -> Array:
    r"""Compute the cosine similarity between two sets of vectors.

    .. math::

        \ell = \frac{x_1 \cdot x_2}{\max(\|x_1\| \|x_2\|, \epsilon)}

    Note that, as in MLX, the value is the similarity itself (not
    ``1 - similarity``) and the default axis is ``1``. Both vectors are scaled
    by their largest entry before the norms are taken, so magnitudes of
    ``1e20`` or ``1e-20`` neither overflow nor underflow. The dot products and
    norms are double-word sums (twice the precision of the computation, also
    in float32 on MLX and on JAX without x64): a few ulp even where the
    dot product cancels, in C or Fortran order.

    Args:
        x1: The first set of vectors.
        x2: The second set of vectors (broadcast against ``x1``).
        axis: The embedding axis. Default: ``1``.
        eps: Lower bound on the product of the norms. Default: ``1e-8``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The cosine similarity, in the array library and dtype of ``x1``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> a = np.array([[1.0, 0.0], [1e20, 1e20]], dtype=np.float32)
        >>> b = np.array([[1.0, 1.0], [1e20, 1e20]], dtype=np.float32)
        >>> anyloss.cosine_similarity_loss(a, b)
        array([0.70710677, 1.        ], dtype=float32)
    """
    func = "cosine_similarity_loss"
    check_reduction(func, reduction)
    eps = number(func, "eps", eps, low=0.0)
    be = resolve(func, ("x1", x1), ("x2", x2))
    xp = be.xp
    a = float_arg(be, func, "x1", x1)
    b = float_arg(be, func, "x2", x2)
    normalize_axis(func, axis, a.ndim, "x1")
    normalize_axis(func, axis, b.ndim, "x2")
    shape = broadcast_shape(func, ("x1", a), ("x2", b))
    ax = normalize_axis(func, axis, len(shape), "the broadcast inputs")
    out = fast(be, func, reduction, x1=a, x2=b, axis=ax, eps=eps)
    if out is not None:
        return out
    a, b = be.cast(a, be.wide), be.cast(b, be.wide)
    if a.ndim != len(shape) or b.ndim != len(shape):
        a, b = xp.broadcast_arrays(a, b)
    return reduce(be, _cosine(be, a, b, ax, eps), reduction)


def _cosine(be: Backend, a: Any, b: Any, ax: int, eps: float) -> Any:
    """The cosine similarity of the rows of ``a`` and ``b`` along ``ax``.

    The dot product may cancel to far below its terms: it and the norms are
    double-word sums (on JAX one reduction for the three) of the vectors
    scaled exactly (by powers of two)."""
    xp = be.xp
    s1, s2 = _pow2_scale(be, a, ax), _pow2_scale(be, b, ax)
    u1, u2 = _unscale(be, a, s1), _unscale(be, b, s2)
    dot, sq1, sq2 = (
        dd_finish(be, *pair) for pair in dd_dots(be, [(u1, u2), (u1, u1), (u2, u2)], ax)
    )
    norms = xp.sqrt(sq1) * xp.sqrt(sq2)
    s1, s2 = xp.squeeze(s1, axis=ax), xp.squeeze(s2, axis=ax)
    # ||x1|| ||x2|| >= eps, decided without forming the product (it over- or
    # underflows in the right direction if it has to).
    large = (norms * s1) * s2 >= be.scalar(eps, be.wide)
    one, zero = be.scalar(1.0, be.wide), be.scalar(0.0, be.wide)
    # eps = 0 and a zero vector: 0 / 0 is NaN (as in MLX), formed without a
    # division that Dask would warn about
    some = norms > zero
    by_norms = xp.where(
        some, dot / xp.where(large & some, norms, one), be.scalar(float("nan"), be.wide)
    )
    # (eps = 0: not large only where the norms are NaN; dot * 0 keeps that NaN)
    by_eps = dot * xp.where(large, zero, (s1 / eps) * s2) if eps > 0 else dot * zero
    return xp.where(large, by_norms, by_eps)


def _plain_where_infinite(be: Backend, a: Any, pos: Any, neg: Any, axis: int, loss: Any) -> Any:
    """``loss``, except in the rows with an infinite (or NaN) entry.

    There the scaled and error-free forms would form ``inf - inf`` or
    ``inf / inf``. The plain formula's answer depends only on which
    distances are infinite or NaN, read from the differences without
    computing any distance: a NaN difference, or both distances infinite
    (``inf - inf``), give NaN (as MLX); ``d(a, pos)`` infinite gives inf;
    ``d(a, neg)`` infinite gives 0. Every entry that is not finite makes one
    of the two differences so.
    """
    xp = be.xp
    if any(d == 0 for d in a.shape):  # no entry (and MLX hangs on empty reductions)
        return loss
    rows = xp.all(xp.isfinite(a) & xp.isfinite(pos) & xp.isfinite(neg), axis=axis)
    dp, dn = a - pos, a - neg  # their values are not used, only their classes
    nan = xp.any(xp.isnan(dp) | xp.isnan(dn), axis=axis)
    inf_p, inf_n = xp.any(xp.isinf(dp), axis=axis), xp.any(xp.isinf(dn), axis=axis)
    dt = loss.dtype
    plain = xp.where(
        nan | (inf_p & inf_n),
        be.scalar(float("nan"), dt),
        xp.where(inf_p, be.scalar(float("inf"), dt), be.scalar(0.0, dt)),
    )
    return xp.where(rows, loss, plain)


def _triplet_gap(be: Backend, a: Any, pos: Any, neg: Any, axis: int, p: float, eps: float) -> Any:
    """``d(a, pos) - d(a, neg)`` with ``d(u, v) = (sum |u - v|^p + eps)^(1/p)``,
    for ``p`` other than 1 and 2 (those take :func:`_triplet_loss_dd`).

    - The inputs are halved (``h = 1/2``) in the rows where one exceeds half
      the largest float, so that their differences are finite.
    - Both distances are taken at one scale, a power of two ``c`` near the
      largest difference (exact divisions; nothing exceeds ``2^p`` per term
      before the root, and whatever underflows is negligible next to a term
      ``>= 1``): their difference is finite where each distance overflows
      (``+-1e308``), and ``eps / c^2`` is not ``0 / 0`` where ``c^2``
      underflows (differences of ``1e-200`` with ``eps = 0``).
    """
    xp = be.xp
    dt = a.dtype
    one = be.scalar(1.0, dt)
    big = xp.maximum(xp.maximum(xp.abs(a), xp.abs(pos)), xp.abs(neg))
    big = amax(be, big, axis=axis, keepdims=True)
    h = xp.where(big > float(xp.finfo(dt).max) * 0.5, be.scalar(0.5, dt), one)
    h = be.stop_gradient(h)
    ah = a * h
    dp, dn = ah - pos * h, ah - neg * h
    root = eps ** (1.0 / p)
    peak = xp.maximum(
        amax(be, xp.abs(dp), axis=axis, keepdims=True),
        amax(be, xp.abs(dn), axis=axis, keepdims=True),
    )
    peak = xp.maximum(peak, root * h)
    usable = (peak > be.scalar(0.0, dt)) & (peak < be.scalar(float("inf"), dt))
    peak = xp.where(usable, peak, one)
    c = _pow2_below(be, peak)  # scaled differences are below 4
    sp, sn = _unscale(be, dp, c), _unscale(be, dn, c)
    c, h = xp.squeeze(c, axis=axis), xp.squeeze(h, axis=axis)
    pw = be.scalar(p, dt)
    q = xp.pow((root * h) / c, pw)
    inner_p = xp.sum(xp.pow(xp.abs(sp), pw), axis=axis) + q
    inner_n = xp.sum(xp.pow(xp.abs(sn), pw), axis=axis) + q
    inv = be.scalar(1.0 / p, dt)
    return (c * (xp.pow(inner_p, inv) - xp.pow(inner_n, inv))) / h


def _scaled_differences(
    be: Backend, a: Any, pos: Any, neg: Any, axis: int, root: float
) -> tuple[Any, ...]:
    """``dp = a - pos``, ``dn = a - neg`` and ``x = neg - pos`` as exact
    double words (TwoSum), at the scales of :func:`_triplet_gap`: the
    inputs times ``h`` (1/2 where one exceeds half the largest float),
    divided by ``c`` (a power of two near the largest difference, or near
    ``root h``, the ``p``-th root of ``eps``). Returns ``dp, dp_lo, dn,
    dn_lo, x, x_lo, c, h`` (``c``, ``h`` without the axis)."""
    xp = be.xp
    dt = a.dtype
    one, zero = be.scalar(1.0, dt), be.scalar(0.0, dt)
    big = xp.maximum(xp.maximum(xp.abs(a), xp.abs(pos)), xp.abs(neg))
    big = amax(be, big, axis=axis, keepdims=True)
    h = be.stop_gradient(xp.where(big > float(xp.finfo(dt).max) * 0.5, be.scalar(0.5, dt), one))
    ah, ph, nh = a * h, pos * h, neg * h
    dp, dp_lo = two_sum(ah, -ph)
    dn, dn_lo = two_sum(ah, -nh)
    peak = xp.maximum(
        amax(be, xp.abs(dp), axis=axis, keepdims=True),
        amax(be, xp.abs(dn), axis=axis, keepdims=True),
    )
    peak = xp.maximum(peak, root * h)
    usable = (peak > zero) & (peak < be.scalar(float("inf"), dt))
    peak = xp.where(usable, peak, one)
    c = _pow2_below(be, peak)
    x, x_lo = two_sum(nh, -ph)  # neg - pos = dp - dn
    scaled = (_unscale(be, v, c) for v in (dp, dp_lo, dn, dn_lo, x, x_lo))
    return (*scaled, xp.squeeze(c, axis=axis), xp.squeeze(h, axis=axis))


def _triplet_loss_dd(
    be: Backend, a: Any, pos: Any, neg: Any, axis: int, p: float, margin: float, eps: float
) -> Any:
    """``max(d(a, pos) - d(a, neg) + margin, 0)`` for ``p`` in {1, 2}, as
    ``_triplet_gap`` but in double-word arithmetic of the computation dtype
    (float64, or float32 on MLX): every
    difference (TwoSum), square and product (Dekker) is exact, the sums
    along the axis keep their rounding errors, and the gap, its square roots
    and its quotient are carried as ``hi + lo`` up to the margin, so the
    loss is rounded once even where ``gap + margin`` cancels."""
    xp = be.xp
    dt = a.dtype
    one, zero = be.scalar(1.0, dt), be.scalar(0.0, dt)
    root = math.sqrt(eps) if p == 2.0 else eps
    dp, dp_lo, dn, dn_lo, x, x_lo, c, h = _scaled_differences(be, a, pos, neg, axis, root)
    if p == 1.0:
        # sum |dp| - sum |dn| (eps cancels)
        signed = [
            (xp.abs(d), xp.where(d < zero, -d_lo, d_lo)) for d, d_lo in ((dp, dp_lo), (dn, dn_lo))
        ]
        sp, sn = dd_sums(be, signed, axis)
        g, g_lo = dd_add(sp, (-sn[0], -sn[1]))
    else:
        # (S_p - S_n) / (d_p + d_n), S_p - S_n = sum (neg - pos)(dp + dn)
        y, y_lo = two_sum(dp, dn)
        y_lo = y_lo + (dp_lo + dn_lo)
        prod, prod_err = two_prod(x, y, be)
        terms = [(prod, prod_err + (x * y_lo + x_lo * y))]
        for d, d_lo in ((dp, dp_lo), (dn, dn_lo)):
            sq, sq_err = two_square(d, be)
            terms.append((sq, sq_err + 2.0 * (d * d_lo)))
        if be.float32_only:
            sum_p, sum_n = dd_sums(be, terms[1:], axis)
            num = _exact_square_gap(be, (dp, dp_lo), (dn, dn_lo), x * y, axis)
        else:
            num, sum_p, sum_n = dd_sums(be, terms, axis)  # one reduction on JAX
        q = ((eps * (h * h)) / c) / c
        roots = [dd_sqrt(be, *dd_add(total, (q, zero))) for total in (sum_p, sum_n)]
        den, den_lo = dd_add(roots[0], roots[1])
        positive = den > zero  # a = pos = neg with eps = 0: a gap of 0
        den_safe = xp.where(positive, den, one)
        g = num[0] / den_safe
        t, t_err = two_prod(g, den_safe, be)
        g_lo = (
            (((num[0] - t) - t_err) + num[1]) - g * xp.where(positive, den_lo, zero)
        ) / den_safe
        g, g_lo = xp.where(positive, g, zero), xp.where(positive, g_lo, zero)
    g, g_lo = (g * c) / h, (g_lo * c) / h
    return _plus_margin(be, (g, g_lo), margin)


def _plus_margin(be: Backend, gap: tuple[Any, Any], margin: float) -> Any:
    """``max(gap + margin, 0)`` rounded once, for a double word ``gap``
    (``margin`` a double word too where the dtype is float32)."""
    dt = gap[0].dtype
    m_hi, m_lo = dd_constant(be, margin, dt)
    r, r_err = two_sum(gap[0], m_hi)
    return be.xp.maximum(dd_finish(be, r, r_err + (gap[1] + m_lo)), be.scalar(0.0, dt))


def _triplet_loss_pow(
    be: Backend, a: Any, pos: Any, neg: Any, axis: int, p: float, margin: float, eps: float
) -> Any:
    """The value of ``max(d(a, pos) - d(a, neg) + margin, 0)`` for ``p``
    other than 1 and 2 in float32 alone: the scaled differences as double
    words (:func:`_scaled_differences`), their ``p``-th powers, the sums,
    the roots (:func:`dd_pow`) and the gap in double words up to the
    margin. For the value only (no derivative)."""
    xp = be.xp
    sg = be.stop_gradient
    zero = be.scalar(0.0, a.dtype)
    root = eps ** (1.0 / p)
    dp, dp_lo, dn, dn_lo, _, _, c, h = _scaled_differences(be, sg(a), sg(pos), sg(neg), axis, root)
    powers = [
        dd_pow(be, xp.abs(d), xp.where(d < zero, -d_lo, d_lo), p)
        for d, d_lo in ((dp, dp_lo), (dn, dn_lo))
    ]
    q = xp.pow((root * h) / c, be.scalar(p, a.dtype))
    roots = [dd_pow(be, *dd_add(total, (q, zero)), 1.0 / p) for total in dd_sums(be, powers, axis)]
    g, g_lo = dd_add(roots[0], (-roots[1][0], -roots[1][1]))
    return _plus_margin(be, ((g * c) / h, (g_lo * c) / h), margin)


def _exact_square_gap(
    be: Backend, dp: tuple[Any, Any], dn: tuple[Any, Any], xy: Any, axis: int
) -> tuple[Any, Any]:
    """``sum dp^2 - sum dn^2`` along ``axis`` for double words ``dp``, ``dn``,
    in float32 alone: for distances equal to float32 rounding the
    difference is ``2^-30`` of the sums, below what double words resolve.
    Each square is six exact words (:func:`exact_square` of ``hi``,
    ``2 hi lo`` by :func:`two_prod`, ``lo^2``), summed by :func:`sum3`. The
    derivative is that of ``sum xy`` (``xy = (neg - pos)(dp + dn)``, the
    same difference in float32)."""
    sg = be.stop_gradient
    words: list[Any] = []
    for (d, d_lo), sign in ((dp, 1.0), (dn, -1.0)):
        d, d_lo = sg(d), sg(d_lo)
        cross, cross_err = two_prod(d, d_lo, be)
        parts = [*exact_square(d, be), 2.0 * cross, 2.0 * cross_err, d_lo * d_lo]
        words += parts if sign > 0 else [-w for w in parts]
    hi, lo = sum3(be, words, axis)
    plain = be.xp.sum(xy, axis=axis)
    return hi + (plain - sg(plain)), lo


@public
def triplet_loss(
    anchors: ArrayLike,
    positives: ArrayLike,
    negatives: ArrayLike,
    axis: int = -1,
    p: int = 2,
    margin: float = 1.0,
    eps: float = 1e-6,
    reduction: Reduction = "none",
) -> Array:
    r"""Compute the triplet margin loss.

    .. math::

        \ell = \max\left(d(a, p) - d(a, n) + \alpha, 0\right),
        \qquad d(u, v) = \Big(\sum |u - v|^p + \epsilon\Big)^{1/p}

    The distances are computed with scaled differences (no overflow of the
    p-th power at magnitudes like ``1e20``, no ``0 / 0`` at ``1e-200`` with
    ``eps = 0``, a finite gap between inputs of ``+-1e308``) and in float64
    where the array library has it, since their difference cancels for nearly
    equal distances; with ``p`` 1 or 2 in double-word arithmetic up to the
    margin (twice the precision of the computation: also in float32 on MLX
    and on JAX without x64).

    Args:
        anchors: The anchor samples.
        positives: The positive samples (broadcast against ``anchors``).
        negatives: The negative samples (broadcast against ``anchors``).
        axis: The embedding axis. Default: ``-1``.
        p: The norm degree, ``> 0``. Default: ``2``.
        margin: The margin :math:`\alpha`. Default: ``1.0``.
        eps: Added to the sum of p-th powers before the root. Default: ``1e-6``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The triplet loss, in the array library and dtype of ``anchors``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> a = np.array([[0.0, 0.0]]); pos = np.array([[3.0, 4.0]]); neg = np.array([[6.0, 8.0]])
        >>> anyloss.triplet_loss(a, pos, neg, eps=0.0)
        array([0.])
        >>> anyloss.triplet_loss(a, neg, pos, eps=0.0)
        array([6.])
    """
    func = "triplet_loss"
    check_reduction(func, reduction)
    pdeg = number(func, "p", p, low=0.0, low_open=True)
    margin = number(func, "margin", margin)
    eps = number(func, "eps", eps, low=0.0)
    be = resolve(func, ("anchors", anchors), ("positives", positives), ("negatives", negatives))
    xp = be.xp
    a = float_arg(be, func, "anchors", anchors)
    pos = float_arg(be, func, "positives", positives)
    neg = float_arg(be, func, "negatives", negatives)
    shape = broadcast_shape(func, ("anchors", a), ("positives", pos), ("negatives", neg))
    ax = normalize_axis(func, axis, len(shape), "the broadcast inputs")
    out = fast(
        be,
        func,
        reduction,
        anchors=a,
        positives=pos,
        negatives=neg,
        axis=ax,
        p=pdeg,
        margin=margin,
        eps=eps,
    )
    if out is not None:
        return out
    a, pos, neg = (be.cast(v, be.wide) for v in (a, pos, neg))
    if a.ndim != len(shape):
        a = xp.broadcast_to(a, shape)
    zero = be.scalar(0.0, be.wide)
    if pdeg in (1.0, 2.0):
        loss = _triplet_loss_dd(be, a, pos, neg, ax, pdeg, margin, eps)
    else:
        gap = _triplet_gap(be, a, pos, neg, ax, pdeg, eps)
        loss = xp.maximum(gap + margin, zero)
        if be.float32_only:  # the value in double words
            exact = fused(be, _triplet_loss_pow, ax, pdeg, margin, eps)(a, pos, neg)
            loss = exact_value(be, exact, loss)
    loss = _plain_where_infinite(be, a, pos, neg, ax, loss)
    return reduce(be, loss, reduction)


@public
def margin_ranking_loss(
    inputs1: ArrayLike,
    inputs2: ArrayLike,
    targets: ArrayLike,
    margin: float = 0.0,
    reduction: Reduction = "none",
) -> Array:
    r"""Compute the margin ranking loss.

    .. math::

        \ell = \max(0, -y (x_1 - x_2) + \text{margin})

    Computed in float64 where the array library has it: near the margin the
    two terms cancel.

    Args:
        inputs1: Scores of the first items.
        inputs2: Scores of the second items, with the shape of ``inputs1``.
        targets: ``1`` where ``inputs1`` should rank higher, ``-1`` where
            ``inputs2`` should, with the shape of ``inputs1``.
        margin: The required separation. Default: ``0.0``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The margin ranking loss, in the array library and dtype of ``inputs1``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> targets = np.array([1, 1, -1])
        >>> inputs1 = np.array([-0.573409, -0.765166, -0.0638], dtype=np.float32)
        >>> inputs2 = np.array([0.75596, 0.225763, 0.256995], dtype=np.float32)
        >>> anyloss.margin_ranking_loss(inputs1, inputs2, targets).tolist()
        [1.32937, 0.990929, 0.0]
    """
    func = "margin_ranking_loss"
    check_reduction(func, reduction)
    margin = number(func, "margin", margin)
    be = resolve(func, ("inputs1", inputs1), ("inputs2", inputs2), ("targets", targets))
    x1 = float_arg(be, func, "inputs1", inputs1)
    x2 = float_arg(be, func, "inputs2", inputs2)
    y = float_arg(be, func, "targets", targets)
    same_shape(func, ("inputs1", x1), ("inputs2", x2), ("targets", y))
    out = fast(be, func, reduction, inputs1=x1, inputs2=x2, targets=y, margin=margin)
    if out is not None:
        return out
    x1, x2, y = (be.cast(v, be.wide) for v in (x1, x2, y))
    xp = be.xp
    if be.wide == getattr(xp, "float64", None):
        loss = margin - y * (x1 - x2)
    else:
        # float32 only (MLX, JAX without x64): carry the rounding errors of
        # x1 - x2, of the margin subtraction (y = +-1 multiplies exactly) and
        # of the margin itself (a Python float, split into float32 hi + lo).
        m_hi, m_lo = dd_constant(be, margin, be.wide)
        d, d_err = two_sum(x1, -x2)
        r, r_err = two_sum(-(y * d), m_hi)  # the constant second
        err = (r_err + m_lo) - y * d_err
        # an infinite input or an overflowing difference makes TwoSum's error
        # inf - inf = NaN; the plain sum r is right there
        loss = r + xp.where(xp.isfinite(err), err, be.scalar(0.0, be.wide))
    return reduce(be, xp.maximum(loss, be.scalar(0.0, be.wide)), reduction)

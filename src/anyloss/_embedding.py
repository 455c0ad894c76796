"""Losses on embeddings and rankings: cosine similarity, triplet, margin ranking."""

from __future__ import annotations

from typing import Any

import numpy as np

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
from ._reduction import reduce, two_sum
from .kernels import fast

__all__ = ["cosine_similarity_loss", "margin_ranking_loss", "triplet_loss"]


def _scale(be: Backend, x: Any, axis: int) -> Any:
    """max |x| along ``axis`` (kept), 1 where that is 0 or not finite.

    Dividing by it keeps squares and p-th powers from overflowing or
    underflowing. The scale is a constant for differentiation: every formula
    using it is invariant to it, so its gradient contributes nothing.
    """
    xp = be.xp
    s = be.stop_gradient(xp.max(xp.abs(x), axis=axis, keepdims=True))
    usable = (s > be.scalar(0.0, s.dtype)) & (s < be.scalar(float("inf"), s.dtype))
    return xp.where(usable, s, be.scalar(1.0, s.dtype))


@public
def cosine_similarity_loss(
    x1: Any,
    x2: Any,
    axis: int = 1,
    eps: float = 1e-8,
    reduction: Reduction = "none",
) -> Any:
    r"""Compute the cosine similarity between two sets of vectors.

    .. math::

        \ell = \frac{x_1 \cdot x_2}{\max(\|x_1\| \|x_2\|, \epsilon)}

    Note that, as in MLX, the value is the similarity itself (not
    ``1 - similarity``) and the default axis is ``1``. Both vectors are scaled
    by their largest entry before the norms are taken, so magnitudes of
    ``1e20`` or ``1e-20`` neither overflow nor underflow.

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
    s1, s2 = _scale(be, a, ax), _scale(be, b, ax)
    u1, u2 = a / s1, b / s2
    dot = xp.sum(u1 * u2, axis=ax)
    norms = xp.sqrt(xp.sum(u1 * u1, axis=ax)) * xp.sqrt(xp.sum(u2 * u2, axis=ax))
    s1, s2 = xp.squeeze(s1, axis=ax), xp.squeeze(s2, axis=ax)
    # ||x1|| ||x2|| >= eps, decided without forming the product (it over- or
    # underflows in the right direction if it has to).
    large = (norms * s1) * s2 >= be.scalar(eps, be.wide)
    one, zero = be.scalar(1.0, be.wide), be.scalar(0.0, be.wide)
    by_norms = dot / xp.where(large, norms, one)
    by_eps = dot * xp.where(large, zero, (s1 / eps) * s2) if eps > 0 else zero
    return reduce(be, xp.where(large, by_norms, by_eps), reduction)


def _pow(be: Backend, x: Any, p: float) -> Any:
    if p == 1.0:
        return x
    if p == 2.0:
        return x * x
    return be.xp.pow(x, be.scalar(p, x.dtype))


def _distance(be: Backend, a: Any, b: Any, axis: int, p: float, eps: float) -> Any:
    """``(sum |a - b|^p + eps)^(1/p)`` along ``axis``, without overflow.

    With ``c = max(max|a - b|, eps^(1/p))`` it equals
    ``c * (sum |(a - b)/c|^p + eps/c^p)^(1/p)``, where nothing exceeds 1
    before the root and whatever underflows is negligible next to a term >= 1.
    """
    xp = be.xp
    d = xp.abs(a - b)
    c = xp.maximum(_scale(be, d, axis), be.scalar(eps ** (1.0 / p), d.dtype))
    inner = xp.sum(_pow(be, d / c, p), axis=axis) + eps / _pow(be, xp.squeeze(c, axis=axis), p)
    root = (
        xp.sqrt(inner)
        if p == 2.0
        else inner
        if p == 1.0
        else xp.pow(inner, be.scalar(1.0 / p, d.dtype))
    )
    return xp.squeeze(c, axis=axis) * root


def _euclidean_gap(be: Backend, a: Any, pos: Any, neg: Any, axis: int, eps: float) -> Any:
    """``d(a, pos) - d(a, neg)`` for ``p = 2`` without cancellation.

    ``d_p - d_n = (S_p - S_n) / (d_p + d_n)`` with
    ``S_p - S_n = sum (dp - dn)(dp + dn)`` (eps cancels). Scaled by a power of
    two ``c`` nothing overflows, and for float32 inputs computed in float64
    every product is exact, so only the final sum rounds.
    """
    xp = be.xp
    dp, dn = a - pos, a - neg
    peak = xp.maximum(
        xp.max(xp.abs(dp), axis=axis, keepdims=True), xp.max(xp.abs(dn), axis=axis, keepdims=True)
    )
    peak = xp.maximum(peak, be.scalar(eps**0.5, dp.dtype))
    usable = (peak > be.scalar(0.0, dp.dtype)) & (peak < be.scalar(float("inf"), dp.dtype))
    peak = xp.where(usable, peak, be.scalar(1.0, dp.dtype))
    two = be.scalar(2.0, dp.dtype)
    c = be.stop_gradient(xp.pow(two, xp.ceil(xp.log2(peak))))
    sp, sn = dp / c, dn / c
    c = xp.squeeze(c, axis=axis)
    q = eps / (c * c)
    rp = xp.sqrt(xp.sum(sp * sp, axis=axis) + q)
    rn = xp.sqrt(xp.sum(sn * sn, axis=axis) + q)
    num = xp.sum((sp - sn) * (sp + sn), axis=axis)
    return c * (num / (rp + rn))


@public
def triplet_loss(
    anchors: Any,
    positives: Any,
    negatives: Any,
    axis: int = -1,
    p: int = 2,
    margin: float = 1.0,
    eps: float = 1e-6,
    reduction: Reduction = "none",
) -> Any:
    r"""Compute the triplet margin loss.

    .. math::

        \ell = \max\left(d(a, p) - d(a, n) + \alpha, 0\right),
        \qquad d(u, v) = \Big(\sum |u - v|^p + \epsilon\Big)^{1/p}

    The distances are computed with scaled differences (no overflow of the
    p-th power at magnitudes like ``1e20``) and in float64 where the array
    library has it, since their difference cancels for nearly equal distances.

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
    if pdeg == 2.0:
        gap = _euclidean_gap(be, a, pos, neg, ax, eps)
    else:
        gap = _distance(be, a, pos, ax, pdeg, eps) - _distance(be, a, neg, ax, pdeg, eps)
    loss = xp.maximum(gap + margin, be.scalar(0.0, be.wide))
    return reduce(be, loss, reduction)


@public
def margin_ranking_loss(
    inputs1: Any,
    inputs2: Any,
    targets: Any,
    margin: float = 0.0,
    reduction: Reduction = "none",
) -> Any:
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
        m_hi = float(np.float32(margin))
        m_lo = be.scalar(margin - m_hi, be.wide)
        d, d_err = two_sum(x1, -x2)
        r, r_err = two_sum(be.scalar(m_hi, be.wide), -(y * d))
        loss = r + ((r_err + m_lo) - y * d_err)
    return reduce(be, xp.maximum(loss, be.scalar(0.0, be.wide)), reduction)

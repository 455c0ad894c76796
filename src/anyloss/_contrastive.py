"""Contrastive losses: InfoNCE and NT-Xent with in-batch negatives.

Both build the ``(N, N)`` matrix of similarities of a batch (nothing larger)
in float64 where the array library has it (in double-float where it has
not): the losses are differences of similarities divided by a small
temperature, so every rounding error of a float32 similarity is amplified by
``1 / temperature`` before it reaches the result.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from ._backend import Backend, convert, resolve
from ._checks import Reduction, check_reduction, flag, float_arg, number, public, shape_of
from ._classification import _shifted_logsumexp, _softplus, _take_along
from ._compensated import float32_parts, two_sum
from ._compensated_exp_log import dd_log, exp
from ._embedding import _scale, _unscale
from ._reduction import amax, reduce
from ._typing import Array, ArrayLike

__all__ = [
    "info_nce_loss",
    "nt_xent_loss",
]


def _matrix(func: str, name: str, x: Any) -> None:
    if x.ndim != 2:
        raise ValueError(
            f"{func}(): {name} must be a 2-D array of shape (N, D), got {name}.shape={shape_of(x)}"
        )
    if any(d != d for d in shape_of(x)):
        raise ValueError(
            f"{func}(): {name}.shape={shape_of(x)} has sizes Dask does not know yet; "
            f"call {name}.compute_chunk_sizes() first"
        )


def _unit_rows(be: Backend, x: Any) -> Any:
    """``x / ||x||`` along the rows, a zero row left at zero.

    Each row is first divided by its largest magnitude, so the squared norm
    lies in ``[1, D]``: magnitudes of ``1e20`` or ``1e-20`` neither overflow nor
    underflow. The scale is a constant for differentiation, which is exact: the
    unit vector does not depend on it.
    """
    xp = be.xp
    u = _unscale(be, x, _scale(be, x, 1))  # (not a subnormal reciprocal on XLA)
    sq = xp.sum(u * u, axis=1, keepdims=True)
    # a zero row has sq = 0: divide by 1 instead (no 0/0, no inf gradient of sqrt)
    return u / xp.sqrt(xp.where(sq > be.scalar(0.0, sq.dtype), sq, be.scalar(1.0, sq.dtype)))


def _diagonal_cross_entropy(be: Backend, sims: Any, tau: float, axis: int, index: Any) -> Any:
    """Cross entropy of the logits ``sims / tau`` of every row (``axis=1``) or
    column (``axis=0``) of a square matrix, the diagonal entry the target:
    ``logsumexp - diag``, summed as ``log1p`` as in ``cross_entropy``.

    The maximum is subtracted before the division by ``tau``: a compiler
    that fuses ``sims / tau - max`` into one fused multiply-add (XLA on the
    CPU does) would otherwise leave the maximum entry at a few ulp from 0,
    an absolute error that swamps a small loss.
    """
    z = (sims - be.stop_gradient(amax(be, sims, axis=axis, keepdims=True))) / tau
    return _shifted_logsumexp(be, z, axis) - _take_along(be, z, index, axis)


# -- float32-only libraries: the similarities in double-float -----------------
#
# Where the library has no float64 (MLX, JAX without x64, torch on MPS) a
# float32 loss would carry the rounding of the normalization, of the matmul
# (whose summation order differs between CPUs: AVX2 and AVX-512 gave 172 and
# 124 ulp on one input) and of x - max, each amplified by 1 / temperature.
# There the value is recomputed as pairs hi + lo of float32 numbers:
#
# * products with an exact error (Dekker's TwoProduct, the halves split by
#   the exponent read from the bits, so a compiler fusing a * b - c into an
#   FMA, as XLA does on the CPU, changes nothing);
# * dot products of rows scaled to norm <= 1 split as ``a = a1 + ar``, ``a1``
#   on the grid 2**-11: the products of the ``a1`` lie on the grid 2**-22 and
#   every partial sum is below 2, so ``a1 @ b1.T`` is exact in any summation
#   order, and the rest (``a1 @ br.T + ar @ b.T``, ~2**-11 of the total) is
#   needed only to float32 accuracy.
#
# The gradient is that of the plain float32 formulas.


def _ufp(be: Backend, a: Any) -> Any:
    """The power of two of ``|a|``'s exponent (float32; 1 where ``a`` is 0,
    subnormal or not finite), read from the bits."""
    xp = be.xp
    if be.name == "jax":
        lax = sys.modules["jax"].lax
        bits = lax.bitcast_convert_type(a, xp.int32) & 0x7F800000
        p = lax.bitcast_convert_type(bits, a.dtype)
    elif be.name == "mlx":
        mx = sys.modules["mlx.core"]
        p = mx.view(mx.view(a, mx.int32) & 0x7F800000, a.dtype)
    else:  # torch (MPS)
        torch = sys.modules["torch"]
        p = (a.view(torch.int32) & 0x7F800000).view(a.dtype)
    one = be.scalar(1.0, a.dtype)
    return xp.where((p > be.scalar(0.0, a.dtype)) & xp.isfinite(p), p, one)


def _grid(be: Backend, a: Any, bits: int) -> Any:
    """``a`` rounded to the grid ``2**-bits`` (exact scalings by powers of two)."""
    return be.xp.round(a * float(2**bits)) * (1.0 / 2**bits)


def _two_prod(be: Backend, a: Any, b: Any) -> tuple[Any, Any]:
    """``p, e`` with ``p = fl(a b)`` and ``a b = p + e`` exactly (Dekker)."""

    def split(v: Any) -> tuple[Any, Any]:
        e = _ufp(be, v)
        m = v / e  # in [1, 2): 12 bits above 2**-11, at most 11 below
        mh = _grid(be, m, 11)
        return mh * e, (m - mh) * e

    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _exact_matmul(be: Backend, ah: Any, al: Any, bh: Any, bl: Any) -> tuple[Any, Any]:
    """``(ah + al) @ (bh + bl).T`` as ``hi + lo`` for rows of norm at most 1."""
    xp = be.xp
    a1, b1 = _grid(be, ah, 11), _grid(be, bh, 11)
    ar, br = (ah - a1) + al, (bh - b1) + bl
    kw: dict[str, Any] = {}
    if be.name == "jax":  # full float32 products on accelerators too
        kw["precision"] = "highest"
    exact = xp.matmul(a1, b1.T, **kw)
    rest = xp.matmul(xp.concat([a1, ar], axis=1), xp.concat([br, bh], axis=1).T, **kw)
    return two_sum(exact, rest)


def _exact_unit_rows(be: Backend, x: Any) -> tuple[Any, Any]:
    """``x / ||x||`` along the rows as ``hi + lo`` (a zero row stays zero)."""
    xp = be.xp
    zero, one = be.scalar(0.0, x.dtype), be.scalar(1.0, x.dtype)
    u = _unscale(be, x, _ufp(be, _scale(be, x, 1)))  # exact: max |u| in [1, 2)
    n0 = xp.sqrt(xp.sum(u * u, axis=1, keepdims=True))
    v = u / (_ufp(be, n0) * 2.0)  # exact: ||v|| in [1/2, 1)
    # ||v||^2 = n2h + n2l: the squares of v1 (grid 2**-11) sum exactly
    v1 = _grid(be, v, 11)
    vr = v - v1
    n2h, n2l = two_sum(
        xp.sum(v1 * v1, axis=1, keepdims=True), xp.sum(vr * (v + v1), axis=1, keepdims=True)
    )
    nonzero = n2h > zero
    y = one / xp.sqrt(xp.where(nonzero, n2h, one))
    # 1 / ||v|| = y (1 - t / 2) to 2**-46, with t = ||v||^2 y^2 - 1 (tiny)
    a, b = _two_prod(be, y, y)
    c, d = _two_prod(be, n2h, a)
    t = (c - one) + (d + n2h * b + n2l * a)
    y = xp.where(nonzero, y, zero)
    hi, err = _two_prod(be, v, y)
    return hi, err - v * (y * t * 0.5)


def _raw_bits(d: int) -> int:
    """``k`` such that rows of ``d`` entries below 2 in magnitude have norm at
    most ``2**k / 2`` (see :func:`_exact_raw_rows`)."""
    return math.ceil(math.log2(2 * math.sqrt(d)))


def _exact_raw_rows(be: Backend, x: Any) -> tuple[Any, Any]:
    """``x`` scaled by a power of two per row to norm <= 1, and the scales
    divided by ``2**_raw_bits(D)`` (a scale itself would overflow for rows
    near the largest float)."""
    p = _ufp(be, _scale(be, x, 1))
    return _unscale(be, x, p) * (1.0 / 2 ** _raw_bits(x.shape[1])), p


def _exact_diagonal_cross_entropy(
    be: Backend,
    sh: Any,
    sl: Any,
    tau: float,
    axis: int,
    index: Any,
    rows: Any = None,
    cols: Any = None,
    bits: int = 0,
) -> Any:
    """``_diagonal_cross_entropy`` of the similarities
    ``(sh + sl) rows cols 2**bits``, the shift and the division by ``tau``
    carried in double-float.

    ``rows`` (shape ``(N, 1)``) and ``cols`` (``(1, N)``) are powers of two
    (1 if omitted) whose products may overflow: the entries of a row (for
    ``axis=1``) are compared with only ``cols`` applied, and the factor common
    to the row is applied to the shifted differences, multiplied by the
    factors at least 1 (or at most 1) one after another, so a difference
    overflows to ``-inf`` only where its true value lies beyond the largest
    float (it then counts as ``exp(-inf) = 0``, or gives a loss of ``+inf``
    at the diagonal). No overflow gives ``inf - inf``: no NaN.
    """
    xp = be.xp
    one = be.scalar(1.0, sh.dtype)
    ones = xp.ones_like(sh[:1, :1])
    rows = ones if rows is None else rows
    cols = ones if cols is None else cols
    vary, common = (cols, rows) if axis == 1 else (rows, cols)
    # |sh| <= 1: |r| <= 2**125 and |r - max| <= 2**126, no overflow
    vary = vary * 0.25
    rh, rl = sh * vary, sl * vary
    top = xp.argmax(rh, axis=axis)
    mh = xp.expand_dims(_take_along(be, rh, top, axis), axis=axis)
    ml = xp.expand_dims(_take_along(be, rl, top, axis), axis=axis)
    dh, dl = two_sum(rh, -mh)
    dl = dl + (rl - ml)  # 0 at the maximum
    # 1 / tau = m 2**e: |d m| < 2**127
    m_hi, m_lo, e = _reciprocal_parts(tau)
    zh, ze = _two_prod(be, dh, be.scalar(m_hi, sh.dtype))
    zl = ze + dh * m_lo + dl * m_hi
    # times common 2**(bits + 2 + e), the power as two normal floats: factors
    # on one side of 1 in sequence (an intermediate over- or underflows only
    # if the result does), else their product (a float)
    n = bits + 2 + e
    f1, f2 = math.ldexp(1.0, n // 2), math.ldexp(1.0, n - n // 2)
    same = common >= one if n >= 0 else common <= one
    g = xp.where(same, one, (common * f1) * f2)
    zh2 = xp.where(same, ((zh * common) * f1) * f2, zh * g)
    zl = xp.where(same, ((zl * common) * f1) * f2, zl * g)
    zh = zh2
    zl = xp.where(xp.isfinite(zh), zl, be.scalar(0.0, sh.dtype))
    lse = _shifted_logsumexp(be, zh, axis, zl)
    return lse - (_take_along(be, zh, index, axis) + _take_along(be, zl, index, axis))


def _exact_info_nce(
    be: Backend, q: Any, k: Any, tau: float, normalize: bool, symmetric: bool, index: Any
) -> Any:
    """The InfoNCE loss per pair, its value in double-float (no gradient)."""
    q, k = be.stop_gradient(q), be.stop_gradient(k)
    if normalize:
        qh, ql = _exact_unit_rows(be, q)
        kh, kl = _exact_unit_rows(be, k)
        sh, sl = _exact_matmul(be, qh, ql, kh, kl)
        scales: tuple[Any, Any, int] = (None, None, 0)
    else:
        qv, qs = _exact_raw_rows(be, q)
        kv, ks = _exact_raw_rows(be, k)
        zero = be.xp.zeros_like(qv)
        sh, sl = _exact_matmul(be, qv, zero, kv, zero)
        # the similarities are (sh + sl) qs ks.T 2**(2 bits): the powers of
        # two are applied in the cross entropy, where they cannot overflow
        # to inf - inf
        scales = (qs, ks.T, 2 * _raw_bits(q.shape[1]))
    loss = _exact_diagonal_cross_entropy(be, sh, sl, tau, 1, index, *scales)
    if symmetric:
        loss = (loss + _exact_diagonal_cross_entropy(be, sh, sl, tau, 0, index, *scales)) * 0.5
    return loss


def _exact_nt_xent(
    be: Backend, x: Any, tau: float, counted: Any, valid: Any, has_negative: Any
) -> Any:
    """The NT-Xent loss per anchor, its value in double-float (no gradient).

    ``softplus(L_i + (peak_i - c_ij) / tau)`` summed over the valid pairs,
    with ``c`` the cosines as ``hi + lo`` (exact unit rows and products),
    ``peak_i`` the largest counted cosine of row ``i`` and ``L_i = log sum
    exp((c_ik - peak_i) / tau)`` over the counted entries: the shifted
    differences, their division by ``tau`` and ``L`` (``dd_log`` of the sum)
    in double-float, so the argument of the softplus is exact to float32
    rounding of itself even where the loss is ``e^(-30)`` of it (a confident
    pair: the loss is then the exponential of that argument).
    """
    xp = be.xp
    x = be.stop_gradient(x)
    dt = x.dtype
    zero, one = be.scalar(0.0, dt), be.scalar(1.0, dt)
    neg_inf = be.scalar(float("-inf"), dt)
    uh, ul = _exact_unit_rows(be, x)
    ch, cl = _exact_matmul(be, uh, ul, uh, ul)
    top = xp.argmax(xp.where(counted, ch, neg_inf), axis=1)
    ph = xp.expand_dims(_take_along(be, ch, top, 1), axis=1)
    pl = xp.expand_dims(_take_along(be, cl, top, 1), axis=1)
    dh, dl = two_sum(ch, -ph)
    dl = dl + (cl - pl)  # |d| <= 2
    zh, zl = _over_tau(be, dh, dl, tau)
    # sum over the counted entries of exp(z) = (number at the peak) + rest
    below = counted & (zh < zero)
    e = exp(be, xp.where(below, zh, zero))
    rest = xp.sum(xp.where(below, e * (one + zl), zero), axis=1, keepdims=True)
    ties = xp.sum(be.cast(counted & (zh == zero), dt), axis=1, keepdims=True)
    sh, sl = two_sum(ties, rest)
    lh, ll = dd_log(be, xp.where(ties > zero, sh, one))
    ll = ll + sl / xp.where(ties > zero, sh, one)
    # a = L - z, its softplus and the first-order correction of its low part
    ah, al = two_sum(lh, -zh)
    al = al + (ll - zl)
    ah = xp.where(valid, ah, zero)
    al = xp.where(valid & xp.isfinite(al), al, zero)
    sp = _softplus(be, ah)
    positive = ah > zero
    t = exp(be, xp.where(positive, -ah, ah))  # sigmoid(a) from exp(-|a|) <= 1
    sigmoid = xp.where(positive, one / (one + t), t / (one + t))
    pair = sp + sigmoid * al
    return xp.sum(xp.where(valid & has_negative, pair, zero), axis=1)


def _reciprocal_parts(tau: float) -> tuple[float, float, int]:
    """``1 / tau = (m_hi + m_lo) 2^e`` with ``m_hi + m_lo`` in ``[1, 2)``, two
    float32 parts (no float32 ``1 / tau``: subnormal for a temperature near
    the largest float)."""
    c = 1.0 / tau
    e = math.frexp(c)[1] - 1
    m = math.ldexp(c, -e)
    return (*float32_parts(m), e)


def _over_tau(be: Backend, dh: Any, dl: Any, tau: float) -> tuple[Any, Any]:
    """``(dh + dl) / tau`` as ``hi + lo`` for ``|dh| <= 4`` (see
    :func:`_reciprocal_parts`), the power of two applied as two normal
    factors (an overflow only where the result overflows)."""
    m_hi, m_lo, e = _reciprocal_parts(tau)
    zh, ze = _two_prod(be, dh, be.scalar(m_hi, dh.dtype))
    zl = ze + dh * m_lo + dl * m_hi
    f1, f2 = math.ldexp(1.0, e // 2), math.ldexp(1.0, e - e // 2)
    zh = (zh * f1) * f2
    zl = (zl * f1) * f2
    return zh, be.xp.where(be.xp.isfinite(zh), zl, be.scalar(0.0, dh.dtype))


def _float32_only(be: Backend, x: Any) -> bool:
    """Whether ``x`` is float32 on a library (or device) without float64 that
    the double-float path supports."""
    return (
        be.name in ("jax", "mlx", "torch")
        and be.float32_only
        and x.dtype == getattr(be.xp, "float32", None)
    )


@public
def info_nce_loss(
    queries: ArrayLike,
    keys: ArrayLike,
    temperature: float = 0.1,
    normalize: bool = True,
    symmetric: bool = False,
    reduction: Reduction = "mean",
) -> Array:
    r"""Compute the InfoNCE loss with in-batch negatives.

    Query :math:`q_i` is paired with key :math:`k_i`; every other key of the
    batch is a negative:

    .. math::

        \ell_i = -\log \frac{e^{s_{ii}}}{\sum_j e^{s_{ij}}}, \qquad
        s_{ij} = \frac{\hat q_i \cdot \hat k_j}{\tau}

    where :math:`\hat v = v / \|v\|` when ``normalize`` (else :math:`\hat v = v`)
    and :math:`\tau` is the temperature. With ``symmetric=True`` (CLIP) the
    loss of pair :math:`i` is the mean of the query-to-key and key-to-query
    cross entropies,
    :math:`\tfrac12\big(\ell_i + (\operatorname{logsumexp}_j s_{ji} - s_{ii})\big)`.

    This is ``cross_entropy(s, arange(N))``: evaluated with the maximum
    shifted out and the small terms summed through ``log1p``. The rows are
    scaled by their largest entry before they are normalized (magnitudes of
    ``1e20`` or ``1e-20`` neither overflow nor underflow, and there is no
    ``eps``: a zero row stays zero), and the similarities are computed in
    float64 where the array library has it. Where it has not (MLX, JAX
    without x64) the value is computed in double-float (pairs of float32
    numbers: the normalization, a matmul split so that its main part is
    exact in any summation order, the shift and the division by the
    temperature), so it does not depend on the CPU's summation order; the
    gradient is that of the float32 formulas.

    Args:
        queries: Query embeddings of shape ``(N, D)``.
        keys: Key embeddings of shape ``(N, D)``; ``keys[i]`` is the positive of
            ``queries[i]``.
        temperature: The temperature :math:`\tau`, ``> 0``. Default: ``0.1``.
        normalize: Whether to L2-normalize queries and keys along ``D`` (cosine
            similarities) or use the raw dot products. Default: ``True``.
        symmetric: Whether to average the query-to-key and key-to-query
            losses (CLIP). Default: ``False``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The InfoNCE loss, of shape ``(N,)`` for ``'none'`` (one value per
        pair) and 0-d otherwise, in the array library and dtype of ``queries``.

    Raises:
        ValueError: ``queries`` or ``keys`` not 2-D or of different shapes,
            ``temperature <= 0``, an unknown reduction.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
        >>> k = np.array([[1.0, 0.2], [0.1, 1.0], [1.0, 0.9]], dtype=np.float32)
        >>> anyloss.info_nce_loss(q, k, temperature=0.5, reduction="none").tolist()
        [0.584350, 0.544218, 0.856428]
        >>> anyloss.info_nce_loss(q, k, temperature=0.5)
        array(0.661665, dtype=float32)
        >>> anyloss.info_nce_loss(q, k, temperature=0.5, symmetric=True)
        array(0.666106, dtype=float32)
    """
    func = "info_nce_loss"
    check_reduction(func, reduction)
    normalize = flag(func, "normalize", normalize)
    symmetric = flag(func, "symmetric", symmetric)
    tau = number(func, "temperature", temperature, low=0.0, low_open=True)
    be = resolve(func, ("queries", queries), ("keys", keys))
    xp = be.xp
    q = float_arg(be, func, "queries", queries, be.wide)
    k = float_arg(be, func, "keys", keys, be.wide)
    _matrix(func, "queries", q)
    _matrix(func, "keys", k)
    if shape_of(q) != shape_of(k):
        raise ValueError(
            f"{func}(): queries and keys must have the same shape (N, D), got "
            f"queries.shape={shape_of(q)}, keys.shape={shape_of(k)}"
        )
    q0, k0 = q, k
    if normalize:
        q, k = _unit_rows(be, q), _unit_rows(be, k)
    sims = xp.matmul(q, k.T)
    index = be.arange(shape_of(q)[0])
    loss = _diagonal_cross_entropy(be, sims, tau, 1, index)
    if symmetric:
        loss = (loss + _diagonal_cross_entropy(be, sims, tau, 0, index)) * 0.5
    if _float32_only(be, q) and shape_of(q)[0] > 0 and shape_of(q)[1] > 0:
        # the value in double-float, the gradient of the float32 formulas
        exact = _exact_info_nce(be, q0, k0, tau, normalize, symmetric, index)
        # a float32 loss that overflowed would give inf - inf
        loss = xp.where(xp.isfinite(loss), loss, be.scalar(0.0, loss.dtype))
        loss = exact + (loss - be.stop_gradient(loss))
    return reduce(be, loss, reduction)


@public
def nt_xent_loss(
    embeddings: ArrayLike,
    labels: ArrayLike,
    temperature: float = 0.07,
    reduction: Reduction = "mean",
) -> Array:
    r"""Compute the normalized temperature-scaled cross entropy (NT-Xent).

    Embeddings with equal labels form positive pairs; embeddings with
    different labels are negatives of each other; an embedding is never
    compared with itself. Every ordered positive pair :math:`(i, j)`
    contributes the cross entropy of picking :math:`j` among :math:`j` and the
    negatives of :math:`i`:

    .. math::

        \ell_{ij} = -\log \frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k:\, y_k \ne y_i} e^{s_{ik}}}
                  = \log\Big(1 + \sum_{k:\, y_k \ne y_i} e^{s_{ik} - s_{ij}}\Big),
        \qquad s_{ij} = \frac{\cos(x_i, x_j)}{\tau}

    as in ``optax.losses.ntxent`` (SimCLR; the other positives of :math:`i`
    are not in the denominator). It is evaluated as
    ``softplus(logsumexp_neg(s_i) - s_ij)``, the log-sum-exp shifted by its
    maximum and everything in float64 where the array library has it (else
    the value in float32 double words: exact cosines and log-sum-exp); the
    rows are scaled by their largest entry before they are normalized
    (magnitudes of ``1e20`` or ``1e-20`` neither overflow nor underflow; there
    is no ``eps``, a zero row stays zero). A positive pair whose anchor has no
    negatives contributes 0.

    The reduction is over the positive pairs, as optax's loss: ``'none'``
    gives, per anchor :math:`i`, the sum :math:`\sum_{j} \ell_{ij}` over its
    positives (0 for an anchor without any); ``'sum'`` their total; ``'mean'``
    the total divided by the number of positive pairs (not by ``N``), which is
    ``optax.losses.ntxent``. With one positive per anchor (two views of each
    example, SimCLR) that is the plain mean of ``'none'``. A batch without any
    positive pair gives NaN for ``'mean'``.

    Args:
        embeddings: Embeddings of shape ``(N, D)``.
        labels: Integer labels of shape ``(N,)``; equal labels mark positives.
        temperature: The temperature :math:`\tau`, ``> 0``. Default: ``0.07``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The NT-Xent loss, of shape ``(N,)`` for ``'none'`` and 0-d otherwise,
        in the array library and dtype of ``embeddings``.

    Raises:
        ValueError: ``embeddings`` not 2-D, ``labels`` not of shape ``(N,)``,
            ``temperature <= 0``, an unknown reduction.
        TypeError: ``labels`` that are not integers.

    Examples:
        SimCLR: two views ``z1``, ``z2`` of the same ``n`` examples.

        >>> import numpy as np
        >>> import anyloss
        >>> z1 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]], dtype=np.float32)
        >>> z2 = np.array([[0.9, 0.3], [0.2, 1.0], [-1.0, 0.0]], dtype=np.float32)
        >>> n = len(z1)
        >>> embeddings = np.concatenate([z1, z2])
        >>> labels = np.concatenate([np.arange(n), np.arange(n)])
        >>> anyloss.nt_xent_loss(embeddings, labels, temperature=0.5)
        array(0.507417, dtype=float32)
        >>> anyloss.nt_xent_loss(embeddings, labels, temperature=0.5, reduction="none").tolist()
        [0.348762, 0.636757, 0.565502, 0.557166, 0.652822, 0.283492]
    """
    func = "nt_xent_loss"
    check_reduction(func, reduction)
    tau = number(func, "temperature", temperature, low=0.0, low_open=True)
    be = resolve(func, ("embeddings", embeddings), ("labels", labels))
    xp = be.xp
    x = float_arg(be, func, "embeddings", embeddings, be.wide)
    _matrix(func, "embeddings", x)
    y = convert(be, f"{func}(): labels", labels)
    if not be.is_integer(y):
        raise TypeError(f"{func}(): labels must have an integer dtype, got {y.dtype}")
    n = shape_of(x)[0]
    if shape_of(y) != (n,):
        raise ValueError(
            f"{func}(): labels must have shape (N,) = ({n},) for embeddings.shape="
            f"{shape_of(x)}, got labels.shape={shape_of(y)}"
        )
    u = _unit_rows(be, x)
    cos = xp.matmul(u, u.T)
    same = y[:, None] == y[None, :]
    index = be.arange(n)
    negative = ~same
    positive = same & (index[:, None] != index[None, :])
    has_negative = xp.any(negative, axis=1, keepdims=True)
    # A row without negatives takes all its entries instead, so its
    # log-sum-exp stays finite (no -inf - -inf, no NaN gradient); its pairs
    # are masked out below.
    counted = negative | ~has_negative
    masked = xp.where(counted, cos, be.scalar(float("-inf"), cos.dtype))
    peak = be.stop_gradient(amax(be, masked, axis=1, keepdims=True))
    # logsumexp over the negatives of s = cos / tau, less peak / tau; the pair
    # loss softplus(logsumexp - s_ij) then takes (peak - cos_ij) / tau, a
    # difference of cosines before the division (see _diagonal_cross_entropy)
    rest = xp.expand_dims(_shifted_logsumexp(be, (masked - peak) / tau, 1), axis=1)
    zero = be.scalar(0.0, cos.dtype)
    pair = _softplus(be, rest + (peak - cos) / tau)
    valid = positive & has_negative
    loss = xp.sum(xp.where(valid, pair, zero), axis=1)
    if _float32_only(be, x) and n > 0 and shape_of(x)[1] > 0:
        # the value in double-float, the gradient of the float32 formulas
        exact = _exact_nt_xent(be, x, tau, counted, valid, has_negative)
        exact = xp.where(xp.isnan(loss), loss, exact)  # (a NaN input anywhere in the row)
        loss = xp.where(xp.isfinite(loss), loss, zero)  # (no inf - inf below)
        loss = exact + (loss - be.stop_gradient(loss))
    if reduction == "mean" and n:  # (an empty batch: the mean of nothing, NaN)
        # sum over pairs / number of pairs, divided before the (accurate) sum
        count = xp.sum(be.cast(positive, cos.dtype))
        some = count > zero
        loss = xp.where(
            some,
            loss / xp.where(some, count, be.scalar(1.0, cos.dtype)),
            be.scalar(float("nan"), cos.dtype),
        )
        return reduce(be, loss, "sum")
    return reduce(be, loss, reduction)

"""Margin losses: squared hinge, multi-class hinge, cosine embedding."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import Backend, convert, resolve
from ._checks import (
    Reduction,
    broadcast_shape,
    check_reduction,
    checked_class_indices,
    float_arg,
    need_classes,
    normalize_axis,
    number,
    poison,
    public,
    shape_of,
    shapes_match,
)
from ._classification import _one_hot
from ._compensated import (
    dd_constant,
    dd_div,
    dd_dots,
    dd_finish,
    dd_mul,
    dd_sqrt,
    dd_sums,
    exact_value,
    fused,
    two_square,
    two_sum,
)
from ._embedding import _plus_margin, _pow2_scale, _scale, _unscale
from ._reduction import amax, reduce
from ._typing import Array, ArrayLike
from .kernels import fast

__all__ = [
    "squared_hinge_loss",
    "multiclass_hinge_loss",
    "cosine_embedding_loss",
]


def _has_float64(be: Backend) -> bool:
    return bool(be.wide == getattr(be.xp, "float64", None))


@public
def squared_hinge_loss(
    inputs: ArrayLike, targets: ArrayLike, reduction: Reduction = "none"
) -> Array:
    r"""Compute the squared hinge loss.

    .. math::

        \ell = \max(0, 1 - x t)^2

    Unlike Keras's ``squared_hinge``, the targets are used as given (Keras
    turns targets that are all ``0`` or ``1`` into ``-1``/``1``) and nothing
    is averaged over the last axis: ``keras.losses.squared_hinge(t, x)`` is
    ``squared_hinge_loss(x, 2 * t - 1).mean(axis=-1)`` for ``{0, 1}`` targets.

    Args:
        inputs: The predicted values.
        targets: The target values, ``-1`` or ``1`` (broadcast against ``inputs``).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The squared hinge loss, in the array library and dtype of ``inputs``.

    Raises:
        ValueError: Shapes that cannot be broadcast together, an unknown reduction.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> x = np.array([0.5, 2.0, -0.5], dtype=np.float32)
        >>> anyloss.squared_hinge_loss(x, np.array([1, 1, 1]))
        array([0.25, 0.  , 2.25], dtype=float32)
        >>> anyloss.squared_hinge_loss(x, np.array([1, -1, -1]), reduction="sum")
        array(9.5, dtype=float32)
    """
    func = "squared_hinge_loss"
    check_reduction(func, reduction)
    be = resolve(func, ("inputs", inputs), ("targets", targets))
    x = float_arg(be, func, "inputs", inputs, be.wide)
    t = float_arg(be, func, "targets", targets, be.wide)
    broadcast_shape(func, ("inputs", x), ("targets", t))
    # float64 where the library has it: x * t and 1 - x * t are then exact
    # for float32 inputs and only the square rounds.
    h = be.xp.maximum(be.scalar(1.0, be.wide) - x * t, be.scalar(0.0, be.wide))
    return reduce(be, h * h, reduction)


@public
def multiclass_hinge_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    axis: int = -1,
    margin: float = 1.0,
    reduction: Reduction = "none",
) -> Array:
    r"""Compute the multi-class (Crammer-Singer) hinge loss.

    .. math::

        \ell = \max\Big(0,\ m + \max_{c \ne y} x_c - x_y\Big)

    where :math:`y` is the target class and :math:`m` the margin. With the
    default margin it is ``optax.losses.multiclass_hinge_loss``; Keras's
    ``categorical_hinge`` (one-hot targets) takes the maximum over
    :math:`\max(0, \max_{c \ne y} x_c)` instead, so the two agree wherever some
    non-target logit is ``>= 0``. (PyTorch's ``multi_margin_loss`` is a
    different loss: the mean over classes of the per-class hinges.)

    The largest non-target logit is found by masking the target class, and
    the difference is taken in float64 where the array library has it (with
    error-free sums where it has not), so logits of magnitude ``1e30`` or
    differences near ``-m`` lose nothing.

    Args:
        logits: Unnormalized scores.
        targets: Integer class indices, with the shape of ``logits`` without
            ``axis``.
        axis: The class axis. Default: ``-1``.
        margin: The margin :math:`m`. Default: ``1.0``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The multi-class hinge loss, in the array library and dtype of ``logits``.

    Raises:
        ValueError: A ``targets`` shape other than that of ``logits`` without
            ``axis``, class indices out of range where their values can be read
            (under ``jax.jit``, ``mx.compile``, ``torch.compile`` or on Dask such an example's loss
            is NaN instead), a NaN margin, an unknown reduction; an ``axis``
            out of range (also an ``IndexError``).
        TypeError: Class indices that are not integers, a margin that is not
            a real number.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([[2.0, 1.5, -1.0], [0.0, 3.0, 1.0]], dtype=np.float32)
        >>> anyloss.multiclass_hinge_loss(logits, np.array([0, 2]))
        array([0.5, 3. ], dtype=float32)
        >>> anyloss.multiclass_hinge_loss(logits, np.array([0, 1]), margin=0.25)
        array([0., 0.], dtype=float32)
    """
    func = "multiclass_hinge_loss"
    check_reduction(func, reduction)
    margin = number(func, "margin", margin)
    be = resolve(func, ("logits", logits), ("targets", targets))
    xp = be.xp
    x = float_arg(be, func, "logits", logits, be.wide)
    if x.ndim == 0:
        raise ValueError(f"{func}(): logits must have at least 1 dimension, got a scalar")
    ax = normalize_axis(func, axis, x.ndim, "logits")
    num_classes = shape_of(x)[ax]
    need_classes(func, "logits", shape_of(x), ax)
    t = convert(be, f"{func}(): targets", targets)
    expected = shape_of(x)[:ax] + shape_of(x)[ax + 1 :]
    if not shapes_match(shape_of(t), expected):
        raise ValueError(
            f"{func}(): targets.shape={shape_of(t)} does not match logits.shape="
            f"{shape_of(x)}; expected {expected} (class indices, axis {axis} removed)"
        )
    idx, invalid = checked_class_indices(
        be,
        func,
        "targets",
        t,
        num_classes,
        f"axis {ax} of logits with shape {shape_of(x)}",
        ignore_supported=False,
    )
    zero = be.scalar(0.0, be.wide)
    hot = _one_hot(be, idx, x.ndim, ax, num_classes)
    # a where selects (never 0 * inf); exactly one entry survives the sum
    target = xp.sum(xp.where(hot, x, zero), axis=ax)
    if num_classes == 1:  # no other class: the maximum is -inf, the loss 0
        loss = zero * xp.where(xp.isfinite(target), target, zero)
        return reduce(be, poison(be, loss, invalid), reduction)
    rival = amax(be, xp.where(hot, be.scalar(-float("inf"), be.wide), x), axis=ax)
    if _has_float64(be):
        # float32 logits: rival - target is exact in float64 (unless their
        # exponents are far apart, where the rounding is negligible).
        loss = margin + (rival - target)
    else:
        # float32 only (MLX, JAX without x64): carry the rounding errors of the
        # difference, of adding the margin and of the margin itself (a Python
        # float, split into float32 hi + lo), as margin_ranking_loss does.
        m_hi, m_lo = dd_constant(be, margin, be.wide)
        d, d_err = two_sum(rival, -target)
        r, r_err = two_sum(d, m_hi)  # the constant second
        err = (r_err + m_lo) + d_err
        # an infinite logit or an overflowing difference makes the error terms
        # NaN (inf - inf); the sum is right there
        loss = r + xp.where(xp.isfinite(err), err, zero)
    return reduce(be, poison(be, xp.maximum(loss, zero), invalid), reduction)


class _Shape:
    """Stands in for an array of a given shape in the shape checks."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def _check_signs(func: str, be: Backend, y: Any) -> None:
    """Targets must be 1 or -1: checked where the values are concrete."""
    values = be.concrete(y)
    if values is None or not values.size:
        return
    bad = (values != 1) & (values != -1)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"targets[{', '.join(map(str, first))}]" if first else "targets"
        raise ValueError(
            f"{func}(): {where} = {float(values[first]):g} is not 1 or -1; targets must be "
            f"1 (similar pair) or -1 (dissimilar pair), for {{0, 1}} labels pass 2 * t - 1"
        )


@public
def cosine_embedding_loss(
    x1: ArrayLike,
    x2: ArrayLike,
    targets: ArrayLike,
    axis: int = -1,
    margin: float = 0.0,
    eps: float = 1e-8,
    reduction: Reduction = "none",
) -> Array:
    r"""Compute the cosine embedding loss.

    .. math::

        \ell = \begin{cases}
            1 - \cos(x_1, x_2) & t = 1 \\
            \max(0, \cos(x_1, x_2) - m) & t = -1
        \end{cases},
        \qquad \cos(x_1, x_2) = \frac{x_1 \cdot x_2}{\max(\|x_1\| \|x_2\|, \epsilon)}

    along ``axis``, as ``torch.nn.functional.cosine_embedding_loss`` (which
    has no ``eps`` argument: it adds ``1e-12`` to each squared norm instead,
    which differs only for vectors of norm below about ``1e-4``). ``1 - cos``
    of nearly parallel vectors is computed as
    :math:`\tfrac12 \| x_1/\|x_1\| - x_2/\|x_2\| \|^2`, with no cancellation,
    and the vectors are scaled by their largest entry first, so magnitudes of
    ``1e20`` or ``1e-20`` neither overflow nor underflow.

    Args:
        x1: The first set of vectors.
        x2: The second set of vectors (broadcast against ``x1``; a size of 1
            along ``axis`` is broadcast before the norms are taken, where
            PyTorch takes the norm of the single entry and can return
            ``|cos| > 1``).
        targets: ``1`` for pairs that should be similar, ``-1`` for pairs that
            should not, with the shape of the inputs without ``axis`` (or
            broadcastable to it).
        axis: The embedding axis. Default: ``-1``.
        margin: The margin :math:`m` in ``[-1, 1]``. Default: ``0.0``.
        eps: Lower bound on the product of the norms, ``>= 0``. Default: ``1e-8``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The cosine embedding loss, in the array library and dtype of ``x1``.

    Raises:
        ValueError: Shapes that cannot be broadcast together, target values
            other than ``1`` and ``-1`` (checked where the values are
            concrete), ``margin`` outside ``[-1, 1]``, a negative ``eps``, an
            unknown reduction; an ``axis`` out of range (also an ``IndexError``).

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]], dtype=np.float32)
        >>> b = np.array([[1.0, 1.0], [1.0, 1.0], [4.0, 3.0]], dtype=np.float32)
        >>> anyloss.cosine_embedding_loss(a, b, np.array([1, -1, -1]))
        array([0.29289323, 1.        , 0.96      ], dtype=float32)
        >>> anyloss.cosine_embedding_loss(a, b, np.array([1, -1, -1]), margin=0.5)
        array([0.29289323, 0.5       , 0.46      ], dtype=float32)
    """
    func = "cosine_embedding_loss"
    check_reduction(func, reduction)
    margin = number(func, "margin", margin, low=-1.0, high=1.0)
    eps = number(func, "eps", eps, low=0.0)
    be = resolve(func, ("x1", x1), ("x2", x2), ("targets", targets))
    xp = be.xp
    wide = be.wide
    a = float_arg(be, func, "x1", x1)
    b = float_arg(be, func, "x2", x2)
    normalize_axis(func, axis, a.ndim, "x1")
    normalize_axis(func, axis, b.ndim, "x2")
    shape = broadcast_shape(func, ("x1", a), ("x2", b))
    ax = normalize_axis(func, axis, len(shape), "the broadcast inputs")
    x1_shape = shape_of(a)
    if a.ndim != b.ndim or shape_of(a)[ax] != shape_of(b)[ax]:
        a, b = xp.broadcast_arrays(a, b)  # the norms run over the broadcast axis
    rest = shape[:ax] + shape[ax + 1 :]
    y = float_arg(be, func, "targets", targets, wide)
    try:
        fits = y.ndim <= len(rest) and shapes_match(
            broadcast_shape(func, ("inputs", _Shape(rest)), ("targets", y)), rest
        )
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{func}(): targets.shape={shape_of(y)} does not match x1.shape="
            f"{x1_shape} without axis {axis} ({rest})"
        )
    _check_signs(func, be, y)
    out = fast(be, func, reduction, x1=a, x2=b, targets=y, axis=ax, margin=margin, eps=eps)
    if out is not None:
        return out
    a, b = be.cast(a, wide), be.cast(b, wide)

    zero, one = be.scalar(0.0, wide), be.scalar(1.0, wide)
    s1, s2 = _scale(be, a, ax), _scale(be, b, ax)
    u1, u2 = _unscale(be, a, s1), _unscale(be, b, s2)
    sq1 = xp.sum(u1 * u1, axis=ax, keepdims=True)
    sq2 = xp.sum(u2 * u2, axis=ax, keepdims=True)
    # sqrt(0) has an infinite derivative: zero vectors take norm 1 here (and
    # the eps branch below), so no NaN reaches the gradient
    nonzero = (sq1 > zero) & (sq2 > zero)
    n1 = xp.sqrt(xp.where(sq1 > zero, sq1, one))
    n2 = xp.sqrt(xp.where(sq2 > zero, sq2, one))
    dot = xp.sum(u1 * u2, axis=ax)
    norms = xp.squeeze(n1 * n2, axis=ax)
    s1, s2 = xp.squeeze(s1, axis=ax), xp.squeeze(s2, axis=ax)
    nonzero = xp.squeeze(nonzero, axis=ax)
    # ||x1|| ||x2|| >= eps, decided without forming the product (it over- or
    # underflows in the right direction if it has to)
    large = nonzero & ((norms * s1) * s2 >= eps)
    cos_norms = dot / xp.where(large, norms, one)
    if eps > 0:
        # s1 s2 / eps where the product is below eps: as big * (small / eps),
        # which neither overflows (small < sqrt(eps)) nor goes through a
        # subnormal s1 s2 (flushed to 0 by XLA's CPU code)
        big, small = xp.maximum(s1, s2), xp.minimum(s1, s2)
        cos_eps = dot * xp.where(large, zero, big * (small / eps))
    else:
        cos_eps = dot * zero  # (NaN where a NaN, or inf times 0, made the dot NaN)
    cos = xp.where(large, cos_norms, cos_eps)
    # 1 - cos = ||x1/|x1| - x2/|x2|||^2 / 2: no cancellation for parallel vectors
    diff = u1 / n1 - u2 / n2
    half_sq = 0.5 * xp.sum(diff * diff, axis=ax)
    similar = xp.where(large, half_sq, one - cos_eps)
    dissimilar = xp.maximum(cos - margin, zero)
    loss = xp.where(y == one, similar, xp.where(y == -one, dissimilar, zero))
    if be.float32_only and all(shape_of(a)):
        # the value in double words, the derivative of the float32 formulas
        similar, dissimilar = fused(be, _cosine_embedding_terms, ax, margin, eps)(a, b)
        exact = xp.where(y == one, similar, xp.where(y == -one, dissimilar, zero))
        loss = exact_value(be, exact, loss)
    return reduce(be, loss, reduction)


def _cosine_embedding_terms(
    be: Backend, a: Any, b: Any, ax: int, margin: float, eps: float
) -> tuple[Any, Any]:
    """The values of ``1 - cos`` and ``max(cos - margin, 0)`` in float32
    alone, to a few ulp (for the value only: no derivative).

    - The vectors are scaled by powers of two (exact), their dot product
      and squared norms are double-word sums (:func:`dd_dots`) and the
      norms double-word square roots.
    - ``1 - cos = ||x1/|x1| - x2/|x2|||^2 / 2`` from unit vectors whose
      entries are double-word quotients: for parallel vectors the
      difference is ``1e-6`` of the entries and keeps 24 bits, where
      float32 unit vectors leave none (1 - cos of ``1e-12`` was 2e6 ulp off).
    - ``cos`` itself, and ``cos_eps = dot s1 s2 / eps`` where the norms
      are below ``eps`` (``eps`` a double word too), are double-word
      quotients; the margin is added to the double word
      (:func:`_plus_margin`), so ``cos - margin`` is rounded once.
    """
    xp = be.xp
    sg = be.stop_gradient
    a, b = sg(a), sg(b)
    dt = a.dtype
    zero, one = be.scalar(0.0, dt), be.scalar(1.0, dt)
    s1, s2 = _pow2_scale(be, a, ax), _pow2_scale(be, b, ax)
    u1, u2 = _unscale(be, a, s1), _unscale(be, b, s2)
    dot, sq1, sq2 = dd_dots(be, [(u1, u2), (u1, u1), (u2, u2)], ax)
    some1, some2 = sq1[0] > zero, sq2[0] > zero  # zero vectors: norm 1 (unused)
    n1 = dd_sqrt(be, xp.where(some1, sq1[0], one), xp.where(some1, sq1[1], zero))
    n2 = dd_sqrt(be, xp.where(some2, sq2[0], one), xp.where(some2, sq2[1], zero))
    # unit vectors and half the square of their difference
    v1 = dd_div(be, (u1, zero), tuple(xp.expand_dims(v, axis=ax) for v in n1))
    v2 = dd_div(be, (u2, zero), tuple(xp.expand_dims(v, axis=ax) for v in n2))
    d, d_err = two_sum(v1[0], -v2[0])  # exact, but no more precise than the entries:
    d, d_lo = two_sum(d, d_err + (v1[1] - v2[1]))  # the low parts hold as much
    sq, sq_err = two_square(d, be)
    ((half, half_lo),) = dd_sums(be, [(sq, sq_err + 2.0 * (d * d_lo))], ax)
    half, half_lo = 0.5 * half, 0.5 * half_lo
    # cos, by the norms or by eps
    norms = dd_mul(be, n1, n2)
    s1, s2 = xp.squeeze(s1, axis=ax), xp.squeeze(s2, axis=ax)
    large = some1 & some2 & ((norms[0] * s1) * s2 >= be.scalar(eps, dt))
    by_norms = dd_div(be, dot, norms)
    if eps > 0:
        big, small = xp.maximum(s1, s2), xp.minimum(s1, s2)
        f, f_lo = dd_div(be, (small, zero), dd_constant(be, eps, dt))
        by_eps = dd_mul(be, dot, (f * big, f_lo * big))  # dot s1 s2 / eps
    else:
        by_eps = (dot[0] * zero, zero)  # (NaN where the dot is)
    cos = tuple(xp.where(large, n, e) for n, e in zip(by_norms, by_eps, strict=True))
    r, r_err = two_sum(-by_eps[0], one)  # 1 - cos_eps (the constant second)
    similar = xp.where(large, dd_finish(be, half, half_lo), dd_finish(be, r, r_err - by_eps[1]))
    return similar, _plus_margin(be, cos, -margin)

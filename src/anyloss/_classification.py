"""Classification losses: cross entropy, binary cross entropy, NLL, hinge."""

from __future__ import annotations

import functools
import sys
from typing import Any

from . import kernels
from ._backend import Backend, convert, library_of, resolve
from ._checks import (
    Reduction,
    broadcast_shape,
    check_reduction,
    checked_class_indices,
    flag,
    float_arg,
    need_classes,
    no_nan,
    normalize_axis,
    number,
    optional_int,
    poison,
    public,
    same_shape,
    shape_of,
    shapes_match,
    unit_interval,
)
from ._compensated import dd_finish, dd_sum, mlx_backend, two_sum
from ._compensated_exp_log import _faithful_exp, exp
from ._reduction import amax, reduce
from ._typing import Array, ArrayLike
from .kernels import fast

__all__ = ["binary_cross_entropy", "cross_entropy", "hinge_loss", "nll_loss"]


class _Shape:
    """Stands in for an array of a given shape in the shape checks."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def _expand(be: Backend, index: Any, axis: int) -> Any:
    """``index`` with a new axis of size 1 at ``axis``."""
    if be.name == "dask":  # indexing keeps chunk sizes Dask does not know yet
        return index[(slice(None),) * axis + (None,)]
    return be.xp.expand_dims(index, axis=axis)


def _one_hot(be: Backend, index: Any, ndim: int, axis: int, num_classes: int) -> Any:
    """Boolean mask, True at ``index`` along ``axis`` (``index`` lacks ``axis``)."""
    shape = [1] * ndim
    shape[axis] = num_classes
    idx = _expand(be, index, axis)
    classes = be.xp.reshape(be.arange(num_classes, dtype=idx.dtype), tuple(shape))
    return idx == classes


def _take_along(be: Backend, x: Any, index: Any, axis: int) -> Any:
    """``x[..., index, ...]`` along ``axis``, broadcasting the other dimensions.

    Libraries without ``take_along_axis`` (Dask) select with a one-hot mask.
    """
    xp = be.xp
    if be.name == "dask" or not hasattr(xp, "take_along_axis"):
        hot = _one_hot(be, index, x.ndim, axis, x.shape[axis])
        return xp.sum(xp.where(hot, x, be.scalar(0.0, x.dtype)), axis=axis)
    idx = _expand(be, index, axis)
    xshape, ishape = list(shape_of(x)), list(shape_of(idx))
    xshape[axis] = ishape[axis] = 1
    if xshape != ishape:
        import numpy as np

        common = list(np.broadcast_shapes(tuple(xshape), tuple(ishape)))
        common[axis] = x.shape[axis]
        if tuple(common) != shape_of(x):
            x = xp.broadcast_to(x, tuple(common))
        common[axis] = 1
        if tuple(common) != shape_of(idx):
            idx = xp.broadcast_to(idx, tuple(common))
    if be.name == "torch":  # take_along_dim specializes torch.compile's sizes
        return sys.modules["torch"].gather(x, axis, idx).squeeze(axis)
    return xp.squeeze(xp.take_along_axis(x, idx, axis=axis), axis=axis)


def _softplus(be: Backend, v: Any) -> Any:
    """``log(1 + exp(v))``, exact to an ulp for every ``v`` (no cancellation).

    torch: ``F.softplus`` (one fused kernel; ``logaddexp`` costs 3x as much
    there). Elsewhere ``logaddexp(v, 0)``, the variable first: MLX
    differentiates ``logaddexp``'s second argument inaccurately (0 instead of
    9.4e-14 at -30).
    """
    if be.name == "torch":
        # above the threshold it returns v: exp(-40) is below half an ulp of
        # 40 in float64 (the default 20 is enough only for float32)
        return sys.modules["torch"].nn.functional.softplus(v, threshold=40.0)
    if be.name == "mlx" and "32" in str(v.dtype):
        # MLX's logaddexp carries its exp's error (up to 62 ulp): the same
        # formula on a faithful exp, compiled, and its derivative sigmoid(v)
        return _mlx_softplus()(v)
    return be.xp.logaddexp(v, be.scalar(0.0, v.dtype))


def _softplus_terms(be: Backend, v: Any, derivative: bool) -> Any:
    """``max(v, 0) + log1p(e)`` or (``derivative``) ``sigmoid(v)``, from ``e =
    exp(-|v|)`` (no overflow)."""
    xp = be.xp
    zero, one = be.scalar(0.0, v.dtype), be.scalar(1.0, v.dtype)
    positive = v > zero
    e = _faithful_exp(be, xp.where(positive, -v, v))
    if derivative:
        return xp.where(positive, one / (one + e), e / (one + e))
    return xp.where(positive, v, zero) + xp.log1p(e)


@functools.cache
def _mlx_softplus() -> Any:
    """MLX's :func:`_softplus` (float32): one compiled kernel forward, one
    backward."""
    mx = sys.modules["mlx.core"]
    be = mlx_backend()
    value = mx.compile(lambda v: _softplus_terms(be, v, False))
    slope = mx.compile(lambda v: _softplus_terms(be, v, True))
    f = mx.custom_function(value)
    f.vjp(lambda primal, cotangent, output: cotangent * slope(primal))
    return f


def _weighted(
    be: Backend,
    func: str,
    loss: Any,
    weights: Any,
    num_classes: int | None = None,
    per_class: str = "class_weights",
) -> Any:
    """``loss * weights`` (per-example weights of the loss's shape).

    ``num_classes`` and ``per_class`` name the per-class option of a loss
    with a class axis, suggested when ``weights`` has one entry per class.
    """
    if weights is None:
        return loss
    w = float_arg(be, func, "weights", weights, loss.dtype)
    if not shapes_match(shape_of(w), shape_of(loss)):
        hint = ""
        if num_classes is not None and shape_of(w) == (num_classes,):
            hint = (
                f"; weights= takes one weight per example, and these "
                f"{num_classes} look like one per class: pass them as {per_class}="
            )
        raise ValueError(
            f"{func}(): weights.shape={shape_of(w)} must equal the shape of the "
            f"per-example loss {shape_of(loss)}{hint}"
        )
    return loss * w


def _shifted_logsumexp(be: Backend, z: Any, axis: int, lo: Any = None) -> Any:
    """``logsumexp(z + lo)`` along ``axis`` for ``z = x - max(x)``.

    With a single maximum, ``sum(exp(z)) = 1 + rest`` (``rest``: the terms
    below the maximum), and ``log1p(rest)`` keeps every bit of a small
    ``rest`` that ``log(1 + rest)`` would round away once the top logit leads
    by more than ~17 in float32. With several maxima the sum is at least 2
    and its plain logarithm is exact to an ulp; which case a row is in is read
    off the two sums (their difference is the number of maxima), so no pass
    counts the ties.

    ``lo`` (optional, a constant for autodiff, 0 at the maxima) is the
    rounding error of ``z`` (see :func:`_shift`): each term is taken as
    ``exp(z + lo) = exp(z) (1 + lo)`` to working precision (within an ulp),
    so the rounding
    of ``x - max`` (half an ulp of 40 is 2e-6 in float32) does not come back
    as a relative error of the small terms.
    """
    xp = be.xp
    e = exp(be, z)
    zero = be.scalar(0.0, z.dtype)
    total = xp.sum(e, axis=axis)
    below = z < zero
    # e (1 + lo), not e + e lo: the product e lo is subnormal for e below
    # 1e-32, and XLA on the CPU flushes subnormals to 0
    one = be.scalar(1.0, z.dtype)
    terms = xp.where(below, e if lo is None else e * (one + lo), zero)
    if be.name == "mlx":
        # MLX's float32 sum of 4096 terms is 5.7 ulp off the loss; summed with
        # every rounding error kept (compiled), it is exact to an ulp
        rest = dd_finish(be, *dd_sum(be, terms, xp.zeros_like(terms), axis))
    else:
        rest = xp.sum(terms, axis=axis)
    if lo is None:
        single = total - rest < be.scalar(1.5, z.dtype)
        plain = xp.log(total)
        exact = xp.where(single, xp.log1p(rest), plain)
    else:
        ties = xp.round(total - rest)  # the number of maxima
        single = ties < be.scalar(1.5, z.dtype)
        plain = xp.log(total)
        exact = xp.where(single, xp.log1p(rest), xp.log(ties + rest))
    if not be.differentiable:
        return exact
    # The value is `exact`; the gradient is that of log(sum(exp(z))), i.e.
    # softmax (ties included), which autodiff gets cheaply and exactly.
    return plain + be.stop_gradient(exact - plain)


# Below -2**101 the exponential is 0 in float32 and float64 alike.
_FAR = 2.0**100

# Libraries whose float arithmetic warns on overflow or inf - inf (NumPy's
# RuntimeWarnings): there the shift is formed from halves, which cannot overflow.
_WARNING_LIBRARIES = ("numpy", "dask", "array_api_strict")


def _halves(be: Backend, x: Any, m: Any) -> Any:
    """``(x - m) / 2``, finite for any finite ``x`` and ``m`` (``-FLT_MAX``
    against ``FLT_MAX`` too) and, away from subnormals, exactly half of the
    rounded ``x - m``."""
    half = be.scalar(0.5, x.dtype)
    return x * half - m * half


def _shift(be: Backend, x: Any, axis: int, exact: bool) -> tuple[Any, Any, Any, Any]:
    """``m, z, lo, h`` with ``m = max(x)`` along ``axis`` (kept, a constant for
    autodiff) and ``x - m = z + lo`` exactly.

    ``z`` is the rounded shift, clamped at ``-2**101`` where the library would
    warn about an overflow (the exponential is 0 there anyway); ``lo`` its
    rounding error (TwoSum; a constant for autodiff, 0 where a logit or the
    maximum is infinite), or None where the caller knows the shift is exact
    (``exact``: float32 logits widened to float64). ``h`` is ``(x - m) / 2``
    (see :func:`_halves`) where it was formed on the way, else None.
    """
    xp = be.xp
    m = be.stop_gradient(amax(be, x, axis=axis, keepdims=True))
    zero = be.scalar(0.0, x.dtype)
    if be.name not in _WARNING_LIBRARIES:
        z = x - m
        if exact:
            return m, z, None, None
        bv = z - x
        lo = (x - (z - bv)) + (-m - bv)  # TwoSum(x, -m); NaN for infinities
        return m, z, be.stop_gradient(xp.where(xp.isfinite(lo), lo, zero)), None
    if exact:
        return m, x - m, None, None
    finite = xp.isfinite(x) & xp.isfinite(m)
    h, lo = two_sum(
        xp.where(finite, x, zero) * be.scalar(0.5, x.dtype),
        -(xp.where(finite, m, zero) * be.scalar(0.5, x.dtype)),
    )
    h = xp.where(finite, h, _halves(be, x, m))
    lo = xp.where(finite & xp.isfinite(lo), lo + lo, zero)
    z = xp.maximum(h, be.scalar(-_FAR, x.dtype))
    return m, z + z, lo, h


@public
def cross_entropy(
    logits: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike = None,
    axis: int = -1,
    label_smoothing: float = 0.0,
    reduction: Reduction = "none",
    *,
    ignore_index: int | None = None,
    class_weights: ArrayLike = None,
) -> Array:
    r"""Compute the cross entropy between logits and targets.

    .. math::

        \ell = \operatorname{logsumexp}(x) - (1 - s)\, x_y - \frac{s}{C} \sum_c x_c

    where :math:`y` is the target class (or :math:`x_y = \sum_c p_c x_c` for
    probability targets :math:`p`), :math:`s` the label smoothing and :math:`C`
    the number of classes. The loss depends only on differences between
    logits and is evaluated as ``(max - target) + log1p(sum of the other
    exp(x - max))``, so confident predictions keep their tiny loss instead of
    rounding to 0. A class whose target probability is exactly 0 contributes
    nothing, even where its logit is ``-inf``.

    Args:
        logits: Unnormalized scores.
        targets: Integer class indices (the shape of ``logits`` without
            ``axis``) or class probabilities / one-hot vectors (the shape of
            ``logits``). Which one is decided by ``targets.ndim == logits.ndim``.
        weights: Optional weights with the shape of the per-example loss.
            Default: ``None``.
        axis: The class axis. Default: ``-1``.
        label_smoothing: Label smoothing factor in ``[0, 1)``. Default: ``0``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.
        ignore_index: Keyword only. A target value (with index targets) whose
            examples contribute 0 and are left out of the ``'mean'``
            denominator, e.g. the padding of a sequence batch; it need not
            be a valid class (``-100`` is PyTorch's convention). Default:
            ``None`` (every example counts).
        class_weights: Keyword only. One weight per class (shape ``(C,)``):
            an example's loss is scaled by the weight of its target class
            (probability targets: each class's term by its weight), and with
            index targets ``'mean'`` divides by the sum of the applied
            weights, as PyTorch does. With label smoothing the uniform part
            is weighted per class too. Default: ``None``.

    With ``ignore_index`` and ``class_weights`` left at ``None`` the results
    are exactly MLX's; with them they are PyTorch's ``F.cross_entropy(...,
    weight=class_weights, ignore_index=ignore_index)`` (per-example
    ``weights`` then multiply each example's loss, not the denominator).

    Class indices are checked where their values can be read (eagerly): one
    out of range is a ``ValueError``. Under ``jax.jit``, ``mx.compile``, ``torch.compile`` or on
    Dask reading them would break the trace or compute the graph, so an
    index out of range (other than ``ignore_index``) gives that example a NaN
    loss instead of a plausible number.

    Returns:
        The cross entropy loss, in the array library and dtype of ``logits``.

    Raises:
        ValueError: Shapes that do not match, ``label_smoothing`` outside
            ``[0, 1)``, an unknown reduction, class indices out of range
            (eagerly, see above).
        TypeError: Class indices that are not integers.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([[2.0, -1.0], [-1.0, 2.0]], dtype=np.float32)
        >>> anyloss.cross_entropy(logits, np.array([0, 1]))
        array([0.0485873, 0.0485873], dtype=float32)
        >>> probs = np.array([[0.9, 0.1], [0.1, 0.9]], dtype=np.float32)
        >>> anyloss.cross_entropy(logits, probs)
        array([0.348587, 0.348587], dtype=float32)

        Padding left out of the mean, and class weights, as in PyTorch:

        >>> tokens = np.array([0, 1, -100])
        >>> logits3 = np.array([[2.0, -1.0], [-1.0, 2.0], [5.0, 5.0]], dtype=np.float32)
        >>> anyloss.cross_entropy(logits3, tokens, ignore_index=-100, reduction="mean")
        array(0.0485873, dtype=float32)
        >>> anyloss.cross_entropy(
        ...     logits, np.array([0, 1]), class_weights=np.array([1.0, 3.0]), reduction="mean"
        ... )
        array(0.0485873, dtype=float32)
    """
    func = "cross_entropy"
    check_reduction(func, reduction)
    ignore_index = optional_int(func, "ignore_index", ignore_index)
    smoothing = number(func, "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)
    be = resolve(
        func,
        ("logits", logits),
        ("targets", targets),
        ("weights", weights),
        ("class_weights", class_weights),
        dtype_free=("class_weights",),
    )
    xp = be.xp
    x = float_arg(be, func, "logits", logits)
    if x.ndim == 0:
        raise ValueError(f"{func}(): logits must have at least 1 dimension, got a scalar")
    ax = normalize_axis(func, axis, x.ndim, "logits")
    num_classes = shape_of(x)[ax]
    need_classes(func, "logits", shape_of(x), ax)

    t = convert(be, f"{func}(): targets", targets)
    as_probs = t.ndim == x.ndim
    expected = shape_of(x) if as_probs else shape_of(x)[:ax] + shape_of(x)[ax + 1 :]
    if not shapes_match(shape_of(t), expected):
        raise ValueError(
            f"{func}(): targets.shape={shape_of(t)} does not match logits.shape="
            f"{shape_of(x)}; expected {expected} for class "
            f"{'probabilities' if as_probs else 'indices'} along axis {axis}"
        )

    invalid = None
    if as_probs:
        p = float_arg(be, func, "targets", t)
        if ignore_index is not None:
            raise ValueError(
                f"{func}(): ignore_index applies to class-index targets, but "
                f"targets.shape={shape_of(t)} equals logits.shape={shape_of(x)} "
                f"(class probabilities). To drop examples, give them weights= of 0 "
                f"(a target row of zeros still adds its logsumexp); 'mean' divides by "
                f"all the examples, so for the mean of the kept ones use "
                f"reduction='sum' and divide by their number; or pass class indices"
            )
    else:
        idx, invalid = checked_class_indices(
            be,
            func,
            "targets",
            t,
            num_classes,
            f"axis {ax} of logits with shape {shape_of(x)}",
            ignore=ignore_index,
        )
    cw = None
    if class_weights is not None:
        cw = _class_weights(be, func, class_weights, num_classes, ax, x.ndim)
    ignored = None
    if ignore_index is not None:
        ignored = idx == ignore_index
        idx = xp.where(ignored, xp.zeros_like(idx), idx)

    loss = None
    if cw is None or (smoothing == 0 and not as_probs):
        # a fast path's per-row losses, then the (cheap, per-row) options
        loss = kernels.values(
            be,
            func,
            "none",
            logits=x,
            targets=p if as_probs else idx,
            axis=ax,
            label_smoothing=smoothing,
        )
    if loss is None:
        loss = _cross_entropy_rows(be, x, p if as_probs else idx, ax, smoothing, cw)
    elif cw is not None:
        loss = be.cast(loss, be.wide) * _take_along(be, be.cast(cw, be.wide), idx, ax)
    denominator = None
    if not as_probs and (ignored is not None or cw is not None):
        # PyTorch's mean: over the examples kept, each counted with its class weight
        denominator = (
            xp.ones_like(loss) if cw is None else _take_along(be, be.cast(cw, loss.dtype), idx, ax)
        )
    if ignored is not None:
        zero = be.scalar(0.0, loss.dtype)
        loss = xp.where(ignored, zero, loss)
        denominator = xp.where(ignored, zero, denominator)
    loss = poison(be, loss, invalid)
    return reduce(be, _weighted(be, func, loss, weights, num_classes), reduction, denominator)


def _class_weights(
    be: Backend, func: str, class_weights: Any, num_classes: int, axis: int, ndim: int
) -> Any:
    """The class weights, shaped to broadcast along the class axis."""
    cw = float_arg(be, func, "class_weights", class_weights)
    no_nan(be, func, "class_weights", cw)
    if not shapes_match(shape_of(cw), (num_classes,)):
        raise ValueError(
            f"{func}(): class_weights.shape={shape_of(cw)} must be ({num_classes},): "
            f"one weight per class along axis {axis}"
        )
    shape = [1] * ndim
    shape[axis] = num_classes
    return be.xp.reshape(cw, tuple(shape))


def _cross_entropy_rows(
    be: Backend, x: Any, targets: Any, ax: int, smoothing: float, cw: Any
) -> Any:
    """Per-example cross entropy (class weights applied), generic code."""
    xp = be.xp
    # x - max is carried error-free as z + lo (see _shift): its rounding (half
    # an ulp of |x - max|) would come back from exp as a relative error of the
    # tiny terms a confident prediction's loss is made of. The CPU libraries
    # without autodiff widen float32 logits to float64 instead (the shift is
    # then exact, and the sums and logarithms round in float64).
    widened = False
    if be.name in _WARNING_LIBRARIES:
        widened = x.dtype != be.wide
        x = be.cast(x, be.wide)
    m, z, lo, h = _shift(be, x, ax, widened)
    lse = _shifted_logsumexp(be, z, ax, lo)
    zero, two = be.scalar(0.0, z.dtype), be.scalar(2.0, z.dtype)
    if lo is None:
        lo = zero
    if cw is not None:
        cw = be.cast(cw, z.dtype)
    keep = 1.0 - smoothing
    target_h: Any = None
    target_lo: Any = None
    # The terms scaled by the targets and the smoothing take max - x as
    # -(2 h + lo), h = (x - max) / 2 (no overflow where max - x exceeds the
    # largest float but the loss does not).
    if targets.ndim == z.ndim:  # probabilities
        h = _halves(be, x, m) if h is None else h
        p = be.cast(targets, z.dtype)
        absent = p == zero
        if cw is not None:
            p = p * cw
        # 0 * log 0 = 0: mask h too, so no 0 * inf is ever formed (it would be
        # NaN in the gradient, and a warning on Dask)
        hz = xp.where(absent, zero, h)
        neg_score = -xp.sum(xp.where(absent, zero, (p + p) * hz + p * lo), axis=ax)
        # sum(w p (lse - z)): with class weights the target mass is not 1
        base = lse + neg_score if cw is None else lse * xp.sum(p, axis=ax) + neg_score
    else:
        target_x = _take_along(be, x, targets, ax)
        target_h = _halves(be, target_x, xp.squeeze(m, axis=ax))
        target_lo = _take_along(be, lo, targets, ax) if lo.ndim else lo
        neg_score = -(target_h * two + target_lo)
        base = lse + neg_score
        if cw is not None:
            base = _take_along(be, cw, targets, ax) * base
    if smoothing == 0:
        return base
    h = _halves(be, x, m) if h is None else h
    num = z.shape[ax]
    # s mean(max - x) = 2 s sum(-h / C): no term and no partial sum overflows,
    # and neither does the product unless the loss does (the mean alone may)
    smoothed = xp.sum(-h / num, axis=ax) * (2.0 * smoothing)
    if cw is None:
        if target_h is not None:  # (1 - s)(max - x_t) without forming max - x_t
            neg_score = (-target_h) * (2.0 * keep) - target_lo * keep
            return lse + neg_score + smoothed
        return lse + keep * neg_score + smoothed
    # (s / C) sum_c w_c (lse - z_c): every term >= 0, nothing cancels
    lse_c = xp.expand_dims(lse, axis=ax) / num
    uniform = xp.sum(cw * (lse_c - (h / num) * two - lo / num), axis=ax)
    return keep * base + smoothing * uniform


@public
def binary_cross_entropy(
    inputs: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike = None,
    with_logits: bool = True,
    reduction: Reduction = "mean",
    *,
    pos_weight: ArrayLike = None,
) -> Array:
    r"""Compute the binary cross entropy.

    With logits :math:`x` and targets :math:`t`:

    .. math::

        \ell = \log(1 + e^{x}) - x t
             = t \operatorname{softplus}(-x) + (1 - t) \operatorname{softplus}(x)

    The right-hand form has no cancellation: a confident correct prediction
    (``x = 30, t = 1``) gives ``9.36e-14``, not 0. With probabilities
    :math:`p` (``with_logits=False``):

    .. math::

        \ell = -\left(t \max(\log p, -100) + (1 - t) \max(\log(1 - p), -100)\right)

    with ``log(1 - p)`` evaluated as ``log1p(-p)``.

    Where the values can be read (eagerly), probabilities outside ``[0, 1]``
    (``with_logits=False``, e.g. logits passed by mistake) and targets outside
    ``[0, 1]`` (e.g. labels in ``{-1, 1}``) are a ``ValueError`` naming the
    first one; MLX returns NaN there, PyTorch raises. A NaN input still gives
    a NaN loss. Under ``jax.jit``, ``mx.compile``, ``torch.compile`` or on Dask the values are not
    read, and such inputs give NaN (or a meaningless number for targets).

    Args:
        inputs: Logits, or probabilities when ``with_logits=False``.
        targets: Targets in ``{0, 1}`` (soft targets in ``[0, 1]`` use the same
            formula), with the shape of ``inputs``.
        weights: Optional weights with the shape of ``inputs``. Default: ``None``.
        with_logits: Whether ``inputs`` are logits (a bool: ``"false"`` is a
            ``TypeError``). Default: ``True``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.
        pos_weight: Keyword only. The weight of the positive term,
            :math:`\ell = -(w_+ t \log p + (1 - t) \log(1 - p))`, broadcast
            against ``inputs`` (a scalar, or one weight per column of the last
            axis, as PyTorch's ``BCEWithLogitsLoss(pos_weight=...)``): more than
            1 favours recall, less than 1 precision. Default: ``None`` (1).

    Returns:
        The binary cross entropy, in the array library and dtype of ``inputs``.

    Raises:
        ValueError: Shapes that do not match, probabilities or targets outside
            ``[0, 1]`` (eagerly), a NaN ``pos_weight``, an unknown reduction.
        TypeError: ``with_logits`` that is not a bool.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([0.105361, 0.223144, 1.20397, 0.916291], dtype=np.float32)
        >>> targets = np.array([0, 0, 1, 1])
        >>> anyloss.binary_cross_entropy(logits, targets)
        array(0.539245, dtype=float32)
        >>> anyloss.binary_cross_entropy(logits, targets, reduction="none").tolist()
        [0.747215, 0.810930, 0.262365, 0.336472]
        >>> probs = np.array([0.1, 0.1, 0.4, 0.4], dtype=np.float32)
        >>> anyloss.binary_cross_entropy(probs, targets, with_logits=False)
        array(0.510826, dtype=float32)
    """
    func = "binary_cross_entropy"
    check_reduction(func, reduction)
    with_logits = flag(func, "with_logits", with_logits)
    if pos_weight is not None and library_of(pos_weight) is None:
        number(func, "pos_weight", pos_weight)  # a NaN is an error, not a NaN loss
    be = resolve(
        func,
        ("inputs", inputs),
        ("targets", targets),
        ("weights", weights),
        ("pos_weight", pos_weight),
        dtype_free=("pos_weight",),
    )
    xp = be.xp
    x = float_arg(be, func, "inputs", inputs)
    t = float_arg(be, func, "targets", targets)
    same_shape(func, ("inputs", x), ("targets", t))
    if not with_logits:
        unit_interval(
            be,
            func,
            "inputs",
            x,
            "with_logits=False takes probabilities; for logits (any real "
            "number) pass with_logits=True",
        )
    unit_interval(
        be,
        func,
        "targets",
        t,
        "for labels in {-1, 1} map them to {0, 1} with (t + 1) / 2, or use hinge_loss",
    )
    if pos_weight is None:
        out = fast(
            be, func, reduction, inputs=x, targets=t, weights=weights, with_logits=with_logits
        )
        if out is not None:
            return out
    else:
        pw = float_arg(be, func, "pos_weight", pos_weight)
        no_nan(be, func, "pos_weight", pw)
        try:
            broadcast_shape(func, ("inputs", x), ("pos_weight", pw))
        except ValueError:
            raise ValueError(
                f"{func}(): pos_weight.shape={shape_of(pw)} cannot be broadcast to "
                f"inputs.shape={shape_of(x)} (give a scalar or one weight per column "
                f"of the last axis)"
            ) from None
        if pw.ndim > x.ndim:
            raise ValueError(
                f"{func}(): pos_weight.shape={shape_of(pw)} has more dimensions than "
                f"inputs.shape={shape_of(x)}"
            )
        t_pos = t * pw  # the positive term's weight: the positives count pos_weight times
    one = be.scalar(1.0)
    if with_logits:
        pos = t if pos_weight is None else t_pos
        loss = pos * _softplus(be, -x) + (one - t) * _softplus(be, x)
    else:
        floor = be.scalar(-100.0)
        zero = be.scalar(0.0)
        # p = 0 and p = 1 take the -100 floor directly, so log(0) (-inf, a NaN
        # gradient, a warning on Dask) is never formed; p outside [0, 1] still
        # gives NaN, as the logarithm does.
        at_zero, at_one = x == zero, x == one
        log_p = xp.where(at_zero, floor, xp.maximum(xp.log(xp.where(at_zero, one, x)), floor))
        log_not_p = xp.where(
            at_one, floor, xp.maximum(xp.log1p(-xp.where(at_one, zero, x)), floor)
        )
        pos = t if pos_weight is None else t_pos
        loss = -(pos * log_p + (one - t) * log_not_p)
    return reduce(be, _weighted(be, func, loss, weights), reduction)


@public
def nll_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    axis: int = -1,
    reduction: Reduction = "none",
    *,
    ignore_index: int | None = None,
    class_weights: ArrayLike = None,
) -> Array:
    r"""Compute the negative log likelihood loss.

    .. math::

        \ell = -x_{y}

    where :math:`x` are log-probabilities along ``axis`` and :math:`y` the
    target class.

    Args:
        inputs: Log-probabilities.
        targets: Integer class indices, shaped like ``inputs`` without ``axis``
            (or broadcastable to it).
        axis: The class axis. Default: ``-1``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.
        ignore_index: Keyword only. A target value whose examples contribute 0
            and are left out of the ``'mean'`` denominator (need not be a
            valid class). Default: ``None``.
        class_weights: Keyword only. One weight per class (shape ``(C,)``)
            scaling each example's loss by its target class's weight;
            ``'mean'`` then divides by the sum of the applied weights.
            Default: ``None``.

    With both options at ``None`` this is MLX's ``nll_loss``; with them,
    PyTorch's ``F.nll_loss(..., weight=class_weights, ignore_index=...)``.

    Class indices are checked where their values can be read (eagerly): one
    out of range is a ``ValueError``. Under ``jax.jit``, ``mx.compile``, ``torch.compile`` or on
    Dask reading them would break the trace or compute the graph, so an
    index out of range (other than ``ignore_index``) gives that example a NaN
    loss instead of a plausible number.

    Returns:
        The NLL loss, in the array library and dtype of ``inputs``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> logp = np.log(np.array([[0.25, 0.75], [0.5, 0.5]]))
        >>> anyloss.nll_loss(logp, np.array([1, 0]))
        array([0.28768207, 0.69314718])
    """
    func = "nll_loss"
    check_reduction(func, reduction)
    ignore_index = optional_int(func, "ignore_index", ignore_index)
    be = resolve(
        func,
        ("inputs", inputs),
        ("targets", targets),
        ("class_weights", class_weights),
        dtype_free=("class_weights",),
    )
    x = float_arg(be, func, "inputs", inputs)
    if x.ndim == 0:
        raise ValueError(f"{func}(): inputs must have at least 1 dimension, got a scalar")
    ax = normalize_axis(func, axis, x.ndim, "inputs")
    num_classes = shape_of(x)[ax]
    if 0 not in shape_of(x)[:ax] + shape_of(x)[ax + 1 :]:  # no index fits 0 classes
        need_classes(func, "inputs", shape_of(x), ax)
    idx, invalid = checked_class_indices(
        be,
        func,
        "targets",
        targets,
        num_classes,
        f"axis {ax} of inputs with shape {shape_of(x)}",
        ignore=ignore_index,
    )
    rest = shape_of(x)[:ax] + shape_of(x)[ax + 1 :]
    try:
        broadcast_shape(func, ("inputs", _Shape(rest)), ("targets", idx))
    except ValueError:
        raise ValueError(
            f"{func}(): targets.shape={shape_of(idx)} cannot be broadcast to "
            f"inputs.shape={shape_of(x)} without axis {axis} ({rest})"
        ) from None
    if idx.ndim > len(rest):
        raise ValueError(
            f"{func}(): targets.shape={shape_of(idx)} has more dimensions than "
            f"inputs.shape={shape_of(x)} without axis {axis} ({rest})"
        )
    loss = None
    if ignore_index is None and class_weights is None:
        if invalid is None:
            out = fast(be, func, reduction, inputs=x, targets=idx, axis=ax)
            if out is not None:
                return out
        else:  # unchecked indices (traced): the fast path's values, the bad rows NaN below
            loss = kernels.values(be, func, "none", inputs=x, targets=idx, axis=ax)
    xp = be.xp
    while idx.ndim < len(rest):
        idx = xp.expand_dims(idx, axis=0)
    ignored = None
    if ignore_index is not None:
        ignored = idx == ignore_index
        idx = xp.where(ignored, xp.zeros_like(idx), idx)
    if loss is None:
        loss = -_take_along(be, x, idx, ax)
    if reduction != "none" and be.name == "torch":
        # log-probabilities of any sign cancel in the sum, and torch sums
        # float32 in float32 (18 ulp on 3e5 mixed-sign rows): one value per
        # row is cheap to widen
        loss = be.cast(loss, be.wide)
    denominator = None
    if class_weights is not None:
        cw = _class_weights(be, func, class_weights, num_classes, ax, x.ndim)
        denominator = _take_along(be, cw, idx, ax)
        loss = loss * denominator
    if ignored is not None:
        zero = be.scalar(0.0, loss.dtype)
        loss = xp.where(ignored, zero, loss)
        kept = xp.ones_like(loss) if denominator is None else denominator
        denominator = xp.where(ignored, zero, kept)
    return reduce(be, poison(be, loss, invalid), reduction, denominator)


@public
def hinge_loss(inputs: ArrayLike, targets: ArrayLike, reduction: Reduction = "none") -> Array:
    r"""Compute the hinge loss.

    .. math::

        \ell = \max(0, 1 - x t)

    Args:
        inputs: The predicted values.
        targets: The target values, ``-1`` or ``1`` (broadcast against ``inputs``).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        The hinge loss, in the array library and dtype of ``inputs``.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.hinge_loss(np.array([0.5, 2.0, -0.5]), np.array([1, 1, 1]))
        array([0.5, 0. , 1.5])
    """
    func = "hinge_loss"
    check_reduction(func, reduction)
    be = resolve(func, ("inputs", inputs), ("targets", targets))
    x = float_arg(be, func, "inputs", inputs)
    t = float_arg(be, func, "targets", targets)
    broadcast_shape(func, ("inputs", x), ("targets", t))
    out = fast(be, func, reduction, inputs=x, targets=t)
    if out is not None:
        return out
    x, t = be.cast(x, be.wide), be.cast(t, be.wide)
    loss = be.xp.maximum(be.scalar(1.0, be.wide) - x * t, be.scalar(0.0, be.wide))
    return reduce(be, loss, reduction)

"""The output layer and the cross entropy in one step: linear cross entropy."""

from __future__ import annotations

import importlib
import math
import numbers
from typing import Any

from . import _linear_tiles, kernels
from ._backend import Backend, convert, resolve
from ._checks import (
    Reduction,
    check_reduction,
    checked_class_indices,
    float_arg,
    no_nan,
    number,
    optional_int,
    public,
    shape_of,
    shapes_match,
)
from ._linear_chunks import Options, plan, run
from ._reduction import _total
from ._typing import Array, ArrayLike

__all__ = ["linear_cross_entropy"]

_FUNC = "linear_cross_entropy"


def _chunk_size(value: object) -> tuple[int | None, int | None]:
    """``(rows, classes)`` per tile from ``chunk_size`` (None: the default)."""
    if value is None:
        return None, None
    what = "a positive int (rows per chunk), a pair of them (rows, classes) or None"
    parts = tuple(value) if isinstance(value, tuple | list) else (value,)
    if len(parts) not in (1, 2) or not all(
        isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in parts
    ):
        raise TypeError(f"{_FUNC}(): chunk_size must be {what}, got {value!r}")
    if any(p < 1 for p in parts):
        raise ValueError(f"{_FUNC}(): chunk_size must be {what}, got {value!r}")
    rows = int(parts[0])
    return rows, int(parts[1]) if len(parts) == 2 else None


def _softcap(value: object) -> float | None:
    if value is None:
        return None
    cap = number(_FUNC, "softcap", value, low=0.0, low_open=True)
    if not math.isfinite(cap):
        raise ValueError(f"{_FUNC}(): softcap must be a finite number > 0 or None, got {cap!r}")
    return cap


def _itemsize(dtype: Any) -> int:
    return 8 if "64" in str(dtype) else 4


@public
def linear_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    targets: ArrayLike,
    bias: ArrayLike = None,
    *,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    class_weights: ArrayLike = None,
    softcap: float | None = None,
    chunk_size: int | tuple[int, int] | None = None,
) -> Array:
    r"""Compute the cross entropy of a linear layer's logits without forming them.

    The value is that of ``cross_entropy(hidden @ weight.T + bias, targets,
    ...)``: with :math:`x = h W^\top + b` (optionally capped, :math:`x \to c
    \tanh(x / c)`),

    .. math::

        \ell = \operatorname{logsumexp}(x) - (1 - s)\, x_y - \frac{s}{V} \sum_j x_j

    but the logits, of shape ``(tokens, vocabulary)`` and usually the largest
    array of a language model's training step, are never held whole. They are
    formed a tile at a time (a chunk of rows by a block of the vocabulary),
    reduced on the fly to a few numbers per row (an online logsumexp), and
    dropped. Where a gradient is wanted (PyTorch, JAX, MLX), a second pass
    forms each tile again and multiplies its gradient into the gradients of
    ``hidden``, ``weight`` and ``bias``. Extra memory: one tile on NumPy,
    PyTorch's CPU and JAX's CPU (1/48 of the logits, 4 to 16 MiB by
    default), a few tiles of 4 MiB elsewhere, whatever the number of tokens.

    The logits are computed in float32 from float16/bfloat16 inputs (float64
    from float64 ones), and the rest as in :func:`~anyloss.cross_entropy`: the sums
    over the vocabulary are exact to the working precision, and confident
    rows keep their tiny loss. Tiles are processed in a fixed order, so
    results are the same from run to run.

    Args:
        hidden: The layer's inputs, shape ``(..., H)`` (e.g. ``(tokens, H)``
            or ``(batch, sequence, H)``).
        weight: The layer's weight, shape ``(V, H)`` (one row per class: the
            layout of ``torch.nn.Linear.weight``).
        targets: Integer class indices, the shape of ``hidden`` without its
            last axis.
        bias: Optional, shape ``(V,)``. Default: ``None``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``
            (as in PyTorch; :func:`~anyloss.cross_entropy`'s default is MLX's
            ``'none'``).
        label_smoothing: Label smoothing factor in ``[0, 1)``. Default: ``0``.
        ignore_index: A target value whose rows contribute 0 and are left out
            of the ``'mean'`` denominator (e.g. ``-100``, the padding).
            Default: ``None``.
        class_weights: One weight per class (shape ``(V,)``), as in
            :func:`~anyloss.cross_entropy`: ``'mean'`` divides by the sum of the
            weights applied. Default: ``None``.
        softcap: Cap the logits smoothly at ``±softcap`` (``softcap *
            tanh(logits / softcap)``, as Gemma 2 does) before the loss.
            Default: ``None`` (no cap).
        chunk_size: Rows (tokens) per chunk, or ``(rows, classes)``: the size
            of a tile of logits. Default: ``None``, 1024 rows by as many
            classes as fit in 4 MiB (at least 256), or in 1/48 of the
            logits up to 16 MiB where the CPU tile kernels run. One block
            for the whole vocabulary saves the second product of the
            gradient (the tile is reused) at the cost of a larger tile.

    Returns:
        The loss in the array library of ``hidden``, and the result dtype of
        ``hidden`` and ``weight``: per row for ``'none'`` (the shape of
        ``targets``), else a scalar.

    Raises:
        ValueError: Shapes that do not fit together, class indices out of
            range (eagerly), probability targets, ``label_smoothing``
            outside ``[0, 1)``, a ``softcap`` or ``chunk_size`` that is not
            positive, an unknown reduction.
        TypeError: Class indices that are not integers.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> hidden = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]])
        >>> weight = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> targets = np.array([2, 0, 1])
        >>> anyloss.linear_cross_entropy(hidden, weight, targets)
        array(0.52990356)
        >>> anyloss.cross_entropy(hidden @ weight.T, targets, reduction="mean")
        array(0.52990356)
        >>> anyloss.linear_cross_entropy(hidden, weight, targets, reduction="none")
        array([0.40760596, 0.46436878, 0.71773592])
    """
    check_reduction(_FUNC, reduction)
    ignore_index = optional_int(_FUNC, "ignore_index", ignore_index)
    smoothing = number(
        _FUNC, "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True
    )
    cap = _softcap(softcap)
    chunk, block = _chunk_size(chunk_size)
    be = resolve(
        _FUNC,
        ("hidden", hidden),
        ("weight", weight),
        ("targets", targets),
        ("bias", bias),
        ("class_weights", class_weights),
        dtype_free=("class_weights",),
    )
    xp = be.xp
    h = float_arg(be, _FUNC, "hidden", hidden, be.dtype)
    w = float_arg(be, _FUNC, "weight", weight)
    if h.ndim == 0:
        raise ValueError(
            f"{_FUNC}(): hidden must have at least 1 dimension (..., H), got a scalar"
        )
    width = shape_of(h)[-1]
    if w.ndim != 2 or not shapes_match(shape_of(w)[1:], (width,)):
        hint = ""
        if w.ndim == 2 and shape_of(w)[0] == width:
            hint = (
                "; it looks transposed: weight takes one row per class, the layout "
                "of torch.nn.Linear.weight (out_features, in_features); pass weight.T"
            )
        raise ValueError(
            f"{_FUNC}(): weight.shape={shape_of(w)} must be (num_classes, {width}) "
            f"for hidden.shape={shape_of(h)}{hint}"
        )
    num_classes = shape_of(w)[0]
    if num_classes == 0:
        raise ValueError(f"{_FUNC}(): weight.shape={shape_of(w)} has no classes (no rows)")
    b = None
    if bias is not None:
        b = float_arg(be, _FUNC, "bias", bias)
        if not shapes_match(shape_of(b), (num_classes,)):
            raise ValueError(
                f"{_FUNC}(): bias.shape={shape_of(b)} must be ({num_classes},): "
                f"one bias per row of weight"
            )
    lead = shape_of(h)[:-1]
    t = convert(be, f"{_FUNC}(): targets", targets)
    if not shapes_match(shape_of(t), lead):
        probs = shapes_match(shape_of(t), (*lead, num_classes))
        hint = (
            "; these look like class probabilities, which would need the full logits: "
            "use cross_entropy(hidden @ weight.T, targets)"
            if probs
            else ""
        )
        raise ValueError(
            f"{_FUNC}(): targets.shape={shape_of(t)} must be {lead}, the shape of "
            f"hidden {shape_of(h)} without its last axis (one class index per row){hint}"
        )
    idx, invalid = checked_class_indices(
        be,
        _FUNC,
        "targets",
        t,
        num_classes,
        f"weight has {num_classes} rows, one per class",
        ignore=ignore_index,
    )
    cw = None
    if class_weights is not None:
        cw = float_arg(be, _FUNC, "class_weights", class_weights)
        no_nan(be, _FUNC, "class_weights", cw)
        if not shapes_match(shape_of(cw), (num_classes,)):
            raise ValueError(
                f"{_FUNC}(): class_weights.shape={shape_of(cw)} must be ({num_classes},): "
                f"one weight per class (row of weight)"
            )
    kept = None
    if ignore_index is not None:
        ignored = idx == ignore_index
        idx = xp.where(ignored, xp.zeros_like(idx), idx)
        kept = ~ignored

    rows = math.prod(lead)
    h2 = xp.reshape(h, (rows, width))
    t2 = xp.reshape(idx, (rows,))
    kept2 = None if kept is None else xp.reshape(kept, (rows,))
    wide = _linear_tiles.planned(be, w, cw, rows)
    chunk, block = plan(rows, num_classes, _itemsize(be.work), chunk, block, wide)
    opt = Options(num_classes, smoothing, cap, chunk, block)

    out = kernels.values(
        be,
        _FUNC,
        reduction,
        hidden=h2,
        weight=w,
        targets=t2,
        bias=b,
        kept=kept2,
        class_weights=cw,
        options=opt,
    )
    if out is None:
        out = _compute(be, h2, w, b, t2, kept2, cw, opt, reduction)
    denominator = None
    if reduction == "mean" and (kept2 is not None or cw is not None):
        applied = (
            be.full((rows,), 1.0, be.wide) if cw is None else xp.take(be.cast(cw, be.wide), t2)
        )
        if kept2 is not None:
            applied = xp.where(kept2, applied, be.scalar(0.0, be.wide))
        denominator = applied
    if reduction == "none":
        out = xp.reshape(out, lead)
        if invalid is not None:
            out = xp.where(invalid, be.scalar(float("nan"), out.dtype), out)
        return be.finish(out)
    if invalid is not None:
        out = xp.where(xp.any(invalid), be.scalar(float("nan"), out.dtype), out)
    if reduction == "mean":
        if rows == 0:
            out = out * be.scalar(float("nan"), out.dtype)
        elif denominator is None:
            out = out / be.scalar(float(rows), out.dtype)
        else:
            out = out / be.cast(_total(be, denominator), out.dtype)
    return be.finish(out)


def _compute(
    be: Backend,
    h: Any,
    w: Any,
    b: Any,
    t: Any,
    kept: Any,
    cw: Any,
    opt: Options,
    reduction: str,
) -> Any:
    """The rows' losses (``'none'``) or their sum, in the library's autodiff."""
    per_row = reduction == "none"
    if be.name == "torch":
        from . import _linear_torch

        fn = _linear_torch.torch_rows if per_row else _linear_torch.torch_total
        return fn(be, h, w, b, t, kept, cw, opt)
    if be.name == "jax":
        from . import _linear_autodiff as ad

        fn = ad.jax_rows if per_row else ad.jax_total
        return fn(be, h, w, b, t, kept, cw, opt)
    if be.name == "mlx":
        # MLX computes every output of a custom function when one is read: the
        # gradients cannot ride along with the value, so the backward pass
        # forms the tiles again (from the rows' saved statistics)
        from . import _linear_autodiff as ad

        loss = ad.mlx_rows(be, h, w, b, t, kept, cw, opt)
        return loss if per_row else _total(be, loss)
    if be.name == "dask":
        loss = _dask_rows(be, h, w, b, t, kept, cw, opt)
    else:
        loss = run(be, h, w, b, t, kept, cw, opt).loss
    return loss if per_row else _total(be, loss)


def _dask_rows(
    be: Backend, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any, opt: Options
) -> Any:
    """Dask: each block of rows through the NumPy code, lazily."""
    da: Any = importlib.import_module("dask.array")
    import numpy as np

    from ._backend import resolve as _resolve

    h = h.rechunk({1: -1})
    t = t.rechunk((h.chunks[0],))
    if kept is None:
        kept = da.ones(t.shape, dtype=bool, chunks=t.chunks)
    else:
        kept = kept.rechunk((h.chunks[0],))
    dtype = np.dtype(be.work)

    def block(hb: Any, wb: Any, tb: Any, kb: Any, bb: Any = None, cb: Any = None) -> Any:
        nbe = _resolve(_FUNC, ("weight", wb))
        wb = wb.astype(dtype, copy=False)
        return run(nbe, hb, wb, bb, tb, kb, cb, opt).loss

    arrays: list[Any] = [h, "ij", w.rechunk(-1), "kj", t, "i", kept, "i"]
    if b is not None:
        arrays += [b.rechunk(-1), "k"]
    elif cw is not None:
        arrays += [None, None]
    if cw is not None:
        arrays += [cw.rechunk(-1), "k"]
    return da.blockwise(block, "i", *arrays, dtype=dtype, concatenate=True)

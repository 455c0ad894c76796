"""The ops of the softmax-family Triton kernels (``_triton_softmax.py``):
custom ops with their autograd formulas, and their registry entries
(``cross_entropy``, ``softmax_focal_loss``, ``kl_div_loss``, ``nll_loss``).
See :mod:`anyloss.kernels._triton`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from . import _triton
from ._triton import (
    FLOATS,
    block,
    gradients,
    kernel_module,
    like,
    no_second_derivative,
    register,
    transformed,
)

_MAX_BLOCK = 4096


def _cdiv(n: int, d: int) -> int:
    return -(-n // d)


def _softmax_launch(rows: int, classes: int) -> tuple[tuple[int], dict[str, int]]:
    size = block(classes, _MAX_BLOCK)
    return (rows,), {
        "BLOCK": size,
        "num_warps": 8 if size >= 2048 else 4,
        "enable_fp_fusion": True,
    }


# -- cross entropy ------------------------------------------------------------------


def _ce_outputs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = logits.shape[0]
    a, b, c = (logits.new_empty((rows,), dtype=torch.float32) for _ in range(3))
    return a, b, c


@torch.library.custom_op("anyloss::triton_cross_entropy", mutates_args=())
def triton_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, smoothing: float, probs: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row cross entropy of 2-D ``logits`` (last axis contiguous) with
    class indices or probabilities: (the losses, the row maxima, the
    ``log(sum(exp(x - max)))`` of the rows), float32."""
    rows, classes = logits.shape
    out = _ce_outputs(logits)
    if rows:
        _triton.launched("cross_entropy")
        grid, meta = _softmax_launch(rows, classes)
        t_stride = targets.stride(0) if targets.ndim else 0
        kernel_module("_triton_softmax").ce_forward[grid](
            logits,
            logits.stride(0),
            targets,
            t_stride,
            *out,
            classes,
            smoothing,
            PROBS=probs,
            SMOOTH=smoothing > 0,
            **meta,
        )
    return out


triton_cross_entropy.register_fake(lambda logits, *_: _ce_outputs(logits))


@torch.library.custom_op("anyloss::triton_cross_entropy_backward", mutates_args=())
def triton_cross_entropy_backward(
    logits: torch.Tensor,
    targets: torch.Tensor,
    row_max: torch.Tensor,
    log_sum: torch.Tensor,
    grad: torch.Tensor,
    smoothing: float,
    probs: bool,
) -> torch.Tensor:
    """The gradient of :func:`triton_cross_entropy`'s losses times ``grad``
    (one per row) with respect to the logits, in their dtype."""
    rows, classes = logits.shape
    out = like(logits)
    if rows:
        _triton.launched("cross_entropy")
        grid, meta = _softmax_launch(rows, classes)
        kernel_module("_triton_softmax").ce_backward[grid](
            logits,
            logits.stride(0),
            targets,
            targets.stride(0) if targets.ndim else 0,
            row_max,
            log_sum,
            grad.contiguous(),
            row_max,  # (SCALE, NOT_P: not read)
            row_max,
            out,
            out.stride(0),
            classes,
            smoothing,
            PROBS=probs,
            SCALED=False,
            **meta,
        )
    return out


triton_cross_entropy_backward.register_fake(lambda logits, *_: like(logits))


def _ce_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    logits, targets, smoothing, probs = inputs
    ctx.smoothing, ctx.probs = smoothing, probs
    ctx.save_for_backward(logits, targets, output[1], output[2])
    ctx.set_materialize_grads(False)


def _ce_backward(ctx: Any, g: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
    no_second_derivative()
    if g is None:
        return None, None, None, None
    logits, targets, row_max, log_sum = ctx.saved_tensors
    dx = triton_cross_entropy_backward(
        logits, targets, row_max, log_sum, g, ctx.smoothing, ctx.probs
    )
    return dx, None, None, None


triton_cross_entropy.register_autograd(_ce_backward, setup_context=_ce_setup)


def _ce_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    x, t = args["logits"], args["targets"]
    if not (isinstance(x, torch.Tensor) and isinstance(t, torch.Tensor)):
        return False
    if x.dtype not in FLOATS or x.ndim < 1 or x.numel() == 0 or x.layout != torch.strided:
        return False
    if args.get("axis", -1) not in (-1, x.ndim - 1):
        return False
    if transformed(x):
        return False
    if t.ndim == x.ndim:  # probabilities (their gradient: the generic code)
        return bool(t.shape == x.shape) and t.dtype in FLOATS and not t.requires_grad
    return tuple(t.shape) == tuple(x.shape[:-1]) and not t.is_floating_point()


def _ce_forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    x, t = args["logits"], args["targets"]
    classes = x.shape[-1]
    x2 = x.reshape(-1, classes)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    probs = t.ndim == x.ndim
    t2 = t.reshape(-1, classes) if probs else t.reshape(-1)
    if t2.stride(-1) != 1:
        t2 = t2.contiguous()
    smoothing = float(args.get("label_smoothing", 0.0))
    loss = triton_cross_entropy(x2, t2, smoothing, probs)[0]
    return loss.reshape(x.shape[:-1])


register("cross_entropy", _ce_applies, _ce_forward)


# -- shared host code ---------------------------------------------------------------


def _rows(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``x`` as 2-D rows along ``axis`` (moved last), the last axis contiguous."""
    classes = x.shape[axis]
    x2 = x.movedim(axis, -1).reshape(-1, classes)
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _without(x: torch.Tensor, axis: int) -> tuple[int, ...]:
    """The shape of ``x`` without ``axis``: the per-row values' shape."""
    return tuple(n for i, n in enumerate(x.shape) if i != axis % x.ndim)


def _row_floats(rows: int, like_: torch.Tensor, count: int) -> tuple[torch.Tensor, ...]:
    return tuple(like_.new_empty((rows,), dtype=torch.float32) for _ in range(count))


def _plain_float(x: Any) -> bool:
    """A tensor the kernels read (a float dtype, strided, not in a ``torch.func``
    transform, with elements)."""
    return (
        isinstance(x, torch.Tensor)
        and x.dtype in FLOATS
        and x.layout == torch.strided
        and x.ndim >= 1
        and x.numel() > 0
        and not transformed(x)
    )


def _indices_of(t: Any, x: torch.Tensor, axis: int) -> bool:
    """Class indices for the rows of ``x`` along ``axis`` (one per row)."""
    return (
        isinstance(t, torch.Tensor)
        and not t.is_floating_point()
        and not t.is_complex()
        and t.dtype != torch.bool
        and t.layout == torch.strided
        and tuple(t.shape) == _without(x, axis)
    )


def _per_row(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """The float32 values of a loss whose rows may differ in sign, in float64
    for a sum (as the generic code sums them: torch's float32 sum cancels)."""
    return values if reduction == "none" else values.to(torch.float64)


# -- softmax focal loss -------------------------------------------------------------


def _split(gamma: float) -> tuple[float, float]:
    """``gamma`` as float32 ``hi + lo`` (the kernels' parameters are float32)."""
    hi = float(np.float32(gamma))
    return hi, gamma - hi


_Six = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _focal_outputs(logits: torch.Tensor) -> _Six:
    a, b, c, d, e, f = _row_floats(logits.shape[0], logits, 6)
    return a, b, c, d, e, f


@torch.library.custom_op("anyloss::triton_softmax_focal", mutates_args=())
def triton_softmax_focal(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: torch.Tensor | None,
    gamma: float,
    probs: bool,
) -> _Six:
    """Per-row softmax focal loss of 2-D ``logits`` (last axis contiguous) with
    class indices, or probabilities times the per-class ``alpha``: (the
    losses, the row maxima, their ``log(sum(exp(x - max)))``, the gradient's
    per-row scale, ``1 - p`` of the target (probabilities: the sum's ``S - 1``
    as two floats)), float32."""
    rows, classes = logits.shape
    out = _focal_outputs(logits)
    if rows:
        _triton.launched("softmax_focal_loss")
        grid, meta = _softmax_launch(rows, classes)
        kernel_module("_triton_softmax").focal_forward[grid](
            logits,
            logits.stride(0),
            targets,
            targets.stride(0) if targets.ndim else 0,
            logits if alpha is None else alpha,
            *out,
            classes,
            *_split(gamma),
            PROBS=probs,
            ALPHA=alpha is not None,
            **meta,
        )
    return out


triton_softmax_focal.register_fake(lambda logits, *_: _focal_outputs(logits))


@torch.library.custom_op("anyloss::triton_softmax_focal_backward", mutates_args=())
def triton_softmax_focal_backward(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: torch.Tensor | None,
    saved: list[torch.Tensor],
    grad: torch.Tensor,
    gamma: float,
    probs: bool,
) -> torch.Tensor:
    """The gradient of :func:`triton_softmax_focal`'s losses times ``grad``
    with respect to the logits, in their dtype (``saved``: its outputs but
    the losses)."""
    rows, classes = logits.shape
    out = like(logits)
    if rows:
        _triton.launched("softmax_focal_loss")
        grid, meta = _softmax_launch(rows, classes)
        row_max, log_sum, scale, aux, aux_lo = saved
        k = kernel_module("_triton_softmax")
        t_stride = targets.stride(0) if targets.ndim else 0
        if probs:
            k.focal_backward[grid](
                logits, logits.stride(0), targets, t_stride,
                logits if alpha is None else alpha, row_max, log_sum, scale, aux, aux_lo,
                grad.contiguous(), out, out.stride(0), classes, *_split(gamma),
                ALPHA=alpha is not None, **meta,
            )  # fmt: skip
        else:  # g |C| (softmax - onehot), the target's 1 - p exact
            k.ce_backward[grid](
                logits, logits.stride(0), targets, t_stride, row_max, log_sum,
                grad.contiguous(), scale, aux, out, out.stride(0), classes, 0.0,
                PROBS=False, SCALED=True, **meta,
            )  # fmt: skip
    return out


triton_softmax_focal_backward.register_fake(lambda logits, *_: like(logits))


def _focal_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    logits, targets, alpha, gamma, probs = inputs
    ctx.gamma, ctx.probs = gamma, probs
    ctx.save_for_backward(logits, targets, alpha, *output[1:])
    ctx.set_materialize_grads(False)


def _focal_backward(ctx: Any, g: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
    no_second_derivative()
    if g is None or not ctx.needs_input_grad[0]:
        return None, None, None, None, None
    logits, targets, alpha, *saved = ctx.saved_tensors
    dx = triton_softmax_focal_backward(logits, targets, alpha, saved, g, ctx.gamma, ctx.probs)
    return dx, None, None, None, None


triton_softmax_focal.register_autograd(_focal_backward, setup_context=_focal_setup)


def _focal_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    x, t, alpha = args["logits"], args["targets"], args.get("alpha")
    if not _plain_float(x):
        return False
    axis = args.get("axis", -1)
    gamma = args.get("gamma", 2.0)
    if not (isinstance(gamma, float) and 0.0 <= gamma <= 1e30):  # (a float32)
        return False
    if not isinstance(t, torch.Tensor) or t.ndim != x.ndim:  # class indices
        return alpha is None and _indices_of(t, x, axis)
    # probabilities (their gradient, and alpha's: the generic code)
    if not (_plain_float(t) and t.shape == x.shape and not t.requires_grad):
        return False
    return alpha is None or (
        _plain_float(alpha)
        and tuple(alpha.shape) == (x.shape[axis],)
        and alpha.device == x.device
        and not alpha.requires_grad
    )


def _focal_forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    x, t, alpha, axis = args["logits"], args["targets"], args.get("alpha"), args.get("axis", -1)
    probs = t.ndim == x.ndim
    t2 = _rows(t, axis) if probs else t.reshape(-1)
    if alpha is not None:
        alpha = alpha.contiguous()
    loss = triton_softmax_focal(_rows(x, axis), t2, alpha, float(args.get("gamma", 2.0)), probs)
    return loss[0].reshape(_without(x, axis))


register("softmax_focal_loss", _focal_applies, _focal_forward)


# -- Kullback-Leibler divergence ----------------------------------------------------


@torch.library.custom_op("anyloss::triton_kl_div", mutates_args=())
def triton_kl_div(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row ``sum(exp(t) (t - x))`` of 2-D ``inputs`` and ``targets`` (last
    axis contiguous), float32."""
    rows, classes = inputs.shape
    (out,) = _row_floats(rows, inputs, 1)
    if rows:
        _triton.launched("kl_div_loss")
        grid, meta = _softmax_launch(rows, classes)
        kernel_module("_triton_softmax").kl_forward[grid](
            inputs, inputs.stride(0), targets, targets.stride(0), out, classes, **meta
        )
    return out


triton_kl_div.register_fake(lambda inputs, *_: _row_floats(inputs.shape[0], inputs, 1)[0])


@torch.library.custom_op("anyloss::triton_kl_div_backward", mutates_args=())
def triton_kl_div_backward(
    inputs: torch.Tensor, targets: torch.Tensor, grad: torch.Tensor, wanted: list[bool]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``grad`` (one per row) times the derivatives of :func:`triton_kl_div` by
    ``inputs`` and ``targets`` (empty where not ``wanted``)."""
    want_x, want_t = wanted
    dx, dt = gradients(inputs, targets, want_x, want_t)
    rows, classes = inputs.shape
    if rows and (want_x or want_t):
        _triton.launched("kl_div_loss")
        grid, meta = _softmax_launch(rows, classes)
        kernel_module("_triton_softmax").kl_backward[grid](
            inputs, inputs.stride(0), targets, targets.stride(0), grad.contiguous(),
            dx if want_x else inputs, dt if want_t else targets, classes,
            WANT_X=want_x, WANT_T=want_t, **meta,
        )  # fmt: skip
    return dx, dt


triton_kl_div_backward.register_fake(
    lambda inputs, targets, grad, wanted: gradients(inputs, targets, wanted[0], wanted[1])
)


def _kl_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.save_for_backward(*inputs)
    ctx.set_materialize_grads(False)


def _kl_backward(ctx: Any, g: torch.Tensor | None) -> tuple[Any, ...]:
    no_second_derivative()
    wanted = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1])]
    if g is None or not any(wanted):
        return None, None
    x, t = ctx.saved_tensors
    dx, dt = triton_kl_div_backward(x, t, g, wanted)
    return dx if wanted[0] else None, dt if wanted[1] else None


triton_kl_div.register_autograd(_kl_backward, setup_context=_kl_setup)


def _kl_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    x, t = args["inputs"], args["targets"]
    return (
        _plain_float(x) and _plain_float(t) and t.shape == x.shape and t.dtype == x.dtype
    )  # (broadcasting: the generic code)


def _kl_forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    x, t, axis = args["inputs"], args["targets"], args.get("axis", -1)
    loss = triton_kl_div(_rows(x, axis), _rows(t, axis))
    return _per_row(loss.reshape(_without(x, axis)), reduction)


register("kl_div_loss", _kl_applies, _kl_forward)


# -- negative log-likelihood --------------------------------------------------------

_NLL_ROWS = 128  # rows of a forward program
_NLL_TILE = (16, 256)  # rows x classes of a backward program


@torch.library.custom_op("anyloss::triton_nll", mutates_args=())
def triton_nll(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-inputs[row, targets[row]]`` of 2-D ``inputs`` (any strides), float32
    (NaN for an index out of range)."""
    rows, classes = inputs.shape
    (out,) = _row_floats(rows, inputs, 1)
    if rows:
        _triton.launched("nll_loss")
        kernel_module("_triton_softmax").nll_forward[(_cdiv(rows, _NLL_ROWS),)](
            inputs, inputs.stride(0), inputs.stride(1), targets, targets.stride(0), out,
            rows, classes, BLOCK=_NLL_ROWS, enable_fp_fusion=True,
        )  # fmt: skip
    return out


triton_nll.register_fake(lambda inputs, *_: _row_floats(inputs.shape[0], inputs, 1)[0])


def _nll_gradient(targets: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    return targets.new_empty((targets.shape[0], classes), dtype=dtype)


@torch.library.custom_op("anyloss::triton_nll_backward", mutates_args=())
def triton_nll_backward(
    targets: torch.Tensor, grad: torch.Tensor, classes: int, dtype: torch.dtype
) -> torch.Tensor:
    """``-grad[row]`` at the target of each row, 0 elsewhere: (rows, ``classes``)
    of ``dtype`` (the inputs')."""
    out = _nll_gradient(targets, classes, dtype)
    rows = out.shape[0]
    if rows and classes:
        _triton.launched("nll_loss")
        tile_rows, tile = _NLL_TILE
        grid = (_cdiv(rows, tile_rows), _cdiv(classes, tile))
        kernel_module("_triton_softmax").nll_backward[grid](
            targets, targets.stride(0), grad.contiguous(), out, rows, classes,
            BLOCK_R=tile_rows, BLOCK=tile, enable_fp_fusion=True,
        )  # fmt: skip
    return out


triton_nll_backward.register_fake(
    lambda targets, grad, classes, dtype: _nll_gradient(targets, classes, dtype)
)


def _nll_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    x, t = inputs
    ctx.classes, ctx.dtype = x.shape[1], x.dtype  # (the gradient reads no input)
    ctx.save_for_backward(t)
    ctx.set_materialize_grads(False)


def _nll_backward(ctx: Any, g: torch.Tensor | None) -> tuple[Any, ...]:
    no_second_derivative()
    if g is None or not ctx.needs_input_grad[0]:
        return None, None
    (t,) = ctx.saved_tensors
    return triton_nll_backward(t, g, ctx.classes, ctx.dtype), None


triton_nll.register_autograd(_nll_backward, setup_context=_nll_setup)


def _nll_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    x, t = args["inputs"], args["targets"]
    return _plain_float(x) and _indices_of(t, x, args.get("axis", -1))


def _nll_forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    x, t, axis = args["inputs"], args["targets"], args.get("axis", -1)
    x2 = x.movedim(axis, -1).reshape(-1, x.shape[axis])
    loss = triton_nll(x2, t.reshape(-1))
    return _per_row(loss.reshape(_without(x, axis)), reduction)


register("nll_loss", _nll_applies, _nll_forward)

"""The ops of the softmax-family Triton kernels (``_triton_softmax.py``):
custom ops with their autograd formulas, and their registry entries
(``cross_entropy``). See :mod:`anyloss.kernels._triton`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from . import _triton
from ._triton import (
    FLOATS,
    block,
    kernel_module,
    like,
    no_second_derivative,
    register,
    transformed,
)

_MAX_BLOCK = 4096


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
            out,
            out.stride(0),
            classes,
            smoothing,
            PROBS=probs,
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

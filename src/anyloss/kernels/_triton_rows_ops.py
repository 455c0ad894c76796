"""The ops of the row-loss Triton kernels (``_triton_rows.py``): custom ops
with their autograd formulas, and their registry entries
(``cosine_similarity_loss``). See :mod:`anyloss.kernels._triton`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from . import _triton
from ._triton import (
    FLOATS,
    block,
    gradients,
    kernel_module,
    no_second_derivative,
    register,
    transformed,
)

# -- row losses ----------------------------------------------------------------------

_ROW_STATS = 6  # (_triton_rows.STATS)


def _cosine_outputs(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = a.shape[0]
    return (
        a.new_empty((rows,), dtype=torch.float32),
        a.new_empty((rows, _ROW_STATS), dtype=torch.float32),
    )


@torch.library.custom_op("anyloss::triton_cosine_similarity", mutates_args=())
def triton_cosine_similarity(
    a: torch.Tensor, b: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosine similarity of the rows of 2-D ``a`` and ``b`` (last axis
    contiguous), float32, and what the backward pass needs per row."""
    rows, d = a.shape
    out, saved = _cosine_outputs(a)
    if rows:
        _triton.launched("cosine_similarity")
        kernel_module("_triton_rows").cosine_forward[(rows,)](
            a, b, a.stride(0), b.stride(0), out, saved, d, eps,
            BLOCK=block(d, 1024), enable_fp_fusion=True,
        )  # fmt: skip
    return out, saved


triton_cosine_similarity.register_fake(lambda a, *_: _cosine_outputs(a))


@torch.library.custom_op("anyloss::triton_cosine_similarity_backward", mutates_args=())
def triton_cosine_similarity_backward(
    a: torch.Tensor,
    b: torch.Tensor,
    saved: torch.Tensor,
    grad: torch.Tensor,
    eps: float,
    want_a: bool,
    want_b: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    rows, d = a.shape
    da, db = gradients(a, b, want_a, want_b)
    if rows and (want_a or want_b):
        _triton.launched("cosine_similarity")
        kernel_module("_triton_rows").cosine_backward[(rows,)](
            a, b, a.stride(0), b.stride(0), saved, grad.contiguous(),
            da if want_a else a, db if want_b else b, d, eps,
            WANT_A=want_a, WANT_B=want_b, BLOCK=block(d, 1024), enable_fp_fusion=True,
        )  # fmt: skip
    return da, db


triton_cosine_similarity_backward.register_fake(
    lambda a, b, saved, grad, eps, want_a, want_b: gradients(a, b, want_a, want_b)
)


def _cosine_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    a, b, eps = inputs
    ctx.eps = eps
    ctx.save_for_backward(a, b, output[1])
    ctx.set_materialize_grads(False)


def _cosine_backward(ctx: Any, g: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
    no_second_derivative()
    want_a, want_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    if g is None or not (want_a or want_b):
        return None, None, None
    a, b, saved = ctx.saved_tensors
    da, db = triton_cosine_similarity_backward(a, b, saved, g, ctx.eps, want_a, want_b)
    return da if want_a else None, db if want_b else None, None


triton_cosine_similarity.register_autograd(_cosine_backward, setup_context=_cosine_setup)


def _cosine_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    a, b = args["x1"], args["x2"]
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    if a.dtype not in FLOATS or b.dtype != a.dtype or a.shape != b.shape or a.ndim < 1:
        return False
    if not a.numel() or a.layout != torch.strided or b.layout != torch.strided:
        return False
    if args.get("axis", 1) not in (-1, a.ndim - 1):
        return False
    return not transformed(a)


def _cosine_forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    a, b = args["x1"], args["x2"]
    d = a.shape[-1]
    a2, b2 = a.reshape(-1, d).contiguous(), b.reshape(-1, d).contiguous()
    out = triton_cosine_similarity(a2, b2, float(args.get("eps", 1e-8)))[0]
    return out.reshape(a.shape[:-1])


register("cosine_similarity_loss", _cosine_applies, _cosine_forward)

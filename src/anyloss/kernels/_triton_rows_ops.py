"""The ops of the row-loss Triton kernels (``_triton_rows.py``): custom ops
with their autograd formulas, and their registry entries
(``cosine_similarity_loss``, ``cosine_embedding_loss``, ``triplet_loss``).
See :mod:`anyloss.kernels._triton`."""

from __future__ import annotations

import math
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

_FLT_MAX = 3.4028234663852886e38


def _split(x: float) -> tuple[float, float]:
    """``x`` (``|x| <= FLT_MAX``) as float32 ``hi + lo`` (a double word)."""
    hi = float(np.float32(x))
    return hi, float(np.float32(x - hi))


def _rows_of(*xs: Any) -> bool:
    """Tensors of one floating dtype and one shape, with entries, strided,
    outside ``torch.func`` transforms."""
    first = xs[0]
    if not all(isinstance(x, torch.Tensor) for x in xs):
        return False
    if first.dtype not in FLOATS or first.ndim < 1 or not first.numel():
        return False
    if any(x.dtype != first.dtype or x.shape != first.shape for x in xs):
        return False
    return all(x.layout == torch.strided and not transformed(x) for x in xs)


# -- row losses ----------------------------------------------------------------------


def _pair_backward(
    loss: str,
    kernel: str,
    a: torch.Tensor,
    b: torch.Tensor,
    saved: torch.Tensor,
    grad: torch.Tensor,
    eps: float,
    want_a: bool,
    want_b: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of a loss of two rows (cosine similarity, cosine
    embedding) by its backward ``kernel``, which reads both rows, the
    forward's per-row ``saved`` statistics and the incoming ``grad``."""
    rows, d = a.shape
    da, db = gradients(a, b, want_a, want_b)
    if rows and (want_a or want_b):
        _triton.launched(loss)
        getattr(kernel_module("_triton_rows"), kernel)[(rows,)](
            a, b, a.stride(0), b.stride(0), saved, grad.contiguous(),
            da if want_a else a, db if want_b else b, d, eps,
            WANT_A=want_a, WANT_B=want_b, BLOCK=block(d, 1024), enable_fp_fusion=True,
        )  # fmt: skip
    return da, db


def _pair_backward_fake(
    a: torch.Tensor, b: torch.Tensor, saved: Any, grad: Any, eps: Any, want_a: bool, want_b: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    return gradients(a, b, want_a, want_b)


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
    return _pair_backward(
        "cosine_similarity", "cosine_backward", a, b, saved, grad, eps, want_a, want_b
    )


triton_cosine_similarity_backward.register_fake(_pair_backward_fake)


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
    return _rows_of(a, b) and args.get("axis", 1) in (-1, a.ndim - 1)


def _cosine_forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    a, b = args["x1"], args["x2"]
    d = a.shape[-1]
    a2, b2 = a.reshape(-1, d).contiguous(), b.reshape(-1, d).contiguous()
    out = triton_cosine_similarity(a2, b2, float(args.get("eps", 1e-8)))[0]
    return out.reshape(a.shape[:-1])


register("cosine_similarity_loss", _cosine_applies, _cosine_forward)


# -- cosine embedding ---------------------------------------------------------------------

_EMBEDDING_STATS = 7  # (_triton_rows.EMBEDDING_STATS)


def _embedding_outputs(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = a.shape[0]
    return (
        a.new_empty((rows,), dtype=torch.float32),
        a.new_empty((rows, _EMBEDDING_STATS), dtype=torch.float32),
    )


@torch.library.custom_op("anyloss::triton_cosine_embedding", mutates_args=())
def triton_cosine_embedding(
    a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, margin: float, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosine embedding loss of the rows of 2-D ``a`` and ``b`` (last axis
    contiguous) with float32 target codes ``t`` per row (1, -1, or 0: a loss
    of 0), float32, and what the backward pass needs per row."""
    rows, d = a.shape
    out, saved = _embedding_outputs(a)
    if rows:
        eps_hi, eps_lo = _split(eps)
        m_hi, m_lo = _split(margin)
        _triton.launched("cosine_embedding")
        kernel_module("_triton_rows").cosine_embedding_forward[(rows,)](
            a, b, t, a.stride(0), b.stride(0), out, saved, d, eps_hi, eps_lo, m_hi, m_lo,
            BLOCK=block(d, 1024), enable_fp_fusion=True,
        )  # fmt: skip
    return out, saved


triton_cosine_embedding.register_fake(lambda a, *_: _embedding_outputs(a))


@torch.library.custom_op("anyloss::triton_cosine_embedding_backward", mutates_args=())
def triton_cosine_embedding_backward(
    a: torch.Tensor,
    b: torch.Tensor,
    saved: torch.Tensor,
    grad: torch.Tensor,
    eps: float,
    want_a: bool,
    want_b: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _pair_backward(
        "cosine_embedding", "cosine_embedding_backward", a, b, saved, grad, eps, want_a, want_b
    )


triton_cosine_embedding_backward.register_fake(_pair_backward_fake)


def _embedding_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    a, b, _, _, eps = inputs
    ctx.eps = eps
    ctx.save_for_backward(a, b, output[1])
    ctx.set_materialize_grads(False)


def _embedding_backward(ctx: Any, g: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
    no_second_derivative()
    want_a, want_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    if g is None or not (want_a or want_b):
        return None, None, None, None, None
    a, b, saved = ctx.saved_tensors
    da, db = triton_cosine_embedding_backward(a, b, saved, g, ctx.eps, want_a, want_b)
    return da if want_a else None, db if want_b else None, None, None, None


triton_cosine_embedding.register_autograd(_embedding_backward, setup_context=_embedding_setup)


def _embedding_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    a, b, y = args["x1"], args["x2"], args["targets"]
    if not (_rows_of(a, b) and isinstance(y, torch.Tensor) and not transformed(y)):
        return False
    if y.device != a.device or y.layout != torch.strided:
        return False
    if args.get("axis", -1) not in (-1, a.ndim - 1):
        return False
    return float(args.get("eps", 1e-8)) <= _FLT_MAX


def _embedding_forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    a, b, y = args["x1"], args["x2"], args["targets"]
    d, rest = a.shape[-1], a.shape[:-1]
    # the targets as codes per row: 1, -1, or 0 for any other value (a loss of 0)
    codes = (y == 1).to(torch.float32) - (y == -1).to(torch.float32)
    t = codes.expand(rest).reshape(-1).contiguous()
    a2, b2 = a.reshape(-1, d).contiguous(), b.reshape(-1, d).contiguous()
    margin, eps = float(args.get("margin", 0.0)), float(args.get("eps", 1e-8))
    return triton_cosine_embedding(a2, b2, t, margin, eps)[0].reshape(rest)


register("cosine_embedding_loss", _embedding_applies, _embedding_forward)


# -- triplet ------------------------------------------------------------------------------

_TRIPLET_STATS = 8  # (_triton_rows.TRIPLET_STATS)
_MAX_P = 32.0  # other p than 1 and 2: 1 < p <= _MAX_P


def _kind(p: float) -> int:
    """The kernel's ``KIND``: 1 or 2 (``p``), 0 for another ``p``."""
    return 1 if p == 1.0 else 2 if p == 2.0 else 0


def _triplet_outputs(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = a.shape[0]
    return (
        a.new_empty((rows,), dtype=torch.float32),
        a.new_empty((rows, _TRIPLET_STATS), dtype=torch.float32),
    )


@torch.library.custom_op("anyloss::triton_triplet", mutates_args=())
def triton_triplet(
    a: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, p: float, margin: float, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The triplet loss of the rows of 2-D ``a``, ``pos``, ``neg`` (last axis
    contiguous), float32, and what the backward pass needs per row."""
    rows, d = a.shape
    out, saved = _triplet_outputs(a)
    if rows:
        kind = _kind(p)
        # (p = 1: eps cancels, and does not set the scale)
        root = 0.0 if kind == 1 else math.sqrt(eps) if kind == 2 else eps ** (1.0 / p)
        params = (*_split(p), *_split(0.0 if kind == 1 else eps), *_split(root), *_split(margin))
        _triton.launched("triplet")
        kernel_module("_triton_rows").triplet_forward[(rows,)](
            a, pos, neg, a.stride(0), pos.stride(0), neg.stride(0), out, saved, d, *params,
            KIND=kind, BLOCK=block(d, 1024), enable_fp_fusion=True,
        )  # fmt: skip
    return out, saved


triton_triplet.register_fake(lambda a, *_: _triplet_outputs(a))


def _three_gradients(
    xs: tuple[torch.Tensor, ...], wants: tuple[bool, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient buffers like ``xs``, empty where not wanted."""
    da, dp, dn = (like(x) if want else x.new_empty(0) for x, want in zip(xs, wants, strict=True))
    return da, dp, dn


@torch.library.custom_op("anyloss::triton_triplet_backward", mutates_args=())
def triton_triplet_backward(
    a: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    saved: torch.Tensor,
    grad: torch.Tensor,
    p: float,
    want_a: bool,
    want_p: bool,
    want_n: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, d = a.shape
    da, dp, dn = _three_gradients((a, pos, neg), (want_a, want_p, want_n))
    if rows and (want_a or want_p or want_n):
        _triton.launched("triplet")
        kernel_module("_triton_rows").triplet_backward[(rows,)](
            a, pos, neg, a.stride(0), pos.stride(0), neg.stride(0), saved, grad.contiguous(),
            da if want_a else a, dp if want_p else pos, dn if want_n else neg, d,
            *_split(p - 1.0), KIND=_kind(p), WANT_A=want_a, WANT_P=want_p, WANT_N=want_n,
            BLOCK=block(d, 1024), enable_fp_fusion=True,
        )  # fmt: skip
    return da, dp, dn


triton_triplet_backward.register_fake(
    lambda a, pos, neg, saved, grad, p, want_a, want_p, want_n: _three_gradients(
        (a, pos, neg), (want_a, want_p, want_n)
    )
)


def _triplet_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    a, pos, neg, p, _, _ = inputs
    ctx.p = p
    ctx.save_for_backward(a, pos, neg, output[1])
    ctx.set_materialize_grads(False)


def _triplet_backward(ctx: Any, g: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
    no_second_derivative()
    wants = tuple(bool(w) for w in ctx.needs_input_grad[:3])
    if g is None or not any(wants):
        return None, None, None, None, None, None
    a, pos, neg, saved = ctx.saved_tensors
    grads = triton_triplet_backward(a, pos, neg, saved, g, ctx.p, *wants)
    da, dp, dn = (gr if want else None for gr, want in zip(grads, wants, strict=True))
    return da, dp, dn, None, None, None


triton_triplet.register_autograd(_triplet_backward, setup_context=_triplet_setup)


def _triplet_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    a, pos, neg = args["anchors"], args["positives"], args["negatives"]
    if not _rows_of(a, pos, neg) or args.get("axis", -1) not in (-1, a.ndim - 1):
        return False
    p = float(args.get("p", 2))
    if not (p in (1.0, 2.0) or 1.0 < p <= _MAX_P):
        return False
    margin, eps = float(args.get("margin", 1.0)), float(args.get("eps", 1e-6))
    return abs(margin) <= _FLT_MAX and (p == 1.0 or eps <= _FLT_MAX)


def _triplet_forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    a, pos, neg = args["anchors"], args["positives"], args["negatives"]
    d = a.shape[-1]
    a2, p2, n2 = (x.reshape(-1, d).contiguous() for x in (a, pos, neg))
    p, margin = float(args.get("p", 2)), float(args.get("margin", 1.0))
    out = triton_triplet(a2, p2, n2, p, margin, float(args.get("eps", 1e-6)))[0]
    return out.reshape(a.shape[:-1])


register("triplet_loss", _triplet_applies, _triplet_forward)

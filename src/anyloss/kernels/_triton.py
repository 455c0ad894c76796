"""PyTorch's Triton entries: fused kernels for CUDA tensors, with gradients.

Each kernel runs inside a ``torch.library.custom_op`` (``torch.compile`` sees
one op, not a graph break) whose autograd formula calls the backward kernel.
The backward pass recomputes what it needs from the logits and two floats
per row saved by the forward (the row maximum and ``log(sum(exp(x - max)))``),
so nothing the size of the logits is kept besides the logits themselves.

Triton's interpreter runs the same kernels on CPU tensors (slowly): with
``ANYLOSS_TRITON_ON_CPU=1`` in the environment, or inside
:func:`on_cpu`, the entries also take CPU tensors, ahead of the numba
kernels, and ``TRITON_INTERPRET=1`` is set for Triton (it must be before
the kernels are first used: they are compiled for the interpreter or for
the GPU, not both; where ``torch.compile`` runs first it imports Triton
before this module can, and ``TRITON_INTERPRET=1`` must be set at the start:
without it, the cosine-similarity and Gaussian NLL kernels were seen to
fail in the interpreter under the compiler). The tests run this way where
Triton is installed (the ``gpu`` extra), so CI, which has no GPU, checks
every kernel's values and gradients.

Imported by the registry with the other torch entries; Triton itself is
imported on the first call that takes an entry.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from . import _registry

__all__ = ["available", "on_cpu"]


class _Switch:
    """Whether CPU tensors take the Triton entries (under the interpreter)."""

    on_cpu = False


def _interpret() -> None:
    # (read by Triton when the kernels are decorated, on their first use)
    os.environ.setdefault("TRITON_INTERPRET", "1")


if os.environ.get("ANYLOSS_TRITON_ON_CPU", "").strip() not in ("", "0"):
    _Switch.on_cpu = True
    _interpret()


@contextlib.contextmanager
def on_cpu(on: bool = True) -> Iterator[None]:
    """Route CPU tensors through the Triton kernels (Triton's interpreter)
    inside the ``with`` block, or not (``on=False``)."""
    if on:
        _interpret()
        compiled = sys.modules.get(f"{__package__}._triton_math")  # (every kernel's base)
        if compiled is not None and "Interpreted" not in type(compiled.two_sum).__name__:
            raise RuntimeError(
                "anyloss: the Triton kernels were compiled for the GPU (TRITON_INTERPRET was "
                "not set when they were first imported); to run them on CPU tensors set "
                "ANYLOSS_TRITON_ON_CPU=1 or TRITON_INTERPRET=1 before that"
            )
    before, _Switch.on_cpu = _Switch.on_cpu, on
    try:
        yield
    finally:
        _Switch.on_cpu = before


_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_MAX_BLOCK = 4096


@functools.cache
def available() -> bool:
    """Whether Triton is installed (the ``gpu`` extra)."""
    return importlib.util.find_spec("triton") is not None


@functools.cache
def _kernels(module: str) -> Any:
    """A kernel module (``"_triton_softmax"``, ...), imported on first use (it
    imports Triton)."""
    return importlib.import_module(f"{__package__}.{module}")


def _like(x: torch.Tensor) -> torch.Tensor:
    """An uninitialized contiguous tensor like ``x``."""
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _gradients(
    a: torch.Tensor, b: torch.Tensor, want_a: bool, want_b: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient buffers like ``a`` and ``b``, empty where not wanted (a custom
    op's outputs are tensors)."""
    return _like(a) if want_a else a.new_empty(0), _like(b) if want_b else b.new_empty(0)


def _block(n: int, most: int) -> int:
    """The power of two at least ``n``, at most ``most``: a kernel's block."""
    import triton

    return int(min(triton.next_power_of_2(max(n, 1)), most))


def _launched(kernel: str) -> None:
    """Called before every launch (the tests count the kernels that ran)."""


def _softmax_launch(rows: int, classes: int) -> tuple[tuple[int], dict[str, int]]:
    block = _block(classes, _MAX_BLOCK)
    return (rows,), {
        "BLOCK": block,
        "num_warps": 8 if block >= 2048 else 4,
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
        _launched("cross_entropy")
        grid, meta = _softmax_launch(rows, classes)
        t_stride = targets.stride(0) if targets.ndim else 0
        _kernels("_triton_softmax").ce_forward[grid](
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
    out = _like(logits)
    if rows:
        _launched("cross_entropy")
        grid, meta = _softmax_launch(rows, classes)
        _kernels("_triton_softmax").ce_backward[grid](
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


triton_cross_entropy_backward.register_fake(lambda logits, *_: _like(logits))


def _ce_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    logits, targets, smoothing, probs = inputs
    ctx.smoothing, ctx.probs = smoothing, probs
    ctx.save_for_backward(logits, targets, output[1], output[2])
    ctx.set_materialize_grads(False)


def _no_second_derivative() -> None:
    if torch.is_grad_enabled():  # create_graph=True
        raise RuntimeError(
            "anyloss: a second derivative (create_graph=True) through a Triton kernel is "
            "not supported; compute this loss with its generic code: "
            "`with anyloss.kernels.generic(): loss = ...`"
        )


def _ce_backward(ctx: Any, g: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
    _no_second_derivative()
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
    if x.dtype not in _FLOATS or x.ndim < 1 or x.numel() == 0 or x.layout != torch.strided:
        return False
    if args.get("axis", -1) not in (-1, x.ndim - 1):
        return False
    if not torch.compiler.is_compiling() and torch._C._functorch.is_functorch_wrapped_tensor(x):
        return False  # torch.func's transforms: the ops have no rule for them
    if t.ndim == x.ndim:  # probabilities (their gradient: the generic code)
        return bool(t.shape == x.shape) and t.dtype in _FLOATS and not t.requires_grad
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


# -- elementwise losses --------------------------------------------------------------

_ELEMENT_BLOCK = 1024
_HALF_LOG_2PI = 0.9189385175704956  # (float32; the kernel adds the low part)


def _no_params(args: Mapping[str, Any]) -> tuple[float, float]:
    return 0.0, 0.0


def _focal_params(args: Mapping[str, Any]) -> tuple[float, float]:
    alpha = args.get("alpha")
    return -1.0 if alpha is None else float(alpha), float(args.get("gamma", 2.0))


def _gaussian_params(args: Mapping[str, Any]) -> tuple[float, float]:
    return float(args.get("eps", 1e-6)), _HALF_LOG_2PI if args.get("full", False) else 0.0


# loss -> (kernel functions' prefix in _triton_elementwise, its operands (two or
# three), the weights' argument or None, the parameters (p, q) from the arguments)
_ELEMENTWISE: dict[str, tuple[str, tuple[str, ...], str | None, Callable[..., Any]]] = {
    "binary_cross_entropy": ("bce_logits", ("inputs", "targets"), "weights", _no_params),
    "log_cosh_loss": ("log_cosh", ("inputs", "targets"), None, _no_params),
    "sigmoid_focal_loss": ("sigmoid_focal", ("inputs", "targets"), None, _focal_params),
    "gaussian_nll_loss": (
        "gaussian_nll",
        ("inputs", "targets", "vars"),
        None,
        _gaussian_params,
    ),
}


def _element_grid(n: int) -> tuple[int]:
    return ((n + _ELEMENT_BLOCK - 1) // _ELEMENT_BLOCK,)


@torch.library.custom_op("anyloss::triton_elementwise", mutates_args=())
def triton_elementwise(
    kind: str,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor | None,
    w: torch.Tensor | None,
    p: float,
    q: float,
) -> torch.Tensor:
    """The loss ``kind`` of contiguous ``a``, ``b`` (and ``c``), times ``w``,
    per element."""
    out = torch.empty_like(a)
    n = a.numel()
    if n:
        k = _kernels("_triton_elementwise")
        _launched(kind)
        k.forward[_element_grid(n)](
            a, b, a if c is None else c, a if w is None else w, out, n, p, q,
            VALUE=getattr(k, f"{kind}_value"), THREE=c is not None, WEIGHTED=w is not None,
            BLOCK=_ELEMENT_BLOCK, enable_fp_fusion=True,
        )  # fmt: skip
    return out


triton_elementwise.register_fake(lambda kind, a, *_: torch.empty_like(a))


def _elementwise_gradients(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, wanted: list[bool]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    da, db = _gradients(a, b, wanted[0], wanted[1])
    return da, db, _gradients(a if c is None else c, a, wanted[2], False)[0]


@torch.library.custom_op("anyloss::triton_elementwise_backward", mutates_args=())
def triton_elementwise_backward(
    kind: str,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor | None,
    w: torch.Tensor | None,
    grad: torch.Tensor,
    p: float,
    q: float,
    wanted: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``grad`` times the derivatives of :func:`triton_elementwise` by ``a``,
    ``b`` and ``c`` (empty where not ``wanted``)."""
    want_a, want_b, want_c = wanted
    da, db, dc = _elementwise_gradients(a, b, c, wanted)
    n = a.numel()
    if n and any(wanted):
        k = _kernels("_triton_elementwise")
        _launched(kind)
        k.backward[_element_grid(n)](
            a, b, a if c is None else c, a if w is None else w, grad.contiguous(),
            da if want_a else a, db if want_b else a, dc if want_c else a, n, p, q,
            GRAD=getattr(k, f"{kind}_grad"), THREE=c is not None, WEIGHTED=w is not None,
            WANT_A=want_a, WANT_B=want_b, WANT_C=want_c, BLOCK=_ELEMENT_BLOCK,
            enable_fp_fusion=True,
        )  # fmt: skip
    return da, db, dc


triton_elementwise_backward.register_fake(
    lambda kind, a, b, c, w, grad, p, q, wanted: _elementwise_gradients(a, b, c, wanted)
)


def _elementwise_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    kind, a, b, c, w, p, q = inputs
    ctx.kind, ctx.p, ctx.q, ctx.three = kind, p, q, c is not None
    ctx.save_for_backward(a, b, c, w)
    ctx.set_materialize_grads(False)


def _elementwise_backward(ctx: Any, g: torch.Tensor | None) -> tuple[Any, ...]:
    _no_second_derivative()
    wanted = [bool(ctx.needs_input_grad[i]) for i in (1, 2, 3)]
    if g is None or not any(wanted):
        return (None,) * 7
    a, b, c, w = ctx.saved_tensors
    grads = triton_elementwise_backward(ctx.kind, a, b, c, w, g, ctx.p, ctx.q, wanted)
    da, db, dc = (d if on else None for d, on in zip(grads, wanted, strict=True))
    return None, da, db, dc, None, None, None


triton_elementwise.register_autograd(_elementwise_backward, setup_context=_elementwise_setup)


def _elementwise_applies(loss: str) -> Callable[..., bool]:
    _, operands, weights, _ = _ELEMENTWISE[loss]

    def applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
        arrays = [args[name] for name in operands]
        if not all(isinstance(x, torch.Tensor) for x in arrays):
            return False
        a = arrays[0]
        if a.dtype not in _FLOATS or not a.numel():
            return False
        for x in arrays:
            if x.dtype != a.dtype or x.shape != a.shape or x.layout != torch.strided:
                return False
        if not torch.compiler.is_compiling() and torch._C._functorch.is_functorch_wrapped_tensor(
            a
        ):
            return False
        if not args.get("with_logits", True):
            return False  # (binary cross entropy of probabilities: the generic code)
        w = None if weights is None else args.get(weights)
        if w is None:
            return True
        return (
            isinstance(w, torch.Tensor)
            and w.shape == a.shape
            and w.dtype in _FLOATS
            and not w.requires_grad
        )

    return applies


def _elementwise_forward(loss: str) -> Callable[..., Any]:
    kind, operands, weights, params = _ELEMENTWISE[loss]

    def forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
        a, b, *rest = (args[name].contiguous() for name in operands)
        w = None if weights is None else args.get(weights)
        if w is not None:
            w = w.contiguous()
        return triton_elementwise(kind, a, b, rest[0] if rest else None, w, *params(args))

    return forward


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
        _launched("cosine_similarity")
        _kernels("_triton_rows").cosine_forward[(rows,)](
            a, b, a.stride(0), b.stride(0), out, saved, d, eps,
            BLOCK=_block(d, 1024), enable_fp_fusion=True,
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
    da, db = _gradients(a, b, want_a, want_b)
    if rows and (want_a or want_b):
        _launched("cosine_similarity")
        _kernels("_triton_rows").cosine_backward[(rows,)](
            a, b, a.stride(0), b.stride(0), saved, grad.contiguous(),
            da if want_a else a, db if want_b else b, d, eps,
            WANT_A=want_a, WANT_B=want_b, BLOCK=_block(d, 1024), enable_fp_fusion=True,
        )  # fmt: skip
    return da, db


triton_cosine_similarity_backward.register_fake(
    lambda a, b, saved, grad, eps, want_a, want_b: _gradients(a, b, want_a, want_b)
)


def _cosine_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    a, b, eps = inputs
    ctx.eps = eps
    ctx.save_for_backward(a, b, output[1])
    ctx.set_materialize_grads(False)


def _cosine_backward(ctx: Any, g: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
    _no_second_derivative()
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
    if a.dtype not in _FLOATS or b.dtype != a.dtype or a.shape != b.shape or a.ndim < 1:
        return False
    if not a.numel() or a.layout != torch.strided or b.layout != torch.strided:
        return False
    if args.get("axis", 1) not in (-1, a.ndim - 1):
        return False
    return torch.compiler.is_compiling() or not torch._C._functorch.is_functorch_wrapped_tensor(a)


def _cosine_forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    a, b = args["x1"], args["x2"]
    d = a.shape[-1]
    a2, b2 = a.reshape(-1, d).contiguous(), b.reshape(-1, d).contiguous()
    out = triton_cosine_similarity(a2, b2, float(args.get("eps", 1e-8)))[0]
    return out.reshape(a.shape[:-1])


def _when_switched_on(applies: Callable[..., bool]) -> Callable[..., bool]:
    def on_cpu_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
        return _Switch.on_cpu and applies(be, reduction, args)

    return on_cpu_applies


def _register() -> None:
    losses = [
        ("cross_entropy", _ce_applies, _ce_forward),
        ("cosine_similarity_loss", _cosine_applies, _cosine_forward),
    ]
    losses += [(n, _elementwise_applies(n), _elementwise_forward(n)) for n in _ELEMENTWISE]
    for loss, applies, forward in losses:
        _registry.register(_registry.Entry(loss, "torch", "cuda", "triton", applies, forward, 20))
        _registry.register(
            _registry.Entry(
                loss, "torch", "cpu", "triton", _when_switched_on(applies), forward, 20
            )
        )


if available():
    _register()

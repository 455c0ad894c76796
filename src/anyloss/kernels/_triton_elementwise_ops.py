"""The ops of the elementwise Triton kernels (``_triton_elementwise.py``):
one custom op (and its backward) for every loss of ``_ELEMENTWISE``, and
their registry entries. See :mod:`anyloss.kernels._triton`."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

import torch

from . import _triton
from ._triton import (
    FLOATS,
    gradients,
    kernel_module,
    no_second_derivative,
    register,
    transformed,
)

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


def _poisson_params(args: Mapping[str, Any]) -> tuple[float, float]:
    """Log-rates: ``(0, 1)`` with ``full``, else ``(0, 0)``; rates: eps as a
    double word ``(hi, lo)`` of float32s, ``hi`` negated with ``full``."""
    full = bool(args.get("full", False))
    if args.get("log_input", True):
        return 0.0, 1.0 if full else 0.0
    eps = float(args.get("eps", 1e-8))
    hi = struct.unpack("f", struct.pack("f", eps))[0]
    return -hi if full else hi, eps - hi


def _poisson_supported(args: Mapping[str, Any]) -> bool:
    """Log-rates; rates with eps in [2^-100, 2^100] (its double word normal)."""
    if args.get("log_input", True):
        return True
    return 2.0**-100 <= float(args.get("eps", 1e-8)) <= 2.0**100


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
    "poisson_nll_loss": ("poisson_nll", ("inputs", "targets"), None, _poisson_params),
}

# loss -> whether its options are ones the kernel computes (the others: every call)
_SUPPORTED: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    # (binary cross entropy of probabilities: the generic code)
    "binary_cross_entropy": lambda args: bool(args.get("with_logits", True)),
    "poisson_nll_loss": _poisson_supported,
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
        k = kernel_module("_triton_elementwise")
        _triton.launched(kind)
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
    da, db = gradients(a, b, wanted[0], wanted[1])
    return da, db, gradients(a if c is None else c, a, wanted[2], False)[0]


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
        k = kernel_module("_triton_elementwise")
        _triton.launched(kind)
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
    no_second_derivative()
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
        if a.dtype not in FLOATS or not a.numel():
            return False
        for x in arrays:
            if x.dtype != a.dtype or x.shape != a.shape or x.layout != torch.strided:
                return False
        if transformed(a):
            return False
        if loss in _SUPPORTED and not _SUPPORTED[loss](args):
            return False
        w = None if weights is None else args.get(weights)
        if w is None:
            return True
        return (
            isinstance(w, torch.Tensor)
            and w.shape == a.shape
            and w.dtype in FLOATS
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


for _loss in _ELEMENTWISE:
    register(_loss, _elementwise_applies(_loss), _elementwise_forward(_loss))

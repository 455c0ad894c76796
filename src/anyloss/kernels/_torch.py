"""PyTorch's entries: the numba kernels on CPU tensors, with their gradients,
and ``torch.nn.functional``'s fused losses where they compute our formula.

The numba kernels run inside one custom operator, ``anyloss::numba_kernel``
(``torch.library.custom_op``): ``torch.compile`` sees one opaque op, not a
graph break, and its autograd formula (``register_autograd``) multiplies the
gradients the kernel wrote in the forward pass by the incoming gradient. The
tensors are handed to numba without a copy (``Tensor.numpy()``), and the
kernel's outputs come back the same way (``torch.from_numpy``).

Imported by the registry the first time a call on torch tensors asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._reduction import Total
from . import _cpu, _registry
from ._cpu import Info, Plan

__all__: list[str] = []

_NP_DTYPES = _cpu.numpy_dtypes(
    [
        torch.float32,
        torch.float64,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    ],
)
_TORCH_DTYPES = {v: k for k, v in _NP_DTYPES.items()}


def _describe(x: Any) -> Info | None:
    if not isinstance(x, torch.Tensor) or x.device.type != "cpu" or x.layout != torch.strided:
        return None
    if not torch.compiler.is_compiling() and torch._C._functorch.is_functorch_wrapped_tensor(x):
        return None  # torch.func's transforms: the op has no rule for them
    return Info(tuple(x.shape), _NP_DTYPES.get(x.dtype), x.is_contiguous())


# -- the operator ---------------------------------------------------------------

_MAX_GRADS = 3  # the most gradient outputs of a kernel (triplet, margin ranking, gaussian nll)


@torch.library.custom_op("anyloss::numba_kernel", mutates_args=())
def numba_kernel(
    kernel: str,
    rows: bool,
    total: bool,
    arrays: list[torch.Tensor],
    params: list[float],
    slots: list[int],
    grads: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the numba ``kernel`` (see :class:`anyloss.kernels._cpu.Plan`) on CPU
    tensors: (the loss values, the gradient of each operand in ``slots``
    where ``grads`` asks for it, else an empty tensor)."""
    operands = [a.detach().numpy() for a in arrays]
    call = _cpu.Call(kernel, rows, total, tuple(params), tuple(slots))
    values, outs = _cpu.run_call(call, operands, grads)
    result = [torch.from_numpy(np.asarray(values))]
    # (a gradient not asked for: empty and 1-D, as the fake implementation says)
    result += [torch.from_numpy(g if g.size else g.reshape(0)) for g in outs]
    return _padded(result, arrays[0])


def _padded(
    result: list[torch.Tensor], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The op's fixed four outputs: ``result``, then empty gradients of
    ``like``'s dtype (each its own tensor: outputs may not alias)."""
    pad = [like.new_empty((0,)) for _ in range(1 + _MAX_GRADS - len(result))]
    a, b, c, d = (*result, *pad)
    return a, b, c, d


@numba_kernel.register_fake
def _(
    kernel: str,
    rows: bool,
    total: bool,
    arrays: list[torch.Tensor],
    params: list[float],
    slots: list[int],
    grads: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x = arrays[0]
    if rows:
        values = x.new_empty((x.shape[0],), dtype=torch.float64)
    elif total:
        values = x.new_empty((), dtype=torch.float64)
    else:
        values = x.new_empty(x.shape)
    result = [values]
    for slot, on in zip(slots, grads, strict=True):
        a = arrays[slot]
        result.append(a.new_empty(a.shape if on else (0,)))
    return _padded(result, x)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    _, rows, total, arrays, params, slots, grads = inputs
    ctx.rows = rows
    ctx.total = total
    ctx.slots = list(slots)
    ctx.grads = list(grads)
    ctx.count = len(arrays)
    ctx.lists = (len(params), len(slots), len(grads))  # the backward mirrors them
    ctx.save_for_backward(*output[1 : 1 + len(slots)])
    ctx.set_materialize_grads(False)


def _backward(ctx: Any, g: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
    if torch.is_grad_enabled():
        # create_graph=True: the saved gradients are constants here, so a
        # second derivative through them would be silently wrong
        raise RuntimeError(
            "anyloss: a second derivative (create_graph=True) through the fused "
            "numba kernel is not supported; compute this loss with its generic "
            "code: `with anyloss.kernels.generic(): loss = ...`"
        )
    out: list[torch.Tensor | None] = [None] * ctx.count
    if g is not None:
        for slot, on, saved in zip(ctx.slots, ctx.grads, ctx.saved_tensors, strict=True):
            if not on:
                continue
            scale = g.to(saved.dtype)
            if ctx.rows:
                scale = scale.unsqueeze(-1)
            out[slot] = saved * scale
    # (the non-tensor lists: None, or [] where empty, as torch's check wants)
    lists: list[list[None] | None] = [[] if n == 0 else None for n in ctx.lists]
    return None, None, None, out, *lists


numba_kernel.register_autograd(_backward, setup_context=_setup_context)


# -- the numba entries ----------------------------------------------------------


def _operands(plan: Plan, args: Mapping[str, Any]) -> list[torch.Tensor]:
    out = []
    for o in plan.operands:
        dtype = _TORCH_DTYPES[o.dtype]
        if o.name is None:
            out.append(torch.empty(0, dtype=dtype))
        else:
            out.append(args[o.name].to(dtype).contiguous().reshape(o.shape))
    return out


def _numba_forward(loss: str) -> Any:
    def forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
        plan = _cpu.plan(loss, reduction, args, _describe)
        assert plan is not None
        arrays = _operands(plan, args)
        slots = list(plan.grad_slots())
        on = torch.is_grad_enabled()
        grads = [on and arrays[s].requires_grad for s in slots]
        values = numba_kernel(
            plan.kernel, plan.rows, plan.total, arrays, list(plan.params), slots, grads
        )[0]
        return _cpu.loss_values(plan, values)

    return forward


# Where torch's own backward beats the kernel's saved gradient: nll_loss's
# gradient is a scatter into zeros, which torch writes once; the kernel's
# costs two more passes over the logits' size (measured forward+backward,
# 4096x32000: torch's gather 148 ms, the kernel 200 ms).
_NATIVE_GRADIENT = {"nll_loss"}


def _wants_grad(plan: Plan, args: Mapping[str, Any]) -> bool:
    return any(o.name is not None and args[o.name].requires_grad for o in plan.operands)


def _grad_applies(loss: str) -> Any:
    """The numba entry applies when every operand that needs a gradient has a
    gradient output in the kernel."""

    def applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
        plan = _cpu.plan(loss, reduction, args, _describe)
        if plan is None:
            return False
        if not torch.is_grad_enabled():
            return True
        if loss in _NATIVE_GRADIENT and _wants_grad(plan, args):
            return False
        wanted = False
        for o in plan.operands:
            if o.name is not None and args[o.name].requires_grad:
                if not o.grad:
                    return False
                wanted = True
        return not wanted or _cpu.has_gradient(plan.kernel)

    return applies


for _loss in _cpu.PLANNERS:
    _registry.register(
        _registry.Entry(
            _loss,
            "torch",
            "cpu",
            "numba",
            _grad_applies(_loss),
            _numba_forward(_loss),
            priority=10,
        )
    )


# -- torch.nn.functional's own fused losses (any device) -------------------------


def _same_shape(a: str, b: str) -> Any:
    def applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
        return bool(args[a].shape == args[b].shape)

    return applies


def _functional(name: str, a: str, b: str, *params: str) -> Any:
    """``F.<name>(a, b, reduction='none' | 'sum', **params)``."""

    def forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
        kw = {p: args[p] for p in params}
        fn = getattr(torch.nn.functional, name)
        x = args[a]
        if reduction == "none":
            return fn(x, args[b], reduction="none", **kw)
        return Total(fn(x, args[b], reduction="sum", **kw), x.numel())

    return forward


def _mse_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    # float32 squares may overflow one by one where their mean does not: the
    # loss module sums float32 reductions itself (torch squares in float32)
    p = args["predictions"]
    if p.shape != args["targets"].shape:
        return False
    return reduction == "none" or be.dtype != be.work or p.dtype == torch.float64


def _smooth_l1_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    # torch forms 0.5 * d * d / beta, which overflows for d < beta when beta^2 does
    p, beta = args["predictions"], float(args["beta"])
    if p.shape != args["targets"].shape:
        return False
    return beta * beta < float(torch.finfo(p.dtype).max)


def _huber_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    delta = float(args["delta"])
    return bool(args["inputs"].shape == args["targets"].shape) and 0 < delta < float("inf")


for _entry in (
    (
        "l1_loss",
        _same_shape("predictions", "targets"),
        _functional("l1_loss", "predictions", "targets"),
    ),
    ("mse_loss", _mse_applies, _functional("mse_loss", "predictions", "targets")),
    (
        "smooth_l1_loss",
        _smooth_l1_applies,
        _functional("smooth_l1_loss", "predictions", "targets", "beta"),
    ),
    ("huber_loss", _huber_applies, _functional("huber_loss", "inputs", "targets", "delta")),
):
    _registry.register(
        _registry.Entry(_entry[0], "torch", "*", "torch.nn.functional", _entry[1], _entry[2])
    )

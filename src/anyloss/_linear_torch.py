"""PyTorch's side of :func:`anyloss.linear_cross_entropy`: custom ops.

``anyloss::linear_ce_total`` (the sum of the rows' losses, and with
``with_grad`` its gradients, computed in the same pass) and
``anyloss::linear_ce_rows`` (the rows' losses; its backward pass,
``anyloss::linear_ce_rows_backward``, runs the chunks again with the
incoming gradient) are ``torch.library.custom_op`` with ``register_autograd``:
``torch.compile`` sees one opaque op and never traces (or unrolls) the loop
over chunks. See :mod:`anyloss._linear_autodiff` for the two functions.

Imported only when a call has torch tensors; it imports torch.
"""

from typing import Any

import torch
from torch import Tensor

from ._backend import Backend, resolve
from ._linear_chunks import Options, run
from ._reduction import _total

__all__ = ["torch_rows", "torch_total"]


def _be(h: Any, w: Any) -> Backend:
    return resolve("linear_cross_entropy", ("weight", w), ("hidden", h))


def _opt(
    num_classes: int, smoothing: float, softcap: float | None, chunk: int, block: int
) -> Options:
    return Options(num_classes, smoothing, softcap, chunk, block)


@torch.library.custom_op(
    "anyloss::linear_ce_total",
    mutates_args=(),
    schema="(Tensor h, Tensor w, Tensor? b, Tensor t, Tensor? kept, Tensor? cw, "
    "int num_classes, float smoothing, float? softcap, int chunk, int block, bool with_grad) "
    "-> (Tensor, Tensor, Tensor, Tensor)",
)
def total(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    t: Tensor,
    kept: Tensor | None,
    cw: Tensor | None,
    num_classes: int,
    smoothing: float,
    softcap: float | None,
    chunk: int,
    block: int,
    with_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    be = _be(h, w)
    opt = _opt(num_classes, smoothing, softcap, chunk, block)
    coef = None
    if with_grad:
        coef = torch.ones(h.shape[0], dtype=w.dtype, device=w.device)
    res = run(be, h, w, b, t, kept, cw, opt, coef)
    value = _total(be, res.loss)
    if not with_grad:
        empty = w.new_empty((0,))
        return value, empty, empty.clone(), empty.clone()
    db = res.d_bias if res.d_bias is not None else w.new_empty((0,))
    return value, res.d_hidden, res.d_weight, db


@total.register_fake
def _(h, w, b, t, kept, cw, num_classes, smoothing, softcap, chunk, block, with_grad):  # type: ignore[no-untyped-def]
    value = w.new_empty(())
    if not with_grad:
        return value, w.new_empty((0,)), w.new_empty((0,)), w.new_empty((0,))
    db = w.new_empty((0,)) if b is None else b.new_empty(b.shape)
    return value, w.new_empty(h.shape), w.new_empty(w.shape), db


def total_setup(ctx: Any, inputs: Any, output: Any) -> None:
    _, dh, dw, db = output
    ctx.with_grad = inputs[-1]
    ctx.hidden_dtype = inputs[0].dtype
    ctx.has_bias = inputs[2] is not None
    ctx.save_for_backward(dh, dw, db)
    ctx.mark_non_differentiable(dh, dw, db)


def total_backward(ctx: Any, g: Any, *_: Any) -> Any:
    if not ctx.with_grad:
        raise RuntimeError(
            "linear_cross_entropy(): no gradient was computed in the forward pass "
            "(hidden, weight and bias did not require grad when it ran)"
        )
    dh, dw, db = ctx.saved_tensors
    return (
        (dh * g).to(ctx.hidden_dtype),
        dw * g,
        db * g if ctx.has_bias else None,
        *([None] * 9),
    )


total.register_autograd(total_backward, setup_context=total_setup)


_OPTIONS = "int num_classes, float smoothing, float? softcap, int chunk, int block"


@torch.library.custom_op(
    "anyloss::linear_ce_rows",
    mutates_args=(),
    schema="(Tensor h, Tensor w, Tensor? b, Tensor t, Tensor? kept, Tensor? cw, "
    + _OPTIONS
    + ") -> (Tensor, Tensor, Tensor)",
)
def rows(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    t: Tensor,
    kept: Tensor | None,
    cw: Tensor | None,
    num_classes: int,
    smoothing: float,
    softcap: float | None,
    chunk: int,
    block: int,
) -> tuple[Tensor, Tensor, Tensor]:
    be = _be(h, w)
    res = run(be, h, w, b, t, kept, cw, _opt(num_classes, smoothing, softcap, chunk, block))
    return res.loss, res.m, res.rest


@rows.register_fake
def _(h, w, b, t, kept, cw, num_classes, smoothing, softcap, chunk, block):  # type: ignore[no-untyped-def]
    n = (h.shape[0],)
    return w.new_empty(n), w.new_empty(n), w.new_empty(n)


@torch.library.custom_op(
    "anyloss::linear_ce_rows_backward",
    mutates_args=(),
    schema="(Tensor g, Tensor m, Tensor rest, Tensor h, Tensor w, Tensor? b, Tensor t, "
    "Tensor? kept, Tensor? cw, " + _OPTIONS + ") -> (Tensor, Tensor, Tensor)",
)
def rows_backward(
    g: Tensor,
    m: Tensor,
    rest: Tensor,
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    t: Tensor,
    kept: Tensor | None,
    cw: Tensor | None,
    num_classes: int,
    smoothing: float,
    softcap: float | None,
    chunk: int,
    block: int,
) -> tuple[Tensor, Tensor, Tensor]:
    be = _be(h, w)
    opt = _opt(num_classes, smoothing, softcap, chunk, block)
    res = run(be, h, w, b, t, kept, cw, opt, g.to(w.dtype).contiguous(), (m, rest))
    db = res.d_bias if res.d_bias is not None else w.new_empty((0,))
    return res.d_hidden.to(h.dtype), res.d_weight, db


@rows_backward.register_fake
def _(g, m, rest, h, w, b, t, kept, cw, num_classes, smoothing, softcap, chunk, block):  # type: ignore[no-untyped-def]
    db = w.new_empty((0,)) if b is None else b.new_empty(b.shape)
    return h.new_empty(h.shape), w.new_empty(w.shape), db


def rows_setup(ctx: Any, inputs: Any, output: Any) -> None:
    _, m, rest = output
    ctx.args = inputs[6:]
    ctx.has_bias = inputs[2] is not None
    ctx.mark_non_differentiable(m, rest)
    ctx.save_for_backward(m, rest, *inputs[:6])


def rows_backward_rule(ctx: Any, g: Any, *_: Any) -> Any:
    m, rest, h, w, b, t, kept, cw = ctx.saved_tensors
    dh, dw, db = rows_backward(g, m, rest, h, w, b, t, kept, cw, *ctx.args)
    return (dh, dw, db if ctx.has_bias else None, *([None] * 8))


rows.register_autograd(rows_backward_rule, setup_context=rows_setup)


def _torch_args(opt: Options) -> tuple[int, float, float | None, int, int]:
    return opt.num_classes, opt.smoothing, opt.softcap, opt.chunk, opt.block


def torch_total(
    be: Backend, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any, opt: Options
) -> Any:
    """The sum of the rows' losses (a 0-d tensor), differentiable.

    With a gradient wanted and the vocabulary in several blocks, the sum of
    :func:`rows`: its backward pass forms the tiles again, as the forward
    pass of ``total`` would have to, and writes the gradients into the
    tensors autograd then keeps (``weight.grad`` takes ``d weight`` as it
    is). ``total`` would hold them from the forward pass to the backward
    one, and scale them into new tensors there: two more weight-sized
    buffers (14% of the logits beyond the gradients, measured at 4096 x 256
    -> 32000, against 2%). With one block ``total`` reuses the forward
    pass's tile and saves a product.
    """
    with_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (h, w, b)
    )
    if with_grad and opt.block < opt.num_classes:
        return rows(h, w, b, t, kept, cw, *_torch_args(opt))[0].sum()
    return total(h, w, b, t, kept, cw, *_torch_args(opt), with_grad)[0]


def torch_rows(
    be: Backend, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any, opt: Options
) -> Any:
    """The rows' losses, differentiable."""
    return rows(h, w, b, t, kept, cw, *_torch_args(opt))[0]

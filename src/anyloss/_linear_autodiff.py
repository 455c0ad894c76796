""":func:`anyloss.linear_cross_entropy` inside each library's autodiff.

Two differentiable functions per library, both computed chunk by chunk by
:func:`anyloss._linear_chunks.run`, so that neither the forward pass nor the
backward pass ever holds the full logits (autodiff through the chunk loop
would save every chunk's logits for the backward pass):

- ``total(hidden, weight, bias)``: the sum of the rows' losses. With a gradient
  wanted, the gradients of that sum are computed in the same call as the
  value and only scaled by the incoming gradient in the backward pass; with
  the vocabulary in one block this saves a product (the tile is reused).
  ``'mean'``/``'sum'`` use it (JAX; PyTorch with one block: with several,
  the sum of ``rows``, whose backward pass writes the gradients into the
  tensors autograd keeps instead of holding them from the forward pass).
- ``rows(hidden, weight, bias)``: the loss of each row, and the rows'
  statistics (maximum, rest of the sum), which its backward pass takes so
  that it only forms each tile once more. ``'none'`` uses it, and MLX for
  every reduction: MLX computes all the outputs of a custom function when
  one is read, so gradients computed beside the value would cost a forward
  pass without a gradient as much as one with it.

JAX: ``jax.custom_vjp`` around a ``lax.scan`` (on the CPU the registry's
entry, :mod:`anyloss.kernels._jax_linear`, runs the NumPy code in XLA FFI
calls instead); MLX: ``mx.custom_function`` with a ``vjp``; PyTorch: custom
ops, in :mod:`anyloss._linear_torch`.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from ._backend import Backend
from ._linear_chunks import Options, run
from ._reduction import _total

__all__ = ["jax_rows", "jax_total", "mlx_rows"]


# -- JAX ----------------------------------------------------------------------------


def _float0_like(x: Any) -> Any:
    import numpy as np

    jax = sys.modules["jax"]
    if x is None:
        return None
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


@functools.cache
def _jax_functions() -> tuple[Any, Any]:
    jax = sys.modules["jax"]
    jnp = jax.numpy

    def _value(
        be: Backend, opt: Options, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any
    ) -> Any:
        return _total(be, run(be, h, w, b, t, kept, cw, opt).loss)

    total = jax.custom_vjp(_value, nondiff_argnums=(0, 1))

    def total_fwd(
        be: Backend, opt: Options, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any
    ) -> Any:
        coef = jnp.ones((h.shape[0],), w.dtype)
        res = run(be, h, w, b, t, kept, cw, opt, coef)
        return _total(be, res.loss), (
            res.d_hidden,  # cast to the dtype of h once scaled
            jnp.zeros((0,), h.dtype),
            res.d_weight,
            res.d_bias,
            t,
            kept,
            cw,
        )

    def total_bwd(be: Backend, opt: Options, saved: Any, g: Any) -> Any:
        dh, h_dtype, dw, db, t, kept, cw = saved
        return (
            (dh * g).astype(h_dtype.dtype),
            dw * g,
            None if db is None else db * g,
            _float0_like(t),
            _float0_like(kept),
            None if cw is None else jnp.zeros_like(cw),
        )

    total.defvjp(total_fwd, total_bwd)

    def _rows(
        be: Backend, opt: Options, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any
    ) -> Any:
        return run(be, h, w, b, t, kept, cw, opt).loss

    rows = jax.custom_vjp(_rows, nondiff_argnums=(0, 1))

    def rows_fwd(
        be: Backend, opt: Options, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any
    ) -> Any:
        return _rows(be, opt, h, w, b, t, kept, cw), (h, w, b, t, kept, cw)

    def rows_bwd(be: Backend, opt: Options, saved: Any, g: Any) -> Any:
        h, w, b, t, kept, cw = saved
        res = run(be, h, w, b, t, kept, cw, opt, g.astype(w.dtype))
        return (
            res.d_hidden.astype(h.dtype),
            res.d_weight,
            res.d_bias,
            _float0_like(t),
            _float0_like(kept),
            None if cw is None else jnp.zeros_like(cw),
        )

    rows.defvjp(rows_fwd, rows_bwd)
    # jitted (the chunks' scan is then traced and compiled once per shape and
    # options, not at every eager call); inlined into an enclosing jit
    return jax.jit(total, static_argnums=(0, 1)), jax.jit(rows, static_argnums=(0, 1))


def jax_total(
    be: Backend, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any, opt: Options
) -> Any:
    total, _ = _jax_functions()
    return total(be, opt, h, w, b, t, kept, cw)


def jax_rows(be: Backend, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any, opt: Options) -> Any:
    _, rows = _jax_functions()
    return rows(be, opt, h, w, b, t, kept, cw)


# -- MLX ----------------------------------------------------------------------------


def _mlx_split(args: Any, has_bias: bool) -> tuple[Any, Any, Any]:
    h, w, *rest = args
    return h, w, rest[0] if has_bias else None


def mlx_rows(be: Backend, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any, opt: Options) -> Any:
    mx: Any = sys.modules["mlx.core"]
    has_bias = b is not None

    def forward(*args: Any) -> Any:
        hh, ww, bb = _mlx_split(args, has_bias)
        res = run(be, hh, ww, bb, t, kept, cw, opt)
        return res.loss, res.m, res.rest

    def backward(primals: Any, cotangents: Any, outputs: Any) -> Any:
        hh, ww, bb = _mlx_split(primals, has_bias)
        g = cotangents[0]
        stats = (outputs[1], outputs[2])
        res = run(be, hh, ww, bb, t, kept, cw, opt, g.astype(ww.dtype), stats)
        grads = [res.d_hidden.astype(hh.dtype), res.d_weight]
        if has_bias:
            grads.append(res.d_bias)
        return tuple(grads)

    rows = mx.custom_function(forward)
    rows.vjp(backward)
    primals = (h, w, b) if has_bias else (h, w)
    return rows(*primals)[0]

"""JAX's entry for :func:`anyloss.linear_cross_entropy` on the CPU: the NumPy
code on XLA's buffers.

The generic JAX path is a ``lax.scan`` over chunks of rows, the vocabulary
blocks unrolled inside it (:func:`anyloss._linear_chunks.run`). On the CPU
XLA keeps several tiles of it alive (50% of the logits' size at 4096 x 256
-> 32000 float32, against 0.8% for NumPy), compiles it for seconds (11 s at
that shape), and its forward took 1.47x optax's unfused loss. Here the work
is an XLA FFI custom call (:mod:`._xla_ffi`: no copy of the operands) whose
handler runs the NumPy code, BLAS products and the numba tile kernels
(:mod:`anyloss._linear_tiles`), and writes the results, gradients included,
straight into XLA's result buffers.

Three calls, each its own FFI target per set of static options:

- ``forward``: the rows' losses and statistics ``(m, rest)``;
- ``backward``: from those statistics and the rows' cotangents, the
  gradients of hidden, weight and bias (the tiles formed again);
- ``gradients``: the rows' losses and the gradients of their sum, in one
  pass (with the vocabulary in one block the first pass's tile is reused:
  one product less).

``jax.custom_vjp`` wires them into JAX's autodiff: the rows' losses
(``'none'``) save the statistics and run ``backward``; their sum
(``'mean'``/``'sum'``) does the same with several vocabulary blocks, and
with one block computes the gradients beside the value (``gradients``) and
scales them in the backward pass. ``jit``, ``grad`` and ``vmap`` (the calls
run once per batch item) work.

Applies on the CPU whenever the kernels are switched on
(``ANYLOSS_KERNELS`` not ``off``, outside :func:`anyloss.kernels.generic`);
``hidden`` is widened to the compute dtype before the call (JAX
differentiates that cast).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._backend import resolve
from .._linear_autodiff import _float0_like
from .._linear_chunks import Options, run
from . import _config, _registry, _xla_ffi

__all__: list[str] = []

_FUNC = "linear_cross_entropy"


@dataclass(frozen=True)
class _Spec:
    """The static side of a call: the options, and which optional operands
    (bias, the kept-rows mask, class weights) it has."""

    opt: Options
    bias: bool
    kept: bool
    weights: bool

    @property
    def one_block(self) -> bool:
        return self.opt.block >= self.opt.num_classes


def _unpack(spec: _Spec, arrays: Sequence[Any]) -> tuple[Any, ...]:
    """``(h, w, b, t, kept, cw)`` from the operands actually passed."""
    it = iter(arrays)
    h, w = next(it), next(it)
    b = next(it) if spec.bias else None
    t = next(it)
    kept = next(it) if spec.kept else None
    cw = next(it) if spec.weights else None
    return h, w, b, t, kept, cw


def _pack(h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any) -> list[Any]:
    return [a for a in (h, w, b, t, kept, cw) if a is not None]


# -- the FFI handlers' work (NumPy arrays over XLA's buffers) ----------------------


def _numpy_run(spec: _Spec, arrays: Sequence[np.ndarray], **kw: Any) -> Any:
    h, w, b, t, kept, cw = _unpack(spec, arrays)
    be = resolve(_FUNC, ("weight", w))
    return run(be, h, w, b, t, kept, cw, spec.opt, **kw)


def _fill_forward(
    spec: _Spec, arrays: Sequence[np.ndarray], results: Sequence[np.ndarray]
) -> None:
    res = _numpy_run(spec, arrays)
    for into, value in zip(results, (res.loss, res.m, res.rest), strict=True):
        into[...] = value


def _grad_outs(spec: _Spec, results: Sequence[np.ndarray]) -> tuple[Any, Any, Any]:
    dh, dw, db = results
    return dh, dw, db if spec.bias else None


def _fill_backward(
    spec: _Spec, arrays: Sequence[np.ndarray], results: Sequence[np.ndarray]
) -> None:
    g, m, rest, *operands = arrays
    _numpy_run(spec, operands, coef=g, stats=(m, rest), out=_grad_outs(spec, results))


def _fill_gradients(
    spec: _Spec, arrays: Sequence[np.ndarray], results: Sequence[np.ndarray]
) -> None:
    loss, *grads = results
    coef = np.ones(arrays[0].shape[0], arrays[1].dtype)
    res = _numpy_run(spec, arrays, coef=coef, out=_grad_outs(spec, grads))
    loss[...] = res.loss


_FILLS = {"forward": _fill_forward, "backward": _fill_backward, "gradients": _fill_gradients}


def _call(kind: str, spec: _Spec, outs: Sequence[Any], arrays: Sequence[Any]) -> Any:
    name = _xla_ffi.target(("linear", kind, spec), functools.partial(_FILLS[kind], spec))
    call = jax.ffi.ffi_call(name, tuple(outs), vmap_method="sequential")
    return call(*arrays)


def _struct(shape: tuple[int, ...], dtype: Any) -> Any:
    struct: Any = jax.ShapeDtypeStruct  # (untyped)
    return struct(shape, dtype)


def _forward(spec: _Spec, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any) -> Any:
    rows = _struct(h.shape[:1], w.dtype)
    return _call("forward", spec, [rows, rows, rows], _pack(h, w, b, t, kept, cw))


def _grad_structs(spec: _Spec, h: Any, w: Any) -> list[Any]:
    db = _struct((w.shape[0] if spec.bias else 0,), w.dtype)
    return [_struct(h.shape, w.dtype), _struct(w.shape, w.dtype), db]


def _backward(
    spec: _Spec, g: Any, m: Any, rest: Any, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any
) -> Any:
    arrays = [g.astype(w.dtype), m, rest, *_pack(h, w, b, t, kept, cw)]
    return _call("backward", spec, _grad_structs(spec, h, w), arrays)


def _gradients(spec: _Spec, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any) -> Any:
    outs = [_struct(h.shape[:1], w.dtype), *_grad_structs(spec, h, w)]
    return _call("gradients", spec, outs, _pack(h, w, b, t, kept, cw))


# -- autodiff ------------------------------------------------------------------------


def _cotangents(spec: _Spec, dh: Any, dw: Any, db: Any, t: Any, kept: Any, cw: Any) -> Any:
    return (
        dh,
        dw,
        db if spec.bias else None,
        _float0_like(t),
        _float0_like(kept),
        None if cw is None else jnp.zeros_like(cw),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rows(spec: _Spec, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any) -> Any:
    return _forward(spec, h, w, b, t, kept, cw)[0]


def _rows_fwd(spec: _Spec, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any) -> Any:
    loss, m, rest = _forward(spec, h, w, b, t, kept, cw)
    return loss, (m, rest, h, w, b, t, kept, cw)


def _rows_bwd(spec: _Spec, saved: Any, g: Any) -> Any:
    m, rest, h, w, b, t, kept, cw = saved
    dh, dw, db = _backward(spec, g, m, rest, h, w, b, t, kept, cw)
    return _cotangents(spec, dh, dw, db, t, kept, cw)


_rows.defvjp(_rows_fwd, _rows_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _total(spec: _Spec, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any) -> Any:
    return jnp.sum(_forward(spec, h, w, b, t, kept, cw)[0])


def _total_fwd(spec: _Spec, h: Any, w: Any, b: Any, t: Any, kept: Any, cw: Any) -> Any:
    if spec.one_block:  # the gradients beside the value: the tile is reused
        loss, dh, dw, db = _gradients(spec, h, w, b, t, kept, cw)
        return jnp.sum(loss), (dh, dw, db, t, kept, cw)
    # several blocks: the backward pass forms the tiles again anyway, and
    # writes the gradients into the buffers JAX keeps (no copy held between
    # the passes, none scaled)
    loss, saved = _rows_fwd(spec, h, w, b, t, kept, cw)
    return jnp.sum(loss), saved


def _total_bwd(spec: _Spec, saved: Any, g: Any) -> Any:
    if spec.one_block:
        dh, dw, db, t, kept, cw = saved
        g = g.astype(dw.dtype)
        return _cotangents(spec, dh * g, dw * g, db * g, t, kept, cw)
    rows = saved[0].shape[0]
    return _rows_bwd(spec, saved, jnp.broadcast_to(g, (rows,)))


_total.defvjp(_total_fwd, _total_bwd)

# jitted: an eager call traces once per shape and options, not at every call
_ROWS = jax.jit(_rows, static_argnums=0)
_TOTAL = jax.jit(_total, static_argnums=0)


# -- the registry entry ----------------------------------------------------------------


def _applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
    return _config.enabled()


def _values(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
    w = args["weight"]
    h = args["hidden"].astype(w.dtype)
    b, kept, cw = args["bias"], args["kept"], args["class_weights"]
    spec = _Spec(args["options"], b is not None, kept is not None, cw is not None)
    fn = _ROWS if reduction == "none" else _TOTAL
    return fn(spec, h, w, b, args["targets"], kept, cw)


_registry.register(
    _registry.Entry(_FUNC, "jax", "cpu", "numpy+numba (XLA FFI)", _applies, _values, priority=10)
)

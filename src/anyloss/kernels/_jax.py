"""JAX's entries: the numba kernels on CPU arrays, with their gradients.

The kernel runs in an XLA FFI custom call (``jax.ffi.ffi_call``, so
``jax.jit`` compiles around it) whose handler (:mod:`._xla_ffi`) reads
XLA's operand buffers and writes its result buffers in place: no copy
either way. The call sits inside a ``jax.custom_jvp``: the primal call runs
the forward kernel alone; under differentiation the gradient kernel runs
instead, for the operands that have a tangent, and the output's tangent is
the (linear) product of its gradients with the tangents, which JAX
transposes for reverse mode: ``jax.grad``, ``jax.jvp`` and ``jax.vmap``
work, and a second derivative raises (the call has no derivative). The
call declares ``vmap_method="broadcast_all"`` and takes the batch itself:
rows and elements of the batch are more rows and elements of one kernel
call; sums (``'mean'``/``'sum'``) are taken per batch item.

Without x64, the per-row losses and the sums come back in float32 (rounded
once from the kernel's float64).

Which kernels apply by default: the ones of :data:`FAST_FLOAT32`, measured
faster than the generic code's XLA loops (or as fast forward+backward and
faster forward), without x64. With x64 the generic code is plain float64
arithmetic that XLA fuses, and no kernel applies by default. With
``ANYLOSS_KERNELS=force`` every kernel that has a gradient variant applies.

Without x64, the generic code of the losses whose terms cancel carries
float32 double words (:mod:`anyloss._compensated`), and XLA's CPU code for
that arithmetic is slow: it does not fuse the dozens of operations into one
loop (each TwoSum's shared values split the fusion, and a chain fused into
a reduction runs unvectorized). The kernels compute in float64 and round
once, as exact, and faster. Measured before the FFI call replaced a
``jax.pure_callback`` (which copied every operand and result; 16384x256
float32, 2-core CPU, ``jax.jit``, forward / ``jax.grad`` of the mean in ms,
two runs):

======================  ==============  =================  =====================
loss                    kernel          generic, double    generic, plain
                                        words (exact)      float32 (inexact)
======================  ==============  =================  =====================
cosine_similarity_loss  3.3-3.9 / 6-8   23 / 25-26
triplet_loss            7-10 / 10-11    54-85 / 71-81
gaussian_nll_loss       14-17 / 20-29   62-82 / 104-128    43 / 8 (before)
kl_div_loss             6-10 / 9-10     93-96 / 35-49      3.5-3.9 / 1.2-2.3
======================  ==============  =================  =====================

``log_cosh_loss`` on 2**22 elements, ``jax.value_and_grad`` of the mean: the
kernel 24.7 ms, the generic double words 96, the float32 formulas (4.6 ulp
off) 49.6.

Imported by the registry the first time a call on JAX arrays asks.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _cpu, _registry, _xla_ffi
from ._config import mode
from ._cpu import Call, Info

SymbolicZero = jax.custom_derivatives.SymbolicZero

__all__: list[str] = []


def _describe(x: Any) -> Info | None:
    if not isinstance(x, jax.Array):
        return None
    dtype = np.dtype(x.dtype)
    return Info(tuple(x.shape), dtype if dtype.kind in "biuf" else None, True)


def _x64() -> bool:
    return bool(jnp.result_type(float) == jnp.float64)


def _value_dtype(call: Call, dtype: np.dtype, x64: bool) -> np.dtype:
    """The dtype the loss values come back in."""
    if call.rows or call.total:
        return np.dtype(np.float64 if x64 else np.float32)
    return dtype


def _run(
    call: Call,
    x64: bool,
    grads: tuple[bool, ...],
    arrays: Sequence[np.ndarray],
    results: Sequence[np.ndarray],
) -> None:
    """The FFI handler's work: the kernel on (possibly batched) operands,
    writing the loss values and the gradients into XLA's result buffers."""
    batch = arrays[0].shape[: arrays[0].ndim - (2 if call.rows else 1)]
    if batch and call.total:  # one sum per batch item
        for i in np.ndindex(*batch):
            _run(call, x64, grads, [a[i] for a in arrays], [r[i] for r in results])
        return
    flat = [a.reshape((-1, *a.shape[len(batch) + 1 :])) for a in arrays]
    into = results[0]
    # the kernel's values: float64 per row, the input's dtype per element
    direct = not call.total and into.dtype == (np.float64 if call.rows else flat[0].dtype)
    out = [into if direct else None]
    out += [r if on else None for r, on in zip(results[1:], grads, strict=True)]
    values, _ = _cpu.run_call(call, flat, grads if any(grads) else False, out)
    if not direct:
        into[...] = np.asarray(values).reshape(into.shape)


def _callback(
    call: Call, x64: bool, grads: tuple[bool, ...], arrays: Sequence[Any]
) -> tuple[Any, ...]:
    x = arrays[0]
    shape = x.shape[:-1] if call.rows else (() if call.total else x.shape)
    struct: Any = jax.ShapeDtypeStruct  # (untyped)
    out = [struct(shape, _value_dtype(call, np.dtype(x.dtype), x64))]
    for slot, on in zip(call.slots, grads, strict=True):
        a = arrays[slot]
        out.append(struct(a.shape if on else (0,), a.dtype))
    key = (call, x64, grads)
    name = _xla_ffi.target(key, functools.partial(_run, call, x64, grads))
    result = jax.ffi.ffi_call(name, tuple(out), vmap_method="broadcast_all")(*arrays)
    return tuple(result)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _op(spec: tuple[Call, bool], *arrays: Any) -> Any:
    call, x64 = spec
    return _callback(call, x64, (False,) * len(call.slots), arrays)[0]


def _op_jvp(
    spec: tuple[Call, bool], primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Any, Any]:
    """The forward kernel with the gradients of the operands that have a
    tangent; the output's tangent is their product with the tangents (linear:
    JAX transposes it for reverse mode)."""
    call, x64 = spec
    moving = tuple(not isinstance(tangents[s], SymbolicZero) for s in call.slots)
    for i, t in enumerate(tangents):
        if i not in call.slots and not isinstance(t, SymbolicZero):
            raise TypeError(
                "anyloss: the fused kernel has no derivative with respect to this "
                "argument; compute the loss with `anyloss.kernels.generic()`"
            )
    values, *grads = _callback(call, x64, moving, primals)
    out = None
    for slot, on, g in zip(call.slots, moving, grads, strict=True):
        if not on:
            continue
        term = g * tangents[slot]
        if call.rows:
            term = jnp.sum(term, axis=-1)
        elif call.total:
            term = jnp.sum(term)
        term = term.astype(values.dtype)
        out = term if out is None else out + term
    if out is None:
        out = jnp.zeros_like(values)
    return values, out


_op.defjvp(_op_jvp, symbolic_zeros=True)


def _forward(loss: str) -> Any:
    def forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
        plan = _cpu.plan(loss, reduction, args, _describe)
        assert plan is not None
        arrays = []
        for o in plan.operands:
            if o.name is None:
                arrays.append(jnp.zeros((0,), dtype=o.dtype))
            else:
                a = jnp.asarray(args[o.name])
                if o.dtype.kind == "f":  # (indices: int64 in the callback, x64 or not)
                    a = a.astype(o.dtype)
                arrays.append(jnp.reshape(a, o.shape))
        return _cpu.loss_values(plan, _op((Call.of(plan), _x64()), *arrays))

    return forward


#: The kernels JAX takes by default (without x64, from :data:`MIN_SIZE
#: <anyloss.kernels._config.MIN_SIZE>` elements): those measured faster than
#: XLA's code of the generic path, forward+backward under ``jax.jit``
#: (``benchmarks/run.py --libs jax``, 2-core CPU; anyloss / JAX's own loss,
#: generic path -> kernel, runs of one day vary by 10-30%): kl_div 5.7-6.9
#: -> 1.3-1.5, log-cosh 6.4 -> 1.4-1.6, index cross entropy 1.6-1.8 ->
#: 1.2-1.3, BCE 0.97-1.02 -> 0.5-0.6 (probabilities 1.22 -> 0.9-1.0),
#: Huber 0.96 -> 0.6, margin ranking 1.15 -> 0.95, cosine 1.28 -> 0.63,
#: triplet 4.8 -> 0.75. Not: probability-target cross entropy (1.48 against
#: 1.05-1.65), nll (1.0 -> 1.3), l1 and mse (1.0, 1.25 -> 1.3, 1.5), hinge
#: (about 1.0 both): one fused XLA loop is as fast as memory allows, and the
#: kernel's gradient then costs one more pass.
FAST_FLOAT32 = frozenset(
    {
        "ce_index",
        "kl_div",
        "bce_logits",
        "bce_probs",
        "smooth_l1",
        "huber",
        "log_cosh",
        "margin_ranking",
        "gaussian_nll",
        "cosine",
        "cosine_dd",
        "triplet",
        "triplet_dd",
    }
)


def _applies(loss: str) -> Any:
    def applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
        plan = _cpu.plan(loss, reduction, args, _describe)
        if plan is None or not _cpu.has_gradient(plan.kernel):
            return False  # under jax.grad the call would fail: none at all
        if mode() == "force":
            return True
        if _x64() or plan.kernel not in FAST_FLOAT32:
            return False  # (under x64 the generic code is float64 and fused)
        # an operand without a gradient kernel would raise under jax.grad
        return all(o.grad or o.name is None or o.dtype.kind != "f" for o in plan.operands)

    return applies


for _loss in _cpu.PLANNERS:
    _registry.register(
        _registry.Entry(
            _loss,
            "jax",
            "cpu",
            "numba",
            _applies(_loss),
            _forward(_loss),
            priority=10,
        )
    )

"""JAX's entries: the numba kernels on CPU arrays, with their gradients.

The kernel runs in a ``jax.pure_callback`` (so ``jax.jit`` compiles around
it) inside a ``jax.custom_jvp``: the primal call runs the forward kernel
alone; under differentiation the gradient kernel runs instead, for the
operands that have a tangent, and the output's tangent is the (linear)
product of its gradients with the tangents, which JAX transposes for
reverse mode: ``jax.grad``, ``jax.jvp`` and ``jax.vmap`` work, and a second
derivative raises (a callback has no derivative). The callback declares
``vmap_method="broadcast_all"`` and takes the batch itself: rows and
elements of the batch are more rows and elements of one kernel call; sums
(``'mean'``/``'sum'``) are taken per batch item.

Without x64, the per-row losses and the sums come back in float32 (rounded
once from the kernel's float64).

These entries apply with ``ANYLOSS_KERNELS=force``, and without x64 for the
losses of :data:`EXACT_FLOAT32`. A callback sees its operands as
``jax.Array`` objects, and reading one as NumPy copies it (0.3 s for
4096x32000 float32 logits here), its results are copied back, and XLA's own
fused code is fast on the CPU: measured forward+backward under ``jax.jit``,
the callback path took 3.3x JAX's native losses (geometric mean over the
benchmark's cases) where the generic code, made of ``jnp`` operations that
XLA fuses, takes about 1.5x. They wait for a zero-copy call (XLA's FFI) to
pay off.

Without x64, though, the generic code of the losses whose terms cancel
carries float32 double words (:mod:`anyloss._compensated`), and XLA's CPU
code for that arithmetic is slow: it does not fuse the dozens of operations
into one loop (each TwoSum's shared values split the fusion, and a chain
fused into a reduction runs unvectorized). The kernels compute in float64
and round once, as exact, and faster (16384x256 float32, 2-core CPU,
``jax.jit``, forward / ``jax.grad`` of the mean in ms, two runs; on the
benchmark's sizes, forward+backward, 65536x256: cosine 116 against 111,
triplet 155 against 338, Gaussian NLL on 2**24 elements 205 against 527):

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

from . import _cpu, _registry
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
    call: Call, x64: bool, grads: tuple[bool, ...], *arrays: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The callback: the kernel on (possibly batched) NumPy arrays."""
    arrays = tuple(np.asarray(a) for a in arrays)
    batch = arrays[0].shape[: arrays[0].ndim - (2 if call.rows else 1)]
    if batch and call.total:  # one sum per batch item
        items = [_run(call, x64, grads, *(a[i] for a in arrays)) for i in np.ndindex(*batch)]
        return tuple(
            np.stack([item[k] for item in items]).reshape(batch + items[0][k].shape)
            for k in range(len(items[0]))
        )
    flat = [a.reshape((-1, *a.shape[len(batch) + 1 :])) for a in arrays]
    values, outs = _cpu.run_call(call, flat, grads)
    shape = arrays[0].shape
    values = np.asarray(values, dtype=_value_dtype(call, arrays[0].dtype, x64))
    values = values.reshape(shape[:-1] if call.rows else (() if call.total else shape))
    if not any(grads):
        outs = [np.empty(0, dtype=arrays[s].dtype) for s in call.slots]
    grads_out = (
        g.reshape(arrays[s].shape) if on else np.empty((*batch, 0), dtype=arrays[s].dtype)
        for s, g, on in zip(call.slots, outs, grads, strict=True)
    )
    return (values, *grads_out)


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
    result = jax.pure_callback(
        functools.partial(_run, call, x64, grads),
        tuple(out),
        *arrays,
        vmap_method="broadcast_all",
    )
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


#: The losses whose kernels JAX takes without x64 (see the module docstring):
#: their generic float32 code is double-word arithmetic, and their gradient
#: kernels cover every float operand (a call differentiated with respect to
#: an operand a kernel cannot would raise, where the generic code does not).
#: Not ``kl_div_loss``: on 4096x32000 log-probabilities the callback's copies
#: cost more than XLA's double words (2.1 s against 1.6 forward+backward),
#: though on 16384x256 it is 10x faster (the table above).
EXACT_FLOAT32 = frozenset(
    {"cosine_similarity_loss", "triplet_loss", "gaussian_nll_loss", "log_cosh_loss"}
)


def _applies(loss: str) -> Any:
    def applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
        # see the module docstring: XLA is faster, but for double words
        if mode() != "force" and (loss not in EXACT_FLOAT32 or _x64()):
            return False
        # no gradient kernel: under jax.grad the call would fail, so none at all
        plan = _cpu.plan(loss, reduction, args, _describe)
        return plan is not None and _cpu.has_gradient(plan.kernel)

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

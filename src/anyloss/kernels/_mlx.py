"""MLX's entries: the numba kernels on arrays of MLX's CPU device, with their
gradients.

The kernel runs inside an ``mx.custom_function`` whose ``vjp`` runs the
gradient kernel on the primals and multiplies its gradients by the
cotangent (MLX hands a custom function's vjp the primals, not residuals of
its forward, so the gradient pass reads the inputs once more). The arrays
are read through NumPy views, which needs their values: inside
``mx.compile`` and ``mx.vmap``, where reading a value is an error, the
entries do not apply and the generic code runs. The per-row losses and the
sums come back in float32 (rounded once from the kernel's float64), MLX's
computing dtype.

Imported by the registry the first time a call on MLX arrays asks.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import numpy as np

from . import _cpu, _registry
from ._cpu import Call, Info

__all__: list[str] = []

_NP_DTYPES = _cpu.numpy_dtypes(
    [
        mx.float32,
        mx.float64,
        mx.int64,
        mx.int32,
        mx.int16,
        mx.int8,
        mx.uint8,
        mx.uint16,
        mx.uint32,
    ],
)
_MX_DTYPES = {v: k for k, v in _NP_DTYPES.items()}


def _describe(x: Any) -> Info | None:
    if not isinstance(x, mx.array):
        return None
    return Info(tuple(x.shape), _NP_DTYPES.get(x.dtype), True)


def _readable(x: Any) -> bool:
    """Whether ``x``'s values can be read here (not inside ``mx.compile`` or
    ``mx.vmap``, where evaluating an array raises)."""
    try:
        np.array(x, copy=False)
    except (ValueError, RuntimeError):
        return False
    return True


def _run(call: Call, grads: bool, arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    flat = [np.array(a, copy=False) for a in arrays]
    values, outs = _cpu.run_call(call, flat, grads)
    if call.rows or call.total:
        values = np.asarray(values, dtype=np.float32)
    return (mx.array(values), *(mx.array(g) for g in outs))


@functools.lru_cache(maxsize=256)
def _function(call: Call) -> Any:
    """The custom function of one kernel call signature."""

    @mx.custom_function
    def f(*arrays: Any) -> Any:
        return _run(call, False, arrays)[0]

    @f.vjp
    def f_vjp(primals: tuple[Any, ...], cotangent: Any, output: Any) -> tuple[Any, ...]:
        _, *grads = _run(call, True, tuple(primals))
        out = [mx.zeros_like(p) for p in primals]
        for slot, g in zip(call.slots, grads, strict=True):
            scale = cotangent.astype(g.dtype)
            if call.rows:
                scale = mx.expand_dims(scale, -1)
            out[slot] = g * scale
        return tuple(out)

    return f


def _forward(loss: str) -> Any:
    def forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
        plan = _cpu.plan(loss, reduction, args, _describe)
        assert plan is not None
        arrays = []
        for o in plan.operands:
            if o.name is None:
                arrays.append(mx.zeros((0,), dtype=_MX_DTYPES[o.dtype]))
            else:
                a = args[o.name]
                if o.dtype.kind == "f":
                    a = a.astype(_MX_DTYPES[o.dtype])
                arrays.append(mx.reshape(a, o.shape))
        return _cpu.loss_values(plan, _function(Call.of(plan))(*arrays))

    return forward


#: Kernels MLX's own code beats: ``nll``'s gradient kernel writes every
#: entry of the gradient and MLX then scales it, where MLX's generic
#: backward is one scatter (forward+backward, 4096x32000 float32, 2-core
#: CPU: 394 ms against 199; its forward is a gather either way).
_SLOWER = frozenset({"nll"})


def _applies(loss: str) -> Any:
    def applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
        plan = _cpu.plan(loss, reduction, args, _describe)
        if plan is None or not _cpu.has_gradient(plan.kernel) or plan.kernel in _SLOWER:
            return False
        return all(_readable(args[o.name]) for o in plan.operands if o.name is not None)

    return applies


for _loss in _cpu.PLANNERS:
    _registry.register(
        _registry.Entry(
            _loss,
            "mlx",
            "cpu",
            "numba",
            _applies(_loss),
            _forward(_loss),
            priority=10,
        )
    )

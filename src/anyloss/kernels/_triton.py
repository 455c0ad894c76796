"""PyTorch's Triton entries: fused kernels for CUDA tensors, with gradients.

This module is their base: the switch that routes CPU tensors through them,
the helpers the families share, and :func:`register`. Each family has two
modules, the kernels (device code) and their ops (host code)::

    _triton_softmax.py / _triton_softmax_ops.py          cross entropy, ...
    _triton_elementwise.py / _triton_elementwise_ops.py  BCE, log-cosh, ...
    _triton_rows.py / _triton_rows_ops.py                cosine similarity, ...

Each kernel runs inside a ``torch.library.custom_op`` (``torch.compile`` sees
one op, not a graph break) whose autograd formula calls the backward kernel,
which recomputes what it needs from the inputs and a few floats per row
saved by the forward: nothing of the inputs' size is kept besides them.

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

The ops modules are imported by the registry with the other torch entries;
Triton itself is imported on the first call that takes an entry.
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

__all__ = ["available", "on_cpu", "register"]


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


FLOATS = (torch.float32, torch.float16, torch.bfloat16)


@functools.cache
def available() -> bool:
    """Whether Triton is installed (the ``gpu`` extra)."""
    return importlib.util.find_spec("triton") is not None


@functools.cache
def kernel_module(module: str) -> Any:
    """A kernel module (``"_triton_softmax"``, ...), imported on first use (it
    imports Triton)."""
    return importlib.import_module(f"{__package__}.{module}")


def like(x: torch.Tensor) -> torch.Tensor:
    """An uninitialized contiguous tensor like ``x``."""
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def gradients(
    a: torch.Tensor, b: torch.Tensor, want_a: bool, want_b: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient buffers like ``a`` and ``b``, empty where not wanted (a custom
    op's outputs are tensors)."""
    return like(a) if want_a else a.new_empty(0), like(b) if want_b else b.new_empty(0)


def block(n: int, most: int) -> int:
    """The power of two at least ``n``, at most ``most``: a kernel's block."""
    import triton

    return int(min(triton.next_power_of_2(max(n, 1)), most))


def launched(kernel: str) -> None:
    """Called before every launch (the tests count the kernels that ran)."""


def no_second_derivative() -> None:
    """Raise where a backward pass is being differentiated (``create_graph=True``)."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "anyloss: a second derivative (create_graph=True) through a Triton kernel is "
            "not supported; compute this loss with its generic code: "
            "`with anyloss.kernels.generic(): loss = ...`"
        )


def transformed(x: torch.Tensor) -> bool:
    """Whether ``x`` is inside a ``torch.func`` transform (the ops have no
    rule for them: the generic code runs)."""
    return not torch.compiler.is_compiling() and torch._C._functorch.is_functorch_wrapped_tensor(x)


def _when_switched_on(applies: Callable[..., bool]) -> Callable[..., bool]:
    def on_cpu_applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
        return _Switch.on_cpu and applies(be, reduction, args)

    return on_cpu_applies


def register(loss: str, applies: Callable[..., bool], forward: Callable[..., Any]) -> None:
    """Register a Triton entry of ``loss`` for CUDA tensors, and for CPU
    tensors when switched on (:func:`on_cpu`); nothing without Triton."""
    if not available():
        return
    for device, when in (("cuda", applies), ("cpu", _when_switched_on(applies))):
        _registry.register(_registry.Entry(loss, "torch", device, "triton", when, forward, 20))

"""The one registry of fast paths.

An :class:`Entry` says which loss it computes, on which array library and
device type, and when it applies. Its ``forward`` returns the loss values
*before* the reduction: one per element or per row (the class axis
removed), or, for ``'mean'``/``'sum'`` where the entry can sum in the same
pass, a :class:`~anyloss._reduction.Total`. The reduction, and everything a
loss does after its per-row values (weights, class weights, ignored rows),
stays in the loss module and :func:`anyloss._reduction.reduce`: one code
path for every entry and for the generic code.

Entries that compute a gradient wire it into the library's autodiff
themselves (a ``torch.library.custom_op`` with ``register_autograd``, ...):
what their forward returns is differentiable like any array of that library.

A loss asks :func:`lookup` once, through :func:`anyloss.kernels.values` or
:func:`anyloss.kernels.fast`. Entries are tried in the order of their
``priority`` (highest first); the first whose ``applies`` is true runs. A
kernel for a new device is a new entry in a new module: the loss modules do
not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Entry", "entries", "lookup", "register"]


@dataclass(frozen=True)
class Entry:
    """One fast path.

    Attributes:
        loss: The loss's public name (``"cross_entropy"``).
        library: The :attr:`Backend.name <anyloss._backend.Backend.name>` it
            takes (``"numpy"``, ``"torch"``, ...).
        device: The device type it runs on (``"cpu"``, ``"cuda"``), or
            ``"*"`` for any.
        name: What the entry is, for tests and docs (``"numba"``,
            ``"torch.nn.functional"``).
        applies: ``applies(be, reduction, args) -> bool``: whether the entry
            computes this call. Reads shapes, dtypes and parameters only.
        forward: ``forward(be, reduction, args)``: the loss values (see the
            module docstring), differentiable where the library is.
        priority: Higher first.
    """

    loss: str
    library: str
    device: str
    name: str
    applies: Callable[[Any, str, Mapping[str, Any]], bool]
    forward: Callable[[Any, str, Mapping[str, Any]], Any]
    priority: int = 0


_ENTRIES: dict[tuple[str, str], list[Entry]] = {}

# The module that registers each library's entries, imported the first time a
# call on that library asks (a torch tensor in hand means torch is imported).
_PROVIDERS = {
    "numpy": ("anyloss.kernels._cpu",),
    "torch": ("anyloss.kernels._cpu", "anyloss.kernels._torch"),
    "jax": ("anyloss.kernels._cpu", "anyloss.kernels._jax"),
    "mlx": ("anyloss.kernels._cpu", "anyloss.kernels._mlx"),
}
_loaded: set[str] = set()


def register(entry: Entry) -> Entry:
    """Add ``entry`` (kept in order of priority, then of registration)."""
    bucket = _ENTRIES.setdefault((entry.loss, entry.library), [])
    bucket.append(entry)
    bucket.sort(key=lambda e: -e.priority)
    return entry


def _load(library: str) -> None:
    if library in _loaded:
        return
    for module in _PROVIDERS.get(library, ()):
        importlib.import_module(module)
    _loaded.add(library)


def entries(loss: str | None = None, library: str | None = None) -> list[Entry]:
    """The registered entries (every library's providers imported)."""
    for lib in _PROVIDERS if library is None else (library,):
        _load(lib)
    return [
        e
        for (name, lib), bucket in _ENTRIES.items()
        for e in bucket
        if (loss is None or name == loss) and (library is None or lib == library)
    ]


def _device_type(be: Any) -> str:
    """``"cpu"``, ``"cuda"``, ... (MLX: ``"cpu"`` or ``"gpu"``, the default
    device; JAX under ``jit``, where arrays have no device: the default
    backend)."""
    if be.name == "mlx":
        import mlx.core as mx

        return "cpu" if mx.default_device() == mx.cpu else "gpu"
    device = be.device
    if be.name == "jax":
        if device is None:
            import jax

            return str(jax.default_backend())
        return str(getattr(device, "platform", "cpu"))
    if device is None:
        return "cpu"
    return str(getattr(device, "type", device)).partition(":")[0].lower()


def lookup(be: Any, loss: str, reduction: str, args: Mapping[str, Any]) -> Entry | None:
    """The first entry that applies to this call, or None."""
    _load(be.name)
    bucket = _ENTRIES.get((loss, be.name))
    if not bucket:
        return None
    device = _device_type(be)
    for entry in bucket:
        if entry.device in ("*", device) and entry.applies(be, reduction, args):
            return entry
    return None

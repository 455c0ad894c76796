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


# The libraries with entries. Each library's entries are registered by its own
# module, imported the first time a call on that library asks (a torch tensor
# in hand means torch is imported). One dict of entries by loss per library,
# created here once: a compiled torch graph is guarded on what it read (torch's
# dict), so registering the JAX entries later does not force it to recompile.
_LIBRARIES = ("numpy", "torch", "jax", "mlx")
_TABLES: dict[str, dict[str, list[Entry]]] = {lib: {} for lib in _LIBRARIES}


def register(entry: Entry) -> Entry:
    """Add ``entry`` (kept in order of priority, then of registration)."""
    table = _TABLES.setdefault(entry.library, {})  # (a library without providers)
    bucket = table.setdefault(entry.loss, [])
    bucket.append(entry)
    bucket.sort(key=lambda e: -e.priority)
    return entry


def _load(library: str) -> None:
    # Import statements every time (a dict lookup once imported), no "loaded"
    # flag nor ``in sys.modules``: TorchDynamo follows an ``import`` inside a
    # compiled function (it refuses ``importlib.import_module``), and a flag set
    # while tracing the first call, or the size of sys.modules, would be a guard
    # that fails on the next call.
    if library not in _LIBRARIES:
        return
    from . import _cpu  # noqa: F401  (the planners; NumPy's entries)

    if library == "torch":
        from . import _torch, _triton_elementwise_ops, _triton_rows_ops, _triton_softmax_ops  # noqa: F401
    elif library == "jax":
        from . import _jax, _jax_linear  # noqa: F401
    elif library == "mlx":
        from . import _mlx  # noqa: F401


def entries(loss: str | None = None, library: str | None = None) -> list[Entry]:
    """The registered entries (every library's providers imported)."""
    for lib in _LIBRARIES if library is None else (library,):
        _load(lib)
    return [
        e
        for lib, table in list(_TABLES.items())
        for name, bucket in table.items()
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
    table = _TABLES.get(be.name)
    bucket = None if table is None else table.get(loss)
    if not bucket:
        return None
    device = _device_type(be)
    for entry in bucket:
        if entry.device in ("*", device) and entry.applies(be, reduction, args):
            return entry
    return None

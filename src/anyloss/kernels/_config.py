"""Whether the numba kernels run: the switches, the size threshold, the
lazy import of numba."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

__all__ = [
    "BLOCK",
    "MIN_NS_PER_THREAD",
    "MIN_SIZE",
    "enabled",
    "generic",
    "installed",
    "load",
    "mode",
]

#: Smallest primary input (in elements) for which a kernel is used.
MIN_SIZE = 1 << 15
#: Estimated single-thread work (ns) below which a call is not split over
#: threads: handing work to a pool thread costs about 100 us here.
MIN_NS_PER_THREAD = 300_000
#: Elements per partial sum of the elementwise kernels (``_numba.BLOCK``).
BLOCK = 4096

_OFF = ("0", "off", "false", "no")
_MODE = os.environ.get("ANYLOSS_KERNELS", "on").strip().lower()

_impl: Any = None  # the _numba module once imported; False where numba is missing


def _numba_installed() -> bool:
    """Whether numba can be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):  # a broken or hidden numba
        return False


# Decided once, at import: a value that never changes afterwards is one that a
# torch.compile graph can read without being recompiled when it does.
_available = _numba_installed()
_lock = threading.Lock()
_local = threading.local()  # .off: no kernel in this thread (see generic())


def mode() -> str:
    """``ANYLOSS_KERNELS`` as read at import: ``on``, ``off`` or ``force``."""
    return _MODE


def enabled() -> bool:
    """Whether a kernel may run in this thread now, without importing numba:
    not switched off, not inside :func:`generic`, numba installed (and, once
    imported, importable)."""
    return _available and _MODE not in _OFF and not getattr(_local, "off", False)


def installed() -> bool:
    """Whether numba is installed (as found at import; False once importing
    it failed), without importing it."""
    return _available


def load() -> Any:
    """The ``_numba`` module (imported on first use), or False."""
    global _impl
    if _impl is None:
        with _lock:
            if _impl is None:
                try:
                    from . import _numba
                except Exception:  # numba missing or broken: the generic path
                    global _available
                    _impl = _available = False
                else:
                    _impl = _numba
    return _impl


@contextlib.contextmanager
def generic() -> Iterator[None]:
    """Within it, no kernel runs in this thread: the generic path.

    For a caller that knows a kernel cannot pay off, e.g. the CLI on an input
    too small to repay numba's import and first load in a new process (1-2 s).
    """
    before = getattr(_local, "off", False)
    _local.off = True
    try:
        yield
    finally:
        _local.off = before

"""Fused NumPy kernels (numba) for the losses, used when they pay off.

The generic implementation is the reference; a kernel is an optional fast
path for NumPy inputs, chosen by :func:`run`, which a loss calls after it has
validated and converted its arguments. ``run`` returns the finished result,
or ``None`` when no kernel applies, and then the loss runs its generic code.

``run`` returns ``None`` (in microseconds, without importing numba) unless:

- numba is installed (``pip install anyloss[fast]``) and the kernels are not
  switched off (``ANYLOSS_KERNELS=off``);
- every array argument is a C-contiguous ``numpy.ndarray`` of one floating
  dtype, float32 or float64 (class indices: any integer dtype; weights: any
  array of the right shape, cast to the input dtype);
- the primary input has at least :data:`MIN_SIZE` elements (2**15; ignored
  with ``ANYLOSS_KERNELS=force`` or ``_force=True``);
- the loss and its parameters are covered:

  ============================  ==============================================
  loss                          covered
  ============================  ==============================================
  ``cross_entropy``             class axis last (``axis=-1`` or ``ndim-1``);
                                index targets (shape without the axis) or
                                probability targets (shape of the logits);
                                any ``label_smoothing``; ``weights`` or None
  ``nll_loss``                  axis last; targets of the shape without axis
  ``binary_cross_entropy``      ``with_logits`` True and False; ``weights``
  ``kl_div_loss``               axis last; inputs and targets of one shape
  ``l1_loss``, ``mse_loss``,    inputs of one shape (no broadcasting); any
  ``smooth_l1_loss``,           ``beta`` / ``delta``
  ``huber_loss``,
  ``log_cosh_loss``,
  ``hinge_loss``
  ``margin_ranking_loss``       three inputs of one shape; any ``margin``
  ``gaussian_nll_loss``         three inputs of one shape; ``full``, ``eps``
  ``cosine_similarity_loss``    axis last (``axis=1`` on 2-D); one shape
  ``triplet_loss``              axis last; one shape; ``p`` in {1, 2}
  ============================  ==============================================

  every reduction (``'none'``, ``'mean'``, ``'sum'``).

The result has the dtype of the primary input (a 0-d array for ``'mean'``
and ``'sum'``); float32 results are within 4 ulp of the exact value (the
same stable formulas as the generic code, evaluated in float64; cross
entropy on float32 logits: float32 exponentials summed per block of 64,
blocks and rows in float64). So the losses the generic path computes in
float64 (``kl_div``, ``gaussian_nll``, ``hinge``, ``margin_ranking``,
``cosine_similarity``, ``triplet``) can be given their float32 arrays as
they are. For float64 inputs, which have no wider type,
``cosine_similarity``, ``triplet`` and ``gaussian_nll`` run in double-double
(error-free products and sums, as their generic code): a few ulp, and the
same answer as the generic path for C- and Fortran-ordered arrays. Sums are
taken per block and added in a fixed order: results do not depend on the
number of threads (``ANYLOSS_NUM_THREADS``, default: the CPUs this process
may use). A call is split over threads when its estimated single-thread
time exceeds :data:`MIN_NS_PER_THREAD` per thread.

numba is imported on the first call that runs a kernel (about 0.6 s), never
by ``import anyloss``. Each kernel is compiled on its first use for a dtype
(about 1-3 s) and the machine code is cached on disk (``__pycache__`` beside
the sources, else numba's user cache dir, or ``NUMBA_CACHE_DIR``), so a new
process loads it in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["MIN_SIZE", "available", "fast", "generic", "run"]

#: Smallest primary input (in elements) for which a kernel is used.
MIN_SIZE = 1 << 15
#: Estimated single-thread work (ns) below which a call is not split over
#: threads: handing work to a pool thread costs about 100 us here.
MIN_NS_PER_THREAD = 300_000

# Single-thread cost per element read (ns, measured on a 2-core AVX2 VM),
# used only to decide how many threads a call gets.
_NS_PER_ELEMENT = {
    "ce_index": 0.8,
    "ce_probs": 0.6,
    "nll": 10.0,  # per row
    "kl_div": 1.5,
    "cosine": 0.4,
    "triplet": 0.5,
    "cosine_dd": 4.0,
    "triplet_dd": 6.0,
    "bce_logits": 2.0,
    "bce_probs": 2.0,
    "log_cosh": 3.0,
    "gaussian_nll": 1.5,
}
_NS_DEFAULT = 0.3  # the cheap elementwise losses (memory bound)

_MODE = os.environ.get("ANYLOSS_KERNELS", "on").strip().lower()
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_REDUCTIONS = ("none", "mean", "sum")

_impl: Any = None  # the _numba module once imported; False where numba is missing
_lock = threading.Lock()
_local = threading.local()  # .off: run() returns None in this thread (see generic())


def _load() -> Any:
    global _impl
    if _impl is None:
        with _lock:
            if _impl is None:
                try:
                    from . import _numba
                except Exception:  # numba missing or broken: the generic path
                    _impl = False
                else:
                    _impl = _numba
    return _impl


def available() -> bool:
    """Whether the kernels can run (numba importable, not switched off)."""
    return _MODE not in ("0", "off", "false", "no") and bool(_load())


@contextlib.contextmanager
def generic() -> Iterator[None]:
    """Within it, :func:`run` returns None in this thread: the generic path.

    For a caller that knows a kernel cannot pay off, e.g. the CLI on an input
    too small to repay numba's import and first load in a new process (1-2 s).
    """
    before = getattr(_local, "off", False)
    _local.off = True
    try:
        yield
    finally:
        _local.off = before


# -- threads ------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None


def _reset_pool() -> None:  # in a forked child the pool's threads are gone
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool)


def _num_threads() -> int:
    env = os.environ.get("ANYLOSS_NUM_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(
                f"the environment variable ANYLOSS_NUM_THREADS={env!r} is not an "
                f"integer; set it to the number of threads the kernels may use "
                f"(e.g. ANYLOSS_NUM_THREADS=2), or unset it to use every CPU"
            ) from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _parallel(kernel: Callable[..., Any], args: tuple[Any, ...], items: int, cost: float) -> None:
    """``kernel(*args, lo, hi)`` over ``range(items)`` split among threads;
    ``cost`` is the estimated single-thread time of one item in ns."""
    global _pool
    parts = min(_num_threads(), max(1, int(items * cost) // MIN_NS_PER_THREAD), items)
    if parts <= 1:
        kernel(*args, 0, items)
        return
    bounds = [items * i // parts for i in range(parts + 1)]
    pool = _pool
    if pool is None or pool._max_workers < parts - 1:
        with _lock:
            pool = _pool = ThreadPoolExecutor(parts - 1, thread_name_prefix="anyloss")
    futures = [pool.submit(kernel, *args, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    kernel(*args, bounds[0], bounds[1])
    for f in futures:
        f.result()


# -- argument checks ----------------------------------------------------------


def _float_arrays(*arrays: Any) -> bool:
    first = arrays[0]
    if type(first) is not np.ndarray or first.dtype not in _FLOATS:
        return False
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != first.dtype or not a.flags.c_contiguous:
            return False
    return True


def _big(x: np.ndarray, kw: dict[str, Any]) -> bool:
    return x.size >= MIN_SIZE or _MODE == "force" or bool(kw.get("_force"))


def _last_axis(axis: Any, ndim: int) -> bool:
    return isinstance(axis, (int, np.integer)) and ndim >= 1 and int(axis) in (-1, ndim - 1)


def _weights(w: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """The weights as a contiguous array of ``dtype``, or None if unusable."""
    if type(w) is not np.ndarray or w.shape != shape or w.dtype.kind not in "biuf":
        return None
    return np.ascontiguousarray(w, dtype=dtype)


def _indices(t: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if type(t) is not np.ndarray or t.shape != shape or t.dtype.kind not in "iu":
        return None
    return np.ascontiguousarray(t, dtype=np.int64).reshape(-1)


def _finish(values: np.ndarray, reduction: str, dtype: np.dtype, shape: tuple[int, ...]) -> Any:
    """float64 per-example losses -> the result in ``dtype``."""
    if reduction == "none":
        return values.astype(dtype).reshape(shape)
    total = values.sum()
    if reduction == "mean":
        total = total / values.size
    return np.asarray(total, dtype=dtype)


def _finish_blocks(part: np.ndarray, n: int, reduction: str, dtype: np.dtype) -> Any:
    total = part.sum()
    if reduction == "mean":
        total = total / n
    return np.asarray(total, dtype=dtype)


# -- per loss -------------------------------------------------------------------


def _rows(
    name: str, reduction: str, x: np.ndarray, others: tuple[Any, ...], weights: Any = None
) -> Any:
    """A kernel over the rows of ``x`` (class axis last), one float64 per row."""
    k = _load()
    if not k:
        return None
    classes = x.shape[-1]
    shape = x.shape[:-1]
    rows = x.size // classes if classes else 0
    if rows == 0:
        return None
    w = None
    if weights is not None:
        w = _weights(weights, shape, np.dtype(np.float64))
        if w is None:
            return None
    out = np.empty(rows, dtype=np.float64)
    x2 = x.reshape(rows, classes)
    per_row = _NS_PER_ELEMENT[name] * (1 if name == "nll" else classes * (1 + len(others) // 3))
    _parallel(getattr(k, name), (x2, *others, out), rows, per_row)
    if w is not None:
        out *= w.reshape(-1)
    return _finish(out, reduction, x.dtype, shape)


def _cross_entropy(reduction: str, kw: dict[str, Any]) -> Any:
    x, t = kw["logits"], kw["targets"]
    if not (_float_arrays(x) and _big(x, kw) and _last_axis(kw.get("axis", -1), x.ndim)):
        return None
    smoothing = float(kw.get("label_smoothing", 0.0))
    if type(t) is not np.ndarray:
        return None
    if t.ndim == x.ndim:
        if not (_float_arrays(x, t) and t.shape == x.shape):
            return None
        t2 = t.reshape(-1, x.shape[-1]) if x.shape[-1] else t
        return _rows("ce_probs", reduction, x, (t2, smoothing), kw.get("weights"))
    idx = _indices(t, x.shape[:-1])
    if idx is None:
        return None
    return _rows("ce_index", reduction, x, (idx, smoothing), kw.get("weights"))


def _nll_loss(reduction: str, kw: dict[str, Any]) -> Any:
    x = kw["inputs"]
    if not (_float_arrays(x) and _big(x, kw) and _last_axis(kw.get("axis", -1), x.ndim)):
        return None
    idx = _indices(kw["targets"], x.shape[:-1])
    if idx is None:
        return None
    return _rows("nll", reduction, x, (idx,))


def _kl_div_loss(reduction: str, kw: dict[str, Any]) -> Any:
    x, t = kw["inputs"], kw["targets"]
    if not (_float_arrays(x, t) and x.shape == t.shape and _big(x, kw)):
        return None
    if not _last_axis(kw.get("axis", -1), x.ndim):
        return None
    return _rows("kl_div", reduction, x, (t.reshape(-1, x.shape[-1]) if x.shape[-1] else t,))


def _cosine_similarity_loss(reduction: str, kw: dict[str, Any]) -> Any:
    a, b = kw["x1"], kw["x2"]
    if not (_float_arrays(a, b) and a.shape == b.shape and _big(a, kw)):
        return None
    if not _last_axis(kw.get("axis", 1), a.ndim):
        return None
    eps = float(kw.get("eps", 1e-8))
    name = "cosine_dd" if a.dtype == np.float64 else "cosine"
    return _rows(name, reduction, a, (b.reshape(-1, a.shape[-1]) if a.shape[-1] else b, eps))


def _triplet_loss(reduction: str, kw: dict[str, Any]) -> Any:
    a, p, n = kw["anchors"], kw["positives"], kw["negatives"]
    if not (_float_arrays(a, p, n) and a.shape == p.shape == n.shape and _big(a, kw)):
        return None
    degree = float(kw.get("p", 2))
    if degree not in (1.0, 2.0) or not _last_axis(kw.get("axis", -1), a.ndim):
        return None
    c = a.shape[-1]
    if c == 0:
        return None
    margin, eps = float(kw.get("margin", 1.0)), float(kw.get("eps", 1e-6))
    others = (p.reshape(-1, c), n.reshape(-1, c), degree, margin, eps)
    return _rows("triplet_dd" if a.dtype == np.float64 else "triplet", reduction, a, others)


def _elementwise(
    name: str, reduction: str, arrays: tuple[np.ndarray, ...], params: tuple[float, ...]
) -> Any:
    k = _load()
    if not k:
        return None
    x = arrays[0]
    n = x.size
    flat = tuple(a.reshape(-1) for a in arrays)
    blocks = -(-n // k.BLOCK)
    if reduction == "none":
        out = np.empty(n, dtype=x.dtype)
        part = np.empty(0, dtype=np.float64)
    else:
        out = np.empty(0, dtype=x.dtype)
        part = np.empty(blocks, dtype=np.float64)
    per_block = _NS_PER_ELEMENT.get(name, _NS_DEFAULT) * k.BLOCK * len(arrays) / 2
    _parallel(getattr(k, name), (*flat, *params, out, part), blocks, per_block)
    if reduction == "none":
        return out.reshape(x.shape)
    return _finish_blocks(part, n, reduction, x.dtype)


def _pair(
    names: tuple[str, str], kernel: str, *params: str
) -> Callable[[str, dict[str, Any]], Any]:
    defaults = {"beta": 1.0, "delta": 1.0}

    def dispatch(reduction: str, kw: dict[str, Any]) -> Any:
        x, y = kw[names[0]], kw[names[1]]
        if not (_float_arrays(x, y) and x.shape == y.shape and x.size and _big(x, kw)):
            return None
        values = tuple(float(kw.get(p, defaults[p])) for p in params)
        name = kernel
        if name == "smooth_l1" and values[0] == 0.0:
            name, values = "l1", ()
        return _elementwise(name, reduction, (x, y), values)

    return dispatch


def _binary_cross_entropy(reduction: str, kw: dict[str, Any]) -> Any:
    x, t = kw["inputs"], kw["targets"]
    if not (_float_arrays(x, t) and x.shape == t.shape and x.size and _big(x, kw)):
        return None
    w = kw.get("weights")
    if w is None:
        w = x[:0].reshape(-1)
    else:
        w = _weights(w, x.shape, x.dtype)
        if w is None:
            return None
    name = "bce_logits" if kw.get("with_logits", True) else "bce_probs"
    return _elementwise(name, reduction, (x, t, w), ())


def _margin_ranking_loss(reduction: str, kw: dict[str, Any]) -> Any:
    a, b, y = kw["inputs1"], kw["inputs2"], kw["targets"]
    if not (_float_arrays(a, b, y) and a.shape == b.shape == y.shape and a.size and _big(a, kw)):
        return None
    return _elementwise("margin_ranking", reduction, (a, b, y), (float(kw.get("margin", 0.0)),))


def _gaussian_nll_loss(reduction: str, kw: dict[str, Any]) -> Any:
    mu, y, v = kw["inputs"], kw["targets"], kw["vars"]
    if not (_float_arrays(mu, y, v) and mu.shape == y.shape == v.shape and mu.size):
        return None
    if not _big(mu, kw):
        return None
    # 0.5 log(2 pi) correctly rounded (the kernel adds the rest for float64)
    const = 0.9189385332046728 if kw.get("full", False) else 0.0
    return _elementwise("gaussian_nll", reduction, (mu, y, v), (float(kw.get("eps", 1e-6)), const))


_DISPATCH: dict[str, Callable[[str, dict[str, Any]], Any]] = {
    "cross_entropy": _cross_entropy,
    "nll_loss": _nll_loss,
    "binary_cross_entropy": _binary_cross_entropy,
    "kl_div_loss": _kl_div_loss,
    "l1_loss": _pair(("predictions", "targets"), "l1"),
    "mse_loss": _pair(("predictions", "targets"), "mse"),
    "smooth_l1_loss": _pair(("predictions", "targets"), "smooth_l1", "beta"),
    "huber_loss": _pair(("inputs", "targets"), "huber", "delta"),
    "log_cosh_loss": _pair(("inputs", "targets"), "log_cosh"),
    "hinge_loss": _pair(("inputs", "targets"), "hinge"),
    "margin_ranking_loss": _margin_ranking_loss,
    "gaussian_nll_loss": _gaussian_nll_loss,
    "cosine_similarity_loss": _cosine_similarity_loss,
    "triplet_loss": _triplet_loss,
}


def run(loss: str, reduction: str, /, **kw: Any) -> np.ndarray | None:
    """The result of ``loss`` by a fused kernel, or None where none applies.

    Args:
        loss: The loss's name (``"cross_entropy"``, ...).
        reduction: ``'none'``, ``'mean'`` or ``'sum'``.
        **kw: The loss's arguments by their names in the spec, already
            validated and converted (NumPy arrays in the compute dtype,
            integer class indices as given). ``_force=True`` ignores
            :data:`MIN_SIZE`.

    Returns:
        The finished result (a 0-d array for ``'mean'``/``'sum'``), in the
        dtype of the primary input, or None.
    """
    if _MODE in ("0", "off", "false", "no") or reduction not in _REDUCTIONS:
        return None
    if getattr(_local, "off", False):
        return None
    dispatch = _DISPATCH.get(loss)
    if dispatch is None or _impl is False:
        return None
    if "numba" not in sys.modules and _impl is None and not _numba_installed():
        return None
    return dispatch(reduction, kw)  # type: ignore[no-any-return]


def fast(be: Any, loss: str, reduction: str, /, **kw: Any) -> Any:
    """What a loss calls: the finished result of its kernel on NumPy inputs
    (cast to the caller's dtype, e.g. back to float16), or None.

    ``be`` is the call's :class:`anyloss._backend.Backend`; on any library but
    NumPy this returns None at once.
    """
    if be.name != "numpy":
        return None
    out = run(loss, reduction, **kw)
    return None if out is None else be.finish(out)


_installed: bool | None = None


def _numba_installed() -> bool:
    """Whether numba can be imported, without importing it."""
    global _installed, _impl
    if _installed is None:
        import importlib.util

        _installed = importlib.util.find_spec("numba") is not None
        if not _installed:
            _impl = False
    return _installed

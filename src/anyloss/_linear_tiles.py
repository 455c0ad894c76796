"""The numba side of :func:`anyloss.linear_cross_entropy` on the CPU.

:mod:`anyloss._linear_chunks` forms each tile of logits with the library's
own product (NumPy's BLAS, PyTorch's), and reduces it with the library's
elementwise operations: on a 2-core CPU those took 206 ms of the 435 of a
4096 x 256 -> 32000 float32 forward on NumPy, several passes over each tile.
Where the tile is a float32 array in CPU memory (NumPy, PyTorch on the CPU)
and there are no class weights, two numba kernels (``linear_ce_stats32``,
``linear_ce_grad32`` in :mod:`anyloss.kernels._numba`) do that work instead,
on a NumPy view of the tile (no copy), in one read of it:

- the forward folds each tile into the rows' running statistics (the
  maximum, the sum of the exponentials below it, the target's logit and,
  with label smoothing, the sum of ``m - x``), in float64;
- the backward turns the tile into its gradient in place, which the
  library's products then multiply into ``d hidden`` and ``d weight``.

The tile is written into one buffer per chunk (``matmul(out=)``), not a new
array per block. The statistics stay float64 NumPy arrays between the two
passes of one call; the caller gets them (and the losses) in the library's
arrays, in the compute dtype.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._backend import Backend

if TYPE_CHECKING:
    from ._linear_chunks import Options

__all__ = [
    "Stats",
    "buffer",
    "first_pass",
    "kernels_for",
    "library",
    "numpy_stats",
    "planned",
    "row_loss",
    "tile",
    "tile_grad",
]

# single-thread ns per logit, only to split a tile's rows among threads
_NS_PER_LOGIT = 1.0


def _applies(be: Backend, w: Any, cw: Any, rows: int) -> bool:
    """The conditions of :func:`kernels_for` but numba's presence."""
    from .kernels import MIN_SIZE, _config

    if cw is not None or rows * w.shape[0] < MIN_SIZE or not _config.enabled():
        return False
    if be.name == "numpy":
        return bool(w.dtype == np.float32)
    if be.name == "torch":
        torch = sys.modules["torch"]
        return bool(w.dtype == torch.float32 and w.device.type == "cpu")
    return False


def kernels_for(be: Backend, w: Any, cw: Any, rows: int) -> Any:
    """The numba kernel module where the tile kernels apply to a call with
    the compute-dtype weight ``w`` and ``rows`` rows (float32 NumPy arrays
    or CPU torch tensors, no class weights, logits of at least
    :data:`~anyloss.kernels.MIN_SIZE` entries, the kernels switched on),
    else None. Imports numba (not for use under ``torch.compile``'s
    tracing: the custom ops call it when they run)."""
    from .kernels import _config

    return (_config.load() or None) if _applies(be, w, cw, rows) else None


def planned(be: Backend, w: Any, cw: Any, rows: int) -> bool:
    """Whether the tile kernels are expected to reduce the tiles of a call
    (NumPy and CPU torch: :func:`kernels_for`'s conditions, numba installed;
    JAX on the CPU: its FFI entry, :mod:`anyloss.kernels._jax_linear`, runs
    the NumPy code), which then plans wider tiles
    (:func:`anyloss._linear_chunks.plan`). Imports nothing: it runs where
    ``torch.compile`` traces."""
    from .kernels import _config, _registry

    if be.name != "jax":
        return _applies(be, w, cw, rows) and _config.installed()
    return (
        cw is None
        and str(w.dtype) == "float32"
        and _registry._device_type(be) == "cpu"
        and _config.enabled()
    )


def _view(be: Backend, x: Any) -> np.ndarray:
    """A NumPy view of ``x`` (no copy)."""
    out: np.ndarray = x if be.name == "numpy" else x.detach().numpy()
    return out


def library(be: Backend, x: np.ndarray) -> Any:
    """The NumPy array ``x`` as an array of the call's library (no copy)."""
    return x if be.name == "numpy" else sys.modules["torch"].from_numpy(x)


def _parallel(kernel: Any, args: tuple[Any, ...], rows: int, width: int) -> None:
    from .kernels import _cpu

    _cpu.parallel(kernel, args, rows, width * _NS_PER_LOGIT)


@dataclass
class Stats:
    """A chunk's per-row statistics (NumPy arrays; see the kernels)."""

    m: np.ndarray  # float32, the largest logit
    rest: np.ndarray  # float64, sum of exp(x - m) over all logits but one maximum
    target: np.ndarray | None = None  # float32, the target's logit
    below: np.ndarray | None = None  # float64, sum of (m - x), with label smoothing


def tile(be: Backend, h: Any, w: Any, b: Any, opt: Options, c0: int, c1: int, buf: Any) -> Any:
    """The (capped) logits of rows ``h`` for classes ``c0:c1``, written into
    the flat buffer ``buf``; returned as the library's array (its NumPy view
    is written by the kernels)."""
    rows = h.shape[0]
    out = buf[: rows * (c1 - c0)].reshape(rows, c1 - c0)
    full = c0 == 0 and c1 == w.shape[0]
    wc = w if full else w[c0:c1, :]
    if be.name == "numpy":
        np.matmul(h, wc.T, out=out)
    else:
        sys.modules["torch"].mm(h, wc.T, out=out)
    x = _view(be, out)
    if b is not None:
        x += _view(be, b)[c0:c1]
    if opt.softcap is not None:
        cap = np.float32(opt.softcap)
        np.divide(x, cap, out=x)
        np.tanh(x, out=x)
        np.multiply(x, cap, out=x)
    return out


def buffer(be: Backend, h: Any, opt: Options) -> Any:
    """A flat float32 buffer for one tile of the rows ``h``."""
    size = h.shape[0] * min(opt.block, opt.num_classes)
    if be.name == "numpy":
        return np.empty(size, np.float32)
    return sys.modules["torch"].empty(size, dtype=h.dtype)


def first_pass(
    be: Backend, k: Any, h: Any, w: Any, b: Any, t: Any, opt: Options, buf: Any
) -> tuple[Stats, Any]:
    """The statistics of the float32 rows ``h`` over every block, and the
    last tile (the whole vocabulary's where it is one block); the tiles are
    written into ``buf`` (:func:`buffer`)."""
    rows = h.shape[0]
    st = Stats(
        np.full(rows, -np.inf, np.float32),
        np.zeros(rows),
        np.zeros(rows, np.float32),
        np.zeros(rows if opt.smoothing else 0),
    )
    tn = _view(be, t)
    x = None
    for c0 in range(0, opt.num_classes, opt.block):
        c1 = min(opt.num_classes, c0 + opt.block)
        x = tile(be, h, w, b, opt, c0, c1, buf)
        args = (_view(be, x), c0, tn, opt.smoothing, st.m, st.rest, st.target, st.below)
        _parallel(k.linear_ce_stats32, args, rows, c1 - c0)
    return st, x


def row_loss(st: Stats, opt: Options) -> np.ndarray:
    """The rows' losses (float32) from their statistics (float64 arithmetic:
    the module docstring of :mod:`anyloss._linear_chunks`)."""
    assert st.target is not None
    off = np.log1p(st.rest)
    loss = off + (st.m.astype(np.float64) - st.target)
    s = opt.smoothing
    if s:
        assert st.below is not None
        loss = loss * (1.0 - s) + (off + st.below / opt.num_classes) * s
    out: np.ndarray = loss.astype(np.float32)
    return out


def numpy_stats(be: Backend, m: Any, rest: Any) -> Stats:
    """Saved statistics (the library's arrays) as the kernels take them."""
    return Stats(_view(be, m), _view(be, rest).astype(np.float64))


def tile_grad(
    be: Backend, k: Any, x: Any, st: Stats, t: Any, coef: Any, opt: Options, c0: int
) -> Any:
    """``coef * d loss / d x`` for the tile ``x`` (classes from ``c0``), in
    place; returns ``x``."""
    xn = _view(be, x)
    rows, width = xn.shape
    cap = 0.0 if opt.softcap is None else float(opt.softcap)
    args = (
        xn,
        c0,
        _view(be, t),
        st.m,
        st.rest,
        _view(be, coef),
        opt.smoothing,
        opt.num_classes,
        cap,
    )
    _parallel(k.linear_ce_grad32, args, rows, width)
    return x

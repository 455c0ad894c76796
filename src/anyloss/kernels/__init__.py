"""Fast paths for the losses: fused numba kernels, and the libraries' own
fused losses where they compute exactly the same thing.

The generic implementation is the reference; a fast path is optional. Every
fast path is an entry of one registry (``_registry.py``): a loss, after it
has validated and converted its arguments, asks :func:`values` (the loss
before the reduction, for the loss module to finish) or :func:`fast` (the
finished result, reduced by :func:`anyloss._reduction.reduce`) once; None
means that no entry applies, and the loss runs its generic code.

============================  =====================================================
module                        entries
============================  =====================================================
``_cpu.py``                   numba kernels on NumPy arrays (forward only)
``_torch.py``                 numba kernels on CPU tensors, gradients through the
                              ``anyloss::numba_kernel`` custom op (one op to
                              ``torch.compile``); ``torch.nn.functional``'s
                              ``l1/mse/smooth_l1/huber_loss`` on any device,
                              where the kernels do not apply
``_jax.py``                   numba kernels on CPU arrays, in an XLA FFI call
                              (``_xla_ffi.py``: XLA's buffers, no copy) under
                              ``jax.custom_jvp`` (``jit``, ``grad``, ``jvp``,
                              ``vmap``)
``_mlx.py``                   numba kernels on MLX's CPU device, through
                              ``mx.custom_function`` with a ``vjp`` (outside
                              ``mx.compile``/``mx.vmap``: the generic code there)
============================  =====================================================

With a gradient wanted, the kernel's gradient variant writes the loss and
its derivatives in the same pass (cross entropy: ``softmax - one_hot``, once
the row's logsumexp is known), and the backward pass only scales them by the
incoming gradient. Without one, the forward kernel alone runs. An argument
that needs a gradient the kernel does not give (probability targets,
``nll_loss``) sends the call to the generic code; so do ``torch.func``'s
transforms. A second derivative through a kernel raises (PyTorch, JAX): use
:func:`generic` for it.

The numba kernels (``_cpu.py`` plans and runs them, ``_numba.py`` holds
them) apply, in microseconds and without importing numba when they do not,
unless:

- numba is installed (``pip install anyloss[fast]``) and the kernels are not
  switched off (``ANYLOSS_KERNELS=off``);
- every array argument is a C-contiguous CPU array of one floating dtype,
  float32 or float64 (class indices: any integer dtype; weights: any array
  of the right shape, cast to the input dtype);
- the primary input has at least :data:`MIN_SIZE` elements (2**15; ignored
  with ``ANYLOSS_KERNELS=force`` or ``_force=True``);
- no :func:`generic` block is active in this thread (it turns off every
  entry, ``torch.nn.functional``'s too);
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

import math
from typing import Any

import numpy as np

from .._reduction import reduce
from . import _config, _registry
from ._config import MIN_NS_PER_THREAD, MIN_SIZE, enabled, generic, load

__all__ = ["MIN_NS_PER_THREAD", "MIN_SIZE", "available", "fast", "generic", "run", "values"]

_REDUCTIONS = ("none", "mean", "sum")


def available() -> bool:
    """Whether the numba kernels can run (numba importable, not switched off)."""
    return enabled() and bool(load())


def values(be: Any, loss: str, reduction: str, /, **args: Any) -> Any:
    """The loss values of the first registry entry that applies, or None.

    Args:
        be: The call's :class:`anyloss._backend.Backend`.
        loss: The loss's name (``"cross_entropy"``, ...).
        reduction: The reduction the caller will apply: ``'none'`` asks for
            the values per element (per row for the losses with a class or
            feature axis); ``'mean'``/``'sum'`` lets an entry return a
            :class:`~anyloss._reduction.Total` instead.
        **args: The loss's arguments by their names in the spec, validated
            and converted (arrays of the call's library in the compute
            dtype; integer class indices as given). ``_force=True`` ignores
            :data:`MIN_SIZE`.

    Returns:
        The values (differentiable in the call's library; float64 per row,
        or the input dtype per element), a ``Total``, or None.
    """
    if reduction not in _REDUCTIONS or getattr(_config._local, "off", False):
        return None
    entry = _registry.lookup(be, loss, reduction, args)
    if entry is None:
        return None
    return entry.forward(be, reduction, args)


def fast(be: Any, loss: str, reduction: str, /, **args: Any) -> Any:
    """What a loss calls: the finished result (reduced, in the caller's dtype)
    of the first registry entry that applies, or None."""
    out = values(be, loss, reduction, **args)
    return None if out is None else reduce(be, out, reduction)


def run(loss: str, reduction: str, /, **args: Any) -> Any:
    """The result of ``loss`` on NumPy arguments by a numba kernel, or None.

    ``args`` as for :func:`values`. The finished result (a 0-d array for
    ``'mean'``/``'sum'``) in the dtype of the primary input.
    """
    if reduction not in _REDUCTIONS or not enabled():
        return None
    from . import _cpu

    p = _cpu.plan(loss, reduction, args, _cpu.describe_numpy)
    if p is None:
        return None
    w = args.get("weights") if p.rows else None  # per-row weights (elementwise: in the kernel)
    if w is not None and (
        type(w) is not np.ndarray or w.shape != p.shape or w.dtype.kind not in "biuf"
    ):
        return None
    out, _ = _cpu.execute(p, _cpu.numpy_operands(p, args))
    if w is not None:
        out = out * w.reshape(-1).astype(np.float64)
    if not p.total:
        out = out.reshape(p.shape)
        if reduction == "none":
            return out.astype(p.dtype)
        out = np.asarray(out.sum())
    if reduction == "mean":
        out = out / math.prod(p.shape)
    return np.asarray(out, dtype=p.dtype)

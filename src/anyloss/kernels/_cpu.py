"""The numba kernels on CPU memory: when one applies, and how it is run.

A *planner* per loss reads the call's arguments (shapes, dtypes, layout and
parameters only, through a ``describe`` function that each library's adapter
supplies) and returns a :class:`Plan`: which kernel, on which operands
reshaped how, with which parameters. :func:`execute` runs a plan on NumPy
arrays, split over threads, with or without the gradients; the NumPy
entries below and the adapters of the other libraries (``_torch.py``) share
both.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .._backend import torch_compiling
from .._reduction import Total
from . import _registry
from ._config import BLOCK, MIN_NS_PER_THREAD, MIN_SIZE, enabled, installed, load, mode

Planner = Callable[[str, Mapping[str, Any], "Describe"], "Plan | None"]

__all__ = [
    "Call",
    "Info",
    "Operand",
    "Plan",
    "run_call",
    "describe_numpy",
    "execute",
    "parallel",
    "plan",
]

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
_GRAD_COST = 2.0  # the gradient pass writes as much as the inputs it reads

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INT64 = np.dtype(np.int64)

# -- threads ------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _reset_pool() -> None:  # in a forked child the pool's threads are gone
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool)


def num_threads() -> int:
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


def parallel(kernel: Callable[..., Any], args: tuple[Any, ...], items: int, cost: float) -> None:
    """``kernel(*args, lo, hi)`` over ``range(items)`` split among threads;
    ``cost`` is the estimated single-thread time of one item in ns."""
    global _pool
    parts = min(num_threads(), max(1, int(items * cost) // MIN_NS_PER_THREAD), items)
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


# -- plans --------------------------------------------------------------------


@dataclass(frozen=True)
class Info:
    """What a planner may know of an array argument."""

    shape: tuple[int, ...]
    dtype: np.dtype | None  # None: a dtype no kernel takes
    contiguous: bool  # C order

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Operand:
    """One array argument of a kernel, made from the loss's argument ``name``
    (None: an empty array) reshaped to ``shape`` and cast to ``dtype``.
    ``grad``: the gradient kernel has an output for it."""

    name: str | None
    shape: tuple[int, ...]
    dtype: np.dtype
    grad: bool


@dataclass(frozen=True)
class Plan:
    """A kernel call: ``kernel(*operands, *params, outputs..., lo, hi)``.

    ``rows``: the kernel writes one float64 per row of its first operand (a
    2-D (rows, classes) array) into ``out``; else it is elementwise over 1-D
    operands and writes each loss (in the input dtype) into ``out``, or, with
    ``total``, the float64 sums of blocks of ``BLOCK`` into ``part``.
    ``shape``: the shape of the loss values (without ``total``).
    The gradient kernel (``kernel + "_grad"``) takes one more output per
    operand with ``grad`` (after ``out``, and ``part``), each the operand's
    shape or empty when not wanted.
    """

    kernel: str
    rows: bool
    operands: tuple[Operand, ...]
    params: tuple[float, ...]
    shape: tuple[int, ...]
    total: bool
    cost: float  # ns per row (rows) or per block (elements), single thread

    @property
    def dtype(self) -> np.dtype:
        return self.operands[0].dtype

    def grad_slots(self) -> tuple[int, ...]:
        return tuple(i for i, o in enumerate(self.operands) if o.grad)


Describe = Callable[[Any], "Info | None"]


def describe_numpy(x: Any) -> Info | None:
    if type(x) is not np.ndarray:
        return None
    dtype = x.dtype if x.dtype.kind in "biuf" else None
    return Info(x.shape, dtype, bool(x.flags.c_contiguous))


def _floats(infos: Sequence[Info | None]) -> bool:
    """Arrays of one float dtype (float32 or float64), C-contiguous."""
    first = infos[0]
    if first is None or first.dtype not in _FLOATS:
        return False
    return all(i is not None and i.dtype == first.dtype and i.contiguous for i in infos)


def _big(info: Info, args: Mapping[str, Any]) -> bool:
    return info.size >= MIN_SIZE or mode() == "force" or bool(args.get("_force"))


def _last_axis(axis: Any, ndim: int) -> bool:
    return isinstance(axis, int | np.integer) and ndim >= 1 and int(axis) in (-1, ndim - 1)


def _rows(
    kernel: str,
    first: tuple[str, Info],
    others: Sequence[tuple[str, Info, np.dtype | None, bool]],
    params: tuple[float, ...],
) -> Plan | None:
    """A row kernel: ``first`` is (rows..., classes); each other operand is
    (name, info, dtype or None for the first's, has a gradient slot)."""
    name, info = first
    classes = info.shape[-1]
    rows = info.size // classes if classes else 0
    if rows == 0:
        return None
    dtype = info.dtype
    assert dtype is not None
    ops = [Operand(name, (rows, classes), dtype, True)]
    for other, oinfo, odtype, grad in others:
        shape = (rows, classes) if oinfo.shape == info.shape else (rows,)
        ops.append(Operand(other, shape, dtype if odtype is None else odtype, grad))
    per_row = cost(kernel, True, classes, len(ops))
    return Plan(kernel, True, tuple(ops), params, info.shape[:-1], False, per_row)


# the gradient kernels that take both dtypes of a loss with two forward kernels
_GRAD_KERNELS = {"cosine_dd": "cosine_grad", "triplet_dd": "triplet_grad"}


def numpy_dtypes(dtypes: Sequence[Any]) -> dict[Any, np.dtype]:
    """Another library's dtypes (torch's, MLX's) -> the NumPy dtype of the same
    name, for the kernels' operands (``torch.float32`` -> ``float32``)."""
    return {d: np.dtype(str(d).rpartition(".")[2]) for d in dtypes}


def grad_kernel(kernel: str) -> str:
    """The name of the gradient kernel of the forward ``kernel``."""
    return _GRAD_KERNELS.get(kernel, kernel + "_grad")


#: The forward kernels that have a gradient kernel (:func:`grad_kernel`),
#: listed so that asking needs no numba import (under ``torch.compile`` an
#: import is a graph break); the registry tests check it against ``_numba``.
WITH_GRADIENT = frozenset(
    {
        "bce_logits",
        "bce_probs",
        "ce_index",
        "ce_probs",
        "cosine",
        "cosine_dd",
        "gaussian_nll",
        "hinge",
        "huber",
        "kl_div",
        "l1",
        "log_cosh",
        "margin_ranking",
        "mse",
        "nll",
        "smooth_l1",
        "triplet",
        "triplet_dd",
    }
)


def has_gradient(kernel: str) -> bool:
    """Whether the forward ``kernel`` has a gradient kernel."""
    return kernel in WITH_GRADIENT


def cost(kernel: str, rows: bool, classes: int, operands: int) -> float:
    """Estimated single-thread ns per row (``rows``) or per block of
    ``BLOCK`` elements, used only to choose the number of threads."""
    ns = _NS_PER_ELEMENT.get(kernel, _NS_DEFAULT)
    if not rows:
        return ns * BLOCK * operands / 2
    return ns * (1 if kernel == "nll" else classes * (1 + operands // 3))


def _indices(info: Info | None, shape: tuple[int, ...]) -> bool:
    return (
        info is not None
        and info.shape == shape
        and info.dtype is not None
        and (info.dtype.kind in "iu")
    )


def _plan_cross_entropy(reduction: str, args: Mapping[str, Any], d: Describe) -> Plan | None:
    x, t = d(args["logits"]), d(args["targets"])
    if x is None or t is None or not (_floats([x]) and _big(x, args)):
        return None
    if not _last_axis(args.get("axis", -1), len(x.shape)):
        return None
    params = (float(args.get("label_smoothing", 0.0)),)
    if len(t.shape) == len(x.shape):
        if not (_floats([x, t]) and t.shape == x.shape):
            return None
        return _rows("ce_probs", ("logits", x), [("targets", t, None, False)], params)
    if not _indices(t, x.shape[:-1]):
        return None
    return _rows("ce_index", ("logits", x), [("targets", t, _INT64, False)], params)


def _plan_nll_loss(reduction: str, args: Mapping[str, Any], d: Describe) -> Plan | None:
    x, t = d(args["inputs"]), d(args["targets"])
    if x is None or not (_floats([x]) and _big(x, args)):
        return None
    if not (_last_axis(args.get("axis", -1), len(x.shape)) and _indices(t, x.shape[:-1])):
        return None
    assert t is not None
    return _rows("nll", ("inputs", x), [("targets", t, _INT64, False)], ())


def _plan_kl_div_loss(reduction: str, args: Mapping[str, Any], d: Describe) -> Plan | None:
    x, t = d(args["inputs"]), d(args["targets"])
    if x is None or t is None or not (_floats([x, t]) and x.shape == t.shape and _big(x, args)):
        return None
    if not _last_axis(args.get("axis", -1), len(x.shape)):
        return None
    return _rows("kl_div", ("inputs", x), [("targets", t, None, True)], ())


def _plan_cosine_similarity_loss(
    reduction: str, args: Mapping[str, Any], d: Describe
) -> Plan | None:
    a, b = d(args["x1"]), d(args["x2"])
    if a is None or b is None or not (_floats([a, b]) and a.shape == b.shape and _big(a, args)):
        return None
    if not _last_axis(args.get("axis", 1), len(a.shape)):
        return None
    kernel = "cosine_dd" if a.dtype == np.float64 else "cosine"
    return _rows(kernel, ("x1", a), [("x2", b, None, True)], (float(args.get("eps", 1e-8)),))


def _plan_triplet_loss(reduction: str, args: Mapping[str, Any], d: Describe) -> Plan | None:
    a, p, n = d(args["anchors"]), d(args["positives"]), d(args["negatives"])
    if a is None or p is None or n is None:
        return None
    if not (_floats([a, p, n]) and a.shape == p.shape == n.shape and _big(a, args)):
        return None
    degree = float(args.get("p", 2))
    if degree not in (1.0, 2.0) or not _last_axis(args.get("axis", -1), len(a.shape)):
        return None
    if a.shape[-1] == 0:
        return None
    params = (degree, float(args.get("margin", 1.0)), float(args.get("eps", 1e-6)))
    kernel = "triplet_dd" if a.dtype == np.float64 else "triplet"
    others = [("positives", p, None, True), ("negatives", n, None, True)]
    return _rows(kernel, ("anchors", a), others, params)


def _elementwise(
    kernel: str,
    reduction: str,
    operands: Sequence[tuple[str | None, Info | None]],
    params: tuple[float, ...],
    grads: Sequence[bool] | None = None,
) -> Plan:
    first = operands[0][1]
    assert first is not None and first.dtype is not None
    n = first.size
    ops = tuple(
        Operand(
            name,
            (n,) if name is not None else (0,),
            first.dtype,
            True if grads is None else grads[i],
        )
        for i, (name, _) in enumerate(operands)
    )
    per_block = cost(kernel, False, 0, len(operands))
    return Plan(kernel, False, ops, params, first.shape, reduction != "none", per_block)


def _pair(names: tuple[str, str], kernel: str, *params: str) -> Callable[..., Plan | None]:
    defaults = {"beta": 1.0, "delta": 1.0}

    def planner(reduction: str, args: Mapping[str, Any], d: Describe) -> Plan | None:
        x, y = d(args[names[0]]), d(args[names[1]])
        if x is None or y is None or not (_floats([x, y]) and x.shape == y.shape):
            return None
        if not (x.size and _big(x, args)):
            return None
        values = tuple(float(args.get(p, defaults[p])) for p in params)
        name = kernel
        if name == "smooth_l1" and values[0] == 0.0:
            name, values = "l1", ()
        return _elementwise(name, reduction, ((names[0], x), (names[1], y)), values)

    return planner


def _plan_binary_cross_entropy(
    reduction: str, args: Mapping[str, Any], d: Describe
) -> Plan | None:
    x, t = d(args["inputs"]), d(args["targets"])
    if x is None or t is None or not (_floats([x, t]) and x.shape == t.shape):
        return None
    if not (x.size and _big(x, args)):
        return None
    w = args.get("weights")
    operands: list[tuple[str | None, Info | None]] = [("inputs", x), ("targets", t)]
    if w is None:
        operands.append((None, None))
    else:
        wi = d(w)
        if wi is None or wi.shape != x.shape or wi.dtype is None:
            return None
        operands.append(("weights", wi))
    kernel = "bce_logits" if args.get("with_logits", True) else "bce_probs"
    return _elementwise(kernel, reduction, operands, (), (True, True, False))


def _plan_margin_ranking_loss(reduction: str, args: Mapping[str, Any], d: Describe) -> Plan | None:
    a, b, y = d(args["inputs1"]), d(args["inputs2"]), d(args["targets"])
    if a is None or b is None or y is None:
        return None
    if not (_floats([a, b, y]) and a.shape == b.shape == y.shape and a.size and _big(a, args)):
        return None
    operands = (("inputs1", a), ("inputs2", b), ("targets", y))
    return _elementwise("margin_ranking", reduction, operands, (float(args.get("margin", 0.0)),))


def _plan_gaussian_nll_loss(reduction: str, args: Mapping[str, Any], d: Describe) -> Plan | None:
    mu, y, v = d(args["inputs"]), d(args["targets"]), d(args["vars"])
    if mu is None or y is None or v is None:
        return None
    if not (_floats([mu, y, v]) and mu.shape == y.shape == v.shape and mu.size):
        return None
    if not _big(mu, args):
        return None
    # 0.5 log(2 pi) correctly rounded (the kernel adds the rest for float64)
    const = 0.9189385332046728 if args.get("full", False) else 0.0
    operands = (("inputs", mu), ("targets", y), ("vars", v))
    return _elementwise("gaussian_nll", reduction, operands, (float(args.get("eps", 1e-6)), const))


PLANNERS: dict[str, Planner] = {
    "cross_entropy": _plan_cross_entropy,
    "nll_loss": _plan_nll_loss,
    "binary_cross_entropy": _plan_binary_cross_entropy,
    "kl_div_loss": _plan_kl_div_loss,
    "l1_loss": _pair(("predictions", "targets"), "l1"),
    "mse_loss": _pair(("predictions", "targets"), "mse"),
    "smooth_l1_loss": _pair(("predictions", "targets"), "smooth_l1", "beta"),
    "huber_loss": _pair(("inputs", "targets"), "huber", "delta"),
    "log_cosh_loss": _pair(("inputs", "targets"), "log_cosh"),
    "hinge_loss": _pair(("inputs", "targets"), "hinge"),
    "margin_ranking_loss": _plan_margin_ranking_loss,
    "gaussian_nll_loss": _plan_gaussian_nll_loss,
    "cosine_similarity_loss": _plan_cosine_similarity_loss,
    "triplet_loss": _plan_triplet_loss,
}


def plan(loss: str, reduction: str, args: Mapping[str, Any], describe: Describe) -> Plan | None:
    """The kernel call for this loss call, or None where no kernel applies
    (numba is not imported here)."""
    planner = PLANNERS.get(loss)
    if planner is None or not enabled():
        return None
    p = planner(reduction, args, describe)
    if p is None:
        return None
    # Traced by torch.compile, numba is not imported (a lock and an import are
    # graph breaks, and a global set while tracing is a guard that fails on
    # the next call): the op imports it when it runs.
    return p if (installed() if torch_compiling() else load()) else None


# -- running a plan -------------------------------------------------------------


def execute(
    p: Plan,
    arrays: Sequence[np.ndarray],
    grads: Sequence[bool] = (),
    out: Sequence[np.ndarray | None] = (),
) -> tuple[Any, list[np.ndarray]]:
    """Run ``p`` on ``arrays`` (its operands, as NumPy arrays of their
    shapes and dtypes). ``grads``: per gradient slot, whether to compute it
    (empty: the forward kernel alone).

    Returns the loss values (float64 per row; per element in the input dtype,
    flat; or, for ``total``, the float64 sum as a 0-d array) and the
    gradients (the operands' shapes; empty arrays where not wanted).

    ``out``: where to write them instead of new arrays (C-contiguous, of the
    shapes and dtypes returned; None where a new one will do): the values
    (not for ``total``), then one per gradient slot.
    """
    k = load()
    want = bool(grads) and any(grads)
    slots = p.grad_slots()
    given = list(out) + [None] * (1 + len(slots) - len(out))
    outs = []
    if want:
        for slot, on, into in zip(slots, grads, given[1:], strict=True):
            a = arrays[slot]
            if on and into is not None:
                outs.append(into.reshape(a.shape))
            else:
                outs.append(np.empty(a.shape if on else (0,) * a.ndim, dtype=a.dtype))
    kernel = getattr(k, grad_kernel(p.kernel) if want else p.kernel)
    cost = p.cost * (_GRAD_COST if want else 1.0)
    if want and p.kernel == "nll":  # reads one entry per row, writes every one
        cost = _NS_DEFAULT * arrays[0].shape[1]
    if p.rows:
        rows = arrays[0].shape[0]
        values = np.empty(rows, dtype=np.float64) if given[0] is None else given[0]
        parallel(kernel, (*arrays, *p.params, values, *outs), rows, cost)
        return values, outs
    n = arrays[0].size
    blocks = -(-n // k.BLOCK)
    if p.total:
        values = np.empty(0, dtype=p.dtype)
        part = np.empty(blocks, dtype=np.float64)
    else:
        values = np.empty(n, dtype=p.dtype) if given[0] is None else given[0].reshape(n)
        part = np.empty(0, dtype=np.float64)
    parallel(kernel, (*arrays, *p.params, values, part, *outs), blocks, cost)
    if p.total:
        return np.asarray(part.sum()), outs
    return values, outs


class Call(NamedTuple):
    """A plan as a library's operator receives it: no argument names, the
    operands given as arrays (hashable: a JAX static argument)."""

    kernel: str
    rows: bool
    total: bool
    params: tuple[float, ...]
    slots: tuple[int, ...]

    @classmethod
    def of(cls, p: Plan) -> Call:
        return cls(p.kernel, p.rows, p.total, p.params, p.grad_slots())


def run_call(
    call: Call,
    arrays: Sequence[np.ndarray],
    grads: bool | Sequence[bool],
    out: Sequence[np.ndarray | None] = (),
) -> tuple[Any, list[np.ndarray]]:
    """:func:`execute` for ``call`` on NumPy ``arrays`` (integer ones are
    made int64, every one C-contiguous); ``grads``: every gradient or none,
    or one flag per gradient slot; ``out`` as :func:`execute` takes it."""
    flat = [
        np.ascontiguousarray(a, dtype=np.int64 if a.dtype.kind in "iub" else a.dtype)
        for a in arrays
    ]
    ops = tuple(Operand(None, f.shape, f.dtype, i in call.slots) for i, f in enumerate(flat))
    per = cost(call.kernel, call.rows, flat[0].shape[-1] if call.rows else 0, len(flat))
    p = Plan(call.kernel, call.rows, ops, call.params, (), call.total, per)
    if isinstance(grads, bool):
        grads = (grads,) * len(call.slots)
    wanted = tuple(grads) if any(grads) else ()
    return execute(p, flat, wanted, out) if out else execute(p, flat, wanted)


def numpy_operands(p: Plan, args: Mapping[str, Any]) -> list[np.ndarray]:
    """The operands of ``p`` from NumPy arguments (views where possible)."""
    out = []
    for o in p.operands:
        if o.name is None:
            out.append(np.empty(0, dtype=o.dtype))
        else:
            a = np.ascontiguousarray(args[o.name], dtype=o.dtype)
            out.append(a.reshape(o.shape))
    return out


def loss_values(p: Plan, values: Any) -> Any:
    """What an entry returns from the kernel's ``values`` (an array of any
    library): the Total, or the values in the shape of the loss."""
    if p.total:
        return Total(values, math.prod(p.shape))
    return values.reshape(p.shape)


# -- the NumPy entries ----------------------------------------------------------


def _numpy_applies(loss: str) -> Callable[[Any, str, Mapping[str, Any]], bool]:
    def applies(be: Any, reduction: str, args: Mapping[str, Any]) -> bool:
        return plan(loss, reduction, args, describe_numpy) is not None

    return applies


def _numpy_forward(loss: str) -> Callable[[Any, str, Mapping[str, Any]], Any]:
    def forward(be: Any, reduction: str, args: Mapping[str, Any]) -> Any:
        p = plan(loss, reduction, args, describe_numpy)
        assert p is not None
        values, _ = execute(p, numpy_operands(p, args))
        return loss_values(p, values)

    return forward


for _loss in PLANNERS:
    _registry.register(
        _registry.Entry(
            _loss,
            "numpy",
            "cpu",
            "numba",
            _numpy_applies(_loss),
            _numpy_forward(_loss),
            priority=10,
        )
    )

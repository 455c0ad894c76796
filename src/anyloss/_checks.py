"""Argument checks shared by the losses: reductions, axes, shapes, indices.

Every message names the function, the argument and the offending shapes or
values, and says what was expected.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from ._backend import AxisError, Backend, convert, torch_compiling

__all__ = [
    "Reduction",
    "check_reduction",
    "checked_class_indices",
    "class_indices",
    "flag",
    "float_arg",
    "normalize_axis",
    "no_nan",
    "number",
    "optional_int",
    "poison",
    "public",
    "same_shape",
    "shape_of",
    "unit_interval",
]

Reduction = Literal["none", "mean", "sum"]
"""The reductions every loss accepts: ``"none"``, ``"mean"`` or ``"sum"``."""

_REDUCTIONS: tuple[str, ...] = get_args(Reduction)

F = TypeVar("F", bound=Callable[..., Any])


# Keywords of other libraries (mostly PyTorch) that anyloss spells otherwise:
# a call that passes one of them to a loss without it gets a hint, not only
# Python's bare "unexpected keyword argument".
_ALIASES: dict[str, str] = {
    "weight": "per-example weights are weights=, per-class weights class_weights=",
    "sample_weight": "per-example weights are weights=",
    "reduce": "use reduction='none' | 'mean' | 'sum' (PyTorch's legacy reduce=/size_average=)",
    "size_average": (
        "use reduction='none' | 'mean' | 'sum' (PyTorch's legacy reduce=/size_average=)"
    ),
    "dim": "the axis is axis=",
    "pos_weight": "pos_weight is an option of binary_cross_entropy",
    "ignore_index": "ignore_index is an option of cross_entropy and nll_loss",
    "label_smoothing": "label_smoothing is an option of cross_entropy",
}


def _keyword_error(name: str, params: tuple[str, ...], given: Any) -> TypeError | None:
    """The TypeError for keywords ``name`` does not take, with a hint where one helps."""
    unknown = [k for k in given if k not in params]
    if not unknown:
        return None
    key = unknown[0]
    hint = _ALIASES.get(key)
    if key in ("weight", "sample_weight"):
        has = [k for k in ("weights", "class_weights") if k in params]
        hint = (
            f"{name}() takes no weights"
            if not has
            else ", ".join(
                f"{k}= (one per {'example' if k == 'weights' else 'class'})" for k in has
            )
        )
        hint = f"anyloss's weights are {hint}" if has else hint
    elif key == "weights" and "class_weights" in params:
        hint = f"{name}() takes per-class weights as class_weights="
    keywords = ", ".join(f"{k}=" for k in params)
    return TypeError(
        f"{name}() got an unexpected keyword argument {key!r}"
        f"{f'; {hint}' if hint else ''} (its keywords: {keywords})"
    )


def public(func: F) -> F:
    """Decorate a loss: NumPy's floating-point warnings silenced, and a hint for
    the keywords of other libraries (``weight=``, ``size_average=`` ...).

    The losses deliberately compute ``log(0)``, ``0 * inf`` and the like inside
    branches that ``where`` then discards; those are not the caller's business.
    The signature seen by :func:`inspect.signature` stays the loss's own.
    """
    params = tuple(
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )
    known = frozenset(params)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs and not known.issuperset(kwargs):
            error = _keyword_error(func.__name__, params, kwargs)
            if error is not None:
                raise error
        if torch_compiling():  # np.errstate is a graph break to TorchDynamo
            return func(*args, **kwargs)
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def flag(func: str, name: str, value: object) -> bool:
    """A boolean option: ``True``/``False`` or a NumPy bool (0-d bool arrays too).

    Anything else is a TypeError: ``with_logits="false"`` is a non-empty
    string, which Python would count as True.
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype == np.bool_:
        return bool(value)
    hint = ""
    if isinstance(value, str):
        hint = f"; the string {value!r} is not a bool, pass {name}=True or {name}=False"
    elif isinstance(value, numbers.Integral) and value in (0, 1):
        hint = f"; pass {name}={bool(value)}"
    raise TypeError(
        f"{func}(): {name} must be True or False, got {value!r:.60} ({type(value).__name__}){hint}"
    )


def check_reduction(func: str, reduction: object) -> None:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(
            f"{func}(): invalid reduction {reduction!r}; "
            f"must be one of {', '.join(map(repr, _REDUCTIONS))}"
        )


def number(
    func: str,
    name: str,
    value: object,
    *,
    low: float | None = None,
    low_open: bool = False,
    high: float | None = None,
    high_open: bool = False,
) -> float:
    """A real Python/NumPy number within ``[low, high]`` (ends open if asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        # 0-d arrays of any library are accepted through float()
        if getattr(value, "shape", None) == () or getattr(value, "ndim", None) == 0:
            try:
                value = float(value)  # type: ignore[arg-type]
            except Exception:
                raise TypeError(
                    f"{func}(): {name} must be a real number, got a traced or "
                    f"lazy array; pass a Python float"
                ) from None
        else:
            raise TypeError(f"{func}(): {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    bad = value != value  # NaN
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = (
            f"{'(' if low_open or low is None else '['}{lo}, "
            f"{hi}{')' if high_open or high is None else ']'}"
        )
        raise ValueError(f"{func}(): {name} must be in {interval}, got {value!r}")
    return value


def shape_of(x: Any) -> tuple[int, ...]:
    """``x.shape`` as a tuple; a dimension Dask does not know yet is NaN.

    Traced by ``torch.compile`` the sizes stay symbolic (``int()`` would
    specialize the graph to them and recompile it for every batch size).
    """
    shape = x.shape
    if type(shape) is not tuple and torch_compiling():  # a torch.Size, traced
        return tuple(shape)
    return tuple(int(d) if d == d else d for d in shape)


def _dims_match(a: float, b: float) -> bool:
    return a == b or a != a or b != b  # an unknown (NaN) dimension matches any


def shapes_match(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Equal shapes, where an unknown (NaN) Dask dimension matches any size."""
    return len(a) == len(b) and all(_dims_match(x, y) for x, y in zip(a, b, strict=True))


def normalize_axis(func: str, axis: object, ndim: int, name: str = "input") -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{func}(): axis must be an int, got {type(axis).__name__}")
    axis = int(axis)
    if ndim == 0:
        raise AxisError(
            f"{func}(): {name} {'are' if name.endswith('inputs') else 'is'} 0-d "
            f"(shape (), a scalar), but this loss works "
            f"along axis={axis} and needs at least 1 dimension; pass an array "
            f"such as [x] or reshape it"
        )
    if not -ndim <= axis < ndim:
        raise AxisError(
            f"{func}(): axis {axis} is out of range for {name} with {ndim} "
            f"dimension{'s' if ndim != 1 else ''} (expected -{ndim} <= axis < {ndim})"
        )
    return axis % ndim


def same_shape(func: str, *named: tuple[str, Any]) -> None:
    shapes = [shape_of(x) for _, x in named]
    if not all(shapes_match(s, shapes[0]) for s in shapes[1:]):
        desc = ", ".join(f"{n}.shape={s}" for (n, _), s in zip(named, shapes, strict=True))
        raise ValueError(f"{func}(): the shapes must be equal, got {desc}")


def broadcast_shape(func: str, *named: tuple[str, Any]) -> tuple[int, ...]:
    """The broadcast shape of the arrays (NaN where Dask does not know a size yet)."""
    shapes = [shape_of(x) for _, x in named]
    ndim = max(len(s) for s in shapes)
    out: list[Any] = []
    for i in range(ndim):
        dims = [s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0]
        known = {d for d in dims if d == d and d != 1}
        if len(known) > 1:
            desc = ", ".join(f"{n}.shape={s}" for (n, _), s in zip(named, shapes, strict=True))
            raise ValueError(f"{func}(): shapes cannot be broadcast together: {desc}")
        out.append(known.pop() if known else next((d for d in dims if d != d), 1))
    return tuple(out)


def optional_int(func: str, name: str, value: object) -> int | None:
    """None, or a Python/NumPy integer (not a bool) as an int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{func}(): {name} must be an int or None, got {type(value).__name__}")
    return int(value)


def float_arg(be: Backend, func: str, name: str, x: Any, dtype: Any = None) -> Any:
    """``x`` in ``be``'s library, cast to ``dtype`` (default: the work dtype)."""
    arr = convert(be, f"{func}(): {name}", x)
    return be.cast(arr, be.work if dtype is None else dtype)


def class_indices(
    be: Backend,
    func: str,
    name: str,
    x: Any,
    num_classes: int,
    context: str,
    ignore: int | None = None,
) -> Any:
    """Integer class indices in ``[0, num_classes)`` (or equal to ``ignore``).

    See :func:`checked_class_indices`, which also returns the rows it could
    not check.
    """
    return checked_class_indices(be, func, name, x, num_classes, context, ignore)[0]


def checked_class_indices(
    be: Backend,
    func: str,
    name: str,
    x: Any,
    num_classes: int,
    context: str,
    ignore: int | None = None,
    ignore_supported: bool = True,
) -> tuple[Any, Any]:
    """Integer class indices in ``[0, num_classes)`` (or equal to ``ignore``),
    and a boolean mask of the out-of-range ones that could not be checked.

    Non-integer dtypes are a TypeError. Values are checked where they are
    concrete (eager backends): an index out of range is a ValueError, and the
    mask is None. Under ``jax.jit``, ``mx.compile``, ``torch.compile`` or Dask reading the values
    would break the trace or force a computation; there the mask (computed
    lazily, one comparison per row) marks the rows whose loss the caller
    must make NaN, so a bad index never gives a plausible number.
    """
    arr = convert(be, f"{func}(): {name}", x)
    if not be.is_integer(arr):
        raise TypeError(
            f"{func}(): {name} holds class indices and must have an integer dtype, "
            f"got {arr.dtype}; for class probabilities pass an array with the "
            f"shape of the logits"
        )
    values = be.concrete(arr)
    invalid = None
    if values is not None and values.size:
        bad = (values < 0) | (values >= num_classes)
        if ignore is not None:
            bad &= values != ignore
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f"{name}[{', '.join(map(str, first))}]" if first else name
            value = int(values[first])
            hint = ""
            if value < 0 and ignore_supported:
                hint = (
                    f"; if {value} marks padding or unlabeled examples, pass "
                    f"ignore_index={value} to leave them out of the loss and the mean"
                )
            raise ValueError(
                f"{func}(): {where} = {value} is out of range for "
                f"{num_classes} classes ({context}); expected 0 <= index < "
                f"{num_classes}{'' if ignore is None else f' (or ignore_index={ignore})'}"
                f"{hint}"
            )
    elif values is None:
        invalid = (arr < 0) | (arr >= num_classes)
        if ignore is not None:
            invalid = invalid & (arr != ignore)
        # the rows to be poisoned gather class 0, never out of bounds (compiled
        # torch code does not check an index it gathers with)
        arr = be.xp.where(invalid, be.xp.zeros_like(arr), arr)
    if be.name == "torch" and str(arr.dtype) != "torch.int64":
        arr = be.xp.astype(arr, be.xp.int64)
    return arr, invalid


def poison(be: Backend, loss: Any, invalid: Any) -> Any:
    """``loss`` with NaN where ``invalid`` (the unchecked bad class indices of
    :func:`checked_class_indices`) is True; ``loss`` itself where it is None."""
    if invalid is None:
        return loss
    return be.xp.where(invalid, be.scalar(float("nan"), loss.dtype), loss)


def _first(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _at(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, index))}]" if index else name


def unit_interval(be: Backend, func: str, name: str, x: Any, hint: str) -> None:
    """Values of ``x`` in ``[0, 1]`` (probabilities, binary targets), or a
    ValueError naming the first one outside and ``hint``.

    Checked where the values are concrete, from one min/max reduction; a NaN
    is not "outside" (NaN in gives NaN out). Under ``jax.jit``, ``mx.compile``,
    ``torch.compile`` or Dask the check is skipped and the formula gives what it gives (NaN for
    probabilities outside ``[0, 1]``).
    """
    shape = shape_of(x)
    if any(d != d or d == 0 for d in shape):  # empty, or a size Dask does not know
        return
    bounds = be.value_range(x)
    if bounds is None or (bounds[0] >= 0.0 and bounds[1] <= 1.0):
        return
    values = be.concrete(x)
    if values is None:
        return
    bad = (values < 0) | (values > 1)
    if not bad.any():  # only NaN made the range NaN
        return
    first = _first(bad)
    raise ValueError(
        f"{func}(): {_at(name, first)} = {float(values[first]):g} is outside [0, 1]; {hint}"
    )


def no_nan(be: Backend, func: str, name: str, x: Any) -> None:
    """An option array (``pos_weight``, class weights) without NaN, where its
    values are concrete: a NaN option would silently make every loss NaN."""
    values = be.concrete(x)
    if values is None or not values.size:
        return
    bad = values != values
    if bad.any():
        raise ValueError(f"{func}(): {_at(name, _first(bad))} is NaN; {name} must hold numbers")


def need_classes(func: str, name: str, shape: tuple[int, ...], axis: int) -> None:
    """A class axis of size 0 is a ValueError: a softmax over no classes has no
    value (its normalizer would be ``log 0``), whatever the batch size."""
    if shape[axis] == 0:
        raise ValueError(
            f"{func}(): {name} has no classes: axis {axis} of {name}.shape={shape} has "
            f"size 0; pass at least one class (or the class axis as axis=)"
        )

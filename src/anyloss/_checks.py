"""Argument checks shared by the losses: reductions, axes, shapes, indices.

Every message names the function, the argument and the offending shapes or
values, and says what was expected.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from ._backend import AxisError, Backend, convert

__all__ = [
    "Reduction",
    "check_reduction",
    "class_indices",
    "float_arg",
    "normalize_axis",
    "number",
    "optional_int",
    "public",
    "same_shape",
    "shape_of",
]

Reduction = Literal["none", "mean", "sum"]
"""The reductions every loss accepts: ``"none"``, ``"mean"`` or ``"sum"``."""

_REDUCTIONS: tuple[str, ...] = get_args(Reduction)

F = TypeVar("F", bound=Callable[..., Any])


def public(func: F) -> F:
    """Run a loss with NumPy's floating-point warnings silenced.

    The losses deliberately compute ``log(0)``, ``0 * inf`` and the like inside
    branches that ``where`` then discards; those are not the caller's business.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


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
    """``x.shape`` as a tuple; a dimension Dask does not know yet is NaN."""
    return tuple(int(d) if d == d else d for d in x.shape)


def _dims_match(a: float, b: float) -> bool:
    return a == b or a != a or b != b  # an unknown (NaN) dimension matches any


def shapes_match(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Equal shapes, where an unknown (NaN) Dask dimension matches any size."""
    return len(a) == len(b) and all(_dims_match(x, y) for x, y in zip(a, b, strict=True))


def normalize_axis(func: str, axis: object, ndim: int, name: str = "input") -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{func}(): axis must be an int, got {type(axis).__name__}")
    axis = int(axis)
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

    Non-integer dtypes are a TypeError. Values are checked where they are
    concrete (eager backends); under ``jax.jit``, ``mx.compile`` or Dask the
    check is skipped rather than forcing a computation or breaking a trace.
    """
    arr = convert(be, f"{func}(): {name}", x)
    if not be.is_integer(arr):
        raise TypeError(
            f"{func}(): {name} holds class indices and must have an integer dtype, "
            f"got {arr.dtype}; for class probabilities pass an array with the "
            f"shape of the logits"
        )
    values = be.concrete(arr)
    if values is not None and values.size:
        bad = (values < 0) | (values >= num_classes)
        if ignore is not None:
            bad &= values != ignore
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f"{name}[{', '.join(map(str, first))}]" if first else name
            raise ValueError(
                f"{func}(): {where} = {int(values[first])} is out of range for "
                f"{num_classes} classes ({context}); expected 0 <= index < "
                f"{num_classes}{'' if ignore is None else f' (or ignore_index={ignore})'}"
            )
    if be.name == "torch" and str(arr.dtype) != "torch.int64":
        arr = be.xp.astype(arr, be.xp.int64)
    return arr

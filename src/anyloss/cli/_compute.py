"""One chunk's losses and their exact combination across chunks.

Each chunk is evaluated with ``reduction='none'``; its losses are summed in
float64, and the chunk sums are added with ``math.fsum``. ``mean`` is that
total over the number of loss elements, cast to the loss's dtype: the number
``anyloss.<loss>(all_rows, reduction=...)`` returns in memory, to float rounding.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import anyloss

from ..kernels import generic
from ._columns import Selection, assemble
from ._errors import InputError

__all__ = ["ChunkResult", "Plan", "Totals", "evaluate", "use_kernels"]

# Losses whose targets may be class indices (integer, one fewer axis).
_INDEXED = ("cross_entropy", "nll_loss", "softmax_focal_loss", "multiclass_hinge_loss")


# What a fused kernel saves per element over the generic code (ns, one thread,
# float32, reduction='none', chunks of 2**18 on a 2-core AVX2 VM), and what it
# costs once per process: numba's import and the first load of a cached
# kernel (1.4-2 s there). mse_loss, l1_loss and nll_loss are absent: NumPy's
# own loop is as fast as their kernel, which could never repay that start.
_KERNEL_GAIN_NS = {
    "binary_cross_entropy": 120.0,
    "cross_entropy": 190.0,
    "kl_div_loss": 120.0,
    "smooth_l1_loss": 60.0,
    "huber_loss": 40.0,
    "log_cosh_loss": 190.0,
    "hinge_loss": 55.0,
    "gaussian_nll_loss": 180.0,
    "margin_ranking_loss": 70.0,
    "cosine_similarity_loss": 200.0,
    "triplet_loss": 360.0,
}
_KERNEL_START_NS = 1.5e9


def use_kernels(loss: str, primary: Selection, columns: dict[str, str], rows: int | None) -> bool:
    """Whether the fused kernels can repay their start on this input.

    One decision per run, from the input's size, so that the same input gives
    the same numbers whatever the timing (here or on Dask). An explicit
    ``ANYLOSS_KERNELS`` leaves the choice to the library, as in Python.
    """
    if "ANYLOSS_KERNELS" in os.environ:
        return True
    gain = _KERNEL_GAIN_NS.get(loss, 0.0)
    if rows is None:  # CSV: unknown until read
        return gain > 0
    width = 0
    for name in primary.names:
        found = re.search(r"\[(\d+)\]$", columns.get(name, ""))
        width += int(found.group(1)) if found else 1
    return rows * width * gain > _KERNEL_START_NS


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to evaluate a chunk (picklable)."""

    loss: str
    selections: dict[str, Selection]  # loss parameter -> its columns
    params: dict[str, Any]
    reduction: str
    nan: str  # error | propagate | skip
    kernels: bool = True  # False: the generic path (see use_kernels)

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(n for s in self.selections.values() for n in s.names))


@dataclass
class ChunkResult:
    rows: int
    elements: int = 0
    total: float = 0.0  # float64 sum of the chunk's losses
    nonfinite: int = 0  # rows with a NaN or inf in any input
    bad_losses: int = 0  # rows whose loss is NaN or inf (any cause)
    unexplained: int = 0  # ... of which the inputs are all finite
    first_unexplained: int = -1  # the first of those, counted in the chunk
    dtype: str = ""
    widths: tuple[tuple[int, ...], ...] = ()
    losses: np.ndarray | None = None  # reduction='none': one entry per row
    error: InputError | None = None  # set by Dask tasks instead of raising


def _row_ok(a: np.ndarray, n: int) -> np.ndarray:
    ok = np.asarray(np.isfinite(a))
    return np.asarray(ok.reshape(n, -1).all(axis=1)) if a.ndim > 1 else ok


def _nonfinite(plan: Plan, arrays: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, str]:
    """Rows holding a NaN or inf, and the column of the first one."""
    bad = np.zeros(n, dtype=bool)
    for a in arrays.values():
        if a.dtype.kind == "f":
            bad |= ~_row_ok(a, n)
    if not bad.any():
        return bad, ""
    row = int(np.argmax(bad))
    for param, a in arrays.items():
        if a.dtype.kind == "f" and not _row_ok(a[row : row + 1], 1)[0]:
            sel = plan.selections[param]
            if sel.stack:
                j = int(np.argmin(np.isfinite(a[row]).reshape(len(sel.names), -1).all(axis=1)))
                return bad, sel.names[j]
            return bad, sel.label
    return bad, ""  # pragma: no cover


def _check_axis_and_indices(plan: Plan, arrays: dict[str, np.ndarray], n: int) -> None:
    first = next(iter(arrays.values()))
    axis = plan.params.get("axis")
    for ax in axis if isinstance(axis, tuple) else (axis,):
        if ax is not None and -first.ndim <= ax < first.ndim and ax % first.ndim == 0:
            raise InputError(
                f"axis={ax} is the row axis of the {first.ndim}-d input; rows are "
                "examples, so axis must be a column's own axis"
            )
    if plan.loss not in _INDEXED or "targets" not in arrays:
        return
    t = arrays["targets"]
    if t.ndim != first.ndim - 1:
        return
    label = plan.selections["targets"].label
    if t.dtype.kind not in "iu":
        raise InputError(
            f"column {label!r} holds class indices for {plan.loss} and must be "
            f"integer, not {t.dtype}"
        )
    ax = -1 if axis is None else axis
    if isinstance(ax, tuple) or not -first.ndim <= ax < first.ndim:
        return  # the loss itself names the bad axis
    classes = first.shape[ax]
    bad = (t < 0) | (t >= classes)
    if bad.any():
        row = int(np.argmax(bad.reshape(n, -1).any(axis=1)))
        value = t[row] if t.ndim == 1 else t[row][bad[row]].flat[0]
        raise InputError(
            f"class index {value} in column {label!r} is out of range for "
            f"{classes} classes (0 to {classes - 1})",
            row=row,
        )


def evaluate(plan: Plan, rows: int, columns: dict[str, np.ndarray]) -> ChunkResult:
    """The losses of one chunk; raises :class:`InputError` with a row inside the chunk."""
    arrays = assemble(plan.selections, columns)
    _check_axis_and_indices(plan, arrays, rows)
    bad, column = _nonfinite(plan, arrays, rows)
    nonfinite = int(bad.sum())
    if nonfinite and plan.nan == "error":
        raise InputError(
            f"NaN or inf in column {column!r} (--nan propagate or --nan skip to go on)",
            row=int(np.argmax(bad)),
        )
    kept = arrays
    if nonfinite and plan.nan == "skip":
        keep = ~bad
        kept = {k: v[keep] for k, v in arrays.items()}
    try:
        with contextlib.nullcontext() if plan.kernels else generic():
            loss = np.asarray(getattr(anyloss, plan.loss)(**kept, **plan.params, reduction="none"))
    except (ValueError, TypeError, IndexError) as e:
        given = ", ".join(f"{k}={s.label!r}" for k, s in plan.selections.items())
        raise InputError(f"{e} (columns: {given})") from None
    if loss.ndim == 0 or loss.shape[0] != len(next(iter(kept.values()))):
        raise InputError(
            f"{plan.loss} did not give one loss per row (loss shape "
            f"{loss.shape}); check the columns and axis"
        )
    total = float(np.sum(loss, dtype=np.float64))
    result = ChunkResult(
        rows=rows,
        elements=loss.size,
        total=total,
        nonfinite=nonfinite,
        dtype=loss.dtype.name,
        widths=tuple(a.shape[1:] for a in arrays.values()),
    )
    if not math.isfinite(total):  # a NaN or inf loss, or finite ones whose sum overflows
        lost = ~_row_ok(loss, len(loss))
        if nonfinite and plan.nan == "skip":
            full = np.zeros(rows, dtype=bool)
            full[~bad] = lost
            lost = full
        result.bad_losses = int(lost.sum())
        unexplained = lost & ~bad
        result.unexplained = int(unexplained.sum())
        if result.unexplained:
            result.first_unexplained = int(np.argmax(unexplained))
    if plan.reduction == "none":
        if nonfinite and plan.nan == "skip":
            full = np.full((rows, *loss.shape[1:]), np.nan, dtype=loss.dtype)
            full[~bad] = loss
            loss = full
        result.losses = loss
    return result


@dataclass
class Totals:
    """Chunk results added up, in row order."""

    rows: int = 0
    elements: int = 0
    nonfinite: int = 0
    bad_losses: int = 0
    unexplained: int = 0
    first_unexplained: int = -1  # counted from the first row of the input
    dtype: str = ""
    widths: tuple[tuple[int, ...], ...] | None = None
    sums: list[float] = field(default_factory=list)

    def add(self, res: ChunkResult, plan: Plan) -> None:
        if self.widths is None:
            self.widths = res.widths
        elif res.widths != self.widths:
            changed = [
                s.label
                for s, a, b in zip(plan.selections.values(), self.widths, res.widths, strict=True)
                if a != b
            ]
            raise InputError(
                f"column {changed[0]!r} changes width from {_w(self.widths, res.widths, plan)}",
                row=0,
            )
        if res.unexplained and self.first_unexplained < 0:
            self.first_unexplained = self.rows + res.first_unexplained
        self.rows += res.rows
        self.elements += res.elements
        self.nonfinite += res.nonfinite
        self.bad_losses += res.bad_losses
        self.unexplained += res.unexplained
        self.dtype = self.dtype or res.dtype
        self.sums.append(res.total)

    def value(self, reduction: str) -> np.generic:
        try:
            total = math.fsum(self.sums)
        except (OverflowError, ValueError):  # inf, or inf - inf
            total = float(np.sum(self.sums))
        if reduction == "mean":
            total = total / self.elements if self.elements else math.nan
        with np.errstate(over="ignore"):  # a sum beyond the dtype is inf: reported as such
            value: np.generic = np.dtype(self.dtype or "float64").type(total)
        return value


def _w(old: tuple[tuple[int, ...], ...], new: tuple[tuple[int, ...], ...], plan: Plan) -> str:
    for a, b in zip(old, new, strict=True):
        if a != b:
            return f"{a[0] if a else 1} to {b[0] if b else 1}"
    return ""  # pragma: no cover

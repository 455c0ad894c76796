"""Column names to arrays: exact names, globs (``logit_*``, natural order), lists, Arrow types."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import InputError

__all__ = [
    "DUPLICATE",
    "Selection",
    "arrow_to_numpy",
    "arrow_type_name",
    "assemble",
    "check_numeric",
    "natural_key",
    "numpy_type_name",
    "select",
]

_NUMERIC_KINDS = "fiub"

# The type a source gives a column name its file holds more than once: such a
# column cannot be told apart from its twin, so selecting it is an error.
DUPLICATE = "duplicate"


def natural_key(name: str) -> list[Any]:
    """``logit_2`` before ``logit_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Selection:
    """The columns given for one array parameter; ``stack`` makes them one 2-D array."""

    label: str  # as the user wrote it
    names: tuple[str, ...]
    stack: bool


def select(label: str, columns: Mapping[str, str], where: str) -> Selection:
    """Resolve ``label`` (a name, a glob or ``a,b,c``) against ``columns`` (name -> type)."""
    if label in columns:
        return Selection(label, (label,), False)
    if any(c in label for c in "*?["):
        names = sorted(fnmatch.filter(columns, label), key=natural_key)
        if not names:
            raise InputError(
                f"no column matches {label!r} (columns: {_some(columns)})", where=where
            )
        return Selection(label, tuple(names), True)
    if "," in label:
        names = [n.strip() for n in label.split(",")]
        for n in names:
            if n not in columns:
                raise InputError(f"no column {n!r} (columns: {_some(columns)})", where=where)
        return Selection(label, tuple(names), True)
    raise InputError(f"no column {label!r} (columns: {_some(columns)})", where=where)


def _some(columns: Mapping[str, str], limit: int = 12) -> str:
    names = list(columns)
    more = f", ... {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_numeric(sel: Selection, columns: Mapping[str, str], where: str) -> None:
    """Fail before reading anything when a selected column cannot hold numbers."""
    for n in sel.names:
        kind = columns[n]
        if kind == DUPLICATE:
            raise InputError(
                f"column {n!r} appears more than once in the header; rename the "
                "copies so that each column has its own name",
                where=where,
            )
        if not _is_numeric_type(kind) or (sel.stack and kind.startswith("list")):
            want = "numbers" if not sel.stack else "one number per row (it is part of a glob)"
            raise InputError(f"column {n!r} has type {kind}; expected {want}", where=where)


def _is_numeric_type(kind: str) -> bool:
    inner = kind[kind.find("<") + 1 : kind.rfind(">")] if kind.startswith("list<") else kind
    return inner.startswith(("float", "int", "uint", "bool"))


def assemble(
    selections: Mapping[str, Selection], arrays: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per loss parameter, the array its columns make (globs stacked along axis 1)."""
    out = {}
    for param, sel in selections.items():
        if sel.stack:
            parts = [arrays[n] for n in sel.names]
            out[param] = np.stack(parts, axis=1)
        else:
            out[param] = arrays[sel.names[0]]
    return out


def _first_true(mask: Any) -> int:
    import pyarrow.compute as pc  # type: ignore[import-untyped]  # no stubs

    return int(pc.index(mask, True).as_py())


_ARROW_FLOATS = {"halffloat": "float16", "float": "float32", "double": "float64"}


def _numpy_dtype(t: Any) -> np.dtype[Any]:
    name = str(t)
    return np.dtype(_ARROW_FLOATS.get(name, name))


def _primitive(arr: Any) -> np.ndarray:
    """Zero-copy view of a null-free fixed-width Arrow array (``to_numpy`` imports pandas)."""
    dtype = _numpy_dtype(arr.type)
    data = arr.buffers()[1]
    if data is None:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def _flat_to_numpy(arr: Any, name: str) -> np.ndarray:
    """A flat Arrow array as NumPy, without a detour through pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_floating(t):
        if arr.null_count:
            arr = pc.fill_null(arr, pa.scalar(float("nan"), t))
        return _primitive(arr)
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        if arr.null_count:
            raise InputError(
                f"column {name!r} has a missing value", row=_first_true(pc.is_null(arr))
            )
        if pa.types.is_boolean(t):
            return _primitive(pc.cast(arr, pa.uint8())).view(bool)
        return _primitive(arr)
    raise InputError(f"column {name!r} has type {t}; expected numbers")


def arrow_to_numpy(col: Any, name: str) -> np.ndarray:
    """One Arrow column of a chunk -> NumPy; list columns become ``(rows, width)``.

    Nulls in floating columns read as NaN (then counted as non-finite); nulls in
    integer or boolean columns, null lists and ragged lists are errors naming the row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        n = len(col)
        if col.null_count:
            raise InputError(
                f"column {name!r} has a missing list", row=_first_true(pc.is_null(col))
            )
        if pa.types.is_fixed_size_list(t):
            width = t.list_size
        else:
            lengths = pc.list_value_length(col)
            width = int(lengths[0].as_py()) if n else 0
            if n and pc.any(pc.not_equal(lengths, width)).as_py():
                row = _first_true(pc.not_equal(lengths, width))
                raise InputError(
                    f"column {name!r} has lists of different lengths ({width} and "
                    f"{lengths[row].as_py()})",
                    row=row,
                )
        try:
            values = _flat_to_numpy(pc.list_flatten(col), name)
        except InputError as e:
            if e.row is None or not width:
                raise
            # The row was counted in the flattened values: back to the list's row.
            row, item = divmod(e.row, width)
            raise InputError(f"{e.message} (item {item} of its list)", row=row) from None
        return values.reshape(n, width)
    return _flat_to_numpy(col, name)


def numpy_type_name(dtype: np.dtype[Any], shape: tuple[int, ...] = ()) -> str:
    """A column's type as checks and messages spell it: ``float32``, ``list<float32>[4]``."""
    if dtype.kind not in _NUMERIC_KINDS:
        return dtype.name if dtype.kind != "V" else "record"
    return f"list<{dtype.name}>[{'x'.join(map(str, shape))}]" if shape else dtype.name


def arrow_type_name(t: Any) -> str:
    """An Arrow type spelt like :func:`numpy_type_name` (numeric) or as Arrow does (other)."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = arrow_type_name(t.value_type)
        size = f"[{t.list_size}]" if pa.types.is_fixed_size_list(t) else ""
        return f"list<{inner}>{size}"
    if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
        return str(_numpy_dtype(t).name)
    return f"{t}"

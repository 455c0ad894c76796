"""What each loss takes, read from its signature: arrays, typed parameters, defaults.

Array parameters are the ones without a default, plus ``weights``. The first is
given with ``--input``, ``targets`` with ``--target``, ``weights`` with
``--weights``, and any of them with ``--array NAME=COLUMN``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyloss

from ._errors import InputError

__all__ = ["LossSpec", "describe", "loss_names", "loss_spec", "parse_params"]

# Losses of anyloss that are not one loss per row of a table: ``anyloss eval``
# streams rows in chunks, so it cannot serve them. The reason is the message.
_NOT_PER_ROW = {
    "info_nce_loss": "a row's loss takes every other row of the batch as its negatives, "
    "so it depends on how the rows are batched and cannot be streamed row by row",
    "nt_xent_loss": "a row's loss takes every other row of the batch as its negatives, "
    "so it depends on how the rows are batched and cannot be streamed row by row",
    "ctc_loss": "its inputs are (time, batch, class) log-probabilities with per-sequence "
    "input_lengths and target_lengths, not one row per example",
}

# Keyword-only options of the Python API that a streamed evaluation does not
# take (yet): their 'mean' divides by the weights of the rows kept, which the
# chunked sums would have to carry too. The reason is the error message.
_NOT_STREAMED = {
    "ignore_index": "its mean leaves the ignored rows out of the denominator",
    "class_weights": "it takes a vector and its mean divides by the applied weights",
}
# Parameter types the annotation does not give: a number although the Python
# API also takes an array (pos_weight; softmax_focal_loss's alpha, also None),
# and triplet_loss's p, an ``int`` annotation for a norm degree that may be any
# real > 0 (given as an int when it is one).
_KINDS = {
    ("*", "pos_weight"): "float",
    ("softmax_focal_loss", "alpha"): "float?",
    ("triplet_loss", "p"): "number",
}
_KIND_TEXT = {
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "float?": "a number or none",
    "number": "a number",
    "axes": "an integer or integers separated by commas (1,2)",
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class LossSpec:
    name: str
    arrays: tuple[str, ...]  # array parameters in signature order
    required: tuple[str, ...]  # array parameters without a default
    params: dict[str, tuple[str, Any]] = field(default_factory=dict)  # name -> (type, default)
    reduction: str = "none"

    @property
    def func(self) -> Callable[..., Any]:
        return getattr(anyloss, self.name)  # type: ignore[no-any-return]

    def option_for(self, array: str) -> str:
        """The command-line option that gives ``array``."""
        if array == self.required[0]:
            return "--input"
        if array == "targets":
            return "--target"
        if array == "weights":
            return "--weights"
        return f"--array {array}=COL"

    def describe(self) -> str:
        """One line for ``anyloss list``."""
        arrays = []
        for a in self.arrays:
            opt = self.option_for(a)
            text = opt if opt.startswith("--array") else f"{opt} {a}"
            arrays.append(text if a in self.required else f"[{text}]")
        params = " ".join(f"{k}={_show(d)}" for k, (_, d) in self.params.items())
        return (
            f"{self.name:<24} {' '.join(arrays)}"
            f"{'  params: ' + params if params else ''}  reduction={self.reduction}"
        )


def _show(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def _type_name(loss: str, param: inspect.Parameter) -> str:
    for key in ((loss, param.name), ("*", param.name)):
        if key in _KINDS:
            return _KINDS[key]
    ann = param.annotation
    name = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
    name = name.replace(" ", "")
    if name in ("bool", "int", "float"):
        return name
    if name == "float|None":
        return "float?"
    if name.startswith("int|tuple"):
        return "axes"
    return type(param.default).__name__


def loss_names() -> list[str]:
    """Every loss of anyloss (``anyloss list``), served by ``anyloss eval`` or not."""
    return sorted(
        n for n in anyloss.__all__ if n[0].islower() and inspect.isfunction(getattr(anyloss, n))
    )


def describe(name: str) -> str:
    """One line of ``anyloss list``."""
    if name in _NOT_PER_ROW:
        return f"{name:<24} not served by anyloss eval: {_NOT_PER_ROW[name]}"
    return loss_spec(name).describe()


def loss_spec(name: str) -> LossSpec:
    if name in _NOT_PER_ROW:
        raise InputError(
            f"anyloss eval does not serve {name}: {_NOT_PER_ROW[name]}; "
            f"call anyloss.{name}(...) in Python on the whole batch"
        )
    if name not in loss_names():
        raise InputError(
            f"unknown loss {name!r}; see `anyloss list` (one of: {', '.join(loss_names())})"
        )
    sig = inspect.signature(getattr(anyloss, name))
    arrays, required, params, reduction = [], [], {}, "none"
    for p in sig.parameters.values():
        if p.default is inspect.Parameter.empty:
            arrays.append(p.name)
            required.append(p.name)
        elif p.name == "weights":
            arrays.append(p.name)
        elif p.name == "reduction":
            reduction = p.default
        elif p.name not in _NOT_STREAMED:
            params[p.name] = (_type_name(name, p), p.default)
    return LossSpec(name, tuple(arrays), tuple(required), params, reduction)


def _convert(spec: LossSpec, key: str, text: str) -> Any:
    kind, _ = spec.params[key]
    low = text.strip().lower()
    if kind == "bool":
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    elif kind == "float?" and low == "none":
        return None
    else:
        try:
            if kind == "axes":
                axes = tuple(int(a) for a in low.split(","))
                return axes[0] if len(axes) == 1 else axes
            if kind == "int" or (kind == "number" and low.lstrip("+-").isdigit()):
                return int(low)
            value = float(low)
        except ValueError:
            pass
        else:
            if math.isnan(value):
                raise InputError(f"--param {key}={text}: expected {_KIND_TEXT[kind]}, not NaN")
            return value
    raise InputError(f"--param {key}={text}: expected {_KIND_TEXT.get(kind, kind)}")


def parse_params(spec: LossSpec, items: list[str]) -> dict[str, Any]:
    """``['label_smoothing=0.1']`` -> ``{'label_smoothing': 0.1}``, typed by the signature."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise InputError(f"--param {item}: expected KEY=VALUE")
        if key == "reduction":
            raise InputError("use --reduction, not --param reduction=...")
        if key in _NOT_STREAMED:
            raise InputError(
                f"--param {key} is not supported by anyloss eval ({_NOT_STREAMED[key]}); "
                f"use anyloss.{spec.name}(..., {key}=...) in Python"
            )
        if key in spec.arrays:
            raise InputError(f"{key} is an array: give its column with {spec.option_for(key)}")
        if key not in spec.params:
            known = ", ".join(spec.params) or "none"
            raise InputError(f"{spec.name} has no parameter {key!r} (parameters: {known})")
        out[key] = _convert(spec, key, text)
    axis = out.get("axis")
    if axis == 0 or (isinstance(axis, tuple) and 0 in axis):
        raise InputError(
            f"--param axis={','.join(map(str, axis)) if isinstance(axis, tuple) else axis}: "
            "axis 0 is the row axis; rows are examples, so axis must "
            "name the column's own axis (1 or -1)"
        )
    return out

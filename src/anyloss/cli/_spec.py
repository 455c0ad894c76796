"""What each loss takes, read from its signature: arrays, typed parameters, defaults.

Array parameters are the ones without a default, plus ``weights``. The first is
given with ``--input``, ``targets`` with ``--target``, ``weights`` with
``--weights``, and any of them with ``--array NAME=COLUMN``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import losses
from ._errors import InputError

__all__ = ["LossSpec", "loss_names", "loss_spec", "parse_params"]

# Keyword-only options of the Python API that a streamed evaluation does not
# take (yet): their 'mean' divides by the weights of the rows kept, which the
# chunked sums would have to carry too. The reason is the error message.
_NOT_STREAMED = {
    "ignore_index": "its mean leaves the ignored rows out of the denominator",
    "class_weights": "it takes a vector and its mean divides by the applied weights",
}
# Options given as a number although the Python API also takes an array.
_NUMBERS = {"pos_weight": "float"}

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
        return getattr(losses, self.name)  # type: ignore[no-any-return]

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
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _type_name(param: inspect.Parameter) -> str:
    ann = param.annotation
    name = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
    if name in ("bool", "int", "float"):
        return name
    return type(param.default).__name__


def loss_names() -> list[str]:
    return sorted(n for n in losses.__all__ if n[0].islower())


def loss_spec(name: str) -> LossSpec:
    if name not in loss_names():
        raise InputError(
            f"unknown loss {name!r}; see `anyloss list` (one of: {', '.join(loss_names())})"
        )
    sig = inspect.signature(getattr(losses, name))
    arrays, required, params, reduction = [], [], {}, "none"
    for p in sig.parameters.values():
        if p.default is inspect.Parameter.empty:
            arrays.append(p.name)
            required.append(p.name)
        elif p.name == "weights":
            arrays.append(p.name)
        elif p.name == "reduction":
            reduction = p.default
        elif p.name in _NUMBERS:
            params[p.name] = (_NUMBERS[p.name], p.default)
        elif p.name not in _NOT_STREAMED:
            params[p.name] = (_type_name(p), p.default)
    return LossSpec(name, tuple(arrays), tuple(required), params, reduction)


def _convert(spec: LossSpec, key: str, text: str) -> Any:
    kind, _ = spec.params[key]
    low = text.strip().lower()
    if kind == "bool":
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise InputError(f"--param {key}={text}: expected true or false")
    try:
        return int(low) if kind == "int" else float(low)
    except ValueError:
        want = "an integer" if kind == "int" else "a number"
        raise InputError(f"--param {key}={text}: expected {want}") from None


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
    if out.get("axis") == 0:
        raise InputError(
            "--param axis=0 is the row axis; rows are examples, so axis must "
            "name the column's own axis (1 or -1)"
        )
    return out

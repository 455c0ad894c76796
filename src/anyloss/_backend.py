"""Which array library a call runs on, and how its arguments are brought into it.

Nothing here imports an array library at module import time. An argument's
library is read from the module of its type (holding a torch tensor means torch
is already imported), cached per type, and only then is the library's
namespace fetched from ``sys.modules`` or ``array_api_compat``.

The losses are written once against the array API names (``xp.exp``,
``xp.sum(x, axis=..., keepdims=...)``, ``xp.take_along_axis`` ...). MLX's
``mlx.core`` differs in a few places; :class:`_MLXNamespace` papers over them.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AxisError", "Backend", "resolve"]


class AxisError(ValueError, IndexError):
    """An ``axis`` argument outside ``[-ndim, ndim)``.

    It is both a :class:`ValueError` (like NumPy's ``AxisError``) and an
    :class:`IndexError` (what MLX raises), so either ``except`` clause catches it.
    """

    __module__ = "anyloss"


# --------------------------------------------------------------------------
# Library detection
# --------------------------------------------------------------------------

_TOP_MODULES = {
    "numpy": "numpy",
    "torch": "torch",
    "jax": "jax",
    "jaxlib": "jax",
    "mlx": "mlx",
    "dask": "dask",
    "cupy": "cupy",
    "array_api_strict": "array_api_strict",
}

_LIBRARY_BY_TYPE: dict[type, str | None] = {}


def library_of(x: object) -> str | None:
    """Name of the array library ``x`` belongs to, or None for plain Python data.

    Anything else that implements ``__array_namespace__`` is reported as
    ``"array_api"`` and handled through its own namespace.
    """
    tp = type(x)
    try:
        return _LIBRARY_BY_TYPE[tp]
    except KeyError:
        pass
    name = _TOP_MODULES.get(tp.__module__.partition(".")[0])
    if name is None and hasattr(x, "__array_namespace__"):
        name = "array_api"
    if name is None and isinstance(x, np.generic):
        name = "numpy"
    _LIBRARY_BY_TYPE[tp] = name
    return name


def _is_python_data(x: object) -> bool:
    """Python numbers and (nested) lists/tuples of them: data any library takes."""
    if isinstance(x, bool | numbers.Number):
        return True
    return isinstance(x, Sequence) and not isinstance(x, str | bytes)


# --------------------------------------------------------------------------
# MLX adapter
# --------------------------------------------------------------------------


class _MLXNamespace:
    """The subset of the array API the losses use, on top of ``mlx.core``."""

    def __init__(self, mx: Any) -> None:
        self._mx = mx
        self.float16 = mx.float16
        self.bfloat16 = mx.bfloat16
        self.float32 = mx.float32
        self.float64 = mx.float64
        self.int32 = mx.int32
        self.int64 = mx.int64
        self.bool = mx.bool_

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mx, name)

    def asarray(self, x: Any, dtype: Any = None, device: Any = None) -> Any:
        mx = self._mx
        if isinstance(x, mx.array):
            return x if dtype is None or x.dtype == dtype else x.astype(dtype)
        if isinstance(x, np.ndarray | np.generic) and x.dtype == np.float64 and (dtype is None):
            dtype = mx.float32  # MLX arrays default to float32
        return mx.array(x, dtype=dtype) if dtype is not None else mx.array(x)

    def astype(self, x: Any, dtype: Any, copy: bool = False) -> Any:
        return x if x.dtype == dtype else x.astype(dtype)

    def isdtype(self, dtype: Any, kind: str) -> bool:
        mx = self._mx
        if kind == "real floating":
            return bool(mx.issubdtype(dtype, mx.floating))
        if kind == "integral":
            return bool(mx.issubdtype(dtype, mx.integer))
        if kind == "bool":
            return bool(dtype == mx.bool_)
        raise NotImplementedError(kind)

    def clip(self, x: Any, min: Any = None, max: Any = None) -> Any:
        return self._mx.clip(x, min, max)

    def pow(self, x: Any, y: Any) -> Any:
        return self._mx.power(x, y)

    def concat(self, arrays: Any, axis: int = 0) -> Any:
        return self._mx.concatenate(arrays, axis=axis)

    def sum(self, x: Any, axis: Any = None, keepdims: bool = False, dtype: Any = None) -> Any:
        if dtype is not None:
            x = self.astype(x, dtype)
        return self._mx.sum(x, axis=axis, keepdims=keepdims)


# --------------------------------------------------------------------------
# The resolved backend of one call
# --------------------------------------------------------------------------


def _namespace(library: str, x: Any) -> Any:
    if library == "mlx":
        return _MLXNamespace(sys.modules["mlx.core"])
    if library == "jax":
        return sys.modules["jax.numpy"]
    if library in ("array_api_strict", "array_api"):
        return x.__array_namespace__()
    import array_api_compat

    return array_api_compat.array_namespace(x)


_NAMESPACES: dict[str, Any] = {}


def _device(library: str, x: Any) -> Any:
    if library == "mlx":
        return None
    if library == "numpy":
        return "cpu"
    import array_api_compat

    return array_api_compat.device(x)


@dataclass(frozen=True)
class Backend:
    """The array library one call runs on, with its dtypes and device.

    Attributes:
        name: ``"numpy"``, ``"torch"``, ``"jax"``, ``"mlx"``, ``"dask"``,
            ``"cupy"``, ``"array_api_strict"`` or ``"array_api"``.
        xp: the array-API namespace of the library (MLX: an adapter).
        device: the device of the primary argument (None for MLX).
        dtype: the floating dtype of the result.
        work: the dtype the computation runs in (float16/bfloat16 -> float32).
        wide: float64 where the library and device support it, else ``work``.
    """

    name: str
    xp: Any
    device: Any
    dtype: Any
    work: Any
    wide: Any

    # -- dtypes --------------------------------------------------------------

    def is_float(self, x: Any) -> bool:
        return bool(self.xp.isdtype(x.dtype, "real floating"))

    def is_integer(self, x: Any) -> bool:
        return bool(self.xp.isdtype(x.dtype, "integral"))

    def scalar(self, value: float, dtype: Any = None) -> Any:
        """A 0-d array holding ``value`` (never a bare Python scalar: CuPy, older
        torch and array-api-strict reject those in ``maximum``/``logaddexp``)."""
        dtype = self.work if dtype is None else dtype
        if self.name == "mlx":
            return self.xp.asarray(value, dtype=dtype)
        return self.xp.asarray(value, dtype=dtype, device=self.device)

    def arange(self, n: int, dtype: Any = None) -> Any:
        """``0, 1, ..., n - 1`` on the call's device (MLX takes no device)."""
        if self.name == "mlx":
            return self.xp.arange(n, dtype=dtype)
        return self.xp.arange(n, dtype=dtype, device=self.device)

    def cast(self, x: Any, dtype: Any) -> Any:
        return x if x.dtype == dtype else self.xp.astype(x, dtype)

    def finish(self, x: Any) -> Any:
        """Cast a result back to the caller's dtype (and a NumPy scalar to 0-d)."""
        x = self.cast(x, self.dtype)
        if self.name == "numpy":
            return np.asarray(x)
        return x

    # -- values --------------------------------------------------------------

    @property
    def differentiable(self) -> bool:
        """Whether the library has autodiff (a gradient may be taken)."""
        return self.name in ("torch", "jax", "mlx")

    def stop_gradient(self, x: Any) -> Any:
        if self.name == "torch":
            return x.detach()
        if self.name == "jax":
            return sys.modules["jax"].lax.stop_gradient(x)
        if self.name == "mlx":
            return self.xp.stop_gradient(x)
        return x

    def concrete(self, x: Any) -> np.ndarray | None:
        """``x``'s values as NumPy, or None where reading them would break a trace
        (``jax.jit``, ``mx.compile``) or force a computation (Dask)."""
        if self.name in ("dask", "array_api"):
            return None
        if self.name == "jax":
            if isinstance(x, sys.modules["jax"].core.Tracer):
                return None
            return np.asarray(x)
        if self.name == "mlx":
            try:
                return np.array(x, copy=True)
            except (RuntimeError, ValueError):  # inside mx.compile / a transform
                return None
        if self.name == "torch":
            try:
                return x.detach().cpu().numpy()  # type: ignore[no-any-return]
            except (RuntimeError, NotImplementedError):  # fake or functorch tensor
                return None
        if self.name == "cupy":
            return x.get()  # type: ignore[no-any-return]
        if self.name == "array_api_strict":
            return np.asarray(x.__array__() if hasattr(x, "__array__") else x._array)
        return np.asarray(x)


def _wide_dtype(library: str, xp: Any, device: Any, work: Any) -> Any:
    if library == "mlx":
        return work
    if library == "jax":
        return xp.float64 if xp.result_type(float) == xp.float64 else work
    if library == "torch" and getattr(device, "type", "cpu") == "mps":
        return work
    return getattr(xp, "float64", work)


def _default_float(library: str, xp: Any) -> Any:
    if library == "torch":
        return sys.modules["torch"].get_default_dtype()
    if library in ("mlx", "jax"):
        return xp.float32 if library == "mlx" else xp.result_type(float)
    return xp.float64


def resolve(
    func: str,
    primary: tuple[str, Any],
    *others: tuple[str, Any],
    dtype_free: tuple[str, ...] = (),
) -> Backend:
    """Find the library of a call from its arguments.

    The library is the one of the ``primary`` argument (the predictions); where
    that is plain Python data, the first array among ``others`` decides, and
    NumPy where there is none. Arguments of another array library are a
    ``TypeError`` (NumPy arrays and Python data are brought into the chosen
    library by :func:`convert`). The result dtype is the promoted floating
    dtype of the arguments of the chosen library, or the library's default
    float where none of them is floating. Arguments named in ``dtype_free``
    (options such as class weights) take part in the library check but not
    in the dtype: float64 class weights leave float32 logits float32.
    """
    pname, pvalue = primary
    lib = library_of(pvalue)
    if lib is None and not _is_python_data(pvalue):
        raise TypeError(
            f"{func}(): {pname} must be an array (NumPy, PyTorch, JAX, MLX, Dask, "
            f"CuPy or any array-API library) or a number/list of numbers, "
            f"got {type(pvalue).__name__}"
        )
    anchor = pvalue
    if lib is None or lib == "numpy":
        for name, value in others:
            other = library_of(value)
            if other is not None and other != "numpy":
                if lib == "numpy":
                    raise TypeError(
                        f"{func}(): {pname} is a numpy array but {name} is a {other} "
                        f"array; pass arrays of one library (the library of a call is "
                        f"picked from {pname}; NumPy arrays and Python numbers are "
                        f"moved into it, not the other way round)"
                    )
                lib, anchor = other, value
                break
    if lib is None:
        lib = "numpy"
        anchor = None
    for name, value in others:
        other = library_of(value)
        if other is not None and other != lib and other != "numpy":
            raise TypeError(
                f"{func}(): {pname} is a {lib} array but {name} is a {other} array; "
                f"arrays of two different libraries cannot be mixed in one call"
            )
        if other is None and value is not None and not _is_python_data(value):
            raise TypeError(
                f"{func}(): {name} must be an array or a number/list of numbers, "
                f"got {type(value).__name__}"
            )

    xp: Any
    if lib == "numpy":
        xp = _NAMESPACES.get("numpy")
        if xp is None:
            import array_api_compat.numpy as xp

            _NAMESPACES["numpy"] = xp
        device: Any = "cpu"
    else:
        xp = _NAMESPACES.get(lib) if lib in ("mlx", "jax") else None
        if xp is None:
            xp = _namespace(lib, anchor)
            if lib in ("mlx", "jax"):
                _NAMESPACES[lib] = xp
        device = _device(lib, anchor)

    floats = [
        v.dtype
        for name, v in (primary, *others)
        if name not in dtype_free
        and library_of(v) == lib
        and _is_float_dtype(xp, getattr(v, "dtype", None))
    ]
    if floats:
        dtype = floats[0]
        for other_dtype in floats[1:]:
            dtype = xp.result_type(dtype, other_dtype)
    elif lib == "numpy":
        dtype = np.float64
    else:
        dtype = _default_float(lib, xp)
    if lib == "numpy":
        dtype = np.dtype(dtype)
    work = dtype if xp.finfo(dtype).bits >= 32 else xp.float32
    wide = _wide_dtype(lib, xp, device, work)
    return Backend(lib, xp, device, dtype, work, wide)


def _is_float_dtype(xp: Any, dtype: Any) -> bool:
    if dtype is None:
        return False
    try:
        return bool(xp.isdtype(dtype, "real floating"))
    except (TypeError, ValueError):
        return False


def convert(be: Backend, name: str, x: Any, dtype: Any = None) -> Any:
    """Bring ``x`` (an array of ``be``'s library, a NumPy array or Python data)
    into ``be``'s library and device, cast to ``dtype`` when given."""
    lib = library_of(x)
    if lib == be.name:
        return x if dtype is None else be.cast(x, dtype)
    if lib not in (None, "numpy"):
        raise TypeError(f"{name} is a {lib} array, expected a {be.name} array")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array or numbers, got {x!r:.60}") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers, got an array of dtype {arr.dtype} ({type(x).__name__})"
        )
    if be.name == "numpy":
        return arr if dtype is None else arr.astype(dtype, copy=False)
    if be.name == "mlx":
        return be.xp.asarray(arr, dtype=dtype)
    if be.name == "jax" and dtype is None and arr.dtype.itemsize == 8:
        # follow JAX's own x64 setting instead of warning about truncation
        dtype = be.xp.result_type(float if arr.dtype.kind == "f" else int)
    if be.name == "array_api_strict" and dtype is None:
        return be.xp.asarray(arr, device=be.device)
    return be.xp.asarray(arr, dtype=dtype, device=be.device)

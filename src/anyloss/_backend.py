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

import functools
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
_PYTHON_TYPES = frozenset((type(None), bool, int, float, list, tuple, str))


def torch_compiling() -> bool:
    """Whether ``torch.compile`` (or ``torch.export``) is tracing this call;
    False where torch is not imported.

    Under tracing the module-level caches below are neither read nor filled:
    TorchDynamo guards a compiled graph on every global dict it reads, so a
    key added later by any other call would force a recompilation.
    """
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.compiler.is_compiling())


def library_of(x: object) -> str | None:
    """Name of the array library ``x`` belongs to, or None for plain Python data.

    Anything else that implements ``__array_namespace__`` is reported as
    ``"array_api"`` and handled through its own namespace.
    """
    tp = type(x)
    if tp is np.ndarray:
        return "numpy"
    if tp in _PYTHON_TYPES:
        return None
    cached = not torch_compiling()
    if cached:
        try:
            return _LIBRARY_BY_TYPE[tp]
        except KeyError:
            pass
    name = _TOP_MODULES.get(tp.__module__.partition(".")[0])
    if name is None and hasattr(x, "__array_namespace__"):
        name = "array_api"
    if name is None and isinstance(x, np.generic):
        name = "numpy"
    if cached:
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
        empty = _empty_reduction(x.shape, axis, keepdims)
        if empty is not None:
            # MLX 0.32 hangs now and then on a sum over an empty axis (of an
            # array made from NumPy); the sum of nothing is 0
            dtype = self._mx.int32 if x.dtype == self._mx.bool_ else x.dtype
            return self._mx.zeros(empty, dtype=dtype)
        return self._mx.sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        empty = _empty_reduction(x.shape, axis, keepdims)
        if empty is not None:  # the mean of nothing is NaN (and MLX may hang)
            dtype = x.dtype if self._mx.issubdtype(x.dtype, self._mx.floating) else self.float32
            return self._mx.full(empty, float("nan"), dtype=dtype)
        return self._mx.mean(x, axis=axis, keepdims=keepdims)


def reduced_shape(
    shape: tuple[int, ...], axis: Any, keepdims: bool = False
) -> tuple[tuple[int, ...], bool]:
    """The shape of a reduction of an array of ``shape`` over ``axis`` (an int,
    a tuple of ints or None), and whether the reduced axes hold no element."""
    ndim = len(shape)
    named = range(ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    axes = {int(a) % ndim for a in named} if ndim else set()
    nothing = any(shape[a] == 0 for a in axes)
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape)), nothing
    return tuple(d for i, d in enumerate(shape) if i not in axes), nothing


def _cast_quietly(block: np.ndarray, to: Any) -> np.ndarray:
    """``block`` cast to ``to``, overflowing to inf without a warning."""
    with np.errstate(over="ignore"):
        return block.astype(to)


def _empty_reduction(shape: tuple[int, ...], axis: Any, keepdims: bool) -> tuple[int, ...] | None:
    """The result shape of a reduction over axes that hold no element, else None."""
    out, nothing = reduced_shape(shape, axis, keepdims)
    return out if nothing else None


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
    if library == "torch":  # directly: array_namespace() is lru-cached, which
        import array_api_compat.torch  # TorchDynamo warns about

        return array_api_compat.torch
    import array_api_compat

    return array_api_compat.array_namespace(x)


_NAMESPACES: dict[str, Any] = {}


def _device(library: str, x: Any) -> Any:
    if library == "mlx":
        return None
    if library == "numpy":
        return "cpu"
    if library == "torch":
        return x.device
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

    @property
    def float32_only(self) -> bool:
        """Whether float32 is the widest type (MLX, JAX without x64, devices
        without float64): cancelling losses then carry double words
        (:mod:`anyloss._compensated`) instead of widening."""
        return bool(self.wide == getattr(self.xp, "float32", None))

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

    def full(self, shape: tuple[int, ...], value: float, dtype: Any = None) -> Any:
        """An array of ``shape`` filled with ``value`` on the call's device."""
        dtype = self.work if dtype is None else dtype
        if self.name == "mlx":
            return self.xp.full(shape, value, dtype=dtype)
        return self.xp.full(shape, value, dtype=dtype, device=self.device)

    def arange(self, n: int, dtype: Any = None) -> Any:
        """``0, 1, ..., n - 1`` on the call's device (MLX takes no device)."""
        if self.name == "mlx":
            return self.xp.arange(n, dtype=dtype)
        return self.xp.arange(n, dtype=dtype, device=self.device)

    def cast(self, x: Any, dtype: Any) -> Any:
        return x if x.dtype == dtype else self.xp.astype(x, dtype)

    def finish(self, x: Any) -> Any:
        """Cast a result back to the caller's dtype (and a NumPy scalar to 0-d)."""
        if self.name == "dask" and x.dtype != self.dtype:
            # a float64 value beyond float32's range is inf after the cast, as
            # it should be; NumPy warns about it when Dask computes, outside
            # the losses' np.errstate
            return x.map_blocks(functools.partial(_cast_quietly, to=self.dtype), dtype=self.dtype)
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
        (``jax.jit``, ``mx.compile``, ``torch.compile``) or force a computation
        (Dask)."""
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
            if torch_compiling():  # torch.compile / torch.export
                return None
            try:
                return x.detach().cpu().numpy()  # type: ignore[no-any-return]
            except (RuntimeError, NotImplementedError):  # fake or functorch tensor
                return None
        if self.name == "cupy":
            return x.get()  # type: ignore[no-any-return]
        if self.name == "array_api_strict":
            return np.asarray(x.__array__() if hasattr(x, "__array__") else x._array)
        return np.asarray(x)

    def value_range(self, x: Any) -> tuple[float, float] | None:
        """``(min, max)`` of a non-empty ``x`` as Python floats (NaN if ``x``
        holds a NaN), or None where the values are not concrete (see
        :meth:`concrete`). Reduced on the array's own device: only two
        scalars are read back."""
        if self.name in ("dask", "array_api"):
            return None
        if self.name == "jax" and isinstance(x, sys.modules["jax"].core.Tracer):
            return None
        if self.name in ("numpy", "cupy"):
            return float(x.min()), float(x.max())
        if self.name == "torch":
            if torch_compiling():
                return None
            try:
                lo, hi = sys.modules["torch"].aminmax(x.detach())
                return float(lo), float(hi)
            except (RuntimeError, NotImplementedError):  # meta, fake or functorch
                return None
        if self.name == "mlx":
            try:
                return float(self.xp.min(x).item()), float(self.xp.max(x).item())
            except (RuntimeError, ValueError):  # inside mx.compile / a transform
                return None
        values = self.concrete(x)
        if values is None:
            return None
        return float(np.min(values)), float(np.max(values))


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
    for name, value in (primary, *others):
        if isinstance(value, np.ma.MaskedArray):
            raise TypeError(
                f"{func}(): {name} is a NumPy masked array; the losses do not read "
                f"masks, and ignoring it would count the masked entries. Drop them "
                f"with {name}.compressed() (1-D), fill them with {name}.filled(value), "
                f"or pass weights that are 0 where the mask is set"
            )
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

    if lib in ("torch", "jax", "cupy"):
        _same_device(func, lib, (primary, *others))

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


def _device_key(lib: str, x: Any) -> Any:
    """The device of an array of ``lib`` as a comparable value, or None where
    it does not matter (a torch 0-d CPU tensor mixes with any device, an
    uncommitted JAX array moves to the others) or is not known (a JAX tracer)."""
    if lib == "torch":
        device = x.device
        if device.type == "cpu" and x.ndim == 0:
            return None
        return device
    if lib == "jax":
        # an uncommitted array (not placed by the caller) follows the others
        if isinstance(x, sys.modules["jax"].core.Tracer) or not getattr(x, "committed", True):
            return None
        try:
            return frozenset(x.devices())
        except Exception:  # an array of an older JAX or a committed sharding
            return None
    return getattr(x, "device", None)


def _device_name(lib: str, device: Any) -> str:
    if lib == "jax" and isinstance(device, frozenset):
        return ", ".join(sorted(map(str, device)))
    return str(device)


def _same_device(func: str, lib: str, named: Sequence[tuple[str, Any]]) -> None:
    """Arrays of ``lib`` among ``named`` sit on one device, or a ValueError."""
    first: tuple[str, Any] | None = None
    for name, value in named:
        if value is None or library_of(value) != lib:
            continue
        device = _device_key(lib, value)
        if device is None:
            continue
        if first is None:
            first = (name, device)
        elif device != first[1]:
            fname, fdevice = first
            raise ValueError(
                f"{func}(): {fname} is on device {_device_name(lib, fdevice)} but "
                f"{name} is on device {_device_name(lib, device)}; move the {lib} "
                f"arrays of one call to one device (NumPy arrays and Python "
                f"numbers are moved for you)"
            )


def _is_float_dtype(xp: Any, dtype: Any) -> bool:
    if dtype is None:
        return False
    try:
        return bool(xp.isdtype(dtype, "real floating"))
    except (TypeError, ValueError):
        return False


_COMPLEX_HINT = "; the losses are defined on real numbers: pass x.real or abs(x)"
_KIND_HINTS = {
    "c": _COMPLEX_HINT,
    "U": "; for numbers stored as text convert them first: np.asarray(x, dtype=float)",
    "S": "; for numbers stored as text convert them first: np.asarray(x, dtype=float)",
    "O": "; for an object array of numbers convert it first: np.asarray(x, dtype=float)",
}
_REAL_DTYPES: dict[tuple[str, Any], bool] = {}


def _real_dtype(be: Backend, dtype: Any) -> bool:
    """Whether ``dtype`` is real floating, integral or bool (cached per dtype,
    except under ``torch.compile``: see :func:`torch_compiling`)."""
    if be.name == "torch" and torch_compiling():
        return _is_real(be, dtype)
    key = (be.name, dtype)
    try:
        return _REAL_DTYPES[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable dtype: not cached
        return _is_real(be, dtype)
    ok = _REAL_DTYPES[key] = _is_real(be, dtype)
    return ok


def _is_real(be: Backend, dtype: Any) -> bool:
    if be.name == "numpy":
        return np.dtype(dtype).kind in "biuf"
    return any(_isdtype(be.xp, dtype, k) for k in ("real floating", "integral", "bool"))


def _isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    try:
        return bool(xp.isdtype(dtype, kind))
    except (TypeError, ValueError, NotImplementedError):
        return False


def _is_complex(be: Backend, dtype: Any) -> bool:
    return "complex" in str(dtype)


def convert(be: Backend, name: str, x: Any, dtype: Any = None) -> Any:
    """Bring ``x`` (an array of ``be``'s library, a NumPy array or Python data)
    into ``be``'s library and device, cast to ``dtype`` when given."""
    lib = library_of(x)
    if lib == be.name and (lib != "numpy" or type(x) is np.ndarray):
        if not _real_dtype(be, x.dtype):
            raise TypeError(
                f"{name} must hold real numbers (floating, integer or bool), got "
                f"a {lib} array of dtype {x.dtype}"
                f"{_COMPLEX_HINT if _is_complex(be, x.dtype) else ''}"
            )
        return x if dtype is None else be.cast(x, dtype)
    if lib not in (None, "numpy"):
        raise TypeError(f"{name} is a {lib} array, expected a {be.name} array")
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a NumPy masked array; the losses do not read masks (use "
            f".compressed(), .filled(value), or weights that are 0 where masked)"
        )
    try:
        arr = np.asarray(x)  # also an np.matrix as a plain 2-D array
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array or numbers, got {x!r:.60}") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers (floating, integer or bool), got an "
            f"array of dtype {arr.dtype} ({type(x).__name__})"
            f"{_KIND_HINTS.get(arr.dtype.kind, '')}"
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

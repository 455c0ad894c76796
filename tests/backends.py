"""The array libraries the test-suite runs every loss on.

Each :class:`Backend` knows how to build arrays of its library from NumPy, how
to read results back, and (where the library has autodiff) how to take the
gradient of a loss. Tests receive one through the ``xp`` fixture; set
``ANYLOSS_BACKENDS=numpy,torch`` to run a subset.

``ANYLOSS_TEST_DEVICE=cuda`` (or ``cuda:1``) puts the PyTorch arrays on that
device: those built here, and (through ``torch.set_default_device``, set in
``conftest.py``) those the tests build themselves. ``JAX_PLATFORMS`` picks
JAX's device (``conftest.py`` makes it ``cpu`` unless set); CuPy arrays are
on the GPU anyway.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

ALL = ("numpy", "numpy_readonly", "array_api_strict", "torch", "jax", "mlx", "dask", "cupy")
_MODULES = {
    "numpy": "numpy",
    "numpy_readonly": "numpy",
    "array_api_strict": "array_api_strict",
    "torch": "torch",
    "jax": "jax",
    "mlx": "mlx.core",
    "dask": "dask.array",
    "cupy": "cupy",
}


def _device_from_env() -> str:
    """The device of the tests' PyTorch arrays: ``cpu`` (the default),
    ``cuda``, ``cuda:N``."""
    device = os.environ.get("ANYLOSS_TEST_DEVICE", "").strip() or "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise ValueError(f"ANYLOSS_TEST_DEVICE={device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    return device


DEVICE = _device_from_env()


def selected() -> list[str]:
    wanted = os.environ.get("ANYLOSS_BACKENDS", "")
    names = [n.strip() for n in wanted.split(",") if n.strip()] or list(ALL)
    unknown = set(names) - set(ALL)
    if unknown:
        raise ValueError(
            f"ANYLOSS_BACKENDS names unknown backends {sorted(unknown)}; known: {ALL}"
        )
    return names


@dataclass
class Backend:
    """One array library as the tests see it."""

    name: str
    module: Any = field(repr=False)

    # -- building inputs ------------------------------------------------------

    @property
    def has_float64(self) -> bool:
        if self.name == "jax":
            import jax

            return bool(jax.config.jax_enable_x64)
        return self.name != "mlx"

    @property
    def has_grad(self) -> bool:
        return self.name in ("torch", "jax", "mlx")

    @property
    def lazy(self) -> bool:
        return self.name == "dask"

    def dtype(self, np_dtype: Any) -> Any:
        """The library's dtype named like ``np_dtype`` (``"float32"``, ``"int64"``...)."""
        name = np.dtype(np_dtype).name if np_dtype != "bfloat16" else "bfloat16"
        if self.name in ("numpy", "numpy_readonly"):
            return np.dtype(name) if name != "bfloat16" else None
        if self.name == "torch":
            return getattr(self.module, name)
        if self.name == "jax":
            return getattr(self.module.numpy, name)
        if self.name == "mlx":
            return getattr(self.module, name)
        if self.name == "array_api_strict":
            return getattr(self.module, name, None)
        return np.dtype(name)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """An array of this library holding ``a`` (dtype: that of ``a``, or
        ``dtype`` given as a NumPy-style name)."""
        a = np.asarray(a)
        if dtype is not None and dtype != "bfloat16":
            a = a.astype(dtype)
        if self.name == "jax" and not self.has_float64 and a.dtype.itemsize == 8:
            a = a.astype(np.float32 if a.dtype.kind == "f" else np.int32)
        if self.name == "numpy":
            return a.copy()
        if self.name == "numpy_readonly":
            a = a.copy()
            a.setflags(write=False)
            return a
        if self.name == "torch":
            t = self.module.asarray(a.copy(), device=DEVICE)
            return t.to(self.module.bfloat16) if dtype == "bfloat16" else t
        if self.name == "jax":
            t = self.module.numpy.asarray(a)
            return t.astype(self.module.numpy.bfloat16) if dtype == "bfloat16" else t
        if self.name == "mlx":
            t = self.module.array(a)
            return t.astype(self.module.bfloat16) if dtype == "bfloat16" else t
        if self.name == "dask":
            chunks = tuple(max(1, (s + 1) // 2) for s in a.shape)
            return self.module.from_array(a, chunks=chunks or ())
        if self.name == "cupy":
            return self.module.asarray(a)
        if self.name == "array_api_strict":
            return self.module.asarray(a)
        raise AssertionError(self.name)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Result back to NumPy (bfloat16 read as float32), checking its library."""
        self.check_library(x)
        if self.name == "torch":
            x = x.detach()
            if x.dtype == self.module.bfloat16:
                x = x.float()
            return x.cpu().numpy()
        if self.name == "jax":
            if x.dtype == self.module.numpy.bfloat16:
                x = x.astype(self.module.numpy.float32)
            return np.asarray(x)
        if self.name == "mlx":
            if x.dtype == self.module.bfloat16:
                x = x.astype(self.module.float32)
            return np.array(x)
        if self.name == "dask":
            return np.asarray(x.compute())
        if self.name == "cupy":
            return x.get()
        if self.name == "array_api_strict":
            return np.asarray(x._array)
        return np.asarray(x)

    def check_library(self, x: Any) -> None:
        """Assert ``x`` is an array of this library (not a Python float, not NumPy)."""
        expected = {
            "numpy": np.ndarray,
            "numpy_readonly": np.ndarray,
        }.get(self.name)
        if expected is not None:
            assert isinstance(x, expected), f"expected a NumPy array, got {type(x)}"
            return
        top = type(x).__module__.partition(".")[0]
        want = {
            "jax": ("jax", "jaxlib"),
            "mlx": ("mlx",),
            "dask": ("dask",),
            "torch": ("torch",),
            "cupy": ("cupy",),
            "array_api_strict": ("array_api_strict",),
        }[self.name]
        assert top in want, f"expected a {self.name} array, got {type(x)}"

    def dtype_name(self, x: Any) -> str:
        """``"float32"``, ``"float64"``, ``"float16"``, ``"bfloat16"`` of a result."""
        s = str(x.dtype)
        return s.rpartition(".")[2]

    # -- autodiff ----------------------------------------------------------------

    def grad(self, loss: Callable[[Any], Any], x: np.ndarray) -> np.ndarray:
        """Gradient of ``sum(loss(x))`` with respect to ``x``, as NumPy."""
        if self.name == "torch":
            t = self.module.asarray(np.array(x), device=DEVICE).requires_grad_(True)
            out = loss(t)
            out.sum().backward()
            return t.grad.numpy(force=True)
        if self.name == "jax":
            import jax

            return np.asarray(jax.grad(lambda v: loss(v).sum())(self.asarray(x)))
        if self.name == "mlx":
            mx = self.module
            return np.array(mx.grad(lambda v: loss(v).sum())(mx.array(np.asarray(x))))
        raise NotImplementedError(f"{self.name} has no autodiff")


def make(name: str) -> Backend:
    module = pytest.importorskip(_MODULES[name])
    if name == "jax":
        module = importlib.import_module("jax")
        importlib.import_module("jax.numpy")
    if name == "cupy":
        try:
            module.cuda.runtime.getDeviceCount()
        except Exception:  # pragma: no cover - no GPU
            pytest.skip("cupy has no usable GPU")
    return Backend(name, module)

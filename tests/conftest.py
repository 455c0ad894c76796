"""Shared fixtures: ``xp`` runs a test once per installed array library.

``ANYLOSS_TEST_HIDE=numba`` (comma-separated top-level module names) runs the
suite as if those libraries were not installed: ``import numba`` raises
``ModuleNotFoundError`` and ``importlib.util.find_spec("numba")`` is None in
the pytest process (subprocesses a test starts still see them). Without numba,
the doctests of ``anyloss/kernels/_numba.py`` are not collected and the kernel
test files skip.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
from collections.abc import Iterator
from typing import Any

_HIDDEN = frozenset(
    n.strip() for n in os.environ.get("ANYLOSS_TEST_HIDE", "").split(",") if n.strip()
)


class _Hiding:
    """A meta-path finder that finds nothing of ``_HIDDEN`` and defers to the
    finder it wraps for every other module (and every other attribute, such as
    ``find_distributions``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.partition(".")[0] in _HIDDEN:
            return None
        find = getattr(self._inner, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __eq__(self, other: object) -> bool:  # pytest removes its import hook by equality
        return other is self._inner or (isinstance(other, _Hiding) and other._inner is self._inner)

    def __hash__(self) -> int:
        return hash(self._inner)


if _HIDDEN:
    _loaded = sorted(m for m in sys.modules if m.partition(".")[0] in _HIDDEN)
    if _loaded:  # imported before this file ran (a plugin?): cannot be hidden any more
        raise RuntimeError(f"ANYLOSS_TEST_HIDE: {', '.join(_loaded)} already imported")
    sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
    importlib.invalidate_caches()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from backends import DEVICE, Backend, make, selected  # noqa: E402

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Without a GPU, the Triton kernels run in Triton's interpreter (tests/test_triton.py):
# it must be on before they are decorated, and --doctest-modules imports them early
if DEVICE == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Keras picks its backend when first imported (its default, TensorFlow, is not
# a test dependency); the doctests of anyloss/keras.py import it.
os.environ.setdefault("KERAS_BACKEND", "jax")

_SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "anyloss"

# Scripts the tests run in a process of their own (``--doctest-modules`` would
# import them here: keras_fit.py needs KERAS_BACKEND set before Keras loads).
collect_ignore = ["keras_fit.py"]


if DEVICE != "cpu":  # the tests' own tensors too (see tests/backends.py)
    import torch

    torch.set_default_device(DEVICE)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``cpu_only`` tests (the numba kernels' own) skip on another test device."""
    if DEVICE == "cpu":
        return
    skip = pytest.mark.skip(reason=f"a CPU kernel test; ANYLOSS_TEST_DEVICE={DEVICE}")
    for item in items:
        if item.get_closest_marker("cpu_only") is not None:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    """Without numba (torch, keras), leave the modules that import it out of
    the doctest run (``--doctest-modules`` would import them and fail).
    ``--ignore`` rather than ``collect_ignore``: this file's ``collect_ignore``
    covers ``tests/`` only."""
    for module, path in (
        ("numba", _SRC / "kernels" / "_numba.py"),
        ("torch", _SRC / "torch.py"),
        ("keras", _SRC / "keras.py"),
    ):
        if importlib.util.find_spec(module) is None:
            config.option.ignore = [*(config.option.ignore or []), str(path)]


@pytest.fixture(params=selected())
def xp(request: pytest.FixtureRequest) -> Backend:
    """The array library under test (see ``tests/backends.py``)."""
    return make(request.param)


@pytest.fixture(params=[n for n in selected() if n in ("torch", "jax", "mlx")] or [None])
def grad_xp(request: pytest.FixtureRequest) -> Backend:
    """An array library with autodiff (torch, JAX, MLX)."""
    if request.param is None:
        pytest.skip("ANYLOSS_BACKENDS selects no library with autodiff")
    return make(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)


@pytest.fixture
def triton_on_cpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """CPU tensors take the Triton entries, in Triton's interpreter (with
    ``ANYLOSS_TEST_DEVICE=cuda`` the tensors are on the GPU and the kernels
    compiled for it); yields the kernels launched (``tests/test_triton*.py``)."""
    from anyloss.kernels import _triton

    launched: list[str] = []
    monkeypatch.setattr(_triton, "launched", launched.append)
    with _triton.on_cpu(DEVICE == "cpu"):  # (on a GPU test device: the GPU)
        yield launched

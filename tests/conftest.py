"""Shared fixtures: ``xp`` runs a test once per installed array library."""

from __future__ import annotations

import os

import numpy as np
import pytest
from backends import Backend, make, selected

os.environ.setdefault("JAX_PLATFORMS", "cpu")


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

"""``'mean'``/``'sum'`` of losses holding inf or NaN, on every backend.

An infinite loss sums to inf (not NaN: MLX's compensated sum forms inf - inf
internally), a NaN to NaN, with a finite gradient where the loss is finite.
"""

from __future__ import annotations

import numpy as np
import pytest

import anyloss


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_inf_and_nan_propagate(xp, reduction: str) -> None:
    p = np.array([1.0, np.inf, 2.0], np.float32)
    t = np.zeros(3, np.float32)
    got = xp.to_numpy(anyloss.l1_loss(xp.asarray(p), xp.asarray(t), reduction=reduction))
    assert got == np.inf
    p[1] = np.nan
    got = xp.to_numpy(anyloss.l1_loss(xp.asarray(p), xp.asarray(t), reduction=reduction))
    assert np.isnan(got)


def test_gradient_with_an_infinite_loss(grad_xp) -> None:
    t = grad_xp.asarray(np.zeros(3, np.float32))
    got = grad_xp.grad(
        lambda v: anyloss.l1_loss(v, t, reduction="sum"), np.array([1.0, np.inf, -2.0], np.float32)
    )
    np.testing.assert_array_equal(got, [1.0, 1.0, -1.0])


def test_large_mlx_sums_stay_exact() -> None:
    """The compensated MLX sum (MLX's own drifts by n * eps) still applies."""
    mx = pytest.importorskip("mlx.core")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 1_000_000).astype(np.float32)
    got = float(np.array(anyloss.l1_loss(mx.array(x), mx.zeros(x.shape), reduction="sum")))
    exact = float(np.sum(x, dtype=np.float64))
    assert abs(got - exact) <= 2 * float(np.spacing(np.float32(exact)))

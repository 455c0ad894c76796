"""``dice_loss`` on every array library.

* Values against a float64 PyTorch transcription of the soft Dice formula
  ``1 - (2 sum(x t) + s) / (sum(x) + sum(t) + s)`` for every axis form, smooth
  and reduction, and against Keras (``keras.losses.dice`` and
  ``keras.losses.Dice``). Keras has no smoothing: it computes
  ``1 - 2 sum(x t) / (sum(x) + sum(t) + 1e-7)`` (``backend.epsilon()`` in the
  denominator only), sums over all axes by default (``axis=None``), takes
  ``(y_true, y_pred)`` in that order, and its ``Dice`` class averages the
  per-example values (``sum_over_batch_size``). ``dice_loss(y_pred, y_true,
  axis=..., smooth=0.0)`` reproduces it up to that 1e-7.
* Gradients with respect to the predictions against torch autograd.
* ``jax.jit``, ``mx.compile``, Dask graphs left uncomputed.
* Errors: reduction, shapes, smooth, axes.
* Accuracy where ``1 - ratio`` cancels (near-perfect overlap) against mpmath.
"""

from __future__ import annotations

import functools
import os

import accuracy_cases as A
import mpmath
import numpy as np
import pytest
from backends import make

import anyloss

os.environ.setdefault("KERAS_BACKEND", "jax")
torch = pytest.importorskip("torch")

REDUCTIONS = ("none", "mean", "sum")
_RNG = np.random.default_rng(20261125)


def f32(a):
    return np.asarray(a, dtype=np.float32)


SHAPE = (2, 3, 4)
P = f32(_RNG.uniform(0, 1, SHAPE))  # predicted probabilities
MASK = f32(_RNG.random(SHAPE) < 0.5)
SOFT = f32(_RNG.uniform(0, 1, SHAPE))
AXES = (-1, 0, (1, 2), [0, 2], (0, 1, 2), None)


def _np_axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def torch_dice(x, t, axis, smooth):
    """The soft Dice loss, written as its formula."""
    dims = list(range(x.ndim)) if axis is None else _np_axis(axis)
    inter = (x * t).sum(dim=dims)
    return 1 - (2 * inter + smooth) / (x.sum(dim=dims) + t.sum(dim=dims) + smooth)


def _t64(a):
    return torch.asarray(np.asarray(a, np.float64))


def ref_dice(x, t, axis=-1, smooth=1.0, reduction="mean"):
    loss = torch_dice(_t64(x), _t64(t), axis, smooth).numpy(force=True)
    if reduction == "mean":
        return np.asarray(loss.mean())
    if reduction == "sum":
        return np.asarray(loss.sum())
    return loss


def _call(xp, x, t, dtype="float32", **kw):
    out = anyloss.dice_loss(xp.asarray(x, dtype), xp.asarray(t, dtype), **kw)
    got = xp.to_numpy(out)
    assert xp.dtype_name(out) == dtype
    return got


def _close(got, want, dtype="float32"):
    rtol, atol = (1e-5, 1e-7) if dtype == "float32" else (1e-12, 1e-15)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------- values


def test_matches_the_formula(xp):
    dtypes = ("float32", "float64") if xp.has_float64 else ("float32",)
    for dtype in dtypes:
        for t in (MASK, SOFT):
            for axis in AXES:
                for smooth in (0.0, 1.0) if dtype == "float32" else (1e-5,):
                    got = _call(xp, P, t, dtype, axis=axis, smooth=smooth, reduction="none")
                    _close(got, ref_dice(P, t, axis, smooth, "none"), dtype)
        for reduction in REDUCTIONS:
            for smooth in (0.5, 10.0):
                got = _call(xp, P, SOFT, dtype, axis=(1, 2), smooth=smooth, reduction=reduction)
                _close(got, ref_dice(P, SOFT, (1, 2), smooth, reduction), dtype)


def test_defaults(xp):
    # axis=-1, smooth=1.0, reduction='mean': a 0-d array
    got = _call(xp, P, MASK)
    assert got.shape == ()
    _close(got, ref_dice(P, MASK, -1, 1.0, "mean"))
    # integer or boolean masks as targets
    for mask in (MASK.astype(np.int32), MASK > 0):
        out = anyloss.dice_loss(xp.asarray(P), xp.asarray(mask))
        assert xp.dtype_name(out) == "float32"
        _close(xp.to_numpy(out), ref_dice(P, MASK, -1, 1.0, "mean"))


def test_half_precision_in_and_out(xp):
    for dtype in ("float16", "bfloat16"):
        if xp.name == "array_api_strict" or (
            dtype == "bfloat16" and xp.name not in ("torch", "jax", "mlx")
        ):
            continue
        got = _call(xp, P, MASK, dtype, reduction="none")
        np.testing.assert_allclose(got, ref_dice(P, MASK, -1, 1.0, "none"), rtol=1e-2)


@functools.cache
def _keras():
    return pytest.importorskip("keras")


def test_reproduces_keras(xp):
    keras = _keras()
    for axis in ((1, 2), None):
        want = np.asarray(keras.losses.dice(MASK, P, axis=axis), np.float64)
        got = _call(xp, P, MASK, axis=axis, smooth=0.0, reduction="none")
        np.testing.assert_allclose(got, want, rtol=2e-6)
        want = np.asarray(keras.losses.Dice(axis=axis)(MASK, P), np.float64)
        got = _call(xp, P, MASK, axis=axis, smooth=0.0, reduction="mean")
        np.testing.assert_allclose(got, want, rtol=2e-6)


def test_keras_documented_example():
    """Keras' docstring example for ``keras.losses.dice`` (hand-checked:
    1 - 2*2/8 = 0.5 and 1 - 2*1/(2 + 2.3) = 0.7575...)."""
    y_true = f32([[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]])
    y_pred = f32([[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]])
    got = anyloss.dice_loss(y_pred, y_true, axis=(1, 2, 3), smooth=0.0, reduction="none")
    np.testing.assert_allclose(got, [0.5, 0.75757575], rtol=1e-6)
    got = anyloss.dice_loss(y_pred, y_true, axis=None, smooth=0.0)
    np.testing.assert_allclose(got, 0.6164384, rtol=1e-6)


def test_empty_pair():
    """Nothing predicted, nothing there: the limit smooth -> 0 (loss 0), also at
    smooth=0, where the formula is 0/0 (Keras' epsilon gives 1 there)."""
    zeros = np.zeros((2, 4), np.float32)
    for smooth in (0.0, 1e-6, 1.0):
        got = anyloss.dice_loss(zeros, zeros, smooth=smooth, reduction="none")
        np.testing.assert_array_equal(got, [0.0, 0.0])


def test_near_perfect_overlap_does_not_cancel():
    """``1 - ratio`` in float32 loses the loss of a near-perfect prediction."""
    t = f32([[1, 1, 1, 0, 0, 0]])
    x = f32([[1 - 1e-7, 1, 1, 1e-7, 0, 0]])  # float32 values; truth from them
    got = anyloss.dice_loss(x, t, smooth=0.0, reduction="none")
    xs = [mpmath.mpf(float(v)) for v in x[0]]
    ts = [mpmath.mpf(float(v)) for v in t[0]]
    true = 1 - 2 * mpmath.fsum(a * b for a, b in zip(xs, ts, strict=True)) / (
        mpmath.fsum(xs) + mpmath.fsum(ts)
    )
    naive = 1 - 2 * (x * t).sum() / (x.sum() + t.sum())
    assert A.ulp_error(float(naive), true) > 1e3  # float32 1 - ratio: noise
    assert A.ulp_error(float(got[0]), true) <= 1


# ------------------------------------------------------------------- gradients


@pytest.mark.parametrize("axis,smooth", [(-1, 1.0), ((1, 2), 0.0), (None, 1e-3)])
def test_gradient(grad_xp, axis, smooth):
    t = grad_xp.asarray(SOFT)
    got = grad_xp.grad(
        lambda v: anyloss.dice_loss(v, t, axis=axis, smooth=smooth, reduction="sum"), P
    )
    v = _t64(P).requires_grad_(True)
    torch_dice(v, _t64(SOFT), axis, smooth).sum().backward()
    np.testing.assert_allclose(got, v.grad.numpy(force=True), rtol=1e-5, atol=1e-6)


def test_gradient_of_empty_pair_is_finite(grad_xp):
    zeros = np.zeros((2, 4), np.float32)
    t = grad_xp.asarray(zeros)
    got = grad_xp.grad(lambda v: anyloss.dice_loss(v, t, smooth=0.0, reduction="sum"), zeros)
    assert np.isfinite(got).all()


# ------------------------------------------------------------------ transforms


def test_jax_jit():
    jax = pytest.importorskip("jax")
    lib = make("jax")
    x, t = lib.asarray(P), lib.asarray(SOFT)

    @jax.jit
    def run(x, t):
        return (
            anyloss.dice_loss(x, t),
            anyloss.dice_loss(x, t, axis=(1, 2), smooth=0.0, reduction="none"),
            anyloss.dice_loss(x, t, axis=None, reduction="sum"),
        )

    mean, per_example, total = run(x, t)
    lib.check_library(mean)
    assert mean.shape == () and total.shape == ()
    _close(np.asarray(mean), ref_dice(P, SOFT))
    _close(np.asarray(per_example), ref_dice(P, SOFT, (1, 2), 0.0, "none"))
    _close(np.asarray(total), ref_dice(P, SOFT, None, 1.0, "sum"))
    g = jax.jit(jax.grad(lambda v, t: anyloss.dice_loss(v, t, reduction="sum")))(x, t)
    v = _t64(P).requires_grad_(True)
    torch_dice(v, _t64(SOFT), -1, 1.0).sum().backward()
    np.testing.assert_allclose(np.asarray(g), v.grad.numpy(force=True), rtol=1e-5, atol=1e-6)


def test_mx_compile():
    mx = pytest.importorskip("mlx.core")
    lib = make("mlx")
    fn = mx.compile(lambda x, t: anyloss.dice_loss(x, t, axis=(1, 2), reduction="none"))
    for _ in range(2):
        got = lib.to_numpy(fn(lib.asarray(P), lib.asarray(MASK)))
        _close(got, ref_dice(P, MASK, (1, 2), 1.0, "none"))


def test_dask_stays_lazy():
    dask = pytest.importorskip("dask")
    lib = make("dask")
    calls = []

    def counting(dsk, keys, **kwargs):
        calls.append(keys)
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=counting):
        x, t = lib.asarray(P), lib.asarray(MASK)
        for reduction in REDUCTIONS:
            for axis in (-1, (0, 2), None):
                del calls[:]
                out = anyloss.dice_loss(x, t, axis=axis, reduction=reduction)
                assert calls == [], "anyloss computed the Dask graph"
                lib.check_library(out)
                _close(out.compute(), ref_dice(P, MASK, axis, 1.0, reduction))
                assert len(calls) == 1


# ---------------------------------------------------------------------- errors


def test_errors(xp):
    x, t = xp.asarray(P), xp.asarray(MASK)
    with pytest.raises(ValueError, match=r"dice_loss\(\): invalid reduction 'max'"):
        anyloss.dice_loss(x, t, reduction="max")
    with pytest.raises(ValueError, match=r"inputs.shape=\(2, 3, 4\), targets.shape=\(2, 3\)"):
        anyloss.dice_loss(x, xp.asarray(MASK[..., 0]))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"dice_loss\(\): smooth must be in \[0, inf\)"):
            anyloss.dice_loss(x, t, smooth=bad)
    with pytest.raises(TypeError, match=r"smooth must be a real number"):
        anyloss.dice_loss(x, t, smooth="1")
    for axis in (3, -4, (0, 5)):
        with pytest.raises(IndexError, match=r"dice_loss\(\): axis -?\d is out of range"):
            anyloss.dice_loss(x, t, axis=axis)
        with pytest.raises(ValueError):  # AxisError is both
            anyloss.dice_loss(x, t, axis=axis)
    with pytest.raises(ValueError, match=r"axis \(1, -2\) names an axis more than once"):
        anyloss.dice_loss(x, t, axis=(1, -2))
    with pytest.raises(TypeError, match=r"axis must be an int, a tuple of ints or None"):
        anyloss.dice_loss(x, t, axis=1.0)


# -------------------------------------------------------------------- accuracy
#
# float32 inputs; the truth is the formula in mpmath at 50 digits from the
# same float32 numbers. NumPy, PyTorch and Dask sum in float64 and are held to
# 4 ulp; JAX (no x64) and MLX sum float32 (the numerator's terms are all
# nonnegative, so nothing cancels), bounds measured in BOUNDS.

ROWS, COLS = 32, 16


def _regimes():
    rng = np.random.default_rng(9)
    hard = (rng.random((ROWS, COLS)) < 0.5).astype(np.float64)
    soft = rng.uniform(0, 1, (ROWS, COLS))
    d = 10.0 ** rng.uniform(-7, -3, (ROWS, COLS))
    return {
        # a mask predicted within 1e-7..1e-3: loss ~ 1e-5, ratio ~ 1
        "near_perfect": (f32(np.where(hard > 0, 1 - d, d)), f32(hard), {}),
        "near_perfect_soft": (f32(np.minimum(soft * (1 + d), 1)), f32(soft), {"smooth": 0.0}),
        "ordinary": (f32(rng.uniform(0, 1, (ROWS, COLS))), f32(soft), {}),
        "tiny_values": (f32(soft * 1e-20), f32(hard * 1e-20), {"smooth": 0.0}),
        "all_axes": (f32(np.where(hard > 0, 1 - d, d)), f32(hard), {"axis": None}),
    }


@functools.cache
def _truth(regime):
    x, t, kw = _regimes()[regime]
    axis, smooth = kw.get("axis", -1), mpmath.mpf(kw.get("smooth", 1.0))
    rows = [(x.ravel(), t.ravel())] if axis is None else list(zip(x, t, strict=True))
    out = []
    with mpmath.workdps(50):
        for xr, tr in rows:
            xs = [mpmath.mpf(float(v)) for v in xr]
            ts = [mpmath.mpf(float(v)) for v in tr]
            inter = mpmath.fsum(a * b for a, b in zip(xs, ts, strict=True))
            out.append(1 - (2 * inter + smooth) / (mpmath.fsum(xs) + mpmath.fsum(ts) + smooth))
    return out


# regime -> (JAX, MLX) bound in ulp; the worst measured (jax 0.10.2, mlx 0.32.4,
# x86-64 CPU) in the comment
BOUNDS = {
    "near_perfect": (4, 4),  # 1.6, 1.6
    "near_perfect_soft": (4, 4),  # 1.8, 1.8
    "ordinary": (4, 4),  # 2.3, 2.3
    "tiny_values": (4, 4),  # 1.0, 1.0
    "all_axes": (4, 4),  # 0.99, 0.99
}


def _worst(regime, lib_name):
    lib = make(lib_name)
    x, t, kw = _regimes()[regime]
    out = anyloss.dice_loss(lib.asarray(x), lib.asarray(t), **kw, reduction="none")
    got = np.atleast_1d(lib.to_numpy(out))
    assert got.dtype == np.float32
    return max(A.ulp_error(g, true) for g, true in zip(got, _truth(regime), strict=True))


@pytest.mark.parametrize("lib_name", ["numpy", "torch", "dask", "jax", "mlx"])
@pytest.mark.parametrize("regime", list(BOUNDS))
def test_accuracy(regime, lib_name):
    worst = _worst(regime, lib_name)
    bound = BOUNDS[regime][lib_name == "mlx"] if lib_name in ("jax", "mlx") else 4
    assert worst <= bound, f"{regime} on {lib_name}: {worst:.3g} ulp > {bound}"

"""Property-based tests (hypothesis) of the loss contract, on NumPy.

Covered: cross_entropy's invariance to a common shift of the logits and its
value ``log(C)`` for equal logits of any magnitude; ``sum == mean * n`` for
every loss; non-negativity where the math guarantees it; ``axis=k`` equal to
moving axis ``k`` last; the shape of ``reduction='none'`` results.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import anyloss

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
FLOATS = (np.float32, np.float64)


def _eps(dtype: type) -> float:
    return float(np.finfo(dtype).eps)


def _within(got: np.ndarray, want: np.ndarray, tol: np.ndarray) -> None:
    """``|got - want| <= tol`` elementwise (``tol`` an array), in float64."""
    err = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    assert np.all(err <= tol), f"got {got!r}, want {want!r}, error {err!r} > {tol!r}"


def _log_softmax(a: np.ndarray, axis: int = -1) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=axis, keepdims=True))


def _probs(rng: np.random.Generator, shape: tuple[int, ...], axis: int = -1) -> np.ndarray:
    """Probabilities along ``axis`` that sum to exactly 1 (multiples of 1/64)."""
    moved = np.moveaxis(np.zeros(shape), axis, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    out = (
        np.stack(
            [
                rng.multinomial(64, rng.dirichlet(np.ones(flat.shape[1]))) / 64
                for _ in range(flat.shape[0])
            ]
        )
        if flat.size
        else flat
    )
    return np.moveaxis(out.reshape(moved.shape), -1, axis)


def _ce_reference(y: np.ndarray, targets: np.ndarray, smoothing: float) -> np.ndarray:
    """float64 cross entropy of float logits ``y`` (last axis), from the exact
    differences ``y - max(y)``."""
    z = y.astype(np.float64) - y.max(axis=-1, keepdims=True).astype(np.float64)
    lse = np.log(np.exp(z).sum(axis=-1))
    if targets.ndim == y.ndim:
        score = (targets.astype(np.float64) * z).sum(axis=-1)
    else:
        score = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
    return lse - (1 - smoothing) * score - smoothing * z.mean(axis=-1)


# ---------------------------------------------------------------------------
# cross_entropy: shift invariance, equal logits
# ---------------------------------------------------------------------------


@SETTINGS
@given(
    dtype=st.sampled_from(FLOATS),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 6)),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    shift=st.one_of(st.floats(-1e4, 1e4), st.sampled_from([1e4, -1e4, 9999.5, 0.5])),
    probs=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.0, 0.1, 0.5]),
)
def test_cross_entropy_shift_invariance(dtype, shape, seed, scale, shift, probs, smoothing):
    rng = np.random.default_rng(seed)
    x = (scale * rng.normal(size=shape)).astype(dtype)
    targets = _probs(rng, shape).astype(dtype) if probs else rng.integers(0, shape[1], shape[0])
    c = dtype(shift)
    y = x + c  # rounded in ``dtype``: the differences of y are what the loss sees

    base = anyloss.cross_entropy(x, targets, label_smoothing=smoothing)
    shifted = anyloss.cross_entropy(y, targets, label_smoothing=smoothing)
    assert shifted.dtype == dtype and shifted.shape == (shape[0],)
    eps = _eps(dtype)

    # 1. the shifted logits' loss is accurate for what they hold: float rounding
    #    of the loss only, not of the (large) logits.
    ref = _ce_reference(y, targets, smoothing)
    span = np.abs(y.astype(np.float64) - y.max(axis=-1, keepdims=True)).max(axis=-1)
    _within(shifted, ref, 16 * eps * (np.abs(ref) + 1 + span))

    # 2. and equal to the unshifted loss, up to the rounding of x + c:
    #    |d loss / d x|_1 <= 2, each logit moved by at most half an ulp of |x + c|.
    moved = np.spacing(np.abs(y)).astype(np.float64).max(axis=-1)
    tol = 2 * moved + 16 * eps * (1 + np.abs(base.astype(np.float64)) + span)
    _within(shifted, base, tol)


@pytest.mark.parametrize("shift", [1e4, 1e6, -1e6])
@pytest.mark.parametrize("dtype", FLOATS)
def test_cross_entropy_large_shift_exact_differences(shift, dtype):
    """Logits whose differences are exact in the dtype: the loss must not move."""
    x = np.array([[0.0, 1.0, 2.0, -3.0], [0.5, 0.25, -1.0, 4.0]], dtype=dtype)
    t = np.array([2, 0])
    base = anyloss.cross_entropy(x, t)
    shifted = anyloss.cross_entropy(x + dtype(shift), t)
    np.testing.assert_allclose(shifted, base, rtol=4 * _eps(dtype), atol=0)


_MAGNITUDES = st.one_of(
    st.sampled_from(
        [0.0, -0.0, 1.0, -1.0, 1e4, -1e4, 1e6, 1e20, -1e20, 1e30, -1e30, 3.0e38, -3.0e38]
    ),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)


@SETTINGS
@given(
    dtype=st.sampled_from(FLOATS),
    value=_MAGNITUDES,
    n=st.integers(1, 3),
    num_classes=st.integers(1, 8),
    kind=st.sampled_from(["index", "probs"]),
    smoothing=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_cross_entropy_equal_logits_is_log_c(dtype, value, n, num_classes, kind, smoothing, seed):
    rng = np.random.default_rng(seed)
    x = np.full((n, num_classes), value, dtype=dtype)
    if kind == "index":
        targets = rng.integers(0, num_classes, n)
    else:
        targets = _probs(rng, (n, num_classes)).astype(dtype)
    out = anyloss.cross_entropy(x, targets, label_smoothing=smoothing)
    assert out.dtype == dtype
    np.testing.assert_allclose(
        out, np.full(n, math.log(num_classes)), rtol=4 * _eps(dtype), atol=4 * _eps(dtype)
    )


@pytest.mark.parametrize("value", [1e20, -1e20, 1e30, 3e38])
def test_cross_entropy_equal_logits_1e20_mean(value):
    x = np.full((3, 5), value, dtype=np.float32)
    out = anyloss.cross_entropy(x, np.array([0, 4, 2]), reduction="mean")
    assert out.shape == () and out.dtype == np.float32
    np.testing.assert_allclose(out, np.log(5.0), rtol=1e-6)


# ---------------------------------------------------------------------------
# Every loss: inputs for a given shape
# ---------------------------------------------------------------------------

LOSSES = [
    "binary_cross_entropy",
    "binary_cross_entropy_probs",
    "cosine_similarity_loss",
    "cross_entropy",
    "cross_entropy_probs",
    "gaussian_nll_loss",
    "hinge_loss",
    "huber_loss",
    "kl_div_loss",
    "l1_loss",
    "log_cosh_loss",
    "margin_ranking_loss",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
    "triplet_loss",
]


def build(name: str, rng: np.random.Generator, shape: tuple[int, ...], dtype: type):
    """``(function, args, kwargs)`` for loss ``name`` with predictions of ``shape``
    (class/embedding axis last)."""
    f = lambda a: np.asarray(a).astype(dtype)  # noqa: E731
    normal = lambda s=1.0: f(s * rng.normal(size=shape))  # noqa: E731
    rest = shape[:-1]
    c = shape[-1]
    pm = f(rng.choice([-1.0, 1.0], size=shape))
    fn = getattr(anyloss, name.removesuffix("_probs"))
    if name == "cross_entropy":
        return fn, (normal(3), rng.integers(0, c, rest)), {}
    if name == "cross_entropy_probs":
        return fn, (normal(3), f(_probs(rng, shape))), {"label_smoothing": 0.1}
    if name == "binary_cross_entropy":
        return fn, (normal(4), f(rng.uniform(0, 1, shape))), {}
    if name == "binary_cross_entropy_probs":
        return (
            fn,
            (f(rng.uniform(0, 1, shape)), f(rng.integers(0, 2, shape))),
            {"with_logits": False},
        )
    if name == "nll_loss":
        return fn, (f(_log_softmax(rng.normal(size=shape))), rng.integers(0, c, rest)), {}
    if name == "hinge_loss":
        return fn, (normal(2), pm), {}
    if name in ("huber_loss", "smooth_l1_loss", "l1_loss", "mse_loss", "log_cosh_loss"):
        return fn, (normal(3), normal(3)), {}
    if name == "gaussian_nll_loss":
        return fn, (normal(), normal(), f(rng.uniform(0.01, 3, shape))), {"full": True}
    if name == "kl_div_loss":
        return (
            fn,
            (
                f(_log_softmax(2 * rng.normal(size=shape))),
                f(_log_softmax(2 * rng.normal(size=shape))),
            ),
            {},
        )
    if name == "cosine_similarity_loss":
        return fn, (normal(), normal()), {"axis": -1}
    if name == "triplet_loss":
        return fn, (normal(), normal(), normal()), {"margin": 0.5}
    if name == "margin_ranking_loss":
        return fn, (normal(), normal(), pm), {"margin": 0.1}
    raise KeyError(name)


@SETTINGS
@given(
    name=st.sampled_from(LOSSES),
    dtype=st.sampled_from(FLOATS),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_sum_equals_mean_times_n(name, dtype, shape, seed):
    fn, args, kw = build(name, np.random.default_rng(seed), shape, dtype)
    none = fn(*args, **kw, reduction="none")
    total = fn(*args, **kw, reduction="sum")
    mean = fn(*args, **kw, reduction="mean")
    assert none.dtype == total.dtype == mean.dtype == dtype
    assert isinstance(total, np.ndarray) and total.shape == ()
    assert isinstance(mean, np.ndarray) and mean.shape == ()
    n = none.size
    eps = _eps(dtype)
    scale = float(np.abs(none.astype(np.float64)).sum())
    np.testing.assert_allclose(float(total), float(mean) * n, rtol=4 * eps, atol=4 * eps * scale)
    # and both are the reductions of the 'none' result (accurate accumulation)
    exact = math.fsum(none.astype(np.float64).ravel().tolist())
    np.testing.assert_allclose(float(total), exact, rtol=2 * eps, atol=2 * eps * scale)
    np.testing.assert_allclose(float(mean), exact / n, rtol=2 * eps, atol=2 * eps * scale / n)


# ---------------------------------------------------------------------------
# Non-negativity
# ---------------------------------------------------------------------------


def _finite(dtype: type, bound: float | None = None):
    width = 32 if dtype == np.float32 else 64
    if bound is not None:
        bound = float(np.dtype(dtype).type(bound))
    kw = {"min_value": -bound, "max_value": bound} if bound is not None else {}
    return st.floats(allow_nan=False, allow_infinity=False, width=width, **kw)


def _pairs(dtype, bound=None, unit=False):
    elements = st.floats(0, 1, width=32) if unit else _finite(dtype, bound)
    return hnp.arrays(
        dtype,
        st.shared(hnp.array_shapes(min_dims=1, max_dims=2, max_side=5), key="shape"),
        elements=elements,
    )


def _nonneg(out: np.ndarray) -> None:
    assert not np.isnan(out).any(), out
    assert (out >= 0).all(), out


@SETTINGS
@given(dtype=st.sampled_from(FLOATS), data=st.data())
@pytest.mark.parametrize(
    "name", ["l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss", "log_cosh_loss"]
)
def test_regression_losses_nonnegative(name, dtype, data):
    bound = 1e30 if dtype == np.float32 else 1e150
    x = data.draw(_pairs(dtype, bound), label="x")
    t = data.draw(_pairs(dtype, bound), label="t")
    _nonneg(getattr(anyloss, name)(x, t, reduction="none"))


@SETTINGS
@given(dtype=st.sampled_from(FLOATS), data=st.data(), with_logits=st.booleans())
def test_binary_cross_entropy_nonnegative(dtype, data, with_logits):
    x = data.draw(_pairs(dtype, 1e30, unit=not with_logits), label="x")
    t = data.draw(_pairs(dtype, unit=True), label="t")
    _nonneg(anyloss.binary_cross_entropy(x, t, with_logits=with_logits, reduction="none"))


@SETTINGS
@given(
    dtype=st.sampled_from(FLOATS),
    data=st.data(),
    smoothing=st.sampled_from([0.0, 0.2, 0.9]),
    seed=st.integers(0, 2**16),
)
def test_cross_entropy_nonnegative(dtype, data, smoothing, seed):
    rng = np.random.default_rng(seed)
    x = data.draw(
        hnp.arrays(
            dtype, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=_finite(dtype, 1e30)
        ),
        label="logits",
    )
    idx = rng.integers(0, x.shape[1], x.shape[0])
    _nonneg(anyloss.cross_entropy(x, idx, label_smoothing=smoothing))
    raw = rng.uniform(0, 1, x.shape) * (rng.uniform(size=x.shape) < 0.7)
    probs = (raw / np.maximum(raw.sum(-1, keepdims=True), 1e-300)).astype(dtype)
    _nonneg(anyloss.cross_entropy(x, probs, label_smoothing=smoothing))


@SETTINGS
@given(dtype=st.sampled_from(FLOATS), data=st.data(), margin=st.floats(-2, 2))
def test_ranking_losses_nonnegative(dtype, data, margin):
    x1 = data.draw(_pairs(dtype, 1e30), label="x1")
    x2 = data.draw(_pairs(dtype, 1e30), label="x2")
    y = np.where(data.draw(_pairs(dtype, unit=True), label="y") < 0.5, -1.0, 1.0).astype(dtype)
    _nonneg(anyloss.hinge_loss(x1, y))
    _nonneg(anyloss.margin_ranking_loss(x1, x2, y, margin=margin))
    _nonneg(anyloss.triplet_loss(x1, x2, y * x1, margin=margin))


@SETTINGS
@given(
    dtype=st.sampled_from(FLOATS),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 6)),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 5.0]),
    same=st.booleans(),
)
def test_kl_div_nonnegative_for_normalized_distributions(dtype, shape, seed, scale, same):
    rng = np.random.default_rng(seed)
    a = scale * rng.normal(size=shape)
    b = a if same else scale * rng.normal(size=shape)
    if shape[1] > 1 and rng.uniform() < 0.3:  # a class of target probability exactly 0
        b = b.copy()
        b[..., 0] = -np.inf
    x = _log_softmax(a).astype(dtype)
    t = _log_softmax(b).astype(dtype)
    out = anyloss.kl_div_loss(x, t)
    assert not np.isnan(out).any()
    if same:
        assert np.all(out[np.isfinite(t).all(-1)] == 0)
    # Rounding the log-probabilities to ``dtype`` leaves them normalized only to
    # within a few ulp, which is all the slack the sign may have.
    p = np.exp(t.astype(np.float64))
    size = np.where(p > 0, np.abs(t) + np.abs(x) + 1, 0.0)
    slack = 4 * _eps(dtype) * np.sum(p * size, axis=-1)
    assert np.all(out >= -slack), (out, slack)


# ---------------------------------------------------------------------------
# axis=k is the same as moving axis k last
# ---------------------------------------------------------------------------

AXIS_LOSSES = [
    "cross_entropy",
    "cross_entropy_probs",
    "nll_loss",
    "kl_div_loss",
    "cosine_similarity_loss",
    "triplet_loss",
]


@SETTINGS
@given(
    name=st.sampled_from(AXIS_LOSSES),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    reduction=st.sampled_from(["none", "none", "mean", "sum"]),
)
def test_axis_equals_moved_axis(name, shape, data, seed, reduction):
    ndim = len(shape)
    k = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    rng = np.random.default_rng(seed)
    fn = getattr(anyloss, name.removesuffix("_probs"))
    c = shape[k]
    rest = tuple(s for i, s in enumerate(shape) if i != k % ndim)
    if name in ("cross_entropy", "nll_loss"):
        x = rng.normal(size=shape)
        if name == "nll_loss":
            x = _log_softmax(x, axis=k)
        args, moved = [x, rng.integers(0, c, rest)], [True, False]
    elif name == "cross_entropy_probs":
        args, moved = [2 * rng.normal(size=shape), _probs(rng, shape, axis=k)], [True, True]
    elif name == "kl_div_loss":
        args = [_log_softmax(rng.normal(size=shape), k), _log_softmax(rng.normal(size=shape), k)]
        moved = [True, True]
    elif name == "cosine_similarity_loss":
        args, moved = [rng.normal(size=shape), rng.normal(size=shape)], [True, True]
    else:
        args, moved = [rng.normal(size=shape) for _ in range(3)], [True] * 3
    got = fn(*args, axis=k, reduction=reduction)
    moved_args = [np.moveaxis(a, k, -1) if m else a for a, m in zip(args, moved, strict=True)]
    want = fn(*moved_args, axis=-1, reduction=reduction)
    assert got.shape == want.shape == (rest if reduction == "none" else ())
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------
# reduction='none' shapes
# ---------------------------------------------------------------------------

SAME_SHAPE = [
    "binary_cross_entropy",
    "l1_loss",
    "mse_loss",
    "smooth_l1_loss",
    "gaussian_nll_loss",
    "margin_ranking_loss",
]
NARGS = {"gaussian_nll_loss": 3, "margin_ranking_loss": 3, "triplet_loss": 3}


@SETTINGS
@given(
    name=st.sampled_from(SAME_SHAPE),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
    seed=st.integers(0, 2**16),
)
def test_none_shape_same_shape_losses(name, shape, seed):
    rng = np.random.default_rng(seed)
    args = [rng.uniform(0.1, 0.9, shape) for _ in range(NARGS.get(name, 2))]
    out = getattr(anyloss, name)(*args, reduction="none")
    assert isinstance(out, np.ndarray) and out.shape == shape


@SETTINGS
@given(
    name=st.sampled_from(["hinge_loss", "huber_loss", "log_cosh_loss"]),
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, min_side=0, max_side=3),
    seed=st.integers(0, 2**16),
)
def test_none_shape_elementwise_broadcast(name, shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.normal(size=s) for s in shapes.input_shapes)
    out = getattr(anyloss, name)(a, b, reduction="none")
    assert isinstance(out, np.ndarray) and out.shape == shapes.result_shape


@SETTINGS
@given(
    name=st.sampled_from(["kl_div_loss", "cosine_similarity_loss", "triplet_loss"]),
    shapes=hnp.mutually_broadcastable_shapes(
        num_shapes=3, min_dims=1, max_dims=4, min_side=1, max_side=3
    ),
    data=st.data(),
    seed=st.integers(0, 2**16),
)
def test_none_shape_axis_reducing_broadcast(name, shapes, data, seed):
    rng = np.random.default_rng(seed)
    nargs = 3 if name == "triplet_loss" else 2
    arrays = [rng.normal(size=s) for s in shapes.input_shapes[:nargs]]
    result = np.broadcast_shapes(*(a.shape for a in arrays))
    ndim = len(result)
    if name == "cosine_similarity_loss":  # each input must have the axis itself
        arrays = [a.reshape((1,) * (ndim - a.ndim) + a.shape) for a in arrays]
    k = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    out = getattr(anyloss, name)(*arrays, axis=k, reduction="none")
    expected = tuple(s for i, s in enumerate(result) if i != k % ndim)
    assert isinstance(out, np.ndarray) and out.shape == expected


@SETTINGS
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4),
    data=st.data(),
    seed=st.integers(0, 2**16),
    probs=st.booleans(),
)
def test_none_shape_cross_entropy(shape, data, seed, probs):
    rng = np.random.default_rng(seed)
    ndim = len(shape)
    k = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    rest = tuple(s for i, s in enumerate(shape) if i != k % ndim)
    targets = _probs(rng, shape, axis=k) if probs else rng.integers(0, shape[k], rest)
    out = anyloss.cross_entropy(rng.normal(size=shape), targets, axis=k)
    assert isinstance(out, np.ndarray) and out.shape == rest
    w = rng.uniform(size=rest)
    weighted = anyloss.cross_entropy(rng.normal(size=shape), targets, weights=w, axis=k)
    assert weighted.shape == rest


@SETTINGS
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4),
    data=st.data(),
    seed=st.integers(0, 2**16),
)
def test_none_shape_nll_loss(shape, data, seed):
    """Targets broadcast against the inputs without the class axis."""
    rng = np.random.default_rng(seed)
    ndim = len(shape)
    k = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    rest = tuple(s for i, s in enumerate(shape) if i != k % ndim)
    tshape = tuple(data.draw(st.sampled_from([s, 1]), label="tdim") for s in rest)
    targets = rng.integers(0, shape[k], tshape)
    out = anyloss.nll_loss(rng.normal(size=shape), targets, axis=k)
    assert isinstance(out, np.ndarray) and out.shape == rest

"""The losses under the libraries' transforms, in every dtype, on every device.

``jax.jit`` / ``jax.vmap``, ``mx.compile``, ``torch.func``; Dask graphs that
stay uncomputed until the caller asks; gradients of all 14 losses through
torch.autograd, ``jax.grad`` and ``mx.grad`` against float64 central finite
differences; float16/bfloat16 in and out; float64 end to end against an
mpmath reference; results that are 0-d arrays of the input's library.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from backends import make

import anyloss

mpmath = pytest.importorskip("mpmath")

SHAPE = (4, 5)  # one shape for everything: JAX compiles per shape


def _log_softmax(a: np.ndarray, axis: int = -1) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=axis, keepdims=True))


def _away(rng, lo, hi):
    """Random values with ``lo <= |v| <= hi`` (keeps kinks out of reach)."""
    return rng.choice([-1.0, 1.0], size=SHAPE) * rng.uniform(lo, hi, size=SHAPE)


@functools.cache
def cases(seed: int = 0):
    """name -> (function, prediction, [other arguments], kwargs).

    float64 NumPy arrays holding float32 values (float arguments) and int64
    class indices; inputs are smooth points of each loss (no kinks nearby).
    """
    rng = np.random.default_rng(seed)
    n, c = SHAPE
    t = rng.normal(size=SHAPE)
    y = rng.choice([-1.0, 1.0], size=SHAPE)
    x2 = rng.normal(size=SHAPE)
    probs = np.stack([rng.multinomial(64, np.ones(c) / c) for _ in range(n)]) / 64
    raw = {
        "cross_entropy": (2 * rng.normal(size=SHAPE), [rng.integers(0, c, n)], {}),
        "cross_entropy_probs": (2 * rng.normal(size=SHAPE), [probs], {"label_smoothing": 0.1}),
        "binary_cross_entropy": (
            3 * rng.normal(size=SHAPE),
            [rng.integers(0, 2, SHAPE).astype(float)],
            {},
        ),
        "binary_cross_entropy_probs": (
            rng.uniform(0.05, 0.95, SHAPE),
            [rng.integers(0, 2, SHAPE).astype(float)],
            {"with_logits": False},
        ),
        "nll_loss": (_log_softmax(rng.normal(size=SHAPE)), [rng.integers(0, c, n)], {}),
        "hinge_loss": (y * (1 + _away(rng, 0.1, 1.0)), [y], {}),
        "huber_loss": (t + _away(rng, 0.1, 2.5), [t], {"delta": 1.0}),
        "l1_loss": (t + _away(rng, 0.1, 2.0), [t], {}),
        "mse_loss": (rng.normal(size=SHAPE), [t], {}),
        "smooth_l1_loss": (t + _away(rng, 0.1, 2.5), [t], {"beta": 1.0}),
        "log_cosh_loss": (t + _away(rng, 1e-3, 30.0), [t], {}),
        "gaussian_nll_loss": (
            rng.normal(size=SHAPE),
            [t, rng.uniform(0.5, 2.0, SHAPE)],
            {"full": True},
        ),
        "kl_div_loss": (
            _log_softmax(rng.normal(size=SHAPE)),
            [_log_softmax(rng.normal(size=SHAPE))],
            {},
        ),
        "cosine_similarity_loss": (rng.normal(size=SHAPE), [rng.normal(size=SHAPE)], {}),
        "triplet_loss": (
            rng.normal(size=SHAPE),
            [rng.normal(size=SHAPE), rng.normal(size=SHAPE)],
            {"margin": 10.0},
        ),
        "margin_ranking_loss": (x2 + y * (0.5 - _away(rng, 0.1, 1.0)), [x2, y], {"margin": 0.5}),
    }
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    out = {}
    for name, (x, others, kw) in raw.items():
        fn = getattr(anyloss, name.removesuffix("_probs"))
        out[name] = (fn, f32(x), [o if o.dtype.kind in "iu" else f32(o) for o in others], kw)
    return out


NAMES = list(cases())
GRAD_LIBS = ["torch", "jax", "mlx"]


def _to(lib, a: np.ndarray, dtype: str | None = "float32"):
    """``a`` in ``lib``: floats as ``dtype``, class indices as int32."""
    if a.dtype.kind in "iu":
        return lib.asarray(a.astype(np.int32))
    return lib.asarray(a, dtype)


def _reference(name: str, reduction: str, dtype=np.float32):
    fn, x, others, kw = cases()[name]
    cast = lambda a: a if a.dtype.kind in "iu" else a.astype(dtype)  # noqa: E731
    return fn(cast(x), *map(cast, others), **kw, reduction=reduction).astype(np.float64)


# ---------------------------------------------------------------------------
# JAX: jit, vmap, grad under jit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_jax_jit_and_vmap(name):
    jax = pytest.importorskip("jax")
    lib = make("jax")
    fn, x, others, kw = cases()[name]
    args = [_to(lib, a) for a in (x, *others)]
    batched = [
        lib.module.numpy.stack([a, a[::-1], 0.5 * a if a.dtype.kind == "f" else a]) for a in args
    ]

    @jax.jit
    def run(args, batched):
        return (
            fn(*args, **kw, reduction="mean"),
            fn(*args, **kw, reduction="none"),
            jax.vmap(lambda *a: fn(*a, **kw, reduction="sum"))(*batched),
        )

    mean, none, per_batch = run(args, batched)
    lib.check_library(mean)
    assert mean.shape == () and lib.dtype_name(mean) == "float32"
    np.testing.assert_allclose(np.asarray(mean), _reference(name, "mean"), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(none), _reference(name, "none"), rtol=2e-6, atol=1e-7)
    assert per_batch.shape == (3,)
    np_args = [x, *others]
    for i, flip in enumerate(
        [lambda a: a, lambda a: a[::-1], lambda a: 0.5 * a if a.dtype.kind == "f" else a]
    ):
        want = fn(
            *[flip(a) if a.dtype.kind in "iu" else flip(a).astype(np.float32) for a in np_args],
            **kw,
            reduction="sum",
        )
        np.testing.assert_allclose(np.asarray(per_batch[i]), want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_jax_jit_with_class_indices_under_grad(name):
    """Index targets are tracers under jit: the range check is skipped, the
    trace is not broken, and the gradient is right."""
    jax = pytest.importorskip("jax")
    fn, x, (idx,), kw = cases()[name]
    lib = make("jax")
    g = jax.jit(jax.grad(lambda v, t: fn(v, t, **kw, reduction="sum")))(
        lib.asarray(x, "float32"), lib.asarray(idx.astype(np.int32))
    )
    onehot = np.eye(SHAPE[1])[idx]
    want = (np.exp(_log_softmax(x)) - onehot) if name == "cross_entropy" else -onehot
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# MLX: compile; torch.func
# ---------------------------------------------------------------------------


# MLX compiles fused CPU kernels with the system C++ compiler (seconds each on
# a cold cache): a subset, index targets included.
@pytest.mark.parametrize(
    "name", ["cross_entropy", "nll_loss", "kl_div_loss", "triplet_loss", "margin_ranking_loss"]
)
def test_mx_compile(name):
    mx = pytest.importorskip("mlx.core")
    lib = make("mlx")
    fn, x, others, kw = cases()[name]
    args = [_to(lib, a) for a in (x, *others)]
    compiled = mx.compile(
        lambda *a: (fn(*a, **kw, reduction="mean"), fn(*a, **kw, reduction="none"))
    )
    for _ in range(2):  # traced once, then replayed
        mean, none = compiled(*args)
        lib.check_library(mean)
        assert mean.shape == () and lib.dtype_name(mean) == "float32"
        np.testing.assert_allclose(
            lib.to_numpy(mean), _reference(name, "mean"), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            lib.to_numpy(none), _reference(name, "none"), rtol=1e-5, atol=1e-6
        )
    if name == "cross_entropy":  # and gradients through the compiled function
        g = mx.grad(mx.compile(lambda v: fn(v, *args[1:], **kw, reduction="sum")))(args[0])
        np.testing.assert_allclose(np.array(g), _finite_differences(name), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "kl_div_loss", "triplet_loss"])
def test_torch_func_vmap_and_grad(name):
    torch = pytest.importorskip("torch")
    fn, x, others, kw = cases()[name]
    lib = make("torch")
    args = [_to(lib, a) for a in (x, *others)]
    batched = [torch.stack([a, a.flip(0)]) for a in args]
    out = torch.func.vmap(lambda *a: fn(*a, **kw, reduction="sum"))(*batched)
    want = [
        fn(*[a.numpy(force=True) for a in args], **kw, reduction="sum"),
        fn(*[a.flip(0).numpy(force=True) for a in args], **kw, reduction="sum"),
    ]
    np.testing.assert_allclose(out.numpy(force=True), want, rtol=2e-6)
    g = torch.func.grad(lambda v: fn(v, *args[1:], **kw, reduction="sum"))(args[0])
    np.testing.assert_allclose(
        g.numpy(force=True), _finite_differences(name), rtol=1e-4, atol=1e-5
    )


# ---------------------------------------------------------------------------
# Dask: nothing computed until the caller asks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_dask_stays_lazy(name):
    dask = pytest.importorskip("dask")
    lib = make("dask")
    fn, x, others, kw = cases()[name]
    calls = []

    def counting(dsk, keys, **kwargs):
        calls.append(keys)
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=counting):
        for reduction in ("none", "mean", "sum"):
            for dtype in ("float32", "float64"):
                args = [
                    lib.asarray(a, None if a.dtype.kind in "iu" else dtype) for a in (x, *others)
                ]
                del calls[:]
                out = fn(*args, **kw, reduction=reduction)
                assert calls == [], f"anyloss computed the graph ({reduction}, {dtype})"
                lib.check_library(out)
                assert str(out.dtype) == dtype
                assert out.shape == _reference(name, reduction).shape
                got = out.compute()
                assert len(calls) == 1
                np.testing.assert_allclose(
                    got,
                    _reference(name, reduction, np.dtype(dtype)),
                    rtol=1e-6 if dtype == "float32" else 1e-14,
                    atol=1e-7 if dtype == "float32" else 1e-15,
                )


def test_dask_index_check_is_skipped_without_computing():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")

    def refuse(dsk, keys, **kwargs):
        raise AssertionError("computed")

    logits = da.from_array(np.zeros(SHAPE, np.float32), chunks=2)
    with dask.config.set(scheduler=refuse):
        for targets in (np.array([0, 1, 9, -3]), da.from_array(np.array([0, 1, 9, -3]), chunks=2)):
            out = anyloss.cross_entropy(logits, targets, reduction="mean")
            assert isinstance(out, da.Array)
            out = anyloss.nll_loss(logits, targets)
            assert isinstance(out, da.Array)
    # valid indices compute to the right values afterwards
    np.testing.assert_allclose(
        anyloss.cross_entropy(logits, np.array([0, 1, 2, 3])).compute(), np.log(5.0), rtol=1e-6
    )


def _masked_dask(rng):
    """Logits/predictions and index targets whose row count Dask does not know."""
    da = pytest.importorskip("dask.array")
    x = rng.normal(size=(6, 3))
    idx = np.array([0, 1, 2, 0, 1, 2])
    keep = idx > 0
    dx, di = da.from_array(x, chunks=3), da.from_array(idx, chunks=3)
    dkeep = di > 0
    assert math.isnan(dx[dkeep].shape[0])
    return dx[dkeep], di[dkeep], x[keep], idx[keep]


def _lazy_call(func, *args, **kwargs):
    dask = pytest.importorskip("dask")

    def refuse(dsk, keys, **kw):
        raise AssertionError("anyloss computed the Dask graph")

    with dask.config.set(scheduler=refuse):
        out = func(*args, **kwargs)
    return out.compute(scheduler="sync")


def test_dask_unknown_chunks_mean():
    dx, _, x, _ = _masked_dask(np.random.default_rng(5))
    got = _lazy_call(anyloss.mse_loss, dx, dx * 0.5, reduction="mean")
    np.testing.assert_allclose(got, anyloss.mse_loss(x, x * 0.5), rtol=1e-14)


def test_dask_unknown_chunks_same_shape():
    dx, _, x, _ = _masked_dask(np.random.default_rng(6))
    got = _lazy_call(anyloss.l1_loss, dx, dx + 1.0, reduction="none")
    np.testing.assert_allclose(got, anyloss.l1_loss(x, x + 1.0, reduction="none"))


def test_dask_unknown_chunks_broadcast():
    dx, _, x, _ = _masked_dask(np.random.default_rng(7))
    got = _lazy_call(anyloss.kl_div_loss, dx, dx * 0.5)
    np.testing.assert_allclose(got, anyloss.kl_div_loss(x, x * 0.5), rtol=1e-14)


def test_dask_unknown_chunks_class_indices():
    dx, di, x, idx = _masked_dask(np.random.default_rng(8))
    got = _lazy_call(anyloss.cross_entropy, dx, di)
    np.testing.assert_allclose(got, anyloss.cross_entropy(x, idx), rtol=1e-14)


# ---------------------------------------------------------------------------
# Gradients against float64 central differences
# ---------------------------------------------------------------------------


@functools.cache
def _finite_differences(name: str, h: float = 1e-6) -> np.ndarray:
    """d sum(loss) / d prediction, central differences in float64 NumPy."""
    fn, x, others, kw = cases()[name]
    f = lambda v: float(fn(v, *others, **kw, reduction="sum"))  # noqa: E731
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


@pytest.mark.parametrize("backend", GRAD_LIBS)
@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(backend, name):
    lib = make(backend)
    fn, x, others, kw = cases()[name]
    targets = [_to(lib, o) for o in others]
    if backend == "jax":  # one compiled graph instead of op-by-op dispatch
        import jax

        g = np.asarray(
            jax.jit(jax.grad(lambda v: fn(v, *targets, **kw, reduction="sum")))(
                lib.asarray(x, "float32")
            )
        )
    else:
        g = lib.grad(lambda v: fn(v, *targets, **kw, reduction="none"), x.astype(np.float32))
    want = _finite_differences(name)
    assert g.shape == want.shape and g.dtype == np.float32
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize(
    "name",
    [
        "cross_entropy",
        "log_cosh_loss",
        "cosine_similarity_loss",
        "triplet_loss",
        "kl_div_loss",
        "gaussian_nll_loss",
    ],
)
def test_torch_float64_gradient(name):
    """float64 autograd is as accurate as the differences (no float32 inside)."""
    lib = make("torch")
    fn, x, others, kw = cases()[name]
    targets = [lib.asarray(o) for o in others]
    g = lib.grad(lambda v: fn(v, *targets, **kw, reduction="mean"), x)
    assert g.dtype == np.float64
    want = _finite_differences(name) / _reference(name, "none").size
    np.testing.assert_allclose(g, want, rtol=1e-7, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("backend", GRAD_LIBS)
def test_gradient_reductions_agree(backend):
    """grad of 'mean' is grad of 'sum' / n."""
    lib = make(backend)
    fn, x, others, _kw = cases()["cross_entropy"]
    targets = [_to(lib, o) for o in others]
    g_sum = lib.grad(lambda v: fn(v, *targets, reduction="sum"), x.astype(np.float32))
    g_mean = lib.grad(lambda v: fn(v, *targets, reduction="mean"), x.astype(np.float32))
    np.testing.assert_allclose(g_mean * SHAPE[0], g_sum, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# Half precision in, half precision out
# ---------------------------------------------------------------------------

HALF = [
    ("numpy", "float16"),
    ("torch", "float16"),
    ("torch", "bfloat16"),
    ("jax", "float16"),
    ("jax", "bfloat16"),
    ("mlx", "float16"),
    ("mlx", "bfloat16"),
]
HALF_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7}


@pytest.mark.parametrize("backend, half", HALF, ids=[f"{b}-{h}" for b, h in HALF])
def test_half_precision(backend, half):
    lib = make(backend)
    eps = HALF_EPS[half]
    for name, (fn, x, others, kw) in cases().items():
        # the half inputs, and the same values in float32
        args = [_to(lib, a, half) for a in (x, *others)]
        exact = [
            a if a.dtype.kind in "iu" else lib.to_numpy(h).astype(np.float32)
            for a, h in zip((x, *others), args, strict=True)
        ]
        for reduction in ("none", "mean"):
            out = fn(*args, **kw, reduction=reduction)
            lib.check_library(out)
            assert lib.dtype_name(out) == half, (name, reduction, out.dtype)
            want = fn(*exact, **kw, reduction=reduction).astype(np.float64)
            got = lib.to_numpy(out).astype(np.float64)
            assert got.shape == want.shape
            # rounded once to half precision (half an ulp, with some slack)
            np.testing.assert_allclose(
                got, want, rtol=eps, atol=1e-6, err_msg=f"{name} {reduction}"
            )


# ---------------------------------------------------------------------------
# float64 end to end
# ---------------------------------------------------------------------------

mpmath.mp.dps = 40
_M = mpmath.mpf


def _mp_rows(a: np.ndarray):
    return [[_M(float(v)) for v in row] for row in a]


def _mp_lse(row):
    m = max(row)
    return m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in row))


def _mp_elementwise(name, v, o, kw):
    if name == "binary_cross_entropy":
        return mpmath.log(1 + mpmath.exp(v)) - v * o[0]
    if name == "binary_cross_entropy_probs":
        return -(o[0] * max(mpmath.log(v), -100) + (1 - o[0]) * max(mpmath.log(1 - v), -100))
    if name == "hinge_loss":
        return max(_M(0), 1 - v * o[0])
    if name == "huber_loss":
        a, d = abs(v - o[0]), _M(kw["delta"])
        return a * a / 2 if a <= d else d * (a - d / 2)
    if name == "l1_loss":
        return abs(v - o[0])
    if name == "mse_loss":
        return (v - o[0]) ** 2
    if name == "smooth_l1_loss":
        d, b = abs(v - o[0]), _M(kw["beta"])
        return d * d / 2 / b if d < b else d - b / 2
    if name == "log_cosh_loss":
        return mpmath.log(mpmath.cosh(v - o[0]))
    if name == "gaussian_nll_loss":
        var = max(o[1], _M(1e-6))
        return (mpmath.log(var) + (o[0] - v) ** 2 / var + mpmath.log(2 * mpmath.pi)) / 2
    if name == "margin_ranking_loss":
        return max(_M(0), -o[1] * (v - o[0]) + _M(kw["margin"]))
    raise KeyError(name)


@functools.cache
def _mp_reference(name: str):
    """Exact (40 digits) 'none' values of case ``name``, as mpf, flat."""
    _fn, x, others, kw = cases(1)[name]
    X = _mp_rows(x)
    O = [o if o.dtype.kind in "iu" else _mp_rows(o) for o in others]  # noqa: E741
    if name == "cross_entropy":
        return [_mp_lse(r) - r[int(t)] for r, t in zip(X, O[0], strict=True)]
    if name == "cross_entropy_probs":
        s = _M(kw["label_smoothing"])
        return [
            _mp_lse(r)
            - (1 - s) * mpmath.fsum(p * v for p, v in zip(pr, r, strict=True))
            - s * mpmath.fsum(r) / len(r)
            for r, pr in zip(X, O[0], strict=True)
        ]
    if name == "nll_loss":
        return [-r[int(t)] for r, t in zip(X, O[0], strict=True)]
    if name == "kl_div_loss":
        return [
            mpmath.fsum(mpmath.exp(t) * (t - v) for v, t in zip(r, tr, strict=True))
            for r, tr in zip(X, O[0], strict=True)
        ]
    if name == "cosine_similarity_loss":
        return [
            mpmath.fsum(a * b for a, b in zip(r, q, strict=True))
            / mpmath.sqrt(mpmath.fsum(a * a for a in r) * mpmath.fsum(b * b for b in q))
            for r, q in zip(X, O[0], strict=True)
        ]
    if name == "triplet_loss":

        def dist(u, v):
            return mpmath.sqrt(
                mpmath.fsum((a - b) ** 2 for a, b in zip(u, v, strict=True)) + _M(1e-6)
            )

        return [
            max(dist(a, p) - dist(a, n) + _M(kw["margin"]), _M(0))
            for a, p, n in zip(X, O[0], O[1], strict=True)
        ]
    return [
        _mp_elementwise(name, X[i][j], [q[i][j] for q in O], kw)
        for i in range(len(X))
        for j in range(len(X[i]))
    ]


F64_LIBS = ["numpy", "numpy_readonly", "torch", "dask", "array_api_strict", "jax"]


@pytest.mark.parametrize("backend", F64_LIBS)
def test_float64_end_to_end(backend):
    lib = make(backend)
    if not lib.has_float64:
        pytest.skip(f"{backend} has no float64 here")
    for name, (fn, x, others, kw) in cases(1).items():
        exact = _mp_reference(name)
        wants = {
            "none": np.array([float(v) for v in exact]),
            "sum": float(mpmath.fsum(exact)),
            "mean": float(mpmath.fsum(exact) / len(exact)),
        }
        args = [lib.asarray(a) for a in (x, *others)]  # float64 / int64
        for reduction, want in wants.items():
            out = fn(*args, **kw, reduction=reduction)
            lib.check_library(out)
            assert lib.dtype_name(out) == "float64", (name, reduction, out.dtype)
            got = lib.to_numpy(out).reshape(np.shape(want))
            scale = np.abs(wants["none"]).max()
            np.testing.assert_allclose(
                got, want, rtol=4e-15, atol=4e-16 * scale, err_msg=f"{name} {reduction}"
            )


# ---------------------------------------------------------------------------
# Result type: the input's library, device and dtype; 0-d for mean/sum
# ---------------------------------------------------------------------------


def test_result_is_an_array_of_the_input_library(xp):
    for name, (fn, x, others, kw) in cases().items():
        args = [_to(xp, a) for a in (x, *others)]
        for reduction in ("none", "mean", "sum"):
            out = fn(*args, **kw, reduction=reduction)
            assert not isinstance(out, float | int | np.generic), (name, type(out))
            xp.check_library(out)
            assert xp.dtype_name(out) == "float32", (name, reduction, out.dtype)
            assert tuple(out.shape) == _reference(name, reduction).shape
            if reduction != "none":
                assert out.ndim == 0
            np.testing.assert_allclose(
                xp.to_numpy(out),
                _reference(name, reduction),
                rtol=2e-6,
                atol=1e-6,
                err_msg=f"{name} {reduction}",
            )


@pytest.mark.parametrize("name", NAMES)
def test_numpy_scalar_results_are_0d_arrays(name):
    fn, x, others, kw = cases()[name]
    for reduction in ("mean", "sum"):
        out = fn(x[:1], *[o[:1] for o in others], **kw, reduction=reduction)
        assert type(out) is np.ndarray and out.shape == () and out.dtype == np.float64


def _torch_devices():
    torch = pytest.importorskip("torch")
    devices = ["cpu", "meta"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


@pytest.mark.parametrize("device", ["cpu", "meta", "cuda", "mps"])
def test_torch_result_on_the_input_device(device):
    torch = pytest.importorskip("torch")
    if device not in _torch_devices():
        pytest.skip(f"no torch {device} device")
    for name, (fn, x, others, kw) in cases().items():
        p = torch.asarray(x.astype(np.float32), device=device)
        # targets as tensors on the device, and as NumPy (moved to the device)
        for targets in (
            [
                torch.asarray(o if o.dtype.kind in "iu" else o.astype(np.float32), device=device)
                for o in others
            ],
            others,
        ):
            for reduction in ("none", "mean"):
                out = fn(p, *targets, **kw, reduction=reduction)
                assert isinstance(out, torch.Tensor)
                assert out.device == p.device, (name, out.device)
                assert out.dtype == torch.float32
                if device != "meta":
                    np.testing.assert_allclose(
                        out.numpy(force=True), _reference(name, reduction), rtol=2e-6, atol=1e-6
                    )


def test_cases_are_what_they_claim():
    """Sanity of the fixtures: every case is away from kinks and non-trivial."""
    for name, (_fn, _x, _others, _kw) in cases().items():
        assert np.all(np.isfinite(_reference(name, "none")))
        assert np.abs(_finite_differences(name)).max() > 0, name
    assert math.isclose(cases()["cross_entropy_probs"][2][0].sum(), SHAPE[0])

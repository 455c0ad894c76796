"""Bad input: which exception, and what its message says.

Shape mismatches, reductions, class indices (dtype and range), keywords,
non-array arguments, axes, arrays of two libraries in one call, the
conversion of Python data and NumPy arrays, ``label_smoothing``; and that
``import anyloss`` imports no array library but NumPy.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from backends import make

import anyloss

ALL_LOSSES = [
    "binary_cross_entropy",
    "cosine_similarity_loss",
    "cross_entropy",
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


def valid_args(name: str, lib=None) -> list:
    """Valid positional arguments of loss ``name`` (float32, shape (4, 3))."""
    wrap = (lambda a: a) if lib is None else lib.asarray
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    idx = np.array([0, 2, 1, 1])
    if name in ("cross_entropy", "nll_loss"):
        return [wrap(x), wrap(idx)]
    if name in ("gaussian_nll_loss", "triplet_loss"):
        return [wrap(x), wrap(x + 1), wrap(np.abs(x) + 0.5)]
    if name == "margin_ranking_loss":
        return [wrap(x), wrap(x + 1), wrap(np.sign(x))]
    return [wrap(x), wrap(np.abs(np.sign(x)))]


def _no_error():
    return contextlib.nullcontext()


def _shapes_in(message: str, *shapes: tuple[int, ...]) -> None:
    for s in shapes:
        assert str(s) in message, f"{s} not named in {message!r}"


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------

A, B, COL, ROW = (4, 3), (2, 3), (4, 1), (1, 3)

# (function, shapes of the positional arguments, kwargs, shapes the message names)
SHAPE_ERRORS = [
    # equal shapes required, even where they would broadcast
    ("binary_cross_entropy", [A, B], {}, [A, B]),
    ("binary_cross_entropy", [A, ROW], {}, [A, ROW]),
    ("l1_loss", [A, B], {}, [A, B]),
    ("l1_loss", [A, COL], {}, [A, COL]),
    ("mse_loss", [A, ROW], {}, [A, ROW]),
    ("mse_loss", [(3,), A], {}, [(3,), A]),
    ("smooth_l1_loss", [A, COL], {}, [A, COL]),
    ("gaussian_nll_loss", [A, A, ROW], {}, [A, ROW]),
    ("gaussian_nll_loss", [A, B, A], {}, [A, B]),
    ("margin_ranking_loss", [A, A, ROW], {}, [A, ROW]),
    ("margin_ranking_loss", [A, COL, A], {}, [A, COL]),
    # broadcasting losses: shapes that cannot broadcast
    ("hinge_loss", [A, B], {}, [A, B]),
    ("huber_loss", [A, B], {}, [A, B]),
    ("log_cosh_loss", [A, (2,)], {}, [A, (2,)]),
    ("kl_div_loss", [A, B], {}, [A, B]),
    ("cosine_similarity_loss", [A, B], {}, [A, B]),
    ("triplet_loss", [A, A, B], {}, [A, B]),
    ("triplet_loss", [B, A, A], {}, [B, A]),
]


@pytest.mark.parametrize(
    "name, shapes, kwargs, named",
    SHAPE_ERRORS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(SHAPE_ERRORS)],
)
def test_shape_mismatch(xp, name, shapes, kwargs, named):
    rng = np.random.default_rng(1)
    args = [xp.asarray(rng.uniform(0.1, 0.9, s).astype(np.float32)) for s in shapes]
    with pytest.raises(ValueError) as info:
        getattr(anyloss, name)(*args, **kwargs)
    _shapes_in(str(info.value), *named)


def test_cross_entropy_shape_errors(xp):
    logits = xp.asarray(np.zeros((4, 3), np.float32))
    # index targets of the wrong shape
    with pytest.raises(ValueError) as info:
        anyloss.cross_entropy(logits, xp.asarray(np.zeros(3, np.int32)))
    _shapes_in(str(info.value), (3,), (4, 3))
    with pytest.raises(ValueError) as info:
        anyloss.cross_entropy(logits, xp.asarray(np.zeros(4, np.int32)), axis=0)
    _shapes_in(str(info.value), (4,), (4, 3))
    # probability targets of the wrong shape (same ndim as the logits)
    with pytest.raises(ValueError) as info:
        anyloss.cross_entropy(logits, xp.asarray(np.zeros((4, 2), np.float32)))
    _shapes_in(str(info.value), (4, 2), (4, 3))
    with pytest.raises(ValueError) as info:
        anyloss.cross_entropy(logits, xp.asarray(np.zeros((1, 3), np.float32)))
    _shapes_in(str(info.value), (1, 3), (4, 3))
    # more dimensions than the logits
    with pytest.raises(ValueError) as info:
        anyloss.cross_entropy(logits, xp.asarray(np.zeros((4, 3, 1), np.float32)))
    _shapes_in(str(info.value), (4, 3, 1), (4, 3))


def test_weights_shape_errors(xp):
    logits = xp.asarray(np.zeros((4, 3), np.float32))
    idx = xp.asarray(np.array([0, 1, 2, 0]))
    for w_shape in [(3,), (4, 1), (1,)]:
        w = xp.asarray(np.ones(w_shape, np.float32))
        with pytest.raises(ValueError) as info:
            anyloss.cross_entropy(logits, idx, weights=w)
        _shapes_in(str(info.value), w_shape, (4,))
    x = xp.asarray(np.zeros((4, 3), np.float32))
    for w_shape in [(3,), (4, 1), (2, 3)]:
        w = xp.asarray(np.ones(w_shape, np.float32))
        with pytest.raises(ValueError) as info:
            anyloss.binary_cross_entropy(x, x, weights=w)
        _shapes_in(str(info.value), w_shape, (4, 3))


def test_nll_loss_targets_that_do_not_broadcast(xp):
    logp = xp.asarray(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError) as info:
        anyloss.nll_loss(logp, xp.asarray(np.zeros(3, np.int32)))
    _shapes_in(str(info.value), (3,), (4, 3))
    with pytest.raises(ValueError) as info:
        anyloss.nll_loss(logp, xp.asarray(np.zeros(2, np.int32)), axis=0)
    _shapes_in(str(info.value), (2,), (4, 3))


# ---------------------------------------------------------------------------
# Reduction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", "None", None, 0])
def test_invalid_reduction(name, reduction):
    with pytest.raises(ValueError) as info:
        getattr(anyloss, name)(*valid_args(name), reduction=reduction)
    message = str(info.value)
    for allowed in ("none", "mean", "sum"):
        assert re.search(rf"['\"]{allowed}['\"]", message), message
    assert repr(reduction) in message or str(reduction) in message


# ---------------------------------------------------------------------------
# Class indices
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_float_class_indices_are_a_type_error(xp, name):
    logits = xp.asarray(np.zeros((4, 3), np.float32))
    targets = xp.asarray(np.array([0.0, 1.0, 2.0, 1.0], np.float32))
    with pytest.raises(TypeError, match="integer"):
        getattr(anyloss, name)(logits, targets)


def test_float_class_indices_are_a_type_error_under_jit():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = jax.jit(lambda x, t: anyloss.nll_loss(x, t))
    with pytest.raises(TypeError, match="integer"):
        f(jnp.zeros((4, 3)), jnp.array([0.0, 1.0, 2.0, 1.0]))


EAGER = ["numpy", "numpy_readonly", "torch", "mlx", "array_api_strict", "jax"]
# (targets, the first bad position, its value); logits (2, 2, 3) with classes last
OUT_OF_RANGE = [
    ([[0, 1], [3, 2]], "[1, 0]", 3),
    ([[0, -1], [5, 2]], "[0, 1]", -1),
    ([[2, 2], [2, 100]], "[1, 1]", 100),
]


@pytest.mark.parametrize("backend", EAGER)
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("targets, where, value", OUT_OF_RANGE)
def test_out_of_range_class_index(backend, name, targets, where, value):
    lib = make(backend)
    logits = lib.asarray(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError) as info:
        getattr(anyloss, name)(logits, lib.asarray(np.array(targets, np.int32)))
    message = str(info.value)
    assert f"targets{where} = {value}" in message, message
    assert "3" in message


@pytest.mark.parametrize("backend", EAGER)
def test_out_of_range_class_index_along_axis_0(backend):
    lib = make(backend)
    logits = lib.asarray(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"targets\[2\] = 3"):
        anyloss.cross_entropy(logits, lib.asarray(np.array([0, 2, 3, 1])), axis=0)
    # 3 is in range when the classes are the last axis (4 of them)... but the
    # targets then need 3 entries
    out = anyloss.cross_entropy(logits, lib.asarray(np.array([0, 3, 1])))
    assert lib.to_numpy(out).shape == (3,)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_out_of_range_not_checked_under_jit(name):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = jax.jit(lambda x, t: getattr(anyloss, name)(x, t, reduction="sum"))
    out = f(jnp.zeros((4, 3)), jnp.array([0, 3, -1, 7]))  # must not raise
    assert out.shape == ()
    # and with valid indices under the same trace the value is right
    np.testing.assert_allclose(
        np.asarray(f(jnp.zeros((4, 3)), jnp.array([0, 2, 1, 1]))),
        4 * np.log(3) if name == "cross_entropy" else 0.0,
        rtol=1e-6,
    )


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_out_of_range_not_checked_under_mx_compile(name):
    mx = pytest.importorskip("mlx.core")
    f = mx.compile(lambda x, t: getattr(anyloss, name)(x, t, reduction="sum"))
    out = f(mx.zeros((4, 3)), mx.array([0, 3, -1, 7]))  # must not raise
    assert out.shape == ()


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_out_of_range_not_checked_on_dask(name):
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    computed = []

    def scheduler(dsk, keys, **kwargs):
        computed.append(keys)
        raise AssertionError("anyloss computed the Dask graph")

    with dask.config.set(scheduler=scheduler):
        out = getattr(anyloss, name)(
            da.zeros((4, 3), chunks=2), da.from_array(np.array([0, 3, -1, 7]), chunks=2)
        )
    assert computed == []
    assert isinstance(out, da.Array) and out.shape == (4,)


# ---------------------------------------------------------------------------
# Keywords, non-arrays, label_smoothing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_unknown_keyword(name):
    fn = getattr(anyloss, name)
    for kw in ({"redution": "mean"}, {"size_average": True}, {"dim": -1}):
        with pytest.raises(TypeError, match=next(iter(kw))):
            fn(*valid_args(name), **kw)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_string_prediction(name):
    args = valid_args(name)
    with pytest.raises(TypeError):
        getattr(anyloss, name)("abc", *args[1:])
    with pytest.raises(TypeError):
        getattr(anyloss, name)(args[0], "abc", *args[2:])


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_non_array_object(name):
    args = valid_args(name)
    with pytest.raises(TypeError):
        getattr(anyloss, name)(object(), *args[1:])
    with pytest.raises(TypeError):
        getattr(anyloss, name)({"a": 1.0}, *args[1:])


@pytest.mark.parametrize("smoothing", [-0.1, -1e-12, 1.0, 1.5, float("nan"), float("inf")])
def test_label_smoothing_out_of_range(xp, smoothing):
    logits = xp.asarray(np.zeros((4, 3), np.float32))
    idx = xp.asarray(np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        anyloss.cross_entropy(logits, idx, label_smoothing=smoothing)


@pytest.mark.parametrize("smoothing", [0.0, 0.5, 0.999999])
def test_label_smoothing_in_range(smoothing):
    out = anyloss.cross_entropy(
        np.zeros((4, 3)), np.array([0, 1, 2, 0]), label_smoothing=smoothing
    )
    np.testing.assert_allclose(out, np.log(3.0), rtol=1e-12)


# ---------------------------------------------------------------------------
# Axes
# ---------------------------------------------------------------------------

AXIS_CASES = [
    ("cross_entropy", lambda w: [w(np.zeros((4, 3))), w(np.zeros(4, np.int32))], 2),
    ("cross_entropy", lambda w: [w(np.zeros((4, 3))), w(np.zeros(4, np.int32))], -3),
    ("cross_entropy", lambda w: [w(np.zeros((4, 3))), w(np.full((4, 3), 1 / 3))], 2),
    ("nll_loss", lambda w: [w(np.zeros((4, 3))), w(np.zeros(4, np.int32))], 2),
    ("nll_loss", lambda w: [w(np.zeros((4, 3))), w(np.zeros(4, np.int32))], -3),
    ("kl_div_loss", lambda w: [w(np.zeros((4, 3))), w(np.zeros((4, 3)))], 2),
    ("kl_div_loss", lambda w: [w(np.zeros(3)), w(np.zeros(3))], -2),
    ("cosine_similarity_loss", lambda w: [w(np.ones(3)), w(np.ones(3))], 1),  # default axis
    ("cosine_similarity_loss", lambda w: [w(np.ones((4, 3))), w(np.ones((4, 3)))], -3),
    ("triplet_loss", lambda w: [w(np.zeros((4, 3)))] * 3, 2),
    ("triplet_loss", lambda w: [w(np.zeros((4, 3)))] * 3, -5),
]


@pytest.mark.parametrize(
    "name, make_args, axis", AXIS_CASES, ids=[f"{c[0]}-{c[2]}" for c in AXIS_CASES]
)
def test_axis_out_of_range(xp, name, make_args, axis):
    args = make_args(lambda a: xp.asarray(a.astype(np.float32) if a.dtype == np.float64 else a))
    kwargs = {} if name == "cosine_similarity_loss" and axis == 1 else {"axis": axis}
    with pytest.raises(anyloss.AxisError) as info:
        getattr(anyloss, name)(*args, **kwargs)
    assert isinstance(info.value, IndexError)
    assert isinstance(info.value, ValueError)
    assert str(axis) in str(info.value)
    # either except clause catches it
    with pytest.raises(IndexError):
        getattr(anyloss, name)(*args, **kwargs)
    with pytest.raises(ValueError):
        getattr(anyloss, name)(*args, **kwargs)


def test_axis_error_class():
    assert issubclass(anyloss.AxisError, IndexError)
    assert issubclass(anyloss.AxisError, ValueError)
    assert anyloss.losses.AxisError is anyloss.AxisError


# ---------------------------------------------------------------------------
# Libraries: mixing is an error, Python data and NumPy are converted
# ---------------------------------------------------------------------------

MIXES = [
    ("torch", "jax"),
    ("jax", "torch"),
    ("torch", "mlx"),
    ("mlx", "jax"),
    ("jax", "array_api_strict"),
    ("dask", "torch"),
]


@pytest.mark.parametrize("first, second", MIXES)
@pytest.mark.parametrize(
    "name", ["mse_loss", "cross_entropy", "triplet_loss", "gaussian_nll_loss"]
)
def test_two_libraries_in_one_call(first, second, name):
    one, two = make(first), make(second)
    args = valid_args(name)
    mixed = [one.asarray(args[0])] + [two.asarray(a) for a in args[1:]]
    with pytest.raises(TypeError) as info:
        getattr(anyloss, name)(*mixed)
    message = str(info.value)
    for lib in (first, second):
        assert lib in message, message
    # only the last argument of another library
    if len(args) == 3:
        mixed = [one.asarray(args[0]), one.asarray(args[1]), two.asarray(args[2])]
        with pytest.raises(TypeError) as info:
            getattr(anyloss, name)(*mixed)
        assert first in str(info.value) and second in str(info.value)


def test_weights_of_another_library():
    torch, jnp = make("torch"), make("jax")
    logits = torch.asarray(np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError) as info:
        anyloss.cross_entropy(
            logits,
            torch.asarray(np.array([0, 1, 2, 0])),
            weights=jnp.asarray(np.ones(4, np.float32)),
        )
    assert "torch" in str(info.value) and "jax" in str(info.value)


NON_NUMPY = ["torch", "jax", "mlx", "dask", "array_api_strict"]


def _check_result(lib, out, expected, dtype="float32"):
    lib.check_library(out)
    assert lib.dtype_name(out) == dtype
    np.testing.assert_allclose(lib.to_numpy(out), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", NON_NUMPY)
def test_python_and_numpy_targets_are_converted(backend):
    lib = make(backend)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    t = rng.normal(size=(4, 3))  # float64 NumPy: the prediction's dtype wins
    p = lib.asarray(x)
    for targets in (t, t.tolist(), t.astype(np.float32), tuple(map(tuple, t.tolist()))):
        _check_result(lib, anyloss.mse_loss(p, targets), anyloss.mse_loss(x, t.astype(np.float32)))
    # Python scalars broadcast
    _check_result(lib, anyloss.hinge_loss(p, 1, reduction="none"), np.maximum(1 - x, 0))
    _check_result(
        lib,
        anyloss.huber_loss(p, 0.5, reduction="sum"),
        anyloss.huber_loss(x, np.float32(0.5), reduction="sum"),
    )
    _check_result(lib, anyloss.log_cosh_loss(p, -1.0), anyloss.log_cosh_loss(x, np.float32(-1)))
    # integer NumPy / Python targets of a float loss
    y = np.array([1, -1, 1, -1])
    _check_result(
        lib,
        anyloss.margin_ranking_loss(lib.asarray(x[:, 0]), x[:, 1], y.tolist()),
        anyloss.margin_ranking_loss(x[:, 0], x[:, 1], y.astype(np.float32)),
    )
    _check_result(
        lib,
        anyloss.binary_cross_entropy(p, (x > 0).astype(np.int64)),
        anyloss.binary_cross_entropy(x, (x > 0).astype(np.float32)),
    )
    # NumPy class indices, NumPy / list probabilities
    idx = np.array([0, 2, 1, 1])
    _check_result(lib, anyloss.cross_entropy(p, idx), anyloss.cross_entropy(x, idx))
    _check_result(lib, anyloss.nll_loss(p, idx.tolist()), -x[np.arange(4), idx])
    probs = np.full((4, 3), 0.25)
    probs[:, 0] = 0.5
    _check_result(
        lib,
        anyloss.cross_entropy(p, probs.tolist()),
        anyloss.cross_entropy(x, probs.astype(np.float32)),
    )
    # several arguments as Python data / NumPy
    _check_result(
        lib, anyloss.triplet_loss(p, x.tolist(), 2 * x), anyloss.triplet_loss(x, x, 2 * x)
    )
    _check_result(
        lib,
        anyloss.gaussian_nll_loss(p, t, np.ones((4, 3)).tolist()),
        anyloss.gaussian_nll_loss(x, t.astype(np.float32), np.ones((4, 3), np.float32)),
    )
    # the library is taken from the first array when the prediction is Python data
    _check_result(lib, anyloss.mse_loss(x.tolist(), lib.asarray(x)), np.float32(0))


@pytest.mark.parametrize("backend", ["numpy", *NON_NUMPY])
def test_python_list_class_indices_for_cross_entropy(backend):
    """A list of ints is class indices (not probabilities cast to float)."""
    lib = make(backend)
    x = np.random.default_rng(4).normal(size=(4, 3)).astype(np.float32)
    want = anyloss.cross_entropy(x, np.array([0, 2, 1, 1]))
    _check_result(lib, anyloss.cross_entropy(lib.asarray(x), [0, 2, 1, 1]), want)
    _check_result(lib, anyloss.cross_entropy(lib.asarray(x), (0, 2, 1, 1)), want)
    # a nested list of the logits' shape is probabilities
    probs = [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 0]]
    _check_result(lib, anyloss.cross_entropy(lib.asarray(x), probs), want)
    with (
        pytest.raises(ValueError, match=r"targets\[1\] = 3") if backend != "dask" else _no_error()
    ):
        anyloss.cross_entropy(lib.asarray(x), [0, 3, 1, 1])


def test_torch_targets_follow_the_prediction_device():
    torch = pytest.importorskip("torch")
    p = torch.zeros((4, 3), device="meta")
    out = anyloss.mse_loss(p, np.ones((4, 3)))
    assert out.device.type == "meta"
    out = anyloss.cross_entropy(p, np.array([0, 1, 2, 0]), reduction="mean")
    assert out.device.type == "meta"


# ---------------------------------------------------------------------------
# import anyloss stays light
# ---------------------------------------------------------------------------


def test_import_does_not_import_array_libraries():
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import anyloss
        from anyloss import losses
        assert float(anyloss.mse_loss(np.zeros(3), np.ones(3))) == 1.0
        anyloss.cross_entropy(np.zeros((2, 3)), np.array([0, 2]), reduction="mean")
        anyloss.triplet_loss(np.zeros((2, 3)), np.ones((2, 3)), np.ones((2, 3)))
        anyloss.kl_div_loss(np.zeros((2, 3)), np.zeros((2, 3)))
        heavy = ("torch", "jax", "jaxlib", "mlx", "dask", "numba", "cupy",
                 "array_api_strict", "tensorflow")
        loaded = sorted({m.partition(".")[0] for m in sys.modules} & set(heavy))
        print("LOADED", loaded)
        assert not loaded, loaded
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LOADED []" in result.stdout

"""``dd_exp``, ``dd_log``, ``dd_pow`` and ``pow2`` against mpmath (and their
constants).

Every expected value comes from mpmath at 120 bits evaluated at the float
inputs themselves, never from the code under test. The inputs are
adversarial: the ends of the range (overflow, the normal and the subnormal
underflow), the boundaries of the argument reduction (``x`` near
``(n + 1/2) ln2 / 4``), arguments near 0 and near 1, powers of two,
subnormals, and the special values.

Bounds (``u = 2^-24``):

* the pair ``hi + lo`` within ``2^-33`` (exp) and ``2^-36`` (log, float32;
  ``2^-60`` float64) of the true value, relative, where the result is above
  ``2^-90`` (below, ``lo`` is subnormal: JAX flushes it, and ``hi``'s own
  bound applies);
* ``hi`` within ``1/2 + 2^-9`` ulp: correctly rounded but for near-ties;
* both on NumPy, JAX (eager and under ``jax.jit``) and MLX (eager and under
  ``mx.compile``), and the derivatives those two libraries take are those of
  ``exp`` and ``log``.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import pytest

from anyloss._backend import resolve
from anyloss._compensated import fast_two_sum, fused, pow2
from anyloss._compensated_exp_log import (
    _LN2,
    _QUARTER_LN2,
    _ROOTS,
    _TWO_FIFTHS,
    _TWO_THIRDS,
    _faithful_exp,
    dd_exp,
    dd_log,
    dd_pow,
    exp,
)

mpmath.mp.prec = 120
LN2 = mpmath.log(2)
LIBRARIES = ["numpy", "jax", "jax-jit", "mlx", "mlx-compile"]


def _bits(x: float) -> int:
    """The number of significant bits of the float ``x``."""
    f = Fraction(x)
    num = abs(f.numerator)
    return num.bit_length() - (num & -num).bit_length() + 1


def _mp(x: Any) -> Any:
    return mpmath.mpf(float(x))


# --------------------------------------------------------------------------
# constants
# --------------------------------------------------------------------------


def test_constants_against_mpmath() -> None:
    c1, c2, c3 = _QUARTER_LN2
    assert _bits(c1) <= 14 and _bits(c2) <= 14  # n c1, n c2 exact for |n| < 2^10
    assert np.float32(c3) == c3
    assert abs(_mp(c1) + _mp(c2) + _mp(c3) - LN2 / 4) < mpmath.mpf(2) ** -60
    for j, (hi, lo) in enumerate(_ROOTS, start=1):
        assert np.float32(hi) == hi and np.float32(lo) == lo
        assert abs(_mp(hi) + _mp(lo) - mpmath.mpf(2) ** (mpmath.mpf(j) / 4)) < mpmath.mpf(2) ** -47
    for p, hi_bits in ((24, 16), (53, 32)):
        l1, l2, l3 = _LN2[p]
        assert _bits(l1) <= hi_bits
        assert abs(_mp(l1) + _mp(l2) + _mp(l3) - LN2) < mpmath.mpf(2) ** -(2 * p + 8)
        for (hi, lo), value in (
            (_TWO_THIRDS[p], mpmath.mpf(2) / 3),
            (_TWO_FIFTHS[p], mpmath.mpf(2) / 5),
        ):
            assert abs(_mp(hi) + _mp(lo) - value) < value * mpmath.mpf(2) ** -(2 * p - 1)


def test_half_log_2pi_pairs() -> None:
    from anyloss._regression import _HALF_LOG_2PI_PAIR

    true = mpmath.log(2 * mpmath.pi) / 2
    for p, (hi, lo) in _HALF_LOG_2PI_PAIR.items():
        if p == 24:
            assert np.float32(hi) == hi and np.float32(lo) == lo
        assert abs(_mp(hi) + _mp(lo) - true) < true * mpmath.mpf(2) ** -(2 * p - 1)


# --------------------------------------------------------------------------
# running the pair functions on every library
# --------------------------------------------------------------------------


def _resolving(fn: Callable[..., Any]) -> Callable[[Any], Any]:
    """``fn(be, v)`` as a function of ``v`` alone, ``be`` resolved from it."""
    return lambda v: fn(resolve("t", ("x", v)), v)


def _run(library: str, fn: Callable[..., Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fn(be, x)`` on ``library``'s array of ``x``, as NumPy."""
    if library == "numpy":
        return tuple(np.asarray(a) for a in fn(resolve("t", ("x", x)), x))  # type: ignore[return-value]
    if library.startswith("jax"):
        jax = pytest.importorskip("jax")
        a = jax.numpy.asarray(x)
        # the backend resolved inside the trace, as the losses do: its
        # constants are then literals, which XLA folds (see two_sum)
        f = _resolving(fn) if library == "jax" else jax.jit(_resolving(fn))
        return tuple(np.asarray(r) for r in f(a))  # type: ignore[return-value]
    mx = pytest.importorskip("mlx.core")
    a = mx.array(x)
    f = _resolving(fn) if library == "mlx" else mx.compile(_resolving(fn))
    return tuple(np.array(r) for r in f(a))  # type: ignore[return-value]


def _check(
    x: np.ndarray,
    hi: np.ndarray,
    lo: np.ndarray,
    f: Callable[[Any], Any],
    pair_bound: float,
    flushes: bool,
) -> None:
    """``hi + lo`` against ``f`` (mpmath) at every ``x``: see the module
    docstring for the bounds. ``flushes``: subnormal results may read 0."""
    dtype = x.dtype
    tiny = float(np.finfo(dtype).smallest_normal)
    for xi, h, low in zip(x, hi, lo, strict=True):
        true = f(_mp(xi))
        if not mpmath.isfinite(true) or true == 0:
            continue
        t = float(true)
        if abs(t) < 2.0**-90 and flushes:
            continue
        rounded = np.asarray(t, dtype=dtype)
        if not np.isfinite(rounded):  # the true value overflows the dtype
            assert h == rounded, (xi, h)
            continue
        ulp = float(np.spacing(np.abs(rounded)))
        err_hi = abs(_mp(h) - true) / ulp
        assert err_hi <= 0.5 + 2.0**-9, (xi, float(err_hi))
        if abs(t) >= 2.0**-90 and abs(t) >= tiny * 2**30:
            rel = abs(_mp(h) + _mp(low) - true) / abs(true)
            assert rel <= pair_bound, (xi, float(mpmath.log(rel, 2)))


def _exp_inputs() -> np.ndarray:
    rng = np.random.default_rng(11)
    quarter = float(LN2) / 4
    n = np.arange(-415, 411, 7)
    boundaries = (n + 0.5) * quarter  # where round(x 4/ln2) changes
    near_boundaries = np.concatenate(
        [np.nextafter(boundaries.astype(np.float32), np.float32(s)) for s in (-np.inf, np.inf)]
    )
    return np.concatenate(
        [
            rng.uniform(-87.0, 88.7, 400),
            rng.uniform(-1.0, 1.0, 100),
            rng.normal(0.0, 1e-4, 40),
            near_boundaries,
            boundaries,
            [0.0, -0.0, 1e-30, -1e-30, 1e-40, 1e-8, -1e-8, 0.5, 1.0, 2.0, -1.0],
            [88.72, 88.7228, 88.72283, -87.33, -87.3365, -87.34, -100.0, -103.0, -103.97],
        ]
    ).astype(np.float32)


def _log_inputs(dtype: Any) -> np.ndarray:
    rng = np.random.default_rng(12)
    info = np.finfo(dtype)
    top = np.log(float(info.max))
    one = np.asarray(1.0, dtype=dtype)
    near_one = np.concatenate(
        [
            [np.nextafter(one, np.inf), np.nextafter(one, 0)],
            1 + rng.normal(0, 1e-4, 40),
            1 + rng.normal(0, 1e-7, 20),
            rng.uniform(0.7, 1.42, 60),
        ]
    )
    return np.concatenate(
        [
            np.exp(rng.uniform(np.log(float(info.smallest_normal)), top, 300)),
            near_one,
            [
                float(info.max),
                float(info.smallest_normal),
                2.0,
                0.5,
                1.0,
                2.0**-100,
                2.0**100,
                3.0,
            ],
            [2.0 ** (k / 2) for k in range(-60, 61, 7)],
        ]
    ).astype(dtype)


@pytest.mark.parametrize("library", LIBRARIES)
def test_dd_exp(library: str) -> None:
    x = _exp_inputs()
    hi, lo = _run(library, dd_exp, x)
    assert hi.dtype == np.float32 and lo.dtype == np.float32
    _check(x, hi, lo, mpmath.exp, 2.0**-33, flushes=library.startswith("jax"))
    assert hi[np.flatnonzero(x == 0)[0]] == 1 and lo[np.flatnonzero(x == 0)[0]] == 0


@pytest.mark.parametrize("library", ["numpy", "mlx"])
def test_dd_exp_subnormal_results(library: str) -> None:
    """Below the normal range ``hi`` is the subnormal nearest ``e^x`` (but
    for double rounding: within one subnormal ulp)."""
    x = np.linspace(-103.9, -87.5, 200).astype(np.float32)
    hi, _ = _run(library, dd_exp, x)
    step = float(np.finfo(np.float32).smallest_subnormal)
    for xi, h in zip(x, hi, strict=True):
        assert abs(_mp(h) - mpmath.exp(_mp(xi))) <= step, xi


@pytest.mark.parametrize("library", LIBRARIES)
def test_dd_exp_special_values(library: str) -> None:
    x = np.array([np.inf, -np.inf, np.nan, 89.0, 1e30, -104.0, -1e30], dtype=np.float32)
    hi, lo = _run(library, dd_exp, x)
    inf = np.inf
    np.testing.assert_array_equal(hi, np.array([inf, 0, np.nan, inf, inf, 0, 0], np.float32))
    np.testing.assert_array_equal(lo[~np.isnan(x)], 0)


@pytest.mark.parametrize("library", LIBRARIES)
def test_dd_log_float32(library: str) -> None:
    x = _log_inputs(np.float32)
    hi, lo = _run(library, dd_log, x)
    assert hi.dtype == np.float32 and lo.dtype == np.float32
    _check(x, hi, lo, mpmath.log, 2.0**-36, flushes=library.startswith("jax"))


@pytest.mark.parametrize("library", ["numpy", "mlx"])
def test_dd_log_subnormal_inputs(library: str) -> None:
    info = np.finfo(np.float32)
    x = (np.arange(1, 400, 3) * float(info.smallest_subnormal) * 997).astype(np.float32)
    x = x[x < info.smallest_normal]
    hi, lo = _run(library, dd_log, x)
    _check(x, hi, lo, mpmath.log, 2.0**-36, flushes=False)


def test_dd_log_float64() -> None:
    x = _log_inputs(np.float64)
    x = np.concatenate([x, [5e-324, 1e-310]])
    hi, lo = _run("numpy", dd_log, x)
    for xi, h, low in zip(x, hi, lo, strict=True):
        true = mpmath.log(_mp(xi))
        if true == 0:
            assert h == 0 and low == 0
            continue
        assert abs(_mp(h) + _mp(low) - true) <= abs(true) * mpmath.mpf(2) ** -60, xi


@pytest.mark.parametrize("library", LIBRARIES)
def test_dd_log_special_values(library: str) -> None:
    x = np.array([0.0, -0.0, -1.0, np.inf, np.nan, -np.inf], dtype=np.float32)
    hi, lo = _run(library, dd_log, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(hi, np.log(x))
    assert np.all((lo == 0) | np.isnan(x))


@pytest.mark.parametrize("p", [3.0, 1.0 / 3.0, 0.5, 2.5, 7.0, 0.1])
@pytest.mark.parametrize("library", LIBRARIES)
def test_dd_pow(library: str, p: float) -> None:
    """``(hi + lo)^p`` within ``2^-31`` relative where ``|p log hi| < 16``
    (the range it is used in: the scaled distances of a triplet loss, and
    their sums), with ``lo`` up to an ulp of ``hi`` and of either sign;
    ``0^p = 0``."""
    rng = np.random.default_rng(13)
    reach = min(16.0 / p, 40.0)  # |log hi| within: e^-40 to e^14 for p <= 1
    hi = np.exp(rng.uniform(-reach, min(reach, 14.0), 300)).astype(np.float32)
    hi = np.concatenate([hi, [1.0, 2.0, 0.25, np.nextafter(np.float32(1), 0), 0.0]])
    hi = hi.astype(np.float32)
    lo = (hi * rng.uniform(-1.0, 1.0, hi.size) * 2.0**-24).astype(np.float32)
    out_hi, out_lo = _run(library, lambda be, v: dd_pow(be, v[0], v[1], p), np.stack([hi, lo]))
    assert out_hi[-1] == 0 and out_lo[-1] == 0
    for h, low, a, b in zip(hi[:-1], lo[:-1], out_hi[:-1], out_lo[:-1], strict=True):
        true = (_mp(h) + _mp(low)) ** mpmath.mpf(p)
        rel = abs(_mp(a) + _mp(b) - true) / true
        assert rel <= 2.0**-31, (float(h), float(low), float(mpmath.log(rel, 2)))


def test_dd_exp_is_float32_only() -> None:
    with pytest.raises(TypeError, match="float32"):
        dd_exp(resolve("t", ("x", np.zeros(2))), np.zeros(2))


# --------------------------------------------------------------------------
# derivatives
# --------------------------------------------------------------------------


def _rounded(values: Any, dtype: Any = np.float32) -> np.ndarray:
    return np.array([float(v) for v in values]).astype(dtype)


def test_jax_derivatives() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.asarray(np.linspace(-20.0, 20.0, 33, dtype=np.float32))
    v = jnp.exp(x)
    be = resolve("t", ("x", x))

    def total(fn: Callable[..., Any]) -> Callable[[Any], Any]:
        return lambda a: jnp.sum(sum(fn(be, a)))

    exp_true = _rounded(mpmath.exp(_mp(a)) for a in np.asarray(x))
    log_true = _rounded(1 / _mp(a) for a in np.asarray(v))
    for transform in (lambda f: f, jax.jit):
        np.testing.assert_array_equal(transform(jax.grad(total(dd_exp)))(x), exp_true)
        np.testing.assert_allclose(transform(jax.grad(total(dd_log)))(v), log_true, rtol=2**-23)
    # vmap of grad, and forward mode: the same
    per_row = jax.vmap(jax.grad(lambda a: sum(dd_exp(be, a))))(x)
    np.testing.assert_array_equal(per_row, exp_true)
    _, tangent = jax.jvp(lambda a: dd_exp(be, a)[0], (x,), (jnp.ones_like(x),))
    np.testing.assert_array_equal(tangent, exp_true)


def test_mlx_derivatives() -> None:
    mx = pytest.importorskip("mlx.core")
    xs = np.linspace(-20.0, 20.0, 33, dtype=np.float32)
    x, v = mx.array(xs), mx.exp(mx.array(xs))
    be = resolve("t", ("x", x))
    exp_true = _rounded(mpmath.exp(_mp(a)) for a in xs)
    log_true = _rounded(1 / _mp(a) for a in np.array(v))
    for transform in (lambda f: f, mx.compile):
        g_exp = transform(mx.grad(lambda a: mx.sum(sum(dd_exp(be, a)))))(x)
        g_log = transform(mx.grad(lambda a: mx.sum(sum(dd_log(be, a)))))(v)
        np.testing.assert_array_equal(np.array(g_exp), exp_true)
        np.testing.assert_allclose(np.array(g_log), log_true, rtol=2**-23)


# --------------------------------------------------------------------------
# pow2, fast_two_sum, fused
# --------------------------------------------------------------------------


@pytest.mark.parametrize("library", ["numpy", "jax", "jax-jit", "mlx"])
def test_pow2_is_exact(library: str) -> None:
    k = np.arange(-126, 128).astype(np.float32)
    (got,) = _run(library, lambda be, a: (pow2(be, a),), k)
    np.testing.assert_array_equal(got, np.ldexp(np.float32(1), k.astype(int)))


def test_pow2_float64() -> None:
    k = np.arange(-1022, 1024).astype(np.float64)
    got = pow2(resolve("t", ("x", k)), k)
    np.testing.assert_array_equal(got, np.ldexp(1.0, k.astype(int)))


def test_fast_two_sum_is_error_free() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=500).astype(np.float32) * 1e3
    b = (rng.normal(size=500) * 1e-3).astype(np.float32)
    s, e = fast_two_sum(a, b)
    for ai, bi, si, ei in zip(a, b, s, e, strict=True):
        assert Fraction(float(si)) + Fraction(float(ei)) == Fraction(float(ai)) + Fraction(
            float(bi)
        )


def test_fused_on_mlx_is_compiled_and_identical() -> None:
    """MLX runs a fused chain under ``mx.compile``: bit-identical to eager
    (MLX does not reassociate); elsewhere the function itself."""
    mx = pytest.importorskip("mlx.core")
    from anyloss._regression import _gaussian_nll_dd

    rng = np.random.default_rng(3)
    mu, y, v = (mx.array(rng.uniform(0.1, 2, 64).astype(np.float32)) for _ in range(3))
    be = resolve("t", ("x", mu))
    eager = _gaussian_nll_dd(be, mu, y, v, True, 1e-6)
    compiled = fused(be, _gaussian_nll_dd, True, 1e-6)
    assert compiled is fused(be, _gaussian_nll_dd, True, 1e-6)  # one per static arguments
    np.testing.assert_array_equal(np.array(compiled(mu, y, v)), np.array(eager))
    x = rng.normal(size=8)
    assert (
        fused(resolve("t", ("x", x)), lambda be, a, s: a * s, 2.0)(x).tolist() == (x * 2).tolist()
    )


# --------------------------------------------------------------------------
# the faithful exp (MLX's replacement for its own)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("library", ["numpy", "jax-jit", "mlx", "mlx-compile"])
def test_faithful_exp_within_an_ulp(library: str) -> None:
    x = _exp_inputs()
    (got,) = _run(library, lambda be, a: (_faithful_exp(be, a),), x)
    flushes = library.startswith("jax")
    for xi, g in zip(x, got, strict=True):
        true = mpmath.exp(_mp(xi))
        t = float(true)
        rounded = np.float32(t)
        if not np.isfinite(rounded):
            assert g == np.inf, xi
            continue
        if flushes and t < 2.0**-126:
            continue
        ulp = float(np.spacing(np.abs(rounded)))
        assert abs(_mp(g) - true) <= ulp, (xi, float(abs(_mp(g) - true) / ulp))
    special = np.array([np.inf, -np.inf, np.nan, 89.0, -104.0], dtype=np.float32)
    (got,) = _run(library, lambda be, a: (_faithful_exp(be, a),), special)
    np.testing.assert_array_equal(got, np.array([np.inf, 0, np.nan, np.inf, 0], np.float32))


def test_exp_is_the_faithful_one_on_mlx_only() -> None:
    """MLX (float32) takes the faithful exp, differentiated as exp; the other
    libraries their own (NumPy's here: bit-identical)."""
    mx = pytest.importorskip("mlx.core")
    xs = np.linspace(-20.0, 20.0, 41, dtype=np.float32)
    x = mx.array(xs)
    be = resolve("t", ("x", x))
    want = np.array(_faithful_exp(resolve("t", ("x", xs)), xs))
    np.testing.assert_array_equal(np.array(exp(be, x)), want)
    np.testing.assert_array_equal(np.array(mx.grad(lambda v: mx.sum(exp(be, v)))(x)), want)
    assert np.array_equal(exp(resolve("t", ("x", xs)), xs), np.exp(xs))

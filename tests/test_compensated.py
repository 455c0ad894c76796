"""The compensated primitives of ``anyloss._compensated`` against exact arithmetic.

Every expected value is computed with :class:`fractions.Fraction` from the
floats themselves (``Fraction(float(x))`` is exact for float32 and float64),
never with the code under test. The inputs are adversarial: exact and near
cancellation, huge and tiny magnitudes, subnormals, mixed magnitudes, and
dot products whose exact value is ``1e-10`` of the sum of their terms.

The primitives must survive the compilers (a compiler that reassociated
``(a + b) - a`` into ``b`` would undo them), so the last tests run one
function using all of them eagerly on NumPy, PyTorch, JAX and MLX, and under
``jax.jit``, ``mx.compile`` and ``torch.compile(fullgraph=True)``, and require
the compiled results to be bit-identical to eager NumPy float32 (on JAX, whose
sums and products take their own forms, as accurate). JAX on CPU flushes
subnormals to zero, so the subnormal inputs skip it.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from anyloss._backend import Backend, resolve
from anyloss._compensated import (
    dd_add,
    dd_dot,
    dd_dots,
    dd_finish,
    dd_sqrt,
    dd_sum,
    dd_sums,
    exact_square,
    fast_two_sum,
    pairwise_sum,
    sum3,
    two_prod,
    two_square,
    two_sum,
)

DTYPES = [np.float32, np.float64]
Pair = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------
# Exact arithmetic helpers
# --------------------------------------------------------------------------


def _fr(x: Any) -> np.ndarray:
    """``x`` as an object array of exact :class:`Fraction` values (same shape)."""
    x = np.asarray(x)
    return np.array([Fraction(float(v)) for v in x.ravel()], dtype=object).reshape(x.shape)


def _unit(dtype: Any) -> Fraction:
    """The unit roundoff ``u = eps / 2`` of ``dtype`` (``2^-24``, ``2^-53``)."""
    return Fraction(float(np.finfo(dtype).eps)) / 2


def _ulp(value: Fraction, dtype: Any) -> Fraction:
    """The spacing of ``dtype`` floats at ``value`` (its nearest float)."""
    return Fraction(float(np.spacing(np.abs(np.asarray(float(value), dtype=dtype)))))


def _assert_exact(got: np.ndarray, want: np.ndarray) -> None:
    """Elementwise ``got == want`` for object arrays of Fractions."""
    bad = np.flatnonzero(np.asarray(got != want, dtype=bool))
    assert bad.size == 0, f"{bad.size} inexact, first at {bad[0]}: {got.flat[bad[0]]}"


def _assert_dd_close(
    s: Any,
    e: Any,
    exact: np.ndarray,
    terms: np.ndarray,
    dtype: Any,
    ulps: int = 2,
    factor: int = 4,
) -> None:
    """``s + e`` (unrounded) within ``ulps`` ulp of ``exact`` plus ``factor
    eps^2`` (default 4) times the sum of the magnitudes of the ``terms``
    (``eps = 2u``): the accuracy of a sum computed in twice the precision.

    Args:
        s: the high parts.
        e: the low parts (same shape).
        exact: object array of the exact results (same shape).
        terms: object array of the absolute sums of the summed terms.
        dtype: the float dtype whose ulp and eps are meant.
        ulps: the number of ulps allowed at the exact value.
        factor: the multiple of ``eps^2 sum|x|`` allowed.
    """
    eps2 = (2 * _unit(dtype)) ** 2
    got = _fr(s) + _fr(e)
    for g, x, t in zip(got.ravel(), exact.ravel(), terms.ravel(), strict=True):
        bound = ulps * _ulp(x, dtype) + factor * eps2 * t
        assert abs(g - x) <= bound, (float(g), float(x), float(abs(g - x) / bound))


def _exact_sum(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact sum of an object array of Fractions along ``axis``, and of its
    magnitudes."""
    return np.sum(x, axis=axis), np.sum(np.abs(x), axis=axis)


def _floats(rng: np.random.Generator, shape: Any, dtype: Any, scale: float = 1.0) -> np.ndarray:
    """Normal samples times ``scale``, rounded to ``dtype``."""
    return (rng.normal(size=shape) * scale).astype(dtype)


def _subnormals(rng: np.random.Generator, n: int, dtype: Any) -> np.ndarray:
    """``n`` subnormal (and zero) values of ``dtype``, exactly representable."""
    bits = np.finfo(dtype).nmant  # 23, 52: an integer below 2^nmant is subnormal
    ints = rng.integers(-(2**bits) + 1, 2**bits, n)
    return (ints.astype(np.float64) * float(np.finfo(dtype).smallest_subnormal)).astype(dtype)


# --------------------------------------------------------------------------
# two_sum
# --------------------------------------------------------------------------


def _two_sum_cases(dtype: Any, n: int = 64) -> dict[str, Pair]:
    """Named ``(a, b)`` float arrays of ``dtype``: the adversarial sums."""
    rng = np.random.default_rng(1)
    huge = 1e30 if dtype == np.float32 else 1e300
    tiny = float(np.finfo(dtype).smallest_normal) * 8
    a = _floats(rng, n, dtype)
    big, small = _floats(rng, n, dtype, 1e20), _floats(rng, n, dtype, 1e-20)
    return {
        "normal": (a, _floats(rng, n, dtype)),
        "huge": (_floats(rng, n, dtype, huge), _floats(rng, n, dtype, huge)),
        "tiny": (_floats(rng, n, dtype, tiny), _floats(rng, n, dtype, tiny)),
        "subnormal": (_subnormals(rng, n, dtype), _subnormals(rng, n, dtype)),
        "subnormal_normal": (_subnormals(rng, n, dtype), _floats(rng, n, dtype, tiny)),
        "cancellation": (a, -a),
        "near_cancellation": (a, (-a * dtype(1 + 2.0**-20)).astype(dtype)),
        "mixed_magnitudes": (np.concatenate([big, small]), np.concatenate([small, big])),
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", list(_two_sum_cases(np.float32)))
def test_two_sum_is_error_free(dtype: Any, case: str) -> None:
    """``s = fl(a + b)`` and ``s + e = a + b`` exactly, elementwise."""
    a, b = _two_sum_cases(dtype)[case]
    s, e = two_sum(a, b)
    assert s.dtype == e.dtype == dtype
    np.testing.assert_array_equal(s, a + b)
    _assert_exact(_fr(s) + _fr(e), _fr(a) + _fr(b))


def test_two_sum_cases_are_adversarial() -> None:
    """The cases have teeth: where they round, a plain ``a + b`` loses what
    ``e`` keeps; the near cancellation is exact (Sterbenz: ``e = 0``) and the
    subnormal inputs are subnormal."""
    for dtype in DTYPES:
        cases = _two_sum_cases(dtype)
        a, b = cases["near_cancellation"]
        s, e = two_sum(a, b)
        assert np.all(e == 0) and np.all(np.abs(s) < np.abs(a) * 2.0**-19)
        for name in ("normal", "huge", "tiny", "mixed_magnitudes"):
            a, b = cases[name]
            _, e = two_sum(a, b)
            assert np.count_nonzero(e) > len(a) // 4, (dtype, name)
        a, b = cases["subnormal"]
        assert np.all(np.abs(a) < np.finfo(dtype).smallest_normal)
        assert np.count_nonzero(a) > len(a) // 2


_F32_MAX_HALF = float(np.float32(1.7e38))  # a + b cannot overflow


@settings(max_examples=150, deadline=None)
@given(
    a=st.floats(-_F32_MAX_HALF, _F32_MAX_HALF, width=32),
    b=st.floats(-_F32_MAX_HALF, _F32_MAX_HALF, width=32),
)
def test_two_sum_property_float32(a: float, b: float) -> None:
    """Any finite float32 pair whose sum does not overflow."""
    x, y = np.array([a], np.float32), np.array([b], np.float32)
    s, e = two_sum(x, y)
    assert s[0] == np.float32(x[0] + y[0])
    assert Fraction(float(s[0])) + Fraction(float(e[0])) == Fraction(a) + Fraction(b)


@settings(max_examples=150, deadline=None)
@given(a=st.floats(-8e307, 8e307), b=st.floats(-8e307, 8e307))
def test_two_sum_property_float64(a: float, b: float) -> None:
    """Any finite float64 pair whose sum does not overflow."""
    s, e = two_sum(np.array([a]), np.array([b]))
    assert s[0] == a + b
    assert Fraction(float(s[0])) + Fraction(float(e[0])) == Fraction(a) + Fraction(b)


# --------------------------------------------------------------------------
# two_prod
# --------------------------------------------------------------------------

# The documented range of exactness: |a|, |b| below 2^MAX_EXP, |a b| above
# 2^MIN_PROD (and finite).
_RANGE = {np.float32: (115, -102), np.float64: (995, -969)}


def _scaled(rng: np.random.Generator, n: int, exponent: int, dtype: Any) -> np.ndarray:
    """Random signs and significands in ``[1, 2)`` times ``2^exponent``."""
    mant = rng.uniform(1, 2, n) * rng.choice([-1.0, 1.0], n)
    return np.ldexp(mant.astype(dtype), np.full(n, exponent, dtype=np.int32))


def _two_prod_cases(dtype: Any, n: int = 64) -> dict[str, Pair]:
    """Named ``(a, b)`` arrays inside the documented range of ``two_prod``."""
    rng = np.random.default_rng(2)
    top, low = _RANGE[dtype]
    sub = _subnormals(rng, n, dtype)
    sub = np.where(sub == 0, np.finfo(dtype).smallest_subnormal, sub).astype(dtype)
    sub_exp = int(np.finfo(dtype).minexp) - np.finfo(dtype).nmant  # -149, -1074
    return {
        "normal": (_floats(rng, n, dtype), _floats(rng, n, dtype)),
        "largest_operand": (_scaled(rng, n, top - 1, dtype), _scaled(rng, n, -top + 40, dtype)),
        "large_product": (_scaled(rng, n, top - 10, dtype), _scaled(rng, n, 7, dtype)),
        "small_product": (
            _scaled(rng, n, low // 2, dtype),
            _scaled(rng, n, low - low // 2, dtype),
        ),
        "subnormal_operand": (sub, _scaled(rng, n, low - sub_exp + 1, dtype)),
        "mixed_magnitudes": (_scaled(rng, n, top - 5, dtype), _scaled(rng, n, -top - 5, dtype)),
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", list(_two_prod_cases(np.float32)))
def test_two_prod_is_error_free_in_range(dtype: Any, case: str) -> None:
    """``p = fl(a b)`` and ``p + e = a b`` exactly inside the documented range
    (the split constant differs per dtype: a float64 constant on float32
    would leave rounding errors)."""
    a, b = _two_prod_cases(dtype)[case]
    top, low = _RANGE[dtype]
    prod = _fr(a) * _fr(b)
    assert all(abs(x) < 2**top for x in _fr(a).ravel()), "case outside the range"
    assert all(2**low < abs(x) < Fraction(float(np.finfo(dtype).max)) for x in prod.ravel())
    p, e = two_prod(a, b)
    assert p.dtype == e.dtype == dtype
    np.testing.assert_array_equal(p, a * b)
    _assert_exact(_fr(p) + _fr(e), prod)
    if case == "normal":
        assert np.count_nonzero(e) > len(a) // 2  # the products do round


def _in_range(a: float, b: float, dtype: Any) -> bool:
    top, low = _RANGE[dtype]
    prod = abs(Fraction(a) * Fraction(b))
    return max(abs(a), abs(b)) < 2.0**top and 2**low < prod < Fraction(float(np.finfo(dtype).max))


@settings(max_examples=150, deadline=None)
@given(a=st.floats(-(2.0**115), 2.0**115, width=32), b=st.floats(-(2.0**115), 2.0**115, width=32))
def test_two_prod_property_float32(a: float, b: float) -> None:
    """Any float32 pair inside the documented range."""
    assume(_in_range(a, b, np.float32))
    p, e = two_prod(np.array([a], np.float32), np.array([b], np.float32))
    assert p[0] == np.float32(a) * np.float32(b)
    assert Fraction(float(p[0])) + Fraction(float(e[0])) == Fraction(a) * Fraction(b)


@settings(max_examples=150, deadline=None)
@given(a=st.floats(-(2.0**995), 2.0**995), b=st.floats(-(2.0**995), 2.0**995))
def test_two_prod_property_float64(a: float, b: float) -> None:
    """Any float64 pair inside the documented range."""
    assume(_in_range(a, b, np.float64))
    p, e = two_prod(np.array([a]), np.array([b]))
    assert p[0] == a * b
    assert Fraction(float(p[0])) + Fraction(float(e[0])) == Fraction(a) * Fraction(b)


def test_two_prod_outside_range_keeps_the_product() -> None:
    """Outside the documented range (float32 ``|a|`` about ``1e36``: Dekker's
    split overflows) the error term is not exact (here it is NaN, which the
    callers avoid by scaling), but ``p`` is still ``fl(a b)``."""
    rng = np.random.default_rng(3)
    a = _floats(rng, 16, np.float32, 1e36)
    b = _floats(rng, 16, np.float32, 1e-30)
    with np.errstate(over="ignore", invalid="ignore"):
        p, e = two_prod(a, b)
    assert np.all(np.isfinite(p))
    np.testing.assert_array_equal(p, a * b)
    assert e.shape == p.shape and e.dtype == np.float32


# --------------------------------------------------------------------------
# dd_sum, dd_dot
# --------------------------------------------------------------------------

_NUMPY = resolve("t", ("x", np.zeros(1)))


def _sum_input(shape: tuple[int, ...], dtype: Any) -> Pair:
    """``(hi, lo)`` with ``hi`` spread over 2^-20..2^20 and ``|lo| <= u |hi|``."""
    rng = np.random.default_rng(sum(shape))
    hi = (rng.normal(size=shape) * 2.0 ** rng.integers(-20, 21, shape)).astype(dtype)
    lo = (hi * rng.uniform(-1, 1, shape) * float(_unit(dtype))).astype(dtype)
    return hi, lo


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000])
def test_dd_sum_is_twice_as_accurate(n: int, axis: int, ndim: int, dtype: Any) -> None:
    """``s + e`` within 2 ulp (plus ``4 eps^2 sum|x|``) of the exact sum of
    ``hi + lo`` along ``axis``, for odd and even lengths."""
    shape = [3, 2, 4][:ndim]
    shape[axis] = n
    hi, lo = _sum_input(tuple(shape), dtype)
    s, e = dd_sum(_NUMPY, hi, lo, axis)
    assert s.shape == e.shape == np.sum(hi, axis=axis).shape
    assert s.dtype == e.dtype == dtype
    exact, terms = _exact_sum(_fr(hi) + _fr(lo), axis)
    _assert_dd_close(s, e, exact, terms, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000])
def test_dd_dot_is_twice_as_accurate(n: int, axis: int, dtype: Any) -> None:
    """The dot product of random vectors (products of mixed magnitudes)."""
    shape = [3, 3]
    shape[axis] = n
    u, _ = _sum_input(tuple(shape), dtype)
    v = _floats(np.random.default_rng(n), tuple(shape), dtype)
    s, e = dd_dot(_NUMPY, u, v, axis)
    exact, terms = _exact_sum(_fr(u) * _fr(v), axis)
    _assert_dd_close(s, e, exact, terms, dtype)


def _ill_conditioned_dot(n: int, cond: float, dtype: Any, seed: int) -> Pair:
    """``u, v`` of length ``n`` whose exact dot product is about ``1 / cond``
    of ``sum |u v|`` (Ogita, Rump and Oishi's GenDot): the first half of the
    terms spans ``2^0 .. 2^(log2(cond) / 2)``, each term of the second half
    cancels the exact running sum, with magnitudes shrinking to 1; shuffled.
    """
    rng = np.random.default_rng(seed)
    b = np.log2(cond)
    half = n // 2
    exps = np.rint(rng.uniform(0, b / 2, half)).astype(int)
    exps[0], exps[-1] = round(b / 2) + 1, 0
    u = np.empty(n, dtype)
    v = np.empty(n, dtype)
    u[:half] = np.ldexp(rng.uniform(-1, 1, half), exps)
    v[:half] = np.ldexp(rng.uniform(-1, 1, half), exps)
    total = sum(_fr(u[:half]) * _fr(v[:half]), Fraction(0))
    for i, exp in zip(range(half, n), np.rint(np.linspace(b / 2, 0, n - half)), strict=True):
        u[i] = np.ldexp(rng.uniform(0.5, 1) * rng.choice([-1, 1]), int(exp))
        v[i] = (np.ldexp(rng.uniform(-1, 1), int(exp)) - float(total)) / float(u[i])
        total += Fraction(float(u[i])) * Fraction(float(v[i]))
    perm = rng.permutation(n)
    return u[perm], v[perm]


_COND = {np.float32: 1e10, np.float64: 1e25}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n", [7, 64, 1000])
def test_dd_dot_under_cancellation(n: int, dtype: Any) -> None:
    """A dot product that cancels to ``1e-10`` (float32; float64: ``1e-25``)
    of its terms: the relative error is about ``eps^2`` times the condition
    number, ``|s + e - exact| <= 4 eps^2 sum|u v| + 2 ulp(exact)``; also along
    the axes of a 2-D stack of such vectors. The plain sum of the rounded
    products (NumPy's pairwise sum) fails the same check."""
    pairs = [_ill_conditioned_dot(n, _COND[dtype], dtype, seed) for seed in range(3)]
    u = np.stack([p[0] for p in pairs], axis=1)  # (n, 3)
    v = np.stack([p[1] for p in pairs], axis=1)
    exact, terms = _exact_sum(_fr(u) * _fr(v), 0)
    conds = [float(t / abs(x)) for t, x in zip(terms, exact, strict=True)]
    assert min(conds) > _COND[dtype] / 1e3, conds  # the cases are ill-conditioned
    for axis, (x, y) in ((0, (u, v)), (-1, (u.T, v.T)), (1, (u.T, v.T))):
        s, e = dd_dot(_NUMPY, x, y, axis)
        _assert_dd_close(s, e, exact, terms, dtype)
    plain = np.sum(u * v, axis=0)
    with pytest.raises(AssertionError):
        _assert_dd_close(plain, np.zeros_like(plain), exact, terms, dtype)


# --------------------------------------------------------------------------
# JAX's two_prod, two_square and dd_sums
# --------------------------------------------------------------------------


def _jax() -> tuple[Any, Any, Backend]:
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    return jax, jnp, resolve("t", ("x", jnp.zeros(1, jnp.float32)))


_JAX_PROD_CASES = ("normal", "largest_operand", "large_product")


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", _JAX_PROD_CASES)
def test_jax_two_prod_is_twice_as_accurate(case: str, compiled: bool) -> None:
    """On JAX (masked split, exact partial products, TwoSums), eagerly and
    under ``jax.jit``: ``p`` within 4 ulp of ``a b`` and ``p + e`` within
    ``2 u^2 |a b|`` of it (the low parts are added once, rounded); the
    gradient of ``p + e`` is ``b``. The cases with subnormal partial products
    are left out: XLA's CPU code flushes them to 0."""
    jax, jnp, be = _jax()
    a, b = _two_prod_cases(np.float32)[case]

    def fn(x: Any, y: Any) -> tuple[Any, Any]:
        return two_prod(x, y, be)

    out = (jax.jit(fn) if compiled else fn)(jnp.asarray(a), jnp.asarray(b))
    p, e = (np.asarray(v) for v in out)
    assert p.dtype == e.dtype == np.float32
    prod = _fr(a) * _fr(b)
    u2 = 2 * _unit(np.float32) ** 2
    for got, want in zip(_fr(p) + _fr(e), prod, strict=True):
        assert abs(got - want) <= u2 * abs(want), (float(got), float(want))
    near = np.abs(p.astype(np.float64) - a * b.astype(np.float64)) <= 4 * np.spacing(np.abs(a * b))
    assert np.all(near)
    if case == "normal":
        grad = jax.grad(lambda x: jnp.sum(sum(two_prod(x, jnp.asarray(b), be))))(jnp.asarray(a))
        np.testing.assert_allclose(np.asarray(grad), b, rtol=2**-22)


@pytest.mark.parametrize("n", [7, 64, 1000])
def test_jax_dd_dot_fused_under_jit(n: int) -> None:
    """A dot product cancelling to ``1e-10`` of its terms, rounded by
    ``dd_finish`` inside the same ``jax.jit`` (so that XLA fuses the
    products into their consumers and may contract them into fused
    multiply-adds): within an ulp plus ``4 n eps^2 sum|u v|``. The TwoSum
    errors are added plainly in XLA's order, not pairwise as ``dd_sum``
    does (Sum2's bound grows with ``n``: ``1000`` exceeds ``4 eps^2`` by
    1.4); the plain dot product is ``1e4`` times further off."""
    jax, jnp, be = _jax()
    pairs = [_ill_conditioned_dot(n, _COND[np.float32], np.float32, seed) for seed in range(3)]
    u = np.stack([p[0] for p in pairs], axis=1)
    v = np.stack([p[1] for p in pairs], axis=1)
    exact, terms = _exact_sum(_fr(u) * _fr(v), 0)
    fn = jax.jit(lambda x, y: dd_finish(be, *dd_dot(be, x, y, 0)))
    got = np.asarray(fn(jnp.asarray(u), jnp.asarray(v)))
    _assert_dd_close(got, np.zeros_like(got), exact, terms, np.float32, ulps=1, factor=4 * n)
    plain = np.asarray(jnp.sum(jnp.asarray(u) * jnp.asarray(v), axis=0))
    with pytest.raises(AssertionError):
        _assert_dd_close(plain, np.zeros_like(plain), exact, terms, np.float32, 1, 4 * n)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 64, 1000])
def test_jax_dd_sums_is_twice_as_accurate(n: int, axis: int, compiled: bool) -> None:
    """On JAX, the pairs summed in one reduction (TwoSum combiner, in XLA's
    order): each within 2 ulp plus ``4 eps^2 sum|x|`` of its exact sum, as
    ``dd_sum``; an empty axis sums to 0."""
    jax, jnp, be = _jax()
    shape = [3, 4]
    shape[axis] = n
    pairs = [_sum_input(tuple(shape), np.float32) for _ in range(2)]
    pairs[1] = (pairs[1][0] * np.float32(-3), pairs[1][1])  # not the same numbers twice

    def fn(*flat: Any) -> Any:
        return dd_sums(be, [(flat[0], flat[1]), (flat[2], flat[3])], axis)

    flat = [jnp.asarray(x) for pair in pairs for x in pair]
    out = (jax.jit(fn) if compiled else fn)(*flat)
    for (hi, lo), (s, e) in zip(pairs, out, strict=True):
        s, e = np.asarray(s), np.asarray(e)
        assert s.shape == e.shape == np.sum(hi, axis=axis).shape
        assert s.dtype == e.dtype == np.float32
        exact, terms = _exact_sum(_fr(hi) + _fr(lo), axis)
        _assert_dd_close(s, e, exact, terms, np.float32)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", _JAX_PROD_CASES)
def test_jax_two_square(case: str, compiled: bool) -> None:
    """``two_square`` on JAX (one split): ``p + e`` within ``2 u^2 a^2``."""
    jax, jnp, be = _jax()
    a = _two_prod_cases(np.float32)[case][0]
    a = a[np.abs(a) < 2.0**60]  # a^2 finite

    def fn(x: Any) -> tuple[Any, Any]:
        return two_square(x, be)

    p, e = (np.asarray(v) for v in (jax.jit(fn) if compiled else fn)(jnp.asarray(a)))
    u2 = 2 * _unit(np.float32) ** 2
    for got, want in zip(_fr(p) + _fr(e), _fr(a) * _fr(a), strict=True):
        assert abs(got - want) <= u2 * want, (float(got), float(want))


def test_jax_dd_dots_differentiate_as_plain_dots() -> None:
    """The gradient of the compensated dot products (one reduction for three
    pairs) is that of the plain ones, under ``jax.grad``, ``jax.jit`` and
    ``jax.vmap``."""
    jax, jnp, be = _jax()
    rng = np.random.default_rng(8)
    u, v = (jnp.asarray(_floats(rng, (5, 16), np.float32)) for _ in range(2))

    def total(x: Any, y: Any) -> Any:
        dots = dd_dots(be, [(x, y), (x, x), (y, y)], 1)
        weights = (1.0, 2.0, 3.0)
        return sum(jnp.sum(dd_finish(be, *d) * w) for d, w in zip(dots, weights, strict=True))

    def plain(x: Any, y: Any) -> Any:
        return jnp.sum(x * y) + 2.0 * jnp.sum(x * x) + 3.0 * jnp.sum(y * y)

    for fn in (jax.grad(total, (0, 1)), jax.jit(jax.grad(total, (0, 1)))):
        got, want = fn(u, v), jax.grad(plain, (0, 1))(u, v)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6)
    rows = jax.vmap(lambda x, y: dd_finish(be, *dd_dots(be, [(x, y)], 0)[0]))(u, v)
    np.testing.assert_allclose(
        np.asarray(rows), np.sum(np.asarray(u) * np.asarray(v), 1), rtol=1e-6
    )


def test_mlx_dd_dots_and_sums_compiled() -> None:
    """On MLX the pairwise sums run under ``mx.compile`` (high parts
    bit-identical to the eager NumPy pairwise sums) and differentiate as the plain sums and dot
    products, including a pair broadcast along the axis (its gradient summed
    back to its shape), under ``mx.grad`` and inside a user's ``mx.compile``."""
    mx = pytest.importorskip("mlx.core")
    rng = np.random.default_rng(9)
    u = _floats(rng, (5, 16), np.float32)
    v = _floats(rng, (5, 16), np.float32)
    w = _floats(rng, (5, 1), np.float32)  # broadcast along the axis
    be = resolve("t", ("x", mx.array(u)))
    got = dd_dots(be, [(mx.array(u), mx.array(v)), (mx.array(w), mx.array(v))], 1)
    wide = np.broadcast_to(w, v.shape)
    want = [dd_dot(_NUMPY, u, v, 1), dd_dot(_NUMPY, wide, v, 1)]
    for (s, e), (s0, _), x in zip(got, want, (u, wide), strict=True):
        np.testing.assert_array_equal(np.array(s), s0)
        # the low parts are summed by MLX's own sum, in its own order
        exact, terms = _exact_sum(_fr(x) * _fr(v), 1)
        _assert_dd_close(np.array(s), np.array(e), exact, terms, np.float32)
    sums = dd_sums(be, [(mx.array(u), mx.array(v))], 0)[0]
    np.testing.assert_array_equal(np.array(sums[0]), pairwise_sum(_NUMPY, u, v, 0)[0])

    def total(x: Any, y: Any, z: Any) -> Any:
        dots = dd_dots(be, [(x, y), (x, x), (z, y)], 1)
        ((s, e),) = dd_sums(be, [(x, y)], 0)
        parts = [dd_finish(be, *d) * c for d, c in zip(dots, (1.0, 2.0, 3.0), strict=True)]
        return sum(mx.sum(p) for p in parts) + mx.sum(dd_finish(be, s, e) * 4.0)

    def plain(x: Any, y: Any, z: Any) -> Any:
        return mx.sum(x * y) + 2.0 * mx.sum(x * x) + 3.0 * mx.sum(z * y) + 4.0 * mx.sum(x + y)

    args = (mx.array(u), mx.array(v), mx.array(w))
    want = mx.grad(plain, argnums=(0, 1, 2))(*args)
    for fn in (mx.grad(total, argnums=(0, 1, 2)), mx.compile(mx.grad(total, argnums=(0, 1, 2)))):
        for g, ref in zip(fn(*args), want, strict=True):
            assert g.shape == ref.shape
            np.testing.assert_allclose(np.array(g), np.array(ref), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------
# dd_add, dd_sqrt, dd_finish
# --------------------------------------------------------------------------


def _double_words(rng: np.random.Generator, n: int, dtype: Any, scale: float = 1.0) -> Pair:
    """Normalized ``(hi, lo)`` pairs: ``hi = fl(hi + lo)``."""
    return two_sum(_floats(rng, n, dtype, scale), _floats(rng, n, dtype, scale * 1e-5))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_dd_add(dtype: Any) -> None:
    """``a + b`` of double words within ``4 eps^2 (|a| + |b|)``: random pairs,
    pairs that cancel (``b = -a`` up to the last bits) and mixed magnitudes."""
    rng = np.random.default_rng(4)
    a = _double_words(rng, 64, dtype)
    near = two_sum(-a[0], (a[1] * dtype(-1 - 2**-10)).astype(dtype))
    for b in (_double_words(rng, 64, dtype), near, _double_words(rng, 64, dtype, 1e-12)):
        s, e = dd_add(a, b)
        exact_a, exact_b = _fr(a[0]) + _fr(a[1]), _fr(b[0]) + _fr(b[1])
        terms = np.abs(exact_a) + np.abs(exact_b)
        _assert_dd_close(s, e, exact_a + exact_b, terms, dtype, ulps=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_dd_sqrt(dtype: Any) -> None:
    """``(r + e)^2`` within ``4 eps^2`` of ``hi + lo`` (relative), over the
    range where ``two_prod(r, r)`` is exact; ``sqrt(0) = (0, 0)`` and perfect
    squares have ``e = 0``."""
    rng = np.random.default_rng(5)
    low = _RANGE[dtype][1]
    exps = rng.integers(low + 2, np.finfo(dtype).maxexp - 1, 256)
    hi = np.ldexp(rng.uniform(1, 2, 256), exps).astype(dtype)
    lo = (hi * rng.uniform(-1, 1, 256) * float(_unit(dtype))).astype(dtype)
    hi, lo = np.append(hi, dtype(0)), np.append(lo, dtype(0))
    r, e = dd_sqrt(_NUMPY, hi, lo)
    assert r.dtype == e.dtype == dtype
    np.testing.assert_array_equal(r, np.sqrt(hi))
    root, value = _fr(r) + _fr(e), _fr(hi) + _fr(lo)
    eps2 = (2 * _unit(dtype)) ** 2
    for x, want in zip(root.ravel(), value.ravel(), strict=True):
        assert abs(x * x - want) <= 4 * eps2 * want, (float(x), float(want))
    assert r[-1] == 0 and e[-1] == 0
    r, e = dd_sqrt(_NUMPY, np.array([4.0, 2.0**-60, 2.0**100], dtype), np.zeros(3, dtype))
    np.testing.assert_array_equal(e, 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_dd_finish_keeps_inf_and_nan(dtype: Any) -> None:
    """``dd_finish`` rounds ``hi + lo`` once and keeps an inf or NaN of ``hi``
    where TwoSum made the low part NaN (``hi + lo`` alone would be NaN)."""
    inf = float("inf")
    a = np.array([inf, -inf, np.nan, 1.0, 1e10, 3.0], dtype)
    b = np.array([1.0, 2.0, 1.0, 2.0**-40, -1e-10, -3.0], dtype)
    with np.errstate(invalid="ignore"):
        hi, lo = two_sum(a, b)
        assert np.isnan(lo[0]) and np.isnan(hi[0] + lo[0])  # what dd_finish undoes
        out = dd_finish(_NUMPY, hi, lo)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[:3], [inf, -inf, np.nan])
    np.testing.assert_array_equal(out[3:], (hi + lo)[3:])


# --------------------------------------------------------------------------
# Array libraries, eager and compiled
# --------------------------------------------------------------------------

_LIBRARIES = ["numpy", "torch", "jax", "mlx"]


def _to_library(name: str) -> Callable[[np.ndarray], Any]:
    """The function that moves a NumPy array into library ``name``."""
    if name == "numpy":
        return np.asarray
    if name == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy
    if name == "jax":
        jnp = pytest.importorskip("jax.numpy")
        return jnp.asarray
    mx = pytest.importorskip("mlx.core")
    return mx.array


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()  # type: ignore[no-any-return]
    return np.array(x, copy=True)


def _all_ops(u: Any, v: Any, w: Any) -> tuple[Any, ...]:
    """Every primitive on float32 arrays ``u, v`` of shape (9, 4) and ``w``
    (holding inf and NaN) of shape (4,); the backend is resolved inside, as
    the losses do."""
    be: Backend = resolve("t", ("x", u))
    s, e = two_sum(u, v)
    p, pe = two_prod(u, v)
    add = dd_add((s, e), (p, pe))
    dot = dd_dot(be, u, v, 0)
    total = dd_sum(be, s, e, -1)
    root = dd_sqrt(be, *two_prod(u, u))
    finish = dd_finish(be, *two_sum(w, u[0] * 0 + 1))
    return s, e, p, pe, *add, *dot, *total, *root, finish


_REDUCED_LOWS = (7, 9)  # indices of the low parts of dd_dot and dd_sum


def _backend_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 ``u, v`` whose columns are adversarial: random, near
    cancellation (``v = -u (1 + 2^-20)``) at ``1e15``, exact cancellation at
    ``1e-8``, mixed magnitudes (``1e15 + 1e-15``); 9 rows (odd)."""
    rng = np.random.default_rng(6)
    u = rng.normal(size=(9, 4)) * np.array([1.0, 1e15, 1e-8, 1e15])
    u = u.astype(np.float32)
    v = np.stack(
        [
            rng.normal(size=9).astype(np.float32),
            -u[:, 1] * np.float32(1 + 2**-20),
            -u[:, 2],
            (rng.normal(size=9) * 1e-15).astype(np.float32),
        ],
        axis=1,
    ).astype(np.float32)
    w = np.array([np.inf, -np.inf, np.nan, 2.5], np.float32)
    return u, v, w


def _reference() -> tuple[np.ndarray, ...]:
    """:func:`_all_ops` on eager NumPy float32."""
    with np.errstate(invalid="ignore"):
        return tuple(np.asarray(x) for x in _all_ops(*_backend_inputs()))


_JAX_OWN = range(6, 12)  # dd_dot, dd_sum, dd_sqrt: one reduction and masked splits on JAX


def _check_against_numpy(out: tuple[Any, ...], exact_lows: bool, jax: bool = False) -> None:
    """``out`` bit-identical to eager NumPy; the low parts of the reductions
    (summed by the library's own ``sum``, whose order is its own) bit-identical
    too where ``exact_lows``, else as accurate as NumPy's. On JAX (``jax``)
    the reductions and the square root take other algorithms (one reduction
    with a TwoSum combiner, the masked two_prod): they are held to the same
    accuracy instead."""
    ref = _reference()
    got = [_to_numpy(x) for x in out]
    assert len(got) == len(ref)
    for i, (x, y) in enumerate(zip(got, ref, strict=True)):
        assert x.dtype == np.float32, (i, x.dtype)
        if jax and i in _JAX_OWN:
            continue
        if exact_lows or i not in _REDUCED_LOWS:
            np.testing.assert_array_equal(x, y, err_msg=f"output {i}")
    u, v, _ = _backend_inputs()
    exact, terms = _exact_sum(_fr(u) * _fr(v), 0)
    _assert_dd_close(got[6], got[7], exact, terms, np.float32)
    exact, terms = _exact_sum(_fr(u) + _fr(v), -1)
    _assert_dd_close(got[8], got[9], exact, terms, np.float32)
    root = _fr(got[10]) + _fr(got[11])  # sqrt(u u) is |u|
    _assert_dd_close(root, np.zeros_like(got[10]), np.abs(_fr(u)), np.abs(_fr(u)), np.float32)


def test_backend_reference_is_exact() -> None:
    """The NumPy reference of the backend tests is itself right: its
    elementwise outputs are error-free against Fractions."""
    u, v, _ = _backend_inputs()
    s, e, p, pe, *_, r, _, finish = _reference()
    _assert_exact(_fr(s) + _fr(e), _fr(u) + _fr(v))
    _assert_exact(_fr(p) + _fr(pe), _fr(u) * _fr(v))
    np.testing.assert_array_equal(finish, [np.inf, -np.inf, np.nan, 3.5])
    np.testing.assert_array_equal(r, np.abs(u))
    _check_against_numpy(_reference(), exact_lows=True)


@pytest.mark.parametrize("library", _LIBRARIES)
def test_eager_backends(library: str) -> None:
    """Eager on each library: bit-identical to NumPy (IEEE ``+ - * sqrt``)."""
    put = _to_library(library)
    with np.errstate(invalid="ignore"):  # NumPy: inf - inf in two_sum
        out = _all_ops(*(put(x) for x in _backend_inputs()))
    _check_against_numpy(out, exact_lows=False, jax=library == "jax")


@pytest.mark.parametrize("library", [n for n in _LIBRARIES if n != "jax"])
def test_two_sum_subnormal_backends(library: str) -> None:
    """Subnormal float32 sums are exact on each library (JAX on CPU flushes
    subnormals to zero: it is left out)."""
    put = _to_library(library)
    a, b = _two_sum_cases(np.float32)["subnormal"]
    s, e = (_to_numpy(x) for x in two_sum(put(a), put(b)))
    np.testing.assert_array_equal(s, a + b)
    _assert_exact(_fr(s) + _fr(e), _fr(a) + _fr(b))


def test_jax_jit() -> None:
    """Under ``jax.jit`` (float32: x64 is off) bit-identical to eager NumPy
    where the algorithms are the same: XLA does not reassociate additions of
    traced values (those with constants: see the next test)."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    out = jax.jit(_all_ops)(*(jnp.asarray(x) for x in _backend_inputs()))
    _check_against_numpy(out, exact_lows=True, jax=True)


def test_mx_compile() -> None:
    """Under ``mx.compile`` bit-identical to eager NumPy."""
    mx = pytest.importorskip("mlx.core")
    out = mx.compile(_all_ops)(*(mx.array(x) for x in _backend_inputs()))
    _check_against_numpy(out, exact_lows=True)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile() -> None:
    """Under ``torch.compile(fullgraph=True)`` (Inductor's C++ code)
    bit-identical to eager NumPy."""
    torch = pytest.importorskip("torch")
    compiled = torch.compile(_all_ops, fullgraph=True)
    out = compiled(*(torch.from_numpy(x) for x in _backend_inputs()))
    _check_against_numpy(out, exact_lows=True)


def test_two_sum_with_a_constant_under_jax_jit() -> None:
    """XLA folds ``(x + c) - c`` into ``x`` for a constant ``c`` of the trace,
    which would make TwoSum's error 0 where ``1 + x`` rounds. A constant
    second is safe; a Python number first is put second by two_sum and
    fast_two_sum themselves (a constant made inside the trace is a tracer
    like any other: the callers pass those second)."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    x = np.array([1e-8, 3e-8, -1e-9, 0.1, 2.0**-25, 1.5], dtype=np.float32)

    def pairs(v: Any) -> tuple[Any, ...]:
        one = jnp.asarray(1.0, dtype=jnp.float32)  # a literal of the trace
        return (*two_sum(v, one), *two_sum(1.0, v), *fast_two_sum(1.0, v), *two_sum(v, 1.0))

    out = [np.asarray(r) for r in jax.jit(pairs)(jnp.asarray(x))]
    want = _fr(x) + 1
    for s, e in zip(out[::2], out[1::2], strict=True):
        _assert_exact(_fr(s) + _fr(e), want)
        assert np.count_nonzero(e) >= 4  # the errors themselves, not zeros


# --------------------------------------------------------------------------
# exact_square and sum3: sums that cancel deeper than double words resolve
# --------------------------------------------------------------------------

# float64 on NumPy; float32 on every library (JAX also under jit)
_SUM3_CASES = [
    pytest.param(library, dtype, id=f"{library}-{np.dtype(dtype).name}")
    for library, dtype in [
        ("numpy", np.float32),
        ("numpy", np.float64),
        ("jax", np.float32),
        ("jax-jit", np.float32),
        ("mlx", np.float32),
    ]
]


@pytest.mark.parametrize(("library", "dtype"), _SUM3_CASES)
def test_exact_square_is_exact(library: str, dtype: Any) -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [_floats(rng, 64, dtype), _floats(rng, 16, dtype, 1e10), _floats(rng, 16, dtype, 1e-10)]
    )
    x = np.concatenate([x, np.nextafter(np.ones(4, dtype), 2), [0.0, -3.0]]).astype(dtype)
    fn = lambda v: tuple(exact_square(v, resolve("t", ("x", v))))  # noqa: E731
    words = _call(library, fn, x)
    assert len(words) == 3
    _assert_exact(sum(_fr(w) for w in words), _fr(x) * _fr(x))


def _call(library: str, fn: Callable[[Any], Any], *arrays: np.ndarray) -> list[np.ndarray]:
    """``fn`` on ``library``'s arrays (``jax-jit``: under ``jax.jit``), as NumPy."""
    if library == "jax-jit":
        jax = pytest.importorskip("jax")
        fn = jax.jit(fn)
    put = _to_library(library.removesuffix("-jit"))
    return [_to_numpy(r) for r in fn(*(put(a) for a in arrays))]


def _cancelling_rows(dtype: Any) -> np.ndarray:
    """Rows (axis 1) of 2 x 40 words whose sum cancels to about ``2^-34`` of
    the sum of their magnitudes (float32): each row holds the exact squares
    (``exact_square``, Fractions-checked above) of a vector and of its
    reversal with one small entry an ulp away (the distances of a triplet
    loss equal but for the last bit), plus rows of huge and tiny words and
    exact zeros."""
    rng = np.random.default_rng(7)
    rows = []
    for scale in (1.0, 1e-3, 1e3):
        for _ in range(4):
            d = _floats(rng, 8, dtype, scale)
            d[0] = dtype(scale * 2.0**-4 * rng.uniform(1.0, 2.0))
            e = d[::-1].copy()  # the same sum of squares but for one ulp of d[0]
            e[-1] = np.nextafter(d[0], dtype(np.inf))
            words = [w for v in d for w in _square_words(v)] + [
                -w for v in e for w in _square_words(v)
            ]
            rows.append(words + [0.0] * (80 - len(words)))
    big = _floats(rng, 40, dtype, 1e20)
    rows.append(list(big) + list(-big[::-1]))  # exactly 0
    mixed = np.concatenate([_floats(rng, 20, dtype, 1e10), _floats(rng, 20, dtype, 1e-10)])
    rows.append(list(mixed) + list(-mixed[:20]) + [0.0] * 20)  # the tiny ones remain
    return np.array(rows, dtype=dtype)


def _square_words(v: Any) -> list[Any]:
    return [np.asarray(w) for w in exact_square(np.asarray(v))]


@pytest.mark.parametrize(("library", "dtype"), _SUM3_CASES)
def test_sum3_resolves_deep_cancellation(library: str, dtype: Any) -> None:
    """``sum3`` as accurate as three times the precision: ``hi + lo`` within
    ``2 u^2 |S| + log2(n)^3 u^3 sum |x|`` (``n`` = 128, the 80 words of a row
    padded), so rounded to within 1 ulp of ``S`` where a double-word sum
    (:func:`dd_sum`) is hundreds of ulp off."""
    x = _cancelling_rows(dtype)
    exact, terms = _exact_sum(_fr(x), 1)
    u = _unit(dtype)

    def fn(v: Any) -> tuple[Any, ...]:
        be = resolve("t", ("x", v))
        halves = [v[:, :40], v[:, 40:]]  # two words, summed along axis 1
        hi, lo = sum3(be, halves, 1)
        return hi, lo, dd_finish(be, hi, lo), *dd_sum(be, v, v * 0, 1)

    hi, lo, finished, dd_hi, dd_lo = _call(library, fn, x)
    got = _fr(hi) + _fr(lo)
    for g, want, t in zip(got, exact, terms, strict=True):
        assert abs(g - want) <= 2 * u * u * abs(want) + 7**3 * u**3 * t, (float(g), float(want))
    for f, want in zip(finished[:12], exact[:12], strict=True):  # the triplet-like rows
        assert abs(Fraction(float(f)) - want) <= _ulp(want, dtype)
    assert finished[12] == 0
    # the rows are adversarial: double words are far off on the squares
    dd_err = [
        abs(Fraction(float(h)) + Fraction(float(low)) - w) / _ulp(w, dtype)
        for h, low, w in zip(dd_hi[:12], dd_lo[:12], exact[:12], strict=True)
    ]
    assert max(dd_err) > 4


def test_sum3_edge_shapes() -> None:
    be = resolve("t", ("x", np.zeros(1)))
    hi, lo = sum3(be, [np.zeros((3, 0))], 1)
    np.testing.assert_array_equal(hi, np.zeros(3))
    np.testing.assert_array_equal(lo, np.zeros(3))
    one = np.array([[2.5], [-1.0]])
    hi, lo = sum3(be, [one, one, one], 1)  # three words of length 1: padded to 4
    np.testing.assert_array_equal(hi, [7.5, -3.0])
    np.testing.assert_array_equal(lo, [0.0, 0.0])
    x = np.arange(24.0).reshape(2, 3, 4)
    hi, _ = sum3(be, [x], 0)  # another axis
    np.testing.assert_array_equal(hi, x.sum(axis=0))

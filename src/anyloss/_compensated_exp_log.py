"""``exp`` and ``log`` as double words, from ``+ - * /`` alone.

Where a loss cancels (``sum e^t (t - x)`` for near-equal distributions,
``e^x - t x`` near its minimum, ``log v + d^2 / v``), one rounding of ``exp``
or ``log`` is amplified by the cancellation. With a wider type the library's
own functions suffice; where there is none (float32 on MLX and on JAX
without x64, and the GPU kernels), the value is carried as ``hi + lo``:

- :func:`dd_exp` (float32): ``e^x = 2^k 2^(j/4) e^r``, ``|r| <= ln 2 / 8``,
  with ``r`` reduced in double words, ``1 + r + r^2/2`` error-free and the
  rest of the series in float32 (below ``1.1e-4``, so its rounding is below
  ``2^-11`` ulp). The four values ``2^(j/4)`` are double words picked by
  ``where``: no table lookup.
- :func:`dd_log` (float32, float64): ``log v = e log 2 + 2 atanh(s)``,
  ``s = (m - 1) / (m + 1)`` for ``v = m 2^e``, ``m`` in about
  ``[0.7, 1.42]``; the leading terms of the series in double words.

``hi`` is ``exp``/``log`` correctly rounded but for rare ties (within
``2^-10`` ulp of a midpoint), and ``hi + lo`` is within about ``2^-34``
(exp) and ``2^-38`` (log) of the true value in float32, relative. MLX's own
float32 ``exp`` is 62 ulp off on ``[-80, 80]`` (measured, mlx 0.32 CPU),
JAX's 1 ulp.

Differentiation: on JAX (``custom_jvp``) and MLX (``custom_function``) the
pair varies as ``hi``, the derivative of ``exp`` (``hi``) or of ``log``
(``1 / v``), the low part not at all: the backward pass is one product, not
the derivative of the compensated arithmetic. MLX runs them under
``mx.compile``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from ._backend import Backend
from ._compensated import (
    fast_two_sum,
    float32_parts,
    mlx_backend,
    pow2,
    two_prod,
    two_square,
    two_sum,
)

__all__ = ["dd_exp", "dd_log", "dd_pow", "exp", "log_of_pair"]


@functools.cache
def _exact(expression: str) -> Fraction:
    """An elementary constant to 60 digits: ``ln2`` or ``2^(j/4)``."""
    with localcontext() as ctx:
        ctx.prec = 60
        two = Decimal(2)
        if expression == "ln2":
            return Fraction(two.ln())
        j = int(expression[len("2^(") : -len("/4)")])
        return Fraction(two ** (Decimal(j) / 4))


def _round(x: Fraction, bits: int) -> float:
    """``x`` rounded to ``bits`` significant bits (to nearest, ties to even)."""
    if x == 0:
        return 0.0
    e = abs(x.numerator).bit_length() - abs(x.denominator).bit_length()
    scaled = x * Fraction(2) ** (bits - 1 - e)
    while abs(scaled) >= 2**bits:  # (the estimate of e is off by at most one)
        scaled /= 2
        e += 1
    while abs(scaled) < 2 ** (bits - 1):
        scaled *= 2
        e -= 1
    return float(Fraction(round(scaled)) * Fraction(2) ** (e - bits + 1))


def _parts(x: Fraction, bits: tuple[int, ...]) -> tuple[float, ...]:
    """``x`` as a sum of floats of ``bits[i]`` significant bits each, largest
    first (the last part rounded, the others exact)."""
    out = []
    for b in bits:
        part = _round(x, b)
        out.append(part)
        x -= Fraction(part)
    return tuple(out)


# exp: r = x - n ln2/4 with |n| <= 601 (10 bits) for x in [-104, 89]: two
# 14-bit parts make n * part exact, the third is rounded
_QUARTER_LN2 = _parts(_exact("ln2") / 4, (14, 14, 24))
_FOUR_OVER_LN2 = float(4 / _exact("ln2"))
_ROOTS = tuple(_parts(_exact(f"2^({j}/4)"), (24, 24)) for j in (1, 2, 3))
# x outside: e^x rounds to 0 (below half the least subnormal) or overflows
_EXP_LOW, _EXP_HIGH = -104.0, 89.0
# e^r - 1 - r - r^2/2 = r^3 (1/3! + r/4! + ... + r^6/9!): truncation r^7/10!
# (2^-46 of r^3/6 at |r| = ln2/8)
_EXP_TAIL = tuple(1.0 / f for f in (6, 24, 120, 720, 5040, 40320, 362880))

# log: e ln2 exact for |e| <= 2^8 (float32, 16 + 8 bits) or 2^11 (float64,
# 32 + 11 as in the float64 Gaussian NLL before), then two rounded parts
_LN2 = {24: _parts(_exact("ln2"), (16, 24, 24)), 53: _parts(_exact("ln2"), (32, 53, 53))}
_TWO_THIRDS = {p: _parts(Fraction(2, 3), (p, p)) for p in (24, 53)}
_TWO_FIFTHS = {p: _parts(Fraction(2, 5), (p, p)) for p in (24, 53)}
# 2 atanh(s) = 2s + 2s^3/3 + 2s^5/5 (double words) + 2 s^7 R(s^2), |s| <= 0.18;
# R's coefficients 1/7, 1/9, ...; truncation below 2^-49 (float32), 2^-54 of
# 2s (float64, as in the float64 Gaussian NLL before)
_ATANH_TAIL = {
    24: tuple(1.0 / k for k in range(7, 19, 2)),
    53: tuple(1.0 / k for k in range(7, 25, 2)),
}


def _poly(z: Any, coefficients: tuple[float, ...]) -> Any:
    """``c0 + c1 z + c2 z^2 + ...`` (Horner)."""
    acc = z * coefficients[-1] + coefficients[-2]
    for c in reversed(coefficients[:-2]):
        acc = acc * z + c
    return acc


def _pow2(be: Backend, k: Any) -> tuple[Any, Any]:
    """``2^k = f1 f2`` for an integer-valued ``k`` of ``|k| <= 2 * 126``, each
    factor a normal float (``2^k`` alone would be subnormal or overflow)."""
    k1 = be.xp.floor(k * 0.5)
    return pow2(be, k1), pow2(be, k - k1)


def _exp_pair(be: Backend, x: Any) -> tuple[Any, Any]:
    """:func:`dd_exp` without its derivative rule."""
    xp = be.xp
    dt = x.dtype
    zero, one = be.scalar(0.0, dt), be.scalar(1.0, dt)
    inside = (x > be.scalar(_EXP_LOW, dt)) & (x < be.scalar(_EXP_HIGH, dt))
    xc = xp.where(inside, x, zero)
    n = be.stop_gradient(xp.round(xc * _FOUR_OVER_LN2))
    k = xp.floor(n * 0.25)
    j = n - 4.0 * k
    c1, c2, c3 = _QUARTER_LN2
    r, r_lo = two_sum(xc - n * c1, -(n * c2))  # x - n c1 and n c2 are exact
    r_lo = r_lo - n * c3
    # e^r = 1 + r + r^2/2 + r^3 P(r)
    sq, sq_err = two_square(r, be)
    half, half_lo = 0.5 * sq, 0.5 * sq_err + r * r_lo
    tail = (sq * r) * _poly(r, _EXP_TAIL)
    a, a_err = two_sum(r, half)
    h, h_err = two_sum(a, one)  # the constant second (see two_sum)
    lo = h_err + (a_err + ((half_lo + r_lo) + tail))
    # times 2^(j/4)
    root_hi, root_lo = one, zero
    for i, (c_hi, c_lo) in enumerate(_ROOTS, start=1):
        pick = j == be.scalar(float(i), dt)
        root_hi = xp.where(pick, be.scalar(c_hi, dt), root_hi)
        root_lo = xp.where(pick, be.scalar(c_lo, dt), root_lo)
    p, p_err = two_prod(root_hi, h, be)
    hi, lo = fast_two_sum(p, p_err + (root_hi * lo + root_lo * h))
    f1, f2 = _pow2(be, k)
    hi, lo = (hi * f1) * f2, (lo * f1) * f2
    return xp.where(inside, hi, _exp_outside(be, x)), xp.where(inside, lo, zero)


def _exp_outside(be: Backend, x: Any) -> Any:
    """``exp`` outside ``(-104, 89)``: 0, inf or NaN (no ``exp`` of every
    element)."""
    xp = be.xp
    zero = be.scalar(0.0, x.dtype)
    outside = xp.where(x > zero, be.scalar(float("inf"), x.dtype), zero)
    return xp.where(x == x, outside, x)


def _log_pair(be: Backend, v: Any) -> tuple[Any, Any]:
    """:func:`dd_log` without its derivative rule."""
    xp = be.xp
    dt = v.dtype
    p = 53 if "64" in str(dt) else 24
    zero, one = be.scalar(0.0, dt), be.scalar(1.0, dt)
    ok = (v > zero) & (v < be.scalar(float("inf"), dt))
    w = xp.where(ok, v, one)
    # v = m 2^e with m in about [0.7, 1.42] (e from a rounded log2; the
    # scaling in two exact steps, as 2^-e alone overflows for a subnormal v)
    e = be.stop_gradient(xp.round(xp.log2(w)))
    f1, f2 = _pow2(be, -e)
    m = (w * f1) * f2
    num = m - one  # exact (Sterbenz)
    den, den_lo = two_sum(m, one)
    s = num / den
    t, t_err = two_prod(s, den, be)
    s_lo = (((num - t) - t_err) - s * den_lo) / den
    # s^2, s^3 and (2/3) s^3 as double words
    s2, s2_err = two_square(s, be)
    s2_lo = s2_err + 2.0 * (s * s_lo)
    s3, s3_err = two_prod(s2, s, be)
    s3_lo = s3_err + (s2 * s_lo + s2_lo * s)
    t_hi, t_lo = _TWO_THIRDS[p]
    c3, c3_err = two_prod(s3, be.scalar(t_hi, dt), be)
    c3_lo = c3_err + (s3 * t_lo + s3_lo * t_hi)
    s5, s5_err = two_prod(s3, s2, be)
    s5_lo = s5_err + (s3 * s2_lo + s3_lo * s2)
    f_hi, f_lo = _TWO_FIFTHS[p]
    c5, c5_err = two_prod(s5, be.scalar(f_hi, dt), be)
    c5_lo = c5_err + (s5 * f_lo + s5_lo * f_hi)
    # 2 s^7 R(s^2): below 3.6e-6 of 2s
    lm, lm_err = two_sum(c3, c5)
    lm_lo = lm_err + ((c3_lo + c5_lo) + (2.0 * (s5 * s2)) * _poly(s2, _ATANH_TAIL[p]))
    lm, lm_err = two_sum(2.0 * s, lm)
    lm_lo = lm_err + (2.0 * s_lo + lm_lo)
    # + e ln2 (e ln2_hi exact)
    l1, l2, l3 = _LN2[p]
    el, el_err = two_prod(e, be.scalar(l2, dt), be)
    hi, hi_err = two_sum(e * l1, lm)
    lo = hi_err + ((lm_lo + el) + (el_err + e * l3))
    hi, lo = fast_two_sum(hi, lo)
    # outside: log 0 = -inf, log inf = inf, NaN below 0 (no warnings, no log)
    inf = be.scalar(float("inf"), dt)
    outside = xp.where(v == zero, -inf, xp.where(v > zero, inf, be.scalar(float("nan"), dt)))
    return xp.where(ok, hi, outside), xp.where(ok, lo, zero)


def dd_exp(be: Backend, x: Any, differentiable: bool = True) -> tuple[Any, Any]:
    """``e^x = hi + lo`` for float32 ``x`` (see the module docstring).
    ``differentiable=False``: without the derivative rule, for a value
    computed apart from the gradient (under ``mx.compile`` the rule is a
    function of its own, which the compiler does not fuse with the rest).

    ``hi`` is the correctly rounded ``exp`` (but for near-ties) and ``hi +
    lo`` is accurate to about ``2^-34`` relative, for results above ``2^-100``
    (below, ``lo`` is subnormal and the pair loses bits; JAX flushes
    subnormal results to 0). ``x <= -104``, ``x >= 89``, ``inf`` and NaN
    give what ``exp`` gives (0, inf, NaN) and ``lo = 0``.
    """
    if "64" in str(x.dtype):
        raise TypeError(f"dd_exp: float32 only, got {x.dtype}")
    if not differentiable:
        return _exp_pair(be, x)
    pair: tuple[Any, Any] = _with_derivative(be, "exp")(x)
    return pair


def dd_log(be: Backend, v: Any, differentiable: bool = True) -> tuple[Any, Any]:
    """``log v = hi + lo`` for float32 or float64 ``v`` (see the module
    docstring): accurate to about ``2^-38`` (float32) or ``2^-60``
    (float64) relative for every positive finite ``v``, subnormal ones
    included (but on JAX, which flushes them to 0). ``v <= 0``, ``inf`` and
    NaN give what ``log`` gives (without its warnings) and ``lo = 0``.
    ``differentiable=False``: as for :func:`dd_exp`."""
    if not differentiable:
        return _log_pair(be, v)
    pair: tuple[Any, Any] = _with_derivative(be, "log")(v)
    return pair


def log_of_pair(be: Backend, v: tuple[Any, Any]) -> tuple[Any, Any]:
    """``log(v_hi + v_lo)`` for a double word with ``v_hi > 0``, as
    ``log v_hi + v_lo / v_hi`` (:func:`dd_log` without its derivative rule),
    normalized (``log v_hi`` is 0 at ``v_hi = 1``). The value only."""
    hi, lo = _log_pair(be, v[0])
    return fast_two_sum(hi, lo + v[1] / v[0])


def dd_pow(be: Backend, hi: Any, lo: Any, p: float) -> tuple[Any, Any]:
    """``(hi + lo)^p`` for a float32 double word ``hi + lo >= 0`` and a
    Python float ``p``, as ``e^(p log(hi + lo))`` with the logarithm, its
    product by ``p`` (a double word too) and the exponential in double
    words: accurate to about ``2^-33`` relative while ``|p log(hi)| < 16``
    (the error of the argument is that of the result). ``0^p`` is 0 for
    ``p > 0``; results outside ``exp``'s range are 0 or inf. The value only:
    no derivative rule (differentiate a plain ``pow`` beside it)."""
    xp = be.xp
    dt = hi.dtype
    zero = be.scalar(0.0, dt)
    positive = hi > zero
    base = xp.where(positive, hi, be.scalar(1.0, dt))
    log_hi, log_lo = log_of_pair(be, (base, xp.where(positive, lo, zero)))
    p_hi, p_lo = float32_parts(p)
    t, t_err = two_prod(log_hi, be.scalar(p_hi, dt), be)
    t, t_lo = fast_two_sum(t, t_err + (log_lo * p_hi + log_hi * p_lo))
    e, e_lo = _exp_pair(be, t)
    e_lo = e_lo + e * t_lo  # e^(t + t_lo) = e^t (1 + t_lo)
    return xp.where(positive, e, zero), xp.where(positive & xp.isfinite(e), e_lo, zero)


def exp(be: Backend, x: Any) -> Any:
    """``e^x`` within an ulp: on MLX, whose own float32 ``exp`` is up to 62
    ulp off, :func:`_faithful_exp` compiled (0.9 ulp, and 2x faster than
    MLX's on the CPU: 26 ms against 48 on 4M elements), differentiated as
    ``exp``; elsewhere the library's ``exp`` (JAX's, NumPy's, PyTorch's:
    within an ulp)."""
    if be.name == "mlx" and "32" in str(x.dtype):
        return _mlx_exp()(x)
    return be.xp.exp(x)


# exp in float32: x = k ln2 + r, |k| <= 150 (8 bits): ln2 in a 16-bit part (k
# times it exact) and a rounded one; e^r = 1 + r + r^2 (1/2! + ... + r^6/8!),
# truncated at r^9/9! (2e-10 relative at |r| = ln2 / 2)
_LN2_F32 = _parts(_exact("ln2"), (16, 24))
_INV_LN2 = float(1 / _exact("ln2"))
_EXP_SERIES = tuple(1.0 / f for f in (2, 6, 24, 120, 720, 5040, 40320))


def _faithful_exp(be: Backend, x: Any) -> Any:
    """``e^x`` for float32 ``x`` within 0.9 ulp (measured worst on 4M
    uniform arguments; 0, inf and NaN outside ``(-104, 89)`` as ``exp``):
    one rounded reduction ``r = x - k ln2`` (error below ``2^-24 |r|``), the
    series in float32, the power of two from the exponent bits."""
    xp = be.xp
    dt = x.dtype
    zero = be.scalar(0.0, dt)
    inside = (x > be.scalar(_EXP_LOW, dt)) & (x < be.scalar(_EXP_HIGH, dt))
    xc = xp.where(inside, x, zero)
    k = be.stop_gradient(xp.round(xc * _INV_LN2))
    r = (xc - k * _LN2_F32[0]) - k * _LN2_F32[1]
    p = 1.0 + (r + (r * r) * _poly(r, _EXP_SERIES))
    f1, f2 = _pow2(be, k)
    return xp.where(inside, (p * f1) * f2, _exp_outside(be, x))


@functools.cache
def _mlx_exp() -> Any:
    mx = sys.modules["mlx.core"]
    be = mlx_backend()
    f = mx.custom_function(mx.compile(lambda x: _faithful_exp(be, x)))

    def f_vjp(primals: Any, cotangent: Any, output: Any) -> Any:
        return cotangent * output

    f.vjp(f_vjp)
    return f


def _with_derivative(be: Backend, kind: str) -> Any:
    """The pair function of ``kind`` for ``be``, differentiated as the plain
    function where the library takes a rule (JAX, MLX)."""
    if be.name == "jax":
        return _jax_rule(kind)
    if be.name == "mlx":
        return _mlx_rule(kind)
    pair = _exp_pair if kind == "exp" else _log_pair
    return functools.partial(pair, be)


@functools.cache
def _jax_rule(kind: str) -> Any:
    jax = sys.modules["jax"]
    jnp = sys.modules["jax.numpy"]
    from ._backend import resolve

    # device None: the constants are uncommitted, usable with arrays on any
    # device (a backend resolved from a default-device array would commit
    # them there, and JAX refuses to combine two committed devices)
    be = dataclasses.replace(resolve("anyloss", ("x", jnp.zeros(()))), device=None)
    pair = _exp_pair if kind == "exp" else _log_pair

    f = jax.custom_jvp(lambda x: pair(be, x))

    def f_jvp(primals: Any, tangents: Any) -> Any:
        (x,), (dx,) = primals, tangents
        hi, lo = f(x)
        dhi = hi * dx if kind == "exp" else dx / x
        return (hi, lo), (dhi, jnp.zeros_like(lo))

    f.defjvp(f_jvp)
    return f


@functools.cache
def _mlx_rule(kind: str) -> Any:
    mx = sys.modules["mlx.core"]
    be = mlx_backend()
    pair = _exp_pair if kind == "exp" else _log_pair
    f = mx.custom_function(mx.compile(lambda x: pair(be, x)))

    def f_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        # (MLX hands a single primal over as itself, not in a tuple)
        x = primals[0] if isinstance(primals, (tuple, list)) else primals
        g = cotangents[0]
        return g * outputs[0] if kind == "exp" else g / x

    f.vjp(f_vjp)
    return f

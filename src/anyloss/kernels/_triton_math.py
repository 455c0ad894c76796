# mypy: ignore-errors
# (Triton device code: its parameters are typed by the launch, not annotations)
"""Float32 arithmetic for the Triton kernels, exact where terms cancel.

GPUs have no fast float64, so the kernels carry the bits float32 loses in a
second float32 (a double word, as :mod:`anyloss._compensated` does on the
array libraries): TwoSum and TwoProduct (by ``fma``) are exact, and
:func:`exp_pair` and :func:`log1p` are range-reduced polynomials within
about an ulp, where the GPU's ``exp``/``log`` (``ex2.approx`` after a
multiply by log2(e)) lose ``|x|`` ulp to the rounding of that multiply.

Only ``tl.math`` functions that Triton's interpreter runs too (``fma``,
``floor``, bit casts): CI checks these kernels on the CPU
(``TRITON_INTERPRET=1``), where libdevice is not available.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "dd_add",
    "exponent",
    "dd_mul",
    "exp_dd",
    "exp_pair",
    "fast_two_sum",
    "log1p",
    "log_pair",
    "pair_sum",
    "pow2",
    "quotient",
    "two_prod",
    "two_sum",
]

# ln 2 in two parts: the first with 15 significant bits, so k * LN2_HI is
# exact for |k| < 2^9 (Cody and Waite)
LN2_HI = tl.constexpr(0.693145751953125)
LN2_LO = tl.constexpr(1.428606765330187e-06)
LN2_LO2 = tl.constexpr(5.497923148104107e-14)  # ln 2 - LN2_HI - LN2_LO (third part)
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly."""
    s = a + b
    bv = s - a
    av = s - bv
    return s, (a - av) + (b - bv)


@triton.jit
def two_prod(a, b):
    """``(p, e)`` with ``p = fl(a b)`` and ``a b = p + e`` exactly."""
    p = a * b
    return p, tl.math.fma(a, b, -p)


@triton.jit
def _pair_combine(a_hi, a_lo, b_hi, b_lo):
    s, e = two_sum(a_hi, b_hi)
    return s, e + (a_lo + b_lo)


@triton.jit
def pair_sum(hi, lo, axis):
    """The sum of the double words ``hi + lo`` along ``axis``, every addition's
    rounding error kept (about as accurate as a float64 sum)."""
    return tl.reduce((hi, lo), axis, _pair_combine)


@triton.jit
def pow2(k):
    """``2^k`` for an integer-valued float ``k`` in ``[-252, 252]``, as two
    normal factors (their product rounds only where it is subnormal)."""
    half = tl.floor(k * 0.5)
    a = ((half.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    b = (((k - half).to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    return a, b


@triton.jit
def exponent(m):
    """``e`` with ``m / 2^e`` in [1, 2) for a finite ``m > 0`` (subnormals
    too), as a float; 0 for 0."""
    tiny = m < 1.1754943508222875e-38
    mn = m * tl.where(tiny, 18446744073709551616.0, 1.0)  # (x 2^64)
    biased = (mn.to(tl.int32, bitcast=True) >> 23) & 0xFF
    e = (biased - 127).to(tl.float32) - tl.where(tiny, 64.0, 0.0)
    return tl.where(m > 0.0, e, 0.0)


@triton.jit
def exp_pair(z, lo):
    """``exp(z + lo)`` for ``z <= 0`` (``lo`` a correction below an ulp of
    ``z``), within about an ulp; 0 for ``z = -inf`` or below -104, NaN for NaN."""
    zc = tl.maximum(z, -104.0)
    k = tl.floor(zc * LOG2E + 0.5)
    r = tl.math.fma(-k, LN2_HI, zc)
    r = tl.math.fma(-k, LN2_LO, r) + lo
    # exp(r), |r| <= 0.35: Taylor to r^8 (the rest below 2^-27 relative)
    p = 1.0 / 40320.0
    p = tl.math.fma(p, r, 1.0 / 5040.0)
    p = tl.math.fma(p, r, 1.0 / 720.0)
    p = tl.math.fma(p, r, 1.0 / 120.0)
    p = tl.math.fma(p, r, 1.0 / 24.0)
    p = tl.math.fma(p, r, 1.0 / 6.0)
    p = tl.math.fma(p, r, 0.5)
    p = tl.math.fma(p, r * r, r)  # r + r^2 (1/2 + r/6 + ...)
    a, b = pow2(k)
    e = ((p + 1.0) * a) * b
    # (a NaN stays NaN: max on a GPU, and in the interpreter, drops it)
    return tl.where(z < -104.0, 0.0, tl.where(z == z, e, z))


@triton.jit
def exp_dd(z, zl):
    """``exp(z + zl)`` for ``z <= 0`` as a normalized double word, within
    about 2^-44 relative (0 below -104, NaN for NaN).

    ``z + zl = k ln 2 + r`` with ``r`` a double word (ln 2 in three parts,
    ``|r| <= 0.35``), ``exp(r) = 1 + r + r^2 P(r)``: ``P``'s terms of ``r^5``
    and beyond in float32 (below 2^-44 of the result), the rest in double
    words; then times ``2^k``, exactly."""
    zc = tl.maximum(z, -104.0)
    k = tl.floor(zc * LOG2E + 0.5)
    p, pe = two_prod(k, LN2_LO)
    r, rl = two_sum(tl.math.fma(-k, LN2_HI, zc), -p)  # (the fma is exact)
    r, rl = fast_two_sum(r, rl + (tl.where(z < -104.0, 0.0, zl) - pe - k * LN2_LO2))
    q = 2.0876755879584152e-09  # 1/12!, ..., 1/7!: float32
    q = tl.math.fma(q, r, 2.5052107943679403e-08)
    q = tl.math.fma(q, r, 2.755731998149713e-07)
    q = tl.math.fma(q, r, 2.7557318844628753e-06)
    q = tl.math.fma(q, r, 2.4801587642286904e-05)
    q = tl.math.fma(q, r, 1.9841270113829523e-04)
    ql = tl.zeros_like(q)
    q, ql = dd_mul(q, ql, r, rl)
    q, ql = dd_add(q, ql, 1.3888889225199819e-03, -3.3631094437103215e-11)  # 1/6!
    q, ql = dd_mul(q, ql, r, rl)
    q, ql = dd_add(q, ql, 8.333333767950535e-03, -4.34617203337595e-10)  # 1/5!
    q, ql = dd_mul(q, ql, r, rl)
    q, ql = dd_add(q, ql, 4.16666679084301e-02, -1.2417634698280722e-09)  # 1/4!
    q, ql = dd_mul(q, ql, r, rl)
    q, ql = dd_add(q, ql, 1.666666716337204e-01, -4.967053879312289e-09)  # 1/3!
    q, ql = dd_mul(q, ql, r, rl)
    q, ql = dd_add(q, ql, 0.5, 0.0)
    r2, r2l = dd_mul(r, rl, r, rl)
    q, ql = dd_mul(q, ql, r2, r2l)
    q, ql = dd_add(r, rl, q, ql)
    h, hl = dd_add(1.0, 0.0, q, ql)
    a, b = pow2(k)
    h, hl = (h * a) * b, (hl * a) * b
    keep = (z >= -104.0) | (z != z)
    return tl.where(keep, tl.where(z == z, h, z), 0.0), tl.where(keep & (z == z), hl, 0.0)


@triton.jit
def quotient(a, b, bl):
    """``a / (b + bl)`` as a double word (``bl`` below an ulp of ``b``): the
    remainder of the rounded quotient is exact by ``fma``."""
    q = a / b
    r = tl.math.fma(-q, b, a)
    return q, (r - q * bl) / b


@triton.jit
def _log_ratio(s, sl):
    """``log((1 + s) / (1 - s)) = 2 atanh(s)`` of ``s + sl``, ``|s| <= 0.1716``:
    ``2 s`` exactly, plus the rest (``2 sl + 2 s^3/3 + ...``), rounded once."""
    s2 = s * s
    q = 2.0 / 13.0
    q = tl.math.fma(q, s2, 2.0 / 11.0)
    q = tl.math.fma(q, s2, 2.0 / 9.0)
    q = tl.math.fma(q, s2, 2.0 / 7.0)
    q = tl.math.fma(q, s2, 2.0 / 5.0)
    q = tl.math.fma(q, s2, 2.0 / 3.0)
    return 2.0 * s, tl.math.fma(q * s2, s, 2.0 * sl)


@triton.jit
def _log(w, wl):
    """``log(w + wl)`` for a finite normal ``w > 0`` as ``(hi, lo)``, unrounded sum."""
    bits = w.to(tl.int32, bitcast=True)
    biased = (bits >> 23) & 0xFF
    e = biased - 127
    f = ((bits & 0x7FFFFF) | 0x3F800000).to(tl.float32, bitcast=True)  # w / 2^e in [1, 2)
    big = f > 1.4142135
    scale = tl.where(big, 0.5, 1.0)
    f = f * scale
    fl = (wl * scale) * ((254 - biased) << 23).to(tl.float32, bitcast=True)  # wl / 2^e
    ef = (e + big.to(tl.int32)).to(tl.float32)
    # (f - 1) / (f + 1): f - 1 exact (Sterbenz), f + 1 as a double word
    d, dl = two_sum(f, 1.0)
    s, sl = quotient(f - 1.0, d, dl - fl)
    sl = sl + fl / d
    lf, lfl = _log_ratio(s, sl)
    hi, lo = two_sum(ef * LN2_HI, lf)  # (ef * LN2_HI exact)
    return hi, lo + tl.math.fma(ef, LN2_LO, lfl)


@triton.jit
def fast_two_sum(a, b):
    """``(s, e)``, ``a + b = s + e`` exactly, for ``|a| >= |b|`` (or ``a = 0``)."""
    s = a + b
    return s, b - (s - a)


@triton.jit
def dd_mul(a, al, b, bl):
    """``(a + al)(b + bl)`` as a normalized double word (about 2^-46 relative)."""
    p, pe = two_prod(a, b)
    return fast_two_sum(p, pe + (a * bl + al * b))


@triton.jit
def dd_add(a, al, b, bl):
    """``(a + al) + (b + bl)`` as a normalized double word."""
    s, e = two_sum(a, b)
    return fast_two_sum(s, e + (al + bl))


@triton.jit
def log_pair(w):
    """``log(w)`` for a finite ``w > 0`` (subnormal too) as a normalized
    double word, within about 2^-44 relative: enough for a difference that
    cancels 20 bits (Gaussian NLL's ``log v + d^2 / v`` near 0).

    ``w = 2^e f``, ``f`` in [0.707, 1.414], and ``log f = 2 atanh(s)`` with
    ``s = (f - 1) / (f + 1)`` (``|s| <= 0.1716``) as ``2 s (1 + t Q(t))``,
    ``t = s^2``: ``Q``'s terms of ``t^4`` and beyond in float32 (their error
    below 2^-44 of the result), the rest and every product in double words.
    ``e ln 2`` with ln 2 in three parts."""
    tiny = w < 1.1754943508222875e-38
    wn = w * tl.where(tiny, 18446744073709551616.0, 1.0)  # (x 2^64)
    bits = wn.to(tl.int32, bitcast=True)
    e = ((bits >> 23) & 0xFF) - 127
    f = ((bits & 0x7FFFFF) | 0x3F800000).to(tl.float32, bitcast=True)
    big = f > 1.4142135
    f = tl.where(big, f * 0.5, f)
    ef = (e + big.to(tl.int32)).to(tl.float32) - tl.where(tiny, 64.0, 0.0)
    d, dl = two_sum(f, 1.0)
    s, sl = quotient(f - 1.0, d, dl)  # (f - 1 exact: Sterbenz)
    s, sl = fast_two_sum(s, sl)
    t, tl_ = dd_mul(s, sl, s, sl)
    q = 0.0476190485060215  # 1/21, ..., 1/11: float32
    q = tl.math.fma(q, t, 0.05263157933950424)
    q = tl.math.fma(q, t, 0.05882352963089943)
    q = tl.math.fma(q, t, 0.06666667014360428)
    q = tl.math.fma(q, t, 0.07692307978868484)
    q = tl.math.fma(q, t, 0.09090909361839294)
    ql = tl.zeros_like(q)
    q, ql = dd_mul(q, ql, t, tl_)
    q, ql = dd_add(q, ql, 0.1111111119389534, -8.278422947149977e-10)  # 1/9
    q, ql = dd_mul(q, ql, t, tl_)
    q, ql = dd_add(q, ql, 0.1428571492433548, -6.38621200366174e-09)  # 1/7
    q, ql = dd_mul(q, ql, t, tl_)
    q, ql = dd_add(q, ql, 0.20000000298023224, -2.9802322831784522e-09)  # 1/5
    q, ql = dd_mul(q, ql, t, tl_)
    q, ql = dd_add(q, ql, 0.3333333432674408, -9.934107758624577e-09)  # 1/3
    q, ql = dd_mul(q, ql, t, tl_)  # t Q
    q, ql = dd_mul(q, ql, s, sl)  # s t Q
    lf, lfl = dd_add(s, sl, q, ql)
    h, hl = two_sum(ef * LN2_HI, 2.0 * lf)  # (ef LN2_HI exact)
    m, ml = two_prod(ef, LN2_LO)
    h, u = two_sum(h, m)  # (m is above the low part's ulp: it joins the high part)
    return fast_two_sum(h, (hl + u) + (2.0 * lfl + (ml + ef * LN2_LO2)))


@triton.jit
def log1p(hi, lo):
    """``log(1 + hi + lo)`` for ``hi >= 0`` and ``|lo|`` below an ulp of
    ``hi``, within about an ulp (NaN for NaN, inf for inf)."""
    # small: log1p(u) = 2 atanh(u / (2 + u)), |s| <= 0.1716 for u <= sqrt(2) - 1
    d, dl = two_sum(hi, 2.0)
    s, sl = quotient(hi, d, dl)
    sh, shl = _log_ratio(s, sl)
    small = sh + (shl + lo / d * 2.0)
    finite = hi <= 3.4028234663852886e38  # (two_sum(inf, 1) would form inf - inf)
    w, wl = two_sum(tl.where(finite, hi, 1.0), 1.0)
    lh, ll = _log(w, wl + lo)
    large = tl.where(finite, lh + ll, hi)
    return tl.where(hi <= 0.41421354, small, large)

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

__all__ = ["exp_pair", "log1p", "pair_sum", "two_prod", "two_sum"]

# ln 2 in two parts: the first with 15 significant bits, so k * LN2_HI is
# exact for |k| < 2^9 (Cody and Waite)
LN2_HI = tl.constexpr(0.693145751953125)
LN2_LO = tl.constexpr(1.428606765330187e-06)
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
def _pow2(k):
    """``2^k`` for integer-valued float ``k`` in ``[-252, 0]``, as a product of
    two normal floats (their product rounds only where it is subnormal)."""
    half = tl.floor(k * 0.5)
    a = ((half.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    b = (((k - half).to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    return a, b


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
    a, b = _pow2(k)
    e = ((p + 1.0) * a) * b
    # (a NaN stays NaN: max on a GPU, and in the interpreter, drops it)
    return tl.where(z < -104.0, 0.0, tl.where(z == z, e, z))


@triton.jit
def _quotient(a, b, bl):
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
    """``log(w + wl)`` for a finite ``w >= 1`` as ``(hi, lo)``, unrounded sum."""
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
    s, sl = _quotient(f - 1.0, d, dl - fl)
    sl = sl + fl / d
    lf, lfl = _log_ratio(s, sl)
    hi, lo = two_sum(ef * LN2_HI, lf)  # (ef * LN2_HI exact)
    return hi, lo + tl.math.fma(ef, LN2_LO, lfl)


@triton.jit
def log1p(hi, lo):
    """``log(1 + hi + lo)`` for ``hi >= 0`` and ``|lo|`` below an ulp of
    ``hi``, within about an ulp (NaN for NaN, inf for inf)."""
    # small: log1p(u) = 2 atanh(u / (2 + u)), |s| <= 0.1716 for u <= sqrt(2) - 1
    d, dl = two_sum(hi, 2.0)
    s, sl = _quotient(hi, d, dl)
    sh, shl = _log_ratio(s, sl)
    small = sh + (shl + lo / d * 2.0)
    finite = hi <= 3.4028234663852886e38  # (two_sum(inf, 1) would form inf - inf)
    w, wl = two_sum(tl.where(finite, hi, 1.0), 1.0)
    lh, ll = _log(w, wl + lo)
    large = tl.where(finite, lh + ll, hi)
    return tl.where(hi <= 0.41421354, small, large)

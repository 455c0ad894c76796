# mypy: ignore-errors
"""The numba kernels behind :func:`anyloss.kernels.run` (imported lazily).

Everything here is in one module on purpose: numba's on-disk cache is
invalidated by the timestamp of the file a function lives in, so kernels and
the math helpers they inline must share a file.

Numerics
--------
There is no SVML in the llvmlite wheels, so ``math.exp``/``math.log`` inside a
loop do not vectorize. The helpers below are written so that LLVM vectorizes
them: Cody-Waite range reduction, a polynomial, and ``2**k`` assembled by
reinterpreting integer bits as a float.

- ``_exp32``: float32 in and out, about 1 ulp; used by cross entropy on
  float32 logits (the hot loop of the library).
- ``_exp64``, ``_log64``, ``_log1p64``: float64, about 1-2 ulp of float64;
  used by every other kernel for both input dtypes (float32 inputs are
  computed in float64 and rounded once at the end).

The helpers are compiled without ``reassoc`` (it would let LLVM undo the
error-free tricks); the kernels allow ``reassoc`` so their sums vectorize.
Sums are taken per block in the kernel and the block sums are added in
float64 by NumPy in a fixed order, so results do not depend on the number of
threads.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# No nnan/ninf: -inf logits and log-probabilities are legitimate inputs. No
# arcp: x / y must stay correctly rounded. reassoc lets sums vectorize, but it
# also lets LLVM rewrite t*a + (1-t)*b as b + t*(a-b), which cancels; so only
# the kernels whose per-element formulas have nothing to cancel (cross
# entropy, nll, cosine, triplet) and the block sums get it. In exp, the
# Cody-Waite reduction goes through explicit fma calls, which LLVM does not
# reassociate.
_KERNEL_FLAGS = {"nsz", "contract", "reassoc"}
_EXACT_FLAGS = {"nsz", "contract"}


def _kernel(func):
    return njit(nogil=True, cache=True, fastmath=_KERNEL_FLAGS, error_model="numpy")(func)


def _exact_kernel(func):
    return njit(nogil=True, cache=True, fastmath=_EXACT_FLAGS, error_model="numpy")(func)


def _dd_kernel(func):
    # double-double arithmetic: not even contract, which could fuse the
    # product of a TwoSum's operand into an fma and break its error term
    return njit(nogil=True, cache=True, fastmath={"nsz"}, error_model="numpy")(func)


def _helper(func):
    # Inlined in numba's IR, so every helper vectorizes inside the kernel loop
    # however deep the helpers nest (LLVM's inliner gives up on deep nests).
    return njit(inline="always", fastmath=_KERNEL_FLAGS, error_model="numpy")(func)


BLOCK = 4096  # elements per partial sum of the elementwise kernels

# --------------------------------------------------------------------------
# bit casts


@intrinsic
def _i32_as_f32(typingctx, i):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _i64_as_f64(typingctx, i):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _f64_as_i64(typingctx, x):
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma), for float32 or float64 operands."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None
    sig = a(a, a, a)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


# --------------------------------------------------------------------------
# float32 exp

_F32_LOG2E = np.float32(1.4426950408889634)
_F32_LN2_HI = np.float32(0.693359375)  # 9 significant bits: k * hi is exact
_F32_LN2_LO = np.float32(-2.12194440e-4)
_F32_LO = np.float32(-104.0)  # exp below this rounds to 0 in float32
_F32_HI = np.float32(89.0)  # exp above this is inf in float32
_F32_HALF = np.float32(0.5)
_F32_ONE = np.float32(1.0)
_F32_C2 = np.float32(1.0 / 2.0)
_F32_C3 = np.float32(1.0 / 6.0)
_F32_C4 = np.float32(1.0 / 24.0)
_F32_C5 = np.float32(1.0 / 120.0)
_F32_C6 = np.float32(1.0 / 720.0)
_F32_C7 = np.float32(1.0 / 5040.0)


@_helper
def _exp32(x):
    """exp of a float32 (-inf -> 0, large -> inf), about 1 ulp."""
    x = min(max(np.float32(x), _F32_LO), _F32_HI)
    k = np.float32(np.floor(x * _F32_LOG2E + _F32_HALF))
    r = _fma(-k, _F32_LN2_LO, _fma(-k, _F32_LN2_HI, x))
    p = _F32_C7
    p = p * r + _F32_C6
    p = p * r + _F32_C5
    p = p * r + _F32_C4
    p = p * r + _F32_C3
    p = p * r + _F32_C2
    p = p * r + _F32_ONE
    p = p * r + _F32_ONE
    ki = np.int32(k)
    k1 = ki >> 1  # 2**k as two factors: both normal even where 2**k is not
    k2 = ki - k1
    return p * _i32_as_f32((k1 + 127) << 23) * _i32_as_f32((k2 + 127) << 23)


# --------------------------------------------------------------------------
# float64 exp / expm1 / log / log1p
#
# Two precisions: "accurate" (about 1-2 ulp of float64) for float64 inputs
# and for the kernels whose terms cancel (kl_div, gaussian_nll), and "draft"
# (relative error below 1e-9, i.e. under 0.02 ulp of float32) for float32
# inputs, where the float64 result is rounded to float32 once at the end.

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_LN2_HI = 6.93147180369123816490e-01  # upper bits: k * hi is exact for |k| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_SQRT_HALF = 0.70710678118654752440
_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2**52
_ROUND_MAGIC_BITS = 0x4338000000000000
_EXP_MAGIC = 4503599627370496.0  # 2**52
_EXP_MAGIC_BITS = 0x4330000000000000
_F64_TINY = 2.2250738585072014e-308  # smallest normal float64
_TWO54 = 18014398509481984.0  # 2**54: a subnormal times it is normal
_F64_HALF_MAX = 8.988465674311579e307  # max / 2: the difference of two below it is finite
# double-double constants of gaussian_nll (as in anyloss._regression)
_LN2_LO2 = 1.1612227229362532e-26
_TWO_THIRDS_HI = 0.6666666666666666
_TWO_THIRDS_LO = 3.700743415417188e-17
_TWO_FIFTHS_HI = 0.4
_TWO_FIFTHS_LO = -2.2204460492503132e-17
_HALF_LOG_2PI_LO = -3.8782941580672414e-17
_ATANH_TAIL7 = tuple(1.0 / (2 * i + 1) for i in range(11, 2, -1))  # 1/23 ... 1/7


def _taylor(n):
    """1/n!, ..., 1/2!, 1/1! (Horner order, highest first)."""
    return tuple(1.0 / math.factorial(i) for i in range(n, 0, -1))


def _atanh_series(n):
    """1/(2n+1), ..., 1/5, 1/3 (Horner order): atanh(s) = s (1 + s^2 P(s^2))."""
    return tuple(1.0 / (2 * i + 1) for i in range(n, 0, -1))


_EXPM1_A = _taylor(13)  # |r| <= 0.347: 0.347**14 / 14! = 4e-18
_EXPM1_D = _taylor(8)  # 0.347**9 / 9! = 2e-10
_EXPM1_M = _taylor(10)  # 0.347**11 / 11! = 2.3e-13
_EXPM1_SMALL_A = _taylor(18)  # |e| <= 1: 1 / 19! = 8e-18
_EXPM1_SMALL_D = _taylor(12)  # 1 / 13! = 1.6e-10
_ATANH_LOG_A = _atanh_series(11)  # |s| <= 0.1716: s**24 / 25 = 1e-20
_ATANH_LOG_D = _atanh_series(5)  # s**12 / 13 = 5e-11
_ATANH_LOG_M = _atanh_series(7)  # s**16 / 17 = 3e-14
_ATANH_THIRD_A = _atanh_series(17)  # |s| <= 1/3: (1/9)**18 / 37 = 2e-19
_ATANH_THIRD_D = _atanh_series(8)  # (1/9)**9 / 19 = 1.4e-10


def _horner(coef, x):
    """sum(coef[i] * x**(n-1-i)): Horner's scheme, unrolled at compile time."""
    p = 0.0
    for c in coef:
        p = p * x + c
    return p


@overload(_horner, inline="always", jit_options={"fastmath": _KERNEL_FLAGS})
def _horner_unrolled(coef, x):
    # A loop over the coefficients would keep the kernel's loop from being
    # the innermost one, and then LLVM does not vectorize it.
    n = coef.count
    lines = ["def impl(coef, x):", "    p = coef[0]"]
    lines += [f"    p = p * x + coef[{i}]" for i in range(1, n)]
    lines += ["    return p"]
    scope: dict = {}
    exec("\n".join(lines), scope)
    return scope["impl"]


@_helper
def _expm1_core(x, coef):
    """(2**k, expm1(r)) with x = k log 2 + r, |r| <= log(2)/2."""
    x = min(max(x, -746.0), 710.0)
    k = np.floor(x * _LOG2E + 0.5)
    r = _fma(-k, _LN2_LO, _fma(-k, _LN2_HI, x))
    em1 = r * _horner(coef, r)
    # float -> int64 without cvttpd2qq (AVX-512 only): through the bits of
    # k + 1.5 * 2**52, whose low bits hold k
    ki = _f64_as_i64(k + _ROUND_MAGIC) - _ROUND_MAGIC_BITS
    k1 = ki >> 1  # 2**k as two factors: both normal even where 2**k is not
    k2 = ki - k1
    return _i64_as_f64((k1 + 1023) << 52), _i64_as_f64((k2 + 1023) << 52), em1


@_helper
def _exp_a(x):
    """exp(x) in float64 (-inf -> 0, large -> inf), about 1 ulp."""
    s1, s2, em1 = _expm1_core(x, _EXPM1_A)
    return (em1 + 1.0) * s1 * s2


@_helper
def _exp_d(x):
    """exp(x) in float64 with a relative error below 1e-9."""
    s1, s2, em1 = _expm1_core(x, _EXPM1_D)
    return (em1 + 1.0) * s1 * s2


@_helper
def _exp_m(x):
    """exp(x) in float64 with a relative error below 1e-12 (kl_div on float32)."""
    s1, s2, em1 = _expm1_core(x, _EXPM1_M)
    return (em1 + 1.0) * s1 * s2


@_helper
def _frexp_sqrt2(w):
    """(e, m) with w = m * 2**e and m in [sqrt(1/2), sqrt(2)), for normal w > 0.

    e is made a float through the bits of 2**52 + e (packed int64 -> float64
    conversion is AVX-512 only and would not vectorize).
    """
    bits = _f64_as_i64(w)
    e = _i64_as_f64(_EXP_MAGIC_BITS | ((bits >> 52) & 0x7FF)) - (_EXP_MAGIC + 1022.0)
    m = _i64_as_f64((bits & 0x000FFFFFFFFFFFFF) | (1022 << 52))  # in [0.5, 1)
    low = m < _SQRT_HALF
    m = m * 2.0 if low else m
    e = e - 1.0 if low else e
    return e, m


@_helper
def _log_finish(x, e, s, coef):
    """log(x) = e log 2 + 2 atanh(s) with s = (m - 1)/(m + 1) computed by the
    caller (several quotients can then share one division)."""
    s2 = s * s
    r = e * _LN2_HI + (e * _LN2_LO + (2.0 * s + (2.0 * s) * (s2 * _horner(coef, s2))))
    r = -np.inf if x == 0.0 else r
    r = x if x == np.inf else r
    return np.nan if not x >= 0.0 else r


@_helper
def _log_core(x, coef):
    """log(x) for x >= 0 (0 -> -inf, inf -> inf, < 0 or nan -> nan)."""
    e, m = _frexp_sqrt2(x)
    return _log_finish(x, e, (m - 1.0) / (m + 1.0), coef)


@_helper
def _log_a(x):
    return _log_core(x, _ATANH_LOG_A)


@_helper
def _log_d(x):
    return _log_core(x, _ATANH_LOG_D)


@_helper
def _log1p_unit(u, coef):
    """log1p(u) for u in [0, 1] as 2 atanh(u / (2 + u))."""
    s = u / (2.0 + u)
    s2 = s * s
    return 2.0 * s + (2.0 * s) * (s2 * _horner(coef, s2))


@_helper
def _log1m_core(p, coef):
    """log(1 - p) for p <= 1 (1 -> -inf), exact for tiny p as for p near 1."""
    small = abs(p) < 0.25
    w = 1.0 - p  # exact for p >= 0.5 (and float32 p); a few ulp below
    e, m = _frexp_sqrt2(w)
    num = -p if small else m - 1.0
    den = 2.0 - p if small else m + 1.0
    e = 0.0 if small else e
    s = num / den
    s2 = s * s
    r = e * _LN2_HI + (e * _LN2_LO + (2.0 * s + (2.0 * s) * (s2 * _horner(coef, s2))))
    r = -np.inf if w == 0.0 else r
    return np.nan if not p <= 1.0 else r


@_helper
def _softplus_a(y):
    """log(1 + exp(y)) = max(y, 0) + log1p(exp(-|y|)), float64, about 1 ulp."""
    return max(y, 0.0) + _log1p_unit(_exp_a(-abs(y)), _ATANH_THIRD_A)


@_helper
def _softplus_d(y):
    return max(y, 0.0) + _log1p_unit(_exp_d(-abs(y)), _ATANH_THIRD_D)


@_helper
def _logcosh_core(e, small_coef, exp_coef, third_coef):
    """log(cosh(e)) for e = |error| >= 0.

    Below 1: 2 atanh(tanh(e/2)^2) with tanh(e/2) = expm1(e) / (expm1(e) + 2)
    (no cancellation, since log cosh e = log1p(2 sinh(e/2)^2)); from 1 on:
    e - log 2 + log1p(exp(-2e)).
    """
    es = min(e, 1.0)
    em1 = es * _horner(small_coef, es)
    t = em1 / (em1 + 2.0)
    s = t * t
    s2 = s * s
    near = 2.0 * s + (2.0 * s) * (s2 * _horner(third_coef, s2))
    el = max(e, 1.0)
    s1, s2_, em1l = _expm1_core(-2.0 * el, exp_coef)
    far = (el - _LN2) + _log1p_unit((em1l + 1.0) * s1 * s2_, third_coef)
    return near if e < 1.0 else far


@_helper
def _logcosh_a(e):
    return _logcosh_core(e, _EXPM1_SMALL_A, _EXPM1_A, _ATANH_THIRD_A)


@_helper
def _logcosh_d(e):
    return _logcosh_core(e, _EXPM1_SMALL_D, _EXPM1_D, _ATANH_THIRD_D)


# --------------------------------------------------------------------------
# compile-time dtype switch


def _f32(a):
    """True when ``a`` is a float32 array (a compile-time constant)."""
    return a.dtype == np.float32


@overload(_f32, inline="always")
def _f32_const(a):
    flag = a.dtype == types.float32
    return lambda a: flag


def _zero(a):
    return a.dtype.type(0)


@overload(_zero, inline="always")
def _zero_typed(a):
    if a.dtype == types.float32:
        return lambda a: np.float32(0.0)
    return lambda a: 0.0


def _one(a):
    return a.dtype.type(1)


@overload(_one, inline="always")
def _one_typed(a):
    if a.dtype == types.float32:
        return lambda a: np.float32(1.0)
    return lambda a: 1.0


def _exp_t(z):
    """exp in the precision of z: ``_exp32`` for float32, ``_exp_a`` for float64."""
    return math.exp(z)


@overload(_exp_t, inline="always")
def _exp_typed(z):
    if z == types.float32:
        return lambda z: _exp32(z)
    return lambda z: _exp_a(z)


def _exp_shift(v, m, z, zb):
    """exp(v - m) where ``z`` is ``v - m`` rounded to the dtype of ``v``
    (``zb`` from ``_runtime_zero``)."""
    return math.exp(v - m)


# Error-free transformations inside the kernels. numba puts a kernel's
# fast-math flags (reassoc) on every float operation inlined into it, these
# too, and with reassoc LLVM folds TwoSum's error to 0 (and llvm.fma(x, +-1, y)
# back into an fsub). So every intermediate goes through ``_opaque``: its bits
# xor a zero that LLVM cannot prove is zero, which it must keep, and which
# vectorizes (an llvm.arithmetic.fence would too, but blocks vectorization).


@_helper
def _opaque(x, zero_bits):
    """x, hidden from LLVM's reassociation; ``zero_bits`` is a run-time 0."""
    return _i64_as_f64(_f64_as_i64(x) ^ zero_bits)


def _opaque_t(x, zero_bits):
    """``_opaque`` for float32 or float64 ``x``."""
    return x


@overload(_opaque_t, inline="always")
def _opaque_typed(x, zero_bits):
    if x == types.float32:
        return lambda x, zero_bits: _i32_as_f32(_f32_as_i32(x) ^ np.int32(zero_bits))
    return lambda x, zero_bits: _opaque(x, zero_bits)


@_helper
def _runtime_zero(n):
    """0 for any array length n (< 2**62), unknown to the compiler."""
    return np.int64(n) >> 62


@_helper
def _sub_error(v, m, z, zb):
    """(v - m) - z exactly, where z is v - m rounded (Knuth's TwoSum), in
    float64; ``zb`` from ``_runtime_zero``. Hidden: z (else z - v folds to
    -m), bb (else z - bb folds to v) and t (else v - t is regrouped)."""
    z = _opaque(z, zb)
    bb = _opaque(z - v, zb)  # the part of z that came from -m
    t = _opaque(z - bb, zb)  # the part that came from v
    return (v - t) - (m + bb)


@_helper
def _two_sum_error(a, b, s, zb):
    """(a + b) - s exactly, where s is a + b rounded (TwoSum), in float64."""
    s = _opaque(s, zb)
    bb = _opaque(s - a, zb)
    t = _opaque(s - bb, zb)
    return (a - t) + (b - bb)


@overload(_exp_shift, inline="always")
def _exp_shift_typed(v, m, z, zb):
    if z == types.float32:
        # float32 rounds v - m by up to half an ulp of |v - m|, which exp turns
        # into a relative error of several ulp in the tiny terms a confident
        # row's loss is made of: the rounding error d corrects exp(z) to
        # first order, exp(z + d) = exp(z)(1 + d).
        # The error is exact in float32 too (Fast2Sum, the larger operand
        # first): twice as fast as forming it in float64, which the
        # float32 cross entropy kernel spent half its time on.
        def impl(v, m, z, zb):
            big = abs(v) >= abs(m)
            a = v if big else -m
            b = -m if big else v
            d = b - _opaque_t(_opaque_t(z, zb) - a, zb)
            # v = -inf: inf - inf; x - max overflowed to -inf: inf (exp(z) is 0)
            d = d if abs(d) < np.float32(np.inf) else np.float32(0.0)
            e = _exp32(z)
            return e + e * d

        return impl

    # float64: the same first-order correction, the rounding error of v - m
    # from an error-free TwoSum (0 where v - m is exact; NaN or inf for
    # v = -inf or an overflowed z, where exp(z) is 0 anyway).
    def impl64(v, m, z, zb):
        d = _sub_error(v, m, z, zb)
        d = d if abs(d) < np.inf else 0.0
        e = _exp_a(z)
        return e + e * d

    return impl64


# --------------------------------------------------------------------------
# row maximum (exact): integer max over order-preserving bit patterns, which
# vectorizes where a float max reduction does not.


@intrinsic
def _f32_as_i32(typingctx, x):
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@_helper
def _rowmax32(row):
    m = np.int32(-2147483648)
    for c in range(row.size):
        b = _f32_as_i32(np.float32(row[c]))
        k = b ^ ((b >> 31) & np.int32(0x7FFFFFFF))
        m = max(m, k)
    return _i32_as_f32(m ^ ((m >> 31) & np.int32(0x7FFFFFFF)))


@_helper
def _rowmax64(row):
    m = np.int64(-9223372036854775807 - 1)
    for c in range(row.size):
        b = _f64_as_i64(np.float64(row[c]))
        k = b ^ ((b >> 63) & np.int64(0x7FFFFFFFFFFFFFFF))
        m = max(m, k)
    return _i64_as_f64(m ^ ((m >> 63) & np.int64(0x7FFFFFFFFFFFFFFF)))


def _rowmax_t(row):
    return row.max()


@overload(_rowmax_t, inline="always")
def _rowmax_typed(row):
    if row.dtype == types.float32:
        return lambda row: _rowmax32(row)
    return lambda row: _rowmax64(row)


# --------------------------------------------------------------------------
# cross entropy and nll: one row of classes at a time

# exps summed in the input dtype per block, blocks in float64. Small enough
# that each vector lane of a float32 block sum adds only a few terms: with 256,
# an AVX2 build (8 lanes) was 5 ulp off on rows of equal tiny terms where an
# AVX-512 build (16 lanes) was 1; with 64 both are 1 (and it costs ~5%).
CLASS_BLOCK = 64


@_exact_kernel
def _ce_finish(rest, ties, score, smoothed):
    """The loss of one row: ``rest`` and ``ties`` as in the kernels, ``score``
    (1 - smoothing) (target - max), ``smoothed`` smoothing * mean(x - max)
    (its own function: without reassoc, ``rest + (ties - 1)`` must not become
    ``(rest + ties) - 1``). A NaN logit makes ``smoothed`` NaN."""
    return math.log1p(rest + (ties - 1.0)) - score - smoothed


@_helper
def _ce_unscale(zsum, score, n, smoothing, scale, zb):
    """(``score``, ``smoothed``) for ``_ce_finish`` from the sums of x - max
    and of the target's share taken at ``scale`` (a power of two at most
    1 / (2 n)): neither x - max nor a row's sum of them overflows, nor does a
    term below whenever the loss is finite (logits of both signs near the
    largest float; their mean of x - max may overflow). Each step is hidden
    from LLVM, which would otherwise regroup them into the overflowing
    forms, e.g. (1 - s) * (score / scale)."""
    if smoothing > 0.0:
        score = _opaque((1.0 - smoothing) * _opaque(score, zb), zb)
        smoothed = _opaque(smoothing * _opaque(zsum, zb), zb) / _opaque(n * scale, zb)
    else:  # 0, or NaN for a NaN logit (zsum is -inf for a -inf one)
        smoothed = 0.0 if zsum == zsum else np.nan
    return score / scale, smoothed


def _cast_like(a, v):
    """The float64 ``v`` in the dtype of the array ``a``."""
    return a.dtype.type(v)


@overload(_cast_like, inline="always")
def _cast_like_typed(a, v):
    if a.dtype == types.float32:
        return lambda a, v: np.float32(v)
    return lambda a, v: np.float64(v)


@_helper
def _sum_scale(n):
    """2**-k with 2**(k-1) >= n: n values each below 2 * max / (2 n) in
    magnitude cannot overflow their sum (exact to apply: a power of two)."""
    scale = 0.5
    size = 1
    while size < n:
        size *= 2
        scale *= 0.5
    return scale


_F32_LOWEST = np.float32(-3.4028234663852886e38)


@_helper
def _max32(row, b0, b1):
    """The largest of row[b0:b1] (float32; NaN where the max pattern is a
    NaN's), as ``_rowmax32``."""
    m = np.int32(-2147483648)
    for c in range(b0, b1):
        b = _f32_as_i32(row[c])
        m = max(m, b ^ ((b >> 31) & np.int32(0x7FFFFFFF)))
    return _i32_as_f32(m ^ ((m >> 31) & np.int32(0x7FFFFFFF)))


@_helper
def _blockmax32(row, b0):
    """``_max32`` of the CLASS_BLOCK entries from b0, in a loop of constant
    trip count (LLVM unrolls and vectorizes it whole; a loop of variable
    count, even of the same length, made the kernel twice as slow)."""
    m = np.int32(-2147483648)
    for c in range(CLASS_BLOCK):
        b = _f32_as_i32(row[b0 + c])
        m = max(m, b ^ ((b >> 31) & np.int32(0x7FFFFFFF)))
    return _i32_as_f32(m ^ ((m >> 31) & np.int32(0x7FFFFFFF)))


@_helper
def _ce_below32(row, c, m, zb):
    """One entry's terms of ``_ce_row32``: (exp(x - m) if x is below m (NaN
    if x is NaN or above m: a NaN max seen first), 1 if x equals m)."""
    v = row[c]
    z = v - m
    e = _exp_shift(v, m, z, zb)
    zero = np.float32(0.0)
    below = e if z < zero else (zero if z == zero else np.float32(np.nan))
    return below, np.float32(1.0) if z == zero else zero


@_helper
def _ce_regrow(m, bm, rest, ties):
    """``_ce_row32``'s rest over the entries taken against ``m``, moved to
    the larger max ``bm`` (the old maxima are below the new one)."""
    f = _exp_a(np.float64(m) - np.float64(bm))  # the difference exact
    return rest * f + ties * f


@njit(nogil=True, fastmath=_KERNEL_FLAGS, error_model="numpy")
def _ce_tail32(row, b0, m, zb):
    """The sums of ``_ce_row32``'s last, shorter block, from b0. A function
    of its own: numba's inliner mishandles a second inlined copy of
    ``_exp_shift`` in one kernel (an IR warning, which the tests make an
    error)."""
    s = np.float32(0.0)
    t = np.float32(0.0)
    for c in range(b0, row.size):
        below, tie = _ce_below32(row, c, m, zb)
        s += below
        t += tie
    return s, t


@_helper
def _ce_zsum32(row, ms, scale, zb):
    """The sum of (x - max) * scale over a float32 row, ``ms`` = max * scale:
    float32 sums of CLASS_BLOCK terms, summed in float64."""
    n = row.size
    full = n - n % CLASS_BLOCK
    zsum = 0.0
    # hidden, so that LLVM does not factor the sums into the overflowing
    # scale * (sum of x) - n * ms
    for b0 in range(0, full, CLASS_BLOCK):
        zs = np.float32(0.0)
        for c in range(CLASS_BLOCK):  # (a constant trip count: see _blockmax32)
            zs += _opaque_t(row[b0 + c] * scale - ms, zb)
        zsum += zs
    zs = np.float32(0.0)
    for c in range(full, n):
        zs += _opaque_t(row[c] * scale - ms, zb)
    return zsum + zs


@_helper
def _ce_row32(row, smoothing, scale64, zb):
    """(max, rest, ties, zsum) of a float32 row as ``_ce_index_row`` defines
    them, in one read of the row from memory: an online max over blocks of
    CLASS_BLOCK entries (each block's max first, then its terms against the
    running max, both from the L1 cache), ``rest`` moved where the max
    grows. A block's float32 sums (a few terms per vector lane) go to
    float64, as in the float64 kernel. ``zsum``: only with smoothing, in a
    second pass over the row (from the cache); else 0, or NaN for a row
    with a NaN or +inf logit. On 4096x32000 logits, one core: 120 ms, where
    the two-pass kernel (a max pass from memory, an exp pass from the cache,
    blocks of variable trip count) took 215."""
    n = row.size
    m = _F32_LOWEST  # not -inf: -inf - -inf would be NaN for -inf logits
    rest = 0.0
    ties = 0.0
    full = n - n % CLASS_BLOCK
    for b0 in range(0, full, CLASS_BLOCK):
        bm = _blockmax32(row, b0)
        if bm > m:
            rest = _ce_regrow(m, bm, rest, ties)
            ties = 0.0
            m = bm
        s = np.float32(0.0)
        t = np.float32(0.0)
        for c in range(CLASS_BLOCK):
            below, tie = _ce_below32(row, b0 + c, m, zb)
            s += below
            t += tie
        rest += s
        ties += t
    if full < n:
        bm = _max32(row, full, n)
        if bm > m:
            rest = _ce_regrow(m, bm, rest, ties)
            ties = 0.0
            m = bm
        s, t = _ce_tail32(row, full, m, zb)
        rest += s
        ties += t
    if ties == 0.0:  # every logit -inf (or NaN): as the float64 kernel, NaN
        return np.float32(-np.inf), rest, ties, np.nan
    if smoothing > 0.0:
        ms = np.float32(_opaque(np.float64(m) * scale64, zb))
        zsum = _ce_zsum32(row, ms, np.float32(scale64), zb)
    else:
        zsum = 0.0 if rest == rest else np.nan
    return m, rest, ties, zsum


@_helper
def _ce_index_row32(row, i, smoothing, scale64, zb):
    """``_ce_index_row`` of a float32 row, in one read of it (``_ce_row32``)."""
    n = row.size
    m, rest, ties, zsum = _ce_row32(row, smoothing, scale64, zb)
    ms = np.float32(_opaque(np.float64(m) * scale64, zb))
    score = np.float64(row[i] * np.float32(scale64) - ms) if 0 <= i < n else np.nan
    score, smoothed = _ce_unscale(zsum, score, n, smoothing, scale64, zb)
    return _ce_finish(rest, ties, score, smoothed), m, rest, ties, zsum


def _ce_index_row(row, i, smoothing, scale64, zb):
    """One row of ``ce_index`` (shared with ``ce_index_grad``): ``(loss, max,
    rest, ties, zsum)`` (see ``_ce_index_row64``)."""
    raise NotImplementedError


@overload(_ce_index_row, inline="always")
def _ce_index_row_typed(row, i, smoothing, scale64, zb):
    impl = _ce_index_row32 if row.dtype == types.float32 else _ce_index_row64
    return lambda row, i, smoothing, scale64, zb: impl(row, i, smoothing, scale64, zb)


@_helper
def _ce_index_row64(row, i, smoothing, scale64, zb):
    """One float64 row of ``ce_index`` (shared with ``ce_index_grad``):
    ``(loss, max, rest, ties, zsum)``, ``rest`` the sum of exp(x - max) over
    the entries below the max, ``ties`` the number of maxima, ``zsum`` the
    scaled sum of x - max (NaN for a NaN or +inf logit or a row of -inf).
    Float32 rows take ``_ce_index_row32``."""
    n = row.size
    zero = _zero(row)
    one = _one(row)
    scale = _cast_like(row, scale64)
    m = _rowmax_t(row)
    # m * scale hidden: LLVM would factor x * scale - m * scale into the
    # (x - m) * scale that overflows
    ms = _cast_like(row, _opaque(np.float64(m) * scale64, zb))
    rest = 0.0
    rest_err = 0.0  # the rounding errors of the block sums' float64 sum
    ties = 0.0
    zsum = 0.0
    for b0 in range(0, n, CLASS_BLOCK):
        b1 = min(b0 + CLASS_BLOCK, n)
        s = zero
        t = zero
        zs = zero
        for c in range(b0, b1):
            z = row[c] - m
            e = _exp_shift(row[c], m, z, zb)
            s += e if z < zero else zero
            t += one if z == zero else zero
            # (x - max) * scale, hidden so that LLVM does not factor the
            # sum into scale * (sum of x) - n * ms, which overflows
            zc = _opaque_t(row[c] * scale - ms, zb)
            zs += zc
        total = rest + s
        err = _two_sum_error(rest, s, total, zb)
        rest_err += err if abs(err) < np.inf else 0.0
        rest = total
        ties += t
        zsum += zs
    rest += rest_err
    score = np.float64(row[i] * scale - ms) if 0 <= i < n else np.nan
    score, smoothed = _ce_unscale(zsum, score, n, smoothing, scale64, zb)
    return _ce_finish(rest, ties, score, smoothed), m, rest, ties, zsum


@_kernel
def ce_index(x, idx, smoothing, out, r0, r1):
    """Cross entropy of rows r0..r1 of x (rows x classes) with class indices.

    Per row: (max - target) + log1p(sum of exp(x - max) over the entries
    below the max + the number of other maxima), the exponentials summed in
    the input dtype per block of CLASS_BLOCK and the blocks in float64 with
    their rounding errors (so float64 rows do not lose ulps to long sums).
    """
    n = x.shape[1]
    zb = _runtime_zero(n)
    scale64 = _sum_scale(n)
    for r in range(r0, r1):
        out[r] = _ce_index_row(x[r], idx[r], smoothing, scale64, zb)[0]


@_helper
def _ce_probs_row(row, prow, smoothing, scale64, zb):
    """One row of ``ce_probs`` (shared with ``ce_probs_grad``): ``(loss, max,
    rest, ties)`` as in ``_ce_index_row``."""
    n = row.size
    f32 = _f32(row)
    zero = _zero(row)
    one = _one(row)
    scale = _cast_like(row, scale64)
    m = _rowmax_t(row)
    # m * scale hidden: LLVM would factor x * scale - m * scale into the
    # (x - m) * scale that overflows
    ms = _cast_like(row, _opaque(np.float64(m) * scale64, zb))
    rest = 0.0
    rest_err = 0.0  # the rounding errors of the block sums' float64 sum
    ties = 0.0
    zsum = 0.0
    psum = 0.0
    for b0 in range(0, n, CLASS_BLOCK):
        b1 = min(b0 + CLASS_BLOCK, n)
        s = zero
        t = zero
        zs = zero
        ps = zero
        for c in range(b0, b1):
            z = row[c] - m
            e = _exp_shift(row[c], m, z, zb)
            s += e if z < zero else zero
            t += one if z == zero else zero
            # (x - max) * scale, hidden so that LLVM does not factor the
            # sum into scale * (sum of x) - n * ms, which overflows
            zc = _opaque_t(row[c] * scale - ms, zb)
            zs += zc
            q = prow[c]
            ps += zero if q == zero else q * zc
        if f32:  # float32 block sums: float64 holds them exactly enough
            rest += s
        else:
            total = rest + s
            err = _two_sum_error(rest, s, total, zb)
            rest_err += err if abs(err) < np.inf else 0.0
            rest = total
        ties += t
        zsum += zs
        psum += ps
    rest += rest_err
    score, smoothed = _ce_unscale(zsum, psum, n, smoothing, scale64, zb)
    return _ce_finish(rest, ties, score, smoothed), m, rest, ties


@_kernel
def ce_probs(x, p, smoothing, out, r0, r1):
    """Cross entropy of rows r0..r1 of x with class probabilities p
    (0 * -inf counts 0)."""
    n = x.shape[1]
    zb = _runtime_zero(n)
    scale64 = _sum_scale(n)
    for r in range(r0, r1):
        out[r] = _ce_probs_row(x[r], p[r], smoothing, scale64, zb)[0]


@_kernel
def nll(x, idx, out, r0, r1):
    n = x.shape[1]
    for r in range(r0, r1):
        i = idx[r]
        out[r] = -np.float64(x[r, i]) if 0 <= i < n else np.nan


@_kernel
def nll_grad(x, idx, out, grad, r0, r1):
    """``nll`` and its gradient w.r.t. x: -1 at the target, 0 elsewhere (a
    row whose index is out of range, NaN loss: zeros)."""
    n = x.shape[1]
    zero = _zero(grad)
    for r in range(r0, r1):
        i = idx[r]
        out[r] = -np.float64(x[r, i]) if 0 <= i < n else np.nan
        g = grad[r]
        for c in range(n):
            g[c] = zero
        if 0 <= i < n:
            g[i] = -1.0


# --------------------------------------------------------------------------
# ---- gradients: softmax family (cross entropy, kl_div)
#
# Each kernel writes the per-row loss with the very row code of its forward
# kernel (bit for bit the same), then the gradient w.r.t. the logits in two
# more passes over the row, which is still in cache: the sum S of
# exp(x - max), then softmax = exp(x - max) / S and the targets' part. The
# forward's own sum is not reused: float32 rows sum float32 exponentials
# (1-2 ulp of float32 off), too coarse for the gradient.
#
# float32 rows: exp in float64 of the exact x - max (relative error below
# 1e-9), stored in ``grad`` by the first pass and scaled by 1 / S in the
# second, then rounded to float32 (about 1.5 ulp at most). float64 rows: the
# exponential as (1 + em1) 2**k with the error-free correction for the
# rounding of x - max folded into em1, recomputed in the second pass, and
# (1 + em1) / S formed as y + y (em1 + c) with one fma, where 1 / S = y (1 + c)
# to about 2**-104 (S carried as S + S_lo): about half an ulp plus S's error.
# A row whose loss is NaN gets a NaN gradient row (cross entropy with an
# index out of range excepted, see ``ce_index_grad``).


@_helper
def _nan_row(g):
    for c in range(g.size):
        g[c] = np.nan


@_helper
def _two_sum_lo(a, b, s, zb):
    """(a + b) - s exactly, s = a + b rounded (TwoSum), every step hidden:
    ``_two_sum_error`` leaves its last sum open to reassociation, which gets
    the error wrong for about half of the inputs."""
    s = _opaque(s, zb)
    bb = _opaque(s - a, zb)
    t = _opaque(s - bb, zb)
    return _opaque(a - t, zb) + _opaque(b - bb, zb)


@_helper
def _exp_parts(v, m, zb):
    """(s1, s2, em1) with exp(v - m) = (1 + em1) s1 s2 for float64 v and a
    finite m: z = v - m rounded, d its rounding error (TwoSum, every step
    hidden from LLVM: ``_sub_error``'s last expression is open to
    reassociation, which sometimes turns d into 0 or 2 d, several ulp in the
    exponential) and em1 = expm1(z) + d (1 + expm1(z))."""
    z = _opaque(v - m, zb)
    bb = _opaque(z - v, zb)  # the part of z that came from -m
    t = _opaque(z - bb, zb)  # the part that came from v
    d = _opaque(v - t, zb) - _opaque(m + bb, zb)
    d = d if abs(d) < np.inf else 0.0  # v = -inf or z overflowed: exp(z) is 0
    s1, s2, em1 = _expm1_core(z, _EXPM1_A)
    return s1, s2, em1 + d * (1.0 + em1)


@_helper
def _exp_at(row, c, m, zb):
    """exp(row[c] - m) in float64, m the row's (finite) max."""
    v = row[c]
    if _f32(row):
        return _exp_d(np.float64(v) - np.float64(m))
    s1, s2, em1 = _exp_parts(v, m, zb)
    return (_opaque(em1, zb) + 1.0) * s1 * s2


# e in [0, 1] split as hi + lo, hi = e rounded to a multiple of 2**-19 (by
# adding and subtracting 1.5 * 2**33), |lo| <= 2**-20: a sum of up to 2**34
# his is exact in any order, and the los' sum is n * 2**-73 off at most.
_SPLIT_SUM = 1.5 * 2.0**33


@_helper
def _exp_rest(row, m, g, zb):
    """(rest, rest_lo): the sum of exp(row - m) over the entries below m as
    rest + rest_lo, for float64 rows to about 2**-70 (the exponentials' own
    errors aside) in any summation order: a vectorized reduction. A float32
    row's exponentials are stored in g and summed plainly in float64 (1e-12
    relative at worst, plenty for a float32 result; the split costs 25%)."""
    f32 = _f32(row)
    hi = 0.0
    lo = 0.0
    for c in range(row.size):
        e = _exp_at(row, c, m, zb)
        if f32:
            g[c] = np.float32(e)
        e = e if row[c] < m else 0.0
        if f32:
            hi += e
        else:
            h = _opaque(_opaque(e + _SPLIT_SUM, zb) - _SPLIT_SUM, zb)
            hi += h
            lo += _opaque(e - h, zb)
    rest = hi + lo
    return rest, _two_sum_lo(hi, lo, rest, zb)


@_helper
def _softmax_sum(row, m, ties, g, zb):
    """(S, S_lo, y, c, below) for a row with a finite max m: S + S_lo the
    sum of exp(row - m), 1 / (S + S_lo) = y (1 + c), and below = S - 1
    summed without the exp(0) = 1 of one maximum."""
    rest, rest_lo = _exp_rest(row, m, g, zb)
    tot = rest + ties
    tot_lo = _two_sum_lo(rest, ties, tot, zb) + rest_lo
    y = 1.0 / tot
    r = _fma(-tot, _opaque(y, zb), 1.0)  # 1 - tot y, exact
    below = (rest + _opaque(ties - 1.0, zb)) + rest_lo
    return tot, tot_lo, y, r - tot_lo * y, below


@_helper
def _div_s(num, tot, tot_lo, y, zb):
    """num / (tot + tot_lo), about half an ulp: num y corrected by the
    residual num - (num y) tot (an fma, exact)."""
    t = _opaque(num * y, zb)
    return t + (_fma(-t, tot, num) - t * tot_lo) * y


@njit(nogil=True, fastmath=_KERNEL_FLAGS, error_model="numpy")
def _ce_grad_row32(row, g, m, inv, sn, zb):
    """softmax(row) - sn into g for a float32 row with the (finite) max m and
    1 / (the sum of exp(row - m)) = inv: the exponentials as the forward
    pass formed them (float32, x - max's rounding corrected), scaled in
    float64 and rounded once. Not inlined: see ``_ce_tail32``."""
    m64 = np.float64(m)
    for c in range(row.size):
        g[c] = np.float32(_exp_d(np.float64(row[c]) - m64) * inv - sn)


@_kernel
def ce_index_grad(x, idx, smoothing, out, grad, r0, r1):
    """``ce_index`` (``out``, bit for bit) and its gradient w.r.t. x in
    ``grad``: softmax(x) - (1 - smoothing) onehot(idx) - smoothing / n per row.

    At the target, p_t - 1 is formed without cancellation: where x_t is a
    maximum as -(S - 1) / S with S - 1 summed without exp(x_t - max) = 1,
    elsewhere (p_t <= 1/2) as the difference. An index out of range (NaN
    loss): softmax(x) - smoothing / n (no one-hot term), finite. A NaN or
    +inf logit, or a row of -inf logits (NaN loss): a NaN gradient row. -inf
    logits elsewhere: softmax 0 there.
    """
    n = x.shape[1]
    zb = _runtime_zero(n)
    scale64 = _sum_scale(n)
    f32 = _f32(x)
    sn = smoothing / n
    shift = smoothing - sn  # -(1 - s) - s / n = -1 + shift
    for r in range(r0, r1):
        row = x[r]
        g = grad[r]
        i = idx[r]
        loss, m, rest, ties, zsum = _ce_index_row(row, i, smoothing, scale64, zb)
        out[r] = loss
        if zsum != zsum:  # a NaN or +inf logit, or every logit -inf
            _nan_row(g)
            continue
        if f32:  # one more pass, over the row in cache
            tot = rest + ties
            _ce_grad_row32(row, g, m, 1.0 / tot, sn, zb)
            if 0 <= i < n:
                if row[i] == m:  # (hidden: not (rest + ties) - 1, which cancels)
                    pm1 = -(rest + _opaque(ties - 1.0, zb)) / tot
                else:
                    pm1 = _exp_d(np.float64(row[i]) - np.float64(m)) / tot - 1.0
                g[i] = np.float32(pm1 + shift)
            continue
        tot, tot_lo, y, cy, below = _softmax_sum(row, m, ties, g, zb)
        for c in range(n):
            s1, s2, em1 = _exp_parts(row[c], m, zb)
            g[c] = _fma(y, em1 + cy * (1.0 + em1), y) * s1 * s2 - sn
        if 0 <= i < n:
            if row[i] == m:
                pm1 = -_div_s(below, tot, tot_lo, y, zb)
            else:
                pm1 = _div_s(_exp_at(row, i, m, zb), tot, tot_lo, y, zb) - 1.0
            g[i] = _cast_like(g, pm1 + shift)


# --------------------------------------------------------------------------
# linear cross entropy (anyloss._linear_chunks): float32 tiles of logits, one
# chunk of rows by one block of the vocabulary, reduced to running per-row
# statistics (forward) or turned into their gradient in place (backward)


@_kernel
def linear_ce_stats32(x, c0, idx, smoothing, m, rest, xt, below, r0, r1):
    """Fold the float32 tile ``x`` (the logits of a chunk's rows for the
    classes c0 .. c0 + x.shape[1]) into rows r0..r1 of the running
    statistics: ``m`` the largest logit so far (float32; -inf before the
    first block), ``rest`` (float64) the sum of exp(x - m) over every logit
    seen but one maximum, ``xt`` the target's logit (where ``idx`` falls in
    the block), and with smoothing ``below`` (float64) the sum of m - x.

    One read of each row (``_ce_row32``: the block's max, the sum of exp(x -
    max) below it, its number of maxima); the block's sums join the running
    ones in float64, moved to the larger max: nothing cancels. A NaN or +inf
    logit makes ``rest`` NaN; a block of -inf logits adds nothing.
    """
    n = x.shape[1]
    zb = _runtime_zero(n)
    scale64 = _sum_scale(n)
    for r in range(r0, r1):
        row = x[r]
        bm, brest, bties, zsum = _ce_row32(row, smoothing, scale64, zb)
        i = idx[r] - c0
        if 0 <= i < n:
            xt[r] = row[i]
        old = m[r]
        if bties == 0.0:  # every logit -inf (nothing to add), or a NaN
            if brest != brest:
                rest[r] = np.nan
            if smoothing > 0.0:  # m - (-inf)
                below[r] = np.inf
            continue
        if bm > old:  # the old terms and one old maximum move to bm; one new maximum leaves
            f = _exp_a(np.float64(old) - np.float64(bm))
            rest[r] = (rest[r] + 1.0) * f + (brest + _opaque(bties - 1.0, zb))
            if smoothing > 0.0:
                moved = (np.float64(bm) - np.float64(old)) * c0 if c0 > 0 else 0.0
                below[r] = below[r] + moved - zsum / scale64
            m[r] = bm
        else:
            f = _exp_a(np.float64(bm) - np.float64(old))
            rest[r] += (brest + bties) * f
            if smoothing > 0.0:
                gap = (np.float64(old) - np.float64(bm)) * n
                below[r] = below[r] + gap - zsum / scale64


@_kernel
def linear_ce_grad32(x, c0, idx, m, rest, coef, smoothing, num_classes, cap, r0, r1):
    """Turn rows r0..r1 of the float32 tile ``x`` (logits of the classes c0
    .. c0 + x.shape[1], capped where ``cap`` > 0) into ``coef`` times the
    loss's gradient with respect to them, in place: coef (p - (1 - s)
    onehot(idx) - s / V), p = exp(x - m) / (1 + rest) from the forward
    statistics, times the cap's derivative 1 - (x / cap)**2 (as (1 - t)(1 +
    t)). The exponentials in float64 of the exact x - m, rounded once. At
    the target, p - 1 is -rest / (1 + rest) where the target is a maximum
    (no cancellation for confident rows), else the difference (p <= 1/2).
    """
    n = x.shape[1]
    zb = _runtime_zero(n)
    sn = smoothing / num_classes
    shift = smoothing - sn  # -(1 - s) - s / V = -1 + shift
    for r in range(r0, r1):
        row = x[r]
        k = coef[r]
        mm = np.float64(m[r])
        tot = 1.0 + rest[r]
        inv = k / tot
        ksn = k * sn
        i = idx[r] - c0
        xi = np.float64(row[i]) if 0 <= i < n else 0.0
        if cap > 0.0:
            for c in range(n):
                v = np.float64(row[c])
                th = v / cap
                d = _opaque(1.0 - th, zb) * (1.0 + th)
                row[c] = np.float32((_exp_d(v - mm) * inv - ksn) * d)
        else:
            for c in range(n):
                row[c] = np.float32(_exp_d(np.float64(row[c]) - mm) * inv - ksn)
        if 0 <= i < n:
            # at a maximum, p - 1 = -rest / (1 + rest): no cancellation
            pm1 = -rest[r] / tot if xi == mm else _exp_d(xi - mm) / tot - 1.0
            g = k * (pm1 + shift)
            if cap > 0.0:
                th = xi / cap
                g = g * (_opaque(1.0 - th, zb) * (1.0 + th))
            row[i] = np.float32(g)


@_kernel
def ce_probs_grad(x, p, smoothing, out, grad, r0, r1):
    """``ce_probs`` (``out``, bit for bit) and its gradient w.r.t. x in
    ``grad``: softmax(x) - q per row, q = (1 - smoothing) p + smoothing / n.

    That is the exact derivative for targets that sum to 1. For other
    targets the loss, lse(x) - sum(q x) + max(x) (sum(q) - 1), has its max
    taken as a constant, as the generic code does (a ``stop_gradient``): the
    gradient is softmax(x) - q there too, the generic path's. At a maximum
    (exp = 1), p - q is formed as ((1 - q) - q (S - 1)) / S: no cancellation
    for confident rows with q near 1. A row with a NaN loss (a NaN or +inf
    logit, every logit -inf, a NaN target): a NaN gradient row.
    """
    n = x.shape[1]
    zb = _runtime_zero(n)
    scale64 = _sum_scale(n)
    f32 = _f32(x)
    keep = 1.0 - smoothing
    sn = smoothing / n
    for r in range(r0, r1):
        row = x[r]
        prow = p[r]
        g = grad[r]
        loss, m, _, ties = _ce_probs_row(row, prow, smoothing, scale64, zb)
        out[r] = loss
        if loss != loss:
            _nan_row(g)
            continue
        tot, tot_lo, y, cy, below = _softmax_sum(row, m, ties, g, zb)
        inv = y * (1.0 + cy)
        for c in range(n):
            q = keep * np.float64(prow[c]) + sn
            top = row[c] == m
            at_top = _div_s(_opaque(1.0 - q, zb) - q * below, tot, tot_lo, y, zb)
            if f32:
                s = np.float64(g[c]) * inv - q
            else:
                s1, s2, em1 = _exp_parts(row[c], m, zb)
                s = _fma(y, em1 + cy * (1.0 + em1), y) * s1 * s2 - q
            g[c] = _cast_like(g, at_top if top else s)


@_helper
def _kl_div_row(x, t, r, n):
    """Row r of ``kl_div`` (shared with ``kl_div_grad``)."""
    f32 = _f32(x)
    acc = 0.0
    for c in range(n):
        tc = np.float64(t[r, c])
        e = _exp_m(tc) if f32 else _exp_a(tc)
        term = e * (tc - np.float64(x[r, c]))
        # 0 where exp(t) underflows: t - x may overflow there (0 * inf)
        acc += 0.0 if (tc == -np.inf or e == 0.0) else term
    return acc


@_kernel
def kl_div_grad(x, t, out, grad, grad_t, r0, r1):
    """``kl_div`` (``out``, bit for bit) and its gradients: w.r.t. x in
    ``grad``, -exp(t) (-0 where t = -inf; -inf where exp(t) overflows the
    dtype); w.r.t. t in ``grad_t``, exp(t) (t - x + 1) (0 where the term is,
    t = -inf or exp(t) = 0). Either may be empty: not wanted. A row with a
    NaN loss: NaN gradient rows."""
    n = x.shape[1]
    f32 = _f32(x)
    for r in range(r0, r1):
        acc = _kl_div_row(x, t, r, n)
        out[r] = acc
        if acc != acc:
            if grad.size:
                _nan_row(grad[r])
            if grad_t.size:
                _nan_row(grad_t[r])
            continue
        for c in range(n):
            tc = np.float64(t[r, c])
            e = _exp_d(tc) if f32 else _exp_a(tc)
            if grad.size:
                grad[r, c] = _cast_like(grad, -e)
            if grad_t.size:
                dead = tc == -np.inf or e == 0.0
                d = 0.0 if dead else e * ((tc - np.float64(x[r, c])) + 1.0)
                grad_t[r, c] = _cast_like(grad_t, d)


@_kernel
def _block_sum(dst):
    """float64 sum of a block (a call of its own: it may reassociate)."""
    acc = 0.0
    for j in range(dst.size):
        acc += np.float64(dst[j])
    return acc


@_kernel
def kl_div(x, t, out, r0, r1):
    """sum(exp(t) (t - x)) per row in float64, 0 where t = -inf.

    The terms cancel for near-equal distributions, so exp is good to 1e-12
    (float32 inputs) or about 1 ulp of float64, and the sum is in float64.
    """
    n = x.shape[1]
    for r in range(r0, r1):
        out[r] = _kl_div_row(x, t, r, n)


@_helper
def _cosine_row(a, b, r, n, eps):
    """Row r of ``cosine`` (shared with ``cosine_grad``): ``(loss, large, sa,
    sb, ia, ib, dot, na, nb)``, the rows scaled by ``ia = 1 / sa`` and
    ``ib = 1 / sb``, ``dot``, ``na``, ``nb`` their sums of products and
    ``large`` whether |x1| |x2| >= eps."""
    sa = 1.0  # float32 squares cannot overflow or underflow in float64
    sb = 1.0
    if not _f32(a):
        sa = 0.0
        sb = 0.0
        for c in range(n):
            sa = max(sa, abs(a[r, c]))
            sb = max(sb, abs(b[r, c]))
        sa = sa if 0.0 < sa < np.inf else 1.0
        sb = sb if 0.0 < sb < np.inf else 1.0
    ia = 1.0 / sa
    ib = 1.0 / sb
    dot = 0.0
    na = 0.0
    nb = 0.0
    for c in range(n):
        u = np.float64(a[r, c]) * ia
        v = np.float64(b[r, c]) * ib
        dot += u * v
        na += u * u
        nb += v * v
    norms = math.sqrt(na) * math.sqrt(nb)
    large = (norms * sa) * sb >= eps
    if large:
        loss = dot / norms
    elif eps > 0.0:
        loss = dot * ((sa / eps) * sb)
    else:  # eps = 0: not large only where the norms are NaN (a NaN entry)
        loss = dot * 0.0
    return loss, large, sa, sb, ia, ib, dot, na, nb


@_kernel
def cosine(a, b, eps, out, r0, r1):
    """x1.x2 / max(|x1| |x2|, eps) per row, in float64 with scaled rows."""
    n = a.shape[1]
    for r in range(r0, r1):
        out[r] = _cosine_row(a, b, r, n, eps)[0]


@_helper
def _pow2_floor(c):
    """The largest power of two <= c, for 0 < c < inf (subnormal c too)."""
    sub = c < _F64_TINY
    cs = c * _TWO54 if sub else c
    p = _i64_as_f64(_f64_as_i64(cs) & 0x7FF0000000000000)
    return p * (1.0 / _TWO54) if sub else p


@_helper
def _triplet_gap(a, pos, neg, r, n, p):
    """The sums of row r of float32 inputs, in float64 (where no difference,
    square or sum of them over- or underflows, so no scaling as in the
    generic ``_triplet_gap``): sum |a - pos|^p, sum |a - neg|^p and, for
    p = 2, sum (dp - dn)(dp + dn) = S_p - S_n."""
    sp = 0.0
    sn = 0.0
    num = 0.0
    if p == 1.0:
        for k in range(n):
            ah = np.float64(a[r, k])
            sp += abs(ah - np.float64(pos[r, k]))
            sn += abs(ah - np.float64(neg[r, k]))
        return sp, sn, num
    for k in range(n):
        ah = np.float64(a[r, k])
        dp = ah - np.float64(pos[r, k])
        dn = ah - np.float64(neg[r, k])
        sp += dp * dp
        sn += dn * dn
        num += (dp - dn) * (dp + dn)
    return sp, sn, num


@_exact_kernel
def _triplet_hinge(x):
    return 0.0 if x < 0.0 else x  # NaN stays NaN


@_exact_kernel
def _triplet_pre(sums, p, margin, eps):
    """``(gap + margin, d_p, d_n)`` of one row of finite float32 inputs from
    its sums, as the generic code: for p = 1 eps cancels (also a huge or
    infinite eps), for p = 2 the gap is (S_p - S_n) / (d_p + d_n), no
    cancellation of two nearly equal distances, and inf - inf (NaN) for
    eps = inf. The distances d = sqrt(S + eps) only for p = 2."""
    sp, sn, num = sums
    dp = dn = 0.0
    if p == 1.0:
        gap = sp - sn
    else:
        dp = math.sqrt(sp + eps)
        dn = math.sqrt(sn + eps)
        den = dp + dn
        gap = num / (den if den > 0.0 else 1.0)  # a = pos = neg, eps = 0: 0
        gap = gap if den < np.inf else np.nan
    return gap + margin, dp, dn


@_exact_kernel
def _triplet_finish(sums, p, margin, eps):
    """The loss of one row of finite float32 inputs from its sums."""
    return _triplet_hinge(_triplet_pre(sums, p, margin, eps)[0])


@_exact_kernel
def _triplet_plain_pre(a, pos, neg, r, n, p, margin, eps):
    """``(d_p - d_n + margin, d_p, d_n)`` of row r by the plain formula, in
    float64, as the generic ``_plain_where_infinite`` (and MLX) for a row
    with an infinite or NaN entry, where the scaled and error-free forms
    would form inf - inf or inf / inf: a loss of inf or 0 for inf - finite,
    NaN for inf - inf and for a NaN entry."""
    sp = 0.0
    sn = 0.0
    for k in range(n):
        ak = np.float64(a[r, k])
        dp = abs(ak - np.float64(pos[r, k]))
        dn = abs(ak - np.float64(neg[r, k]))
        sp += dp if p == 1.0 else dp * dp
        sn += dn if p == 1.0 else dn * dn
    sp += eps
    sn += eps
    if p != 1.0:
        sp = math.sqrt(sp)
        sn = math.sqrt(sn)
    return (sp - sn) + margin, sp, sn


@_exact_kernel
def _triplet_plain(a, pos, neg, r, n, p, margin, eps):
    """The loss of row r by the plain formula (``_triplet_plain_pre``)."""
    return _triplet_hinge(_triplet_plain_pre(a, pos, neg, r, n, p, margin, eps)[0])


@_kernel
def triplet(a, pos, neg, p, margin, eps, out, r0, r1):
    """Float32 inputs (float64 ones go to ``triplet_dd``)."""
    n = a.shape[1]
    for r in range(r0, r1):
        sums = _triplet_gap(a, pos, neg, r, n, p)
        # float32 inputs in float64: a sum is inf or NaN iff an entry is
        if sums[0] < np.inf and sums[1] < np.inf:
            out[r] = _triplet_finish(sums, p, margin, eps)
        else:
            out[r] = _triplet_plain(a, pos, neg, r, n, p, margin, eps)


# --------------------------------------------------------------------------
# float64 cosine and triplet in double-double, as the generic code: a float64
# input has no wider type, so products are split exactly (fma), sums keep
# their rounding errors (TwoSum, one element after another), and what follows
# is carried as hi + lo. Compiled without reassoc, which would undo TwoSum.


@_dd_kernel
def cosine_dd(a, b, eps, out, r0, r1):
    n = a.shape[1]
    for r in range(r0, r1):
        out[r] = _cosine_dd_row(a, b, r, n, eps)[0]


@_dd_kernel
def _cosine_dd_row(a, b, r, n, eps):
    """Row r of ``cosine_dd`` (shared with ``cosine_grad``): ``(loss, large,
    sa, sb, dot, dot_lo, na, na_lo, nb, nb_lo)``: the rows divided by the
    powers of two ``sa`` and ``sb``, their sums of products in double-double
    (the pairs as summed, before they are added), ``large`` whether
    |x1| |x2| >= eps."""
    sa = 0.0
    sb = 0.0
    for c in range(n):
        sa = max(sa, abs(a[r, c]))
        sb = max(sb, abs(b[r, c]))
    sa = _pow2_floor(sa) if 0.0 < sa < np.inf else 1.0
    sb = _pow2_floor(sb) if 0.0 < sb < np.inf else 1.0
    dot = dot_lo = na = na_lo = nb = nb_lo = 0.0
    for c in range(n):
        u = a[r, c] / sa  # exact
        v = b[r, c] / sb
        p = u * v
        e = _fma(u, v, -p)
        t = dot + p
        z = t - dot
        dot_lo += ((dot - (t - z)) + (p - z)) + e
        dot = t
        p = u * u
        e = _fma(u, u, -p)
        t = na + p
        z = t - na
        na_lo += ((na - (t - z)) + (p - z)) + e
        na = t
        p = v * v
        e = _fma(v, v, -p)
        t = nb + p
        z = t - nb
        nb_lo += ((nb - (t - z)) + (p - z)) + e
        nb = t
    dot1 = dot + dot_lo if abs(dot) < np.inf else dot
    na1 = na + na_lo if na < np.inf else na
    nb1 = nb + nb_lo if nb < np.inf else nb
    norms = math.sqrt(na1) * math.sqrt(nb1)
    large = (norms * sa) * sb >= eps
    if large:
        loss = dot1 / norms
    elif eps > 0.0:
        loss = dot1 * ((sa / eps) * sb)
    else:  # eps = 0: not large only where the norms are NaN (a NaN entry)
        loss = dot1 * 0.0
    return loss, large, sa, sb, dot, dot_lo, na, na_lo, nb, nb_lo


@_dd_kernel
def _dd_sqrt(hi, lo):
    r = math.sqrt(hi)
    if not r > 0.0:
        return r, 0.0
    return r, (_fma(-r, r, hi) + lo) / (r + r)


@_dd_kernel
def triplet_dd(a, pos, neg, p, margin, eps, out, r0, r1):
    """The generic ``_triplet_loss_dd``, one row at a time."""
    n = a.shape[1]
    root = eps if p == 1.0 else math.sqrt(eps)
    for r in range(r0, r1):
        out[r] = _triplet_dd_row(a, pos, neg, r, n, p, margin, eps, root)[0]


@_dd_kernel
def _triplet_dd_row(a, pos, neg, r, n, p, margin, eps, root):
    """Row r of ``triplet_dd`` (shared with ``triplet_grad``): ``(loss, pre,
    plain, h, c, d_p, d_p_lo, d_n, d_n_lo)``, ``pre`` the loss before the hinge.
    ``plain``: a row with an infinite or NaN entry, by the plain formula,
    d = sqrt(S + eps) (p = 2) in float64 (``lo`` 0); else the rows were
    multiplied by ``h`` and their differences divided by ``c``, and for
    p = 2 ``d + d_lo`` is the distance so scaled (in double-double)."""
    big = 0.0
    for k in range(n):
        big = max(big, max(abs(a[r, k]), max(abs(pos[r, k]), abs(neg[r, k]))))
    h = 0.5 if big > _F64_HALF_MAX else 1.0
    peak = root * h
    for k in range(n):
        ah = a[r, k] * h
        peak = max(peak, max(abs(ah - pos[r, k] * h), abs(ah - neg[r, k] * h)))
    c = _pow2_floor(peak) if 0.0 < peak < np.inf else 1.0
    sp = sp_lo = sn = sn_lo = num = num_lo = 0.0
    for k in range(n):
        ah = a[r, k] * h
        ph = pos[r, k] * h
        nh = neg[r, k] * h
        dp = ah - ph
        z = dp - ah
        dp_lo = ((ah - (dp - z)) + (-ph - z)) / c
        dp = dp / c
        dn = ah - nh
        z = dn - ah
        dn_lo = ((ah - (dn - z)) + (-nh - z)) / c
        dn = dn / c
        if p == 1.0:
            x = abs(dp)
            x_lo = -dp_lo if dp < 0.0 else dp_lo
            t = sp + x
            z = t - sp
            sp_lo += ((sp - (t - z)) + (x - z)) + x_lo
            sp = t
            x = abs(dn)
            x_lo = -dn_lo if dn < 0.0 else dn_lo
            t = sn + x
            z = t - sn
            sn_lo += ((sn - (t - z)) + (x - z)) + x_lo
            sn = t
            continue
        x = nh - ph
        z = x - nh
        x_lo = ((nh - (x - z)) + (-ph - z)) / c
        x = x / c
        y = dp + dn
        z = y - dp
        y_lo = ((dp - (y - z)) + (dn - z)) + (dp_lo + dn_lo)
        q = x * y
        e = _fma(x, y, -q) + (x * y_lo + x_lo * y)
        t = num + q
        z = t - num
        num_lo += ((num - (t - z)) + (q - z)) + e
        num = t
        q = dp * dp
        e = _fma(dp, dp, -q) + 2.0 * (dp * dp_lo)
        t = sp + q
        z = t - sp
        sp_lo += ((sp - (t - z)) + (q - z)) + e
        sp = t
        q = dn * dn
        e = _fma(dn, dn, -q) + 2.0 * (dn * dn_lo)
        t = sn + q
        z = t - sn
        sn_lo += ((sn - (t - z)) + (q - z)) + e
        sn = t
    if not (sp < np.inf and sn < np.inf):
        # an infinite or NaN entry (finite ones are scaled below 4 each)
        pre, dpl, dnl = _triplet_plain_pre(a, pos, neg, r, n, p, margin, eps)
        return _triplet_hinge(pre), pre, True, 1.0, 1.0, dpl, 0.0, dnl, 0.0
    rp = rp_lo = rn = rn_lo = 0.0
    if p == 1.0:
        g = sp - sn
        z = g - sp
        g_lo = ((sp - (g - z)) + (-sn - z)) + (sp_lo - sn_lo)
    else:
        q = ((eps * (h * h)) / c) / c
        t = sp + q
        z = t - sp
        sp_lo += (sp - (t - z)) + (q - z)
        sp = t
        t = sn + q
        z = t - sn
        sn_lo += (sn - (t - z)) + (q - z)
        sn = t
        rp, rp_lo = _dd_sqrt(sp, sp_lo)
        rn, rn_lo = _dd_sqrt(sn, sn_lo)
        den = rp + rn
        z = den - rp
        den_lo = ((rp - (den - z)) + (rn - z)) + (rp_lo + rn_lo)
        if den > 0.0:
            g = num / den
            g_lo = ((_fma(-g, den, num) + num_lo) - g * den_lo) / den
        else:
            g = 0.0
            g_lo = 0.0
    g = (g * c) / h
    g_lo = (g_lo * c) / h
    t = g + margin
    z = t - g
    lo = ((g - (t - z)) + (margin - z)) + g_lo
    loss = t + lo if abs(t) < np.inf else t
    return max(loss, 0.0), loss, False, h, c, rp, rp_lo, rn, rn_lo


# --------------------------------------------------------------------------
# ---- gradients: cosine similarity and triplet
#
# ``cosine_grad`` and ``triplet_grad`` write the loss of rows r0..r1 into
# ``out`` bit for bit as the forward kernel for the dtype (``cosine`` /
# ``triplet`` for float32, ``cosine_dd`` / ``triplet_dd`` for float64: the
# row code above is shared), and the gradient of each row's loss into the
# gradient arrays (2-D, the inputs' shape and dtype; one of size 0 is not
# written). float32 inputs: gradients in float64, rounded once. float64:
# the row's coefficients (1 / distance, cos / |x1|^2, ...) from its
# double-double sums, the per-element products with error-free
# corrections (fma): a few ulp. A row whose loss is NaN gets a NaN
# gradient.


@_dd_kernel
def _dd_mul(ah, al, bh, bl):
    """(ah + al) (bh + bl) in double-double."""
    p = ah * bh
    e = _fma(ah, bh, -p) + (ah * bl + al * bh)
    s = p + e
    return s, e - (s - p)


@_dd_kernel
def _dd_div(ah, al, bh, bl):
    """(ah + al) / (bh + bl) in double-double (bh finite, nonzero)."""
    q = ah / bh
    rem = (_fma(-q, bh, ah) + al) - q * bl  # fma(-q, bh, ah) is exact
    q2 = rem / bh
    s = q + q2
    return s, q2 - (s - q)


@_dd_kernel
def _dd_recip(h, lo):
    """1 / (h + lo) rounded, 0 for h = 0 (a zero distance: the subgradient
    0, as torch's norm) or h = inf."""
    if not (0.0 < h < np.inf):
        return 0.0
    i = 1.0 / h
    return i + i * (_fma(-h, i, 1.0) - lo * i)


@_helper
def _grad_term(u, v, k1, k):
    """v k1 - u k, the product u k's rounding error included (fma)."""
    t = u * k
    return _fma(v, k1, -t) - _fma(u, k, -t)


@_dd_kernel
def _cosine_dd_coefs(a, b, r, n, eps):
    """``_cosine_grad_coefs`` of float64 rows, from ``_cosine_dd_row``."""
    loss, large, sa, sb, dot, dot_lo, na, na_lo, nb, nb_lo = _cosine_dd_row(a, b, r, n, eps)
    k1 = ka = kb = 0.0
    if large and loss == loss:  # then na, nb >= 1: the rows are scaled
        t = dot + dot_lo
        z = t - dot
        dot_lo = (dot - (t - z)) + (dot_lo - z)
        ph, pl = _dd_mul(na, na_lo, nb, nb_lo)
        sh, sl = _dd_sqrt(ph, pl)
        k1, k1_lo = _dd_div(1.0, 0.0, sh, sl)
        th, tl = _dd_mul(t, dot_lo, k1, k1_lo)
        ka = _dd_div(th, tl, na, na_lo)[0]
        kb = _dd_div(th, tl, nb, nb_lo)[0]
    return loss, large, sa, sb, k1, ka, kb


def _cosine_grad_coefs(a, b, r, n, eps):
    """``(loss, large, sa, sb, k1, ka, kb)`` of row r: its loss as the
    forward kernel, the row scales, and in the scaled rows u = x1 / sa,
    v = x2 / sb with A = |u|, B = |v|: k1 = 1 / (A B), ka = (u.v) / (A^3 B),
    kb = (u.v) / (A B^3), so that d cos / d x1 = (v k1 - u ka) / sa."""
    return 0.0, True, 1.0, 1.0, 0.0, 0.0, 0.0


@overload(_cosine_grad_coefs, inline="always")
def _cosine_grad_coefs_typed(a, b, r, n, eps):
    if a.dtype == types.float32:

        def impl32(a, b, r, n, eps):
            loss, large, sa, sb, _ia, _ib, dot, na, nb = _cosine_row(a, b, r, n, eps)
            k1 = 1.0 / (math.sqrt(na) * math.sqrt(nb))
            return loss, large, sa, sb, k1, (dot * k1) / na, (dot * k1) / nb

        return impl32
    return lambda a, b, r, n, eps: _cosine_dd_coefs(a, b, r, n, eps)


@_helper
def _cos_grad_into(g, x, y, r, n, s, t, k1, k, loss, large, eps):
    """Row r of one gradient: g = (v k1 - u k) / s with u = x / s, v = y / t
    (the scaled rows; multiplied by 1 / s, 1 / t, powers of two, where
    finite), x.y / eps's y / eps, or NaN (see ``_cosine_grad_write``)."""
    if g.size == 0:
        return
    i = 1.0 / s
    j = 1.0 / t
    if loss != loss or not (large or eps > 0.0):
        for c in range(n):
            g[r, c] = np.nan
    elif not large:
        for c in range(n):
            g[r, c] = np.float64(y[r, c]) / eps
    elif i < np.inf and j < np.inf:
        for c in range(n):
            g[r, c] = _grad_term(x[r, c] * i, y[r, c] * j, k1, k) * i
    else:  # a row of subnormals
        for c in range(n):
            g[r, c] = _grad_term(x[r, c] / s, y[r, c] / t, k1, k) / s


@_dd_kernel
def _cosine_grad_write(a, b, eps, loss, large, sa, sb, k1, ka, kb, ga, gb, r, n):
    """The gradients of row r (see ``_cosine_grad_coefs``). Where
    |x1| |x2| < eps the loss is x1.x2 / eps: d / d x1 = x2 / eps. At the tie
    |x1| |x2| = eps the norms' branch, as torch's clamp. A NaN loss (or a
    NaN entry with eps = 0, whose loss is 0 as in the generic code): NaN.
    One loop per gradient array (branch-free: they vectorize)."""
    _cos_grad_into(ga, a, b, r, n, sa, sb, k1, ka, loss, large, eps)
    _cos_grad_into(gb, b, a, r, n, sb, sa, k1, kb, loss, large, eps)


@_kernel
def cosine_grad(a, b, eps, out, ga, gb, r0, r1):
    """``cosine`` (float32) / ``cosine_dd`` (float64) and the gradients:
    d cos / d x1 = x2 / (|x1| |x2|) - cos x1 / |x1|^2 (x2 / eps where
    |x1| |x2| < eps), d cos / d x2 likewise, into ``ga`` and ``gb``."""
    n = a.shape[1]
    for r in range(r0, r1):
        loss, large, sa, sb, k1, ka, kb = _cosine_grad_coefs(a, b, r, n, eps)
        out[r] = loss
        _cosine_grad_write(a, b, eps, loss, large, sa, sb, k1, ka, kb, ga, gb, r, n)


def _triplet_grad_row(a, pos, neg, p, margin, eps, root, r, n):
    """``(loss, pre, h, c, d_p, d_p_lo, d_n, d_n_lo)`` of row r: its loss as
    the forward kernel, the loss before the hinge, and as in
    ``_triplet_dd_row`` the row's scales and distances (float32 rows:
    h = c = 1, the distances in float64)."""
    return 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0


@overload(_triplet_grad_row, inline="always")
def _triplet_grad_row_typed(a, pos, neg, p, margin, eps, root, r, n):
    if a.dtype == types.float32:

        def impl32(a, pos, neg, p, margin, eps, root, r, n):
            sums = _triplet_gap(a, pos, neg, r, n, p)
            if sums[0] < np.inf and sums[1] < np.inf:  # as in ``triplet``
                pre, dp, dn = _triplet_pre(sums, p, margin, eps)
            else:
                pre, dp, dn = _triplet_plain_pre(a, pos, neg, r, n, p, margin, eps)
            return _triplet_hinge(pre), pre, 1.0, 1.0, dp, 0.0, dn, 0.0

        return impl32

    def impl64(a, pos, neg, p, margin, eps, root, r, n):
        row = _triplet_dd_row(a, pos, neg, r, n, p, margin, eps, root)
        return row[0], row[1], row[3], row[4], row[5], row[6], row[7], row[8]

    return impl64


@_helper
def _triplet_fill(g, r, n, value):
    if g.size > 0:
        for k in range(n):
            g[r, k] = value


@_helper
def _scaled_diff(a, v, r, k, h, m, ic):
    """(a - v) h / c for c = 1 / (m ic), m and ic powers of two: exact
    multiplications (m lifts a subnormal c)."""
    ah = np.float64(a[r, k]) * h
    return ((ah - np.float64(v[r, k]) * h) * m) * ic


@_helper
def _sign_diff(a, v, r, k):
    """sign(a - v) as torch's abs' derivative (0 at 0)."""
    return (1.0 if a[r, k] > v[r, k] else 0.0) - (1.0 if a[r, k] < v[r, k] else 0.0)


@_dd_kernel
def _triplet_rescale(a, v, r, n, h, eps, c, d, d_lo):
    """``(c, d, d_lo)`` as given where d >= 2**-400 (every square that
    matters is normal), else the distance of row r of a and v alone,
    sqrt(sum ((a - v) h)^2 + eps h^2) / c', at its own scale c' (a power of
    two near its largest difference), in double-double."""
    if d >= 2.0**-400:
        return c, d, d_lo
    peak = math.sqrt(eps) * h
    for k in range(n):
        peak = max(peak, abs(a[r, k] * h - v[r, k] * h))
    c = _pow2_floor(peak) if 0.0 < peak < np.inf else 1.0
    m = 1.0 if c >= _F64_TINY else _TWO54
    ic = 1.0 / (c * m)
    s = s_lo = 0.0
    for k in range(n):
        x = _scaled_diff(a, v, r, k, h, m, ic)
        q = x * x
        e = _fma(x, x, -q)
        t = s + q
        z = t - s
        s_lo += ((s - (t - z)) + (q - z)) + e
        s = t
    q = ((eps * (h * h)) / c) / c
    t = s + q
    z = t - s
    s_lo += (s - (t - z)) + (q - z)
    d, d_lo = _dd_sqrt(t, s_lo)
    return c, d, d_lo


@_dd_kernel
def _triplet_grad_write(a, pos, neg, p, eps, pre, h, c, dp, dp_lo, dn, dn_lo, ga, gp, gn, r, n):
    """The gradients of row r. The hinge: 0 where pre < 0, half at pre = 0
    (torch's ``maximum`` at a tie), NaN where pre is NaN. p = 1:
    sign(a - pos) - sign(a - neg) (sign 0 at 0, as torch's abs); p = 2:
    (a - pos) / d_p - (a - neg) / d_n, a zero distance (eps = 0, a = pos)
    giving 0 (the subgradient, as torch's norm); in a row with an infinite
    entry (the plain formula) inf / inf is NaN there, as torch autograd.
    One loop per gradient array (branch-free: they vectorize)."""
    if not (pre >= 0.0):  # inactive (0) or NaN
        g = np.nan if pre != pre else 0.0
        _triplet_fill(ga, r, n, g)
        _triplet_fill(gp, r, n, g)
        _triplet_fill(gn, r, n, g)
        return
    w = 0.5 if pre == 0.0 else 1.0
    if p == 1.0:
        if ga.size > 0:
            for k in range(n):
                ga[r, k] = w * (_sign_diff(a, pos, r, k) - _sign_diff(a, neg, r, k))
        if gp.size > 0:
            for k in range(n):
                gp[r, k] = -w * _sign_diff(a, pos, r, k)
        if gn.size > 0:
            for k in range(n):
                gn[r, k] = w * _sign_diff(a, neg, r, k)
        return
    # d_p, d_n at the row's common scale c, unless one is so far below it
    # that its squares may have underflowed (eps = 0, a distance 1e-150 of
    # the other): then that one at its own scale
    cp, dp, dp_lo = _triplet_rescale(a, pos, r, n, h, eps, c, dp, dp_lo)
    cn, dn, dn_lo = _triplet_rescale(a, neg, r, n, h, eps, c, dn, dn_lo)
    ip = w * _dd_recip(dp, dp_lo)  # w: exact
    iq = w * _dd_recip(dn, dn_lo)
    mp = 1.0 if cp >= _F64_TINY else _TWO54
    icp = 1.0 / (cp * mp)
    mn = 1.0 if cn >= _F64_TINY else _TWO54
    icn = 1.0 / (cn * mn)
    if ga.size > 0:
        for k in range(n):
            xp = _scaled_diff(a, pos, r, k, h, mp, icp)
            xn = _scaled_diff(a, neg, r, k, h, mn, icn)
            ga[r, k] = _grad_term(xn, xp, ip, iq)
    if gp.size > 0:
        for k in range(n):
            gp[r, k] = -(_scaled_diff(a, pos, r, k, h, mp, icp) * ip)
    if gn.size > 0:
        for k in range(n):
            gn[r, k] = _scaled_diff(a, neg, r, k, h, mn, icn) * iq


@_kernel
def triplet_grad(a, pos, neg, p, margin, eps, out, ga, gp, gn, r0, r1):
    """``triplet`` (float32) / ``triplet_dd`` (float64) and the gradients
    with respect to the anchors, positives and negatives (p in {1, 2})."""
    n = a.shape[1]
    root = eps if p == 1.0 else math.sqrt(eps)
    for r in range(r0, r1):
        loss, pre, h, c, dp, dp_lo, dn, dn_lo = _triplet_grad_row(
            a, pos, neg, p, margin, eps, root, r, n
        )
        out[r] = loss
        _triplet_grad_write(a, pos, neg, p, eps, pre, h, c, dp, dp_lo, dn, dn_lo, ga, gp, gn, r, n)


# --------------------------------------------------------------------------
# elementwise losses: one body, specialised by a constant `kind`
#
# Each loss is a pair of helpers on float64 scalars, ``_e_<kind>(f32, a, b,
# c, p0, p1)`` (the loss) and ``_d_<kind>`` (its derivatives with respect to
# a, b and c); a, b, c are the loss's one to three array inputs, p0 and p1
# its scalar parameters, f32 whether the inputs are float32 (draft
# precision suffices). The loops are written once, in
# ``_elementwise_loops(kind)``, which makes a loss loop and a gradient loop
# for each ``kind`` of ``_ELEMENTWISE``; numba inlines them (and the loss's
# helpers) into the kernels below, so each kernel's fast-math flags apply to
# its loss (as when the loops were copied by hand) and numba caches the
# kernels as any other.
#
# Ties and kinks of the derivatives follow PyTorch's float64 autograd of the
# generic formulas where those use the same operation: ``maximum(u, c)``
# passes half the gradient at u == c (hinge, margin_ranking, the -100 floor
# of bce_probs and the eps floor of gaussian_nll's variance), abs passes 0
# at 0 (l1, smooth_l1, huber, log_cosh); the branch a kernel's loss takes at
# a breakpoint is the branch its derivative takes (smooth_l1's linear part
# at |d| == beta; huber's two parts agree at |d| == delta). One deliberate
# difference: the gradient is NaN wherever the loss is NaN (autograd of abs
# or maximum gives 0 at a NaN).


@_helper
def _e_bce_logits(f32, a, b, c, p0, p1):
    """a: logit, b: target; t softplus(-x) + (1 - t) softplus(x), sharing
    log1p(exp(-|x|)) between the two."""
    if f32:
        u = _log1p_unit(_exp_d(-abs(a)), _ATANH_THIRD_D)
    else:
        u = _log1p_unit(_exp_a(-abs(a)), _ATANH_THIRD_A)
    return u + b * max(-a, 0.0) + (1.0 - b) * max(a, 0.0)


@_helper
def _d_bce_logits(f32, a, b, c, p0, p1):
    """sigmoid(x) - t as (1 - t) sigmoid(x) - t sigmoid(-x): no cancellation
    for t in {0, 1} at any |x|; d/dt = softplus(-x) - softplus(x) = -x."""
    # accurate exp for float32 too: (1 - t) sigmoid(x) - t sigmoid(-x) cancels
    # where soft targets are near sigmoid(x)
    e = _exp_a(-abs(a))
    r = 1.0 / (1.0 + e)
    big = r  # sigmoid(|x|)
    small = e * r  # sigmoid(-|x|)
    pos = a >= 0.0
    s_x = big if pos else small
    s_minus_x = small if pos else big
    return (1.0 - b) * s_x - b * s_minus_x, -a, 0.0


@_helper
def _bce_probs_logs(f32, a):
    """(log p, log(1 - p)) of the probability a."""
    if f32:
        # log(p) and log(1 - p) with one division: 1/(d1 d2) gives both
        e1, m1 = _frexp_sqrt2(a)
        small = abs(a) < 0.25
        w = 1.0 - a
        e2, m2 = _frexp_sqrt2(w)
        n2 = -a if small else m2 - 1.0
        d2 = 2.0 - a if small else m2 + 1.0
        e2 = 0.0 if small else e2
        d1 = m1 + 1.0
        r = 1.0 / (d1 * d2)
        lp = _log_finish(a, e1, (m1 - 1.0) * d2 * r, _ATANH_LOG_D)
        lq = _log_finish(w, e2, n2 * d1 * r, _ATANH_LOG_D)
        lq = np.nan if not a <= 1.0 else lq
    else:
        lp = _log_a(a)
        lq = _log1m_core(a, _ATANH_LOG_A)
    return lp, lq


@_helper
def _e_bce_probs(f32, a, b, c, p0, p1):
    """a: probability, b: target; logs floored at -100."""
    lp, lq = _bce_probs_logs(f32, a)
    return -(b * max(lp, -100.0) + (1.0 - b) * max(lq, -100.0))


@_helper
def _d_bce_probs(f32, a, b, c, p0, p1):
    """-t/p + (1 - t)/(1 - p), as (p - t) / (p (1 - p)) where neither log is
    floored (exact for near-equal p and t); a floored term passes no
    gradient (so 1 - t at p = 0 and -t at p = 1, as the generic code, which
    takes the floor there without forming log 0), half at exactly -100.
    d/dt = log(1 - p) - log(p), floored; for p in [1/3, 2/3], where the two
    logs cancel, 2 atanh(1 - 2p) (1 - 2p is exact there).

    The logs in float64 for float32 inputs too (the draft ones of the loss
    are 5e-11 off, too much where they cancel); no float32 probability has
    a log within that of the -100 floor, so both floor it alike."""
    lp, lq = _bce_probs_logs(False, a)
    kp = 1.0 if lp > -100.0 else (0.5 if lp == -100.0 else 0.0)
    kq = 1.0 if lq > -100.0 else (0.5 if lq == -100.0 else 0.0)
    q = 1.0 - a
    both = (a - b) / (a * q)
    gp = -b / a if kp > 0.0 else 0.0
    gq = (1.0 - b) / q if kq > 0.0 else 0.0
    g = both if kp + kq == 2.0 else kp * gp + kq * gq
    s = 1.0 - 2.0 * a
    s2 = s * s
    mid = 2.0 * s + (2.0 * s) * (s2 * _horner(_ATANH_THIRD_A, s2))
    far = max(lq, -100.0) - max(lp, -100.0)
    return g, mid if abs(s) <= 1.0 / 3.0 else far, 0.0


@_helper
def _e_l1(f32, a, b, c, p0, p1):
    return abs(a - b)


@_helper
def _sign(d):
    """-1, 0 or 1 (0 at +-0, as torch's abs backward)."""
    return 1.0 if d > 0.0 else (-1.0 if d < 0.0 else 0.0)


@_helper
def _d_l1(f32, a, b, c, p0, p1):
    s = _sign(a - b)
    return s, -s, 0.0


@_helper
def _e_mse(f32, a, b, c, p0, p1):
    d = a - b
    return d * d


@_helper
def _d_mse(f32, a, b, c, p0, p1):
    g = 2.0 * (a - b)
    return g, -g, 0.0


@_helper
def _e_smooth_l1(f32, a, b, c, p0, p1):
    """p0: beta > 0."""
    d = abs(a - b)
    dq = d if d < p0 else 0.0
    # (0.5 d) (d / beta): nothing overflows (d * d would under beta = 1e308)
    return (0.5 * dq) * (dq / p0) if d < p0 else d - 0.5 * p0


@_helper
def _d_smooth_l1(f32, a, b, c, p0, p1):
    """d / beta where |d| < beta, else sign(d) (|d| == beta: linear)."""
    d = a - b
    g = d / p0 if abs(d) < p0 else _sign(d)
    return g, -g, 0.0


@_helper
def _e_huber(f32, a, b, c, p0, p1):
    """p0: delta."""
    d = abs(a - b)
    q = min(d, p0)
    linear = p0 * (d - q) if d > q else 0.0  # delta = inf: no inf * 0
    return (0.5 * q) * q + linear


@_helper
def _d_huber(f32, a, b, c, p0, p1):
    """d clipped to [-delta, delta] (both parts agree at |d| == delta)."""
    d = a - b
    g = (p0 if d > 0.0 else -p0) if abs(d) > p0 else d
    return g, -g, 0.0


@_helper
def _e_log_cosh(f32, a, b, c, p0, p1):
    return _logcosh_d(abs(a - b)) if f32 else _logcosh_a(abs(a - b))


@_helper
def _tanh_core(e, small_coef, exp_coef):
    """tanh(e) for e = |error| >= 0, from the quantities ``_logcosh_core``
    forms for the loss (the same expressions, so LLVM computes them once):
    below 1, 2t / (1 + t^2) with t = tanh(e/2) = expm1(e) / (expm1(e) + 2);
    from 1 on, (1 - E) / (1 + E) with E = exp(-2e)."""
    es = min(e, 1.0)
    em1 = es * _horner(small_coef, es)
    t = em1 / (em1 + 2.0)
    near = (2.0 * t) / (1.0 + t * t)
    el = max(e, 1.0)
    s1, s2_, em1l = _expm1_core(-2.0 * el, exp_coef)
    big_e = (em1l + 1.0) * s1 * s2_
    far = (1.0 - big_e) / (1.0 + big_e)
    return near if e < 1.0 else far


@_helper
def _d_log_cosh(f32, a, b, c, p0, p1):
    d = a - b
    if f32:
        t = _tanh_core(abs(d), _EXPM1_SMALL_D, _EXPM1_D)
    else:
        t = _tanh_core(abs(d), _EXPM1_SMALL_A, _EXPM1_A)
    g = t if d > 0.0 else -t  # d = 0: t = 0
    return g, -g, 0.0


@_helper
def _e_hinge(f32, a, b, c, p0, p1):
    return max(1.0 - a * b, 0.0)


@_helper
def _half_step(h):
    """d max(h, 0) / dh: 1 above 0, 1/2 at 0 (torch.maximum's tie), else 0."""
    return 1.0 if h > 0.0 else (0.5 if h == 0.0 else 0.0)


@_helper
def _d_hinge(f32, a, b, c, p0, p1):
    k = _half_step(1.0 - a * b)
    # selected, not multiplied by k = 0: an inf input there gives a 0 loss
    return (-b * k if k > 0.0 else 0.0), (-a * k if k > 0.0 else 0.0), 0.0


@_helper
def _e_margin_ranking(f32, a, b, c, p0, p1):
    """a, b: inputs1, inputs2; c: targets; p0: margin."""
    return max(p0 - c * (a - b), 0.0)


@_helper
def _d_margin_ranking(f32, a, b, c, p0, p1):
    k = _half_step(p0 - c * (a - b))
    g = -c * k if k > 0.0 else 0.0
    return g, -g, (-(a - b) * k if k > 0.0 else 0.0)


@_helper
def _gnll_parts(f32, a, b, c, p0, p1):
    """(loss, d, v, q, q_lo): the Gaussian NLL of mean a, sample b and
    variance c (p0: eps; p1: constant added), with d = b - a, v = max(c, eps)
    and d^2 / v = q + q_lo."""
    v = max(c, p0)
    d = b - a
    if f32:
        # log(v) (to 3e-14) and d^2 / v with one division: 1/(v (m + 1))
        e, m = _frexp_sqrt2(v)
        dm = m + 1.0
        r = 1.0 / (dm * v)
        log_v = _log_finish(v, e, (m - 1.0) * v * r, _ATANH_LOG_M)
        q = (d * d) * (dm * r)
        return 0.5 * (log_v + q) + p1, d, v, q, 0.0
    # float64: a subnormal variance is scaled up by 2**54 before its exponent
    # is read, and d^2 / v is formed as u^2 / w with u = d 2^-a and
    # w = v 2^-2a in [0.17, 0.71) (exact scalings; the generic code's
    # _square_over): neither d * d nor d / v over- or underflows
    #
    # In double-double, as the generic _gaussian_nll_dd (log v and d^2 / v
    # cancel where the loss is near 0): d by TwoSum, d^2 / v by an exact
    # square and an exact remainder, log m = 2 atanh(s) with 2s + 2s^3/3 +
    # 2s^5/5 in double-double.
    sub = v < _F64_TINY
    e, m = _frexp_sqrt2(v * _TWO54 if sub else v)
    e = e - 54.0 if sub else e
    half = np.floor(e * 0.5) + 1.0
    ai = _f64_as_i64(half + _ROUND_MAGIC) - _ROUND_MAGIC_BITS
    ok = v > 0.0 and v < np.inf
    k = _i64_as_f64((1023 - ai) << 52) if ok else 1.0
    z = d - b
    d_lo = (b - (d - z)) + (-a - z)
    u = d * k
    u_lo = d_lo * k
    w = (v * k) * k
    sq = u * u
    sq_lo = _fma(u, u, -sq) + 2.0 * (u * u_lo)
    q = sq / w
    if not ok:
        return 0.5 * (_log_a(v) + q) + p1, d, v, q, 0.0
    q_lo = (_fma(-q, w, sq) + sq_lo) / w
    num = m - 1.0
    den = m + 1.0
    z = den - m
    den_lo = (m - (den - z)) + (1.0 - z)
    sr = num / den
    s_lo = (_fma(-sr, den, num) - sr * den_lo) / den
    s2 = sr * sr
    s2_lo = _fma(sr, sr, -s2) + 2.0 * (sr * s_lo)
    s3 = s2 * sr
    s3_lo = _fma(s2, sr, -s3) + (s2 * s_lo + s2_lo * sr)
    c3 = s3 * _TWO_THIRDS_HI
    c3_lo = _fma(s3, _TWO_THIRDS_HI, -c3) + (s3 * _TWO_THIRDS_LO + s3_lo * _TWO_THIRDS_HI)
    s5 = s3 * s2
    s5_lo = _fma(s3, s2, -s5) + (s3 * s2_lo + s3_lo * s2)
    c5 = s5 * _TWO_FIFTHS_HI
    c5_lo = _fma(s5, _TWO_FIFTHS_HI, -c5) + (s5 * _TWO_FIFTHS_LO + s5_lo * _TWO_FIFTHS_HI)
    rest = (2.0 * (s5 * s2)) * _horner(_ATANH_TAIL7, s2)
    lm = c3 + c5
    z = lm - c3
    lm_lo = ((c3 - (lm - z)) + (c5 - z)) + (c3_lo + c5_lo)
    s1 = 2.0 * sr
    t = s1 + lm
    z = t - s1
    lm_lo = ((s1 - (t - z)) + (lm - z)) + ((2.0 * s_lo + lm_lo) + rest)
    lm = t
    el = e * _LN2_LO
    el_err = _fma(e, _LN2_LO, -el)
    eh = e * _LN2_HI  # exact
    hi = eh + lm
    z = hi - eh
    lo = ((eh - (hi - z)) + (lm - z)) + ((lm_lo + el) + (el_err + e * _LN2_LO2))
    t = hi + q
    z = t - hi
    lo = ((hi - (t - z)) + (q - z)) + (lo + q_lo)
    hi = 0.5 * t
    lo = 0.5 * lo
    if p1 != 0.0:
        t = hi + p1
        z = t - hi
        lo = ((hi - (t - z)) + (p1 - z)) + (lo + _HALF_LOG_2PI_LO)
        hi = t
    total = hi + lo
    loss = total if abs(total) < np.inf else 0.5 * (_log_a(v) + q) + p1
    return loss, d, v, q, q_lo


@_helper
def _e_gaussian_nll(f32, a, b, c, p0, p1):
    """a: mean, b: sample, c: variance; p0: eps; p1: constant added."""
    return _gnll_parts(f32, a, b, c, p0, p1)[0]


@_helper
def _d_gaussian_nll(f32, a, b, c, p0, p1):
    """-d/v, d/v and 0.5 (1/v - d^2/v^2) = 0.5 ((1 - q) - q_lo) / v for the
    variance (exact where d^2 ~ v, the minimum); the variance passes no
    gradient below eps and half of it at eps (torch.maximum's tie; a
    ``clamp(min=eps)`` would pass all of it)."""
    _, d, v, q, q_lo = _gnll_parts(f32, a, b, c, p0, p1)
    g = d / v
    gv = (0.5 * ((1.0 - q) - q_lo)) / v
    k = 1.0 if c > p0 else (0.5 if c == p0 else 0.0)
    return -g, g, gv * k if k > 0.0 else 0.0


# kind -> (loss, derivatives, number of array inputs, weights, direct sums)
# direct: no cancellation in the loss, the kernel has reassoc and adds the
# float64 losses of a block directly (vectorized); else each loss is rounded
# to the input dtype into a block buffer (what the generic path sums).
_ELEMENTWISE = {
    "bce_logits": (_e_bce_logits, _d_bce_logits, 2, True, False),
    "bce_probs": (_e_bce_probs, _d_bce_probs, 2, True, False),
    "l1": (_e_l1, _d_l1, 2, False, True),
    "mse": (_e_mse, _d_mse, 2, False, True),
    "smooth_l1": (_e_smooth_l1, _d_smooth_l1, 2, False, False),
    "huber": (_e_huber, _d_huber, 2, False, False),
    "log_cosh": (_e_log_cosh, _d_log_cosh, 2, False, False),
    "hinge": (_e_hinge, _d_hinge, 2, False, True),
    "margin_ranking": (_e_margin_ranking, _d_margin_ranking, 3, False, False),
    "gaussian_nll": (_e_gaussian_nll, _d_gaussian_nll, 3, False, False),
}


def _elementwise_loops(kind):
    """(loss_loop, grad_loop) of the loss ``kind``: the loops, written once
    here and made per loss (numba inlines them into the kernels, whose
    fast-math flags then apply; as IR, not as typed @overloads, which made
    the first compile 10 to 20 times slower).

    ``loss_loop(x, y, z, w, p0, p1, out, part, b0, b1)``: the losses of
    blocks b0..b1 into ``out`` (the input dtype) when it is not empty, else
    their float64 block sums into ``part[b]``. z (third input) and w
    (weights, size 0: none) are read only by the losses that have them.

    ``grad_loop(x, y, z, w, p0, p1, out, part, gx, gy, gz, b0, b1)``: the
    same losses, bit for bit, and the derivative of each loss with respect
    to each input: gx, gy, gz of the input dtype, each of size n or 0 (not
    wanted; gz: only for the losses with a third input), times the weights
    where there are weights, NaN where the loss is NaN.
    """
    value, deriv, arity, weighted, direct = _ELEMENTWISE[kind]
    three = arity == 3

    @_helper
    def direct_block(x, y, z, w, p0, p1, out, part, buf, b):
        f32 = _f32(x)
        lo = b * BLOCK
        hi = min(lo + BLOCK, x.size)
        if out.size > 0:
            for i in range(lo, hi):
                c = np.float64(z[i]) if three else 0.0
                out[i] = value(f32, np.float64(x[i]), np.float64(y[i]), c, p0, p1)
        else:
            acc = 0.0
            for i in range(lo, hi):
                c = np.float64(z[i]) if three else 0.0
                acc += value(f32, np.float64(x[i]), np.float64(y[i]), c, p0, p1)
            part[b] = acc

    @_helper
    def buffered_block(x, y, z, w, p0, p1, out, part, buf, b):
        f32 = _f32(x)
        lo = b * BLOCK
        hi = min(lo + BLOCK, x.size)
        dst = out[lo:hi] if out.size > 0 else buf[: hi - lo]
        for i in range(lo, hi):
            c = np.float64(z[i]) if three else 0.0
            dst[i - lo] = value(f32, np.float64(x[i]), np.float64(y[i]), c, p0, p1)
        if weighted and w.size > 0:
            for i in range(lo, hi):
                dst[i - lo] = dst[i - lo] * w[i]

    # one block's losses: into out, or summed into part[b] (direct), or into
    # buf, whose sum the caller takes
    block_losses = direct_block if direct else buffered_block

    @_helper
    def loss_loop(x, y, z, w, p0, p1, out, part, b0, b1):
        buf = np.empty(0 if direct or out.size > 0 else BLOCK, dtype=x.dtype)
        for b in range(b0, b1):
            block_losses(x, y, z, w, p0, p1, out, part, buf, b)
            if not direct and out.size == 0:
                part[b] = _block_sum(buf[: min(BLOCK, x.size - b * BLOCK)])

    @_helper
    def grad_loop(x, y, z, w, p0, p1, out, part, gx, gy, gz, b0, b1):
        n = x.size
        f32 = _f32(x)
        none = out.size > 0
        buf = np.empty(0 if direct or none else BLOCK, dtype=x.dtype)
        # gradients not wanted go to scratch blocks
        sx = np.empty(BLOCK if gx.size == 0 else 0, dtype=x.dtype)
        sy = np.empty(BLOCK if gy.size == 0 else 0, dtype=x.dtype)
        sz = np.empty(BLOCK if three and gz.size == 0 else 0, dtype=x.dtype)
        scaled = weighted and w.size > 0
        for b in range(b0, b1):
            lo = b * BLOCK
            hi = min(lo + BLOCK, n)
            # The losses by the forward kernel's own loop: with contract, LLVM
            # fuses a * b + c into an fma or not depending on the loop around
            # it, so a loop that also formed the derivatives could round the
            # losses differently. The derivatives, in a second loop, recompute
            # what they share with the loss (the block is still in cache).
            block_losses(x, y, z, w, p0, p1, out, part, buf, b)
            dst = out[lo:hi] if none else buf[: hi - lo]
            if not direct and not none:
                part[b] = _block_sum(dst)
            dx = gx[lo:hi] if gx.size > 0 else sx[: hi - lo]
            dy = gy[lo:hi] if gy.size > 0 else sy[: hi - lo]
            dz = (gz[lo:hi] if gz.size > 0 else sz[: hi - lo]) if three else dy
            for i in range(lo, hi):
                a = np.float64(x[i])
                bb = np.float64(y[i])
                c = np.float64(z[i]) if three else 0.0
                ga, gb, gc = deriv(f32, a, bb, c, p0, p1)
                if scaled:
                    wi = np.float64(w[i])
                    ga = ga * wi
                    gb = gb * wi
                if direct:  # cheap: the loss again, for its NaNs
                    v = value(f32, a, bb, c, p0, p1)
                    nan = v != v
                else:
                    nan = dst[i - lo] != dst[i - lo]
                dx[i - lo] = np.nan if nan else ga
                dy[i - lo] = np.nan if nan else gb
                if three:
                    dz[i - lo] = np.nan if nan else gc

    return loss_loop, grad_loop


_bce_logits_loss, _bce_logits_grad = _elementwise_loops("bce_logits")
_bce_probs_loss, _bce_probs_grad = _elementwise_loops("bce_probs")
_l1_loss, _l1_grad = _elementwise_loops("l1")
_mse_loss, _mse_grad = _elementwise_loops("mse")
_smooth_l1_loss, _smooth_l1_grad = _elementwise_loops("smooth_l1")
_huber_loss, _huber_grad = _elementwise_loops("huber")
_log_cosh_loss, _log_cosh_grad = _elementwise_loops("log_cosh")
_hinge_loss, _hinge_grad = _elementwise_loops("hinge")
_margin_ranking_loss, _margin_ranking_grad = _elementwise_loops("margin_ranking")
_gaussian_nll_loss, _gaussian_nll_grad = _elementwise_loops("gaussian_nll")


@_exact_kernel
def bce_logits(x, y, w, out, part, b0, b1):
    _bce_logits_loss(x, y, x, w, 0.0, 0.0, out, part, b0, b1)


@_exact_kernel
def bce_logits_grad(x, y, w, out, part, gx, gy, b0, b1):
    _bce_logits_grad(x, y, x, w, 0.0, 0.0, out, part, gx, gy, gx, b0, b1)


@_exact_kernel
def bce_probs(x, y, w, out, part, b0, b1):
    _bce_probs_loss(x, y, x, w, 0.0, 0.0, out, part, b0, b1)


@_exact_kernel
def bce_probs_grad(x, y, w, out, part, gx, gy, b0, b1):
    _bce_probs_grad(x, y, x, w, 0.0, 0.0, out, part, gx, gy, gx, b0, b1)


# l1, mse, hinge: nothing to cancel in these formulas, reassoc is safe, so the
# block sums are accumulated directly (vectorized) in float64


@_kernel
def l1(x, y, out, part, b0, b1):
    _l1_loss(x, y, x, x, 0.0, 0.0, out, part, b0, b1)


@_kernel
def l1_grad(x, y, out, part, gx, gy, b0, b1):
    _l1_grad(x, y, x, x, 0.0, 0.0, out, part, gx, gy, gx, b0, b1)


@_kernel
def mse(x, y, out, part, b0, b1):
    _mse_loss(x, y, x, x, 0.0, 0.0, out, part, b0, b1)


@_kernel
def mse_grad(x, y, out, part, gx, gy, b0, b1):
    _mse_grad(x, y, x, x, 0.0, 0.0, out, part, gx, gy, gx, b0, b1)


# smooth_l1 without reassoc: it would turn (0.5 d) (d / beta) back into a
# d * d that overflows


@_exact_kernel
def smooth_l1(x, y, beta, out, part, b0, b1):
    _smooth_l1_loss(x, y, x, x, beta, 0.0, out, part, b0, b1)


@_exact_kernel
def smooth_l1_grad(x, y, beta, out, part, gx, gy, b0, b1):
    _smooth_l1_grad(x, y, x, x, beta, 0.0, out, part, gx, gy, gx, b0, b1)


@_exact_kernel
def huber(x, y, delta, out, part, b0, b1):
    _huber_loss(x, y, x, x, delta, 0.0, out, part, b0, b1)


@_exact_kernel
def huber_grad(x, y, delta, out, part, gx, gy, b0, b1):
    _huber_grad(x, y, x, x, delta, 0.0, out, part, gx, gy, gx, b0, b1)


@_exact_kernel
def log_cosh(x, y, out, part, b0, b1):
    _log_cosh_loss(x, y, x, x, 0.0, 0.0, out, part, b0, b1)


@_exact_kernel
def log_cosh_grad(x, y, out, part, gx, gy, b0, b1):
    _log_cosh_grad(x, y, x, x, 0.0, 0.0, out, part, gx, gy, gx, b0, b1)


@_kernel
def hinge(x, y, out, part, b0, b1):
    _hinge_loss(x, y, x, x, 0.0, 0.0, out, part, b0, b1)


@_kernel
def hinge_grad(x, y, out, part, gx, gy, b0, b1):
    _hinge_grad(x, y, x, x, 0.0, 0.0, out, part, gx, gy, gx, b0, b1)


@_exact_kernel
def margin_ranking(x, y, z, margin, out, part, b0, b1):
    _margin_ranking_loss(x, y, z, x, margin, 0.0, out, part, b0, b1)


@_exact_kernel
def margin_ranking_grad(x, y, z, margin, out, part, gx, gy, gz, b0, b1):
    _margin_ranking_grad(x, y, z, x, margin, 0.0, out, part, gx, gy, gz, b0, b1)


@_dd_kernel
def gaussian_nll(x, y, z, eps, const, out, part, b0, b1):
    _gaussian_nll_loss(x, y, z, x, eps, const, out, part, b0, b1)


@_dd_kernel
def gaussian_nll_grad(x, y, z, eps, const, out, part, gx, gy, gz, b0, b1):
    _gaussian_nll_grad(x, y, z, x, eps, const, out, part, gx, gy, gz, b0, b1)

# mypy: ignore-errors
# (Triton device code: its parameters are typed by the launch, not annotations)
"""Triton kernels of the row losses: one program per row.

``cosine_similarity_loss``: the rows are scaled exactly by powers of two
(their largest magnitude brought to [1, 2): no square overflows or
underflows, as ``anyloss._embedding`` does), then the dot product and the
two squared norms are sums of exact products (TwoProduct) with every
rounding error kept (:func:`~._triton_math.pair_sum`): the dot product may
cancel far below its terms. The forward keeps, per row, what the backward
needs: the cosine, the two scaled squared norms, the two scales' exponents
and whether ``eps`` bounded the product of the norms.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_math import exponent, pair_sum, pow2, two_prod, two_sum

__all__ = ["cosine_backward", "cosine_forward"]

STATS = tl.constexpr(6)  # per row: cos, |u1|^2, |u2|^2, e1, e2, eps bound (1.0) or not


@triton.jit
def _row_max_abs(X, row_stride, row, D, BLOCK: tl.constexpr):
    """(the largest finite |x| of the row, 1.0 if it holds a NaN or inf)."""
    cols = tl.arange(0, BLOCK)
    m = tl.zeros((), tl.float32)
    bad = tl.zeros((), tl.float32)
    for start in range(0, D, BLOCK):
        c = start + cols
        x = tl.abs(tl.load(X + row * row_stride + c, mask=c < D, other=0.0).to(tl.float32))
        finite = x < float("inf")
        bad += tl.sum(tl.where((c < D) & (~finite), 1.0, 0.0), 0)
        m = tl.maximum(m, tl.max(tl.where(finite, x, 0.0), 0))
    return m, bad


@triton.jit
def cosine_forward(A, B, a_stride, b_stride, OUT, SAVED, D, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ma, bad_a = _row_max_abs(A, a_stride, row, D, BLOCK)
    mb, bad_b = _row_max_abs(B, b_stride, row, D, BLOCK)
    ea, eb = exponent(ma), exponent(mb)
    fa1, fa2 = pow2(-ea)
    fb1, fb2 = pow2(-eb)
    zero = tl.zeros((), tl.float32)
    dot, dot_lo, na, na_lo, nb, nb_lo = zero, zero, zero, zero, zero, zero
    for start in range(0, D, BLOCK):
        c = start + cols
        inside = c < D
        a = tl.load(A + row * a_stride + c, mask=inside, other=0.0).to(tl.float32)
        b = tl.load(B + row * b_stride + c, mask=inside, other=0.0).to(tl.float32)
        a = tl.where(tl.abs(a) < float("inf"), a, 0.0)  # (non-finite rows: NaN below)
        b = tl.where(tl.abs(b) < float("inf"), b, 0.0)
        u = (a * fa1) * fa2
        v = (b * fb1) * fb2
        p, pl = two_prod(u, v)
        h, hl = pair_sum(p, pl, 0)
        dot, s = two_sum(dot, h)
        dot_lo += s + hl
        p, pl = two_prod(u, u)
        h, hl = pair_sum(p, pl, 0)
        na, s = two_sum(na, h)
        na_lo += s + hl
        p, pl = two_prod(v, v)
        h, hl = pair_sum(p, pl, 0)
        nb, s = two_sum(nb, h)
        nb_lo += s + hl
    # |u||v| as a double word: sqrt of each squared norm, corrected once
    ra = tl.sqrt(na)
    rb = tl.sqrt(nb)
    ra_lo = (tl.math.fma(-ra, ra, na) + na_lo) / (2.0 * tl.where(na > 0.0, ra, 1.0))
    rb_lo = (tl.math.fma(-rb, rb, nb) + nb_lo) / (2.0 * tl.where(nb > 0.0, rb, 1.0))
    n, n_lo = two_prod(ra, rb)
    n_lo += ra * rb_lo + ra_lo * rb
    # |x1||x2| = n 2^(ea + eb) >= eps, decided in steps that over- or underflow
    # only in the right direction
    ga1, ga2 = pow2(ea)
    gb1, gb2 = pow2(eb)
    large = (((n * ga1) * ga2) * gb1) * gb2 >= eps
    d = dot + dot_lo
    den = tl.where(large & (n > 0.0), n, 1.0)
    q = d / den
    r = tl.math.fma(-q, n, d)  # (exact: the quotient's remainder)
    q = q + (r + (dot_lo - (d - dot)) - q * n_lo) / den
    by_norms = tl.where(n > 0.0, q, float("nan"))
    by_eps = d * ((((ga1 * ga2) / tl.where(large | (eps <= 0.0), 1.0, eps)) * gb1) * gb2)
    by_eps = tl.where(eps > 0.0, by_eps, 0.0)
    cos = tl.where(large, by_norms, by_eps)
    cos = tl.where((bad_a + bad_b) > 0.0, float("nan"), cos)
    tl.store(OUT + row, cos)
    tl.store(SAVED + row * STATS + 0, cos)
    tl.store(SAVED + row * STATS + 1, na + na_lo)
    tl.store(SAVED + row * STATS + 2, nb + nb_lo)
    tl.store(SAVED + row * STATS + 3, ea)
    tl.store(SAVED + row * STATS + 4, eb)
    tl.store(SAVED + row * STATS + 5, tl.where(large, 0.0, 1.0))


@triton.jit
def cosine_backward(
    A,
    B,
    a_stride,
    b_stride,
    SAVED,
    G,
    DA,
    DB,
    D,
    eps,
    WANT_A: tl.constexpr,
    WANT_B: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """d cos / d x1 = (v / (|u||v|) - cos u / |u|^2) / 2^ea, and the same for
    x2; where eps bounded the norms, x2 / eps and x1 / eps."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    cos = tl.load(SAVED + row * STATS + 0)
    na = tl.load(SAVED + row * STATS + 1)
    nb = tl.load(SAVED + row * STATS + 2)
    ea = tl.load(SAVED + row * STATS + 3)
    eb = tl.load(SAVED + row * STATS + 4)
    bounded = tl.load(SAVED + row * STATS + 5) > 0.0
    eps_safe = tl.where(eps > 0.0, eps, 1.0)  # (eps = 0 never bounds the norms)
    g = tl.load(G + row).to(tl.float32)
    fa1, fa2 = pow2(-ea)
    fb1, fb2 = pow2(-eb)
    n = tl.sqrt(na) * tl.sqrt(nb)
    nz = tl.where(n > 0.0, n, 1.0)
    na_safe = tl.where(na > 0.0, na, 1.0)
    nb_safe = tl.where(nb > 0.0, nb, 1.0)
    for start in range(0, D, BLOCK):
        c = start + cols
        inside = c < D
        a = tl.load(A + row * a_stride + c, mask=inside, other=0.0).to(tl.float32)
        b = tl.load(B + row * b_stride + c, mask=inside, other=0.0).to(tl.float32)
        u = (a * fa1) * fa2
        v = (b * fb1) * fb2
        if WANT_A:
            da = ((v / nz - cos * (u / na_safe)) * fa1) * fa2
            da = tl.where(bounded, b / eps_safe, da)
            tl.store(DA + row * D + c, (g * da).to(DA.dtype.element_ty), mask=inside)
        if WANT_B:
            db = ((u / nz - cos * (v / nb_safe)) * fb1) * fb2
            db = tl.where(bounded, a / eps_safe, db)
            tl.store(DB + row * D + c, (g * db).to(DB.dtype.element_ty), mask=inside)

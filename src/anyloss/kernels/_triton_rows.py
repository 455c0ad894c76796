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

``cosine_embedding_loss``: the same scales, sums, norms and cosine (shared),
the cosine as a double word; ``1 - cos`` of a similar pair (target 1) as
``sum (v1 |v2| - v2 |v1|)^2 / (2 |v1|^2 |v2|^2)``, ``v = x / max |x|`` as
double words (two more passes over the row: the norms, then the sum): no
cancellation for nearly parallel vectors, and exactly 0 for parallel ones
(``x2 = k x1``: ``v1 = v2``, the quotients of the same real numbers);
``max(cos - margin, 0)`` of a dissimilar pair (target -1) from the
double-word cosine, rounded once. The backward: ``d loss / d cos`` per row
times d cos / d x, by coefficients of the row rounded once from the double
words (``1 / (|u1||u2|)``, ``cos / |u1|^2``, ``cos / |u2|^2``).

``triplet_loss``: ``max(d(a, pos) - d(a, neg) + margin, 0)``. The inputs
are halved in a row where one exceeds half the largest float (the
differences are then finite) and the differences, exact double words
(TwoSum), are divided by powers of two: each distance at its own scale (its
largest difference, or the ``p``-th root of ``eps``), their gap at the
larger of the two. ``p = 2``: the gap is ``(S_p - S_n) / (d_p + d_n)``, the
numerator ``sum dp^2 - dn^2`` summed exactly (three words per lane, the
first two of them error-free sums: for distances equal up to float32
rounding it is ``2^-30`` of the sums); ``p = 1``: ``sum |dp| - |dn|``,
likewise exact; other ``p > 1``: each distance in double words
(``exp(p log |x|)`` by :func:`~._triton_math.log_pair` and
:func:`~._triton_math.exp_dd`, about ``2^-43``), their difference in
double words: not exact, the loss within 4 ulp unless ``d_p - d_n + margin``
cancels below about ``2^-19`` of the distances (the generic code's float64
difference cancels too, from ``2^-52``). A row with an infinite or NaN entry takes the plain
formula's answer (NaN, inf or 0: ``anyloss._embedding._plain_where_infinite``)
and a NaN gradient.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_math import (
    dd_add,
    dd_mul,
    exp_dd,
    exp_pair,
    exponent,
    fast_two_sum,
    log_pair,
    pair_sum,
    pow2,
    two_prod,
    two_sum,
)

__all__ = [
    "cosine_backward",
    "cosine_embedding_backward",
    "cosine_embedding_forward",
    "cosine_forward",
    "triplet_backward",
    "triplet_forward",
]

STATS = tl.constexpr(6)  # per row: cos, |u1|^2, |u2|^2, e1, e2, eps bound (1.0) or not
# per row: 1 / (|u1||u2|), cos / |u1|^2, cos / |u2|^2, e1, e2, eps bound or not, d loss / d cos
EMBEDDING_STATS = tl.constexpr(7)
# per row: d loss / d (d_p - d_n) (NaN in a row with a non-finite entry), h, the
# exponents of the two distances' scales, then for p = 2 the reciprocals of the
# scaled distances, for other p their logarithms (double words)
TRIPLET_STATS = tl.constexpr(8)
FLT_HALF_MAX = tl.constexpr(1.7014117331926443e38)  # 2^127


# -- shared: scales, double-word sums, norms -------------------------------------------


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
def _scale_of(m):
    """``(e, f1, f2)``: ``2^e`` the power of two at or below ``m > 0`` (1 for
    0), ``2^-e = f1 f2`` (two normal factors: multiplying by them is exact)."""
    e = exponent(m)
    f1, f2 = pow2(-e)
    return e, f1, f2


@triton.jit
def _times_pow2(x, e):
    """``x 2^e`` for an integer-valued float ``e`` in [-252, 252] (exact
    unless the result is subnormal)."""
    f1, f2 = pow2(e)
    return (x * f1) * f2


@triton.jit
def _add_sum(s, s_lo, p, pl):
    """The double word ``s + s_lo`` plus the sum of the block's double words
    ``p + pl`` (every rounding error kept)."""
    h, hl = pair_sum(p, pl, 0)
    s, e = two_sum(s, h)
    return s, s_lo + (e + hl)


@triton.jit
def _cosine_sums(A, B, a_stride, b_stride, row, D, fa1, fa2, fb1, fb2, BLOCK: tl.constexpr):
    """The dot product and the two squared norms of the rows scaled by
    ``fa1 fa2`` and ``fb1 fb2``, as double words (non-finite entries as 0)."""
    cols = tl.arange(0, BLOCK)
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
        dot, dot_lo = _add_sum(dot, dot_lo, p, pl)
        p, pl = two_prod(u, u)
        na, na_lo = _add_sum(na, na_lo, p, pl)
        p, pl = two_prod(v, v)
        nb, nb_lo = _add_sum(nb, nb_lo, p, pl)
    return dot, dot_lo, na, na_lo, nb, nb_lo


@triton.jit
def _dd_sqrt(s, s_lo):
    """``sqrt(s + s_lo)`` as ``(r, r_lo)``: the rounded root, corrected once."""
    r = tl.sqrt(s)
    return r, (tl.math.fma(-r, r, s) + s_lo) / (2.0 * tl.where(s > 0.0, r, 1.0))


@triton.jit
def _norms(na, na_lo, nb, nb_lo):
    """|u1||u2| as a double word (not normalized): the root of each squared
    norm, corrected once."""
    ra, ra_lo = _dd_sqrt(na, na_lo)
    rb, rb_lo = _dd_sqrt(nb, nb_lo)
    n, n_lo = two_prod(ra, rb)
    n_lo += ra * rb_lo + ra_lo * rb
    return n, n_lo


@triton.jit
def _at_least(n, ea, eb, eps):
    """|x1||x2| = n 2^(ea + eb) >= eps, decided in steps that over- or
    underflow only in the right direction."""
    ga1, ga2 = pow2(ea)
    gb1, gb2 = pow2(eb)
    return (((n * ga1) * ga2) * gb1) * gb2 >= eps


@triton.jit
def _cos_by_norms(dot, dot_lo, n, n_lo, large):
    """``(q, q_lo)``, ``(dot + dot_lo) / (n + n_lo)`` as a double word (not
    normalized; meaningless where not ``large & (n > 0)``)."""
    d = dot + dot_lo
    den = tl.where(large & (n > 0.0), n, 1.0)
    q = d / den
    r = tl.math.fma(-q, n, d)  # (exact: the quotient's remainder)
    return q, (r + (dot_lo - (d - dot)) - q * n_lo) / den


@triton.jit
def _quotient(a, a_lo, b, b_lo):
    """``(a + a_lo) / (b + b_lo)`` rounded (``b > 0``; within about an ulp)."""
    bs = tl.where(b > 0.0, b, 1.0)
    q = a / bs
    return q + (tl.math.fma(-q, bs, a) + a_lo - q * b_lo) / bs


@triton.jit
def _recip(d, d_lo):
    """``1 / (d + d_lo)`` rounded (within an ulp), 0 for ``d = 0`` (a zero
    distance: the subgradient 0, as torch's norm)."""
    ok = d > 0.0
    ds = tl.where(ok, d, 1.0)
    i = 1.0 / ds
    i = i + i * (tl.math.fma(-ds, i, 1.0) - d_lo * i)
    return tl.where(ok, i, 0.0)


@triton.jit
def _load_finite(X, stride, row, c, inside):
    """A block of the row in float32, its non-finite entries as 0 (such a
    row's result is replaced)."""
    x = tl.load(X + row * stride + c, mask=inside, other=0.0).to(tl.float32)
    return tl.where(tl.abs(x) < float("inf"), x, 0.0)


# -- cosine similarity -------------------------------------------------------------------


@triton.jit
def cosine_forward(A, B, a_stride, b_stride, OUT, SAVED, D, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    ma, bad_a = _row_max_abs(A, a_stride, row, D, BLOCK)
    mb, bad_b = _row_max_abs(B, b_stride, row, D, BLOCK)
    ea, fa1, fa2 = _scale_of(ma)
    eb, fb1, fb2 = _scale_of(mb)
    dot, dot_lo, na, na_lo, nb, nb_lo = _cosine_sums(
        A, B, a_stride, b_stride, row, D, fa1, fa2, fb1, fb2, BLOCK
    )
    # |u||v| as a double word: sqrt of each squared norm, corrected once
    n, n_lo = _norms(na, na_lo, nb, nb_lo)
    large = _at_least(n, ea, eb, eps)
    q, q_lo = _cos_by_norms(dot, dot_lo, n, n_lo, large)
    by_norms = tl.where(n > 0.0, q + q_lo, float("nan"))
    ga1, ga2 = pow2(ea)
    gb1, gb2 = pow2(eb)
    d = dot + dot_lo
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


# -- cosine embedding --------------------------------------------------------------------


@triton.jit
def _dot_over_eps(dot, dot_lo, ea, eb, eps_hi, eps_lo):
    """``(dot + dot_lo) 2^(ea + eb) / (eps_hi + eps_lo)`` as a double word, for
    ``|x1||x2| < eps`` (the result is below 1 in magnitude); 0 for eps = 0.
    ``eps = 2^k m``, ``m`` in [1, 2): the quotient by ``m``, then times
    ``2^(ea + eb - k)`` in one exact step."""
    ok = eps_hi > 0.0
    k, f1, f2 = _scale_of(eps_hi)
    m = (tl.where(ok, eps_hi, 1.0) * f1) * f2
    m_lo = (eps_lo * f1) * f2
    q = dot / m
    r = tl.math.fma(-q, m, dot)
    q_lo = (r + dot_lo - q * m_lo) / m
    e = tl.minimum(tl.maximum(ea + eb - k, -252.0), 252.0)  # (beyond: 0 either way)
    return tl.where(ok, _times_pow2(q, e), 0.0), tl.where(ok, _times_pow2(q_lo, e), 0.0)


@triton.jit
def _over(x, m):
    """``x / m`` as a double word (the remainder exact by ``fma``): for
    ``x2 = k x1`` and ``m2 = k m1`` both quotients are the same (correctly
    rounded quotients of the same real number)."""
    q = x / m
    return q, tl.math.fma(-q, m, x) / m


@triton.jit
def _one_minus_cos(A, B, a_stride, b_stride, row, D, ma, mb, BLOCK: tl.constexpr):
    """``1 - cos = |v1/|v1| - v2/|v2||^2 / 2 = sum t^2 / (2 |v1|^2 |v2|^2)``,
    ``t = v1 |v2| - v2 |v1|`` in double words per lane, ``v = x / max |x|``
    (double words): for nearly parallel vectors ``t`` is far below its terms
    and kept to about 2^-47 of them; for parallel ones (``x2 = k x1``,
    ``k > 0``) ``v1 = v2``, so ``t = 0`` exactly. Two passes: the norms,
    then ``t``."""
    cols = tl.arange(0, BLOCK)
    zero = tl.zeros((), tl.float32)
    na, na_lo, nb, nb_lo = zero, zero, zero, zero
    for start in range(0, D, BLOCK):
        c = start + cols
        inside = c < D
        a = tl.load(A + row * a_stride + c, mask=inside, other=0.0).to(tl.float32)
        b = tl.load(B + row * b_stride + c, mask=inside, other=0.0).to(tl.float32)
        u, u_lo = _over(a, ma)
        v, v_lo = _over(b, mb)
        sq, sq_e = two_prod(u, u)
        na, na_lo = _add_sum(na, na_lo, sq, sq_e + 2.0 * (u * u_lo))
        sq, sq_e = two_prod(v, v)
        nb, nb_lo = _add_sum(nb, nb_lo, sq, sq_e + 2.0 * (v * v_lo))
    ra, ra_lo = _dd_sqrt(na, na_lo)
    rb, rb_lo = _dd_sqrt(nb, nb_lo)
    s, s_lo = zero, zero
    for start in range(0, D, BLOCK):
        c = start + cols
        inside = c < D
        a = tl.load(A + row * a_stride + c, mask=inside, other=0.0).to(tl.float32)
        b = tl.load(B + row * b_stride + c, mask=inside, other=0.0).to(tl.float32)
        u, u_lo = _over(a, ma)
        v, v_lo = _over(b, mb)
        p1, e1 = two_prod(u, rb)
        p2, e2 = two_prod(v, ra)
        t, t_e = two_sum(p1, -p2)
        lo = (e1 - e2) + ((u * rb_lo + u_lo * rb) - (v * ra_lo + v_lo * ra))
        t, t_lo = two_sum(t, t_e + lo)
        sq, sq_e = two_prod(t, t)
        s, s_lo = _add_sum(s, s_lo, sq, sq_e + 2.0 * (t * t_lo))
    den, den_lo = dd_mul(na, na_lo, nb, nb_lo)
    q = s / den
    r = tl.math.fma(-q, den, s)
    q_lo = (r + s_lo - q * den_lo) / den
    return 0.5 * q, 0.5 * q_lo


@triton.jit
def cosine_embedding_forward(
    A,
    B,
    Y,
    a_stride,
    b_stride,
    OUT,
    SAVED,
    D,
    eps_hi,
    eps_lo,
    m_hi,
    m_lo,
    BLOCK: tl.constexpr,
):
    """The loss of a row: ``Y`` holds 1 (similar pair), -1 (dissimilar) or 0
    (any other target: a loss of 0) per row; ``eps`` and the margin are
    double words (``hi + lo``)."""
    row = tl.program_id(0).to(tl.int64)
    ma, bad_a = _row_max_abs(A, a_stride, row, D, BLOCK)
    mb, bad_b = _row_max_abs(B, b_stride, row, D, BLOCK)
    ea, fa1, fa2 = _scale_of(ma)
    eb, fb1, fb2 = _scale_of(mb)
    dot, dot_lo, na, na_lo, nb, nb_lo = _cosine_sums(
        A, B, a_stride, b_stride, row, D, fa1, fa2, fb1, fb2, BLOCK
    )
    n, n_lo = _norms(na, na_lo, nb, nb_lo)
    # (a zero vector is bounded by eps: its cosine is dot / eps = 0)
    large = (n > 0.0) & _at_least(n, ea, eb, eps_hi)
    q, q_lo = _cos_by_norms(dot, dot_lo, n, n_lo, large)
    e, e_lo = _dot_over_eps(dot, dot_lo, ea, eb, eps_hi, eps_lo)
    cos, cos_lo = fast_two_sum(tl.where(large, q, e), tl.where(large, q_lo, e_lo))
    y = tl.load(Y + row)
    bad = (bad_a + bad_b) > 0.0
    # similar: 1 - cos (by the unit vectors where the norms are large)
    r, r_lo = two_sum(-e, 1.0)
    similar = r + (r_lo - e_lo)
    if (y == 1.0) & large & (~bad):
        half, half_lo = _one_minus_cos(A, B, a_stride, b_stride, row, D, ma, mb, BLOCK)
        similar = half + half_lo
    # dissimilar: max(cos - margin, 0), rounded once
    r, r_lo = two_sum(cos, -m_hi)
    pre = r + (r_lo + (cos_lo - m_lo))
    dissimilar = tl.where(pre > 0.0, pre, 0.0)
    hinge = tl.where(pre > 0.0, 1.0, tl.where(pre == 0.0, 0.5, 0.0))
    loss = tl.where(y == 1.0, similar, tl.where(y == -1.0, dissimilar, 0.0))
    coef = tl.where(y == 1.0, -1.0, tl.where(y == -1.0, hinge, 0.0))
    coef = tl.where(large | (eps_hi > 0.0), coef, 0.0)  # (eps = 0 bounds: cos is 0, constant)
    loss = tl.where(bad & (y * y == 1.0), float("nan"), loss)
    coef = tl.where(bad, float("nan"), coef)
    # d cos / d u = u2 / (|u1||u2|) - cos u1 / |u1|^2: the coefficients from
    # the double words, each rounded once (0 where eps bounds the norms)
    k1 = tl.where(large, _recip(n, n_lo), 0.0)
    ka = tl.where(large, _quotient(cos, cos_lo, na, na_lo), 0.0)
    kb = tl.where(large, _quotient(cos, cos_lo, nb, nb_lo), 0.0)
    tl.store(OUT + row, loss)
    tl.store(SAVED + row * EMBEDDING_STATS + 0, k1)
    tl.store(SAVED + row * EMBEDDING_STATS + 1, ka)
    tl.store(SAVED + row * EMBEDDING_STATS + 2, kb)
    tl.store(SAVED + row * EMBEDDING_STATS + 3, ea)
    tl.store(SAVED + row * EMBEDDING_STATS + 4, eb)
    tl.store(SAVED + row * EMBEDDING_STATS + 5, tl.where(large, 0.0, 1.0))
    tl.store(SAVED + row * EMBEDDING_STATS + 6, coef)


@triton.jit
def cosine_embedding_backward(
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
    """``g c`` (``c = d loss / d cos`` per row) times d cos / d x1 =
    ``(u2 k1 - u1 ka) / 2^ea`` (``k1 = 1 / (|u1||u2|)``, ``ka = cos / |u1|^2``,
    one rounding by ``fma``), the same for x2; where eps bounds the norms,
    x2 / eps and x1 / eps."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    k1 = tl.load(SAVED + row * EMBEDDING_STATS + 0)
    ka = tl.load(SAVED + row * EMBEDDING_STATS + 1)
    kb = tl.load(SAVED + row * EMBEDDING_STATS + 2)
    ea = tl.load(SAVED + row * EMBEDDING_STATS + 3)
    eb = tl.load(SAVED + row * EMBEDDING_STATS + 4)
    bounded = tl.load(SAVED + row * EMBEDDING_STATS + 5) > 0.0
    g = tl.load(G + row).to(tl.float32) * tl.load(SAVED + row * EMBEDDING_STATS + 6)
    eps_safe = tl.where(eps > 0.0, eps, 1.0)  # (eps = 0 bounds only zero vectors: c = 0)
    fa1, fa2 = pow2(-ea)
    fb1, fb2 = pow2(-eb)
    for start in range(0, D, BLOCK):
        c = start + cols
        inside = c < D
        a = _load_finite(A, a_stride, row, c, inside)
        b = _load_finite(B, b_stride, row, c, inside)
        u = (a * fa1) * fa2
        v = (b * fb1) * fb2
        # (g first: g = 0 where 2^-ea overflows, a subnormal row, gives 0)
        if WANT_A:
            da = ((g * tl.math.fma(v, k1, -(u * ka))) * fa1) * fa2
            da = tl.where(bounded, g * (b / eps_safe), da)
            tl.store(DA + row * D + c, da.to(DA.dtype.element_ty), mask=inside)
        if WANT_B:
            db = ((g * tl.math.fma(u, k1, -(v * kb))) * fb1) * fb2
            db = tl.where(bounded, g * (a / eps_safe), db)
            tl.store(DB + row * D + c, db.to(DB.dtype.element_ty), mask=inside)


# -- triplet -----------------------------------------------------------------------------


@triton.jit
def _classes(a, b):
    """Per lane: whether ``a - b`` is NaN, and whether it is infinite (found
    without forming ``inf - inf``)."""
    fa = tl.abs(a) < float("inf")
    fb = tl.abs(b) < float("inf")
    nan = (a != a) | (b != b) | ((~fa) & (~fb) & (a == b))
    return nan, (~nan) & ((~fa) | (~fb))


@triton.jit
def _triplet_scan(A, P, N, a_stride, p_stride, n_stride, row, D, BLOCK: tl.constexpr):
    """The row's largest finite |entry|, its largest finite halved differences
    |a/2 - pos/2| and |a/2 - neg/2| (never overflowing), and the counts of
    NaN differences and of infinite ones (a - pos, a - neg)."""
    cols = tl.arange(0, BLOCK)
    zero = tl.zeros((), tl.float32)
    big, peak_p, peak_n, nan, inf_p, inf_n = zero, zero, zero, zero, zero, zero
    for start in range(0, D, BLOCK):
        c = start + cols
        inside = c < D
        a = tl.load(A + row * a_stride + c, mask=inside, other=0.0).to(tl.float32)
        pos = tl.load(P + row * p_stride + c, mask=inside, other=0.0).to(tl.float32)
        neg = tl.load(N + row * n_stride + c, mask=inside, other=0.0).to(tl.float32)
        nan_p, infinite_p = _classes(a, pos)
        nan_n, infinite_n = _classes(a, neg)
        nan += tl.sum(tl.where(nan_p | nan_n, 1.0, 0.0), 0)
        inf_p += tl.sum(tl.where(infinite_p, 1.0, 0.0), 0)
        inf_n += tl.sum(tl.where(infinite_n, 1.0, 0.0), 0)
        ok = ~(nan_p | nan_n | infinite_p | infinite_n)
        a = tl.where(ok, a, 0.0)
        pos = tl.where(ok, pos, 0.0)
        neg = tl.where(ok, neg, 0.0)
        m = tl.maximum(tl.maximum(tl.abs(a), tl.abs(pos)), tl.abs(neg))
        big = tl.maximum(big, tl.max(m, 0))
        peak_p = tl.maximum(peak_p, tl.max(tl.abs(0.5 * a - 0.5 * pos), 0))
        peak_n = tl.maximum(peak_n, tl.max(tl.abs(0.5 * a - 0.5 * neg), 0))
    return big, peak_p, peak_n, nan, inf_p, inf_n


@triton.jit
def _diff(a, b, h, f1, f2):
    """``(a h - b h) 2^-e`` as an exact double word (``2^-e = f1 f2``; exact
    unless subnormal)."""
    d, d_lo = two_sum(a * h, -(b * h))
    return (d * f1) * f2, (d_lo * f1) * f2


@triton.jit
def _triple_combine(a0, a1, a2, b0, b1, b2):
    s0, e0 = two_sum(a0, b0)
    s1, e1 = two_sum(a1, b1)
    s1, e2 = two_sum(s1, e0)
    return s0, s1, (a2 + b2) + (e1 + e2)


@triton.jit
def _triple_finish(t0, t1, t2):
    """``t0 + t1 + t2`` as a double word."""
    s, e = two_sum(t0, t1)
    return two_sum(s, e + t2)


@triton.jit
def _square_gap_words(xh, xl, yh, yl):
    """``x^2 - y^2`` of the double words ``x``, ``y`` as three words per lane,
    of magnitudes about ``x^2``, ``2^-24 x^2`` and ``2^-48 x^2``: the first
    two are exact (every square and cross product by TwoProduct, every sum
    of them by TwoSum); only the third, below ``2^-48``, rounds."""
    P1, p1 = two_prod(xh, xh)
    Q1, q1 = two_prod(yh, yh)
    P2, p2 = two_prod(xh, xl)
    Q2, q2 = two_prod(yh, yl)
    t0, e0 = two_sum(P1, -Q1)
    u, f1 = two_sum(p1, -q1)
    v, f2 = two_sum(2.0 * P2, -2.0 * Q2)
    w, f3 = two_sum(u, v)
    t1, f4 = two_sum(w, e0)
    t2 = ((f1 + f2) + (f3 + f4)) + (2.0 * (p2 - q2) + (xl * xl - yl * yl))
    return t0, t1, t2


@triton.jit
def _abs_gap_words(xh, xl, yh, yl):
    """``|x| - |y|`` of the double words ``x``, ``y`` as three words per lane
    (the first two exact sums)."""
    xl = tl.where(xh < 0.0, -xl, xl)
    yl = tl.where(yh < 0.0, -yl, yl)
    t0, e0 = two_sum(tl.abs(xh), -tl.abs(yh))
    u, f1 = two_sum(xl, -yl)
    t1, f2 = two_sum(u, e0)
    return t0, t1, f1 + f2


@triton.jit
def _pow_dd(x, x_lo, p_hi, p_lo):
    """``|x + x_lo|^p`` as a double word for ``|x| < 1`` (0 for ``x = 0``):
    ``exp(p log |x|)``, the logarithm and the exponential double words within
    about 2^-44."""
    ax = tl.abs(x)
    pos = ax > 0.0
    safe = tl.where(pos, ax, 1.0)
    lg, lg_lo = log_pair(safe)
    lg_lo = lg_lo + tl.where(x < 0.0, -x_lo, x_lo) / safe
    z, z_lo = dd_mul(lg, lg_lo, p_hi, p_lo)
    e, e_lo = exp_dd(z, z_lo)
    return tl.where(pos, e, 0.0), tl.where(pos, e_lo, 0.0)


@triton.jit
def _root_dd(s, s_lo, p_hi, p_lo):
    """``(s + s_lo)^(1/p)`` and ``log(s + s_lo) / p`` as double words
    (0 and 0 for ``s = 0``); ``s`` below about ``D + 2^p``."""
    pos = s > 0.0
    safe = tl.where(pos, s, 1.0)
    lg, lg_lo = log_pair(safe)
    lg_lo = lg_lo + tl.where(pos, s_lo, 0.0) / safe
    q = lg / p_hi
    r = tl.math.fma(-q, p_hi, lg)
    q, q_lo = fast_two_sum(q, (r + lg_lo - q * p_lo) / p_hi)
    e, e_lo = exp_dd(q, q_lo)
    return (
        tl.where(pos, e, 0.0),
        tl.where(pos, e_lo, 0.0),
        tl.where(pos, q, 0.0),
        tl.where(pos, q_lo, 0.0),
    )


@triton.jit
def triplet_forward(
    A,
    P,
    N,
    a_stride,
    p_stride,
    n_stride,
    OUT,
    SAVED,
    D,
    p_hi,
    p_lo,
    eps_hi,
    eps_lo,
    root_hi,
    root_lo,
    m_hi,
    m_lo,
    KIND: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``KIND``: 1 or 2 (``p``), 0 for another ``p > 1``. ``root``: the
    ``p``-th root of ``eps``, and ``eps``, ``p``, the margin as double words
    (``hi + lo``)."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    zero = tl.zeros((), tl.float32)
    big, peak_p, peak_n, nan, inf_p, inf_n = _triplet_scan(
        A, P, N, a_stride, p_stride, n_stride, row, D, BLOCK
    )
    h = tl.where(big > FLT_HALF_MAX, 0.5, 1.0)
    # each distance's scale: a power of two at its largest difference (times
    # h), or at root h; for other p twice that (the scaled entries below 1)
    peak_p = tl.maximum(peak_p * (2.0 * h), root_hi * h)
    peak_n = tl.maximum(peak_n * (2.0 * h), root_hi * h)
    ep = exponent(peak_p)
    en = exponent(peak_n)
    if KIND == 0:
        ep += 1.0
        en += 1.0
    ec = tl.maximum(ep, en)  # the gap's
    fp1, fp2 = pow2(-ep)
    fn1, fn2 = pow2(-en)
    fc1, fc2 = pow2(-ec)
    gp1, gp2 = pow2(ep - ec)  # (at most 1)
    gn1, gn2 = pow2(en - ec)
    s0, s1 = zero, zero  # the saved stats of p (1/d or log d)
    s2, s3 = zero, zero
    if KIND == 1:
        # sum |dp| - |dn| (eps cancels), exactly
        n0, n1, n2 = zero, zero, zero
        for start in range(0, D, BLOCK):
            c = start + cols
            inside = c < D
            a = _load_finite(A, a_stride, row, c, inside)
            pos = _load_finite(P, p_stride, row, c, inside)
            neg = _load_finite(N, n_stride, row, c, inside)
            xh, xl = _diff(a, pos, h, fc1, fc2)
            yh, yl = _diff(a, neg, h, fc1, fc2)
            t0, t1, t2 = _abs_gap_words(xh, xl, yh, yl)
            b0, b1, b2 = tl.reduce((t0, t1, t2), 0, _triple_combine)
            n0, n1, n2 = _triple_combine(n0, n1, n2, b0, b1, b2)
        g, g_lo = _triple_finish(n0, n1, n2)
    elif KIND == 2:
        # (S_p - S_n) / (d_p + d_n): the numerator exactly, at the common scale
        n0, n1, n2 = zero, zero, zero
        sp, sp_lo, sn, sn_lo = zero, zero, zero, zero
        for start in range(0, D, BLOCK):
            c = start + cols
            inside = c < D
            a = _load_finite(A, a_stride, row, c, inside)
            pos = _load_finite(P, p_stride, row, c, inside)
            neg = _load_finite(N, n_stride, row, c, inside)
            xh, xl = _diff(a, pos, h, fp1, fp2)
            yh, yl = _diff(a, neg, h, fn1, fn2)
            sq, sq_e = two_prod(xh, xh)
            sp, sp_lo = _add_sum(sp, sp_lo, sq, sq_e + 2.0 * (xh * xl))
            sq, sq_e = two_prod(yh, yh)
            sn, sn_lo = _add_sum(sn, sn_lo, sq, sq_e + 2.0 * (yh * yl))
            xh, xl = (xh * gp1) * gp2, (xl * gp1) * gp2  # (to the common scale)
            yh, yl = (yh * gn1) * gn2, (yl * gn1) * gn2
            t0, t1, t2 = _square_gap_words(xh, xl, yh, yl)
            b0, b1, b2 = tl.reduce((t0, t1, t2), 0, _triple_combine)
            n0, n1, n2 = _triple_combine(n0, n1, n2, b0, b1, b2)
        # eps h^2 / c^2 of each (as double words), the roots
        qp = _times_pow2(_times_pow2(eps_hi * (h * h), -ep), -ep)
        qp_lo = _times_pow2(_times_pow2(eps_lo * (h * h), -ep), -ep)
        qn = _times_pow2(_times_pow2(eps_hi * (h * h), -en), -en)
        qn_lo = _times_pow2(_times_pow2(eps_lo * (h * h), -en), -en)
        sp, sp_lo = dd_add(sp, sp_lo, qp, qp_lo)
        sn, sn_lo = dd_add(sn, sn_lo, qn, qn_lo)
        rp, rp_lo = _dd_sqrt(sp, sp_lo)
        rn, rn_lo = _dd_sqrt(sn, sn_lo)
        s0 = _recip(rp, rp_lo)
        s2 = _recip(rn, rn_lo)
        den, den_lo = dd_add(
            (rp * gp1) * gp2, (rp_lo * gp1) * gp2, (rn * gn1) * gn2, (rn_lo * gn1) * gn2
        )
        num, num_lo = _triple_finish(n0, n1, n2)
        positive = den > 0.0  # (a = pos = neg with eps = 0: a gap of 0)
        den = tl.where(positive, den, 1.0)
        g = num / den
        r = tl.math.fma(-g, den, num)
        g_lo = (r + num_lo - g * den_lo) / den
        g = tl.where(positive, g, 0.0)
        g_lo = tl.where(positive, g_lo, 0.0)
    else:
        # each distance in double words, at its own scale
        sp, sp_lo, sn, sn_lo = zero, zero, zero, zero
        for start in range(0, D, BLOCK):
            c = start + cols
            inside = c < D
            a = _load_finite(A, a_stride, row, c, inside)
            pos = _load_finite(P, p_stride, row, c, inside)
            neg = _load_finite(N, n_stride, row, c, inside)
            xh, xl = _diff(a, pos, h, fp1, fp2)
            yh, yl = _diff(a, neg, h, fn1, fn2)
            e, e_lo = _pow_dd(xh, xl, p_hi, p_lo)
            sp, sp_lo = _add_sum(sp, sp_lo, e, e_lo)
            e, e_lo = _pow_dd(yh, yl, p_hi, p_lo)
            sn, sn_lo = _add_sum(sn, sn_lo, e, e_lo)
        # (root h / c)^p of each (below 1)
        qp, qp_lo = _pow_dd(
            _times_pow2(root_hi * h, -ep), _times_pow2(root_lo * h, -ep), p_hi, p_lo
        )
        qn, qn_lo = _pow_dd(
            _times_pow2(root_hi * h, -en), _times_pow2(root_lo * h, -en), p_hi, p_lo
        )
        sp, sp_lo = dd_add(sp, sp_lo, qp, qp_lo)
        sn, sn_lo = dd_add(sn, sn_lo, qn, qn_lo)
        dp, dp_lo, s0, s1 = _root_dd(sp, sp_lo, p_hi, p_lo)
        dn, dn_lo, s2, s3 = _root_dd(sn, sn_lo, p_hi, p_lo)
        g, g_lo = dd_add(
            (dp * gp1) * gp2, (dp_lo * gp1) * gp2, -((dn * gn1) * gn2), -((dn_lo * gn1) * gn2)
        )
    # the gap in the inputs' units, plus the margin, rounded once
    g = _times_pow2(g, ec) / h
    g_lo = _times_pow2(g_lo, ec) / h
    finite = tl.abs(g) < float("inf")
    t, t_lo = two_sum(tl.where(finite, g, 0.0), m_hi)
    pre = tl.where(finite, t + (t_lo + (tl.where(finite, g_lo, 0.0) + m_lo)), g)
    loss = tl.where(pre > 0.0, pre, 0.0)
    hinge = tl.where(pre > 0.0, 1.0, tl.where(pre == 0.0, 0.5, 0.0))
    # a row with a non-finite entry: as the plain formula
    plain = tl.where(
        (nan > 0.0) | ((inf_p > 0.0) & (inf_n > 0.0)),
        float("nan"),
        tl.where(inf_p > 0.0, float("inf"), 0.0),
    )
    bad = (nan + inf_p + inf_n) > 0.0
    tl.store(OUT + row, tl.where(bad, plain, loss))
    tl.store(SAVED + row * TRIPLET_STATS + 0, tl.where(bad, float("nan"), hinge))
    tl.store(SAVED + row * TRIPLET_STATS + 1, h)
    tl.store(SAVED + row * TRIPLET_STATS + 2, ep)
    tl.store(SAVED + row * TRIPLET_STATS + 3, en)
    tl.store(SAVED + row * TRIPLET_STATS + 4, s0)
    tl.store(SAVED + row * TRIPLET_STATS + 5, s1)
    tl.store(SAVED + row * TRIPLET_STATS + 6, s2)
    tl.store(SAVED + row * TRIPLET_STATS + 7, s3)


@triton.jit
def _sign(a, b):
    """sign(a - b), 0 at a = b (as torch's abs)."""
    return tl.where(a > b, 1.0, 0.0) - tl.where(a < b, 1.0, 0.0)


@triton.jit
def _power_term(x, x_lo, log_d, log_d_lo, q_hi, q_lo):
    """``sign(x) (|x| / d)^q`` (``q = p - 1``) from ``log d`` (double words),
    0 for ``x = 0``."""
    ax = tl.abs(x)
    pos = ax > 0.0
    safe = tl.where(pos, ax, 1.0)
    lg, lg_lo = log_pair(safe)
    lg_lo = lg_lo + tl.where(x < 0.0, -x_lo, x_lo) / safe
    z, z_lo = dd_add(lg, lg_lo, -log_d, -log_d_lo)
    z, z_lo = dd_mul(z, z_lo, q_hi, q_lo)
    t = exp_pair(tl.minimum(z, 0.0), z_lo)  # (|x| <= d: z <= 0 up to rounding)
    return tl.where(pos, tl.where(x < 0.0, -t, t), 0.0)


@triton.jit
def triplet_backward(
    A,
    P,
    N,
    a_stride,
    p_stride,
    n_stride,
    SAVED,
    G,
    DA,
    DP,
    DN,
    D,
    q_hi,
    q_lo,
    KIND: tl.constexpr,
    WANT_A: tl.constexpr,
    WANT_P: tl.constexpr,
    WANT_N: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``g w (t_p - t_n)``, ``-g w t_p``, ``g w t_n`` with ``w`` the hinge's
    derivative (1, 0 below, 1/2 at 0 as torch's maximum, NaN in a row with a
    non-finite entry) and ``t = d d / d a``: ``sign(a - v)`` (p = 1),
    ``(a - v) / d`` (p = 2), ``sign(a - v) (|a - v| / d)^(p - 1)``; 0 where
    the distance is 0. ``q``: ``p - 1`` as a double word."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    w = tl.load(SAVED + row * TRIPLET_STATS + 0) * tl.load(G + row).to(tl.float32)
    h = tl.load(SAVED + row * TRIPLET_STATS + 1)
    ep = tl.load(SAVED + row * TRIPLET_STATS + 2)
    en = tl.load(SAVED + row * TRIPLET_STATS + 3)
    s0 = tl.load(SAVED + row * TRIPLET_STATS + 4)
    s1 = tl.load(SAVED + row * TRIPLET_STATS + 5)
    s2 = tl.load(SAVED + row * TRIPLET_STATS + 6)
    s3 = tl.load(SAVED + row * TRIPLET_STATS + 7)
    fp1, fp2 = pow2(-ep)
    fn1, fn2 = pow2(-en)
    for start in range(0, D, BLOCK):
        c = start + cols
        inside = c < D
        a = _load_finite(A, a_stride, row, c, inside)
        pos = _load_finite(P, p_stride, row, c, inside)
        neg = _load_finite(N, n_stride, row, c, inside)
        if KIND == 1:
            tp = _sign(a, pos)
            tn = _sign(a, neg)
            t = tp - tn
        elif KIND == 2:
            # (a - v) / d from the exact difference, each product rounded once
            xh, xl = _diff(a, pos, h, fp1, fp2)
            yh, yl = _diff(a, neg, h, fn1, fn2)
            tp = tl.math.fma(xh, s0, xl * s0)
            tn = tl.math.fma(yh, s2, yl * s2)
            t = tl.math.fma(xh, s0, tl.math.fma(-yh, s2, xl * s0 - yl * s2))
        else:
            xh, xl = _diff(a, pos, h, fp1, fp2)
            tp = _power_term(xh, xl, s0, s1, q_hi, q_lo)
            xh, xl = _diff(a, neg, h, fn1, fn2)
            tn = _power_term(xh, xl, s2, s3, q_hi, q_lo)
            t = tp - tn
        if WANT_A:
            tl.store(DA + row * D + c, (w * t).to(DA.dtype.element_ty), mask=inside)
        if WANT_P:
            tl.store(DP + row * D + c, (-(w * tp)).to(DP.dtype.element_ty), mask=inside)
        if WANT_N:
            tl.store(DN + row * D + c, (w * tn).to(DN.dtype.element_ty), mask=inside)

# mypy: ignore-errors
# (Triton device code: its parameters are typed by the launch, not annotations)
"""Triton kernels of the elementwise losses: one launch, one pass.

:func:`forward` and :func:`backward` are the two kernels of every
elementwise loss; the loss itself is a ``tl.constexpr`` function argument
(``VALUE(a, b, c, p, q)`` and ``GRAD(a, b, c, p, q) -> (d/da, d/db, d/dc)``,
``c`` a third operand where ``THREE``, ``p`` and ``q`` the loss's
parameters), so each loss is two small functions below and Triton compiles
one kernel per loss. Every value is computed in float32 from the inputs'
dtype and stored in the output's; an optional array multiplies the values
(the weights).

The formulas have no cancellation left (see each function), with
:func:`~._triton_math.exp_pair`/:func:`~._triton_math.log1p` within about an
ulp, so the losses are within a few ulp of their exact values.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_math import (
    LN2_HI,
    LN2_LO,
    dd_add,
    dd_mul,
    exp_dd,
    exp_pair,
    exponent,
    fast_two_sum,
    log1p,
    log_pair,
    pow2,
    quotient,
    two_prod,
    two_sum,
)

__all__ = [
    "backward",
    "bce_logits_grad",
    "bce_logits_value",
    "forward",
    "gaussian_nll_grad",
    "gaussian_nll_value",
    "log_cosh_grad",
    "log_cosh_value",
    "poisson_nll_grad",
    "poisson_nll_value",
    "sigmoid_focal_grad",
    "sigmoid_focal_value",
]


@triton.jit
def forward(
    A,
    B,
    C,
    W,
    OUT,
    N,
    p,
    q,
    VALUE: tl.constexpr,
    THREE: tl.constexpr,
    WEIGHTED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = i < N
    a = tl.load(A + i, mask=inside, other=0.0).to(tl.float32)
    b = tl.load(B + i, mask=inside, other=0.0).to(tl.float32)
    c = tl.load(C + i, mask=inside, other=1.0).to(tl.float32) if THREE else a
    v = VALUE(a, b, c, p, q)
    if WEIGHTED:
        v = v * tl.load(W + i, mask=inside, other=0.0).to(tl.float32)
    tl.store(OUT + i, v.to(OUT.dtype.element_ty), mask=inside)


@triton.jit
def backward(
    A,
    B,
    C,
    W,
    G,
    DA,
    DB,
    DC,
    N,
    p,
    q,
    GRAD: tl.constexpr,
    THREE: tl.constexpr,
    WEIGHTED: tl.constexpr,
    WANT_A: tl.constexpr,
    WANT_B: tl.constexpr,
    WANT_C: tl.constexpr,
    BLOCK: tl.constexpr,
):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = i < N
    a = tl.load(A + i, mask=inside, other=0.0).to(tl.float32)
    b = tl.load(B + i, mask=inside, other=0.0).to(tl.float32)
    c = tl.load(C + i, mask=inside, other=1.0).to(tl.float32) if THREE else a
    g = tl.load(G + i, mask=inside, other=0.0).to(tl.float32)
    if WEIGHTED:
        g = g * tl.load(W + i, mask=inside, other=0.0).to(tl.float32)
    da, db, dc = GRAD(a, b, c, p, q)
    if WANT_A:
        tl.store(DA + i, (g * da).to(DA.dtype.element_ty), mask=inside)
    if WANT_B:
        tl.store(DB + i, (g * db).to(DB.dtype.element_ty), mask=inside)
    if WANT_C:
        tl.store(DC + i, (g * dc).to(DC.dtype.element_ty), mask=inside)


# -- shared pieces ------------------------------------------------------------------


@triton.jit
def _softplus(y):
    """``log(1 + exp(y)) = max(y, 0) + log1p(exp(-|y|))``: two non-negative
    terms (NaN for NaN; ``y`` for ``y = +inf``)."""
    e = exp_pair(-tl.abs(y), 0.0)
    return tl.maximum(y, 0.0) + log1p(e, 0.0)


@triton.jit
def _sigmoid(y):
    """``1 / (1 + exp(-y))`` from ``exp(-|y|) <= 1``: no overflow, no cancellation."""
    e = exp_pair(-tl.abs(y), 0.0)
    return tl.where(y >= 0.0, 1.0, e) / (1.0 + e)


# -- binary cross entropy with logits ------------------------------------------------


@triton.jit
def bce_logits_value(x, t, c, p, q):
    """``t softplus(-x) + (1 - t) softplus(x)``: every term >= 0 for targets in [0, 1]."""
    return t * _softplus(-x) + (1.0 - t) * _softplus(x)


@triton.jit
def bce_logits_grad(x, t, c, p, q):
    """d/dx ``sigmoid(x) - t`` as ``(1 - t) sigmoid(x) - t sigmoid(-x)`` (no
    cancellation for hard targets); d/dt ``softplus(-x) - softplus(x) = -x``."""
    return (1.0 - t) * _sigmoid(x) - t * _sigmoid(-x), -x, 0.0


# -- log-cosh ------------------------------------------------------------------------


@triton.jit
def _difference(x, y):
    """``|x - y|`` as a double word ``(a, a_lo)`` and the sign of ``x - y``."""
    d, dl = two_sum(x, -y)
    sign = tl.where(d < 0.0, -1.0, 1.0)
    dl = tl.where(tl.abs(d) < float("inf"), dl, 0.0)
    return d * sign, dl * sign, sign


@triton.jit
def log_cosh_value(x, y, c, p, q):
    """``log(cosh(x - y))`` of the exact difference ``a``: below 0.7 its Taylor
    series ``(a^2 / 2)(1 + P(a^2))`` (to a^26, the rest below 0.01 ulp);
    above, ``(a - ln 2) + log1p(exp(-2 a))``, two positive terms."""
    a, al, _ = _difference(x, y)
    big = a >= 0.7
    sa = tl.where(big, 0.0, a)  # (each branch on its own range: no inf * 0)
    s, sl = two_prod(sa, sa)
    sl = tl.math.fma(2.0 * sa, tl.where(big, 0.0, al), sl)
    q = 1.2245311591791511e-06
    q = tl.math.fma(q, s, -3.2731936569430695e-06)
    q = tl.math.fma(q, s, 8.8104890517540458e-06)
    q = tl.math.fma(q, s, -2.3912911424355248e-05)
    q = tl.math.fma(q, s, 6.5558604549509553e-05)
    q = tl.math.fma(q, s, -1.8197929838141478e-04)
    q = tl.math.fma(q, s, 5.13161148081783e-04)
    q = tl.math.fma(q, s, -1.4772059216503661e-03)
    q = tl.math.fma(q, s, 4.3738977072310406e-03)
    q = tl.math.fma(q, s, -1.3492063492063492e-02)
    q = tl.math.fma(q, s, 4.4444444444444444e-02)
    q = tl.math.fma(q, s, -1.6666666666666667e-01)
    h, hl = 0.5 * s, 0.5 * sl
    series = h + tl.math.fma(h, q * s, hl)
    ab = tl.where(big, a, 1.0)
    e = exp_pair(-2.0 * ab, -2.0 * tl.where(big, al, 0.0))
    exp_form = ((ab - LN2_HI) - LN2_LO) + log1p(e, 0.0)
    exp_form = tl.where(a == float("inf"), a, exp_form)
    return tl.where(big, exp_form, series)


@triton.jit
def _tanh(a, al):
    """``tanh(a + al)`` for ``a >= 0``: below 0.55 its Taylor series to a^21,
    above ``(1 - e) / (1 + e)`` with ``e = exp(-2 a) <= 1/3``."""
    big = a >= 0.55
    sa = tl.where(big, 0.0, a)
    s = sa * sa
    q = 9.6915379569294503e-05
    q = tl.math.fma(q, s, -2.3912911424355248e-04)
    q = tl.math.fma(q, s, 5.9002744094558598e-04)
    q = tl.math.fma(q, s, -1.4558343870513183e-03)
    q = tl.math.fma(q, s, 3.592128036572481e-03)
    q = tl.math.fma(q, s, -8.8632355299021966e-03)
    q = tl.math.fma(q, s, 2.1869488536155203e-02)
    q = tl.math.fma(q, s, -5.3968253968253968e-02)
    q = tl.math.fma(q, s, 1.3333333333333333e-01)
    q = tl.math.fma(q, s, -3.3333333333333333e-01)
    series = sa + tl.math.fma(sa, q * s, tl.where(big, 0.0, al) * (1.0 - s))
    e = exp_pair(-2.0 * tl.where(big, a, 1.0), -2.0 * tl.where(big, al, 0.0))
    return tl.where(big, (1.0 - e) / (1.0 + e), series)


@triton.jit
def log_cosh_grad(x, y, c, p, q):
    """d/dx ``tanh(x - y)``, d/dy its negative."""
    a, al, sign = _difference(x, y)
    t = sign * _tanh(a, al)
    return t, -t, 0.0


# -- Gaussian negative log-likelihood --------------------------------------------------


@triton.jit
def _clamped_var(v, eps):
    """``max(v, eps)``, NaN kept (``tl.maximum`` drops it on a GPU)."""
    return tl.where(v == v, tl.maximum(v, eps), v)


@triton.jit
def _gaussian_scaled(mu, y, var, eps):
    """The shared part of the Gaussian NLL and its gradient: ``v = max(var,
    eps)``, ``ok`` (``v`` positive and finite), ``vs`` (``v``, or 1 where not
    ok), ``d = y - mu`` as a double word, and at a power-of-two scale ``2^-a``
    where nothing overflows, ``w = v 2^-2a`` (near 1) and ``u^2 = d^2 2^-2a``
    as a double word; ``(k1, k2)`` the two factors of ``2^-a``."""
    v = _clamped_var(var, eps)
    ok = (v > 0.0) & (v < float("inf"))
    vs = tl.where(ok, v, 1.0)
    d, dl = two_sum(y, -mu)
    dl = tl.where(tl.abs(d) < float("inf"), dl, 0.0)
    k1, k2 = pow2(-tl.floor((exponent(vs) + 1.0) * 0.5))
    u, ul = (d * k1) * k2, (dl * k1) * k2
    w = (((vs * k1) * k2) * k1) * k2  # (exact)
    s, sl = two_prod(u, u)
    sl = tl.math.fma(2.0 * u, ul, sl)
    return v, ok, vs, d, dl, w, s, sl, k1, k2


@triton.jit
def gaussian_nll_value(mu, y, var, eps, half_log_2pi):
    """``0.5 (log v + (y - mu)^2 / v) + c``, ``v = max(var, eps)``: the log
    (negative below 1) and the quotient (positive) may cancel, so both are
    double words (``y - mu`` exact by TwoSum, its square by TwoProduct, at a
    power-of-two scale where nothing overflows: ``d^2 / v = u^2 / w`` with
    ``u = d 2^-a``, ``w = v 2^-2a`` near 1; the log within 2^-45), and the sum
    rounds once. ``c`` is ``0.5 log(2 pi)`` (``full=True``) or 0, its low
    part added here. Where ``v`` is 0 or not finite: the plain formula."""
    v, ok, vs, d, _, w, s, sl, _, _ = _gaussian_scaled(mu, y, var, eps)
    r, rl = quotient(s, w, 0.0)
    rl += sl / w
    lh, ll = log_pair(vs)
    h, hl = two_sum(lh, r)
    c_lo = tl.where(half_log_2pi > 0.0, 1.563417661998301e-08, 0.0)
    h, c_err = two_sum(h, 2.0 * half_log_2pi)  # (inside the halving)
    total = 0.5 * (h + ((hl + c_err) + (ll + rl + 2.0 * c_lo)))
    plain = 0.5 * (tl.log(tl.where(ok, 1.0, v)) + (d * d) / tl.where(ok, 1.0, v)) + half_log_2pi
    return tl.where(ok & (tl.abs(total) < float("inf")), total, plain)


@triton.jit
def gaussian_nll_grad(mu, y, var, eps, half_log_2pi):
    """d/dmu ``-(y - mu) / v``, d/dy its negative, d/dvar ``(v - (y - mu)^2) / (2 v^2)``
    where ``var >= eps`` (else 0: the clamp), the difference formed exactly at
    the scale of :func:`gaussian_nll_value`."""
    v, ok, _, d, dl, w, s, sl, k1, k2 = _gaussian_scaled(mu, y, var, eps)
    g = (d + dl) / v
    h, hl = two_sum(w, -s)
    dv = (((((h + (hl - sl)) / (2.0 * w) / w) * k1) * k2) * k1) * k2
    dv = tl.where(ok, dv, (v - d * d) / (2.0 * v * v))
    dv = tl.where(var >= eps, dv, 0.0)
    return -g, g, dv


# -- sigmoid focal loss ------------------------------------------------------------------


@triton.jit
def _focal_terms(x, t, gamma):
    """``(sigmoid(x), sigmoid(-x), m, m^gamma, ce)``, each but ``ce`` as a
    double word: ``m = 1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x)``
    (non-negative terms) from ``exp(-|x|)`` as a double word (no overflow);
    ``m^gamma = exp(gamma log m)`` in double words (``gamma = 2``: ``m m``);
    ``ce`` the binary cross entropy (within an ulp)."""
    e, el = exp_dd(-tl.abs(x), 0.0)
    d, dl = dd_add(1.0, 0.0, e, el)
    big, bigl = quotient(1.0, d, dl)
    small, smalll = quotient(e, d, dl)
    smalll += el / d
    positive = x >= 0.0
    s, sl = tl.where(positive, big, small), tl.where(positive, bigl, smalll)
    sn, snl = tl.where(positive, small, big), tl.where(positive, smalll, bigl)
    nt = 1.0 - t
    ntl = (1.0 - nt) - t  # (1 - t = nt + ntl exactly, for t in [0, 1]: Sterbenz)
    m1, m1l = dd_mul(t, 0.0, sn, snl)
    m2, m2l = dd_mul(nt, ntl, s, sl)
    m, ml = dd_add(m1, m1l, m2, m2l)
    lp = log1p(e, el)
    ce = t * (tl.maximum(-x, 0.0) + lp) + (1.0 - t) * (tl.maximum(x, 0.0) + lp)
    lh, ll = log_pair(tl.where(m > 0.0, m, 1.0))
    ll += ml / tl.where(m > 0.0, m, 1.0)
    z, zl = two_prod(gamma, lh)
    ph, pl = exp_dd(tl.minimum(z, 0.0), zl + gamma * ll)
    qh, ql = dd_mul(m, ml, m, ml)
    two = gamma == 2.0
    ph, pl = tl.where(two, qh, ph), tl.where(two, ql, pl)
    zero_m = m <= 0.0
    ph = tl.where(zero_m, tl.where(gamma > 0.0, 0.0, 1.0), ph)
    pl = tl.where(zero_m, 0.0, pl)
    ph, pl = tl.where(gamma == 0.0, 1.0, ph), tl.where(gamma == 0.0, 0.0, pl)
    ce = tl.where(x == x, ce, x)
    return (s, sl), (sn, snl), (m, ml), (ph, pl), ce


@triton.jit
def sigmoid_focal_value(x, t, c, alpha, gamma):
    """``alpha_t m^gamma ce`` (``alpha < 0``: no alpha), ``alpha_t = alpha t +
    (1 - alpha)(1 - t)``, the products in double words, rounded once."""
    _, _, _, (ph, pl), ce = _focal_terms(x, t, gamma)
    h, hl = dd_mul(ph, pl, ce, 0.0)
    a_t = tl.where(alpha >= 0.0, alpha * t + (1.0 - alpha) * (1.0 - t), 1.0)
    p, pe = two_prod(h, a_t)
    return p + (pe + hl * a_t)


@triton.jit
def sigmoid_focal_grad(x, t, c, alpha, gamma):
    """With ``s = sigmoid(x)``: ``dm/dx = s (1 - s)(1 - 2 t)``, ``dce/dx = s - t``,
    ``dm/dt = 1 - 2 s``, ``dce/dt = -x``; ``gamma m^(gamma - 1)`` as
    ``gamma m^gamma / m`` (0 where ``m = 0``)."""
    (s, _), (sn, _), (m, _), (power, _), ce = _focal_terms(x, t, gamma)
    lower = tl.where(m > 0.0, gamma * (power / tl.where(m > 0.0, m, 1.0)), 0.0)
    dx = lower * (s * sn) * (1.0 - 2.0 * t) * ce + power * ((1.0 - t) * s - t * sn)
    dt = lower * (sn - s) * ce - power * x
    a_t = alpha * t + (1.0 - alpha) * (1.0 - t)
    with_alpha = alpha >= 0.0
    dt = tl.where(with_alpha, (2.0 * alpha - 1.0) * power * ce + a_t * dt, dt)
    dx = tl.where(with_alpha, a_t * dx, dx)
    return dx, dt, 0.0


# -- Poisson negative log-likelihood -------------------------------------------------
#
# The parameters: p = 0 for log-rates (q = 1 with full=True, else 0); for rates
# eps = |p| + q (a double word: x + eps is exact where x is near -eps), and
# full=True where p < 0. Each case a uniform branch on p and q (no lane pays
# for the others); inside, the t <= 1 and t > 1 elements of full=True take a
# select.

_INF = tl.constexpr(float("inf"))
_TWO_64 = tl.constexpr(18446744073709551616.0)  # 2^64
_TWO_M64 = tl.constexpr(5.421010862427522e-20)  # 2^-64
_TWO_100 = tl.constexpr(1.2676506002282294e30)  # 2^100
_HALF_LOG_2PI_HI = tl.constexpr(0.9189385175704956)  # 0.5 log(2 pi) in two parts
_HALF_LOG_2PI_LO = tl.constexpr(1.563417661998301e-08)


@triton.jit
def _finite(v):
    return tl.abs(v) < _INF


@triton.jit
def _poisson_exp(x):
    """``e^x = (e + el) up`` for a finite ``x`` (clamped to 132: the callers
    take larger ones apart), ``up = 2^64`` above 64 (the exponential of ``x -
    64 ln 2``: no overflow up to 132), else 1; ``down = 1 / up``."""
    big = x > 64.0
    # x - 64 ln 2: 64 LN2_HI (a multiple of 2^-9) off an x >= 64 is exact
    zh = tl.minimum(tl.where(big, x, 64.0), 132.0) - 44.361328125
    zh, zl = two_sum(zh, -9.143083298113197e-05)  # 64 LN2_LO
    z = tl.where(big, zh, x)
    zl = tl.where(big, zl - 3.5186708147866286e-12, 0.0)  # 64 LN2_LO2
    e, el = exp_dd(z, zl)
    return e, el, tl.where(big, _TWO_64, 1.0), tl.where(big, _TWO_M64, 1.0)


@triton.jit
def _expm1_minus(d, dl):
    """``e^(d + dl) - 1 - (d + dl) >= 0`` as a double word, for a finite ``d``
    (NaN where ``e^d`` overflows, ``d`` above 88.72): for ``|d| < 0.5``
    ``d^2 (1/2 + d (1/6 + d Q(d)))`` (to ``d^11 / 11!``, the rest below
    2^-38), the leading terms in double words, plus ``(e^d - 1) dl``; above,
    ``exp_dd(d + dl) - 1 - d - dl`` in double words (at least 0.1, from at most
    1.65 at ``|d| = 0.5``: a few bits cancel)."""
    small = tl.abs(d) < 0.5
    ds = tl.where(small, d, 0.0)
    dls = tl.where(small, dl, 0.0)
    q = 2.505210838544172e-08  # 1/11!, ..., 1/4!
    q = tl.math.fma(q, ds, 2.755731922398589e-07)
    q = tl.math.fma(q, ds, 2.7557319223985893e-06)
    q = tl.math.fma(q, ds, 2.48015873015873e-05)
    q = tl.math.fma(q, ds, 1.984126984126984e-04)
    q = tl.math.fma(q, ds, 1.388888888888889e-03)
    q = tl.math.fma(q, ds, 8.333333333333333e-03)
    q = tl.math.fma(q, ds, 4.1666666666666664e-02)
    a, al = two_prod(ds, q)
    a, al = dd_add(a, al, 0.1666666716337204, -4.967053879312289e-09)  # 1/6
    a, al = dd_mul(a, al, ds, 0.0)
    a, al = dd_add(a, al, 0.5, 0.0)
    s, sl = two_prod(ds, ds)
    n, nl = dd_mul(s, sl, a, al)
    near, near_l = fast_two_sum(n, nl + (ds + n) * dls)
    g, gl = exp_dd(tl.minimum(tl.where(small, 0.0, d), 88.75), tl.where(small, 0.0, dl))
    u, ue = two_sum(g, -1.0)
    b, be = two_sum(u, -tl.where(small, 0.0, d))
    far, far_l = fast_two_sum(b, (be + ue) + (gl - tl.where(small, 0.0, dl)))
    return tl.where(small, near, far), tl.where(small, near_l, far_l)


@triton.jit
def _minus_log1p(q, ql):
    """``q - log(1 + q + ql)`` for ``|q| < 0.5`` as a double word: ``q s - 2 s^3
    (1/3 + s^2 R(s^2))``, ``s = q / (2 + q)`` (``|s| <= 1/3``; ``R`` to
    ``s^16 / 21``, the rest below 2^-34 of the result), every product but
    ``s^2 R`` in double words."""
    d, dl = dd_add(2.0, 0.0, q, ql)
    s, sl = quotient(q, d, dl)
    s, sl = fast_two_sum(s, sl + ql / d)
    a, al = dd_mul(q, ql, s, sl)
    s2, s2l = dd_mul(s, sl, s, sl)
    s3, s3l = dd_mul(s2, s2l, s, sl)
    r = 1.0 / 21.0
    r = tl.math.fma(r, s2, 1.0 / 19.0)
    r = tl.math.fma(r, s2, 1.0 / 17.0)
    r = tl.math.fma(r, s2, 1.0 / 15.0)
    r = tl.math.fma(r, s2, 1.0 / 13.0)
    r = tl.math.fma(r, s2, 1.0 / 11.0)
    r = tl.math.fma(r, s2, 1.0 / 9.0)
    r = tl.math.fma(r, s2, 1.0 / 7.0)
    r = tl.math.fma(r, s2, 1.0 / 5.0)
    b, bl = two_prod(s2, r)
    b, bl = dd_add(b, bl, 0.3333333432674408, -9.934107758624577e-09)  # 1/3
    c, cl = dd_mul(s3, s3l, b, bl)
    return dd_add(a, al, -2.0 * c, -2.0 * cl)


@triton.jit
def _stirling_half_log(lt, ltl):
    """``0.5 log t + 0.5 log(2 pi)`` from ``log t`` as a double word (> 0 for t > 1)."""
    return dd_add(0.5 * lt, 0.5 * ltl, _HALF_LOG_2PI_HI, _HALF_LOG_2PI_LO)


@triton.jit
def _poisson_log_terms(x, t):
    """What the value and the gradient of log-rates share: the finite ``x``
    and ``t`` (0 in place of the others), ``e^x`` (:func:`_poisson_exp`), and
    the plain ``e^x`` for the specials, as in float64: between 132 and 709.78
    3e38 (times ``up``, 2^64), beyond inf."""
    fin_x = _finite(x)
    fin_t = _finite(t)
    xf = tl.where(fin_x, x, 0.0)
    tf = tl.where(fin_t, t, 0.0)
    e, el, up, down = _poisson_exp(xf)
    ex = tl.where(x > 709.782712893384, _INF, tl.where(x > 132.0, 3.0e38, e))
    ex = tl.where(x == -_INF, 0.0, tl.where(x == x, ex, x))
    return fin_x, fin_t, xf, tf, e, el, up, down, ex


@triton.jit
def _poisson_log_d(xf, t, fin_t):
    """``tb`` (``t`` where ``t > 1`` and finite, else 2), ``log tb`` and ``d = x
    - log tb`` as double words (``log t`` within 2^-45.8: ``d`` to its own
    rounding near 0)."""
    tb = tl.where(fin_t & (t > 1.0), t, 2.0)
    lt, ltl = log_pair(tb)
    d, dl = two_sum(xf, -lt)
    d, dl = fast_two_sum(d, dl - ltl)
    return tb, lt, ltl, d, dl


@triton.jit
def _poisson_log_value(x, t, full):
    """``e^x - t x`` (``t = 0``: ``e^x``): ``e^x`` within 2^-44 and ``t x`` exact
    (TwoProduct), at the scale 2^-64 above ``x = 64`` (their difference may
    be finite where ``e^x`` is not), rounded once. ``full`` (``t > 1``):
    ``t (e^d - 1 - d) + 0.5 log(2 pi t)``, ``d = x - log t``, two terms >= 0
    (:func:`_expm1_minus`): no cancellation left but in ``d``, a double word.
    Infinities and NaN: the plain formulas, as the generic code's."""
    fin_x, fin_t, xf, tf, e, el, up, down, ex = _poisson_log_terms(x, t)
    tx, txl = two_prod(tf * down, xf)
    h, hl = two_sum(e, -tx)
    v = (h + (hl + (el - txl))) * up
    # the plain formula (specials; x beyond 709.78 as 710 in t x, as in float64)
    xc = tl.where(x < _INF, tl.minimum(x, 710.0), x)
    plain = (ex - (t * down) * tl.where(t == 0.0, 0.0, xc)) * up
    v = tl.where(fin_x & fin_t & (x <= 132.0) & (v == v), v, plain)
    if full:
        tb, lt, ltl, d, dl = _poisson_log_d(xf, t, fin_t)
        f, fl = _expm1_minus(d, dl)
        p, pl = dd_mul(tb, 0.0, f, fl)
        s, sl = _stirling_half_log(lt, ltl)
        w, wl = dd_add(p, pl, s, sl)
        w = w + wl
        # (t = inf, x = -inf, an overflow: inf; x = +inf: NaN, as expm1(inf) - inf)
        special = tl.where((x == x) & (x < _INF), _INF, float("nan"))
        w = tl.where(fin_x & fin_t & (x <= 132.0) & (w == w), w, special)
        v = tl.where(t > 1.0, w, v)
    return v


@triton.jit
def _poisson_log_grad(x, t, full):
    """d/dx ``e^x - t`` (within 2^-44 of ``max(e^x, t)``); d/dt ``-x`` (0 where
    ``t = 0``, whose term the loss leaves out), with ``full`` (``t > 1``)
    ``log t - x + 0.5 / t``, from ``d`` in double words."""
    fin_x, fin_t, xf, tf, e, el, up, down, ex = _poisson_log_terms(x, t)
    h, hl = two_sum(e, -(tf * down))
    dx = (h + (hl + el)) * up
    dx = tl.where(fin_x & fin_t & (x <= 132.0), dx, (ex - t * down) * up)
    dt = tl.where(t == 0.0, 0.0, -x)
    if full:
        tb, lt, _, d, dl = _poisson_log_d(xf, t, fin_t)
        r, rl = quotient(0.5, tb, 0.0)
        g, gl = dd_add(-d, -dl, r, rl)
        g = tl.where(fin_x & fin_t, g + gl, (tl.where(fin_t, lt, t) - x) + 0.5 / tb)
        dt = tl.where(t > 1.0, g, dt)
    return dx, dt


@triton.jit
def _poisson_rate_terms(x, t, eh, el):
    """What the value and the gradient of rates share: the finite ``x`` and
    ``t`` (0 in place of the others), ``w = x + eps`` as a double word (its
    sign exact), ``log w`` as a double word where ``w > 0``, ``n = x - t +
    eps`` as a double word, and ``tb`` (``t`` where ``t > 1``, else 2)."""
    fin_x = _finite(x)
    fin_t = _finite(t)
    xf = tl.where(fin_x, x, 0.0)
    tf = tl.where(fin_t, t, 0.0)
    w, wl = two_sum(xf, eh)
    w, wl = fast_two_sum(w, wl + el)
    pos = w > 0.0
    ws = tl.where(pos, w, 1.0)
    lw, lwl = log_pair(ws)
    lw, lwl = two_sum(lw, lwl + tl.where(pos, wl, 0.0) / ws)
    a, al = two_sum(xf, -tf)
    n, nl = dd_add(a, al, eh, el)
    tb = tl.where(fin_t & (t > 1.0), t, 2.0)
    return fin_x, fin_t, xf, tf, w, wl, pos, lw, lwl, n, nl, tb


@triton.jit
def _poisson_rate_value(x, t, eh, el, full):
    """``x - t log(x + eps)`` (``t = 0``: ``x``): ``x + eps`` and its log as
    double words, ``t log`` by TwoProduct (at the scale 2^-64 where ``|t| >
    2^100``), rounded once. ``full`` (``t > 1``): ``t (q - log(1 + q)) - eps +
    0.5 log(2 pi t)``, ``q = (x + eps - t) / t``, by :func:`_minus_log1p` for
    ``|q| < 0.5``, else as ``(x - t) - t (log w - log t)``, all in double words.
    ``x + eps <= 0`` and infinities: the plain formulas, as the generic code's."""
    fin_x, fin_t, xf, tf, w, _, pos, lw, lwl, n, nl, tb = _poisson_rate_terms(x, t, eh, el)
    scaled = tl.abs(tf) > _TWO_100
    down = tl.where(scaled, _TWO_M64, 1.0)
    p, pl = dd_mul(tf * down, 0.0, lw, lwl)
    h, hl = two_sum(xf * down, -p)
    v = (h + (hl - pl)) * tl.where(scaled, _TWO_64, 1.0)
    wp = tl.where(fin_x, w, x + eh)
    lp = tl.where(wp == 0.0, -_INF, tl.where(wp == _INF, _INF, float("nan")))
    lp = tl.where(pos & fin_x, lw + lwl, lp)
    plain = x - tl.where(t == 0.0, 0.0, t * lp)
    v = tl.where(fin_x & fin_t & pos, v, plain)
    if full:
        lt, ltl = log_pair(tb)
        q, ql = quotient(n, tb, 0.0)
        q, ql = fast_two_sum(q, ql + nl / tb)
        small = tl.abs(q) < 0.5
        f, fl = _minus_log1p(tl.where(small, q, 0.0), tl.where(small, ql, 0.0))
        f, fl = dd_mul(tb, 0.0, f, fl)
        f, fl = dd_add(f, fl, -eh, -el)
        r, rl = dd_add(lw, lwl, -lt, -ltl)
        r, rl = dd_mul(tb, 0.0, r, rl)
        g, gl = two_sum(xf, -tb)
        g, gl = dd_add(g, gl, -r, -rl)
        f, fl = tl.where(small, f, g), tl.where(small, fl, gl)
        s, sl = _stirling_half_log(lt, ltl)
        f, fl = dd_add(f, fl, s, sl)
        f = f + fl
        # (x + eps = 0, an overflow: inf; x + eps < 0, t = inf, x = +-inf: NaN)
        special = tl.where(fin_x & fin_t & (w >= 0.0), _INF, float("nan"))
        f = tl.where(fin_x & fin_t & pos & (f == f), f, special)
        v = tl.where(t > 1.0, f, v)
    return v


@triton.jit
def _poisson_rate_grad(x, t, eh, el, full):
    """d/dx ``1 - t / w = (x - t + eps) / w`` (1 where ``t = 0``), the
    numerator exact; d/dt ``-log w`` (0 where ``t = 0``), with ``full``
    (``t > 1``) ``log(t / w) + 0.5 / t``: ``-log(1 + q) = (q - log(1 + q))
    - q`` for ``|q| < 0.5``, else ``log t - log w``, in double words."""
    fin_x, fin_t, _, _, w, wl, pos, lw, lwl, n, nl, tb = _poisson_rate_terms(x, t, eh, el)
    nonzero = w != 0.0
    wn = tl.where(nonzero, w, 1.0)
    g, gl = quotient(n, wn, tl.where(nonzero, wl, 0.0))
    g = tl.where(_finite(g), g + (gl + nl / wn), g)  # (an overflow: inf, not inf - inf)
    wp = tl.where(fin_x, w, x + eh)
    dx = tl.where(fin_x & fin_t & nonzero, g, 1.0 - t / wp)
    dx = tl.where(t == 0.0, 1.0, dx)
    lp = tl.where(wp == 0.0, -_INF, tl.where(wp == _INF, _INF, float("nan")))
    lp = tl.where(pos & fin_x, lw + lwl, lp)
    dt = tl.where(t == 0.0, 0.0, -lp)
    if full:
        lt, ltl = log_pair(tb)
        q, ql = quotient(n, tb, 0.0)
        q, ql = fast_two_sum(q, ql + nl / tb)
        small = tl.abs(q) < 0.5
        f, fl = _minus_log1p(tl.where(small, q, 0.0), tl.where(small, ql, 0.0))
        f, fl = dd_add(f, fl, -q, -ql)
        r, rl = dd_add(lt, ltl, -lw, -lwl)
        f, fl = tl.where(small, f, r), tl.where(small, fl, rl)
        h, hl = quotient(0.5, tb, 0.0)
        f, fl = dd_add(f, fl, h, hl)
        f = tl.where(fin_x & fin_t & pos, f + fl, (tl.where(fin_t, lt, t) - lp) + 0.5 / tb)
        dt = tl.where(t > 1.0, f, dt)
    return dx, dt


@triton.jit
def poisson_nll_value(x, t, c, p, q):
    """The Poisson NLL of log-rates (``p = 0``) or rates (``p != 0``), see above."""
    if p == 0.0:
        v = _poisson_log_value(x, t, q != 0.0)
    else:
        v = _poisson_rate_value(x, t, tl.abs(p), q, p < 0.0)
    return v


@triton.jit
def poisson_nll_grad(x, t, c, p, q):
    """d/dx and d/dt of :func:`poisson_nll_value`."""
    if p == 0.0:
        dx, dt = _poisson_log_grad(x, t, q != 0.0)
    else:
        dx, dt = _poisson_rate_grad(x, t, tl.abs(p), q, p < 0.0)
    return dx, dt, 0.0

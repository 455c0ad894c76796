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

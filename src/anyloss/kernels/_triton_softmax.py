# mypy: ignore-errors
# (Triton device code: its parameters are typed by the launch, not annotations)
"""Triton kernels of the cross entropy: one program per row, the row read once.

Forward, per row of logits ``x`` (any float dtype, accumulated in float32)
over blocks of ``BLOCK`` classes, with the running maximum ``M``:

* ``rest``: the sum of ``exp(x - M)`` over the entries below ``M``, and
  ``ties`` the number of entries equal to it. When a block raises ``M`` the
  two are scaled by ``exp(M_old - M)`` (an online logsumexp). Each ``x - M``
  is a TwoSum, its error fed to :func:`~._triton_math.exp_pair`, and the
  block sums keep their rounding errors (:func:`~._triton_math.pair_sum`).
* ``zsum = sum(x - M)`` (label smoothing) and ``psum = sum(p (x - M))``
  (probability targets), as double words, moved by ``count (M_old - M)`` and
  ``mass (M_old - M)`` when ``M`` rises.

The loss is then, as the CPU kernels have it (every term non-negative)::

    log1p(rest + (ties - 1)) + (1 - s) (M - x_t) + s (M - mean(x))

with ``-psum`` for ``M - x_t`` under probability targets. ``M`` and
``log(ties + rest)`` are kept for the backward pass, which recomputes the
softmax from them: ``grad = g (softmax - (1 - s) onehot - s / V)``.

A NaN or ``+inf`` logit, or a row of ``-inf``, gives a NaN loss; a ``-inf``
logit gives an infinite one where it is the target or is smoothed toward.

The same family (one program per row, blocks over the class axis):

* :func:`focal_forward`: the softmax focal loss, the same online pass with
  every exponential a double word (:func:`_online_block`, shared with the
  cross entropy), and the target left out of the sum so that ``1 - p_t``
  has no cancellation; its gradient is the cross entropy's scaled per row
  (:func:`ce_backward`, ``SCALED``), or :func:`focal_backward` under
  probability targets.
* :func:`kl_forward` / :func:`kl_backward`: ``sum(e^t (t - x))``, each term
  a product of double words, the row summed as double words.
* :func:`nll_forward` / :func:`nll_backward`: a gather and a scatter, tiles
  of rows (not one program per row).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_math import (
    LN2_HI,
    LN2_LO,
    LN2_LO2,
    dd_add,
    dd_mul,
    exp_dd,
    exp_pair,
    log1p,
    log_pair,
    pair_sum,
    quotient,
    two_prod,
    two_sum,
)

__all__ = [
    "ce_backward",
    "ce_forward",
    "focal_backward",
    "focal_forward",
    "kl_backward",
    "kl_forward",
    "nll_backward",
    "nll_forward",
]


@triton.jit
def _scaled_pair(hi, lo, f, fl):
    """``(hi + lo) (f + fl)`` as a double word."""
    p, pe = two_prod(hi, f)
    return p, pe + (lo * f + hi * fl)


@triton.jit
def _online_block(x, inside, counted, m, rest, rest_lo, ties, EXACT: tl.constexpr):
    """One block of the online logsumexp: the running maximum ``m`` raised to
    the block's (finite) maximum, ``rest + rest_lo`` (the sum of ``exp(x - m)``
    below ``m``) and ``ties`` (the entries equal to ``m``) moved to it and the
    block's ``counted`` entries added (the softmax focal loss leaves its
    target out). ``EXACT``: every exponential a double word
    (:func:`~._triton_math.exp_dd`), else within an ulp
    (:func:`~._triton_math.exp_pair`). Returns the new state, the block's
    finite mask, ``d + dl = m_old - m`` (0 where not raised, or before the
    first finite logit) and ``z + zl = x - m`` exactly."""
    finite = inside & (x > -float("inf")) & (x < float("inf"))
    new_m = tl.maximum(m, tl.max(tl.where(finite, x, -float("inf")), 0))
    # the running sums to the new maximum (none before the first finite logit)
    raised = (new_m > m) & (m > -float("inf"))
    d, dl = two_sum(tl.where(raised, m, 0.0), tl.where(raised, -new_m, 0.0))
    if EXACT:
        f, fl = exp_dd(d, dl)
    else:
        f = exp_pair(d, dl)
        fl = 0.0
    f = tl.where(raised, f, 1.0)
    fl = tl.where(raised, fl, 0.0)
    r, rl = two_sum(rest, ties)
    r, rl = _scaled_pair(r, rl + rest_lo, f, fl)
    rest = tl.where(raised, r, rest)
    rest_lo = tl.where(raised, rl, rest_lo)
    ties = tl.where(raised, 0.0, ties)
    m = new_m
    # this block at the maximum m: x - m = z + zl exactly
    mf = tl.where(m > -float("inf"), m, 0.0)
    z, zl = two_sum(tl.where(finite, x, mf), -mf)
    below = finite & counted & (z < 0.0)
    if EXACT:
        e, el = exp_dd(z, zl)
        e = tl.where(below, e, 0.0)
        el = tl.where(below, el, 0.0)
    else:
        e = tl.where(below, exp_pair(z, zl), 0.0)
        el = tl.zeros_like(e)
    bh, bl = pair_sum(e, el, 0)
    rest, rl = two_sum(rest, bh)
    rest_lo += rl + bl
    ties += tl.sum(tl.where(finite & counted & (z == 0.0), 1.0, 0.0), 0)
    return m, rest, rest_lo, ties, finite, d, dl, z, zl


@triton.jit
def ce_forward(
    X,
    x_stride,
    T,
    t_stride,
    LOSS,
    MAX,
    LSE,
    V,
    smoothing,
    PROBS: tl.constexpr,
    SMOOTH: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * x_stride
    cols = tl.arange(0, BLOCK)
    zero = tl.zeros((), tl.float32)
    m = zero - float("inf")
    rest = zero
    rest_lo = zero
    ties = zero
    zsum = zero
    zsum_lo = zero
    psum = zero
    psum_lo = zero
    mass = zero
    seen = zero
    bad = zero  # > 0: a NaN or +inf logit
    neg_inf = zero  # > 0: a -inf logit (smoothing makes the loss inf)
    mass_inf = zero  # > 0: a -inf logit with target mass (the loss is inf)
    for start in range(0, V, BLOCK):
        c = start + cols
        inside = c < V
        x = tl.load(x_row + c, mask=inside, other=0.0).to(tl.float32)
        bad += tl.sum(tl.where(inside & ((x != x) | (x == float("inf"))), 1.0, 0.0), 0)
        neg_inf += tl.sum(tl.where(inside & (x == -float("inf")), 1.0, 0.0), 0)
        m, rest, rest_lo, ties, finite, d, dl, z, zl = _online_block(
            x, inside, inside, m, rest, rest_lo, ties, False
        )
        # (zsum and psum moved to the new maximum, as rest was)
        if SMOOTH:
            u, ul = two_prod(seen, d)
            u, ul = two_sum(zsum, u)
            zsum, zsum_lo = u, ul + (zsum_lo + seen * dl)
        if PROBS:
            u, ul = two_prod(mass, d)
            u, ul = two_sum(psum, u)
            psum, psum_lo = u, ul + (psum_lo + mass * dl)
        if SMOOTH:
            zh, zlo = pair_sum(tl.where(finite, z, 0.0), tl.where(finite, zl, 0.0), 0)
            zsum, u = two_sum(zsum, zh)
            zsum_lo += u + zlo
            seen += tl.sum(tl.where(finite, 1.0, 0.0), 0)
        if PROBS:
            p = tl.load(T + row * t_stride + c, mask=inside, other=0.0).to(tl.float32)
            taken = finite & (p != 0.0)
            pz, pzl = two_prod(tl.where(taken, p, 0.0), tl.where(taken, z, 0.0))
            pzl += tl.where(taken, p * zl, 0.0)
            ph, pl = pair_sum(pz, pzl, 0)
            psum, u = two_sum(psum, ph)
            psum_lo += u + pl
            mass += tl.sum(tl.where(finite, p, 0.0), 0)
            # 0 * -inf counts 0; a -inf logit with mass is an infinite loss
            mass_inf += tl.sum(tl.where(inside & (x == -float("inf")) & (p != 0.0), 1.0, 0.0), 0)
    # log(ties + rest) for the backward pass, log1p(rest + (ties - 1)) here
    u, ul = two_sum(rest, ties - 1.0)
    log_sum = log1p(u, ul + rest_lo)
    if PROBS:
        score = -(psum + psum_lo)
        score_inf = mass_inf > 0.0
    else:
        t = tl.load(T + row * t_stride).to(tl.int64)
        t_ok = (t >= 0) & (t < V)
        xt = tl.load(x_row + tl.where(t_ok, t, 0)).to(tl.float32)
        xt = tl.where(t_ok, xt, float("nan"))
        score_inf = xt == -float("inf")
        g, gl = two_sum(tl.where(m > -float("inf"), m, 0.0), tl.where(score_inf, 0.0, -xt))
        score = g + gl
    loss = log_sum
    keep = 1.0 - smoothing
    if SMOOTH:
        smoothed = -(zsum + zsum_lo) / V.to(tl.float32)
        smoothed = tl.where(neg_inf > 0.0, float("inf"), smoothed)
        loss += keep * tl.where(score_inf, float("inf"), score) + smoothing * smoothed
    else:
        loss += tl.where(score_inf, float("inf"), score)
    nan_row = (bad > 0.0) | (m == -float("inf"))
    tl.store(LOSS + row, tl.where(nan_row, float("nan"), loss))
    tl.store(MAX + row, m)
    tl.store(LSE + row, tl.where(nan_row, float("nan"), log_sum))


@triton.jit
def ce_backward(
    X,
    x_stride,
    T,
    t_stride,
    MAX,
    LSE,
    G,
    SCALE,
    NOT_P,
    DX,
    dx_stride,
    V,
    smoothing,
    PROBS: tl.constexpr,
    SCALED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``DX[row] = G[row] (softmax(x) - (1 - s) target - s / V)``, the
    softmax ``exp(x - M - log(ties + rest))``.

    ``SCALED`` (the softmax focal loss, class indices, ``s = 0``): ``G[row]``
    times ``SCALE[row]``, and at the target ``-NOT_P[row]`` (its ``1 - p``,
    without the cancellation of ``p - 1``) in place of ``softmax - 1``."""
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * x_stride
    cols = tl.arange(0, BLOCK)
    m = tl.load(MAX + row)
    lse = tl.load(LSE + row)
    g = tl.load(G + row).to(tl.float32)
    if SCALED:
        g = g * tl.load(SCALE + row)
        not_p = tl.load(NOT_P + row)
    keep = 1.0 - smoothing
    uniform = smoothing / V.to(tl.float32)
    mf = tl.where((m > -float("inf")) & (m < float("inf")), m, 0.0)
    if not PROBS:
        t = tl.load(T + row * t_stride).to(tl.int64)
    for start in range(0, V, BLOCK):
        c = start + cols
        inside = c < V
        x = tl.load(x_row + c, mask=inside, other=0.0).to(tl.float32)
        finite = (x > -float("inf")) & (x < float("inf"))
        z, zl = two_sum(tl.where(finite, x, mf), -mf)
        w, wl = two_sum(z, -tl.where(lse == lse, lse, 0.0))
        sm = tl.where(finite, exp_pair(tl.minimum(w, 0.0), wl + zl), 0.0)
        sm = tl.where(lse == lse, sm, float("nan"))  # (a NaN row: NaN throughout)
        if PROBS:
            p = tl.load(T + row * t_stride + c, mask=inside, other=0.0).to(tl.float32)
            target = keep * p + uniform
        else:
            target = tl.where(c == t, keep + uniform, uniform)
        dx = g * (sm - target)
        if SCALED and not PROBS:
            dx = tl.where(c == t, -g * not_p, dx)
        tl.store(DX + row * dx_stride + c, dx.to(DX.dtype.element_ty), mask=inside)


# -- softmax focal loss --------------------------------------------------------------


@triton.jit
def _focal_power(m, ml, gamma, gamma_lo):
    """``(m + ml)^gamma`` for ``m`` in [0, 1] as a double word: ``exp(gamma
    log m)`` in double words, ``gamma + gamma_lo`` the Python float (3.7 is
    not a float32: its rounding would be ``|log m|`` ulp of the power);
    ``gamma = 2``: the square; 1 for ``gamma = 0``, 0 for ``m = 0 < gamma``."""
    pos = m > 0.0
    ms = tl.where(pos, m, 1.0)
    lh, ll = log_pair(ms)
    ll += tl.where(pos, ml, 0.0) / ms
    z, zl = two_prod(gamma, lh)
    ph, pl = exp_dd(tl.minimum(z, 0.0), zl + (gamma * ll + gamma_lo * lh))
    qh, ql = dd_mul(m, ml, m, ml)
    two = gamma == 2.0
    ph, pl = tl.where(two, qh, ph), tl.where(two, ql, pl)
    ph = tl.where(pos, ph, tl.where(gamma > 0.0, 0.0, 1.0))
    pl = tl.where(pos, pl, 0.0)
    return tl.where(gamma == 0.0, 1.0, ph), tl.where(gamma == 0.0, 0.0, pl)


@triton.jit
def _focal_scale(ph, pl, m, ml, p, p_lo, u, ul, gamma, gamma_lo):
    """``|C| = m^gamma + gamma p m^(gamma - 1) (-log p) = (m^gamma / m) (m +
    gamma p (-log p))`` as a double word, from the double words ``m^gamma``,
    ``m = 1 - p``, ``p`` and ``u = -log p``: ``dL/dx_j = -|C| (delta_tj -
    p_j)`` for the loss ``-m^gamma log p`` of the class ``t``. Where ``m = 0``
    (``p = 1``): ``m^gamma``, as the generic code's gradient of the power."""
    a, al = dd_mul(p, p_lo, u, ul)
    a, al = dd_mul(a, al, gamma, gamma_lo)
    r, rl = dd_add(m, ml, a, al)
    pos = m > 0.0
    ms = tl.where(pos, m, 1.0)
    q, ql = quotient(ph, ms, tl.where(pos, ml, 0.0))
    ql += pl / ms
    c, cl = dd_mul(q, ql, r, rl)
    return tl.where(pos, c, ph), tl.where(pos, cl, pl)


@triton.jit
def _focal_class(z, zl, sh, sl, top, top_m, top_ml, log_sum, gamma, gamma_lo):
    """For a class at ``x - M = z + zl`` (finite): ``p = e^z / S``, ``1 - p``
    (from ``p < 1/2`` below the maximum, ``top_m`` at one), ``(1 - p)^gamma``,
    ``-log p = log S - z`` (non-negative) and ``|C|``, each a double word."""
    e, el = exp_dd(z, zl)
    p, pl = quotient(e, sh, sl)
    pl += el / sh
    nm, nml = dd_add(1.0, 0.0, -p, -pl)
    nm, nml = tl.where(top, top_m, nm), tl.where(top, top_ml, nml)
    ph, pwl = _focal_power(nm, nml, gamma, gamma_lo)
    u, ul = two_sum(log_sum, -z)
    ul -= zl
    ch, cl = _focal_scale(ph, pwl, nm, nml, p, pl, u, ul, gamma, gamma_lo)
    return p, pl, ph, pwl, u, ul, ch, cl


@triton.jit
def _top(s1, s1l):
    """``S = 1 + (s1 + s1l)`` and ``1 - p`` of a maximum, ``(S - 1) / S``, as
    double words."""
    sh, sl = two_sum(s1, 1.0)
    sl += s1l
    top_m, top_ml = quotient(s1, sh, sl)
    return sh, sl, top_m, top_ml + s1l / sh


@triton.jit
def focal_forward(
    X,
    x_stride,
    T,
    t_stride,
    A,
    LOSS,
    MAX,
    LSE,
    SCALE,
    AUX,
    AUX_LO,
    V,
    gamma,
    gamma_lo,
    PROBS: tl.constexpr,
    ALPHA: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Per row, the softmax focal loss ``-(1 - p_t)^gamma log p_t`` of the
    class index ``t`` (or ``sum_c alpha_c q_c (1 - p_c)^gamma (-log p_c)``
    of probabilities ``q``, ``ALPHA``: per-class ``A``), and for the backward
    pass the row maximum ``M``, ``log S`` (``S = sum exp(x - M)``), the
    gradient's per-row scale (``|C|``, or ``B = sum_c alpha_c q_c |C_c|``)
    and ``AUX``: ``1 - p_t`` (probabilities: ``S - 1`` as a double word,
    with ``AUX_LO``).

    Every exponential is a double word, every product and sum too, rounded
    once. Class indices: the online pass sums the other classes, ``O`` (the
    target left out), so ``1 - p_t = O / S`` with ``S = O + exp(x_t - M)``
    has no cancellation, and ``-log p_t = log1p(S - 1) + (M - x_t)`` is a
    sum of non-negative terms (``S - 1`` is ``O`` at a maximum, else ``(O -
    1) + exp(x_t - M)``, ``O >= 1``). Probabilities: a second pass over the
    row, ``1 - p_c = 1 - e_c / S`` below the maximum (``p_c < 1/2``), ``(S -
    1) / S`` at a maximum."""
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * x_stride
    cols = tl.arange(0, BLOCK)
    zero = tl.zeros((), tl.float32)
    m = zero - float("inf")
    rest = zero
    rest_lo = zero
    ties = zero
    bad = zero  # > 0: a NaN or +inf logit
    if not PROBS:
        t = tl.load(T + row * t_stride).to(tl.int64)
        t_ok = (t >= 0) & (t < V)
    for start in range(0, V, BLOCK):
        c = start + cols
        inside = c < V
        x = tl.load(x_row + c, mask=inside, other=0.0).to(tl.float32)
        bad += tl.sum(tl.where(inside & ((x != x) | (x == float("inf"))), 1.0, 0.0), 0)
        counted = inside
        if not PROBS:
            counted = inside & (c != t)
        m, rest, rest_lo, ties, _, _, _, _, _ = _online_block(
            x, inside, counted, m, rest, rest_lo, ties, True
        )
    nan_row = (bad > 0.0) | (m == -float("inf"))
    mf = tl.where(m > -float("inf"), m, 0.0)
    if PROBS:
        s1, s1l = two_sum(rest, tl.where(nan_row, 1.0, ties) - 1.0)  # S - 1
        s1l += rest_lo
        log_sum = log1p(s1, s1l)
        sh, sl, top_m, top_ml = _top(s1, s1l)
        total = zero
        total_lo = zero
        scale = zero
        scale_lo = zero
        pos_inf = zero  # -inf logits with mass: +inf, -inf or NaN (a weight of 0) terms
        neg_inf = zero
        nan_inf = zero
        for start in range(0, V, BLOCK):
            c = start + cols
            inside = c < V
            x = tl.load(x_row + c, mask=inside, other=0.0).to(tl.float32)
            q = tl.load(T + row * t_stride + c, mask=inside, other=0.0).to(tl.float32)
            if ALPHA:
                q_alpha = tl.load(A + c, mask=inside, other=0.0).to(tl.float32)
            else:
                q_alpha = tl.full((BLOCK,), 1.0, tl.float32)
            w, wl = two_prod(q, q_alpha)  # alpha_c q_c, exactly
            finite = inside & (x > -float("inf")) & (x < float("inf"))
            z, zl = two_sum(tl.where(finite, x, mf), -mf)
            _, _, ph, pwl, u, ul, ch, cl = _focal_class(
                z, zl, sh, sl, finite & (z == 0.0), top_m, top_ml, log_sum, gamma, gamma_lo
            )
            keep = inside & (q != 0.0) & finite
            h, hl = dd_mul(ph, pwl, u, ul)
            h, hl = dd_mul(h, hl, w, wl)
            th, tlo = pair_sum(tl.where(keep, h, 0.0), tl.where(keep, hl, 0.0), 0)
            total, err = two_sum(total, th)
            total_lo += err + tlo
            h, hl = dd_mul(ch, cl, w, wl)
            th, tlo = pair_sum(tl.where(keep, h, 0.0), tl.where(keep, hl, 0.0), 0)
            scale, err = two_sum(scale, th)
            scale_lo += err + tlo
            hole = inside & (q != 0.0) & (x == -float("inf"))
            pos_inf += tl.sum(tl.where(hole & (w > 0.0), 1.0, 0.0), 0)
            neg_inf += tl.sum(tl.where(hole & (w < 0.0), 1.0, 0.0), 0)
            nan_inf += tl.sum(tl.where(hole & ~(w != 0.0), 1.0, 0.0), 0)
        loss = total + total_lo
        loss = tl.where(pos_inf > 0.0, float("inf"), loss)
        loss = tl.where(neg_inf > 0.0, -float("inf"), loss)
        loss = tl.where((nan_inf > 0.0) | ((pos_inf > 0.0) & (neg_inf > 0.0)), float("nan"), loss)
        scale += scale_lo
        aux, aux_lo = s1, s1l
    else:
        xt = tl.load(x_row + tl.where(t_ok, t, 0)).to(tl.float32)
        xt = tl.where(t_ok, xt, float("nan"))
        t_fin = (xt > -float("inf")) & (xt < float("inf"))
        zt, ztl = two_sum(tl.where(t_fin, xt, mf), -mf)
        et, etl = exp_dd(zt, ztl)
        et, etl = tl.where(t_fin, et, 0.0), tl.where(t_fin, etl, 0.0)
        o, ol = two_sum(rest, ties)  # the other classes' sum, O
        ol += rest_lo
        top = t_fin & (zt == 0.0)
        a1, a1l = two_sum(o, -1.0)
        a1, a1l = dd_add(a1, a1l + ol, et, etl)
        s1, s1l = tl.where(top, o, a1), tl.where(top, ol, a1l)
        s1 = tl.where(nan_row, 0.0, s1)
        log_sum = log1p(s1, s1l)
        sh, sl = dd_add(o, ol, et, etl)
        sh = tl.where(nan_row, 1.0, sh)
        nm, nml = quotient(o, sh, sl)
        nml += ol / sh
        pt, ptl = quotient(et, sh, sl)
        ptl += etl / sh
        ph, pl = _focal_power(nm, nml, gamma, gamma_lo)
        u, ul = two_sum(log_sum, -zt)  # -log p_t >= 0
        ul -= ztl
        h, hl = dd_mul(ph, pl, u, ul)
        # (a -inf target: -log p_t = inf, its 1 - p_t = 1)
        loss = tl.where(t_fin, h + hl, tl.where(xt == -float("inf"), float("inf"), float("nan")))
        ch, cl = _focal_scale(ph, pl, nm, nml, pt, ptl, u, ul, gamma, gamma_lo)
        scale = ch + cl
        aux, aux_lo = nm + nml, zero
    nan_out = tl.where(nan_row, float("nan"), 1.0)
    tl.store(LOSS + row, tl.where(nan_row, float("nan"), loss))
    tl.store(MAX + row, m)
    tl.store(LSE + row, log_sum * nan_out)
    tl.store(SCALE + row, scale * nan_out)
    tl.store(AUX + row, aux * nan_out)
    tl.store(AUX_LO + row, aux_lo)


@triton.jit
def focal_backward(
    X,
    x_stride,
    T,
    t_stride,
    A,
    MAX,
    LSE,
    SCALE,
    AUX,
    AUX_LO,
    G,
    DX,
    dx_stride,
    V,
    gamma,
    gamma_lo,
    ALPHA: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """The softmax focal loss of probabilities, its gradient: with ``w_c =
    alpha_c q_c`` and ``B = sum_c w_c |C_c|`` (saved), ``DX[row] = G[row] (B
    p_j - w_j |C_j|)``, each class's terms recomputed as the forward pass has
    them (from ``S - 1``, saved as a double word), the difference of double
    words rounded once (class indices: :func:`ce_backward`, ``SCALED``)."""
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * x_stride
    cols = tl.arange(0, BLOCK)
    m = tl.load(MAX + row)
    lse = tl.load(LSE + row)
    b = tl.load(SCALE + row)
    ok = lse == lse  # (a NaN row: NaN throughout)
    s1 = tl.where(ok, tl.load(AUX + row), 0.0)
    s1l = tl.where(ok, tl.load(AUX_LO + row), 0.0)
    log_sum = tl.where(ok, lse, 0.0)
    b = tl.where(ok, b, 0.0)
    g = tl.load(G + row).to(tl.float32)
    mf = tl.where((m > -float("inf")) & (m < float("inf")), m, 0.0)
    sh, sl, top_m, top_ml = _top(s1, s1l)
    for start in range(0, V, BLOCK):
        c = start + cols
        inside = c < V
        x = tl.load(x_row + c, mask=inside, other=0.0).to(tl.float32)
        q = tl.load(T + row * t_stride + c, mask=inside, other=0.0).to(tl.float32)
        if ALPHA:
            q_alpha = tl.load(A + c, mask=inside, other=0.0).to(tl.float32)
        else:
            q_alpha = tl.full((BLOCK,), 1.0, tl.float32)
        w, wl = two_prod(q, q_alpha)
        finite = (x > -float("inf")) & (x < float("inf"))
        z, zl = two_sum(tl.where(finite, x, mf), -mf)
        p, pl, _, _, _, _, ch, cl = _focal_class(
            z, zl, sh, sl, finite & (z == 0.0), top_m, top_ml, log_sum, gamma, gamma_lo
        )
        keep = inside & (q != 0.0) & finite
        h, hl = dd_mul(ch, cl, w, wl)
        h, hl = tl.where(keep, h, 0.0), tl.where(keep, hl, 0.0)
        d, dl = dd_mul(b, 0.0, tl.where(finite, p, 0.0), tl.where(finite, pl, 0.0))
        d, dl = dd_add(d, dl, -h, -hl)
        dx = tl.where(ok, g * (d + dl), float("nan"))
        tl.store(DX + row * dx_stride + c, dx.to(DX.dtype.element_ty), mask=inside)


# -- Kullback-Leibler divergence ---------------------------------------------------

_EXP_SHIFT = tl.constexpr(128.0)  # exp(t) = exp(t - K ln 2) 2^K, K = 0 or +-128
_HALF_SCALE = tl.constexpr(18446744073709551616.0)  # 2^64 (2^K in two factors)
_F64_EXP_MAX = tl.constexpr(709.7827)  # (float32) exp overflows float64 above it


@triton.jit
def _exp_scaled(t):
    """``exp(t) = (h + l) s^2`` for a finite ``t`` or ``+inf``, ``h + l`` a
    double word within 2^-43 over the whole float32 range of the product:
    ``s = 2^64`` above 64, ``2^-64`` below -64, else 1 (``t - 128 ln 2`` with
    ln 2 in three parts, exactly); ``h = inf`` beyond 200 (``exp(t)`` and any
    term it scales overflow), 0 below -192."""
    up = t > 64.0
    down = t < -64.0
    k = tl.where(up, _EXP_SHIFT, tl.where(down, -_EXP_SHIFT, 0.0))
    z, zl = two_sum(tl.where(t > 200.0, 200.0, t), -k * LN2_HI)
    z, u = two_sum(z, -k * LN2_LO)  # (k LN2_HI and k LN2_LO: exact)
    h, lo = exp_dd(z, (zl + u) - k * LN2_LO2)
    s = tl.where(up, _HALF_SCALE, tl.where(down, 1.0 / _HALF_SCALE, 1.0))
    return h, tl.where(h < float("inf"), lo, 0.0), s


@triton.jit
def _kl_parts(x, t):
    """For the terms ``e^t (t - x)``: ``e^t = (eh + el) s^2`` (NaN for a NaN
    ``t``), ``dead`` (``t = -inf`` or ``e^t`` 0: the term and its gradients
    are 0), ``d = t - x`` (plain) and ``(dh, dl)`` exactly where ``exact``
    (``e^t``, ``d`` and their product finite)."""
    absent = t == -float("inf")
    tp = tl.where(absent, 0.0, t)
    eh, el, s = _exp_scaled(tl.where(tp == tp, tp, 0.0))
    eh = tl.where(tp == tp, eh, tp)
    dead = absent | (eh == 0.0)
    xl = tl.where(dead, tp, x)
    d = tp - xl
    zero_term = dead | (d == 0.0)
    plain = tl.where(zero_term, 0.0, tl.where(dead, 0.0, eh) * tl.where(zero_term, 1.0, d))
    exact = ~dead & (tl.abs(plain) < 1e38) & (tl.abs(d) < float("inf")) & (eh < float("inf"))
    dh, dl = two_sum(tl.where(exact, tp, 0.0), -tl.where(exact, xl, 0.0))
    eh_x, el_x = tl.where(exact, eh, 0.0), tl.where(exact, el, 0.0)
    return eh, el, eh_x, el_x, s, dead, d, dh, dl, plain, exact


@triton.jit
def kl_forward(X, x_stride, T, t_stride, LOSS, V, BLOCK: tl.constexpr):
    """Per row, ``sum_c e^{t_c} (t_c - x_c)``: each term the product of the
    double words ``e^t`` and ``t - x`` (TwoSum), the row summed as double
    words (:func:`~._triton_math.pair_sum`) and rounded once; 0 where ``t =
    -inf`` or ``e^t`` is 0 in float64 (here: below -192, where no term is a
    float32), ``e^t`` scaled by ``2^-+128`` outside [-64, 64] so that a term
    is exact wherever it is a normal float32."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    zero = tl.zeros((), tl.float32)
    total = zero
    total_lo = zero
    for start in range(0, V, BLOCK):
        c = start + cols
        inside = c < V
        x = tl.load(X + row * x_stride + c, mask=inside, other=0.0).to(tl.float32)
        t = tl.load(T + row * t_stride + c, mask=inside, other=-float("inf")).to(tl.float32)
        _, _, eh, el, s, dead, d, dh, dl, plain, exact = _kl_parts(x, t)
        h, hl = dd_mul(eh, el, dh, dl)
        h, hl = tl.where(exact, h, plain), tl.where(exact, hl, 0.0)
        # (t = x above float64's exp range: inf * 0 in the generic code)
        h = tl.where((d == 0.0) & (t > _F64_EXP_MAX), float("nan"), h)
        h, hl = tl.where(dead, 0.0, (h * s) * s), tl.where(dead, 0.0, (hl * s) * s)
        bh, bl = pair_sum(h, hl, 0)
        total, err = two_sum(total, bh)
        total_lo += err + bl
    tl.store(LOSS + row, total + tl.where(total_lo == total_lo, total_lo, 0.0))


@triton.jit
def kl_backward(
    X,
    x_stride,
    T,
    t_stride,
    G,
    DX,
    DT,
    V,
    WANT_X: tl.constexpr,
    WANT_T: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``DX = -G e^t`` and ``DT = G e^t (t - x + 1)`` (``t - x + 1`` and the
    product in double words), 0 where the term is (``t = -inf``, ``e^t``
    0); ``DX``, ``DT`` contiguous rows."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    g = tl.load(G + row).to(tl.float32)
    for start in range(0, V, BLOCK):
        c = start + cols
        inside = c < V
        x = tl.load(X + row * x_stride + c, mask=inside, other=0.0).to(tl.float32)
        t = tl.load(T + row * t_stride + c, mask=inside, other=-float("inf")).to(tl.float32)
        e, _, eh, el, s, dead, d, dh, dl, _, exact = _kl_parts(x, t)
        if WANT_X:
            dx = tl.where(dead, 0.0, -((e * s) * s))
            tl.store(DX + row * V + c, (g * dx).to(DX.dtype.element_ty), mask=inside)
        if WANT_T:
            u, ul = two_sum(dh, 1.0)
            h, hl = dd_mul(eh, el, u, ul + dl)
            dt = tl.where(exact, (h + hl) * s, tl.where(dead, 0.0, e) * (d + 1.0) * s) * s
            dt = tl.where(dead, 0.0, dt)
            tl.store(DT + row * V + c, (g * dt).to(DT.dtype.element_ty), mask=inside)


# -- negative log-likelihood --------------------------------------------------------


@triton.jit
def nll_forward(X, x_stride, x_col_stride, T, t_stride, LOSS, R, V, BLOCK: tl.constexpr):
    """``-x[row, t]`` for ``BLOCK`` rows (float32: exact); NaN for an index
    out of range."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = rows < R
    t = tl.load(T + rows * t_stride, mask=inside, other=0).to(tl.int64)
    ok = inside & (t >= 0) & (t < V)
    x = tl.load(X + rows * x_stride + tl.where(ok, t, 0) * x_col_stride, mask=ok, other=0.0)
    tl.store(LOSS + rows, tl.where(ok, -x.to(tl.float32), float("nan")), mask=inside)


@triton.jit
def nll_backward(T, t_stride, G, DX, R, V, BLOCK_R: tl.constexpr, BLOCK: tl.constexpr):
    """``DX`` (contiguous rows): ``-G[row]`` at the target, 0 elsewhere (a
    row whose index is out of range: 0), one tile of ``BLOCK_R`` rows by
    ``BLOCK`` classes per program."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = rows < R
    t = tl.load(T + rows * t_stride, mask=inside, other=-1).to(tl.int64)
    g = tl.load(G + rows, mask=inside, other=0.0).to(tl.float32)
    dx = tl.where(c[None, :] == t[:, None], -g[:, None], 0.0)
    mask = inside[:, None] & (c[None, :] < V)
    tl.store(DX + rows[:, None] * V + c[None, :], dx.to(DX.dtype.element_ty), mask=mask)

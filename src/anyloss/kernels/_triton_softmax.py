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
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_math import exp_pair, log1p, pair_sum, two_prod, two_sum

__all__ = ["ce_backward", "ce_forward"]


@triton.jit
def _scaled_pair(hi, lo, f, fl):
    """``(hi + lo) (f + fl)`` as a double word."""
    p, pe = two_prod(hi, f)
    return p, pe + (lo * f + hi * fl)


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
        finite = inside & (x > -float("inf")) & (x < float("inf"))
        bad += tl.sum(tl.where(inside & ((x != x) | (x == float("inf"))), 1.0, 0.0), 0)
        neg_inf += tl.sum(tl.where(inside & (x == -float("inf")), 1.0, 0.0), 0)
        new_m = tl.maximum(m, tl.max(tl.where(finite, x, -float("inf")), 0))
        # the running sums to the new maximum (none before the first finite logit)
        raised = (new_m > m) & (m > -float("inf"))
        d, dl = two_sum(tl.where(raised, m, 0.0), tl.where(raised, -new_m, 0.0))
        f = tl.where(raised, exp_pair(d, dl), 1.0)
        r, rl = two_sum(rest, ties)
        r, rl = _scaled_pair(r, rl + rest_lo, f, 0.0)
        rest = tl.where(raised, r, rest)
        rest_lo = tl.where(raised, rl, rest_lo)
        ties = tl.where(raised, 0.0, ties)
        if SMOOTH:
            u, ul = two_prod(seen, d)
            u, ul = two_sum(zsum, u)
            zsum, zsum_lo = u, ul + (zsum_lo + seen * dl)
        if PROBS:
            u, ul = two_prod(mass, d)
            u, ul = two_sum(psum, u)
            psum, psum_lo = u, ul + (psum_lo + mass * dl)
        m = new_m
        # this block at the maximum m: x - m = z + zl exactly
        mf = tl.where(m > -float("inf"), m, 0.0)
        z, zl = two_sum(tl.where(finite, x, mf), -mf)
        below = finite & (z < 0.0)
        e = tl.where(below, exp_pair(z, zl), 0.0)
        bh, bl = pair_sum(e, tl.zeros_like(e), 0)
        rest, rl = two_sum(rest, bh)
        rest_lo += rl + bl
        ties += tl.sum(tl.where(finite & (z == 0.0), 1.0, 0.0), 0)
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
    DX,
    dx_stride,
    V,
    smoothing,
    PROBS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``DX[row] = G[row] (softmax(x) - (1 - s) target - s / V)``, the
    softmax ``exp(x - M - log(ties + rest))``."""
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * x_stride
    cols = tl.arange(0, BLOCK)
    m = tl.load(MAX + row)
    lse = tl.load(LSE + row)
    g = tl.load(G + row).to(tl.float32)
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
        tl.store(DX + row * dx_stride + c, dx.to(DX.dtype.element_ty), mask=inside)

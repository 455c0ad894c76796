"""The chunked computation behind :func:`anyloss.linear_cross_entropy`.

The logits ``hidden @ weight.T + bias`` are formed one tile at a time: a
chunk of rows (tokens) by a block of the vocabulary. A first pass over a row
chunk's vocabulary blocks keeps, per row, only the running maximum ``m`` of
the logits, where it is, and ``rest``, the sum of ``exp(x - m)`` over the
other logits (rescaled when the maximum moves: an online logsumexp), plus the
target's logit and, with label smoothing, the running sums ``sum (m - x)``.
Where a gradient is wanted, a second pass forms each tile again and multiplies
its gradient into ``d hidden`` (the chunk's rows) and ``d weight``/``d bias``
(the block's rows), in a fixed order: results do not depend on timing. With
the whole vocabulary in one block the first pass's tile is reused, and the
second pass costs no product.

Everything here is the host library's own operations on arrays of the call's
library; the autodiff wiring lives in :mod:`anyloss._linear_autodiff` (JAX,
MLX) and :mod:`anyloss._linear_torch`.

Per row, with ``x`` the row's logits (after the optional softcap ``c tanh(x /
c)``), ``m`` their maximum, ``y`` the target:

- ``log sum exp(x - m) = log1p(rest)``: exact to an ulp whether the row is
  confident (tiny ``rest``) or not (a tie makes ``rest >= 1``);
- ``loss = (1 - s) w_y (log1p(rest) + m - x_y) + (s / V) sum_j w_j (log1p(rest)
  + m - x_j)`` (``s`` the label smoothing, ``w`` the class weights, 1
  without): a sum of terms that are all >= 0, nothing cancels;
- ``d loss / d x_j = A p_j - (1 - s) w_y [j = y] - (s / V) w_j`` with ``p =
  softmax(x)`` and ``A = (1 - s) w_y + (s / V) sum_j w_j``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _linear_tiles as lt
from ._backend import Backend

__all__ = ["Options", "Result", "plan", "run"]

# A tile (a chunk of rows by a block of the vocabulary) of logits is kept near
# this many bytes: a few tiles are alive at once, a few percent of the full
# logits of a realistic batch. Rows per chunk default to ROWS: products with
# fewer rows repack the weight too often (slower), more rows make the blocks
# of the vocabulary narrow (slower too).
TILE_BYTES = 4 << 20
# Where the numba tile kernels reduce the tiles (one tile alive at a time),
# tiles of 1/WIDE_SHARE of the logits, from TILE_BYTES up to WIDE_TILE_BYTES:
# wider blocks cost less per class (4096 x 256 -> 32000 float32, NumPy
# forward: 421 ms with blocks of 1000 classes, 362 with 2462, 355 with
# 4000), and 1/48 leaves room within 5% of the logits for the backward
# pass's temporaries (JAX forward+backward: 3.4% beyond the gradients,
# 5.4% with 1/32).
WIDE_TILE_BYTES = 16 << 20
WIDE_SHARE = 48
ROWS = 1024
# narrowest vocabulary block (unless the vocabulary is narrower)
MIN_BLOCK = 256


@dataclass(frozen=True)
class Options:
    """The static (hashable) options of one call."""

    num_classes: int
    smoothing: float
    softcap: float | None
    chunk: int  # rows per chunk
    block: int  # classes per vocabulary block


@dataclass
class Result:
    """What :func:`run` returns (arrays of the call's library, compute dtype).

    ``loss``: one value per row (0 for ignored rows). ``m``, ``rest``: the
    rows' statistics (see the module docstring), which a later backward pass
    can take instead of recomputing them. ``d_hidden``, ``d_weight``,
    ``d_bias``: the gradients of ``sum(coef * loss)`` (None unless asked for;
    ``d_bias`` also None without a bias).
    """

    loss: Any
    m: Any = None
    rest: Any = None
    d_hidden: Any = None
    d_weight: Any = None
    d_bias: Any = None


def plan(
    rows: int,
    num_classes: int,
    itemsize: int,
    chunk: int | None,
    block: int | None = None,
    wide: bool = False,
) -> tuple[int, int]:
    """``(rows per chunk, classes per block)`` for a call.

    ``chunk`` rows (default :data:`ROWS`, at most ``rows``) and ``block``
    classes (at most ``num_classes``); by default the widest block whose tile
    stays within :data:`TILE_BYTES` (at least :data:`MIN_BLOCK` classes), all
    blocks of one width. ``wide`` (the tile kernels will run): within
    1/:data:`WIDE_SHARE` of the logits, between :data:`TILE_BYTES` and
    :data:`WIDE_TILE_BYTES`.
    """
    r = max(1, min(max(rows, 1), ROWS if chunk is None else chunk))
    if block is not None:
        return r, max(1, min(num_classes, block))
    limit = TILE_BYTES
    if wide:
        share = rows * num_classes * itemsize // WIDE_SHARE
        limit = max(TILE_BYTES, min(WIDE_TILE_BYTES, share))
    c = limit // max(1, r * itemsize)
    c = max(min(num_classes, MIN_BLOCK), min(num_classes, c))
    blocks = -(-num_classes // c)
    return r, -(-num_classes // blocks)  # the same width for every block


# -- per-library element access -------------------------------------------------


def _put(be: Backend, x: Any, index: Any, value: Any) -> Any:
    """``x`` with ``x[i, index[i]] = value[i]`` for every row ``i`` (in place
    where the library allows it; the result is what to use)."""
    xp = be.xp
    n = x.shape[0]
    if be.name in ("numpy", "cupy", "mlx"):
        x[be.arange(n), index] = value
        return x
    if be.name == "torch":
        return x.scatter_(1, index[:, None], value[:, None])
    if be.name == "jax":
        return x.at[be.arange(n), index].set(value)
    hot = be.arange(x.shape[1], dtype=index.dtype)[None, :] == index[:, None]
    return xp.where(hot, value[:, None], x)


def _add(be: Backend, x: Any, index: Any, value: Any) -> Any:
    """``x`` with ``x[i, index[i]] += value[i]`` (in place where allowed)."""
    xp = be.xp
    n = x.shape[0]
    if be.name in ("numpy", "cupy"):
        x[be.arange(n), index] += value
        return x
    if be.name == "torch":
        return x.scatter_add_(1, index[:, None], value[:, None])
    if be.name in ("jax", "mlx"):
        return x.at[be.arange(n), index].add(value)
    hot = be.arange(x.shape[1], dtype=index.dtype)[None, :] == index[:, None]
    return x + xp.where(hot, value[:, None], be.scalar(0.0, x.dtype))


def _take(be: Backend, x: Any, index: Any) -> Any:
    """``x[i, index[i]]`` for every row ``i``."""
    from ._classification import _take_along

    return _take_along(be, x, index, 1)


def _argmax(be: Backend, x: Any) -> tuple[Any, Any]:
    """The maximum of each row and where it is (the first one)."""
    if be.name == "torch":
        m, a = x.max(dim=1)
        return m, a
    a = be.xp.argmax(x, axis=1)
    if be.name == "mlx":
        a = be.xp.astype(a, be.xp.int32)
    return _take(be, x, a), a


# -- one tile -------------------------------------------------------------------


def _tile(be: Backend, h: Any, w: Any, b: Any, opt: Options, c0: int, c1: int) -> tuple[Any, Any]:
    """The logits of rows ``h`` for classes ``c0:c1`` (capped), and
    ``tanh(x / cap)`` where there is a cap (for the gradient), else None."""
    full = c0 == 0 and c1 == w.shape[0]
    x = h @ (w if full else w[c0:c1, :]).T
    if b is not None:
        x = x + (b if full else b[c0:c1])
    if opt.softcap is None:
        return x, None
    cap = be.scalar(opt.softcap, x.dtype)
    th = be.xp.tanh(x / cap)
    return th * cap, th


@dataclass
class _Stats:
    """A row chunk's running statistics over the vocabulary blocks seen."""

    m: Any  # the maximum logit
    rest: Any  # sum of exp(x - m) over all but one maximum
    target: Any  # the target's logit (once its block was seen)
    below: Any = None  # sum_j (m - x_j), with label smoothing
    weighted: Any = None  # sum_j w_j (m - x_j), with label smoothing and class weights
    seen: float = 0.0  # classes seen
    weight_seen: Any = None  # sum of the class weights seen


def _exp_shifted(be: Backend, x: Any, m: Any, keep: bool) -> Any:
    """``exp(x - m[:, None])``; on NumPy written over ``x`` unless ``keep``
    (one tile alive instead of three)."""
    if be.name == "numpy" and not keep:
        np.subtract(x, m[:, None], out=x)
        return np.exp(x, out=x)
    return be.xp.exp(x - m[:, None])


def _first_pass(
    be: Backend, h: Any, w: Any, b: Any, t: Any, cw: Any, opt: Options, keep: bool = False
) -> tuple[_Stats, Any]:
    """The statistics of rows ``h`` over every block (and the last tile, for
    a caller that can reuse it: ``keep``, one block only)."""
    xp = be.xp
    tile_kept = keep and opt.block >= opt.num_classes
    num = opt.num_classes
    st: _Stats | None = None
    x = th = None
    for c0 in range(0, num, opt.block):
        c1 = min(num, c0 + opt.block)
        x = th = e = None  # the last tile is freed before the next is made
        x, th = _tile(be, h, w, b, opt, c0, c1)
        bm, ba = _argmax(be, x)
        inside = (t >= c0) & (t < c1)
        xt = _take(be, x, xp.clip(t - c0, 0, c1 - c0 - 1))
        if st is None:  # the first block: its maximum is the maximum so far
            if opt.smoothing:
                below = xp.sum(bm[:, None] - x, axis=1)
                if cw is not None:
                    weighted = xp.sum((bm[:, None] - x) * cw[c0:c1], axis=1)
            e = _exp_shifted(be, x, bm, keep=tile_kept)
            e = _put(be, e, ba, xp.zeros_like(bm))
            st = _Stats(bm, xp.sum(e, axis=1), xt)
            if opt.smoothing:
                st.below = below
                if cw is not None:
                    st.weighted = weighted
                    st.weight_seen = xp.sum(cw[c0:c1])
        else:
            m = xp.maximum(st.m, bm)
            moved = bm > st.m  # the new maximum is in this block
            scale = xp.exp(st.m - m)
            if opt.smoothing:
                below = xp.sum(m[:, None] - x, axis=1)
                if cw is not None:
                    part = xp.sum((m[:, None] - x) * cw[c0:c1], axis=1)
            e = _exp_shifted(be, x, m, keep=tile_kept)
            # the new maximum's term (1) leaves the sum, the old one's joins it
            e = _put(be, e, ba, xp.where(moved, xp.zeros_like(bm), _take(be, e, ba)))
            rest = st.rest * scale + xp.where(moved, scale, scale * 0) + xp.sum(e, axis=1)
            st.target = xp.where(inside, xt, st.target)
            if opt.smoothing:
                shift = m - st.m  # >= 0: every earlier (m - x_j) grows by it
                st.below = st.below + shift * st.seen + below
                if cw is not None:
                    st.weighted = st.weighted + shift * st.weight_seen + part
                    st.weight_seen = st.weight_seen + xp.sum(cw[c0:c1])
            st.m, st.rest = m, rest
        st.seen += c1 - c0
    assert st is not None
    return st, (x, th)


def _row_loss(be: Backend, st: _Stats, t: Any, cw: Any, opt: Options) -> Any:
    xp = be.xp
    off = xp.log1p(st.rest)  # log sum exp(x - m)
    gap = st.m - st.target  # m - x_t >= 0
    s = opt.smoothing
    num = opt.num_classes
    if cw is None:
        loss = off + gap
        if s:
            loss = loss * (1.0 - s) + (off + st.below / num) * s
        return loss
    cwt = xp.take(cw, t, axis=0)
    loss = cwt * (off + gap)
    if s:
        uniform = (off * xp.sum(cw) + st.weighted) / num
        loss = loss * (1.0 - s) + uniform * s
    return loss


def _tile_grad(
    be: Backend,
    x: Any,
    th: Any,
    m: Any,
    rest: Any,
    t: Any,
    cw: Any,
    coef: Any,
    opt: Options,
    c0: int,
    c1: int,
) -> Any:
    """``coef * d loss / d x`` for the tile ``x`` (classes ``c0:c1``)."""
    xp = be.xp
    one = be.scalar(1.0, x.dtype)
    s = opt.smoothing
    num = opt.num_classes
    scale = coef / (one + rest)
    if cw is not None:
        cwt = xp.take(cw, t, axis=0)
        a = cwt * (1.0 - s)
        if s:
            a = a + xp.sum(cw) * (s / num)
        scale = scale * a
        target = coef * cwt * (1.0 - s)
    else:
        target = coef * (1.0 - s) if s else coef
    dz = xp.exp(x - m[:, None]) * scale[:, None]
    if s:
        per_class = cw[c0:c1] * (s / num) if cw is not None else s / num
        dz = dz - coef[:, None] * per_class
    inside = (t >= c0) & (t < c1)
    dz = _add(be, dz, xp.clip(t - c0, 0, c1 - c0 - 1), xp.where(inside, -target, target * 0))
    if th is not None:
        dz = dz * ((one - th) * (one + th))
    return dz


# -- the loop over chunks -------------------------------------------------------


def _step(
    be: Backend,
    h: Any,
    w: Any,
    b: Any,
    t: Any,
    cw: Any,
    opt: Options,
    coef: Any,
    stats: tuple[Any, Any] | None,
    d_weight: Any,
    d_bias: Any,
    kern: Any = None,
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """One chunk of rows: ``(loss, m, rest, d_hidden, d_weight, d_bias)``; the
    first pass unless ``stats`` gives ``(m, rest)`` (``loss`` is then None),
    the second where ``coef`` is given (else ``d_hidden`` is None). ``kern``:
    the numba kernels, where :func:`anyloss._linear_tiles.kernels_for` gave
    them."""
    if kern is not None:
        return _step_tiles(be, h, w, b, t, opt, coef, stats, d_weight, d_bias, kern)
    loss = tile = None
    if stats is None:
        st, tile = _first_pass(be, h, w, b, t, cw, opt, keep=coef is not None)
        loss, m, rest = _row_loss(be, st, t, cw, opt), st.m, st.rest
    else:
        m, rest = stats
    dh = None
    if coef is not None:
        reuse = tile if opt.block >= opt.num_classes else None

        def grad(x: Any, th: Any, c0: int, c1: int) -> Any:
            return _tile_grad(be, x, th, m, rest, t, cw, coef, opt, c0, c1)

        def tiles(c0: int, c1: int) -> Any:
            return reuse if reuse is not None else _tile(be, h, w, b, opt, c0, c1)

        dh, d_weight, d_bias = _second_pass(be, h, w, b, opt, tiles, grad, d_weight, d_bias)
    return loss, m, rest, dh, d_weight, d_bias


def _step_tiles(
    be: Backend,
    h: Any,
    w: Any,
    b: Any,
    t: Any,
    opt: Options,
    coef: Any,
    stats: tuple[Any, Any] | None,
    d_weight: Any,
    d_bias: Any,
    kern: Any,
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """:func:`_step` through the numba tile kernels (float32, no class
    weights): the statistics stay float64 NumPy arrays between the passes."""
    loss = tile = None
    buf = lt.buffer(be, h, opt)  # every tile of the chunk is written there
    if stats is None:
        st, tile = lt.first_pass(be, kern, h, w, b, t, opt, buf)
        loss = lt.library(be, lt.row_loss(st, opt))
    else:
        st = lt.numpy_stats(be, *stats)
    dh = None
    if coef is not None:
        reuse = tile if opt.block >= opt.num_classes else None

        def grad(x: Any, th: Any, c0: int, c1: int) -> Any:
            return lt.tile_grad(be, kern, x, st, t, coef, opt, c0)

        def tiles(c0: int, c1: int) -> Any:
            if reuse is not None:  # one block: the first pass's tile
                return reuse, None
            return lt.tile(be, h, w, b, opt, c0, c1, buf), None

        dh, d_weight, d_bias = _second_pass(be, h, w, b, opt, tiles, grad, d_weight, d_bias)
    m = lt.library(be, st.m)
    rest = lt.library(be, st.rest.astype(np.float32))
    return loss, m, rest, dh, d_weight, d_bias


def run(
    be: Backend,
    h: Any,
    w: Any,
    b: Any,
    t: Any,
    kept: Any,
    cw: Any,
    opt: Options,
    coef: Any = None,
    stats: tuple[Any, Any] | None = None,
    out: tuple[Any, Any, Any] | None = None,
) -> Result:
    """The loss of every row of ``h`` (``(N, H)``), and with ``coef`` (``(N,)``)
    the gradients of ``sum(coef * loss)``.

    ``w`` (``(V, H)``), ``b`` (``(V,)`` or None), ``cw`` (``(V,)`` or None) are
    in the compute dtype; ``h`` may be narrower (each chunk is widened as it
    is used). ``t`` holds valid class indices (ignored rows: any valid one),
    ``kept`` is False at the ignored rows (their loss is 0, as is their
    gradient), or None where every row counts. ``stats``: the ``(m, rest)``
    of an earlier call on the same arguments; with a gradient wanted, the
    first pass is then skipped (the losses returned are then not computed:
    None). ``out`` (NumPy only): the arrays ``(d_hidden, d_weight, d_bias)``
    (``d_bias`` None without a bias) the gradients are written into, in
    place of new ones.
    """
    if be.name == "jax":
        return _run_scan(be, h, w, b, t, kept, cw, opt, coef, stats)
    xp = be.xp
    dtype = w.dtype
    n = h.shape[0]
    zero = be.scalar(0.0, dtype)
    if coef is not None and kept is not None:
        coef = xp.where(kept, coef, zero)
    kern = lt.kernels_for(be, w, cw, n)
    losses, ms, rests, d_hidden = [], [], [], []
    d_weight = d_bias = None
    if coef is not None and out is not None:
        _, d_weight, d_bias = out
        d_weight[...] = 0.0
        if d_bias is not None:
            d_bias[...] = 0.0
    elif coef is not None:
        d_weight = be.full(w.shape, 0.0, dtype)
        if b is not None:
            d_bias = be.full(b.shape, 0.0, dtype)
    for start in range(0, n, opt.chunk):
        stop = min(n, start + opt.chunk)
        loss, m, rest, dh, d_weight, d_bias = _step(
            be,
            be.cast(h[start:stop, :], dtype),
            w,
            b,
            t[start:stop],
            cw,
            opt,
            None if coef is None else coef[start:stop],
            None if stats is None else (stats[0][start:stop], stats[1][start:stop]),
            d_weight,
            d_bias,
            kern,
        )
        if stats is None:
            losses.append(loss)
            ms.append(m)
            rests.append(rest)
        if dh is not None and out is not None:
            out[0][start:stop] = dh
        elif dh is not None:
            d_hidden.append(dh)
    loss = m_all = rest_all = None
    if stats is None:
        if not losses:  # no rows
            loss, m_all, rest_all = (be.full((0,), 0.0, dtype) for _ in "lmr")
        else:
            loss, m_all, rest_all = (_cat(be, parts) for parts in (losses, ms, rests))
        if kept is not None:
            loss = xp.where(kept, loss, zero)
    if coef is None:
        return Result(loss, m_all, rest_all)
    if out is not None:
        dh = out[0]
    else:
        dh = _cat(be, d_hidden) if d_hidden else be.full((0, w.shape[1]), 0.0, dtype)
    return Result(loss, m_all, rest_all, dh, d_weight, d_bias)


def _cat(be: Backend, parts: list[Any]) -> Any:
    return parts[0] if len(parts) == 1 else be.xp.concat(parts)


def _second_pass(
    be: Backend,
    h: Any,
    w: Any,
    b: Any,
    opt: Options,
    tiles: Any,
    grad: Any,
    d_weight: Any,
    d_bias: Any,
) -> tuple[Any, Any, Any]:
    """``d hidden`` of the rows ``h``; ``d_weight``/``d_bias`` updated (in
    place on torch and NumPy, else the new arrays returned). ``tiles(c0,
    c1)``: the block's tile ``(x, th)``; ``grad(x, th, c0, c1)``: its
    gradient ``dz``."""
    num = opt.num_classes
    dh = None
    for c0 in range(0, num, opt.block):
        c1 = min(num, c0 + opt.block)
        x, th = tiles(c0, c1)
        dz = grad(x, th, c0, c1)
        full = c0 == 0 and c1 == num
        wc = w if full else w[c0:c1, :]
        part = dz @ wc
        dh = part if dh is None else dh + part
        if be.name == "torch":
            (d_weight if full else d_weight[c0:c1, :]).addmm_(dz.T, h)
            if d_bias is not None:
                (d_bias if full else d_bias[c0:c1]).add_(dz.sum(dim=0))
        elif be.name == "numpy":  # in place (the arrays may be a caller's: ``out``)
            d_weight[c0:c1, :] += dz.T @ h
            if d_bias is not None:
                d_bias[c0:c1] += be.xp.sum(dz, axis=0)
        elif full:
            d_weight = d_weight + dz.T @ h
            if d_bias is not None:
                d_bias = d_bias + be.xp.sum(dz, axis=0)
        elif be.name == "jax":
            d_weight = d_weight.at[c0:c1, :].add(dz.T @ h)
            if d_bias is not None:
                d_bias = d_bias.at[c0:c1].add(be.xp.sum(dz, axis=0))
        else:  # other NumPy-like libraries, MLX
            d_weight[c0:c1, :] = d_weight[c0:c1, :] + dz.T @ h
            if d_bias is not None:
                d_bias[c0:c1] = d_bias[c0:c1] + be.xp.sum(dz, axis=0)
    return dh, d_weight, d_bias


def _run_scan(
    be: Backend,
    h: Any,
    w: Any,
    b: Any,
    t: Any,
    kept: Any,
    cw: Any,
    opt: Options,
    coef: Any,
    stats: tuple[Any, Any] | None,
) -> Result:
    """:func:`run` for JAX: one ``lax.scan`` over chunks of equal size (the
    rows padded to a multiple of the chunk, the padding's gradient weight 0),
    compiled once whatever the number of chunks; the blocks of the
    vocabulary are a Python loop inside it."""
    jax = sys.modules["jax"]
    jnp = jax.numpy
    dtype = w.dtype
    n = h.shape[0]
    r = opt.chunk
    count = -(-n // r) if n else 0
    pad = count * r - n
    if coef is not None and kept is not None:
        coef = jnp.where(kept, coef, jnp.zeros((), dtype))

    def padded(x: Any) -> Any:
        if not pad:
            return x
        return jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])

    def chunks(x: Any) -> Any:
        return padded(x).reshape(count, r, *x.shape[1:])

    xs: dict[str, Any] = {"h": chunks(h), "t": chunks(t)}
    if coef is not None:
        xs["coef"] = chunks(coef)
    if stats is not None:
        # padded rows: m = 0, rest = 0 (their coefficient is 0 anyway)
        xs["m"], xs["rest"] = chunks(stats[0]), chunks(stats[1])

    def body(carry: Any, x: Any) -> Any:
        dw, db = (None, None) if carry is None else carry
        loss, m, rest, dh, dw, db = _step(
            be,
            x["h"].astype(dtype),
            w,
            b,
            x["t"],
            cw,
            opt,
            x.get("coef"),
            None if stats is None else (x["m"], x["rest"]),
            dw,
            db,
        )
        out = {} if stats is not None else {"loss": loss, "m": m, "rest": rest}
        if dh is None:
            return carry, out
        out["dh"] = dh
        return (dw, db), out

    init = None
    if coef is not None:
        init = (jnp.zeros(w.shape, dtype), None if b is None else jnp.zeros(b.shape, dtype))
    carry, out = jax.lax.scan(body, init, xs)

    def rows(x: Any) -> Any:
        return x.reshape(count * r, *x.shape[2:])[:n]

    loss = m = rest = None
    if stats is None:
        loss, m, rest = rows(out["loss"]), rows(out["m"]), rows(out["rest"])
        if kept is not None:
            loss = jnp.where(kept, loss, jnp.zeros((), dtype))
    if coef is None:
        return Result(loss, m, rest)
    dw, db = carry
    return Result(loss, m, rest, rows(out["dh"]), dw, db)

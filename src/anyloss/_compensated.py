"""Compensated arithmetic: error-free transformations and double-word values.

Where a library has no wider float type than its inputs (float64 everywhere;
float32 on MLX and on JAX without x64), a value that must not be rounded is
carried as an unevaluated sum ``hi + lo`` of two floats of the input's dtype,
and the operations below keep every rounding error they make:

- :func:`two_sum` (Knuth): ``a + b = s + e`` exactly, for any finite floats;
- :func:`two_prod` / :func:`two_square` (Dekker's split): ``a b = p + e``
  exactly, for products that neither overflow nor underflow (see its note
  on the range);
- :func:`dd_sum` / :func:`dd_dot` (and :func:`dd_sums` / :func:`dd_dots` for
  several at once): sums along an axis whose every addition keeps its error
  (Ogita-Rump-Oishi Sum2/Dot2): as accurate as if computed in twice the
  precision, whatever the memory layout (a library's own sum depends on
  it); pairwise in a fixed order, or on JAX one reduction with a TwoSum
  combiner;
- :func:`dd_add`, :func:`dd_mul`, :func:`dd_div`, :func:`dd_sqrt`,
  :func:`dd_finish` on ``(hi, lo)`` pairs;
- :func:`exact_square` and :func:`sum3`, for sums that cancel deeper than
  double words resolve: a square as three floats, and a sum as accurate as
  if computed in three times the precision.

Every function is built from the library's own ``+ - * / sqrt`` and
``where``: generic over array libraries, traceable by ``jax.jit``,
``mx.compile`` and ``torch.compile`` (none of them reassociates float
additions, which would undo the transformations), and differentiable (the
error terms have gradients near 0 and do not disturb the hi parts').

One compiler rewrite does matter: XLA's CPU code contracts a product and
the sum it is fused into into one fused multiply-add (``a b + c`` rounded
once), so under ``jax.jit`` a consumer of Dekker's ``p = fl(a b)`` may see
the exact ``a b`` instead, and the error term no longer matches. On JAX the
products are therefore formed from a bit-mask split whose partial products
are exact (contraction then changes nothing), and ``p`` is a sum.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ._backend import Backend

__all__ = [
    "dd_add",
    "dd_constant",
    "dd_div",
    "dd_dot",
    "dd_finish",
    "dd_mul",
    "dd_sqrt",
    "dd_dots",
    "dd_sum",
    "dd_sums",
    "exact_square",
    "exact_value",
    "fast_two_sum",
    "float32_parts",
    "fused",
    "mlx_backend",
    "pairwise_sum",
    "pow2",
    "scaled_up",
    "sum3",
    "two_prod",
    "two_square",
    "two_sum",
]


def _literal(x: Any) -> bool:
    """Whether ``x`` is a constant of a ``jax.jit`` trace (a Python number or
    a concrete JAX array among traced ones)."""
    if isinstance(x, (int, float)):
        return True
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)


def two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """``s, e`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth).

    A constant goes second: XLA reassociates additions of constants
    (``(x + c) - c`` becomes ``x``), which turns ``fl(s - a)`` for a
    constant ``a`` into ``b`` and loses the error; with the constant as
    ``b`` no such pair forms. Done here for a constant ``a`` seen as one
    (a Python number, a concrete array under ``jax.jit``); a constant
    computed inside the trace (``ones_like``) must be passed second."""
    if _literal(a) and not _literal(b):
        a, b = b, a
    s = a + b
    bv = s - a
    return s, (a - (s - bv)) + (b - bv)


def fast_two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """``s, e`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly, for
    ``|a| >= |b|`` (or ``a = 0``) (Dekker): renormalizes a double word. A
    constant ``a`` takes :func:`two_sum` (see there)."""
    if _literal(a) and not _literal(b):
        return two_sum(b, a)
    s = a + b
    return s, b - (s - a)


def pow2(be: Backend, k: Any) -> Any:
    """``2^k`` exactly, for an integer-valued float array ``k`` whose power is
    a normal number (``|k| <= 126`` in float32, ``1022`` in float64).

    On JAX and MLX from the exponent bits: their ``pow`` is exact but costs
    as much as 20 additions (XLA: 4 ms on 4M float32 elements, MLX: 25 ms;
    2-core CPU), and XLA's ``exp2`` is not exact. Elsewhere the library's
    ``pow``."""
    if be.name not in ("jax", "mlx"):
        return be.xp.pow(be.scalar(2.0, k.dtype), k)
    wide = _precision(k) == 53
    bias, shift = (1023, 52) if wide else (127, 23)
    if be.name == "mlx":
        mx = sys.modules["mlx.core"]
        bits = (mx.stop_gradient(k).astype(mx.int64 if wide else mx.int32) + bias) << shift
        return bits.view(k.dtype)
    jax = sys.modules["jax"]
    ints = jax.numpy.int64 if wide else jax.numpy.int32
    bits = (jax.lax.stop_gradient(k).astype(ints) + bias) << shift
    return jax.lax.bitcast_convert_type(bits, k.dtype)


def _splitter(x: Any) -> float:
    """Dekker's constant ``2^ceil(p / 2) + 1`` for the precision ``p`` of ``x``."""
    # by name: the dtype objects of the libraries share no size attribute
    return 134217729.0 if "64" in str(x.dtype) else 4097.0  # 2**27 + 1, 2**12 + 1


def _precision(x: Any) -> int:
    """The number of significand bits of ``x``'s float dtype (24 or 53)."""
    return _precision_of(x.dtype)


def _precision_of(dtype: Any) -> int:
    """The number of significand bits of a float dtype (24 or 53)."""
    return 53 if "64" in str(dtype) else 24


def _split(x: Any) -> tuple[Any, Any]:
    """``x = hi + lo`` exactly, each with at most half of ``x``'s bits."""
    t = _splitter(x) * x
    hi = t - (t - x)
    return hi, x - hi


def _mask_split(x: Any) -> tuple[Any, Any]:
    """``x = hi + lo`` exactly, for a JAX array: ``hi`` is ``x`` with the low
    half of its significand cleared by a bit mask (12 bits kept of float32's
    24, 26 of float64's 53), ``lo = x - hi`` (exact: the cleared bits). No
    float product is formed, so no compiler can contract it into a fused
    multiply-add; ``hi`` is a constant for differentiation."""
    lax = sys.modules["jax"].lax
    jnp = sys.modules["jax.numpy"]
    if _precision(x) == 53:
        ints, mask = jnp.int64, -(1 << 27)
    else:
        ints, mask = jnp.int32, -(1 << 12)
    bits = lax.bitcast_convert_type(lax.stop_gradient(x), ints) & mask
    hi = lax.bitcast_convert_type(bits, x.dtype)
    return hi, x - hi


def _jax_two_prod(a: Any, b: Any) -> tuple[Any, Any]:
    """:func:`two_prod` of JAX arrays (see there)."""
    a_hi, a_lo = _mask_split(a)
    b_hi, b_lo = _mask_split(b)
    mid, mid_err = two_sum(a_hi * b_lo, a_lo * b_hi)
    p, e = two_sum(a_hi * b_hi, mid)
    return p, e + (mid_err + a_lo * b_lo)


def _jax_two_square(a: Any) -> tuple[Any, Any]:
    """:func:`two_square` of a JAX array: ``a_hi^2``, ``2 a_hi a_lo`` and
    ``a_lo^2`` are exact."""
    hi, lo = _mask_split(a)
    p, e = two_sum(hi * hi, 2.0 * (hi * lo))
    return p, e + lo * lo


def two_prod(a: Any, b: Any, be: Backend | None = None) -> tuple[Any, Any]:
    """``p, e`` with ``p = fl(a b)`` and ``a b = p + e`` (Dekker; the array
    API has no fused multiply-add).

    Exact where the split does not overflow (``|a|, |b|`` below
    ``max / 2^(p/2 + 1)``: about ``2^995`` in float64, ``2^115`` in float32)
    and the partial products do not underflow (``|a b|`` above about
    ``2^-969`` in float64, ``2^-102`` in float32); the callers scale their
    operands by powers of two to stay inside.

    On JAX (``be`` given) the pair is assembled from the four exact partial
    products with TwoSums instead, and is accurate to ``2 u^2 |a b|`` (``u``
    the unit roundoff) rather than exact: XLA's CPU code contracts a
    product and a sum that it fuses into one fused multiply-add, so a
    consumer computing ``x - p`` would see the exact ``a b`` where ``p`` is
    its rounding (and Dekker's ``a_hi b_hi - p`` would lose the error).
    Every product formed there is exact, which makes contraction harmless,
    and ``p`` is a sum, which a consumer cannot contract. XLA also flushes
    subnormals: there the partial products must stay above ``2^-126``
    (operands above ``2^-102``, as after the callers' scaling).
    """
    if be is not None and be.name == "jax":
        return _jax_two_prod(a, b)
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    p = a * b
    return p, (((a_hi * b_hi - p) + a_hi * b_lo) + a_lo * b_hi) + a_lo * b_lo


def two_square(a: Any, be: Backend | None = None) -> tuple[Any, Any]:
    """:func:`two_prod` ``(a, a)``; on JAX from one split (``a_hi^2``,
    ``2 a_hi a_lo`` and ``a_lo^2`` are exact)."""
    if be is None or be.name != "jax":
        return two_prod(a, a)
    return _jax_two_square(a)


def exact_square(a: Any, be: Backend | None = None) -> list[Any]:
    """``a^2`` as three floats ``[h^2, 2 h l, l^2]`` whose sum is exact
    (``a = h + l``, each half of ``a``'s bits: every product is exact, so a
    compiler contracting one into a fused multiply-add changes nothing).
    For sums that need ``a^2`` to more than twice the precision; the split
    is the bit mask on JAX (see :func:`two_prod`), Dekker's elsewhere."""
    hi, lo = _mask_split(a) if be is not None and be.name == "jax" else _split(a)
    return [hi * hi, 2.0 * (hi * lo), lo * lo]


def _error_tree(be: Backend, x: Any, axis: int) -> tuple[Any, Any]:
    """``(s, errs)`` with ``sum(x) = s + sum(errs)`` exactly along ``axis``
    (kept, of length 1 for ``s``): a pairwise sum by TwoSums, padded with
    zeros to a power of two, whose every error is kept in ``errs``."""
    xp = be.xp
    lead = (slice(None),) * axis
    n = x.shape[axis]
    size = 1 << max(n - 1, 0).bit_length()
    if size != n:  # size - n < n zeros, on x's device
        pad = (*lead, slice(0, size - n), ...)
        x = xp.concat([x, xp.zeros_like(x[pad])], axis=axis)
    errs = []
    while size > 1:
        size //= 2
        low, high = (*lead, slice(0, size), ...), (*lead, slice(size, 2 * size), ...)
        x, e = two_sum(x[low], x[high])
        errs.append(e)
    return x, xp.concat(errs, axis=axis) if errs else xp.zeros_like(x)


def sum3(be: Backend, words: list[Any], axis: int) -> tuple[Any, Any]:
    """The sum of the arrays ``words`` (of one shape) and of their entries
    along ``axis``, as ``(s, e)`` accurate as if computed in three times the
    precision (Ogita-Rump-Oishi SumK with K = 3, by pairwise trees): for
    sums that cancel to ``2^-30`` of their terms, as the difference of two
    nearly equal sums of squares can, where the 48 bits of a float32
    :func:`dd_sum` leave fewer than 24.

    The words are concatenated along the axis and summed by a tree of
    TwoSums whose errors (exact) are summed by another such tree; the plain
    sum of that tree's errors is off by about ``log2(n)^3 u^3`` times the
    sum of the absolute words (``u`` the unit roundoff). Generic slicing:
    meant for short rows (the words of a row are as many as its entries
    times their count), on the value only (no derivative is wanted of it).
    """
    xp = be.xp
    axis = axis % words[0].ndim
    x = xp.concat(words, axis=axis) if len(words) > 1 else words[0]
    if x.shape[axis] == 0:
        return xp.sum(x, axis=axis), xp.sum(x, axis=axis)
    s1, e1 = _error_tree(be, x, axis)
    s2, e2 = _error_tree(be, e1, axis)
    hi, lo = two_sum(xp.squeeze(s1, axis=axis), xp.squeeze(s2, axis=axis))
    return hi, lo + xp.sum(e2, axis=axis)


def exact_value(be: Backend, exact: Any, plain: Any) -> Any:
    """``exact`` (a value computed apart, say in double words, without a
    derivative) differentiated as ``plain`` (the same value from the float
    formulas): ``exact + (plain - stop_gradient(plain))``. Where either is
    not finite it is ``plain`` itself: an infinite loss would make the sum
    ``inf - inf``, and the double words can overflow where the formulas do
    not (Dekker's split of an input near the largest float)."""
    xp = be.xp
    sg = be.stop_gradient
    value = sg(xp.where(xp.isfinite(exact), exact, plain))
    # the derivative depends on plain alone: under jax.grad the exact value
    # is not computed at all
    return xp.where(xp.isfinite(plain), value + (plain - sg(plain)), plain)


def float32_parts(value: float) -> tuple[float, float]:
    """A Python float as float32 ``hi + lo`` (``hi`` the nearest float32,
    ``lo`` the rest rounded): a constant to about ``2^-48`` of itself in
    float32 double words."""
    hi = float(np.float32(value))
    return hi, float(np.float32(value - hi))


def dd_constant(be: Backend, value: float, dtype: Any) -> tuple[Any, Any]:
    """A Python float as a double word of ``dtype`` (0-d arrays):
    :func:`float32_parts` in float32, ``(value, 0)`` in float64."""
    hi, lo = (value, 0.0) if _precision_of(dtype) == 53 else float32_parts(value)
    return be.scalar(hi, dtype), be.scalar(lo, dtype)


def scaled_up(be: Backend, below: float, v: tuple[Any, Any]) -> tuple[tuple[Any, Any], Any]:
    """The double word ``v`` times ``2^64`` where ``|v_hi| < below`` (else
    times 1), and the factor that undoes it (``2^-64`` or 1): products of
    small double words keep their error terms above the subnormal range
    (which XLA's CPU code flushes to 0). Exact (powers of two)."""
    xp = be.xp
    dt = v[0].dtype
    one = be.scalar(1.0, dt)
    tiny = xp.abs(v[0]) < be.scalar(below, dt)
    up = xp.where(tiny, be.scalar(2.0**64, dt), one)
    return (v[0] * up, v[1] * up), xp.where(tiny, be.scalar(2.0**-64, dt), one)


def dd_add(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    """``a + b`` for double-word ``a = (hi, lo)`` and ``b``. Not normalized:
    where the high parts cancel, ``lo`` can exceed ``hi`` (``hi`` 0 and
    ``lo`` not): :func:`dd_mul` and :func:`dd_div` take such pairs, a
    square by :func:`two_square` of ``hi`` alone does not."""
    s, e = two_sum(a[0], b[0])
    return s, e + (a[1] + b[1])


def _normalized(be: Backend, hi: Any, lo: Any) -> tuple[Any, Any]:
    """``hi + lo`` as a normalized pair (``|lo| <= ulp(hi) / 2``); ``hi``
    kept where it is not finite (TwoSum would turn an inf into NaN)."""
    s, e = two_sum(hi, lo)
    return be.xp.where(be.xp.isfinite(hi), s, hi), e


def dd_mul(be: Backend, a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    """``(a_hi + a_lo)(b_hi + b_lo)`` as a normalized double word (``a_lo
    b_lo``, below ``u^2`` of the product, dropped)."""
    p, p_err = two_prod(a[0], b[0], be)
    return _normalized(be, p, p_err + (a[0] * b[1] + a[1] * b[0]))


def dd_div(be: Backend, a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    """``(a_hi + a_lo) / (b_hi + b_lo)`` as a normalized double word, for
    ``b_hi != 0``: the float quotient and one correction from the exact
    residual."""
    q = a[0] / b[0]
    p, p_err = two_prod(q, b[0], be)
    return _normalized(be, q, ((((a[0] - p) - p_err) + a[1]) - q * b[1]) / b[0])


def dd_sum(be: Backend, hi: Any, lo: Any, axis: int) -> tuple[Any, Any]:
    """``sum(hi + lo)`` along ``axis`` as ``(s, e)``, as if in twice the
    precision: :func:`pairwise_sum`; on JAX one reduction with a TwoSum
    combiner, on MLX under ``mx.compile`` (see :func:`dd_sums`)."""
    if be.name in ("jax", "mlx"):
        return dd_sums(be, [(hi, lo)], axis)[0]
    return pairwise_sum(be, hi, lo, axis)


def dd_sums(be: Backend, pairs: list[tuple[Any, Any]], axis: int) -> list[tuple[Any, Any]]:
    """:func:`dd_sum` of several ``(hi, lo)`` pairs along one axis; on JAX in
    one reduction per shape (see :func:`_jax_sums`), on MLX compiled (see
    :func:`_mlx_compiled`)."""
    if be.name == "mlx":
        return _mlx_pairs("sums", pairs, axis)
    if be.name != "jax":
        return [pairwise_sum(be, hi, lo, axis) for hi, lo in pairs]
    return _per_shape(
        be, pairs, axis, lambda group, ps, ax: _jax_sums()(tuple(x for p in ps for x in p), ax)
    )


def _as_pairs(out: Any) -> list[tuple[Any, Any]]:
    """``(s0, e0, s1, e1, ...)`` as ``[(s0, e0), (s1, e1), ...]``."""
    return [(out[i], out[i + 1]) for i in range(0, len(out), 2)]


def _mlx_pairs(kind: str, pairs: list[tuple[Any, Any]], axis: int) -> list[tuple[Any, Any]]:
    """MLX's compiled :func:`dd_sums` / :func:`dd_dots` (see :func:`_mlx_compiled`)."""
    parts = [x for pair in pairs for x in pair]
    return _as_pairs(_mlx_compiled(kind, axis % max(x.ndim for x in parts), len(pairs))(*parts))


def _per_shape(
    be: Backend, pairs: list[tuple[Any, Any]], axis: int, reduce: Any
) -> list[tuple[Any, Any]]:
    """The pairs, each broadcast, reduced by ``reduce(indices, pairs, axis)``
    one group of equal shapes at a time: one reduction takes operands of one
    shape (a pair broadcast along the axis sums more terms than another, so
    it is not the same reduction); the results in the order of ``pairs``."""
    pairs = [tuple(be.xp.broadcast_arrays(a, b)) for a, b in pairs]
    results: dict[int, tuple[Any, Any]] = {}
    for shape in dict.fromkeys(tuple(a.shape) for a, _ in pairs):
        group = [i for i, (a, _) in enumerate(pairs) if tuple(a.shape) == shape]
        out = reduce(group, [pairs[i] for i in group], axis % len(shape))
        results.update(zip(group, _as_pairs(out), strict=True))
    return [results[i] for i in range(len(pairs))]


@functools.cache
def _jax_sums() -> Any:
    """The JAX form of :func:`dd_sums`: one ``lax.reduce`` whose operands are
    the pairs, combined by ``(s1, e1) + (s2, e2) = TwoSum(s1, s2) + e1 + e2``
    (Sum2 in whatever order XLA reduces: every combination keeps the error
    of its addition), over the axis moved to the front (XLA vectorizes a
    reduction over the leading axis across the others). On 65536 x 256 the
    three sums of a cosine similarity take about 75 ms, the pairwise slices
    of :func:`pairwise_sum` about 10 times that, XLA's plain sums 7 to 25.

    A ``custom_jvp`` gives it the derivative of the plain sum of ``hi + lo``
    (JAX would differentiate the reducer itself, at 10x the cost)."""
    jax = sys.modules["jax"]
    lax = jax.lax
    jnp = sys.modules["jax.numpy"]

    def combine(x: tuple[Any, ...], y: tuple[Any, ...]) -> tuple[Any, ...]:
        out: list[Any] = []
        for i in range(0, len(x), 2):
            s, e = two_sum(x[i], y[i])
            out += [s, (x[i + 1] + y[i + 1]) + e]
        return tuple(out)

    @functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
    def sums(flat: tuple[Any, ...], axis: int) -> tuple[Any, ...]:
        ops = tuple(jnp.moveaxis(x, axis, 0) for x in flat)
        zeros = tuple(jnp.zeros((), x.dtype) for x in ops)
        return tuple(lax.reduce(ops, zeros, combine, (0,)))

    def sums_jvp(axis: int, primals: Any, tangents: Any) -> Any:
        (flat,), (dots,) = primals, tangents
        out = sums(flat, axis)
        dout: list[Any] = []
        for i in range(0, len(flat), 2):
            dout += [jnp.sum(dots[i] + dots[i + 1], axis=axis), jnp.zeros_like(out[i + 1])]
        return out, tuple(dout)

    sums.defjvp(sums_jvp)
    return sums


def fused(be: Backend, fn: Callable[..., Any], *static: Any) -> Callable[..., Any]:
    """``fn(be, *arrays, *static)`` as a function of the arrays, run as one
    fused kernel where the library has to be asked: on MLX under
    ``mx.compile`` (the dozens of operations of double-word arithmetic, one
    kernel each when eager, become one). Elsewhere ``fn`` itself: XLA fuses
    it under ``jax.jit``. ``static`` are the non-array arguments (flags,
    Python numbers): one compiled function per distinct value."""
    if be.name == "mlx":
        compiled: Callable[..., Any] = _mlx_fused(fn, static)
        return compiled
    return lambda *arrays: fn(be, *arrays, *static)


@functools.cache
def _mlx_fused(fn: Callable[..., Any], static: tuple[Any, ...]) -> Any:
    be = mlx_backend()
    return sys.modules["mlx.core"].compile(lambda *arrays: fn(be, *arrays, *static))


@functools.cache
def mlx_backend() -> Backend:
    """The Backend of MLX float32 arrays, for the functions compiled once
    (``mx.compile``) and reused for every call."""
    from ._backend import resolve

    mx = sys.modules["mlx.core"]
    return resolve("anyloss", ("x", mx.zeros((), dtype=mx.float32)))


@functools.cache
def _mlx_compiled(kind: str, axis: int, count: int) -> Any:
    """MLX's :func:`dd_sums` (``kind`` "sums") or :func:`dd_dots` ("dots") of
    ``count`` pairs along ``axis``, under ``mx.compile``: the pairwise
    TwoSums as fused kernels, about 4x faster than eager MLX (65536 x 256:
    140 ms against 620 for one dot product; a plain sum takes 50), and
    bit-identical to it (MLX does not reassociate). One compiled function
    per (axis, count); MLX retraces it per shape and dtype. Its ``vjp`` is
    that of the plain sums (products), as JAX's ``custom_jvp`` below."""
    mx = sys.modules["mlx.core"]
    be = mlx_backend()

    def run(*flat: Any) -> tuple[Any, ...]:
        out: list[Any] = []
        for i in range(0, 2 * count, 2):
            if kind == "dots":
                out += dd_dot(be, flat[i], flat[i + 1], axis)
            else:
                out += pairwise_sum(be, flat[i], flat[i + 1], axis)
        return tuple(out)

    def _unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
        """``g`` summed back to ``shape`` over the axes it was broadcast along."""
        lead = g.ndim - len(shape)
        axes = list(range(lead)) + [
            lead + k for k, d in enumerate(shape) if d == 1 and g.shape[lead + k] != 1
        ]
        g = mx.sum(g, axis=axes, keepdims=True) if axes else g
        return mx.reshape(g, shape)

    summed = mx.custom_function(mx.compile(run))

    def summed_vjp(primals: Any, cotangents: Any, outputs: Any) -> tuple[Any, ...]:
        # the high part varies as the plain sum of hi + lo (of the products
        # u v), the low part not at all (as JAX's custom_jvp below)
        grads: list[Any] = []
        for i in range(0, 2 * count, 2):
            g = mx.expand_dims(cotangents[i], axis)
            a, b = primals[i], primals[i + 1]
            ga, gb = (g * b, g * a) if kind == "dots" else (g, g)
            full = mx.broadcast_shapes(a.shape, b.shape)
            grads += [
                _unbroadcast(mx.broadcast_to(ga, full), a.shape),
                _unbroadcast(mx.broadcast_to(gb, full), b.shape),
            ]
        return tuple(grads)

    summed.vjp(summed_vjp)
    return summed


def pairwise_sum(be: Backend, hi: Any, lo: Any, axis: int) -> tuple[Any, Any]:
    """``sum(hi + lo)`` along ``axis`` as ``(s, e)``: a pairwise sum of ``hi``
    whose every rounding error (TwoSum) is kept, plus the plain sum of ``lo``.

    Basic slicing along the axis (torch's vmap has no batching rule for
    ``moveaxis``); an odd length is padded with one zero.
    """
    xp = be.xp
    axis = axis % hi.ndim
    lead = (slice(None),) * axis
    err = xp.sum(lo, axis=axis)
    n = hi.shape[axis]
    if n == 0:
        return xp.sum(hi, axis=axis), err
    while n > 1:
        if n % 2:
            first = (*lead, slice(0, 1), ...)
            hi = xp.concat([hi, xp.zeros_like(hi[first])], axis=axis)
            n += 1
        half = n // 2
        low, high = (*lead, slice(0, half), ...), (*lead, slice(half, n), ...)
        total, e = two_sum(hi[low], hi[high])
        err = err + xp.sum(e, axis=axis)
        hi, n = total, half
    return xp.squeeze(hi, axis=axis), err


def dd_dot(be: Backend, u: Any, v: Any, axis: int) -> tuple[Any, Any]:
    """``sum(u v)`` along ``axis`` as ``(s, e)`` (Dot2: exact products,
    compensated sum)."""
    p, e = two_prod(u, v, be)
    return dd_sum(be, p, e, axis)


def dd_dots(be: Backend, pairs: list[tuple[Any, Any]], axis: int) -> list[tuple[Any, Any]]:
    """:func:`dd_dot` of several pairs of vectors; on JAX in one reduction per
    shape, differentiated as the plain dot products (see :func:`_jax_dots`)."""
    if be.name == "mlx":
        return _mlx_pairs("dots", pairs, axis)
    if be.name != "jax":
        return [dd_dot(be, u, v, axis) for u, v in pairs]
    squares = [u is v for u, v in pairs]  # (before broadcasting makes new arrays)
    return _per_shape(
        be,
        pairs,
        axis,
        lambda group, ps, ax: _jax_dots()(
            tuple(u for u, _ in ps), tuple(v for _, v in ps), ax, tuple(squares[i] for i in group)
        ),
    )


@functools.cache
def _jax_dots() -> Any:
    """JAX's :func:`dd_dots`: exact products (:func:`two_prod`) summed by
    :func:`_jax_sums`, with a ``custom_jvp`` whose tangent is that of the
    plain dot product, ``sum(du v + u dv)``: the backward pass is two
    elementwise products per pair, not the derivative of the compensated
    arithmetic."""
    jax = sys.modules["jax"]
    jnp = sys.modules["jax.numpy"]

    @functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
    def dots(
        us: tuple[Any, ...], vs: tuple[Any, ...], axis: int, square: tuple[bool, ...]
    ) -> tuple[Any, ...]:
        # the axis goes to the front before the products (2 operands moved, not 2 per pair)
        us = tuple(jnp.moveaxis(u, axis, 0) for u in us)
        vs = tuple(jnp.moveaxis(v, axis, 0) for v in vs)
        flat = [
            x
            for u, v, sq in zip(us, vs, square, strict=True)
            for x in (_jax_two_square(u) if sq else _jax_two_prod(u, v))
        ]
        return tuple(_jax_sums()(tuple(flat), 0))

    def dots_jvp(axis: int, square: tuple[bool, ...], primals: Any, tangents: Any) -> Any:
        us, vs = primals
        dus, dvs = tangents
        out = dots(us, vs, axis, square)
        dout: list[Any] = []
        for i, (u, v, du, dv) in enumerate(zip(us, vs, dus, dvs, strict=True)):
            dout += [jnp.sum(du * v + u * dv, axis=axis), jnp.zeros_like(out[2 * i + 1])]
        return out, tuple(dout)

    dots.defjvp(dots_jvp)
    return dots


def dd_sqrt(be: Backend, hi: Any, lo: Any) -> tuple[Any, Any]:
    """``sqrt(hi + lo)`` as ``(r, e)``, for ``hi >= 0`` (one Newton step on the
    exact residual ``hi + lo - r^2``)."""
    xp = be.xp
    r = xp.sqrt(hi)
    sq, sq_err = two_square(r, be)
    positive = r > be.scalar(0.0, r.dtype)
    den = xp.where(positive, r + r, be.scalar(1.0, r.dtype))
    return r, xp.where(positive, (((hi - sq) - sq_err) + lo) / den, be.scalar(0.0, r.dtype))


def dd_finish(be: Backend, hi: Any, lo: Any) -> Any:
    """``hi + lo`` rounded once; ``hi`` alone where it is not finite (TwoSum
    turns an inf into NaN)."""
    xp = be.xp
    finite = xp.isfinite(hi)
    return xp.where(finite, hi + xp.where(finite, lo, be.scalar(0.0, hi.dtype)), hi)

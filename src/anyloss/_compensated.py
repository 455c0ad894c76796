"""Compensated arithmetic: error-free transformations and double-word values.

Where a library has no wider float type than its inputs (float64 everywhere;
float32 on MLX and on JAX without x64), a value that must not be rounded is
carried as an unevaluated sum ``hi + lo`` of two floats of the input's dtype,
and the operations below keep every rounding error they make:

- :func:`two_sum` (Knuth): ``a + b = s + e`` exactly, for any finite floats;
- :func:`two_prod` (Dekker's split): ``a b = p + e`` exactly, for products that
  neither overflow nor underflow (see its note on the range);
- :func:`dd_sum` / :func:`dd_dot`: sums along an axis, pairwise in a fixed
  order, whose every addition keeps its error (Ogita-Rump-Oishi Sum2/Dot2):
  as accurate as if computed in twice the precision, whatever the memory
  layout (a library's own sum depends on it);
- :func:`dd_add`, :func:`dd_sqrt`, :func:`dd_finish` on ``(hi, lo)`` pairs.

Every function is built from the library's own ``+ - * / sqrt`` and
``where``: generic over array libraries, traceable by ``jax.jit``,
``mx.compile`` and ``torch.compile`` (none of them reassociates float
additions, which would undo the transformations), and differentiable (the
error terms have gradients near 0 and do not disturb the hi parts').
"""

from __future__ import annotations

from typing import Any

from ._backend import Backend

__all__ = ["dd_add", "dd_dot", "dd_finish", "dd_sqrt", "dd_sum", "two_prod", "two_sum"]


def two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """``s, e`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth)."""
    s = a + b
    bv = s - a
    return s, (a - (s - bv)) + (b - bv)


def _splitter(x: Any) -> float:
    """Dekker's constant ``2^ceil(p / 2) + 1`` for the precision ``p`` of ``x``."""
    # by name: the dtype objects of the libraries share no size attribute
    return 134217729.0 if "64" in str(x.dtype) else 4097.0  # 2**27 + 1, 2**12 + 1


def _split(x: Any) -> tuple[Any, Any]:
    """``x = hi + lo`` exactly, each with at most half of ``x``'s bits."""
    t = _splitter(x) * x
    hi = t - (t - x)
    return hi, x - hi


def two_prod(a: Any, b: Any) -> tuple[Any, Any]:
    """``p, e`` with ``p = fl(a b)`` and ``a b = p + e`` (Dekker; the array
    API has no fused multiply-add).

    Exact where the split does not overflow (``|a|, |b|`` below
    ``max / 2^(p/2 + 1)``: about ``2^995`` in float64, ``2^115`` in float32)
    and the partial products do not underflow (``|a b|`` above about
    ``2^-969`` in float64, ``2^-102`` in float32); the callers scale their
    operands by powers of two to stay inside.
    """
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    p = a * b
    return p, (((a_hi * b_hi - p) + a_hi * b_lo) + a_lo * b_hi) + a_lo * b_lo


def dd_add(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    """``a + b`` for double-word ``a = (hi, lo)`` and ``b``."""
    s, e = two_sum(a[0], b[0])
    return s, e + (a[1] + b[1])


def dd_sum(be: Backend, hi: Any, lo: Any, axis: int) -> tuple[Any, Any]:
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
    p, e = two_prod(u, v)
    return dd_sum(be, p, e, axis)


def dd_sqrt(be: Backend, hi: Any, lo: Any) -> tuple[Any, Any]:
    """``sqrt(hi + lo)`` as ``(r, e)``, for ``hi >= 0`` (one Newton step on the
    exact residual ``hi + lo - r^2``)."""
    xp = be.xp
    r = xp.sqrt(hi)
    sq, sq_err = two_prod(r, r)
    positive = r > be.scalar(0.0, r.dtype)
    den = xp.where(positive, r + r, be.scalar(1.0, r.dtype))
    return r, xp.where(positive, (((hi - sq) - sq_err) + lo) / den, be.scalar(0.0, r.dtype))


def dd_finish(be: Backend, hi: Any, lo: Any) -> Any:
    """``hi + lo`` rounded once; ``hi`` alone where it is not finite (TwoSum
    turns an inf into NaN)."""
    xp = be.xp
    finite = xp.isfinite(hi)
    return xp.where(finite, hi + xp.where(finite, lo, be.scalar(0.0, hi.dtype)), hi)

"""Gradient kernels of cosine similarity and the triplet loss.

``cosine_grad`` and ``triplet_grad`` (``anyloss.kernels._numba``) write each
row's loss, bit for bit as the forward kernel for the dtype (``cosine`` /
``triplet`` on float32, ``cosine_dd`` / ``triplet_dd`` on float64), and its
gradient with respect to every input.

Expected gradients come from independent sources:

- float32 inputs: torch float64 autograd of the plain formulas
  (``x1.x2 / clamp(|x1| |x2|, min=eps)``;
  ``maximum(d(a, pos) - d(a, neg) + margin, 0)`` with
  ``d(u, v) = (sum |u - v|^p + eps)^(1/p)``) on the inputs cast to float64;
- float64 inputs: the same formulas in mpmath at 120 bits.

Criterion (``GRAD_ULPS``): per element, |got - ref| <= 4 ulp (of the input
dtype) of max(|ref|, the row's largest |ref|): 4 ulp of the element with a
floor of 4 ulp of the row's largest |gradient| (an element much smaller
than the row's largest comes from terms of the row's scale that cancel,
and cannot carry more accuracy than that scale). Rows of one element are
the exception: there the terms cancel completely (cosine: the gradient is
exactly 0; triplet with eps = 0: +-1 - +-1), and the floor is 4 ulp of the
terms, |x2| / (|x1| |x2|) and |a - pos| / d(a, pos), |a - neg| / d(a, neg).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

# numba's CPU kernels (skipped on another ANYLOSS_TEST_DEVICE)
pytestmark = pytest.mark.cpu_only

numba = pytest.importorskip("numba")
torch = pytest.importorskip("torch")
mpmath = pytest.importorskip("mpmath")

from anyloss.kernels import _numba as k  # noqa: E402

DTYPES = (np.float32, np.float64)
GRAD_ULPS = 4.0
mp = mpmath.mp


# -- helpers --------------------------------------------------------------------


def grad_ulps(
    got: np.ndarray, ref: np.ndarray, dtype: Any, terms: np.ndarray | None = None
) -> np.ndarray:
    """|got - ref| per element in ulps of ``dtype`` at max(|ref|, the row's
    largest |ref|) -- the criterion described in the module docstring;
    ``terms`` (per row) raises the floor, for rows of one element only."""
    ref = np.asarray(ref, np.float64)
    got64 = np.asarray(got, np.float64)
    row_max = np.max(np.abs(ref), axis=-1, keepdims=True)
    if terms is not None:
        assert ref.shape[-1] == 1
        row_max = np.maximum(row_max, np.reshape(terms, row_max.shape))
    unit = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
    floor = np.spacing(row_max.astype(dtype)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(got64 - ref) / np.maximum(unit, floor)
    return np.where(got64 == ref, 0.0, err)


def assert_grad_close(
    got: np.ndarray, ref: np.ndarray, dtype: Any, terms: np.ndarray | None = None
) -> None:
    assert got.dtype == dtype
    assert np.all(np.isfinite(got))
    err = grad_ulps(got, ref, dtype, terms)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    assert err.max() <= GRAD_ULPS, (err.max(), worst, got[worst], ref[worst])


def forward_cosine(a: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    out = np.full(a.shape[0], -7.0)
    kernel = k.cosine if a.dtype == np.float32 else k.cosine_dd
    kernel(a, b, eps, out, 0, a.shape[0])
    return out


def forward_triplet(
    a: np.ndarray, pos: np.ndarray, neg: np.ndarray, p: float, margin: float, eps: float
) -> np.ndarray:
    out = np.full(a.shape[0], -7.0)
    kernel = k.triplet if a.dtype == np.float32 else k.triplet_dd
    kernel(a, pos, neg, p, margin, eps, out, 0, a.shape[0])
    return out


def cosine_grad(
    a: np.ndarray, b: np.ndarray, eps: float, r0: int = 0, r1: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r1 = a.shape[0] if r1 is None else r1
    out = np.full(a.shape[0], -7.0)
    ga = np.full_like(a, -7.0)
    gb = np.full_like(b, -7.0)
    k.cosine_grad(a, b, eps, out, ga, gb, r0, r1)
    return out, ga, gb


def triplet_grad(
    a: np.ndarray,
    pos: np.ndarray,
    neg: np.ndarray,
    p: float,
    margin: float,
    eps: float,
    r0: int = 0,
    r1: int | None = None,
) -> tuple[np.ndarray, ...]:
    r1 = a.shape[0] if r1 is None else r1
    out = np.full(a.shape[0], -7.0)
    ga, gp, gn = (np.full_like(v, -7.0) for v in (a, pos, neg))
    k.triplet_grad(a, pos, neg, p, margin, eps, out, ga, gp, gn, r0, r1)
    return out, ga, gp, gn


def torch_grads(
    fn: Callable[..., Any], *arrays: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The loss and gradients of ``fn(*tensors).sum()`` in torch float64."""
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in arrays]
    loss = fn(*ts)
    loss.sum().backward()
    return loss.detach().numpy(), [t.grad.numpy() for t in ts]


def torch_cosine(eps: float) -> Callable[..., Any]:
    def fn(a: Any, b: Any) -> Any:
        norms = torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1)
        return (a * b).sum(-1) / torch.clamp(norms, min=eps)

    return fn


def torch_triplet(p: float, margin: float, eps: float) -> Callable[..., Any]:
    def dist(u: Any, v: Any) -> Any:
        if p == 1.0:
            return (u - v).abs().sum(-1) + eps
        return torch.sqrt(((u - v) ** 2).sum(-1) + eps)

    def fn(a: Any, pos: Any, neg: Any) -> Any:
        return torch.maximum(dist(a, pos) - dist(a, neg) + margin, torch.zeros((), dtype=a.dtype))

    return fn


def mp_cosine(a: np.ndarray, b: np.ndarray, eps: float) -> tuple[np.ndarray, ...]:
    """Loss and gradients of float64 rows in mpmath (120 bits)."""
    loss = np.empty(a.shape[0])
    ga, gb = np.empty(a.shape), np.empty(b.shape)
    with mp.workprec(120):
        for r in range(a.shape[0]):
            u = [mpmath.mpf(float(x)) for x in a[r]]
            v = [mpmath.mpf(float(x)) for x in b[r]]
            dot, na, nb = mpmath.fdot(u, v), mpmath.fdot(u, u), mpmath.fdot(v, v)
            norms = mpmath.sqrt(na * nb)
            if norms >= eps:
                loss[r] = float(dot / norms)
                ka, kb = dot / (na * norms), dot / (nb * norms)
                ga[r] = [float(y / norms - x * ka) for x, y in zip(u, v, strict=True)]
                gb[r] = [float(x / norms - y * kb) for x, y in zip(u, v, strict=True)]
            else:
                loss[r] = float(dot / eps)
                ga[r] = [float(y / eps) for y in v]
                gb[r] = [float(x / eps) for x in u]
    return loss, ga, gb


def mp_triplet(
    a: np.ndarray, pos: np.ndarray, neg: np.ndarray, p: float, margin: float, eps: float
) -> tuple[np.ndarray, ...]:
    """Loss and gradients of float64 rows in mpmath (120 bits); half the
    gradient at a loss of exactly 0 before the hinge (torch's maximum)."""
    loss = np.empty(a.shape[0])
    ga, gp, gn = np.empty(a.shape), np.empty(a.shape), np.empty(a.shape)
    with mp.workprec(120):
        for r in range(a.shape[0]):
            dp = [
                mpmath.mpf(float(x)) - mpmath.mpf(float(y))
                for x, y in zip(a[r], pos[r], strict=True)
            ]
            dn = [
                mpmath.mpf(float(x)) - mpmath.mpf(float(y))
                for x, y in zip(a[r], neg[r], strict=True)
            ]
            if p == 1.0:
                d_p = mpmath.fsum(abs(x) for x in dp) + eps
                d_n = mpmath.fsum(abs(x) for x in dn) + eps
                fp = [mpmath.sign(x) for x in dp]
                fn = [mpmath.sign(x) for x in dn]
            else:
                d_p = mpmath.sqrt(mpmath.fdot(dp, dp) + eps)
                d_n = mpmath.sqrt(mpmath.fdot(dn, dn) + eps)
                fp = [x / d_p for x in dp]
                fn = [x / d_n for x in dn]
            pre = d_p - d_n + margin
            w = 1 if pre > 0 else (mpmath.mpf(0.5) if pre == 0 else 0)
            loss[r] = float(max(pre, 0))
            ga[r] = [float(w * (x - y)) for x, y in zip(fp, fn, strict=True)]
            gp[r] = [float(-w * x) for x in fp]
            gn[r] = [float(w * y) for y in fn]
    return loss, ga, gp, gn


def cosine_reference(a: np.ndarray, b: np.ndarray, eps: float) -> list[np.ndarray]:
    if a.dtype == np.float32:
        return torch_grads(torch_cosine(eps), a, b)[1]
    return list(mp_cosine(a, b, eps)[1:])


def triplet_reference(
    a: np.ndarray, pos: np.ndarray, neg: np.ndarray, p: float, margin: float, eps: float
) -> list[np.ndarray]:
    if a.dtype == np.float32:
        return torch_grads(torch_triplet(p, margin, eps), a, pos, neg)[1]
    return list(mp_triplet(a, pos, neg, p, margin, eps)[1:])


def rows(rng: np.random.Generator, dtype: Any, shape: tuple[int, int], count: int) -> list[Any]:
    return [rng.standard_normal(shape).astype(dtype) for _ in range(count)]


def shape_for(dtype: Any, n: int) -> tuple[int, int]:
    # float64 references come from mpmath: fewer rows
    return (257 if dtype == np.float32 else 13, n)


# -- cosine similarity ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 63, 65, 256, 1000])
@pytest.mark.parametrize("eps", [1e-8, 0.0])
def test_cosine_grad_ordinary(dtype: Any, n: int, eps: float) -> None:
    rng = np.random.default_rng(n)
    a, b = rows(rng, dtype, shape_for(dtype, n), 2)
    out, ga, gb = cosine_grad(a, b, eps)
    np.testing.assert_array_equal(out, forward_cosine(a, b, eps))
    ref_a, ref_b = cosine_reference(a, b, eps)
    one = n == 1  # the gradient is 0: terms of 1 / |x1| cancel
    assert_grad_close(ga, ref_a, dtype, 1.0 / np.abs(a.astype(np.float64)) if one else None)
    assert_grad_close(gb, ref_b, dtype, 1.0 / np.abs(b.astype(np.float64)) if one else None)


def test_cosine_grad_long_rows() -> None:
    rng = np.random.default_rng(3)
    n = 4096 * 3 + 17
    for dtype in DTYPES:
        a, b = rows(rng, dtype, (3, n), 2)
        out, ga, gb = cosine_grad(a, b, 1e-8)
        np.testing.assert_array_equal(out, forward_cosine(a, b, 1e-8))
        ref_a, ref_b = torch_grads(torch_cosine(1e-8), a, b)[1]
        if dtype == np.float64:  # torch's own float64 error: a loose check
            np.testing.assert_allclose(ga, ref_a, rtol=1e-12, atol=1e-12 * np.abs(ref_a).max())
            continue
        assert_grad_close(ga, ref_a, dtype)
        assert_grad_close(gb, ref_b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_grad_scaled_rows(dtype: Any) -> None:
    """Rows of huge and tiny magnitude: nothing over- or underflows."""
    rng = np.random.default_rng(11)
    big = 1e30 if dtype == np.float32 else 1e200
    a, b = rows(rng, dtype, (6, 65), 2)
    scales = np.array([big, 1 / big, big, 1 / big, 1.0, big], dtype)[:, None]
    a = (a * scales).astype(dtype)
    b = (b * scales[::-1]).astype(dtype)
    eps = 1e-300 if dtype == np.float64 else 1e-60
    out, ga, gb = cosine_grad(a, b, eps)
    np.testing.assert_array_equal(out, forward_cosine(a, b, eps))
    if dtype == np.float32:
        ref_a, ref_b = torch_grads(torch_cosine(eps), a, b)[1]
    else:
        ref_a, ref_b = mp_cosine(a, b, eps)[1:]
    assert_grad_close(ga, ref_a, dtype)
    assert_grad_close(gb, ref_b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_grad_eps_branch_and_tie(dtype: Any) -> None:
    """|x1| |x2| < eps: the loss is x1.x2 / eps, d / d x1 = x2 / eps (a zero
    row too: finite); at |x1| |x2| = eps exactly the norms' branch, as
    torch's clamp (and the generic ``>=``)."""
    a = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1e-3, 2e-3, -1e-3], [3.0, 4.0, 0.0]], dtype)
    b = np.array(
        [[0.5, 0.0, 0.0], [1.0, -2.0, 0.5], [2e-3, -1e-3, 4e-3], [0.0, 0.5, -1.25]], dtype
    )
    eps = 0.5  # row 0: |a| |b| = 0.5 exactly; row 3: 5 * 1.346 > eps
    out, ga, gb = cosine_grad(a, b, eps)
    np.testing.assert_array_equal(out, forward_cosine(a, b, eps))
    loss, (ref_a, ref_b) = torch_grads(torch_cosine(eps), a, b)
    np.testing.assert_allclose(out, loss, rtol=1e-6)
    assert_grad_close(ga, ref_a, dtype)
    assert_grad_close(gb, ref_b, dtype)
    # the eps branch is exactly x / eps
    np.testing.assert_array_equal(ga[1:3], (b[1:3].astype(np.float64) / eps).astype(dtype))
    np.testing.assert_array_equal(gb[1:3], (a[1:3].astype(np.float64) / eps).astype(dtype))
    # row 0, the tie: d / d x1 = x2 / eps - cos x1 / |x1|^2 = (1, 0, 0) - (1, 0, 0)
    np.testing.assert_array_equal(ga[0], np.zeros(3, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_grad_tiny_rows_with_default_eps(dtype: Any) -> None:
    rng = np.random.default_rng(5)
    a, b = rows(rng, dtype, (9, 65), 2)
    a[::2] *= dtype(1e-5)
    b[::3] *= dtype(1e-5)
    out, ga, gb = cosine_grad(a, b, 1e-8)
    np.testing.assert_array_equal(out, forward_cosine(a, b, 1e-8))
    ref_a, ref_b = cosine_reference(a, b, 1e-8)
    assert_grad_close(ga, ref_a, dtype)
    assert_grad_close(gb, ref_b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [1e-8, 0.0])
def test_cosine_grad_nan_inf_rows(dtype: Any, eps: float) -> None:
    rng = np.random.default_rng(7)
    a, b = rows(rng, dtype, (8, 33), 2)
    a[1, 3] = np.nan
    b[2, 0] = np.inf
    a[3, 5] = -np.inf
    b[4] = np.inf
    a[5] = 0.0  # eps = 0: 0 / 0, NaN (as the generic code); else the eps branch
    out, ga, gb = cosine_grad(a, b, eps)
    np.testing.assert_array_equal(out, forward_cosine(a, b, eps))
    bad = np.isnan(out)
    bad[1] = True  # a NaN entry: with eps = 0 the loss is 0 (generic), the gradient NaN
    assert np.isnan(out[[2, 3, 4]]).all()
    assert np.isnan(ga[bad]).all() and np.isnan(gb[bad]).all()
    assert np.isfinite(ga[~bad]).all() and np.isfinite(gb[~bad]).all()
    ref_a, ref_b = cosine_reference(a[~bad], b[~bad], eps)
    assert_grad_close(ga[~bad], ref_a, dtype)
    assert_grad_close(gb[~bad], ref_b, dtype)


# -- triplet ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 63, 65, 256, 1000])
@pytest.mark.parametrize("p", [1.0, 2.0])
def test_triplet_grad_ordinary(dtype: Any, n: int, p: float) -> None:
    rng = np.random.default_rng(n + int(p))
    a, pos, neg = rows(rng, dtype, shape_for(dtype, n), 3)
    for margin, eps in ((1.0, 1e-6), (0.0, 0.0), (0.5, 3.0)):
        out, ga, gp, gn = triplet_grad(a, pos, neg, p, margin, eps)
        np.testing.assert_array_equal(out, forward_triplet(a, pos, neg, p, margin, eps))
        refs = triplet_reference(a, pos, neg, p, margin, eps)
        terms = np.ones(a.shape[0]) if n == 1 else None  # |a - pos| / d_p <= 1
        for got, ref in zip((ga, gp, gn), refs, strict=True):
            assert_grad_close(got, ref, dtype, terms)
        inactive = out == 0.0
        assert np.all(ga[inactive] == 0.0) and np.all(gn[inactive] == 0.0)


def test_triplet_grad_both_hinge_sides_seen() -> None:
    """The ordinary data above has active and inactive rows (margin 0)."""
    rng = np.random.default_rng(65 + 2)
    a, pos, neg = rows(rng, np.float32, (257, 65), 3)
    out = triplet_grad(a, pos, neg, 2.0, 0.0, 0.0)[0]
    assert 20 < np.count_nonzero(out) < 237


def test_triplet_grad_long_rows() -> None:
    rng = np.random.default_rng(4)
    n = 4096 * 3 + 17
    a, pos, neg = rows(rng, np.float32, (3, n), 3)
    for p in (1.0, 2.0):
        out, *grads = triplet_grad(a, pos, neg, p, 20.0, 1e-6)
        np.testing.assert_array_equal(out, forward_triplet(a, pos, neg, p, 20.0, 1e-6))
        refs = torch_grads(torch_triplet(p, 20.0, 1e-6), a, pos, neg)[1]
        for got, ref in zip(grads, refs, strict=True):
            assert_grad_close(got, ref, np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1.0, 2.0])
def test_triplet_grad_tie_at_zero(dtype: Any, p: float) -> None:
    """gap + margin exactly 0: half the gradient, as torch's maximum."""
    a = np.array([[0.0, 0.0], [0.0, 0.0]], dtype)
    pos = np.array([[3.0, 4.0], [3.0, 4.0]], dtype)
    neg = np.array([[6.0, 8.0], [6.0, 8.0]], dtype)
    margin = 5.0 if p == 2.0 else 7.0  # d_p - d_n = -5 (p = 2), -7 (p = 1)
    out, ga, gp, gn = triplet_grad(a, pos, neg, p, margin, 0.0)
    np.testing.assert_array_equal(out, forward_triplet(a, pos, neg, p, margin, 0.0))
    np.testing.assert_array_equal(out, [0.0, 0.0])
    loss, refs = torch_grads(torch_triplet(p, margin, 0.0), a, pos, neg)
    np.testing.assert_array_equal(loss, [0.0, 0.0])
    active = torch_grads(torch_triplet(p, margin + 1.0, 0.0), a, pos, neg)[1]
    for got, ref, full in zip((ga, gp, gn), refs, active, strict=True):
        np.testing.assert_array_equal(ref, full / 2)  # torch: half, not zero
        np.testing.assert_array_equal(got, ref.astype(dtype))
    assert np.all(gp != 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_grad_zero_distance(dtype: Any) -> None:
    """eps = 0 and a = pos: d_p = 0, not differentiable; the kernel gives the
    subgradient 0 for that distance (as torch's norm), where torch autograd
    of sqrt(sum + 0) gives NaN."""
    a = np.array([[1.0, 2.0, 3.0]], dtype)
    neg = np.array([[1.0, 2.0, 4.0]], dtype)
    out, ga, gp, gn = triplet_grad(a, a.copy(), neg, 2.0, 2.0, 0.0)
    np.testing.assert_array_equal(out, forward_triplet(a, a.copy(), neg, 2.0, 2.0, 0.0))
    np.testing.assert_array_equal(out, [1.0])
    np.testing.assert_array_equal(gp, np.zeros((1, 3), dtype))
    np.testing.assert_array_equal(ga, np.array([[0.0, 0.0, 1.0]], dtype))
    np.testing.assert_array_equal(gn, np.array([[0.0, 0.0, -1.0]], dtype))


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_triplet_grad_float64_huge_rows(p: float) -> None:
    """float64 rows near the largest float (halved) and tiny rows (scaled)."""
    rng = np.random.default_rng(8)
    a, pos, neg = rows(rng, np.float64, (6, 40), 3)
    scale = np.array([4e307, 1e-300, 1.0, 1e200, 1e-200, 4e307])[:, None]
    a, pos, neg = a * scale, pos * scale, neg * scale
    margin = 0.0
    out, *grads = triplet_grad(a, pos, neg, p, margin, 0.0)
    np.testing.assert_array_equal(out, forward_triplet(a, pos, neg, p, margin, 0.0))
    _, *refs = mp_triplet(a, pos, neg, p, margin, 0.0)
    for got, ref in zip(grads, refs, strict=True):
        assert_grad_close(got, ref, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1.0, 2.0])
def test_triplet_grad_nan_inf_rows(dtype: Any, p: float) -> None:
    """Loss as the forward kernel; NaN rows get NaN gradients; a row whose
    loss is inf (pos infinite) or 0 (neg infinite) gets the plain formula's
    gradient, as torch autograd (NaN at the infinite entry for p = 2)."""
    rng = np.random.default_rng(9)
    a, pos, neg = rows(rng, dtype, (7, 17), 3)
    a[1, 2] = np.nan
    pos[2, 3] = np.inf  # loss inf
    neg[3, 4] = -np.inf  # loss 0
    a[4, 0] = np.inf  # inf - inf: NaN
    pos[5, 1] = np.nan
    margin = 30.0  # every finite row active
    out, ga, gp, gn = triplet_grad(a, pos, neg, p, margin, 1e-6)
    np.testing.assert_array_equal(out, forward_triplet(a, pos, neg, p, margin, 1e-6))
    assert np.isnan(out[[1, 4, 5]]).all() and out[2] == np.inf and out[3] == 0.0
    for g in (ga, gp, gn):
        assert np.isnan(g[[1, 4, 5]]).all()
        assert np.isfinite(g[[0, 6]]).all()
        np.testing.assert_array_equal(g[3], np.zeros(17, dtype))
    _, refs = torch_grads(torch_triplet(p, margin, 1e-6), a[2:3], pos[2:3], neg[2:3])
    for g, ref in zip((ga, gp, gn), refs, strict=True):
        np.testing.assert_array_equal(np.isnan(g[2]), np.isnan(ref[0]))
        ok = ~np.isnan(ref[0])
        np.testing.assert_allclose(g[2][ok], ref[0][ok], rtol=1e-6)
    if p == 2.0:
        assert np.isnan(ga[2, 3]) and np.isnan(gp[2, 3])
    finite = np.array([0, 6])
    refs = triplet_reference(a[finite], pos[finite], neg[finite], p, margin, 1e-6)
    for g, ref in zip((ga, gp, gn), refs, strict=True):
        assert_grad_close(g[finite], ref, dtype)


# -- both kernels: thread split, gradients not wanted ---------------------------------


def _cases(dtype: Any) -> list[tuple[str, tuple[Any, ...]]]:
    rng = np.random.default_rng(12)
    a, b, c = rows(rng, dtype, (41, 65), 3)
    a[7, 3] = np.nan
    b[9] = 0.0
    return [
        ("cosine", (a, b, 1e-8)),
        ("triplet1", (a, b, c, 1.0, 0.5, 1e-6)),
        ("triplet2", (a, b, c, 2.0, 0.5, 1e-6)),
    ]


def _run(name: str, args: tuple[Any, ...], r0: int, r1: int, want: tuple[bool, ...]) -> Any:
    arrays = args[:2] if name == "cosine" else args[:3]
    out = np.full(arrays[0].shape[0], -7.0)
    grads = [
        np.full_like(x, -7.0) if w else np.empty((0, 0), x.dtype)
        for x, w in zip(arrays, want, strict=False)
    ]
    if name == "cosine":
        k.cosine_grad(*args, out, *grads, r0, r1)
    else:
        k.triplet_grad(*args, out, *grads, r0, r1)
    return out, grads


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_split_equals_one_call(dtype: Any) -> None:
    for name, args in _cases(dtype):
        want = (True, True, True)
        out, grads = _run(name, args, 0, 41, want)
        for split in (1, 8, 20, 40):
            o1, g1 = _run(name, args, 0, split, want)
            o2, g2 = _run(name, args, split, 41, want)
            np.testing.assert_array_equal(np.where(np.arange(41) < split, o1, o2), out)
            for full, x1, x2 in zip(grads, g1, g2, strict=True):
                np.testing.assert_array_equal(np.concatenate([x1[:split], x2[split:]]), full)
                assert np.all(x1[split:] == -7.0) and np.all(x2[:split] == -7.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unwanted_gradients_are_skipped(dtype: Any) -> None:
    for name, args in _cases(dtype):
        count = 2 if name == "cosine" else 3
        out, grads = _run(name, args, 0, 41, (True,) * count)
        for want in itertools.product((False, True), repeat=count):
            o, g = _run(name, args, 0, 41, want)
            np.testing.assert_array_equal(o, out)
            for w, got, full in zip(want, g, grads, strict=True):
                if w:
                    np.testing.assert_array_equal(got, full)
                else:
                    assert got.size == 0


def test_triplet_grad_float64_distances_far_apart() -> None:
    """eps = 0 and one distance 1e-200 of the other: at the row's common
    scale the small one's squares underflow; its gradient (a unit vector)
    comes from its own scale."""
    rng = np.random.default_rng(13)
    a = rng.standard_normal((4, 9)) * 1e-200
    tiny = rng.standard_normal((4, 9)) * 1e-200
    far = rng.standard_normal((4, 9))
    pos = np.concatenate([tiny[:2], far[2:]])
    neg = np.concatenate([far[:2], tiny[2:]])
    out, *grads = triplet_grad(a, pos, neg, 2.0, 5.0, 0.0)
    np.testing.assert_array_equal(out, forward_triplet(a, pos, neg, 2.0, 5.0, 0.0))
    _, *refs = mp_triplet(a, pos, neg, 2.0, 5.0, 0.0)
    for got, ref in zip(grads, refs, strict=True):
        assert_grad_close(got, ref, np.float64)
    np.testing.assert_allclose(np.linalg.norm(grads[1], axis=1)[:2], 1.0, rtol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(grads[2], axis=1)[2:], 1.0, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_losses_bit_identical_all_small_widths(dtype: Any) -> None:
    """The loss the gradient kernels write is the forward kernels', for
    every row width up to 130 (the vector loops' remainders)."""
    rng = np.random.default_rng(14)
    for n in range(1, 131):
        a, b, c = rows(rng, dtype, (5, n), 3)
        np.testing.assert_array_equal(cosine_grad(a, b, 1e-8)[0], forward_cosine(a, b, 1e-8))
        for p in (1.0, 2.0):
            np.testing.assert_array_equal(
                triplet_grad(a, b, c, p, 0.5, 1e-6)[0], forward_triplet(a, b, c, p, 0.5, 1e-6)
            )

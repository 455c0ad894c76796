"""The Triton kernels of ``triplet_loss`` and ``cosine_embedding_loss``
(``anyloss/kernels/_triton_rows.py``), checked without a GPU in Triton's
interpreter (see ``tests/test_triton.py``).

Values: the 50-digit regimes of ``accuracy_cases.py`` also with blocks of 4
entries (several blocks per row: the exact sums carried across blocks), and
nearly parallel, exactly parallel, nearly orthogonal and near-margin pairs
against mpmath; within 4 ulp. Gradients: against float64 formulas of NumPy,
each element within 4 ulp of the larger of its two terms (the gradients are
differences: ``(a - pos) / d_p - (a - neg) / d_n``, ``x2 / (|x1||x2|) - cos
x1 / |x1|^2``). Special values, options, reductions, shapes, bf16 inputs
against the generic code.
"""

from __future__ import annotations

from typing import Any

import accuracy_cases as A
import numpy as np
import pytest
from backends import DEVICE, make

import anyloss
from anyloss import kernels

pytest.importorskip("triton")
torch = pytest.importorskip("torch")
from triton_support import INF, NAN, TRITON_BOUND, compiled_and_generic  # noqa: E402

from anyloss.kernels import _triton_rows_ops  # noqa: E402

pytestmark = pytest.mark.usefixtures("triton_on_cpu")

LOSSES = ("triplet_loss", "cosine_embedding_loss")


def _t(x: Any, dtype: Any = torch.float32) -> Any:
    return torch.tensor(np.asarray(x), dtype=dtype)


def _ulps(got: Any, want: np.ndarray, scale: np.ndarray) -> float:
    """The largest ``|got - want|`` in ulp (float32) of ``scale`` (the larger
    term, per element; at least the smallest normal float32)."""
    got64 = got.numpy(force=True).astype(np.float64)
    unit = np.spacing(np.maximum(np.abs(scale), 2.0**-126).astype(np.float32)).astype(np.float64)
    err = np.where(got64 == want, 0.0, np.abs(got64 - want) / unit)
    return float(err.max())


# -- values against mpmath ------------------------------------------------------------


def _cases() -> list[str]:
    """The regimes but the ordinary ones (and those of 12500 rows on the CPU)."""
    return [
        c.id
        for c in A.CASES
        if c.loss in LOSSES
        and not c.id.endswith("-ordinary")
        and (c.inputs()[0][0].shape[0] <= 2048 or DEVICE != "cpu")
    ]


@pytest.mark.parametrize("case_id", _cases())
def test_regimes_within_4_ulp_with_blocks_of_4(
    case_id: str, triton_on_cpu: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several blocks per row (8 entries, blocks of 4): the sums, exact ones
    included, carried from block to block. (One block per row: every regime
    in ``test_triton.py``.)"""
    monkeypatch.setattr(_triton_rows_ops, "block", lambda n, most: 4)
    with np.errstate(over="ignore", invalid="ignore"):
        m = A.measure(A.CASE_BY_ID[case_id], make("torch"))
    assert triton_on_cpu, "the Triton entry did not run"
    assert m.ulp <= TRITON_BOUND, f"{case_id}: {m}"


@pytest.mark.parametrize("p", [2.0, 1.0])
def test_triplet_near_equal_distances_within_4_ulp(
    p: float, triton_on_cpu: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """d(a, neg) = d(a, pos) up to the float32 rounding of neg, 64 entries
    (blocks of 16), margin 0: the gap is about 2^-24 of the sums it is the
    difference of (in ``accuracy_cases.py``: 8 entries), below what double
    words resolve (5 ulp with the squares summed in double words)."""
    monkeypatch.setattr(_triton_rows_ops, "block", lambda n, most: 16)
    rng = np.random.default_rng(31)
    a = rng.normal(size=(12, 64))
    pos = np.float32(a + rng.normal(size=(12, 64)))
    a = np.float32(a)
    neg = np.float32(a + (pos.astype(np.float64) - a)[:, ::-1])
    got = anyloss.triplet_loss(_t(a), _t(pos), _t(neg), p=p, margin=0.0)
    assert triton_on_cpu
    kw = {"p": p, "margin": 0.0, "reduction": "none"}
    exact = A.exact_examples("triplet_loss", (a, pos, neg), kw)
    errs = [A.ulp_error(g, e) for g, e in zip(got.tolist(), exact, strict=True)]
    assert max(errs) <= TRITON_BOUND and (got > 0).sum() >= 3, (max(errs), got)


def _embedding_regime(name: str, rng: np.random.Generator) -> tuple[Any, ...]:
    """(x1, x2, targets, margin): float32 pairs of 9 entries, 24 rows."""
    n, d = 24, 9
    a = rng.normal(size=(n, d))
    ones = np.ones(n)
    if name == "near_parallel":  # 1 - cos from 1e-14 to 1e-4: no cancellation
        rel = 10.0 ** rng.uniform(-7, -2, (n, 1)) * rng.normal(size=(n, d))
        b = np.float32(a) * (1 + rel) * rng.uniform(0.1, 10, (n, 1))
        return a, b, ones, 0.0
    if name == "parallel":  # x2 = k x1 exactly (k not a power of two): 1 - cos = 0
        a = np.round(a * 1024) / 1024
        return a, a * rng.choice([3.0, 0.75, 5.0, 1 / 1024, 3 * 2.0**60], (n, 1)), ones, 0.0
    if name == "near_orthogonal":  # cos ~1e-4 (its dot product cancels), margin 0
        a32, b = np.float32(a), np.float32(rng.normal(size=(n, d)))
        b = b - a32 * (np.sum(a32 * b, 1, keepdims=True) / np.sum(a32 * a32, 1, keepdims=True))
        return a, b + 1e-4 * np.abs(rng.normal(size=(n, d))) * a32, -ones, 0.0
    # near the margin 0.5: cos - margin ~1e-5
    u = rng.normal(size=(n, d))
    u -= a * (np.sum(a * u, 1) / np.sum(a * a, 1))[:, None]
    u *= np.linalg.norm(a, axis=1, keepdims=True) / np.linalg.norm(u, axis=1, keepdims=True)
    angle = np.arccos(0.5 + rng.uniform(-1e-5, 1e-5, (n, 1)))
    return a, a * np.cos(angle) + u * np.sin(angle), -ones, 0.5


@pytest.mark.parametrize("name", ["near_parallel", "parallel", "near_orthogonal", "near_margin"])
def test_cosine_embedding_cancelling_pairs_within_4_ulp(
    name: str, triton_on_cpu: list[str]
) -> None:
    rng = np.random.default_rng(30)
    a, b, y, margin = _embedding_regime(name, rng)
    a, b, y = (np.asarray(v, np.float32) for v in (a, b, y))
    got = anyloss.cosine_embedding_loss(_t(a), _t(b), _t(y), margin=margin)
    assert triton_on_cpu
    if name == "parallel":  # exactly 0, as the generic code (mpmath's square roots are not)
        assert not got.any(), got
        return
    kw = {"margin": margin, "reduction": "none"}
    exact = A.exact_examples("cosine_embedding_loss", (a, b, y), kw)
    errs = [A.ulp_error(g, e) for g, e in zip(got.tolist(), exact, strict=True)]
    assert max(errs) <= TRITON_BOUND, (name, max(errs), int(np.argmax(errs)))


# -- gradients against float64 -----------------------------------------------------------


def _triplet_rows(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """12 rows of 13 entries N(0, 1), two of them at 1e20 and two at 1e-20,
    one near its kink (d_p - d_n + margin far from 0 in others)."""
    a, pos, neg = (rng.normal(size=(12, 13)) for _ in range(3))
    scale = np.ones((12, 1))
    scale[2:4], scale[4:6] = 1e20, 1e-20
    return tuple(np.float32(x * scale) for x in (a, pos, neg))


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_triplet_gradients_within_4_ulp_of_float64(p: float, triton_on_cpu: list[str]) -> None:
    """d/da = w (t_p - t_n), d/dpos = -w t_p, d/dneg = w t_n with w the
    hinge's derivative and t = sign(a - v) (|a - v| / d)^(p - 1): each
    element within 4 ulp of the larger term (of the single term for pos
    and neg)."""
    rng = np.random.default_rng(21)
    a, pos, neg = _triplet_rows(rng)
    g = rng.uniform(0.5, 2, 12).astype(np.float32)
    margin, eps = 0.5, 1e-6
    ts = [_t(x).requires_grad_(True) for x in (a, pos, neg)]
    out = anyloss.triplet_loss(*ts, p=p, margin=margin, eps=eps)
    grads = torch.autograd.grad(out, ts, _t(g))
    assert len(triton_on_cpu) == 2  # forward and backward
    a64, p64, n64, g64 = (x.astype(np.float64) for x in (a, pos, neg, g))
    dists, terms = [], []
    for v in (p64, n64):
        d = a64 - v
        if p == 1.0:
            dists.append(np.abs(d).sum(1) + eps)
            terms.append(np.sign(d))
        else:
            dist = (np.sum(np.abs(d) ** p, 1) + eps) ** (1 / p)
            dists.append(dist)
            terms.append(np.sign(d) * (np.abs(d) / dist[:, None]) ** (p - 1))
    pre = dists[0] - dists[1] + margin
    assert (pre > 0).sum() >= 4 and (pre < 0).sum() >= 2, pre  # (both sides of the kink)
    w = (g64 * np.where(pre > 0, 1.0, 0.0))[:, None]
    tp, tn = w * terms[0], w * terms[1]
    torch.testing.assert_close(out.double(), torch.tensor(np.maximum(pre, 0)), rtol=1e-6, atol=0)
    wants = [(tp - tn, np.maximum(np.abs(tp), np.abs(tn))), (-tp, tp), (tn, tn)]
    for got, (want, scale) in zip(grads, wants, strict=True):
        assert _ulps(got, want, scale) <= 4, (p, _ulps(got, want, scale))


def _cosine_terms(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """cos, and d cos / d a as its two terms: b / (|a||b|), cos a / |a|^2."""
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    cos = (a * b).sum(1, keepdims=True) / (na * nb)
    return cos, b / (na * nb), cos * a / na**2


@pytest.mark.parametrize("scale", [1.0, 1e20, 1e-20])
def test_cosine_embedding_gradients_within_4_ulp_of_float64(
    scale: float, triton_on_cpu: list[str]
) -> None:
    """d loss / d x1 = c (x2 / (|x1||x2|) - cos x1 / |x1|^2), c = -1 for a
    similar pair, 1 for a dissimilar one above the margin, else 0; the
    same for x2 (ulps of the larger term). Nearly parallel pairs too, where
    the two terms cancel."""
    rng = np.random.default_rng(22)
    a = rng.normal(size=(14, 17)) * scale
    b = rng.normal(size=(14, 17)) * scale
    b[:4] = a[:4] * (1 + 1e-4 * rng.normal(size=(4, 17)))  # nearly parallel
    b[4:6] = a[4:6] * (1 + 0.3 * rng.normal(size=(2, 17)))  # cos far above the margin
    a, b = np.float32(a), np.float32(b)
    y = np.float32([1, -1] * 7)
    g = rng.uniform(0.5, 2, 14).astype(np.float32)
    margin = 0.1
    at, bt = _t(a).requires_grad_(True), _t(b).requires_grad_(True)
    out = anyloss.cosine_embedding_loss(at, bt, _t(y), margin=margin, eps=0.0)
    grads = torch.autograd.grad(out, (at, bt), _t(g))
    assert len(triton_on_cpu) == 2
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = _cosine_terms(a64, b64)[0][:, 0]
    coef = np.where(y == 1, -1.0, np.where(cos - margin > 0, 1.0, 0.0))
    assert 0 < (coef == 0).sum() < 7  # (dissimilar pairs on both sides of the margin)
    for got, x, z in ((grads[0], a64, b64), (grads[1], b64, a64)):
        _, first, second = _cosine_terms(x, z)
        c = (g * coef)[:, None]
        want = c * (first - second)
        scale_ = np.abs(c) * np.maximum(np.abs(first), np.abs(second))
        assert _ulps(got, want, scale_) <= 4, (scale, _ulps(got, want, scale_))


def test_cosine_embedding_gradients_bounded_by_eps(triton_on_cpu: list[str]) -> None:
    """Where |x1||x2| < eps: cos = x1.x2 / eps, d/dx1 = c x2 / eps."""
    rng = np.random.default_rng(23)
    a, b = (np.float32(rng.normal(size=(6, 5))) for _ in range(2))
    y = np.float32([1, -1, 1, -1, -1, 1])
    at, bt = _t(a).requires_grad_(True), _t(b).requires_grad_(True)
    out = anyloss.cosine_embedding_loss(at, bt, _t(y), margin=-0.5, eps=1e3)
    grads = torch.autograd.grad(out.sum(), (at, bt))
    assert len(triton_on_cpu) == 2
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = (a64 * b64).sum(1) / 1e3
    np.testing.assert_allclose(
        out.detach().numpy(), np.where(y == 1, 1 - cos, np.maximum(cos + 0.5, 0)), rtol=3e-7
    )
    c = np.where(y == 1, -1.0, np.where(cos + 0.5 > 0, 1.0, 0.0))[:, None]
    np.testing.assert_allclose(grads[0].numpy(), c * b64 / 1e3, rtol=3e-7)
    np.testing.assert_allclose(grads[1].numpy(), c * a64 / 1e3, rtol=3e-7)


# -- special values against the generic code -------------------------------------------


def _with_generic(fn: Any, arrays: list[Any], **kw: Any) -> tuple[Any, ...]:
    """(value, gradients) through the Triton entry, then by the generic code."""
    results = []
    for generic in (False, True):
        ts = [x.detach().clone().requires_grad_(True) for x in arrays]
        with np.errstate(all="ignore"):
            if generic:
                with kernels.generic():
                    out = fn(*ts, **kw)
            else:
                out = fn(*ts, **kw)
            grads = torch.autograd.grad(out.sum(), ts)
        results.append((out.detach(), grads))
    return results[0][0], results[0][1], results[1][0], results[1][1]


def _rows_close(
    got: tuple[Any, ...], want: tuple[Any, ...], bad: Any, scales: tuple[Any, ...] | None = None
) -> None:
    """Gradients: NaN in the rows ``bad`` (a non-finite entry); elsewhere as
    the generic code where its gradient is finite, within 1e-5 relative or 4
    ulp of the row's scale (its largest gradient, or ``scales`` per row
    where larger: the terms of a difference; an element far below them
    comes from terms that cancel: exactly parallel vectors, a tie)."""
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert torch.isnan(g[bad]).all()
        finite = torch.isfinite(w).all(-1) & ~bad
        g, w = g[finite].double(), w[finite].double()
        scale = w.abs().amax(-1)
        if scales is not None:
            scale = torch.maximum(scale, scales[i][finite])
        tol = 1e-5 * w.abs() + 4 * 2.0**-23 * scale[:, None]
        with np.errstate(all="ignore"):
            assert ((g == w) | ((g - w).abs() <= tol)).all(), (g, w)


TRIPLET_A = [[1.0, NAN, 2.0], [1.0, INF, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0],
             [3e38, -3e38, 1e38], [1e-40, 2e-40, 0.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0],
             [0.0, 0.0, 0.0], [-INF, 0.0, 0.0], [1e20, -1e20, 1.0]]  # fmt: skip
TRIPLET_P = [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, INF, 1.0], [0.0, 1.0, 1.0], [1.0, 2.0, 3.0],
             [-3e38, 3e38, -1e38], [0.0, 1e-40, 3e-40], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0],
             [3.0, 4.0, 0.0], [-INF, 0.0, 0.0], [1e20, -1e20, 2.0]]  # fmt: skip
TRIPLET_N = [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [0.0, -INF, 1.0], [2.0, 2.0, 2.0],
             [3e38, 3e38, 3e38], [1e-40, 0.0, 0.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0],
             [6.0, 8.0, 0.0], [0.0, 0.0, 0.0], [-1e20, 1e20, 1.0]]  # fmt: skip


@pytest.mark.parametrize(
    ("p", "eps", "margin"),
    [(2.0, 1e-6, 1.0), (2.0, 0.0, 5.0), (1.0, 0.0, 7.0), (3.0, 0.0, 1.0), (2.0, 1e30, -0.5),
     (1.0, 1e-6, 0.0)],
)  # fmt: skip
def test_triplet_special_values_as_the_generic_code(
    p: float, eps: float, margin: float, triton_on_cpu: list[str]
) -> None:
    """NaN and infinite entries (NaN, inf or 0 as the plain formula, a NaN
    gradient), a = pos = neg, zero distances with eps = 0, entries near the
    largest float (halved) and subnormal ones, a loss of exactly 0 before
    the hinge (eps = 0, margin 5: half the gradient, as torch's maximum)."""
    arrays = [_t(x) for x in (TRIPLET_A, TRIPLET_P, TRIPLET_N)]
    got, got_grads, want, want_grads = _with_generic(
        anyloss.triplet_loss, arrays, p=p, eps=eps, margin=margin
    )
    assert len(triton_on_cpu) == 2
    torch.testing.assert_close(got, want.float(), rtol=4e-7, atol=0, equal_nan=True)
    bad = ~torch.isfinite(torch.stack(arrays)).all(0).all(-1)
    # the anchors' gradient is t_p - t_n, the others' -t_p and t_n (times w)
    gp, gn = (torch.nan_to_num(g.double().abs(), 0, 0, 0).amax(-1) for g in want_grads[1:])
    _rows_close(got_grads, want_grads, bad, (torch.maximum(gp, gn), gp, gn))


def test_triplet_gradient_is_0_where_inactive_and_at_a_zero_distance(
    triton_on_cpu: list[str],
) -> None:
    """Below the kink the gradient is 0 (the generic code's autograd forms
    0 * inf = NaN there, for a zero distance with eps = 0); at a zero
    distance the subgradient 0 (as torch's norm)."""
    a = _t([[1.0, 2.0], [1.0, 2.0]]).requires_grad_(True)
    pos = _t([[1.0, 2.0], [1.0, 2.0]]).requires_grad_(True)
    neg = _t([[2.0, 3.0], [4.0, 6.0]]).requires_grad_(True)
    out = anyloss.triplet_loss(a, pos, neg, eps=0.0, margin=2.0)
    grads = torch.autograd.grad(out.sum(), (a, pos, neg))
    assert len(triton_on_cpu) == 2
    s = 2.0**-0.5
    torch.testing.assert_close(out, _t([2.0 - 2.0**0.5, 0.0]))  # (the second: 2 - 5 < 0)
    torch.testing.assert_close(grads[0], _t([[s, s], [0.0, 0.0]]))  # -(a - neg) / d_n
    torch.testing.assert_close(grads[1], _t([[0.0, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(grads[2], _t([[-s, -s], [0.0, 0.0]]))


EMB_A = [[0.0, 0.0, 0.0], [1.0, NAN, 2.0], [1.0, INF, 2.0], [1.0, INF, 2.0], [0.1, 0.2, 0.3],
         [1e-40, 2e-40, 0.0], [3e38, -3e38, 1e38], [1.0, 2.0, 3.0], [2.0, 4.0, 6.0],
         [1e20, 1e-20, 0.0], [-1.0, 2.0, 0.5]]  # fmt: skip
EMB_B = [[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.3, -0.1, 0.2],
         [1e-40, 1e-40, 1e-40], [3e38, 3e38, -3e38], [-1.0, 0.5, 2.0], [3.0, 6.0, 9.0],
         [1e-20, 1e20, 0.0], [1.0, -2.0, -0.5]]  # fmt: skip


@pytest.mark.parametrize("eps", [1e-8, 1e3, 0.0])
@pytest.mark.parametrize("margin", [0.0, -0.5, 0.9])
def test_cosine_embedding_special_rows_as_the_generic_code(
    eps: float, margin: float, triton_on_cpu: list[str]
) -> None:
    """A zero row (bounded by eps: cos 0), NaN and inf entries (NaN),
    subnormal and huge rows, rows bounded by eps, parallel and antiparallel
    rows; both targets. With eps = 0 a row with a NaN or inf entry is NaN
    here, where the generic code gives a number (cos taken as 0, as for a
    zero vector): there the values are compared where finite."""
    arrays = [_t(EMB_A), _t(EMB_B)]
    bad = ~torch.isfinite(torch.stack(arrays)).all(0).all(-1)
    for y in (1.0, -1.0):
        targets = torch.full((len(EMB_A),), y)
        got, got_grads, want, want_grads = _with_generic(
            lambda a, b, t=targets: anyloss.cosine_embedding_loss(a, b, t, margin=margin, eps=eps),
            arrays,
        )
        assert torch.isnan(got[bad]).all()
        keep = ~bad if eps == 0.0 else torch.ones_like(bad)
        torch.testing.assert_close(
            got[keep], want[keep].float(), rtol=4e-7, atol=0, equal_nan=True
        )
        norms = [torch.linalg.vector_norm(x.double(), dim=-1) for x in arrays]
        with np.errstate(all="ignore"):
            scales = (1 / norms[0], 1 / norms[1])  # (d cos / d x1: terms of 1 / |x1|)
        _rows_close(got_grads, want_grads, bad, scales)
    assert len(triton_on_cpu) == 4


# -- options, shapes, reductions, dtypes ------------------------------------------------


def _values_and_grads(fn: Any, arrays: list[Any], **kw: Any) -> tuple[Any, ...]:
    """(value, gradients): of the inputs but the cosine embedding's targets."""
    ts = [x.detach().clone() for x in arrays]
    wanted = ts[:2] if fn is anyloss.cosine_embedding_loss else ts
    for t in wanted:
        t.requires_grad_(True)
    out = fn(*ts, **kw)
    return out.detach(), torch.autograd.grad(out.sum(), wanted)


@pytest.mark.parametrize(
    ("shapes", "kw", "runs"),
    [
        (((2, 3, 5),) * 3, {"reduction": "mean", "margin": 0.3}, True),
        (((5,),) * 3, {"reduction": "sum", "p": 1}, True),
        (((4, 6),) * 3, {"p": 1.5, "eps": 0.0}, True),
        (((4, 6),) * 3, {"p": 0.5}, False),  # (p < 1: the generic code)
        (((6, 4),) * 3, {"axis": 0}, False),  # (not the last axis)
        (((1, 6), (4, 6), (4, 6)), {}, False),  # (broadcast anchors)
        ("strided", {"reduction": "sum"}, True),
    ],
)
def test_triplet_options_and_shapes_as_the_generic_code(
    shapes: Any, kw: dict, runs: bool, triton_on_cpu: list[str]
) -> None:
    rng = np.random.default_rng(24)
    if shapes == "strided":
        arrays = [_t(rng.normal(size=(7, 10))).T[::2] for _ in range(3)]  # (5, 7), no axis unit
    else:
        arrays = [_t(rng.normal(size=s)) for s in shapes]
    got, got_grads = _values_and_grads(anyloss.triplet_loss, arrays, **kw)
    assert bool(triton_on_cpu) == runs
    with kernels.generic():
        want, want_grads = _values_and_grads(anyloss.triplet_loss, arrays, **kw)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("shapes", "kw", "runs"),
    [
        (((2, 3, 5), (2, 3, 5), (2, 3)), {"reduction": "mean", "margin": 0.3}, True),
        (((5,), (5,), ()), {"reduction": "sum", "margin": -0.2}, True),  # one pair, 0-d target
        (((4, 6), (4, 6), ()), {}, True),  # one target for every pair
        (((4, 6), (4, 1), (4,)), {}, True),  # x2 broadcast along the axis (by the loss)
        (((6, 4), (6, 4), (4,)), {"axis": 0}, False),  # (not the last axis)
    ],
)
def test_cosine_embedding_options_and_shapes_as_the_generic_code(
    shapes: Any, kw: dict, runs: bool, triton_on_cpu: list[str]
) -> None:
    rng = np.random.default_rng(25)
    a, b = (_t(rng.normal(size=s)) for s in shapes[:2])
    y = _t(np.where(rng.random(shapes[2]) < 0.5, -1.0, 1.0))
    got, got_grads = _values_and_grads(anyloss.cosine_embedding_loss, [a, b, y], **kw)
    assert bool(triton_on_cpu) == runs
    with kernels.generic():
        want, want_grads = _values_and_grads(anyloss.cosine_embedding_loss, [a, b, y], **kw)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    # (x2 of size 1 along the axis: its gradient sums that of the 6 entries it
    # stands for, terms of about 1 that cancel: cos does not depend on its size)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 if shapes[1][-1] == 1 else 1e-7)


def test_bfloat16_inputs(triton_on_cpu: list[str]) -> None:
    """bf16 in (computed in float32): the values (in the dtype the generic
    code returns: the inputs' and the targets' promoted) and gradients (bf16)
    of the generic code on the same bf16 inputs, to bf16's rounding."""
    rng = np.random.default_rng(26)
    x = [_t(rng.normal(size=(5, 8)), torch.bfloat16) for _ in range(3)]
    y = _t([1.0, -1.0, 1.0, -1.0, 1.0])
    calls = [
        (anyloss.triplet_loss, x, {"margin": 2.0}),
        (anyloss.cosine_embedding_loss, [x[0], x[1]], {"targets": y, "margin": -0.5}),
    ]
    for fn, arrays, kw in calls:
        got, got_grads = _values_and_grads(fn, arrays, **kw)
        assert all(g.dtype == torch.bfloat16 for g in got_grads)
        with kernels.generic():
            want, want_grads = _values_and_grads(fn, arrays, **kw)
        assert got.dtype == want.dtype
        torch.testing.assert_close(got.float(), want.float(), rtol=2**-8, atol=0)
        for g, w in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(g.float(), w.float(), rtol=2**-7, atol=1e-3)
    assert len(triton_on_cpu) == 4


def test_a_second_derivative_raises(triton_on_cpu: list[str]) -> None:
    x = torch.randn(3, 4, requires_grad=True)
    out = anyloss.triplet_loss(x, torch.zeros(3, 4), torch.ones(3, 4), reduction="sum")
    with pytest.raises(RuntimeError, match="second derivative"):
        torch.autograd.grad(out, x, create_graph=True)
    out = anyloss.cosine_embedding_loss(x, torch.ones(3, 4), torch.ones(3), reduction="sum")
    with pytest.raises(RuntimeError, match="second derivative"):
        torch.autograd.grad(out, x, create_graph=True)
    assert triton_on_cpu


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiles_as_one_op(triton_on_cpu: list[str]) -> None:
    pytest.importorskip("torch._dynamo")
    rng = np.random.default_rng(27)
    a, pos, neg = (_t(rng.normal(size=(4, 9))) for _ in range(3))

    def step(v: Any) -> Any:
        return anyloss.triplet_loss(v, pos, neg, margin=0.7, reduction="mean")

    out, grad, want, want_grad = compiled_and_generic(step, a)
    assert triton_on_cpu
    torch.testing.assert_close(out, want, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-8)

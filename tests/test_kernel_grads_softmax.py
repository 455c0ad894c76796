"""The gradient kernels of the softmax family: ``ce_index_grad``,
``ce_probs_grad`` and ``kl_div_grad`` in ``anyloss.kernels._numba``.

Each writes the per-row loss, which must be bit for bit what its forward
kernel writes, and the gradient of that loss w.r.t. the logits. Expected
gradients come from float64 autograd of the plain formulas in PyTorch
(float32 inputs, whose exact gradient float64 carries to ~1e-16) and from a
reference in wider precision (80-bit ``longdouble``, or mpmath where the
platform has no extended type) for float64 inputs and for the confident rows
where float64 itself cancels. The wide reference is checked against mpmath.

Accuracy criterion (``assert_ulps``): |g - ref| <= 4 ulp (of the input dtype)
of ``max(|ref|, floor)``. ``floor`` is 0 where the gradient element is not a
difference (cross entropy without smoothing: softmax, and -(S - e_t) / S at
the target), so those elements are held to 4 ulp of themselves, however
small. Where it is a difference of two terms (softmax - smoothing / n,
softmax - q), the subtraction's condition makes 4 ulp of the larger term the
best any implementation can promise (each term is only known to its own
rounding), so ``floor`` is that term's magnitude.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("numba")
from anyloss.kernels import _numba as k

# numba's CPU kernels (skipped on another ANYLOSS_TEST_DEVICE)
pytestmark = pytest.mark.cpu_only

DTYPES = (np.float32, np.float64)
SIZES = (1, 2, 63, 65, 1000)  # around CLASS_BLOCK = 64, and a vocabulary

# Wide arithmetic for the references: 64-bit significands (x - max of two
# float64 is exact there for ordinary data) or mpmath at 113 bits.
_EXTENDED = np.finfo(np.longdouble).nmant >= 63


def wide(a: Any) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if _EXTENDED:
        return a.astype(np.longdouble)
    import mpmath

    return np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(a)


def wexp(a: np.ndarray) -> np.ndarray:
    if _EXTENDED:
        with np.errstate(under="ignore"):
            return np.exp(a)
    import mpmath

    return np.vectorize(mpmath.exp, otypes=[object])(a)


def f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a.astype(np.float64) if _EXTENDED else np.vectorize(float)(a), np.float64)


@pytest.fixture(autouse=True)
def _mp_precision() -> Any:
    if _EXTENDED:
        yield
        return
    import mpmath

    with mpmath.workprec(113):
        yield


def assert_ulps(g: np.ndarray, ref: Any, floor: Any, dtype: Any, ulps: float = 4.0) -> None:
    """|g - ref| <= ulps * ulp(max(|ref|, floor)), ulp in ``dtype``."""
    ref = np.asarray(ref)
    diff = f64(np.abs(wide(g) - (ref if ref.dtype != np.float64 else wide(ref))))
    scale = np.maximum(np.abs(f64(ref) if ref.dtype != np.float64 else ref), floor)
    spacing = np.spacing(scale.astype(dtype)).astype(np.float64)
    err = diff / spacing
    worst = np.unravel_index(np.argmax(err), err.shape)
    at_floor = np.broadcast_to(floor, err.shape)[worst]
    assert err[worst] <= ulps, (
        f"{err[worst]:.2f} ulp at {worst}: got {g[worst]!r}, expected "
        f"{f64(np.asarray(ref))[worst]!r} (floor {at_floor})"
    )


def softmax_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(e, S, top, below) in wide precision: e = exp(x - max), S its row sum,
    top the maxima, below = S - 1 summed without the 1 of one maximum."""
    m = x.max(axis=1, keepdims=True)
    top = x == m
    e = wexp(wide(x) - wide(m))
    e = np.where(top, wide(np.ones_like(x)), e)
    rest = np.where(top, wide(np.zeros_like(x)), e).sum(axis=1, keepdims=True)
    ties = wide(top.sum(axis=1, keepdims=True))
    below = rest + (ties - 1)
    return e, rest + ties, top, below


def ce_index_ref(x: np.ndarray, idx: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """(gradient, floor) of cross entropy with class indices, wide."""
    n = x.shape[1]
    e, S, _, _ = softmax_parts(x)
    p = e / S
    sn = wide(s) / n
    g = p - sn
    floor = np.maximum(f64(p), float(s) / n)
    for r, i in enumerate(idx):
        if 0 <= i < n:
            others = np.concatenate([e[r, :i], e[r, i + 1 :]]).sum()  # S - e_t, no cancellation
            g[r, i] = -others / S[r, 0] + (wide(s) - sn)
            floor[r, i] = max(float(others / S[r, 0]), s - s / n)
    return g, floor


def ce_probs_ref(x: np.ndarray, p: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """(gradient, floor) of cross entropy with probabilities: softmax - q,
    q = (1 - s) p + s / n; at a maximum ((1 - q) - q (S - 1)) / S.

    The floor there is that form's larger term where q is the target as
    given (s = 0); with smoothing q itself is rounded (in float64), and the
    floor is the larger of softmax and q as elsewhere."""
    n = x.shape[1]
    e, S, top, below = softmax_parts(x)
    q = (1 - wide(s)) * wide(p) + wide(s) / n
    at_top = ((1 - q) - q * below) / S
    g = np.where(top, at_top, e / S - q)
    floor = np.maximum(f64(e / S), f64(q))
    if s == 0:
        floor = np.where(top, np.maximum(f64(abs(1 - q) / S), f64(q * below / S)), floor)
    return g, floor


def run_ce_index(x: np.ndarray, idx: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    out = np.full(x.shape[0], -1.0)
    grad = np.full_like(x, -7.0)
    k.ce_index_grad(x, idx, s, out, grad, 0, x.shape[0])
    forward = np.full(x.shape[0], -2.0)
    k.ce_index(x, idx, s, forward, 0, x.shape[0])
    assert_same_bits(out, forward)
    return out, grad


def run_ce_probs(x: np.ndarray, p: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    out = np.full(x.shape[0], -1.0)
    grad = np.full_like(x, -7.0)
    k.ce_probs_grad(x, p, s, out, grad, 0, x.shape[0])
    forward = np.full(x.shape[0], -2.0)
    k.ce_probs(x, p, s, forward, 0, x.shape[0])
    assert_same_bits(out, forward)
    return out, grad


def run_kl_div(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The loss and both gradients; each gradient alone (the other not
    wanted: empty) gives the same bits."""
    out = np.full(x.shape[0], -1.0)
    grad, grad_t = np.full_like(x, -7.0), np.full_like(t, -7.0)
    k.kl_div_grad(x, t, out, grad, grad_t, 0, x.shape[0])
    forward = np.full(x.shape[0], -2.0)
    k.kl_div(x, t, forward, 0, x.shape[0])
    assert_same_bits(out, forward)
    empty = np.empty((0, 0), dtype=x.dtype)
    only_x, only_t = np.full_like(x, -5.0), np.full_like(t, -5.0)
    k.kl_div_grad(x, t, forward, only_x, empty, 0, x.shape[0])
    k.kl_div_grad(x, t, forward, empty, only_t, 0, x.shape[0])
    np.testing.assert_array_equal(only_x, grad)
    np.testing.assert_array_equal(only_t, grad_t)
    return out, grad, grad_t


def assert_same_bits(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))


def logits(rng: np.random.Generator, rows: int, n: int, dtype: Any, sd: float = 3.0) -> np.ndarray:
    return (rng.standard_normal((rows, n)) * sd).astype(dtype)


def torch_grad(x: np.ndarray, loss_fn: Any) -> np.ndarray:
    """d sum(loss_fn(x)) / dx by float64 autograd."""
    torch = pytest.importorskip("torch")
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    loss_fn(torch, xt).sum().backward()
    return xt.grad.numpy()


# --------------------------------------------------------------------------
# the wide reference itself


def test_wide_reference_matches_mpmath() -> None:
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(1)
    x = logits(rng, 3, 7, np.float64)
    x[2, 3] = x[2].max() + 25.0  # confident
    idx = np.array([0, 4, 3])
    ref, _ = ce_index_ref(x, idx, 0.1)
    with mpmath.workdps(50):
        for r in range(3):
            v = [mpmath.mpf(float(a)) for a in x[r]]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(a) for a in v))
            for c in range(7):
                s = mpmath.mpf(0.1)  # the float64 0.1, exactly
                exact = mpmath.exp(v[c] - lse) - (1 - s) * (c == idx[r]) - s / 7
                got = mpmath.mpf(float(f64(ref)[r, c]))
                assert abs(got - exact) <= abs(exact) * 2.0**-52


# --------------------------------------------------------------------------
# ce_index_grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.7])
def test_ce_index_grad(dtype: Any, n: int, smoothing: float) -> None:
    rng = np.random.default_rng(n)
    rows = 96
    x = logits(rng, rows, n, dtype)
    idx = rng.integers(0, n, rows)
    idx[:8] = x[:8].argmax(axis=1)  # targets at the max
    _, grad = run_ce_index(x, idx, smoothing)
    ref, floor = ce_index_ref(x, idx, smoothing)
    if smoothing == 0.0:
        floor = 0.0  # no differences: every element to 4 ulp of itself
    assert_ulps(grad, ref, floor, dtype)
    if dtype == np.float32:  # the plain formula, by torch autograd
        tref = torch_grad(
            x,
            lambda torch, xt: torch.nn.functional.cross_entropy(
                xt, torch.tensor(idx), label_smoothing=smoothing, reduction="none"
            ),
        )
        assert_ulps(grad, tref, floor, dtype)
    if n == 1:
        np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_index_grad_large_vocab(dtype: Any, smoothing: float) -> None:
    rng = np.random.default_rng(2)
    x = logits(rng, 3, 32000, dtype, sd=2.0)
    idx = np.array([5, 31999, int(x[2].argmax())])
    _, grad = run_ce_index(x, idx, smoothing)
    ref, floor = ce_index_ref(x, idx, smoothing)
    assert_ulps(grad, ref, 0.0 if smoothing == 0.0 else floor, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_index_grad_confident(dtype: Any) -> None:
    """p_t - 1 ~ -1e-13 and ties at the max: no cancellation, 4 ulp of
    themselves."""
    rng = np.random.default_rng(3)
    x = logits(rng, 6, 65, dtype, sd=1.0)
    idx = np.array([0, 10, 64, 3, 3, 7])
    for r in range(3):
        x[r, idx[r]] = 30.0
    x[3, [3, 9]] = 25.0  # target among two maxima
    x[4, [9, 12]] = 25.0  # two maxima, target below them
    x[5] = 1.5  # every logit equal
    _, grad = run_ce_index(x, idx, 0.0)
    ref, _ = ce_index_ref(x, idx, 0.0)
    assert_ulps(grad, ref, 0.0, dtype)
    assert np.all(grad[np.arange(3), idx[:3]] < 0)
    assert np.all(np.abs(grad[np.arange(3), idx[:3]]) < 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_index_grad_nonfinite(dtype: Any) -> None:
    big = np.finfo(dtype).max
    n = 65
    rng = np.random.default_rng(4)
    x = logits(rng, 10, n, dtype)
    idx = rng.integers(0, n, 10)
    x[0, 7] = np.nan
    x[1, 8] = np.inf
    x[2] = -np.inf
    x[3, :30] = -np.inf  # -inf logits off the target
    idx[3] = 40
    x[4, idx[4]] = -np.inf  # the target's logit: infinite loss
    idx[5] = n  # out of range
    idx[6] = -1
    x[7, :3] = (big, -big, big / 2)  # finite logits near the limit
    idx[7] = 2
    x[8, 0] = -np.nan  # a NaN with the sign bit set
    for s in (0.0, 0.1):
        out, grad = run_ce_index(x, idx, s)
        for r in (0, 1, 2, 8):
            assert np.isnan(out[r]) and np.isnan(grad[r]).all()
        for r in (5, 6):  # no one-hot term: softmax - s / n, finite
            assert np.isnan(out[r])
            e, S, _, _ = softmax_parts(x[r : r + 1])
            assert_ulps(grad[r : r + 1], e / S - wide(s) / n, np.maximum(f64(e / S), s / n), dtype)
        assert np.isfinite(out[3]) or s > 0  # with smoothing the mean of x - max is -inf
        assert out[4] == np.inf
        assert np.isfinite(out[7])
        for r in (3, 4, 7):
            assert np.isfinite(grad[r]).all()
        np.testing.assert_array_equal(grad[3, :30], -np.asarray(s / n, dtype))
        keep = [3, 4, 7]
        ref, floor = ce_index_ref(x[keep], idx[keep], s)
        assert_ulps(grad[keep], ref, floor if s else 0.0, dtype)


def test_ce_index_grad_index_dtypes() -> None:
    x = logits(np.random.default_rng(5), 4, 9, np.float32)
    idx = np.array([0, 8, 3, 4])
    _, expected = run_ce_index(x, idx, 0.2)
    for itype in (np.int32, np.uint8, np.int16):
        _, grad = run_ce_index(x, idx.astype(itype), 0.2)
        np.testing.assert_array_equal(grad, expected)


# --------------------------------------------------------------------------
# ce_probs_grad


def targets(rng: np.random.Generator, rows: int, n: int, dtype: Any) -> np.ndarray:
    """Probabilities that sum to 1 exactly, in float32 too (multiples of
    2**-20), some of them 0; rows 0 and 1 one-hot."""
    units = 1 << 20
    p = np.stack([rng.multinomial(units, rng.dirichlet(np.full(n, 0.5))) for _ in range(rows)])
    p[:2] = 0
    p[0, n // 2] = units
    p[1, 0] = units
    return (p / units).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_probs_grad(dtype: Any, n: int, smoothing: float) -> None:
    rng = np.random.default_rng(10 + n)
    rows = 64
    x = logits(rng, rows, n, dtype)
    p = targets(rng, rows, n, dtype)
    _, grad = run_ce_probs(x, p, smoothing)
    ref, floor = ce_probs_ref(x, p, smoothing)
    assert_ulps(grad, ref, floor, dtype)
    if dtype == np.float32:
        q = (1 - smoothing) * p.astype(np.float64) + smoothing / n
        tref = torch_grad(
            x,
            lambda torch, xt: -(torch.tensor(q) * torch.log_softmax(xt, dim=-1)).sum(-1),
        )
        assert_ulps(grad, tref, floor, dtype)
    if n == 1:
        np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_probs_grad_unnormalised(dtype: Any) -> None:
    """Targets not summing to 1: softmax - q, the gradient of the generic
    code, whose max is a constant (a stop_gradient): logsumexp(x) - sum(q x)."""
    rng = np.random.default_rng(11)
    n = 65
    x = logits(rng, 16, n, dtype)
    p = (targets(rng, 16, n, np.float64) * rng.uniform(0.2, 3.0, (16, 1))).astype(dtype)
    p[3] = 0.0  # no target mass at all
    for s in (0.0, 0.3):
        _, grad = run_ce_probs(x, p, s)
        ref, floor = ce_probs_ref(x, p, s)
        assert_ulps(grad, ref, floor, dtype)
        if dtype == np.float32:
            q = (1 - s) * p.astype(np.float64) + s / n

            def formula(torch: Any, xt: Any, qt: np.ndarray = q) -> Any:
                return torch.logsumexp(xt, -1) - (torch.tensor(qt) * xt).sum(-1)

            tref = torch_grad(x, formula)
            assert_ulps(grad, tref, floor, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_probs_grad_confident(dtype: Any) -> None:
    """One-hot targets on a dominant logit: p_t - 1 ~ -1e-13 without
    cancellation (4 ulp of itself), also with two maxima."""
    rng = np.random.default_rng(12)
    n = 63
    x = logits(rng, 4, n, dtype, sd=1.0)
    p = np.zeros((4, n), dtype)
    for r, t in enumerate((0, 30, 62, 5)):
        x[r, t] = 30.0
        p[r, t] = 1.0
    x[3, 6] = 30.0  # tie
    _, grad = run_ce_probs(x, p, 0.0)
    ref, _ = ce_probs_ref(x, p, 0.0)
    assert_ulps(grad, ref, 0.0, dtype)
    assert abs(grad[0, 0]) < 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_probs_grad_large_vocab(dtype: Any) -> None:
    rng = np.random.default_rng(13)
    x = logits(rng, 2, 32000, dtype, sd=2.0)
    p = targets(rng, 2, 32000, dtype)
    _, grad = run_ce_probs(x, p, 0.1)
    ref, floor = ce_probs_ref(x, p, 0.1)
    assert_ulps(grad, ref, floor, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_probs_grad_nonfinite(dtype: Any) -> None:
    n = 65
    rng = np.random.default_rng(14)
    x = logits(rng, 7, n, dtype)
    p = targets(rng, 7, n, dtype)
    x[0, 3] = np.nan
    x[1, 3] = np.inf
    x[2] = -np.inf
    p[3, 4] = np.nan
    x[4, :20] = -np.inf  # with p = 0 there: 0 * -inf counts 0
    p[4] = 0.0
    p[4, 30] = 1.0
    x[5, :20] = -np.inf  # with p > 0 there: infinite loss, finite gradient
    for s in (0.0, 0.2):
        out, grad = run_ce_probs(x, p, s)
        for r in range(4):
            assert np.isnan(out[r]) and np.isnan(grad[r]).all()
        assert np.isfinite(out[4]) or s > 0
        assert out[5] == np.inf
        assert np.isfinite(grad[4:]).all()
        np.testing.assert_array_equal(grad[4, :20], -np.asarray(s / n, dtype))
        ref, floor = ce_probs_ref(x[4:], p[4:], s)
        assert_ulps(grad[4:], ref, floor, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sd", [0.01, 30.0, 300.0])
def test_ce_grads_logit_scales(dtype: Any, sd: float) -> None:
    """Nearly uniform rows, and rows where x - max rounds (float64) or
    underflows: both cross entropy gradients, with and without smoothing."""
    rng = np.random.default_rng(int(sd * 100))
    n = 65
    x = logits(rng, 64, n, dtype, sd=sd)
    idx = rng.integers(0, n, 64)
    p = targets(rng, 64, n, dtype)
    for s in (0.0, 0.2):
        _, grad = run_ce_index(x, idx, s)
        ref, floor = ce_index_ref(x, idx, s)
        assert_ulps(grad, ref, floor if s else 0.0, dtype)
        _, grad = run_ce_probs(x, p, s)
        ref, floor = ce_probs_ref(x, p, s)
        assert_ulps(grad, ref, floor, dtype)


# --------------------------------------------------------------------------
# kl_div_grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_kl_div_grad(dtype: Any, n: int) -> None:
    rng = np.random.default_rng(20 + n)
    rows = 48
    x = np.log(rng.dirichlet(np.ones(n), rows)).astype(dtype)
    with np.errstate(divide="ignore"):
        t = np.log(targets(rng, rows, n, np.float64)).astype(dtype)  # some -inf
    assert n == 1 or np.isneginf(t).any()
    _, grad, grad_t = run_kl_div(x, t)
    ref = -wexp(wide(t))  # exact -0 where t = -inf
    assert_ulps(grad, ref, 0.0, dtype)
    live = ~np.isneginf(t)
    tl = np.where(live, wide(t), 0.0)  # (no 0 * inf where t = -inf)
    ref_t = np.where(live, wexp(tl) * (tl - wide(x) + 1), 0.0)
    assert_ulps(grad_t, ref_t, 0.0, dtype)
    if dtype == np.float32:
        tref = torch_grad(x, lambda torch, xt: torch.tensor(t).exp() * (torch.tensor(t) - xt))
        assert_ulps(grad, tref, 0.0, dtype)
        xt = torch_grad(t[live], lambda torch, tt: tt.exp() * (tt - torch.tensor(x[live])))
        assert_ulps(grad_t[live], xt, 0.0, dtype)
    assert (grad[np.isneginf(t)] == 0).all() and (grad_t[np.isneginf(t)] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_grad_nonfinite(dtype: Any) -> None:
    rng = np.random.default_rng(21)
    n = 65
    x = logits(rng, 5, n, dtype, sd=1.0)
    t = logits(rng, 5, n, dtype, sd=1.0)
    x[0, 3] = np.nan
    t[1, 3] = np.nan
    t[2, 3] = np.inf  # exp(t) inf: inf loss, and the gradient -inf there
    t[3, :10] = -np.inf
    x[3, :10] = np.nan  # ignored under t = -inf, as in the forward
    t[4, 0] = 100.0  # exp overflows float32 (not float64)
    out, grad, grad_t = run_kl_div(x, t)
    assert np.isnan(out[:2]).all() and np.isnan(grad[:2]).all() and np.isnan(grad_t[:2]).all()
    assert out[2] == np.inf and grad[2, 3] == -np.inf
    assert np.isfinite(out[3]) and (grad[3, :10] == 0).all() and (grad_t[3, :10] == 0).all()
    assert np.isfinite(grad_t[3]).all()
    assert_ulps(grad[3], -wexp(wide(t[3])), 0.0, dtype)
    assert_ulps(grad[4, 1:], -wexp(wide(t[4, 1:])), 0.0, dtype)
    assert grad[4, 0] == (-np.inf if dtype == np.float32 else -np.exp(100.0))


# --------------------------------------------------------------------------
# thread ranges


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_rows(dtype: Any) -> None:
    """Disjoint row ranges (as threads call them) give the one-call result,
    and leave the other rows alone."""
    rng = np.random.default_rng(30)
    rows, n = 37, 4096 * 3 + 17
    x = logits(rng, rows, n, dtype)
    idx = rng.integers(0, n, rows)
    p = targets(rng, rows, n, dtype)
    t = np.log(p + 1e-3).astype(dtype)
    calls = {
        "ce_index_grad": (k.ce_index_grad, (x, idx, 0.1)),
        "ce_probs_grad": (k.ce_probs_grad, (x, p, 0.1)),
        "kl_div_grad": (k.kl_div_grad, (x, t)),
    }
    for name, (kernel, args) in calls.items():
        # (kl_div: its gradient w.r.t. the targets not wanted, an empty output)
        more = (np.empty((0, 0), dtype=x.dtype),) if name == "kl_div_grad" else ()
        out1, grad1 = np.empty(rows), np.empty_like(x)
        kernel(*args, out1, grad1, *more, 0, rows)
        out2, grad2 = np.full(rows, 5.0), np.full_like(x, 5.0)
        kernel(*args, out2, grad2, *more, 0, 11)
        assert (out2[11:] == 5.0).all() and (grad2[11:] == 5.0).all(), name
        kernel(*args, out2, grad2, *more, 11, rows)
        assert_same_bits(out1, out2)
        np.testing.assert_array_equal(grad1, grad2, err_msg=name)

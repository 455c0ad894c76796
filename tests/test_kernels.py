"""The fused NumPy kernels agree with the generic implementation.

Every kernel is run through ``anyloss.kernels.run(..., _force=True)`` on
small arrays (sizes chosen to cross the kernels' block boundaries) and
compared with the public loss computed with the kernels switched off:

- float32: within 4 ulp of the true value (the generic path on the inputs
  cast to float64, rounded once), and within 6 ulp of the float32 generic
  result (each may be off by a few ulp in its own direction);
- float64: within 4 ulp of the generic result, or, where the loss cancels
  (a result much smaller than its terms), within 16 eps of the largest
  per-example loss.

Also: which calls get a kernel and which fall back (``run`` returns None),
that ``import anyloss`` does not import numba, and that a missing numba is
a silent fallback.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import anyloss
from anyloss import kernels
from anyloss.kernels import _config, _cpu, _registry

# numba's CPU kernels (skipped on another ANYLOSS_TEST_DEVICE)
pytestmark = pytest.mark.cpu_only

numba = pytest.importorskip("numba")

REDUCTIONS = ("none", "mean", "sum")
DTYPES = (np.float32, np.float64)


def generic(loss: str, reduction: str, kw: dict[str, Any]) -> np.ndarray:
    with kernels.generic():
        return np.asarray(getattr(anyloss, loss)(**kw, reduction=reduction))


def upcast(kw: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
        for k, v in kw.items()
    }


def ulp_distance(a: np.ndarray, b: np.ndarray, dtype: Any) -> np.ndarray:
    """|a - b| in ulps of ``dtype`` at the larger of the two (0 where equal)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        big = np.maximum(np.abs(a64), np.abs(b64)).astype(dtype)
        spacing = np.spacing(big).astype(np.float64)
        d = np.abs(a64 - b64) / spacing
    return np.where(a64 == b64, 0.0, d)


def assert_agree(loss: str, reduction: str, kw: dict[str, Any], dtype: Any) -> None:
    got = kernels.run(loss, reduction, _force=True, **kw)
    assert got is not None, f"no kernel for {loss}"
    ref = generic(loss, reduction, kw)
    assert isinstance(got, np.ndarray)
    assert got.dtype == ref.dtype == np.dtype(dtype)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"NaN differ: {loss}")
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref), err_msg=f"inf differ: {loss}")
    np.testing.assert_array_equal(got[np.isinf(got)], ref[np.isinf(ref)])
    finite = np.isfinite(ref)
    if dtype == np.float32:
        true = generic(loss, reduction, upcast(kw)).astype(np.float32)
        to_true = ulp_distance(got, true, np.float32)[finite]
        to_generic = ulp_distance(got, ref, np.float32)[finite]
        assert to_true.max(initial=0) <= 4, f"{loss} {reduction}: {to_true.max()} ulp from exact"
        assert to_generic.max(initial=0) <= 6, f"{loss} {reduction}: {to_generic.max()} ulp"
    else:
        d = ulp_distance(got, ref, np.float64)[finite]
        scale = np.abs(ref[finite]).max(initial=0.0)
        close = np.abs(got[finite] - ref[finite]) <= 16 * np.finfo(np.float64).eps * scale
        ok = (d <= 4) | close
        assert ok.all(), f"{loss} {reduction}: {d[~ok].max()} ulp"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# -- cross entropy, nll, kl ---------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy(
    rng: np.random.Generator, dtype: Any, probs: bool, smoothing: float, weighted: bool
) -> None:
    rows, classes = 7, 1100  # crosses the class blocks of 512
    x = (rng.standard_normal((rows, classes)) * 3).astype(dtype)
    x[1] += 1e4  # offsets do not matter
    x[2] -= 1e4
    x[3, 5] = 40.0  # a confident row: the loss is tiny
    x[4, :] = 0.5  # all equal: log(C)
    x[5, 7] = -np.inf  # a -inf logit that is not the target
    if probs:
        t = rng.dirichlet(np.ones(classes), rows).astype(dtype)
        t[0, : classes // 2] = 0.0
        t[5, 7] = 0.0  # 0 * -inf counts 0
    else:
        t = rng.integers(0, classes, rows)
        t[3] = 5
        t[5] = 8
    kw: dict[str, Any] = {"logits": x, "targets": t, "label_smoothing": smoothing}
    if weighted:
        kw["weights"] = rng.uniform(0, 2, rows).astype(dtype)
    for reduction in REDUCTIONS:
        assert_agree("cross_entropy", reduction, kw, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_extremes(dtype: Any) -> None:
    x = np.zeros((4, 600), dtype)
    x[0, 3] = -np.inf  # the target logit is -inf: +inf
    x[1, :] = 1e20 if dtype == np.float64 else 1e30  # equal huge logits: log(C)
    x[2, 9] = 30.0  # confident and correct
    x[3, 9] = -30.0  # confident and wrong
    t = np.array([3, 4, 9, 9])
    for reduction in REDUCTIONS:
        assert_agree("cross_entropy", reduction, {"logits": x, "targets": t}, dtype)
    out = kernels.run("cross_entropy", "none", logits=x, targets=t, _force=True)
    assert out is not None
    assert out[0] == np.inf
    np.testing.assert_allclose(out[1], np.log(600), rtol=1e-6)
    assert 0 < out[2] < 1e-10


@pytest.mark.parametrize("probs", [False, True])
def test_cross_entropy_float32_rows_within_4_ulp(rng: np.random.Generator, probs: bool) -> None:
    """Many ordinary float32 rows: x - max rounds in float32, and exp would turn
    that half-ulp into several ulp of a confident row's loss; the kernel
    corrects it (measured: 4.4 ulp before, 2.7 after)."""
    x = (rng.standard_normal((20011, 7)) * 3).astype(np.float32)
    if probs:
        t: Any = rng.dirichlet(np.full(7, 0.1), 20011).astype(np.float32)
    else:
        t = rng.integers(0, 7, 20011)
    got = kernels.run("cross_entropy", "none", logits=x, targets=t, _force=True)
    assert got is not None
    with kernels.generic():
        true = anyloss.cross_entropy(x.astype(np.float64), t.astype(np.float64) if probs else t)
    ulps = ulp_distance(got, true, np.float32)
    assert ulps.max() <= 4


@pytest.mark.parametrize("classes", [600, 1000, 32000])
def test_cross_entropy_float32_equal_tiny_terms(classes: int) -> None:
    """A confident row whose other logits are equal: the same tiny exp summed
    hundreds of times, where float32 block sums round the same way each time
    (an AVX2 build was 5 ulp off with blocks of 256; see test_kernels_avx2)."""
    mpmath = pytest.importorskip("mpmath")
    x = np.zeros((64, classes), np.float32)
    x[:, 9] = 30.0
    t = np.full(64, 9)
    got = kernels.run("cross_entropy", "none", logits=x, targets=t, _force=True)
    assert got is not None
    with mpmath.workdps(40):
        true = float(mpmath.log1p((classes - 1) * mpmath.exp(-30)))
    assert ulp_distance(got, np.full(64, true), np.float32).max() <= 2


@pytest.mark.parametrize("gap", [30.0, 300.0])
def test_cross_entropy_float64_confident_rows(gap: float) -> None:
    """float64 rows whose target leads by ``gap``: x - max rounds by half an
    ulp of |x - max|, which exp turns into |x - max|/2 ulp of each term (208
    ulp in a fuzzing run); the kernel corrects it by the rounding error
    (TwoSum) and sums the blocks with their errors."""
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 600)) * 3
    t = rng.integers(0, 600, 40)
    x[np.arange(40), t] += gap
    x[0] = 0.0
    x[0, t[0]] = gap
    got = kernels.run("cross_entropy", "none", logits=x, targets=t, _force=True)
    assert got is not None
    with mpmath.workdps(60):
        true = []
        for row, target in zip(x, t, strict=True):
            values = [mpmath.mpf(float(v)) for v in row]
            top = int(np.argmax(row))  # the target here; log1p keeps the tiny rest
            rest = mpmath.fsum(
                mpmath.exp(v - values[top]) for v in values[:top] + values[top + 1 :]
            )
            true.append(float(values[top] - values[target] + mpmath.log1p(rest)))
    assert ulp_distance(got, np.array(true), np.float64).max() <= 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("probs", [False, True])
def test_cross_entropy_smoothing_near_the_largest_float(dtype: Any, probs: bool) -> None:
    """Logits of both signs near the largest float: x - max overflows, and so
    does a row's sum of them, although the smoothed loss is finite."""
    mpmath = pytest.importorskip("mpmath")
    big = float(np.finfo(dtype).max)
    x = np.array([[0.9, -0.9, 0.5], [-0.8, 0.7, -0.95]], dtype) * dtype(big)
    t = np.array([0, 1])
    target: Any = np.eye(3, dtype=dtype)[t] * dtype(0.75) + dtype(0.25 / 3) if probs else t
    got = kernels.run(
        "cross_entropy", "none", logits=x, targets=target, label_smoothing=0.2, _force=True
    )
    assert got is not None
    with mpmath.workdps(50):
        true = []
        for r in range(2):
            v = [mpmath.mpf(float(a)) for a in x[r]]
            top = max(v)
            lse = top + mpmath.log(mpmath.fsum(mpmath.exp(a - top) for a in v))
            q = [mpmath.mpf(float(b)) for b in target[r]] if probs else [0] * 3
            if not probs:
                q[t[r]] = 1
            q = [0.8 * qc + mpmath.mpf(0.2) / 3 for qc in q]
            true.append(float(mpmath.fsum(qc * (lse - a) for qc, a in zip(q, v, strict=True))))
    assert np.all(np.isfinite(true))
    assert ulp_distance(got, np.array(true), dtype).max() <= 4
    with kernels.generic():
        generic_loss = anyloss.cross_entropy(x, target, label_smoothing=0.2)
    assert ulp_distance(got, generic_loss, dtype).max() <= 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_batched_and_1d(rng: np.random.Generator, dtype: Any) -> None:
    x = rng.standard_normal((2, 3, 50)).astype(dtype)
    t = rng.integers(0, 50, (2, 3))
    for reduction in REDUCTIONS:
        assert_agree("cross_entropy", reduction, {"logits": x, "targets": t, "axis": 2}, dtype)
    assert_agree("cross_entropy", "none", {"logits": x[0, 0], "targets": np.array(4)}, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_and_kl(rng: np.random.Generator, dtype: Any) -> None:
    z = rng.standard_normal((9, 700))
    logp = (z - np.log(np.exp(z).sum(-1, keepdims=True))).astype(dtype)
    q = rng.standard_normal((9, 700))
    logq = (q - np.log(np.exp(q).sum(-1, keepdims=True))).astype(dtype)
    logq[0, :10] = -np.inf  # target probability 0: contributes 0
    near = (logp + 1e-4 * rng.standard_normal((9, 700))).astype(dtype)  # near-equal: cancels
    idx = rng.integers(0, 700, 9)
    for reduction in REDUCTIONS:
        assert_agree("nll_loss", reduction, {"inputs": logp, "targets": idx}, dtype)
        assert_agree("kl_div_loss", reduction, {"inputs": logp, "targets": logq}, dtype)
        assert_agree("kl_div_loss", reduction, {"inputs": logp, "targets": near}, dtype)


# -- binary cross entropy -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_logits", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy(
    rng: np.random.Generator, dtype: Any, with_logits: bool, weighted: bool
) -> None:
    n = 9000  # crosses the element blocks of 4096
    if with_logits:
        x = (rng.standard_normal(n) * 5).astype(dtype)
        x[:8] = [30.0, -30.0, 100.0, -100.0, 0.0, 1e-8, 88.0, -1e4]
    else:
        x = rng.uniform(0, 1, n).astype(dtype)
        x[:6] = [0.0, 1.0, 1e-30, 1 - 1e-7, 0.5, 1e-45 if dtype == np.float32 else 1e-300]
    t = (rng.uniform(size=n) < 0.5).astype(dtype)
    t[:8] = [1, 1, 1, 0, 1, 0, 0, 1]
    t[100:200] = rng.uniform(size=100).astype(dtype)  # soft targets
    kw: dict[str, Any] = {"inputs": x, "targets": t, "with_logits": with_logits}
    if weighted:
        kw["weights"] = rng.uniform(0, 3, n).astype(dtype)
    for reduction in REDUCTIONS:
        assert_agree("binary_cross_entropy", reduction, kw, dtype)


def test_binary_cross_entropy_confident() -> None:
    x = np.full(5, 30.0, np.float32)
    out = kernels.run(
        "binary_cross_entropy", "none", inputs=x, targets=np.ones(5, np.float32), _force=True
    )
    assert out is not None
    np.testing.assert_allclose(out, 9.357623e-14, rtol=1e-6)


# -- regression and ranking -----------------------------------------------------------


def _errors(rng: np.random.Generator, n: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    p = (rng.standard_normal(n) * 2).astype(dtype)
    t = (rng.standard_normal(n) * 2).astype(dtype)
    p[:6] = [1e4, -1e4, 1e-4, 0.0, 1e30, 20.0]
    t[:6] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    p[6:9] = t[6:9] + np.array([1e-30, -0.999, 1.001], dtype)
    return p, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("loss", "params"),
    [
        ("l1_loss", {}),
        ("mse_loss", {}),
        ("smooth_l1_loss", {"beta": 1.0}),
        ("smooth_l1_loss", {"beta": 0.5}),
        ("smooth_l1_loss", {"beta": 0.0}),
        ("huber_loss", {"delta": 1.0}),
        ("huber_loss", {"delta": 2.5}),
        ("huber_loss", {"delta": 0.0}),
        ("log_cosh_loss", {}),
        ("hinge_loss", {}),
    ],
)
def test_pairwise(rng: np.random.Generator, dtype: Any, loss: str, params: dict[str, Any]) -> None:
    p, t = _errors(rng, 9000, dtype)
    first = "predictions" if loss in ("l1_loss", "mse_loss", "smooth_l1_loss") else "inputs"
    if loss == "mse_loss":
        p[4] = 1e15  # keep the square finite in float32
    for reduction in REDUCTIONS:
        assert_agree(loss, reduction, {first: p, "targets": t, **params}, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_cosh_tiny_and_huge(dtype: Any) -> None:
    e = np.array([1e-4, 1e-20, 0.5, 0.999, 1.0, 1.001, 19.9, 20.1, 1e4, -1e4, 80.0], dtype)
    for reduction in REDUCTIONS:
        assert_agree("log_cosh_loss", reduction, {"inputs": e, "targets": np.zeros_like(e)}, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_margin_ranking(rng: np.random.Generator, dtype: Any, margin: float) -> None:
    a, b = _errors(rng, 5000, dtype)
    y = np.where(rng.uniform(size=5000) < 0.5, -1, 1).astype(dtype)
    kw = {"inputs1": a, "inputs2": b, "targets": y, "margin": margin}
    for reduction in REDUCTIONS:
        assert_agree("margin_ranking_loss", reduction, kw, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("eps", [1e-6, 0.5])
def test_gaussian_nll(rng: np.random.Generator, dtype: Any, full: bool, eps: float) -> None:
    mu, y = _errors(rng, 5000, dtype)
    mu[4] = 1e10
    v = rng.uniform(0, 3, 5000).astype(dtype)
    v[:4] = [0.0, 1e-8, 1e8, 1.0]
    kw = {"inputs": mu, "targets": y, "vars": v, "full": full, "eps": eps}
    for reduction in REDUCTIONS:
        assert_agree("gaussian_nll_loss", reduction, kw, dtype)


# -- embeddings -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [1e-8, 1e3])
def test_cosine_similarity(rng: np.random.Generator, dtype: Any, eps: float) -> None:
    a = rng.standard_normal((40, 33)).astype(dtype)
    b = rng.standard_normal((40, 33)).astype(dtype)
    a[0] = b[0] = 1e20 if dtype == np.float32 else 1e200  # no overflow of the norms
    a[1] *= 1e-20
    b[2] = 0.0
    for reduction in REDUCTIONS:
        assert_agree("cosine_similarity_loss", reduction, {"x1": a, "x2": b, "eps": eps}, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("p", "margin", "eps"), [(2, 1.0, 1e-6), (1, 0.0, 1e-6), (2, 0.5, 0.0)])
def test_triplet(rng: np.random.Generator, dtype: Any, p: int, margin: float, eps: float) -> None:
    a, pos, neg = (rng.standard_normal((40, 33)).astype(dtype) for _ in range(3))
    big = 1e20 if dtype == np.float32 else 1e200
    a[0], pos[0], neg[0] = big, -big, 0.5 * big  # no overflow of the p-th powers
    pos[1] = a[1]  # distance 0
    kw = {"anchors": a, "positives": pos, "negatives": neg, "p": p, "margin": margin, "eps": eps}
    for reduction in REDUCTIONS:
        assert_agree("triplet_loss", reduction, kw, dtype)


_INF, _NAN = np.inf, np.nan
_MAX32, _MAX64 = float(np.finfo(np.float32).max), float(np.finfo(np.float64).max)
# (anchor, positive, negative) entries put into rows of equal random values,
# at columns 29 (past a vector body) and 3, and the loss by hand (p = 1 and
# 2, margin 1, eps 1e-6): d = inf where a difference is inf, inf - inf = NaN
# and a NaN entry give NaN, inf - finite inf, finite - inf a loss of 0.
_TRIPLET_SPECIAL = [
    ({29: (_INF, 0, 0)}, _NAN),
    ({29: (0, _INF, 0)}, _INF),
    ({29: (0, 0, _INF)}, 0.0),
    ({29: (0, 0, -_INF), 3: (0, 0, _INF)}, 0.0),
    ({29: (-_INF, 0, 0), 3: (1, 1, 1)}, _NAN),
    ({29: (_NAN, 0, 0)}, _NAN),
    ({29: (0, _INF, 0), 3: (0, _NAN, 0)}, _NAN),
    ({29: (0, _INF, 0), 3: (0, 0, _NAN)}, _NAN),
    ({29: (0, -_INF, 0), 3: (0, 0, -_INF)}, _NAN),
    ({29: (0, 0, _NAN)}, _NAN),
    ({29: (_MAX32, -_MAX32, _MAX32)}, 2.0 * _MAX32),  # finite: 2 FLT_MAX + 1 - 1e-3
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2])
def test_triplet_infinite_rows_match_generic(rng: np.random.Generator, dtype: Any, p: int) -> None:
    """Rows with an infinite or NaN entry: the kernels formed inf - inf or
    inf / inf (NaN where the generic path and MLX give inf or 0; float64 p = 2
    gave the margin, 1, for a NaN row). Now kernel == generic == by hand."""
    cases = list(_TRIPLET_SPECIAL)
    if dtype == np.float64:  # MAX - (-MAX) overflows to inf, as the plain formula has it
        cases.append(({29: (_MAX64, -_MAX64, _INF)}, _NAN))
        cases.append(({29: (_MAX64, -_MAX64, 0), 3: (0, 0, _INF)}, _NAN))
    base = rng.standard_normal((len(cases), 37))
    a, pos, neg = base.copy(), base.copy(), base.copy()
    for r, (entries, _) in enumerate(cases):
        for col, (x, y, z) in entries.items():
            a[r, col], pos[r, col], neg[r, col] = x, y, z
    want = np.array([w for _, w in cases])
    kw = {
        "anchors": a.astype(dtype),
        "positives": pos.astype(dtype),
        "negatives": neg.astype(dtype),
        "p": p,
    }
    with np.errstate(over="ignore"):  # 2 FLT_MAX: inf (the losses' own errstate)
        got = kernels.run("triplet_loss", "none", _force=True, **kw)
    ref = generic("triplet_loss", "none", kw)
    assert got is not None and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, ref)
    with np.errstate(over="ignore"):
        exact = want.astype(dtype)  # 2 FLT_MAX: inf in float32
    np.testing.assert_allclose(got, exact, rtol=1e-15)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    rows = [r for r, (_, w) in enumerate(cases) if not np.isnan(w)]
    sub = {k: v[rows].copy() if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    for reduction in ("mean", "sum"):
        with np.errstate(over="ignore"):
            got = kernels.run("triplet_loss", reduction, _force=True, **sub)
        assert got is not None
        np.testing.assert_array_equal(got, generic("triplet_loss", reduction, sub))
        assert got == np.inf
    if dtype == np.float32:  # MLX, where it is installed, says the same
        try:
            import mlx.core as mx
            import mlx.nn.losses as mlx_losses
        except ImportError:
            return
        args = [mx.array(kw[k]) for k in ("anchors", "positives", "negatives")]
        np.testing.assert_array_equal(np.array(mlx_losses.triplet_loss(*args, p=p)), exact)


@pytest.mark.parametrize("eps", [1e300, np.inf])
@pytest.mark.parametrize("p", [1, 2])
def test_triplet_float32_huge_eps_matches_generic(
    rng: np.random.Generator, p: int, eps: float
) -> None:
    """The float32 kernel added eps to both p = 1 sums, (S_p + eps) - (S_n +
    eps): 0 for eps = 1e300 and NaN for eps = inf, where eps cancels (the
    generic path gives the gap); for p = 2 and eps = inf it gave the margin
    where d_p - d_n is inf - inf, NaN as in the generic path."""
    a, pos, neg = (rng.standard_normal((6, 37)).astype(np.float32) for _ in range(3))
    kw = {"anchors": a, "positives": pos, "negatives": neg, "p": p, "eps": eps}
    got = kernels.run("triplet_loss", "none", _force=True, **kw)
    assert got is not None
    a64, p64, n64 = (v.astype(np.float64) for v in (a, pos, neg))
    if p == 1:  # by hand: the exact gap (fsum), + margin 1, rounded once
        want = np.array(
            [
                max(math.fsum(abs(a64[r] - p64[r])) - math.fsum(abs(a64[r] - n64[r])) + 1.0, 0.0)
                for r in range(6)
            ]
        ).astype(np.float32)
        assert np.max(ulp_distance(got, want, np.float32)) <= 2
    else:  # gap below 1e-140 next to the margin; inf - inf
        want = np.full(6, 1.0 if eps < np.inf else np.nan, np.float32)
        np.testing.assert_array_equal(got, want)
    ref = generic("triplet_loss", "none", kw)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(ulp_distance(got, ref, np.float32), initial=0.0) <= 2


# -- dispatch ---------------------------------------------------------------------------


def test_threads_do_not_change_results(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = rng.standard_normal((64, 900)).astype(np.float32)
    t = rng.integers(0, 900, 64)
    y = rng.standard_normal(64 * 900).astype(np.float32)
    monkeypatch.setattr(kernels, "MIN_NS_PER_THREAD", 1)
    results = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("ANYLOSS_NUM_THREADS", threads)
        ce = kernels.run("cross_entropy", "mean", logits=x, targets=t, _force=True)
        bce = kernels.run("binary_cross_entropy", "sum", inputs=y, targets=y, _force=True)
        results.append((ce, bce))
    for ce, bce in results[1:]:
        assert ce == results[0][0]
        assert bce == results[0][1]


@pytest.mark.parametrize("value", ["abc", "2.5"])
def test_bad_thread_count_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ANYLOSS_NUM_THREADS", value)
    x = np.zeros((2, 1 << 15), np.float32)
    with pytest.raises(ValueError, match=rf"ANYLOSS_NUM_THREADS='{value}' is not an integer"):
        anyloss.cross_entropy(x, np.zeros(2, np.int64))


def test_size_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    small = np.ones(10, np.float32)
    assert kernels.run("mse_loss", "mean", predictions=small, targets=small) is None
    monkeypatch.setattr(_cpu, "MIN_SIZE", 5)
    assert kernels.run("mse_loss", "mean", predictions=small, targets=small) == 0.0


def _x(shape: tuple[int, ...] = (8, 16), dtype: Any = np.float32) -> np.ndarray:
    return np.ones(shape, dtype)


@pytest.mark.parametrize(
    ("loss", "kw"),
    [
        ("mse_loss", {"predictions": _x()[:, ::2], "targets": _x()[:, ::2]}),  # strided
        ("mse_loss", {"predictions": _x(dtype=np.float16), "targets": _x(dtype=np.float16)}),
        ("mse_loss", {"predictions": _x(), "targets": _x(dtype=np.float64)}),  # mixed
        ("huber_loss", {"inputs": _x(), "targets": _x((16,))}),  # broadcasting
        ("mse_loss", {"predictions": [1.0, 2.0], "targets": [1.0, 2.0]}),
        ("cross_entropy", {"logits": _x(), "targets": np.zeros(16, np.int64), "axis": 0}),
        ("cross_entropy", {"logits": _x(), "targets": np.zeros(8, np.float32)}),
        ("nll_loss", {"inputs": _x(), "targets": np.zeros((1,), np.int64)}),  # broadcast
        ("triplet_loss", {"anchors": _x(), "positives": _x(), "negatives": _x(), "p": 3}),
        ("cosine_similarity_loss", {"x1": _x((4, 4, 4)), "x2": _x((4, 4, 4)), "axis": 1}),
        ("not_a_loss", {"x": _x()}),
    ],
)
def test_no_kernel(loss: str, kw: dict[str, Any]) -> None:
    assert kernels.run(loss, "mean", _force=True, **kw) is None


def test_other_libraries_fall_back() -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(8, 16)
    assert kernels.run("mse_loss", "mean", predictions=x, targets=x, _force=True) is None


def test_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "_MODE", "off")
    x = _x()
    assert kernels.run("mse_loss", "mean", predictions=x, targets=x, _force=True) is None
    assert not kernels.available()


def test_every_loss_has_a_kernel() -> None:
    names = {n for n in anyloss.losses.__all__ if n.endswith("_loss") or n.endswith("entropy")}
    assert names == set(_cpu.PLANNERS)


def _public_calls(rng: np.random.Generator) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """One large call of every MLX loss, by position as users write them."""
    n, rows, classes = 1 << 16, 64, 1024
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0).astype(np.float32)
    logits = rng.standard_normal((rows, classes)).astype(np.float32)
    idx = rng.integers(0, classes, rows)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    emb = rng.standard_normal((rows, classes)).astype(np.float32)
    return [
        ("cross_entropy", (logits, idx), {"label_smoothing": 0.1}),
        ("cross_entropy", (logits, np.exp(logp)), {"weights": np.ones(rows, np.float32)}),
        ("nll_loss", (logp, idx), {}),
        ("kl_div_loss", (logp, logp[::-1].copy()), {}),
        ("binary_cross_entropy", (x, (y > 0).astype(np.float32)), {}),
        (
            "binary_cross_entropy",
            (1 / (1 + np.exp(-x)), (y > 0).astype(np.float32)),
            {"with_logits": False},
        ),
        ("l1_loss", (x, y), {}),
        ("mse_loss", (x, y), {}),
        ("smooth_l1_loss", (x, y), {"beta": 0.5}),
        ("huber_loss", (x, y), {"delta": 0.5}),
        ("log_cosh_loss", (x, y), {}),
        ("hinge_loss", (x, sign), {}),
        ("margin_ranking_loss", (x, y, sign), {"margin": 0.1}),
        ("gaussian_nll_loss", (x, y, np.abs(x) + 0.1), {"full": True}),
        ("cosine_similarity_loss", (emb, emb[::-1].copy()), {}),
        ("triplet_loss", (emb, emb[::-1].copy(), emb[:, ::-1].copy()), {}),
    ]


def _spy_numba(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The losses for which the registry chooses a numba entry, in order."""
    used: list[str] = []
    original = _registry.lookup

    def spy(be: Any, loss: str, reduction: str, args: Any) -> Any:
        entry = original(be, loss, reduction, args)
        if entry is not None and entry.name == "numba":
            used.append(loss)
        return entry

    monkeypatch.setattr(_registry, "lookup", spy)
    return used


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_public_losses_use_the_kernels(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, reduction: str
) -> None:
    """Above MIN_SIZE the public functions return the kernel's result (so the
    agreement tests above cover what users get), in the caller's dtype."""
    used = _spy_numba(monkeypatch)
    calls = _public_calls(rng)
    for loss, args, kw in calls:
        got = getattr(anyloss, loss)(*args, **kw, reduction=reduction)
        with kernels.generic():
            ref = getattr(anyloss, loss)(*args, **kw, reduction=reduction)
        assert got.dtype == ref.dtype == np.float32, loss
        assert got.shape == ref.shape, loss
        np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-7, err_msg=loss)
    assert used == [loss for loss, _, _ in calls]


def test_float16_inputs_get_the_kernel_and_their_dtype(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = rng.standard_normal(1 << 16).astype(np.float16)
    used = _spy_numba(monkeypatch)
    out = anyloss.mse_loss(x, np.zeros_like(x))
    assert out.dtype == np.float16
    assert used == ["mse_loss"]
    np.testing.assert_allclose(out, np.mean(x.astype(np.float64) ** 2), rtol=1e-3)


@pytest.mark.parametrize(
    "reduction_values", list(itertools.product(["mean", "sum"], [np.float32, np.float64]))
)
def test_scalar_results_are_0d(reduction_values: tuple[str, Any]) -> None:
    reduction, dtype = reduction_values
    x = _x(dtype=dtype)
    out = kernels.run("l1_loss", reduction, predictions=x, targets=x * 2, _force=True)
    assert isinstance(out, np.ndarray)
    assert out.shape == ()
    assert out.dtype == dtype


def test_import_does_not_import_numba() -> None:
    code = (
        "import sys, numpy as np, anyloss; from anyloss import kernels; "
        "x = np.ones(10, np.float32); "
        "assert kernels.run('mse_loss', 'mean', predictions=x, targets=x) is None; "
        "anyloss.mse_loss(x, x); "
        "print('numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_numba_falls_back_silently() -> None:
    code = (
        "import sys; sys.modules['numba'] = None; "
        "import numpy as np, anyloss; from anyloss import kernels; "
        "x = np.ones(1 << 16, np.float32); "
        "assert kernels.run('mse_loss', 'mean', predictions=x, targets=x) is None; "
        "assert kernels.run('mse_loss', 'mean', predictions=x, targets=x, _force=True) is None; "
        "assert not kernels.available(); "
        "print(anyloss.mse_loss(x, x))"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0.0"

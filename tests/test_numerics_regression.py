"""Numerics of the regression, embedding and distribution losses at the edges.

- Finite true values stay finite: subnormal variances, ``d^2`` beyond the
  largest float, differences of ``1e-200`` or ``+-1e308``, ``beta = 1e308``,
  ``delta = inf``, float32 inputs near ``FLT_MAX`` on every backend.
- float64 inputs meet the few-ulp promise of float32 (against mpmath at 50+
  digits): cosine similarity, triplet (double-double sums), and the same
  answer on the kernel path, the generic path and Fortran-ordered inputs.
- float32 ``log_cosh_loss`` on the generic path is rounded once.

Expected values come from mpmath (``tests/accuracy_cases.py``'s references)
or hand arithmetic, never from the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mpmath
import numpy as np
import pytest
from accuracy_cases import (
    ref_cosine_similarity_loss,
    ref_gaussian_nll_loss,
    ref_log_cosh_loss,
    ref_triplet_loss,
)
from backends import Backend

import anyloss
from anyloss import kernels

F32MAX = float(np.finfo(np.float32).max)


def _has_numba() -> bool:
    return kernels.available()


def paths(loss: str, kw: dict[str, Any], reduction: str = "none") -> dict[str, np.ndarray]:
    """The loss by the kernel (forced, where numba is installed), by the
    generic code on C-ordered and on Fortran-ordered copies of the inputs."""
    out = {}
    if _has_numba():
        got = kernels.run(loss, reduction, _force=True, **kw)
        assert got is not None, f"no kernel for {loss}"
        out["kernel"] = np.asarray(got)
    with kernels.generic():
        out["generic"] = np.asarray(getattr(anyloss, loss)(**kw, reduction=reduction))
        fortran = {
            k: np.asfortranarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()
        }
        out["fortran"] = np.asarray(getattr(anyloss, loss)(**fortran, reduction=reduction))
    return out


def ulps(got: np.ndarray, true: list, dtype: Any = np.float64) -> np.ndarray:
    """|got - true| in ulp of ``dtype`` at the true value (mpmath)."""
    errs = []
    for g, t in zip(np.ravel(got), true, strict=True):
        spacing = float(np.spacing(np.abs(dtype(float(t)))))
        if not np.isfinite(g):
            errs.append(np.inf)
            continue
        errs.append(float(abs(mpmath.mpf(float(g)) - t) / spacing))
    return np.array(errs)


def mp_rows(*arrays: np.ndarray) -> Iterator[tuple[list, ...]]:
    for i in range(arrays[0].shape[0]):
        yield tuple([mpmath.mpf(float(v)) for v in a[i]] for a in arrays)


@pytest.fixture(autouse=True)
def _precision() -> Iterator[None]:
    with mpmath.workdps(60):
        yield


# -- 1. gaussian_nll: subnormal variances, d^2 beyond the largest float ----------


def test_gaussian_nll_float64_subnormal_variance_and_huge_square() -> None:
    # var = 5e-324: log(v) of a subnormal (the kernel's log read its exponent
    # as that of a normal number: -354.54 against -372.22); d = 1e150 over
    # v = 1e200: d * d = 1e300 ... and d = 1e200 over v = 1e300: d * d is
    # inf where d^2 / v = 1e100
    mu = np.zeros(6)
    y = np.array([0.0, 1e-170, 1e150, 1e200, 1e-160, 3.0])
    v = np.array([5e-324, 1e-320, 1e200, 1e300, 1e-310, 2.5e-307])
    true = [
        ref_gaussian_nll_loss(mpmath.mpf(0), mpmath.mpf(b), mpmath.mpf(c), eps=0.0)
        for b, c in zip(y, v, strict=True)
    ]
    assert float(true[0]) == pytest.approx(-372.22003596069063, rel=1e-15)
    assert float(true[3]) == pytest.approx(5e99, rel=1e-15)
    kw = {"inputs": mu, "targets": y, "vars": v, "eps": 0.0}
    for name, got in paths("gaussian_nll_loss", kw).items():
        err = ulps(got, true)
        assert err.max() <= 4, f"{name}: {got} ({err} ulp)"


def test_gaussian_nll_float32_huge_square_on_every_backend(xp: Backend) -> None:
    # float32-only backends square in float32: 1e20^2 overflows where
    # d^2 / v = 1e40 / 1e30 = 1e10 does not
    mu = np.zeros(3, np.float32)
    y = np.array([1e20, -3e19, 2.0], np.float32)
    v = np.array([1e30, 1e25, 1e-30], np.float32)
    got = xp.to_numpy(
        anyloss.gaussian_nll_loss(xp.asarray(mu), xp.asarray(y), xp.asarray(v), reduction="none")
    )
    true = [
        ref_gaussian_nll_loss(mpmath.mpf(0), mpmath.mpf(float(b)), mpmath.mpf(float(c)))
        for b, c in zip(y, v, strict=True)
    ]
    err = ulps(got, true, np.float32)
    assert err.max() <= 4, f"{got} ({err} ulp)"


@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_float64_within_4_ulp(full: bool) -> None:
    # log v and d^2 / v cancel where the loss is near 0 (about 1,200 ulp
    # before, ordinary inputs up to 8): double-double on both paths
    rng = np.random.default_rng(5)
    n = 300
    v = np.concatenate([rng.uniform(0.05, 0.95, n), rng.uniform(0.05, 9.0, n)])
    y = np.concatenate(
        [np.sqrt(-v[:n] * np.log(v[:n])) * (1 + rng.standard_normal(n) * 1e-3), rng.normal(size=n)]
    )
    if full:  # near 0 with the constant: log v + d^2 / v near -log(2 pi)
        y[:n] = np.sqrt(v[:n] * (-np.log(2 * np.pi) - np.log(v[:n])).clip(0)) * (
            1 + rng.standard_normal(n) * 1e-3
        )
    mu = rng.normal(size=2 * n) * 1e-3
    y = y + mu
    true = [
        ref_gaussian_nll_loss(mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(c), full=full)
        for a, b, c in zip(mu, y, v, strict=True)
    ]
    kw = {"inputs": mu, "targets": y, "vars": v, "full": full}
    results = paths("gaussian_nll_loss", kw)
    for name, got in results.items():
        err = ulps(got, true)
        assert err.max() <= 4, f"{name}: {err.max()} ulp"
    if "kernel" in results:
        np.testing.assert_array_max_ulp(results["kernel"], results["generic"], maxulp=1)


# -- 2. triplet: eps = 0 with differences of 1e-200, and +-1e308 ------------------


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("s", [1e-200, 1e308, 5e-324])
def test_triplet_float64_extreme_differences(p: int, s: float) -> None:
    # pos = neg: the two distances are equal, the loss is the margin, 1.0
    # (it was NaN: eps / c^2 = 0 / 0 where c^2 underflows; inf - inf where
    # the differences overflow)
    a = np.array([[s, -s, 0.0], [s, s, s]])
    pos = np.array([[-s, s, s], [0.0, 0.0, 0.0]])
    kw = {"anchors": a, "positives": pos, "negatives": pos.copy(), "p": p, "eps": 0.0}
    for name, got in paths("triplet_loss", kw).items():
        np.testing.assert_array_equal(got, [1.0, 1.0], err_msg=name)


def test_triplet_all_equal_with_eps_zero() -> None:
    a = np.zeros((2, 3))
    kw = {"anchors": a, "positives": a, "negatives": a, "eps": 0.0}
    for name, got in paths("triplet_loss", kw).items():
        np.testing.assert_array_equal(got, [1.0, 1.0], err_msg=name)


# -- 3. float64 accuracy: cosine, triplet ------------------------------------------


def _near_orthogonal(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose dot product cancels to about 1e-6 of its terms."""
    a = rng.standard_normal((n, d))
    b = rng.standard_normal((n, d))
    proj = np.sum(a * b, axis=1) / np.sum(a * a, axis=1)
    b = b - (proj * (1 - rng.uniform(-1e-6, 1e-6, n)))[:, None] * a
    return a, b


def test_cosine_similarity_float64_within_4_ulp() -> None:
    rng = np.random.default_rng(7)
    a1, b1 = rng.standard_normal((40, 33)), rng.standard_normal((40, 33))
    a2, b2 = _near_orthogonal(rng, 40, 33)
    a3 = rng.standard_normal((20, 33)) * 1e-150  # scaled: no underflow of squares
    b3 = a3 + rng.standard_normal((20, 33)) * 1e-160  # nearly parallel
    a, b = np.concatenate([a1, a2, a3]), np.concatenate([b1, b2, b3])
    true = [ref_cosine_similarity_loss(u, v) for u, v in mp_rows(a, b)]
    results = paths("cosine_similarity_loss", {"x1": a, "x2": b, "axis": 1})
    for name, got in results.items():
        err = ulps(got, true)
        assert err.max() <= 4, f"{name}: {err.max()} ulp"
    if "kernel" in results:  # the same answer on both paths, to the ulp
        np.testing.assert_array_max_ulp(results["kernel"], results["generic"], maxulp=1)
    np.testing.assert_array_max_ulp(results["fortran"], results["generic"], maxulp=1)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_triplet_float64_within_4_ulp(p: int, margin: float) -> None:
    rng = np.random.default_rng(11)
    n, d = 60, 40
    a = rng.standard_normal((n, d))
    pos = a + rng.standard_normal((n, d))
    neg = a + rng.standard_normal((n, d))
    # near-equal distances: neg mirrors pos through a on half the axis (the
    # gap cancels to about 1e-9 of the distances)
    half = d // 2
    neg[: n // 2, :half] = 2 * a[: n // 2, :half] - pos[: n // 2, :half]
    neg[: n // 2, half:] = pos[: n // 2, half:]
    neg[: n // 2] += rng.standard_normal((n // 2, d)) * 1e-9
    true = [ref_triplet_loss(u, v, w, p=p, margin=margin) for u, v, w in mp_rows(a, pos, neg)]
    kw = {"anchors": a, "positives": pos, "negatives": neg, "p": p, "margin": margin}
    results = paths("triplet_loss", kw)
    for name, got in results.items():
        err = ulps(got, true)
        bad = err > 4
        # a true loss that is not a normal float64 only needs to be small
        small = np.array([abs(float(t)) < 2.0**-1000 for t in true]) & (np.abs(got) < 1e-290)
        assert not (bad & ~small).any(), f"{name}: {err[bad & ~small].max()} ulp"
    if "kernel" in results:
        np.testing.assert_array_max_ulp(results["kernel"], results["generic"], maxulp=1)
    np.testing.assert_array_max_ulp(results["fortran"], results["generic"], maxulp=1)


# -- 4. intermediate overflow --------------------------------------------------------


def test_smooth_l1_huge_beta_float64() -> None:
    # d < beta = 1e308: 0.5 d^2 / beta; d * d overflows for d = 2e300
    p = np.array([1e300, 1.0, -3e150])
    t = np.array([-1e300, 0.0, 0.0])
    true = [
        mpmath.mpf("0.5") * (mpmath.mpf(float(x)) - mpmath.mpf(float(y))) ** 2 / mpmath.mpf(1e308)
        for x, y in zip(p, t, strict=True)
    ]
    kw = {"predictions": p, "targets": t, "beta": 1e308}
    for name, got in paths("smooth_l1_loss", kw).items():
        err = ulps(got, true)
        assert err.max() <= 2, f"{name}: {got}"


def test_smooth_l1_huge_beta_every_backend(xp: Backend) -> None:
    dtype = "float64" if xp.has_float64 else "float32"
    big = 1e300 if xp.has_float64 else 1e30
    beta = 1e308 if xp.has_float64 else 1e38
    p = xp.asarray(np.array([big, 1e10]), dtype)
    t = xp.asarray(np.array([-big, 0.0]), dtype)
    got = xp.to_numpy(anyloss.smooth_l1_loss(p, t, beta=beta, reduction="none"))
    expected = [0.5 * (2 * big) * (2 * big / beta), 0.5 * 1e10 * (1e10 / beta)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_mse_float32_mean_of_one_huge_error(xp: Backend) -> None:
    # (1e20)^2 = 1e40 overflows float32 before the mean of 1000 (1e37) does not
    p = np.zeros(1000, np.float32)
    p[3] = 1e20
    t = np.zeros(1000, np.float32)
    t[7] = -2.0
    for reduction, exact in (("mean", (1e40 + 4.0) / 1000), ("sum", None)):
        got = xp.to_numpy(anyloss.mse_loss(xp.asarray(p), xp.asarray(t), reduction=reduction))
        assert got.dtype == np.float32
        if exact is None:
            assert np.isinf(got)  # 1e40 is beyond float32: a true overflow
        else:
            np.testing.assert_allclose(got, exact, rtol=4 * 2.0**-23)


def test_mse_float32_mean_kernel_agrees_across_the_threshold() -> None:
    n = kernels.MIN_SIZE
    for size in (n - 1, n):
        p = np.zeros(size, np.float32)
        p[0] = 1e20
        t = np.zeros(size, np.float32)
        got = anyloss.mse_loss(p, t)
        np.testing.assert_allclose(got, 1e40 / size, rtol=4 * 2.0**-23)


def test_huber_infinite_delta(xp: Backend) -> None:
    # delta = inf: 0.5 a^2 everywhere (inf * 0 gave NaN)
    x = xp.asarray(np.array([0.5, 3.0, -7.0, 0.0], np.float32))
    t = xp.asarray(np.zeros(4, np.float32))
    got = xp.to_numpy(anyloss.huber_loss(x, t, delta=float("inf")))
    np.testing.assert_array_equal(got, [0.125, 4.5, 24.5, 0.0])
    total = xp.to_numpy(anyloss.huber_loss(x, t, delta=float("inf"), reduction="sum"))
    np.testing.assert_array_equal(total, 29.125)


def test_huber_infinite_delta_kernel() -> None:
    x = np.array([0.5, 3.0, -7.0, 1e200])
    kw = {"inputs": x, "targets": np.zeros(4), "delta": float("inf")}
    for name, got in paths("huber_loss", kw).items():
        np.testing.assert_array_equal(got, [0.125, 4.5, 24.5, np.inf], name)


def _rows_at_fmax() -> dict[str, np.ndarray]:
    m = F32MAX
    return {
        "a": np.array([[m, m / 2, -m], [m, -m, 0.0]], np.float32),
        "b": np.array([[m, m / 2, -m], [-m, m, 0.0]], np.float32),
    }


def test_cosine_losses_near_float32_max(xp: Backend) -> None:
    r = _rows_at_fmax()
    a, b = xp.asarray(r["a"]), xp.asarray(r["b"])
    got = xp.to_numpy(anyloss.cosine_similarity_loss(a, b))
    np.testing.assert_allclose(got, [1.0, -1.0], rtol=4e-7)
    y = xp.asarray(np.array([1, -1]))
    emb = xp.to_numpy(anyloss.cosine_embedding_loss(a, b, y))
    np.testing.assert_allclose(emb, [0.0, 0.0], atol=4e-7)
    emb = xp.to_numpy(anyloss.cosine_embedding_loss(a, b, xp.asarray(np.array([-1, 1]))))
    np.testing.assert_allclose(emb, [1.0, 2.0], rtol=4e-7)


@pytest.mark.parametrize("p", [1, 2])
def test_triplet_near_float32_max(xp: Backend, p: int) -> None:
    m = F32MAX
    a = xp.asarray(np.array([[m, -m], [m / 2, 0.0]], np.float32))
    pos = xp.asarray(np.array([[-m, m], [-m, 0.0]], np.float32))
    got = xp.to_numpy(anyloss.triplet_loss(a, pos, pos, p=p, eps=0.0))
    np.testing.assert_array_equal(got, [1.0, 1.0])


def test_kl_div_near_float32_max(xp: Backend) -> None:
    m = F32MAX
    # t = -FLT_MAX: exp(t) = 0 and t - x = -2 FLT_MAX: the term is 0, not NaN
    x = xp.asarray(np.array([[m, 0.0], [-m / 2, 0.0]], np.float32))
    t = xp.asarray(np.array([[-m, 0.0], [-m, 0.0]], np.float32))
    got = xp.to_numpy(anyloss.kl_div_loss(x, t))
    np.testing.assert_array_equal(got, [0.0, 0.0])


def test_kl_div_float64_overflowing_difference() -> None:
    m = float(np.finfo(np.float64).max)
    x = np.array([[m, 0.0], [-m / 2, -1.0]])
    t = np.array([[-m, 0.0], [-m, 0.0]])
    for name, got in paths("kl_div_loss", {"inputs": x, "targets": t}).items():
        np.testing.assert_array_equal(got, [0.0, 1.0], err_msg=name)


# -- 5. float32 log_cosh on the generic path ----------------------------------------


def test_log_cosh_float32_generic_rounded_once() -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(3000) * 3).astype(np.float32)
    t = (rng.standard_normal(3000) * 3).astype(np.float32)
    with kernels.generic():
        got = anyloss.log_cosh_loss(x, t)
    true = [
        ref_log_cosh_loss(mpmath.mpf(float(u)), mpmath.mpf(float(v)))
        for u, v in zip(x, t, strict=True)
    ]
    err = ulps(got, true, np.float32)
    assert err.max() <= 1, f"{err.max()} ulp"  # float64 inside, rounded once

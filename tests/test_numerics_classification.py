"""Accuracy of cross entropy, NLL and InfoNCE on the generic path, every backend.

Expected values are mpmath evaluations of the defining formulas on the same
float inputs; errors are in ulp of the true value in the input's dtype.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import anyloss

mpf = mpmath.mpf


def _ulp(got: float, true: mpmath.mpf, dtype: type) -> float:
    """``|got - true|`` in ulp of ``true`` rounded to ``dtype`` (a normal number)."""
    if not math.isfinite(got):
        return math.inf
    spacing = float(np.spacing(dtype(abs(float(true)))))
    with mpmath.workdps(60):
        return float(abs(mpf(got) - true) / mpf(spacing))


def _ref_cross_entropy(row: np.ndarray, target: int, smoothing: float = 0.0) -> mpmath.mpf:
    """``logsumexp(x) - (1 - s) x_t - s mean(x)``, as
    ``log(sum exp(x - x_t)) + s (x_t - mean(x))`` (no cancellation)."""
    with mpmath.workdps(60):
        x = [mpf(float(v)) for v in row]
        xt = x[target]
        nll = mpmath.log1p(mpmath.fsum(mpmath.exp(v - xt) for j, v in enumerate(x) if j != target))
        return nll + mpf(smoothing) * (xt - mpmath.fsum(x) / len(x))


def _confident(rng: np.random.Generator, rows: int, lead: tuple[float, float]) -> tuple:
    x = rng.normal(0, 1, (rows, 10))
    t = rng.integers(0, 10, rows)
    x[np.arange(rows), t] = x.max(axis=1) + rng.uniform(*lead, rows)
    return x, t


def _worst(xp, out, x: np.ndarray, t: np.ndarray, dtype: type, **kw) -> float:
    got = xp.to_numpy(out).astype(np.float64)
    return max(
        _ulp(float(g), _ref_cross_entropy(x[i], int(t[i]), **kw), dtype) for i, g in enumerate(got)
    )


def test_cross_entropy_confident_rows_float32(xp, rng) -> None:
    """float32 logits whose correct class leads by 20..80 (loss 1e-35..2e-9).

    The rounding of x - max (2e-6 at 40) came back from exp as a relative
    error of the loss: 42 ulp on torch/JAX/MLX before the TwoSum correction.
    """
    x, t = _confident(rng, 64, (20.0, 80.0))
    x = x.astype(np.float32)
    out = anyloss.cross_entropy(xp.asarray(x), xp.asarray(t))
    worst = _worst(xp, out, x, t, np.float32)
    # MLX's own float32 exp is ~2e-6 relative (about 30 ulp): not ours to fix
    bound = 64.0 if xp.name == "mlx" else 4.0
    assert worst <= bound, worst


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_cross_entropy_confident_rows_float64(backend, rng) -> None:
    """float64 logits leading by 20..700: 208 ulp (generic path) before."""
    from backends import make

    xp = make(backend)
    x, t = _confident(rng, 64, (20.0, 700.0))
    out = anyloss.cross_entropy(xp.asarray(x), xp.asarray(t))
    assert xp.dtype_name(out) == "float64"
    worst = _worst(xp, out, x, t, np.float64)
    assert worst <= 4.0, worst


def test_cross_entropy_smoothing_near_float_max(xp) -> None:
    """Label smoothing with logits +-FLT_MAX: finite true values, no inf/NaN."""
    big = float(np.finfo(np.float32).max)
    x = np.array(
        [
            [big, -big, 0.0, 1.0],
            [-big, big * 0.5, big, 2.0],
            [3.0, -big, 1.0, 0.0],
            # the mean of max - x (1.2 FLT_MAX) overflows, s times it does not
            [-0.8 * big, 0.7 * big, -0.95 * big, -0.9 * big],
        ],
        dtype=np.float32,
    )
    t = np.array([0, 2, 0, 1])
    s = 0.1
    out = anyloss.cross_entropy(xp.asarray(x), xp.asarray(t), label_smoothing=s)
    got = xp.to_numpy(out).astype(np.float64)
    for i, g in enumerate(got):
        true = _ref_cross_entropy(x[i], int(t[i]), s)
        assert _ulp(float(g), true, np.float32) <= 4.0, (i, g, true)


def test_cross_entropy_smoothing_near_double_max() -> None:
    """The same in float64 near DBL_MAX, on the generic NumPy path."""
    big = float(np.finfo(np.float64).max)
    x = np.array(
        [
            [big, -big, 0.0, 1.0],
            [-big, big * 0.5, big, 2.0],
            [-0.8 * big, 0.7 * big, -0.95 * big, -0.9 * big],
        ]
    )
    t = np.array([0, 2, 1])
    got = anyloss.cross_entropy(x, t, label_smoothing=0.2)
    for i, g in enumerate(got.tolist()):
        true = _ref_cross_entropy(x[i], int(t[i]), 0.2)
        assert _ulp(g, true, np.float64) <= 4.0, (i, g, true)


def test_nll_loss_sum_of_mixed_signs(xp) -> None:
    """``reduction='sum'`` of 3e5 inputs of both signs: 18 ulp on torch before."""
    rng = np.random.default_rng(5)
    n = 300_000
    x = rng.normal(0, 3, (n, 3)).astype(np.float32)
    t = rng.integers(0, 3, n)
    out = anyloss.nll_loss(xp.asarray(x), xp.asarray(t), reduction="sum")
    true = -mpmath.fsum(mpf(float(v)) for v in x[np.arange(n), t])
    # JAX without x64 has no wider sum (measured 0.93 ulp; the order of XLA's
    # float32 sum may differ between CPUs, so some slack)
    bound = 4.0 if xp.name != "jax" or xp.has_float64 else 16.0
    assert _ulp(float(xp.to_numpy(out)), true, np.float32) <= bound


def _ref_info_nce(q: np.ndarray, k: np.ndarray, tau: float, symmetric: bool) -> list:
    with mpmath.workdps(60):

        def unit(v):
            v = [mpf(float(a)) for a in v]
            n = mpmath.sqrt(mpmath.fdot(v, v))
            return [a / n for a in v]

        qs, ks = [unit(v) for v in q], [unit(v) for v in k]
        t = mpf(tau)

        def nll(s, i):
            return mpmath.log(mpmath.fsum(mpmath.exp(v) for v in s)) - s[i]

        out = []
        for i in range(len(qs)):
            loss = nll([mpmath.fdot(qs[i], kj) / t for kj in ks], i)
            if symmetric:
                loss = (loss + nll([mpmath.fdot(qj, ks[i]) / t for qj in qs], i)) / 2
            out.append(loss)
        return out


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_confident_any_summation_order(xp, rng, symmetric) -> None:
    """Keys = queries (1 + 1e-3 noise) at temperature 0.02 (tiny losses).

    The float32 similarities were off by a few ulp of 1, times 1 / 0.02, and
    by how much depended on the matmul's summation order: 172 ulp on an AVX2
    CPU, 124 on AVX-512. Reversing the feature axis (same true values, another
    order of every sum) must change nothing beyond the bound.
    """
    q = rng.normal(0, 1, (16, 32))
    k = q * (1 + rng.normal(0, 1e-3, (16, 32)))
    q, k = q.astype(np.float32), k.astype(np.float32)
    true = _ref_info_nce(q, k, 0.02, symmetric)
    bound = 32.0 if xp.name == "mlx" else 4.0  # MLX: its float32 exp
    for order in (slice(None), slice(None, None, -1)):
        out = anyloss.info_nce_loss(
            xp.asarray(np.ascontiguousarray(q[:, order])),
            xp.asarray(np.ascontiguousarray(k[:, order])),
            temperature=0.02,
            symmetric=symmetric,
            reduction="none",
        )
        got = xp.to_numpy(out).astype(np.float64)
        worst = max(_ulp(float(g), v, np.float32) for g, v in zip(got, true, strict=True))
        assert worst <= bound, worst


def test_info_nce_float32_path_under_jit_and_grad() -> None:
    """The double-float value path traces under ``jax.jit``; the gradient is
    that of the float32 formulas (finite, and matching the plain autodiff)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    if jax.config.jax_enable_x64:
        pytest.skip("the float32-only path needs jax_enable_x64 off")
    rng = np.random.default_rng(3)
    q = rng.normal(0, 1, (8, 16)).astype(np.float32)
    k = (q + rng.normal(0, 0.1, (8, 16))).astype(np.float32)
    jitted = jax.jit(lambda a, b: anyloss.info_nce_loss(a, b, temperature=0.05, reduction="none"))(
        jnp.asarray(q), jnp.asarray(k)
    )
    true = _ref_info_nce(q, k, 0.05, False)
    worst = max(
        _ulp(float(g), v, np.float32) for g, v in zip(np.asarray(jitted), true, strict=True)
    )
    assert worst <= 4.0, worst
    g = jax.grad(lambda a: anyloss.info_nce_loss(a, jnp.asarray(k), temperature=0.05))(
        jnp.asarray(q)
    )
    assert np.all(np.isfinite(np.asarray(g)))
    # against torch's autodiff in float64
    torch = pytest.importorskip("torch")
    qt = torch.tensor(q.astype(np.float64), requires_grad=True)
    kt = torch.tensor(k.astype(np.float64))
    qn = qt / qt.norm(dim=1, keepdim=True)
    kn = kt / kt.norm(dim=1, keepdim=True)
    torch.nn.functional.cross_entropy(qn @ kn.T / 0.05, torch.arange(8)).backward()
    np.testing.assert_allclose(np.asarray(g), qt.grad.numpy(force=True), rtol=1e-3, atol=1e-5)


# -- info_nce / nt_xent at the edges of float32 --------------------------------

_F32_MAX = float(np.finfo(np.float32).max)


def _ref_contrastive(q: np.ndarray, k: np.ndarray, tau: float, symmetric: bool, normalize: bool):
    """InfoNCE per pair in mpmath (no overflow: its exponents are unbounded)."""
    if normalize:
        return _ref_info_nce(q, k, tau, symmetric)
    with mpmath.workdps(60):
        qs = [[mpf(float(a)) for a in v] for v in q]
        ks = [[mpf(float(a)) for a in v] for v in k]
        t = mpf(tau)

        def nll(s, i):
            return mpmath.log(mpmath.fsum(mpmath.exp(v - s[i]) for v in s))

        out = []
        for i in range(len(qs)):
            loss = nll([mpmath.fdot(qs[i], kj) / t for kj in ks], i)
            if symmetric:
                loss = (loss + nll([mpmath.fdot(qj, ks[i]) / t for qj in qs], i)) / 2
            out.append(loss)
        return out


def _check_float32(got: np.ndarray, true: list, bound: float) -> None:
    """Each value within ``bound`` ulp of the true value, ``+inf`` where that
    rounds beyond the largest float32."""
    for g, v in zip(got.astype(np.float64), true, strict=True):
        if v > mpf(_F32_MAX) * (1 + mpf(2) ** -25):
            assert g == math.inf, (g, v)
        else:
            assert _ulp(float(g), v, np.float32) <= bound, (g, v)


def _huge_rows(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """float32 entries of magnitude in [FLT_MAX / 2, FLT_MAX], random signs."""
    x = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.0, shape) * _F32_MAX
    return x.astype(np.float32)


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_rows_near_float_max(xp, rng, symmetric) -> None:
    """Normalized rows of magnitude ~FLT_MAX: JAX divided by a scale of
    2**127 as a multiplication by its (subnormal, flushed) reciprocal and gave
    log(N) for every row."""
    q, k = _huge_rows(rng, (4, 5)), _huge_rows(rng, (4, 5))
    out = anyloss.info_nce_loss(
        xp.asarray(q), xp.asarray(k), temperature=0.5, symmetric=symmetric, reduction="none"
    )
    bound = 32.0 if xp.name == "mlx" else 4.0  # MLX: its float32 exp
    _check_float32(xp.to_numpy(out), _ref_contrastive(q, k, 0.5, symmetric, True), bound)


def _ref_nt_xent(x: np.ndarray, y: np.ndarray, tau: float) -> list:
    with mpmath.workdps(60):
        vs = []
        for v in x:
            v = [mpf(float(a)) for a in v]
            n = mpmath.sqrt(mpmath.fdot(v, v))
            vs.append([a / n for a in v])
        t = mpf(tau)
        out = []
        for i in range(len(vs)):
            s = [mpmath.fdot(vs[i], w) / t for w in vs]
            neg = [s[j] for j in range(len(vs)) if y[j] != y[i]]
            out.append(
                mpmath.fsum(
                    mpmath.log1p(mpmath.fsum(mpmath.exp(v - s[j]) for v in neg))
                    for j in range(len(vs))
                    if j != i and y[j] == y[i]
                )
            )
        return out


def test_nt_xent_rows_near_float_max(xp, rng) -> None:
    """As above for nt_xent_loss (JAX gave log(1 + negatives) for every row)."""
    x = _huge_rows(rng, (6, 5))
    y = np.array([0, 1, 2, 0, 1, 2])
    out = anyloss.nt_xent_loss(xp.asarray(x), xp.asarray(y), temperature=0.5, reduction="none")
    got = xp.to_numpy(out).astype(np.float64)
    true = np.array([float(v) for v in _ref_nt_xent(x, y, 0.5)])
    np.testing.assert_allclose(got, true, rtol=2e-5)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("tau", [0.1, 1e36, 3e38])
def test_info_nce_raw_similarities_beyond_float32(xp, symmetric, tau) -> None:
    """normalize=False with dot products beyond FLT_MAX (rows from 1e-30 to
    FLT_MAX). The loss is +inf where a negative's similarity exceeds the
    positive's by more than FLT_MAX * tau, finite (1e14 and below at tau=1e36)
    where the differences divided by tau are: JAX and MLX (float32 only) gave
    NaN for every row (inf - inf), NumPy the right values."""
    rng = np.random.default_rng(1)
    q = rng.normal(0, 1, (5, 3)) * np.array([[3e30], [1e30], [2e-5], [1e25], [1.0]])
    k = rng.normal(0, 1, (5, 3)) * np.array([[1e10], [3e12], [1e20], [1e-30], [5e8]])
    q, k = q.astype(np.float32), k.astype(np.float32)
    q = np.concatenate([q, _huge_rows(rng, (1, 3))])
    k = np.concatenate([k, _huge_rows(rng, (1, 3))])
    out = anyloss.info_nce_loss(
        xp.asarray(q),
        xp.asarray(k),
        temperature=tau,
        normalize=False,
        symmetric=symmetric,
        reduction="none",
    )
    bound = 32.0 if xp.name == "mlx" else 4.0
    _check_float32(xp.to_numpy(out), _ref_contrastive(q, k, tau, symmetric, False), bound)

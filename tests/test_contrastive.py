"""InfoNCE and NT-Xent on every array library, against independent references.

References (never anyloss itself):

* ``info_nce_loss``: the PyTorch transcription
  ``F.cross_entropy(F.normalize(q) @ F.normalize(k).T / tau, arange(N))`` in
  float64 (with ``(ce(L) + ce(L.T)) / 2`` for ``symmetric``), the optax one
  (``optax.softmax_cross_entropy_with_integer_labels``, float32), Keras'
  ``sparse_categorical_crossentropy(..., from_logits=True)``.
* ``nt_xent_loss``: ``optax.losses.ntxent`` (float32; the ``'mean'``), a
  float64 NumPy loop over the positive pairs of the documented formula (every
  reduction), and the usual PyTorch SimCLR transcription (similarities with the
  diagonal at ``-inf``, ``F.cross_entropy`` with the other view as target).
* Accuracy: mpmath at 50 digits from the same float32 inputs, one row at a time.

One shape, ``(6, 5)``, for everything (JAX compiles per shape).
"""

from __future__ import annotations

import functools
import math
import os
import re

import accuracy_cases as A
import mpmath
import numpy as np
import pytest
from backends import make, selected

import anyloss

torch = pytest.importorskip("torch")
F = torch.nn.functional

N, D = 6, 5
TWO_VIEWS = np.array([0, 1, 2, 0, 1, 2])  # SimCLR: rows i and i + 3 are two views
GROUPS = np.array([0, 1, 0, 2, 1, 0])  # 3 + 2 + 1: several positives, one anchor without
REDUCTIONS = ("none", "mean", "sum")

_RNG = np.random.default_rng(20261123)
Q = _RNG.standard_normal((N, D)).astype(np.float32)
K = (Q + 0.8 * _RNG.standard_normal((N, D))).astype(np.float32)
E = _RNG.standard_normal((N, D)).astype(np.float32)
E[3:] = E[:3] + 0.5 * _RNG.standard_normal((3, D)).astype(np.float32)  # views of 0..2

INFO_OPTIONS = {
    "default": {},
    "raw": {"normalize": False, "temperature": 2.0},
    "symmetric": {"symmetric": True, "temperature": 0.2},
    "symmetric_raw": {"symmetric": True, "normalize": False, "temperature": 3.0},
}
NTX_OPTIONS = {
    "two_views": (TWO_VIEWS, {}),
    "groups": (GROUPS, {"temperature": 0.2}),
}


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return loss
    return np.asarray(loss.sum() if reduction == "sum" else loss.mean())


# ------------------------------------------------------------------ references


def torch_info_nce(q, k, temperature=0.1, normalize=True, symmetric=False, reduction="mean"):
    """The PyTorch transcription, on torch tensors (autograd flows)."""
    if normalize:
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = q @ k.T / temperature
    target = torch.arange(q.shape[0])
    loss = F.cross_entropy(logits, target, reduction="none")
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target, reduction="none")) / 2
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


def torch_simclr(z, temperature=0.07):
    """Per-anchor NT-Xent of two views (rows i and i + n), as SimCLR codes it."""
    n = z.shape[0] // 2
    u = F.normalize(z, dim=1)
    sim = (u @ u.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, partner, reduction="none")


def loop_nt_xent(x, labels, temperature=0.07):
    """The documented formula pair by pair, float64: per-anchor sums and the pair count."""
    x = x.astype(np.float64)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = u @ u.T / temperature
    per, pairs = np.zeros(len(x)), 0
    for i in range(len(x)):
        negatives = [m for m in range(len(x)) if labels[m] != labels[i]]
        for j in range(len(x)):
            if j != i and labels[j] == labels[i]:
                # -log(e^s_ij / (e^s_ij + sum_neg e^s_ik)), in the form without cancellation
                per[i] += np.log1p(np.exp(s[i, negatives] - s[i, j]).sum())
                pairs += 1
    return per, pairs


def loop_reduce(per: np.ndarray, pairs: int, reduction: str) -> np.ndarray:
    if reduction == "none":
        return per
    return np.asarray(per.sum() if reduction == "sum" else per.sum() / pairs)


@functools.cache
def optax_refs():
    """optax's values (InfoNCE per option, NT-Xent per option) and the
    gradient of ``ntxent`` for GROUPS, from one ``jax.jit`` (one compilation
    instead of dozens of eager ones)."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jnp = jax.numpy

    def info_nce(q, k, temperature=0.1, normalize=True, symmetric=False):
        if normalize:
            q = q / jnp.linalg.norm(q, axis=1, keepdims=True)
            k = k / jnp.linalg.norm(k, axis=1, keepdims=True)
        logits = q @ k.T / temperature
        target = jnp.arange(q.shape[0])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, target)
        if symmetric:
            loss = (loss + optax.softmax_cross_entropy_with_integer_labels(logits.T, target)) / 2
        return loss

    @jax.jit
    def run(q, k, e):
        info = {name: info_nce(q, k, **kw) for name, kw in INFO_OPTIONS.items()}
        ntx = {
            name: optax.losses.ntxent(e, jnp.asarray(labels), **kw)
            for name, (labels, kw) in NTX_OPTIONS.items()
        }
        grad = jax.grad(lambda v: optax.losses.ntxent(v, jnp.asarray(GROUPS), 0.2))(e)
        return info, ntx, grad

    info, ntx, grad = run(jnp.asarray(Q), jnp.asarray(K), jnp.asarray(E))
    return (
        {name: np.asarray(v, dtype=np.float64) for name, v in info.items()},
        {name: float(v) for name, v in ntx.items()},
        np.asarray(grad),
    )


def _t64(a: np.ndarray):
    return torch.asarray(a.astype(np.float64))


# ------------------------------------------------------------------ helpers


def _check(lib, out, want, dtype, reduction):
    lib.check_library(out)
    assert lib.dtype_name(out) == dtype
    assert tuple(out.shape) == ((N,) if reduction == "none" else ())
    rtol, atol = (2e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-13)
    np.testing.assert_allclose(lib.to_numpy(out), want, rtol=rtol, atol=atol)


def _dtypes(lib):
    return ("float32", "float64") if lib.has_float64 else ("float32",)


# ------------------------------------------------------------------ values


@pytest.mark.parametrize("option", INFO_OPTIONS)
def test_info_nce_values(xp, option):
    kw = INFO_OPTIONS[option]
    optax_none = optax_refs()[0][option]
    for reduction in REDUCTIONS:
        want = torch_info_nce(_t64(Q), _t64(K), **kw, reduction=reduction).numpy(force=True)
        # optax computes in float32 (absolute errors ~ulp(1/tau))
        np.testing.assert_allclose(_reduce(optax_none, reduction), want, rtol=1e-5, atol=2e-6)
        for dtype in _dtypes(xp):
            q, k = xp.asarray(Q, dtype), xp.asarray(K, dtype)
            _check(
                xp, anyloss.info_nce_loss(q, k, **kw, reduction=reduction), want, dtype, reduction
            )
    # positional order and the default reduction
    tau = kw.get("temperature", 0.1)
    out = anyloss.info_nce_loss(
        xp.asarray(Q), xp.asarray(K), tau, kw.get("normalize", True), kw.get("symmetric", False)
    )
    want = torch_info_nce(_t64(Q), _t64(K), **kw).numpy(force=True)
    _check(xp, out, want, "float32", "mean")


@pytest.mark.parametrize("option", NTX_OPTIONS)
def test_nt_xent_values(xp, option):
    labels, kw = NTX_OPTIONS[option]
    per, pairs = loop_nt_xent(E, labels, **kw)
    optax_mean = optax_refs()[1][option]  # float32 inside: absolute errors ~ulp(1/tau)
    assert float(loop_reduce(per, pairs, "mean")) == pytest.approx(optax_mean, rel=1e-5, abs=2e-6)
    if labels is TWO_VIEWS:
        # F.cross_entropy subtracts logsumexp - target: ~1e-12 relative for small losses
        np.testing.assert_allclose(torch_simclr(_t64(E), **kw).numpy(force=True), per, rtol=1e-9)
    for reduction in REDUCTIONS:
        want = loop_reduce(per, pairs, reduction)
        for dtype in _dtypes(xp):
            out = anyloss.nt_xent_loss(
                xp.asarray(E, dtype), xp.asarray(labels), **kw, reduction=reduction
            )
            _check(xp, out, want, dtype, reduction)
    # labels given as a Python list; the default reduction is optax's mean
    out = anyloss.nt_xent_loss(xp.asarray(E), labels.tolist(), kw.get("temperature", 0.07))
    _check(xp, out, loop_reduce(per, pairs, "mean"), "float32", "mean")


def test_info_nce_keras_reference():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    logits = F.normalize(_t64(Q), dim=1) @ F.normalize(_t64(K), dim=1).T / 0.1
    want = keras.losses.sparse_categorical_crossentropy(
        np.arange(N), logits.numpy(force=True).astype(np.float32), from_logits=True
    )
    got = anyloss.info_nce_loss(Q, K, reduction="none")
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=2e-6)


def test_nt_xent_degenerate_labels_match_optax(xp):
    """All labels distinct (no positive pair): optax's 0/0 is NaN, and so is
    'mean'; all labels equal (no negatives): every pair has loss 0."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    distinct, same = np.arange(N), np.zeros(N, dtype=np.int64)
    ntxent = jax.jit(optax.losses.ntxent)
    assert math.isnan(float(ntxent(jax.numpy.asarray(E), jax.numpy.asarray(distinct))))
    assert float(ntxent(jax.numpy.asarray(E), jax.numpy.asarray(same))) == 0.0
    e = xp.asarray(E)
    assert math.isnan(float(xp.to_numpy(anyloss.nt_xent_loss(e, xp.asarray(distinct)))))
    for reduction, want in (("none", np.zeros(N)), ("sum", 0.0)):
        got = anyloss.nt_xent_loss(e, xp.asarray(distinct), reduction=reduction)
        np.testing.assert_array_equal(xp.to_numpy(got), want)
    for reduction in REDUCTIONS:
        got = anyloss.nt_xent_loss(e, xp.asarray(same), reduction=reduction)
        np.testing.assert_array_equal(xp.to_numpy(got), np.zeros(N) if reduction == "none" else 0)


def test_low_precision_in_and_out(xp):
    if xp.name == "array_api_strict":
        pytest.skip("array-api-strict has no float16")
    dtypes = ["float16"] + (["bfloat16"] if xp.name in ("torch", "jax", "mlx") else [])
    for dtype in dtypes:
        # the reference sees the same rounded inputs
        rounded = [xp.to_numpy(xp.asarray(a, dtype)).astype(np.float64) for a in (Q, K, E)]
        want = torch_info_nce(*map(torch.asarray, rounded[:2]), reduction="none").numpy(force=True)
        per, _ = loop_nt_xent(rounded[2], TWO_VIEWS)
        out = anyloss.info_nce_loss(xp.asarray(Q, dtype), xp.asarray(K, dtype), reduction="none")
        out2 = anyloss.nt_xent_loss(xp.asarray(E, dtype), xp.asarray(TWO_VIEWS), reduction="none")
        for got, ref in ((out, want), (out2, per)):
            assert xp.dtype_name(got) == dtype
            # one rounding to the output dtype (float32 inside)
            tol = 1e-3 if dtype == "float16" else 8e-3
            np.testing.assert_allclose(xp.to_numpy(got), ref, rtol=tol, atol=1e-5)


# ------------------------------------------------------------------ gradients


def _grad(lib, fn, x):
    """``lib.grad(fn, x)``; JAX differentiates ``jax.jit(fn)``: eager ``jax.grad``
    compiles every primitive of the backward pass apart (seconds here)."""
    if lib.name == "jax":
        import jax

        fn = jax.jit(fn)
    return lib.grad(fn, x)


def _close_grad(got, want):
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(
    ("option", "reduction"), [("default", "mean"), ("raw", "none"), ("symmetric", "mean")]
)
def test_info_nce_gradients(grad_xp, option, reduction):
    kw = {**INFO_OPTIONS[option], "reduction": reduction}
    qt, kt = _t64(Q).requires_grad_(True), _t64(K).requires_grad_(True)
    torch_info_nce(qt, kt, **kw).sum().backward()
    k_lib = grad_xp.asarray(K)
    _close_grad(
        _grad(grad_xp, lambda q: anyloss.info_nce_loss(q, k_lib, **kw), Q),
        qt.grad.numpy(force=True),
    )
    if kw.get("symmetric"):  # the keys take the other half of the loss
        q_lib = grad_xp.asarray(Q)
        got = _grad(grad_xp, lambda k: anyloss.info_nce_loss(q_lib, k, **kw), K)
        _close_grad(got, kt.grad.numpy(force=True))


def test_nt_xent_gradients(grad_xp):
    # two views: the PyTorch SimCLR transcription, float64
    two_views = grad_xp.asarray(TWO_VIEWS)
    et = _t64(E).requires_grad_(True)
    torch_simclr(et).mean().backward()
    _close_grad(
        _grad(grad_xp, lambda e: anyloss.nt_xent_loss(e, two_views), E), et.grad.numpy(force=True)
    )
    # several positives per anchor: jax.grad of optax (float32)
    groups = grad_xp.asarray(GROUPS)
    got = _grad(grad_xp, lambda e: anyloss.nt_xent_loss(e, groups, 0.2), E)
    _close_grad(got, optax_refs()[2])


def test_gradients_stay_finite_on_degenerate_input(grad_xp):
    """A zero row (normalized to zero), labels without negatives or positives:
    the loss is finite and no NaN/inf leaks into the gradient."""
    q = Q.copy()
    q[2] = 0.0
    k_lib = grad_xp.asarray(K)
    same, groups = grad_xp.asarray(np.zeros(N, dtype=np.int64)), grad_xp.asarray(GROUPS)
    grads = [
        _grad(grad_xp, lambda v: anyloss.info_nce_loss(v, k_lib), q),
        _grad(grad_xp, lambda v: anyloss.info_nce_loss(v, k_lib, symmetric=True), q),
        _grad(grad_xp, lambda v: anyloss.nt_xent_loss(v, groups, reduction="sum"), q),
        _grad(grad_xp, lambda v: anyloss.nt_xent_loss(v, same, reduction="sum"), q),
    ]
    for g in grads:
        assert np.isfinite(g).all()
    np.testing.assert_array_equal(grads[-1], 0.0)  # no negatives: the loss is 0 everywhere


# ------------------------------------------------------------------ transforms


def test_jax_jit():
    jax = pytest.importorskip("jax")
    lib = make("jax")
    q, k, e = lib.asarray(Q), lib.asarray(K), lib.asarray(E)

    @jax.jit
    def run(q, k, e, labels):
        return (
            anyloss.info_nce_loss(q, k, reduction="none"),
            anyloss.info_nce_loss(q, k, symmetric=True, temperature=0.2),
            anyloss.nt_xent_loss(e, labels, reduction="none"),
            anyloss.nt_xent_loss(e, labels, 0.2),
            jax.grad(lambda v: anyloss.nt_xent_loss(v, labels, 0.2))(e),
        )

    none, sym, ntx_none, ntx, grad = run(q, k, e, lib.asarray(GROUPS))
    # float32 inside: absolute errors of a few ulp(1 / tau)
    tol = {"rtol": 2e-5, "atol": 1e-6}
    np.testing.assert_allclose(none, torch_info_nce(_t64(Q), _t64(K), reduction="none"), **tol)
    want = torch_info_nce(_t64(Q), _t64(K), temperature=0.2, symmetric=True)
    np.testing.assert_allclose(sym, want, **tol)
    per, pairs = loop_nt_xent(E, GROUPS, 0.2)
    np.testing.assert_allclose(ntx, per.sum() / pairs, **tol)
    np.testing.assert_allclose(ntx_none, loop_nt_xent(E, GROUPS)[0], **tol)
    want = optax_refs()[2]
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_mx_compile():
    mx = pytest.importorskip("mlx.core")
    if "mlx" not in selected():
        pytest.skip("mlx not selected")
    fn = mx.compile(
        lambda q, k, e, y: (
            anyloss.info_nce_loss(q, k, symmetric=True, reduction="none"),
            anyloss.nt_xent_loss(e, y, reduction="sum"),
        )
    )
    sym, ntx = fn(mx.array(Q), mx.array(K), mx.array(E), mx.array(GROUPS))
    want = torch_info_nce(_t64(Q), _t64(K), symmetric=True, reduction="none").numpy(force=True)
    tol = {"rtol": 2e-5, "atol": 1e-6}
    np.testing.assert_allclose(np.array(sym), want, **tol)
    np.testing.assert_allclose(np.array(ntx), loop_nt_xent(E, GROUPS)[0].sum(), **tol)


def test_dask_stays_lazy():
    dask = pytest.importorskip("dask")
    if "dask" not in selected():
        pytest.skip("dask not selected")
    lib = make("dask")

    def refuse(dsk, keys, **kwargs):
        raise AssertionError("anyloss computed the Dask graph")

    per, pairs = loop_nt_xent(E, GROUPS)
    for reduction in REDUCTIONS:
        with dask.config.set(scheduler=refuse):
            out = anyloss.info_nce_loss(
                lib.asarray(Q), lib.asarray(K), symmetric=True, reduction=reduction
            )
            out2 = anyloss.nt_xent_loss(lib.asarray(E), lib.asarray(GROUPS), reduction=reduction)
        for o in (out, out2):
            lib.check_library(o)
            assert str(o.dtype) == "float32"
        want = torch_info_nce(_t64(Q), _t64(K), symmetric=True, reduction=reduction).numpy(
            force=True
        )
        tol = {"rtol": 2e-5, "atol": 1e-6}
        np.testing.assert_allclose(out.compute(scheduler="sync"), want, **tol)
        np.testing.assert_allclose(
            out2.compute(scheduler="sync"), loop_reduce(per, pairs, reduction), **tol
        )
    # rows Dask cannot count without computing: a clear error, nothing computed
    e = lib.asarray(E)
    e = e[e[:, 0] > 0]
    with dask.config.set(scheduler=refuse), pytest.raises(ValueError, match="compute_chunk_sizes"):
        anyloss.nt_xent_loss(e, TWO_VIEWS[: int((E[:, 0] > 0).sum())])


# ------------------------------------------------------------------ errors


def test_errors(xp):
    q, k, e = xp.asarray(Q), xp.asarray(K), xp.asarray(E)
    labels = xp.asarray(TWO_VIEWS)
    with pytest.raises(ValueError, match=r"info_nce_loss\(\): invalid reduction 'avg'"):
        anyloss.info_nce_loss(q, k, reduction="avg")
    with pytest.raises(ValueError, match=r"nt_xent_loss\(\): invalid reduction 'avg'"):
        anyloss.nt_xent_loss(e, labels, reduction="avg")
    for tau in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match=r"info_nce_loss\(\): temperature must be in \(0"):
            anyloss.info_nce_loss(q, k, temperature=tau)
        with pytest.raises(ValueError, match=r"nt_xent_loss\(\): temperature must be in \(0"):
            anyloss.nt_xent_loss(e, labels, temperature=tau)
    with pytest.raises(TypeError, match="temperature must be a real number"):
        anyloss.info_nce_loss(q, k, temperature="0.1")
    # ranks and shapes: both shapes in the message
    with pytest.raises(ValueError, match=r"queries must be a 2-D .* queries.shape=\(6,\)"):
        anyloss.info_nce_loss(xp.asarray(Q[:, 0]), k)
    with pytest.raises(ValueError, match=r"keys must be a 2-D .* keys.shape=\(1, 6, 5\)"):
        anyloss.info_nce_loss(q, xp.asarray(K[None]))
    for bad in (K[:5], K[:, :4]):
        with pytest.raises(
            ValueError, match=re.escape(f"queries.shape=(6, 5), keys.shape={bad.shape}")
        ):
            anyloss.info_nce_loss(q, xp.asarray(bad))
    with pytest.raises(ValueError, match=r"embeddings must be a 2-D .* embeddings.shape=\(6,\)"):
        anyloss.nt_xent_loss(xp.asarray(E[:, 0]), labels)
    for bad in (TWO_VIEWS[:5], TWO_VIEWS[:, None]):
        with pytest.raises(
            ValueError,
            match=re.escape(f"embeddings.shape=(6, 5), got labels.shape={bad.shape}"),
        ):
            anyloss.nt_xent_loss(e, xp.asarray(bad))
    with pytest.raises(TypeError, match=r"nt_xent_loss\(\): labels must have an integer dtype"):
        anyloss.nt_xent_loss(e, xp.asarray(TWO_VIEWS.astype(np.float32)))


def test_mixed_libraries_are_rejected():
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match="info_nce_loss"):
        anyloss.info_nce_loss(torch.asarray(Q), jnp.asarray(K))
    with pytest.raises(TypeError, match="nt_xent_loss"):
        anyloss.nt_xent_loss(torch.asarray(E), jnp.asarray(TWO_VIEWS))


# ------------------------------------------------------------------ accuracy
#
# mpmath references, 50 digits, from the exact float32 inputs, one row at a
# time, in forms without cancellation: log1p(sum over the other entries of
# exp(s_ij - s_ii)).

mp = mpmath.mp


def _mp_unit(row):
    v = [mpmath.mpf(float(a)) for a in row]
    norm = mpmath.sqrt(mpmath.fsum(a * a for a in v))
    return [a / norm for a in v]


def _mp_sims(a, b, tau):
    ua, ub = [_mp_unit(r) for r in a], [_mp_unit(r) for r in b]
    t = mpmath.mpf(tau)
    return [[mpmath.fsum(x * y for x, y in zip(u, w, strict=True)) / t for w in ub] for u in ua]


def mp_info_nce(q, k, tau, symmetric=False):
    with mp.workdps(50):
        s = _mp_sims(q, k, tau)
        n = len(s)
        rows = [
            mpmath.log1p(mpmath.fsum(mpmath.exp(s[i][j] - s[i][i]) for j in range(n) if j != i))
            for i in range(n)
        ]
        if not symmetric:
            return rows
        cols = [
            mpmath.log1p(mpmath.fsum(mpmath.exp(s[j][i] - s[i][i]) for j in range(n) if j != i))
            for i in range(n)
        ]
        return [(r + c) / 2 for r, c in zip(rows, cols, strict=True)]


def mp_nt_xent(x, labels, tau):
    with mp.workdps(50):
        s = _mp_sims(x, x, tau)
        n = len(s)
        per, pairs = [], 0
        for i in range(n):
            neg = [m for m in range(n) if labels[m] != labels[i]]
            total = mpmath.mpf(0)
            for j in range(n):
                if j != i and labels[j] == labels[i]:
                    total += mpmath.log1p(mpmath.fsum(mpmath.exp(s[i][m] - s[i][j]) for m in neg))
                    pairs += 1
            per.append(total)
        return per, pairs


def _accuracy_inputs():
    rng = np.random.default_rng(7)
    base = rng.standard_normal((N, D))
    noise = rng.standard_normal((N, D))
    mags = np.array([1e20, 1e-20, 1.0, 3e19, 2e-19, 1e-3])[:, None]
    cases = {
        "huge": (base * 1e20, (base + 0.7 * noise) * 1e20, 0.1),
        "tiny": (base * 1e-20, (base + 0.7 * noise) * 1e-20, 0.1),
        "mixed_magnitudes": (base * mags, (base + 0.7 * noise) * mags[::-1], 0.1),
        # keys nearly equal to their queries: the positive dominates, the loss is small
        "near_duplicate_positive": (base, base + 1e-3 * noise, 0.05),
        # key 1 nearly equal to key 0: for query 0 the positive and a negative tie
        "near_duplicate_negative": (
            base,
            np.concatenate([base[:1], base[:1] + 1e-4 * noise[1:2], base[2:] + noise[2:]]),
            0.1,
        ),
    }
    return {name: (A.f32(a), A.f32(b), tau) for name, (a, b, tau) in cases.items()}


# Worst ulp over both losses, both InfoNCE options (plain, symmetric) and the
# 'none'/'mean' reductions. NumPy, PyTorch, Dask and array-api-strict (float64
# inside) measure 0.49 in every case: correctly rounded. JAX (float32, x64 off)
# and MLX (CPU, float32) get the bound measured below (jax 0.10.2, mlx 0.32.4,
# Linux x86-64), rounded up to a power of two: the float32 similarities carry
# an error of a few ulp(1/tau), which the loss, a difference of similarities,
# cannot remove; it is largest where the loss is small next to 1/tau.
FLOAT32_BOUNDS: dict[str, tuple[float, float]] = {  # (jax, mlx); measured in the comment
    "huge": (16, 32),  # 12.9, 16.1
    "tiny": (16, 32),  # 11.4, 16.2
    "mixed_magnitudes": (16, 16),  # 10.8, 14.8
    "near_duplicate_positive": (64, 64),  # 48.6, 43.6
    "near_duplicate_negative": (16, 16),  # 12.0, 12.0
}
WIDE_BOUND = 4.0


@functools.cache
def _exact(name):
    q, k, tau = _accuracy_inputs()[name]
    e = np.concatenate([q[:3], k[:3]])
    info = {sym: mp_info_nce(q, k, tau, sym) for sym in (False, True)}
    per, pairs = mp_nt_xent(e, TWO_VIEWS, tau)
    with mp.workdps(50):
        return (
            {("info", sym, "none"): rows for sym, rows in info.items()}
            | {("info", sym, "mean"): [mpmath.fsum(rows) / N] for sym, rows in info.items()}
            | {("ntx", "none"): per, ("ntx", "mean"): [mpmath.fsum(per) / pairs]}
        )


def _worst(got, exact):
    return max(A.ulp_error(g, t) for g, t in zip(np.ravel(got), exact, strict=True))


def _measure(lib, name):
    q, k, tau = _accuracy_inputs()[name]
    e = np.concatenate([q[:3], k[:3]])
    exact = _exact(name)
    worst = 0.0
    for reduction in ("none", "mean"):
        for symmetric in (False, True):
            out = anyloss.info_nce_loss(
                lib.asarray(q), lib.asarray(k), tau, symmetric=symmetric, reduction=reduction
            )
            worst = max(worst, _worst(lib.to_numpy(out), exact["info", symmetric, reduction]))
        out = anyloss.nt_xent_loss(
            lib.asarray(e), lib.asarray(TWO_VIEWS), tau, reduction=reduction
        )
        worst = max(worst, _worst(lib.to_numpy(out), exact["ntx", reduction]))
    return worst


@pytest.mark.parametrize("name", list(_accuracy_inputs()))
def test_accuracy(xp, name):
    if xp.name == "numpy_readonly":
        pytest.skip("the numpy code path")
    if xp.name in ("jax", "mlx") and not xp.has_float64:
        bound = FLOAT32_BOUNDS[name][xp.name == "mlx"]
    else:
        bound = WIDE_BOUND
    worst = _measure(xp, name)
    assert worst <= bound, f"{xp.name} {name}: {worst:.3g} ulp > {bound}"

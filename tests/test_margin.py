"""Margin losses against PyTorch, optax, Keras and mpmath, on every array library.

``squared_hinge_loss``, ``multiclass_hinge_loss`` and ``cosine_embedding_loss``:

* Values: float64 PyTorch references from the same float32 inputs
  (``F.cosine_embedding_loss``; transcriptions of the formulas for the two
  hinges, which PyTorch does not have), ``optax.losses.multiclass_hinge_loss``
  and Keras's ``squared_hinge`` / ``categorical_hinge`` (through the anyloss
  calls that reproduce them), for every option that changes the result and
  every reduction; float32 (rtol 1e-5) on every backend and float64
  (rtol 1e-12) where the backend has it.
* Gradients with respect to the first input (torch, JAX, MLX) against torch
  autograd of the float64 reference or ``jax.grad`` of optax.
* ``jax.jit``, ``mx.compile`` and Dask (lazy until ``.compute()``).
* Errors: reduction, shapes, options, class indices, target signs, axes.
* Accuracy: adversarial float32 regimes against mpmath at 50 digits (checked
  at 80) from the same float32 inputs, in ulp (``accuracy_cases.ulp_error``).
"""

from __future__ import annotations

import functools
import math
import os
import zlib

import accuracy_cases as A
import numpy as np
import pytest

import anyloss

torch = pytest.importorskip("torch")
F = torch.nn.functional
mpmath = pytest.importorskip("mpmath")

RNG = np.random.default_rng(11)
N, C = 4, 5  # (4, 5) is the one 2-D shape used with JAX; (2, 3, 5) the 3-D one
REDUCTIONS = [None, "none", "mean", "sum"]


def _f32(a):
    return np.asarray(a, dtype=np.float32)


def _signs(*shape):
    return _f32(np.where(RNG.random(shape) < 0.5, -1.0, 1.0))


def _t64(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _reduce_t(loss, reduction):
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def _kw(reduction):
    return {} if reduction is None else {"reduction": reduction}


def _dtypes(xp):
    return ["float32"] + (["float64"] if xp.has_float64 else [])


def _close(xp, out, want, dtype):
    got = xp.to_numpy(out)
    assert xp.dtype_name(out) == dtype
    assert got.shape == np.shape(want)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, np.abs(want).max()))


# ------------------------------------------------------------- squared hinge

X = _f32(RNG.normal(0.0, 1.5, (N, C)))
T_SIGNS = _signs(N, C)


def _sq_hinge_ref(x, t, reduction="none"):
    return _reduce_t(torch.clamp(1.0 - _t64(x) * _t64(t), min=0.0) ** 2, reduction).numpy(
        force=True
    )


@pytest.mark.parametrize(
    ("tshape", "reduction"),
    [("same", None), ("same", "mean"), ("same", "sum"), ("row", "none"), ("column", "none")],
)
def test_squared_hinge_matches_torch(xp, tshape, reduction):
    t = {"same": T_SIGNS, "row": T_SIGNS[0], "column": T_SIGNS[:, :1]}[tshape]
    want = _sq_hinge_ref(X, t, reduction or "none")
    for dtype in _dtypes(xp):
        out = anyloss.squared_hinge_loss(
            xp.asarray(X, dtype), xp.asarray(t, dtype), **_kw(reduction)
        )
        _close(xp, out, want, dtype)


def test_squared_hinge_matches_keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    bits = (T_SIGNS > 0).astype(np.float32)
    # Keras maps {0, 1} targets to {-1, 1} and averages over the last axis
    want = np.asarray(keras.losses.squared_hinge(bits, X))
    got = anyloss.squared_hinge_loss(X, 2 * bits - 1).mean(axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    want = np.asarray(keras.losses.squared_hinge(T_SIGNS, X))
    np.testing.assert_allclose(anyloss.squared_hinge_loss(X, T_SIGNS).mean(axis=-1), want, 1e-6)
    # ... so {0, 1} targets passed as they are give a different loss
    assert not np.allclose(anyloss.squared_hinge_loss(X, bits).mean(axis=-1), want)


def test_squared_hinge_gradient(grad_xp):
    x64 = _t64(X).requires_grad_(True)
    (torch.clamp(1.0 - x64 * _t64(T_SIGNS), min=0.0) ** 2).sum().backward()
    t = grad_xp.asarray(T_SIGNS)
    got = grad_xp.grad(lambda v: anyloss.squared_hinge_loss(v, t), X)
    np.testing.assert_allclose(got, x64.grad.numpy(force=True), rtol=1e-5, atol=1e-5)


def test_squared_hinge_errors():
    with pytest.raises(ValueError, match=r"squared_hinge_loss\(\): invalid reduction 'avg'"):
        anyloss.squared_hinge_loss(X, T_SIGNS, reduction="avg")
    with pytest.raises(
        ValueError, match=r"cannot be broadcast.*inputs\.shape=\(4, 5\), targets\.shape=\(3,\)"
    ):
        anyloss.squared_hinge_loss(X, T_SIGNS[0, :3])
    with pytest.raises(TypeError, match=r"squared_hinge_loss\(\): inputs must be an array"):
        anyloss.squared_hinge_loss({"x": 1}, T_SIGNS)


# --------------------------------------------------------- multi-class hinge

LOGITS = _f32(RNG.normal(0.0, 2.0, (N, C)))
LABELS = RNG.integers(0, C, N)
LOGITS3 = _f32(RNG.normal(0.0, 2.0, (2, C, 3)))  # class axis 1
LABELS3 = RNG.integers(0, C, (2, 3))


def _mc_hinge_torch(x, y, axis=-1, margin=1.0):
    """Crammer-Singer on a torch tensor: the largest other logit by masking."""
    x = torch.movedim(x, axis, -1)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    hot = F.one_hot(y, x.shape[-1]).bool()
    target = x.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    rival = x.masked_fill(hot, -math.inf).amax(dim=-1)
    return torch.clamp(margin + rival - target, min=0.0)


def _mc_hinge_ref(x, y, axis=-1, margin=1.0, reduction="none"):
    return _reduce_t(_mc_hinge_torch(_t64(x), y, axis, margin), reduction)


@functools.cache
def _optax_mc_hinge():
    """optax's loss and its gradient (jax.grad of the sum) at LOGITS, LABELS."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    x, y = jax.numpy.asarray(LOGITS), jax.numpy.asarray(LABELS)
    loss = np.asarray(optax.losses.multiclass_hinge_loss(x, y))
    grad = np.asarray(jax.grad(lambda v: optax.losses.multiclass_hinge_loss(v, y).sum())(x))
    return loss, grad


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multiclass_hinge_matches_optax(xp, reduction):
    per = _optax_mc_hinge()[0]
    want = {None: per, "none": per, "mean": per.mean(), "sum": per.sum()}[reduction]
    out = anyloss.multiclass_hinge_loss(xp.asarray(LOGITS), xp.asarray(LABELS), **_kw(reduction))
    _close(xp, out, want, "float32")


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize(
    ("case", "margin"), [("axis=-1", 0.25), ("axis=0", 1.0), ("3d-axis=1", 2.5)]
)
def test_multiclass_hinge_matches_torch(xp, case, margin, reduction):
    x, y, axis = {
        "axis=-1": (LOGITS, LABELS, -1),
        "axis=0": (LOGITS, RNG.integers(0, N, C), 0),
        "3d-axis=1": (LOGITS3, LABELS3, 1),
    }[case]
    want = _mc_hinge_ref(x, y, axis, margin, reduction).numpy(force=True)
    for dtype in _dtypes(xp):
        out = anyloss.multiclass_hinge_loss(
            xp.asarray(x, dtype), xp.asarray(y), axis=axis, margin=margin, reduction=reduction
        )
        _close(xp, out, want, dtype)


def test_multiclass_hinge_int32_targets_and_one_class(xp):
    out = anyloss.multiclass_hinge_loss(xp.asarray(LOGITS), xp.asarray(LABELS.astype(np.int32)))
    _close(xp, out, _mc_hinge_ref(LOGITS, LABELS).numpy(force=True), "float32")
    # a single class has no rival: the loss is 0
    one = anyloss.multiclass_hinge_loss(xp.asarray(LOGITS[:, :1]), xp.asarray(np.zeros(N, int)))
    np.testing.assert_array_equal(xp.to_numpy(one), np.zeros(N, np.float32))


def test_multiclass_hinge_matches_keras_categorical_hinge():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    onehot = np.eye(C, dtype=np.float32)[LABELS]
    x = LOGITS.copy()
    x[np.arange(N), (LABELS + 1) % C] = np.abs(x[np.arange(N), (LABELS + 1) % C])
    want = np.asarray(keras.losses.categorical_hinge(onehot, x))
    np.testing.assert_allclose(anyloss.multiclass_hinge_loss(x, LABELS), want, rtol=1e-6)
    # Keras's maximum runs over (1 - onehot) * x, which holds a 0 at the target:
    # where every other logit is negative it uses 0 instead of the largest
    neg = _f32([[3.0, -2.0, -1.0]])
    assert float(keras.losses.categorical_hinge(_f32([[1, 0, 0]]), neg)[0]) == 0.0
    assert anyloss.multiclass_hinge_loss(neg, np.array([0]))[0] == 0.0
    neg = _f32([[0.5, -2.0, -1.0]])
    assert float(keras.losses.categorical_hinge(_f32([[1, 0, 0]]), neg)[0]) == 0.5
    assert anyloss.multiclass_hinge_loss(neg, np.array([0]))[0] == 0.0  # 1 - 1 - 0.5 < 0


def test_multiclass_hinge_gradient_matches_optax(grad_xp):
    want = _optax_mc_hinge()[1]
    y = grad_xp.asarray(LABELS)
    got = grad_xp.grad(lambda v: anyloss.multiclass_hinge_loss(v, y), LOGITS)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_multiclass_hinge_gradient_matches_torch(grad_xp):
    x64 = _t64(LOGITS3).requires_grad_(True)
    _mc_hinge_torch(x64, LABELS3, axis=1, margin=0.5).mean().backward()
    y = grad_xp.asarray(LABELS3)
    got = grad_xp.grad(
        lambda v: anyloss.multiclass_hinge_loss(v, y, axis=1, margin=0.5, reduction="mean"),
        LOGITS3,
    )
    np.testing.assert_allclose(got, x64.grad.numpy(force=True), atol=1e-6)


def test_multiclass_hinge_errors():
    f = anyloss.multiclass_hinge_loss
    with pytest.raises(ValueError, match=r"multiclass_hinge_loss\(\): invalid reduction 'avg'"):
        f(LOGITS, LABELS, reduction="avg")
    with pytest.raises(TypeError, match=r"targets holds class indices.*integer dtype.*float"):
        f(LOGITS, LABELS.astype(np.float32))
    with pytest.raises(ValueError, match=r"targets\[2\] = 5 is out of range for 5 classes"):
        f(LOGITS, np.array([0, 1, 5, -1]))
    with pytest.raises(ValueError, match=r"targets\[1\] = -1 is out of range"):
        f(LOGITS, np.array([0, -1, 2, 3]))
    with pytest.raises(
        ValueError, match=r"targets\.shape=\(5,\) does not match logits\.shape=\(4, 5\)"
    ):
        f(LOGITS, np.zeros(C, int))
    with pytest.raises(ValueError, match=r"at least 1 dimension"):
        f(np.float32(1.0), np.array(0))
    with pytest.raises(IndexError, match=r"axis 2 is out of range for logits with 2 dim"):
        f(LOGITS, LABELS, axis=2)
    with pytest.raises(ValueError, match=r"axis -3 is out of range"):
        f(LOGITS, LABELS, axis=-3)
    with pytest.raises(ValueError, match=r"margin must be in \(-inf, inf\), got nan"):
        f(LOGITS, LABELS, margin=math.nan)
    with pytest.raises(TypeError, match=r"margin must be a real number"):
        f(LOGITS, LABELS, margin="1")


def test_multiclass_hinge_errors_on_torch():
    with pytest.raises(ValueError, match=r"targets\[0\] = 7 is out of range for 5 classes"):
        anyloss.multiclass_hinge_loss(torch.zeros(N, C), torch.tensor([7, 0, 0, 0]))
    with pytest.raises(TypeError, match=r"integer dtype"):
        anyloss.multiclass_hinge_loss(torch.zeros(N, C), torch.zeros(N))


# ----------------------------------------------------------- cosine embedding

A1 = _f32(RNG.normal(size=(N, C)))
A2 = _f32(RNG.normal(size=(N, C)))
Y = _f32([1, -1, 1, -1])


def _cos_emb_ref(a, b, y, margin=0.0, reduction="none"):
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    return F.cosine_embedding_loss(_t64(a), _t64(b), y, margin=margin, reduction=reduction).numpy(
        force=True
    )


@pytest.mark.parametrize(
    ("margin", "reduction"),
    [(0.0, None), (0.0, "mean"), (0.0, "sum"), (0.5, None), (-0.5, "none")],
)
def test_cosine_embedding_matches_torch(xp, margin, reduction):
    want = _cos_emb_ref(A1, A2, Y, margin, reduction or "none")
    for dtype in _dtypes(xp):
        out = anyloss.cosine_embedding_loss(
            xp.asarray(A1, dtype), xp.asarray(A2, dtype), xp.asarray(Y), margin=margin,
            **_kw(reduction),
        )  # fmt: skip
        _close(xp, out, want, dtype)


@pytest.mark.parametrize("case", ["1d", "axis=0", "broadcast-x2", "broadcast-targets"])
def test_cosine_embedding_shapes(xp, case):
    if case == "1d":  # one pair, a 0-d target (as PyTorch takes it)
        args, kw = (A1[0], A2[0], np.float32(-1.0)), {"margin": 0.1}
        want = _cos_emb_ref(A1[0], A2[0], np.float32(-1.0), 0.1)
    elif case == "axis=0":
        args, kw = (A1.T, A2.T, Y), {"axis": 0}
        want = _cos_emb_ref(A1, A2, Y)
    elif case == "broadcast-x2":  # one vector against each row
        args, kw = (A1, A2[:1], Y), {}
        want = _cos_emb_ref(A1, A2[:1], Y)
    else:  # a single target for every pair
        args, kw = (A1, A2, np.float32(1.0)), {}
        want = _cos_emb_ref(A1, A2, np.ones(N, np.float32))
    out = anyloss.cosine_embedding_loss(*(xp.asarray(a) for a in args), **kw)
    _close(xp, out, want, "float32")


def test_cosine_embedding_broadcasts_along_the_axis():
    # x2 of size 1 along the axis is broadcast first: its norm is over C entries
    # (PyTorch's own call takes it over the single entry: a "cosine" above 1)
    a, b = _f32([[1.0, 2.0, 3.0]]), _f32([[2.0]])
    got = anyloss.cosine_embedding_loss(a, b, _f32([-1.0]))
    np.testing.assert_allclose(got, [6.0 / math.sqrt(14.0 * 3.0)], rtol=1e-6)  # cos of a, 1
    torch_own = F.cosine_embedding_loss(_t64(a), _t64(b), _t64([-1.0]), reduction="none")
    np.testing.assert_allclose(torch_own.numpy(force=True), [6.0 / math.sqrt(14.0)], rtol=1e-6)
    b = A2[:, :1]
    want = _cos_emb_ref(A1, b, Y)  # the reference broadcasts first
    np.testing.assert_allclose(anyloss.cosine_embedding_loss(A1, b, Y), want, rtol=1e-6)


def test_cosine_embedding_eps():
    """Below eps the product of the norms is replaced by eps (PyTorch instead
    adds 1e-12 to each squared norm: it has no eps argument)."""
    a = _f32([[3e-5, 4e-5], [1.0, 0.0], [0.0, 0.0]])
    b = _f32([[3e-5, 4e-5], [1.0, 0.0], [1.0, 2.0]])
    y = _f32([1, 1, 1])
    got = anyloss.cosine_embedding_loss(a, b, y, eps=1e-8)
    # |a| |b| = 2.5e-9 < eps: cos = (9e-10 + 16e-10) / 1e-8 = 0.25
    np.testing.assert_allclose(got, [0.75, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(anyloss.cosine_embedding_loss(a, b, y, eps=1e-10)[0], 0.0)
    sq = float(np.sum(a[0].astype(np.float64) ** 2))  # about 2.5e-9
    tiny = float(np.float32(1e-12))  # PyTorch's constant is a float32
    torch_value = _cos_emb_ref(a, b, y)[0]  # cos = sq / sqrt((sq + 1e-12)^2) = 0.9996
    np.testing.assert_allclose(torch_value, 1.0 - sq / (sq + tiny), rtol=1e-9)


def test_cosine_embedding_gradient(grad_xp):
    a64 = _t64(A1).requires_grad_(True)
    F.cosine_embedding_loss(a64, _t64(A2), _t64(Y), margin=-0.2, reduction="sum").backward()
    b, y = grad_xp.asarray(A2), grad_xp.asarray(Y)
    got = grad_xp.grad(lambda v: anyloss.cosine_embedding_loss(v, b, y, margin=-0.2), A1)
    np.testing.assert_allclose(got, a64.grad.numpy(force=True), rtol=1e-5, atol=1e-6)


def test_cosine_embedding_gradient_is_finite_at_zero_vectors(grad_xp):
    a = A1.copy()
    a[0] = 0.0
    b, y = grad_xp.asarray(A2), grad_xp.asarray(_f32([1, -1, 1, 1]))
    got = grad_xp.grad(lambda v: anyloss.cosine_embedding_loss(v, b, y), a)
    assert np.isfinite(got).all()
    # at x1 = 0 the loss is 1 - x1 . x2 / eps: gradient -x2 / eps
    np.testing.assert_allclose(got[0], -A2[0] / 1e-8, rtol=1e-5)


def test_cosine_embedding_errors():
    f = anyloss.cosine_embedding_loss
    with pytest.raises(ValueError, match=r"cosine_embedding_loss\(\): invalid reduction 'avg'"):
        f(A1, A2, Y, reduction="avg")
    with pytest.raises(ValueError, match=r"targets\[2\] = 0 is not 1 or -1.*2 \* t - 1"):
        f(A1, A2, _f32([1, -1, 0, 1]))
    with pytest.raises(ValueError, match=r"targets\[1\] = nan is not 1 or -1"):
        f(A1, A2, _f32([1, np.nan, 1, 1]))
    with pytest.raises(ValueError, match=r"margin must be in \[-1, 1\], got 1\.5"):
        f(A1, A2, Y, margin=1.5)
    with pytest.raises(ValueError, match=r"eps must be in \[0, inf\), got -1"):
        f(A1, A2, Y, eps=-1.0)
    with pytest.raises(
        ValueError, match=r"cannot be broadcast.*x1\.shape=\(4, 5\), x2\.shape=\(3, 5\)"
    ):
        f(A1, A2[:3], Y)
    with pytest.raises(
        ValueError, match=r"targets\.shape=\(3,\) does not match x1\.shape=\(4, 5\) without axis"
    ):
        f(A1, A2, Y[:3])
    with pytest.raises(ValueError, match=r"targets\.shape=\(4, 1\) does not match"):
        f(A1, A2, Y[:, None])
    with pytest.raises(IndexError, match=r"axis 2 is out of range for x1 with 2 dim"):
        f(A1, A2, Y, axis=2)


def test_cosine_embedding_sign_check_on_torch():
    with pytest.raises(ValueError, match=r"targets\[0\] = 0 is not 1 or -1"):
        anyloss.cosine_embedding_loss(torch.ones(2, 3), torch.ones(2, 3), torch.tensor([0, 1]))


def test_half_precision_in_and_out():
    """float16 / bfloat16 in: computed in float32 or wider, returned as given."""
    calls = [
        (anyloss.squared_hinge_loss, (X, T_SIGNS), {}, _sq_hinge_ref),
        (anyloss.multiclass_hinge_loss, (LOGITS, LABELS), {}, _mc_hinge_ref),
        (anyloss.cosine_embedding_loss, (A1, A2, Y), {"margin": 0.25}, _cos_emb_ref),
    ]
    for fn, args, kw, ref in calls:
        # float arguments of one dtype (a float32 target would promote the result)
        half = [a.astype(np.float16) if a.dtype.kind == "f" else a for a in args]
        want = np.asarray(
            ref(*(a.astype(np.float32) if a.dtype.kind == "f" else a for a in half), *kw.values())
        )
        out = fn(*half, **kw)
        assert out.dtype == np.float16
        np.testing.assert_allclose(out, want, rtol=1e-3, atol=1e-3)
        bf = [torch.tensor(a) for a in args]
        bf = [a.to(torch.bfloat16) if a.is_floating_point() else a for a in bf]
        want = np.asarray(
            ref(
                *(a.float().numpy(force=True) if a.is_floating_point() else a for a in bf),
                *kw.values(),
            )
        )
        out = fn(*bf, **kw)
        assert out.dtype == torch.bfloat16
        np.testing.assert_allclose(out.float().numpy(force=True), want, rtol=1e-2, atol=1e-2)


# ----------------------------------------------------------------- transforms


def test_jax_jit_all_three():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    @jax.jit
    def run(x, t, logits, labels, a, b, y):
        return (
            anyloss.squared_hinge_loss(x, t, reduction="mean"),
            anyloss.multiclass_hinge_loss(logits, labels, margin=0.5),
            anyloss.cosine_embedding_loss(a, b, y, margin=0.25),
        )

    args = (X, T_SIGNS, LOGITS, LABELS.astype(np.int32), A1, A2, Y)
    sq, mc, ce = run(*map(jnp.asarray, args))
    np.testing.assert_allclose(np.asarray(sq), _sq_hinge_ref(X, T_SIGNS, "mean"), rtol=1e-6)
    want = _mc_hinge_ref(LOGITS, LABELS, margin=0.5).numpy(force=True)
    np.testing.assert_allclose(np.asarray(mc), want, rtol=1e-6, atol=1e-6)
    want = _cos_emb_ref(A1, A2, Y, 0.25)
    np.testing.assert_allclose(np.asarray(ce), want, rtol=1e-5, atol=1e-6)
    # out-of-range indices cannot be checked under jit: no error, no broken trace
    g = jax.jit(jax.grad(lambda v, t: anyloss.multiclass_hinge_loss(v, t, reduction="sum")))(
        jnp.asarray(LOGITS), jnp.asarray(LABELS.astype(np.int32))
    )
    assert np.isfinite(np.asarray(g)).all()


def test_mx_compile():
    mx = pytest.importorskip("mlx.core")
    labels, b, y = mx.array(LABELS), mx.array(A2), mx.array(Y)
    f = mx.compile(
        lambda v, a: (
            anyloss.multiclass_hinge_loss(v, labels),
            anyloss.cosine_embedding_loss(a, b, y),
        )
    )
    for _ in range(2):
        mc, ce = f(mx.array(LOGITS), mx.array(A1))
        np.testing.assert_allclose(
            np.array(mc), _mc_hinge_ref(LOGITS, LABELS).numpy(force=True), 1e-5
        )
        np.testing.assert_allclose(np.array(ce), _cos_emb_ref(A1, A2, Y), rtol=1e-5, atol=1e-6)


def test_dask_is_lazy():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")

    def refuse(dsk, keys, **kwargs):
        raise AssertionError("anyloss computed the Dask graph")

    d = lambda a: da.from_array(a, chunks=2)  # noqa: E731
    with dask.config.set(scheduler=refuse):
        sq = anyloss.squared_hinge_loss(d(X), d(T_SIGNS), reduction="sum")
        # out-of-range indices are not checked on Dask (that would compute)
        bad = anyloss.multiclass_hinge_loss(d(LOGITS), d(np.array([0, 9, 1, 2])))
        mc = anyloss.multiclass_hinge_loss(d(LOGITS), d(LABELS), margin=2.0, reduction="mean")
        ce = anyloss.cosine_embedding_loss(d(A1), d(A2), d(Y), margin=0.5)
    for out in (sq, bad, mc, ce):
        assert isinstance(out, da.Array) and out.dtype == np.float32
    np.testing.assert_allclose(sq.compute(), _sq_hinge_ref(X, T_SIGNS, "sum"), rtol=1e-6)
    want = _mc_hinge_ref(LOGITS, LABELS, margin=2.0, reduction="mean").numpy(force=True)
    np.testing.assert_allclose(mc.compute(), want, rtol=1e-6)
    np.testing.assert_allclose(ce.compute(), _cos_emb_ref(A1, A2, Y, 0.5), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------- accuracy


def _exact(fn, *args):
    """``fn`` at 50 digits, checked against 80 digits (30 digits must agree)."""
    with mpmath.workdps(50):
        lo = fn(*args)
    with mpmath.workdps(80):
        hi = fn(*args)
        assert abs(lo - hi) <= abs(hi) * mpmath.mpf(10) ** -30 + mpmath.mpf(10) ** -60
    return hi


def _mp(v):
    return mpmath.mpf(float(v))


def _ref_sq_hinge(x, t):
    return max(mpmath.mpf(0), 1 - _mp(x) * _mp(t)) ** 2


def _ref_mc_hinge(row, y, margin):
    rival = max(_mp(v) for c, v in enumerate(row) if c != y)
    return max(mpmath.mpf(0), _mp(margin) + rival - _mp(row[y]))


def _ref_cos_emb(a, b, y, margin, eps=1e-8):
    a, b = [_mp(v) for v in a], [_mp(v) for v in b]
    dot = mpmath.fsum(u * v for u, v in zip(a, b, strict=True))
    sq = mpmath.fsum(u * u for u in a) * mpmath.fsum(v * v for v in b)  # exact
    norms = mpmath.sqrt(sq)
    if norms < eps:
        cos = dot / _mp(eps)
        return 1 - cos if y == 1 else max(mpmath.mpf(0), cos - _mp(margin))
    if y == 1:  # 1 - cos = (|a|^2 |b|^2 - (a.b)^2) / (|a| |b| (|a| |b| + a.b)): 0 if parallel
        return (sq - dot * dot) / (norms * (norms + dot))
    return max(mpmath.mpf(0), dot / norms - _mp(margin))


def _regime(name):
    """(loss, float32 arguments, kwargs) of one accuracy regime."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n, d = 64, 8
    if name.startswith("squared_hinge"):
        t = _f32(np.where(rng.random(n) < 0.5, -1.0, 1.0))
        if name == "squared_hinge-ordinary":
            x = rng.normal(0.0, 2.0, n)
        elif name == "squared_hinge-threshold":  # x t within a few ulp of 1
            x = t * (1.0 + rng.integers(-40, 3, n) * 2.0**-24)
        else:  # huge: squares of 1e15..1e19
            x = -t * 10.0 ** rng.uniform(15, 19, n)
        return "squared_hinge_loss", (_f32(x), t), {}
    if name.startswith("multiclass_hinge"):
        y = rng.integers(0, d, n)
        x = rng.normal(0.0, 1.0, (n, d))
        margin = 1.0
        if name == "multiclass_hinge-near_margin":
            # rival - target = -margin + a few ulp: the loss nearly vanishes
            margin = 0.1
            x = np.minimum(x, 1.5)
            best = (y + rng.integers(1, d, n)) % d  # the rival, never the target
            x[np.arange(n), y] = 1.7
            x[np.arange(n), best] = _f32(1.6) + rng.integers(-20, 40, n) * 2.0**-23
        elif name == "multiclass_hinge-huge":
            x = x * 1e30
        elif name == "multiclass_hinge-offset_1e6":
            x = x + 1e6
        return "multiclass_hinge_loss", (_f32(x), y), {"margin": margin}
    # cosine embedding
    a = rng.normal(size=(n, d))
    y = _f32(np.where(rng.random(n) < 0.5, -1.0, 1.0))
    margin = 0.0
    if name == "cosine_embedding-ordinary":
        b = rng.normal(size=(n, d))
        margin = -0.3
    elif name == "cosine_embedding-near_parallel":
        y = np.ones(n, np.float32)
        rel = 10.0 ** rng.uniform(-7, -2, (n, 1)) * rng.normal(size=(n, d))
        b = _f32(a) * (1.0 + rel) * rng.uniform(0.1, 10.0, (n, 1))
    elif name == "cosine_embedding-parallel":  # 1 - cos = 0 exactly
        y = np.ones(n, np.float32)
        a = np.round(a * 1024) / 1024
        b = a * rng.choice([3.0, 0.75, 5.0, 1 / 1024], (n, 1))  # exact in float32
    elif name == "cosine_embedding-near_orthogonal":
        y = -np.ones(n, np.float32)
        b = rng.normal(size=(n, d))
        a32, b32 = _f32(a), _f32(b)
        b = b32 - a32 * (np.sum(a32 * b32, axis=1, keepdims=True) / np.sum(a32 * a32, 1)[:, None])
        b = b + 1e-4 * np.abs(rng.normal(size=(n, d))) * a32  # small positive cosines
    elif name == "cosine_embedding-near_margin":
        y = -np.ones(n, np.float32)
        margin = 0.5
        u = rng.normal(size=(n, d))
        u -= a * (np.sum(a * u, 1) / np.sum(a * a, 1))[:, None]
        u *= np.linalg.norm(a, axis=1, keepdims=True) / np.linalg.norm(u, axis=1, keepdims=True)
        angle = np.arccos(0.5 + rng.uniform(-1e-5, 1e-5, (n, 1)))
        b = a * np.cos(angle) + u * np.sin(angle)
    elif name == "cosine_embedding-huge_1e20":
        a, b = a * 1e20, (a + 0.1 * rng.normal(size=(n, d))) * 1e20
    elif name == "cosine_embedding-tiny_1e-20":
        a, b = a * 1e-20, (a + 0.1 * rng.normal(size=(n, d))) * 3e-20
    else:
        raise AssertionError(name)
    return "cosine_embedding_loss", (_f32(a), _f32(b), y), {"margin": margin}


def _reference(name):
    loss, args, kw = _regime(name)
    if loss == "squared_hinge_loss":
        return [_exact(_ref_sq_hinge, x, t) for x, t in zip(*args, strict=True)]
    if loss == "multiclass_hinge_loss":
        x, y = args
        return [_exact(_ref_mc_hinge, r, int(c), kw["margin"]) for r, c in zip(x, y, strict=True)]
    a, b, y = args
    return [
        _exact(_ref_cos_emb, u, v, float(s), kw["margin"]) for u, v, s in zip(a, b, y, strict=True)
    ]


# Worst ulp on (JAX float32 with x64 off, MLX CPU float32), measured with
# jax 0.10.2 / mlx 0.32.4 on Linux x86-64 (value in the comment); NumPy,
# PyTorch and Dask compute in float64 and are held to 4 ulp. The float32-only
# cosine embedding carries double words (unit vectors as double-word
# quotients, cos and the margin as double words): before that, 1 - cos of
# vectors at angle 1e-7 was 1.6e7 ulp off, near-orthogonal cosines 2e4 and
# cos - margin 2.4e6.
FLOAT32_BOUNDS = {
    "squared_hinge-ordinary": (4, 4),  # 1.9, 1.9
    "squared_hinge-threshold": (4, 4),  # 0, 0
    "squared_hinge-huge": (4, 4),  # 0.5, 0.5
    "multiclass_hinge-ordinary": (4, 4),  # 0.5, 0.5
    "multiclass_hinge-near_margin": (4, 4),  # 0.4, 0.4 (error-free sums)
    "multiclass_hinge-huge": (4, 4),  # 0.5, 0.5
    "multiclass_hinge-offset_1e6": (4, 4),  # 0, 0
    "cosine_embedding-ordinary": (4, 4),  # 0.5, 0.5
    "cosine_embedding-near_parallel": (4, 4),  # 0.56, 0.66 (was 1.6e7, 5.3e6)
    "cosine_embedding-parallel": (math.inf, math.inf),  # see PARALLEL_FLOAT32_ABS
    "cosine_embedding-near_orthogonal": (4, 4),  # 0.49, 0.49 (was 2e4, 1.6e4)
    "cosine_embedding-near_margin": (4, 4),  # 0.51, 0.51 (was 2.4e6, 2.4e6)
    "cosine_embedding-huge_1e20": (4, 4),  # 0.47, 0.47 (was 21, 12)
    "cosine_embedding-tiny_1e-20": (4, 4),  # 1.9, 0.5
}
# Exactly parallel vectors (x2 = k x1, k not a power of two) give 1 - cos = 0
# in float64 (NumPy, PyTorch, Dask). In float32 alone the unit vectors are
# double words, equal to about 2^-48: their difference squared leaves about
# 2^-96 (measured 7.6e-29 on JAX, 1.3e-28 on MLX), the absolute error asserted
# (JAX with x64 divides by the scale through its reciprocal: about 1e-31).
PARALLEL_FLOAT32_ABS = 2.0**-88
REGIMES = list(FLOAT32_BOUNDS)


@pytest.fixture(scope="module")
def exact_values():
    return {name: _reference(name) for name in REGIMES}


@pytest.mark.parametrize("name", REGIMES)
def test_accuracy(xp, name, exact_values):
    if xp.name in ("numpy_readonly", "array_api_strict", "cupy"):
        pytest.skip("same arithmetic as numpy")
    loss, args, kw = _regime(name)
    out = getattr(anyloss, loss)(*(xp.asarray(a) for a in args), **kw, reduction="none")
    got = xp.to_numpy(out).astype(np.float64)
    errs = [A.ulp_error(g, e) for g, e in zip(got, exact_values[name], strict=True)]
    worst = max(errs)
    if xp.name in ("jax", "mlx") and not xp.has_float64:
        bound = FLOAT32_BOUNDS[name][0 if xp.name == "jax" else 1]
    else:
        bound = 4
    i = int(np.argmax(errs))
    if name == "cosine_embedding-parallel" and xp.name in ("jax", "mlx"):
        assert np.abs(got).max() <= PARALLEL_FLOAT32_ABS, f"{name} on {xp.name}: {got[i]!r}"
        assert np.all(got >= 0)
        return
    assert worst <= bound, f"{name} on {xp.name}: {worst:.3g} ulp at [{i}]: got {got[i]!r}"

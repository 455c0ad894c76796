"""Parity of ``anyloss.losses`` with ``mlx.nn.losses``, on every array library.

Each case calls ``anyloss.losses.<name>`` with inputs of the library under test
(the ``xp`` fixture) and ``mlx.nn.losses.<name>`` with the same float32 values
as ``mx.array``, then checks that anyloss

* returns an array of the caller's library (``xp.to_numpy`` asserts that),
* of dtype float32 (float32 in, float32 out) and of MLX's shape (a 0-d array
  for ``'mean'`` / ``'sum'``),
* whose values equal MLX's to float32 tolerance.

Where MLX's float32 transcription is *less* exact than the spec demands
(confident BCE, ``0 log 0`` terms, overflow of ``1e20**2``, cancellation in
``log_cosh`` for tiny errors, sequential float32 means), the case is compared
with a float64 NumPy evaluation of the same formula instead; those cases say so
in their ``note``.

Gradients with respect to the first argument (torch, jax, mlx) are compared
with ``mx.grad`` of MLX's loss; errors with the exception MLX raises.

Shapes are limited to a handful ((7,), (4, 5), (2, 3, 5) and their
broadcasting partners) so JAX compiles few kernels and the file stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
mlx_losses = pytest.importorskip("mlx.nn.losses")

import anyloss  # noqa: E402
from anyloss import losses as al  # noqa: E402

FUNCTIONS = (
    "binary_cross_entropy",
    "cosine_similarity_loss",
    "cross_entropy",
    "gaussian_nll_loss",
    "hinge_loss",
    "huber_loss",
    "kl_div_loss",
    "l1_loss",
    "log_cosh_loss",
    "margin_ranking_loss",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
    "triplet_loss",
)

REDUCTIONS = (None, "none", "mean", "sum")  # None: MLX's default, argument omitted

_RNG = np.random.default_rng(20261123)

S1, S2, S3 = (7,), (4, 5), (2, 3, 5)


# --------------------------------------------------------------------------- data


def f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def randn(*shape: int, scale: float = 1.0) -> np.ndarray:
    return f32(_RNG.standard_normal(shape) * scale)


def uniform(lo: float, hi: float, *shape: int) -> np.ndarray:
    return f32(_RNG.uniform(lo, hi, shape))


def labels(n: int, *shape: int) -> np.ndarray:
    return _RNG.integers(0, n, shape).astype(np.int64)


def signs(*shape: int) -> np.ndarray:
    return f32(np.where(_RNG.random(shape) < 0.5, -1.0, 1.0))


def bits(*shape: int) -> np.ndarray:
    return f32(_RNG.random(shape) < 0.5)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x64 = x.astype(np.float64)
    z = x64 - x64.max(axis=axis, keepdims=True)
    return f32(z - np.log(np.exp(z).sum(axis=axis, keepdims=True)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return f32(np.exp(log_softmax(x, axis).astype(np.float64)))


# --------------------------------------------------------------- float64 references
# Used only where MLX's float32 transcription is knowingly inexact.


def _f64(args: tuple[Any, ...]) -> list[Any]:
    return [a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in args]


def _reduce64(loss: np.ndarray, reduction: str | None, default: str) -> np.ndarray:
    reduction = default if reduction is None else reduction
    if reduction == "mean":
        return np.asarray(loss.mean())
    if reduction == "sum":
        return np.asarray(loss.sum())
    return loss


def ref_bce_logits(x, t, reduction=None):
    loss = t * np.logaddexp(0.0, -x) + (1 - t) * np.logaddexp(0.0, x)
    return _reduce64(loss, reduction, "mean")


def ref_cross_entropy_probs(x, p, axis=-1, reduction=None):
    with np.errstate(invalid="ignore"):
        z = x - x.max(axis=axis, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=axis))
        score = np.where(p == 0, 0.0, p * z).sum(axis=axis)
    return _reduce64(lse - score, reduction, "none")


def ref_cosine(a, b, axis=1, eps=1e-8, reduction=None):
    # float64 holds 1e40 (the square of 1e20) without overflow
    dot = (a * b).sum(axis=axis)
    norms = np.sqrt((a * a).sum(axis=axis)) * np.sqrt((b * b).sum(axis=axis))
    return _reduce64(dot / np.maximum(norms, eps), reduction, "none")


def ref_kl(x, t, axis=-1, reduction=None):
    with np.errstate(invalid="ignore"):
        terms = np.where(np.isneginf(t), 0.0, np.exp(t) * (t - x))
    return _reduce64(terms.sum(axis=axis), reduction, "none")


def ref_log_cosh(x, t, reduction=None):
    a = np.abs(x - t)
    with np.errstate(over="ignore"):
        small = np.log1p(2.0 * np.sinh(np.minimum(a, 20.0) / 2.0) ** 2)
    large = a - math.log(2.0) + np.log1p(np.exp(-2.0 * a))
    return _reduce64(np.where(a < 20.0, small, large), reduction, "none")


def ref_triplet(a, pos, neg, axis=-1, p=2, margin=1.0, eps=1e-6, reduction=None):
    def dist(u, v):
        return ((np.abs(u - v) ** p).sum(axis=axis) + eps) ** (1.0 / p)

    loss = np.maximum(dist(a, pos) - dist(a, neg) + margin, 0.0)
    return _reduce64(loss, reduction, "none")


def ref_l1(p, t, reduction=None):
    return _reduce64(np.abs(p - t), reduction, "mean")


def ref_mse(p, t, reduction=None):
    return _reduce64((p - t) ** 2, reduction, "mean")


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    fn: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    ref: Callable[..., np.ndarray] | None = None  # float64 reference instead of MLX
    note: str = ""  # why ``ref`` replaces MLX
    grad: bool = True  # smooth enough here for a gradient comparison
    rtol: float = 2e-5
    atol: float = 1e-6  # scaled by max(1, max |expected|)
    check: Callable[[np.ndarray], None] | None = None  # extra assertion on the result
    xfail: dict[str, str] = field(default_factory=dict)  # backend -> known anyloss bug


CASES: list[Any] = []


def add(id: str, fn: str, *args: Any, marks: Any = (), **kw: Any) -> None:
    kwargs = kw.pop("kwargs", {})
    CASES.append(pytest.param(Case(fn, args, kwargs, **kw), id=f"{fn}-{id}", marks=marks))


def add_reductions(id: str, fn: str, *args: Any, **kwargs: Any) -> None:
    """One case per reduction, the default (argument omitted) included."""
    for r in REDUCTIONS:
        kw = dict(kwargs) if r is None else {**kwargs, "reduction": r}
        # 'none' and 'sum' have the same gradient (of the sum); keep JAX's
        # per-shape compilation down by differentiating the others only.
        add(f"{id}-{r or 'default'}", fn, *args, kwargs=kw, grad=r in (None, "mean"))


# binary_cross_entropy (default reduction 'mean') ------------------------------------
fn = "binary_cross_entropy"
add_reductions("logits-2d", fn, randn(*S2, scale=2), bits(*S2))
add_reductions("probs-2d", fn, uniform(0.02, 0.98, *S2), bits(*S2), with_logits=False)
add("logits-1d", fn, randn(*S1, scale=2), bits(*S1), kwargs={"reduction": "none"})
add("logits-3d", fn, randn(*S3, scale=2), bits(*S3), kwargs={"reduction": "none"})
add(
    "probs-3d",
    fn,
    uniform(0.02, 0.98, *S3),
    bits(*S3),
    kwargs={"with_logits": False, "reduction": "none"},
)
add("soft-targets", fn, randn(*S2, scale=2), uniform(0, 1, *S2), kwargs={"reduction": "none"})
add(
    "soft-targets-probs",
    fn,
    uniform(0.02, 0.98, *S2),
    uniform(0, 1, *S2),
    kwargs={"with_logits": False, "reduction": "none"},
)
add("with_logits=True-explicit", fn, randn(*S1), bits(*S1), kwargs={"with_logits": True})
for r in ("none", "mean", "sum"):
    add(
        f"weights-logits-{r}",
        fn,
        randn(*S2, scale=2),
        bits(*S2),
        kwargs={"weights": uniform(0, 2, *S2), "reduction": r},
    )
    add(
        f"weights-probs-{r}",
        fn,
        uniform(0.02, 0.98, *S2),
        bits(*S2),
        kwargs={"weights": uniform(0, 2, *S2), "with_logits": False, "reduction": r},
    )
add("weights-default-reduction", fn, randn(*S1), bits(*S1), kwargs={"weights": uniform(0, 2, *S1)})
add(
    "doc-example-logits",
    fn,
    f32([0.105361, 0.223144, 1.20397, 0.916291]),
    f32([0, 0, 1, 1]),
    grad=False,
    check=lambda r: np.testing.assert_allclose(r, 0.539245, rtol=1e-5),
)
add(
    "doc-example-probs",
    fn,
    f32([0.1, 0.1, 0.4, 0.4]),
    f32([0, 0, 1, 1]),
    kwargs={"with_logits": False},
    grad=False,
    check=lambda r: np.testing.assert_allclose(r, 0.510826, rtol=1e-5),
)
# Confident logits: MLX computes log(1 + e^x) - x t and returns 0 for x = 30,
# t = 1 (exact 9.36e-14); anyloss must return the exact value -> float64 reference.
_confident = f32([30.0, -30.0, 100.0, -100.0, 1e4, -1e4, 30.0])
_confident_t = f32([1, 0, 1, 0, 1, 0, 0])
add(
    "confident-logits",
    fn,
    _confident,
    _confident_t,
    kwargs={"reduction": "none"},
    ref=ref_bce_logits,
    note="MLX rounds 9.36e-14 to 0",
    grad=False,
    atol=0.0,
)
add(
    "confident-correct-sum",
    fn,
    f32([30.0, -30.0, 17.0, -17.0, 25.0, -25.0, 20.0]),
    f32([1, 0, 1, 0, 1, 0, 1]),
    kwargs={"reduction": "sum"},
    ref=ref_bce_logits,
    note="MLX rounds these terms to 0 (or to a few ulp of 1)",
    grad=False,
)
add(
    "huge-logits",
    fn,
    f32([1e20, -1e20, 3e38, -3e38, 1e20, -1e20, 0.0]),
    f32([0, 1, 0, 1, 1, 0, 1]),
    kwargs={"reduction": "none"},
    grad=False,
)


def _bounded_by_100(r: np.ndarray) -> None:
    assert np.all(np.isfinite(r)), r
    assert np.all(r <= 100.0 * (1 + 1e-6)), r


# Probabilities exactly 0 and 1: the log is clipped at -100, so every term is finite.
add(
    "probs-exact-0-and-1",
    fn,
    f32([0.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0]),
    f32([1.0, 0.0, 0.0, 1.0, 1.0, 0.3, 0.7]),
    kwargs={"with_logits": False, "reduction": "none"},
    grad=False,
    check=_bounded_by_100,
)
add(
    "probs-exact-0-and-1-mean",
    fn,
    f32([[0.0, 1.0], [1.0, 0.0]]),
    f32([[1.0, 0.0], [1.0, 0.0]]),
    kwargs={"with_logits": False},
    grad=False,
)

# cross_entropy (default 'none') ------------------------------------------------------
fn = "cross_entropy"
add_reductions("indices-2d", fn, randn(*S2, scale=2), labels(5, 4))
add_reductions("probs-2d", fn, randn(*S2, scale=2), softmax(randn(*S2)))
add("indices-1d", fn, randn(*S1, scale=2), np.array(3, dtype=np.int64), grad=False)
add("indices-int32", fn, randn(*S2, scale=2), labels(5, 4).astype(np.int32), grad=False)
add("indices-3d-axis-1", fn, randn(*S3, scale=2), labels(5, 2, 3))
add("indices-3d-axis=1", fn, randn(*S3, scale=2), labels(3, 2, 5), kwargs={"axis": 1})
add("indices-3d-axis=0", fn, randn(*S3, scale=2), labels(2, 3, 5), kwargs={"axis": 0})
add("indices-2d-axis=0", fn, randn(*S2, scale=2), labels(4, 5), kwargs={"axis": 0}, grad=False)
add(
    "indices-3d-axis=-2", fn, randn(*S3, scale=2), labels(3, 2, 5), kwargs={"axis": -2}, grad=False
)
add("probs-3d-axis=1", fn, randn(*S3, scale=2), softmax(randn(*S3), axis=1), kwargs={"axis": 1})
add("probs-3d-axis=-1", fn, randn(*S3, scale=2), softmax(randn(*S3)), kwargs={"reduction": "sum"})
add("one-hot", fn, randn(*S2, scale=2), f32(np.eye(5)[labels(5, 4)]), grad=False)
for r in ("none", "mean", "sum"):
    add(
        f"weights-indices-{r}",
        fn,
        randn(*S2, scale=2),
        labels(5, 4),
        kwargs={"weights": uniform(0, 2, 4), "reduction": r},
    )
add(
    "weights-probs-3d",
    fn,
    randn(*S3, scale=2),
    softmax(randn(*S3)),
    kwargs={"weights": uniform(0, 2, 2, 3)},
)
add(
    "weights-axis=0",
    fn,
    randn(*S2, scale=2),
    labels(4, 5),
    kwargs={"weights": uniform(0, 2, 5), "axis": 0, "reduction": "mean"},
)
for s in (0.1, 0.5, 0.95):
    add(
        f"label_smoothing={s}-indices",
        fn,
        randn(*S2, scale=2),
        labels(5, 4),
        kwargs={"label_smoothing": s},
    )
add(
    "label_smoothing-probs",
    fn,
    randn(*S2, scale=2),
    softmax(randn(*S2)),
    kwargs={"label_smoothing": 0.2},
)
add(
    "label_smoothing-axis=0-3d",
    fn,
    randn(*S3, scale=2),
    labels(2, 3, 5),
    kwargs={"label_smoothing": 0.3, "axis": 0, "reduction": "mean"},
)
add(
    "label_smoothing-weights-sum",
    fn,
    randn(*S2, scale=2),
    labels(5, 4),
    kwargs={"label_smoothing": 0.1, "weights": uniform(0, 2, 4), "reduction": "sum"},
)
add(
    "label_smoothing=0.0-explicit",
    fn,
    randn(*S2, scale=2),
    labels(5, 4),
    kwargs={"label_smoothing": 0.0},
)
# Large offsets: the loss depends only on differences between logits.
_base = randn(*S2, scale=2)
for off in (1e4, -1e4):
    add(f"offset-{off:g}-indices", fn, f32(_base + off), labels(5, 4), grad=False)
    add(f"offset-{off:g}-probs", fn, f32(_base + off), softmax(randn(*S2)), grad=False)
    add(
        f"offset-{off:g}-smoothing",
        fn,
        f32(_base + off),
        labels(5, 4),
        kwargs={"label_smoothing": 0.25},
        grad=False,
    )


def _all_log5(r: np.ndarray) -> None:
    np.testing.assert_allclose(r, np.full(r.shape, math.log(5.0)), rtol=1e-6)


# Equal logits of any magnitude give log(C).
_equal = f32(np.array([0.0, 1e4, 1e20, -1e20, 3e38, -3e38])[:, None] * np.ones(5))
add("equal-logits-any-magnitude", fn, _equal, labels(5, 6), grad=False, check=_all_log5)
add(
    "equal-logits-any-magnitude-probs",
    fn,
    _equal,
    softmax(randn(6, 5)),
    grad=False,
    check=_all_log5,
)
add(
    "equal-logits-smoothing",
    fn,
    _equal,
    labels(5, 6),
    kwargs={"label_smoothing": 0.4},
    grad=False,
    check=_all_log5,
)
# -inf logits: a -inf non-target logit is fine; a -inf target logit gives +inf.
_neginf = randn(*S2, scale=2)
_neginf[0, 1] = _neginf[1, 0] = _neginf[1, 4] = _neginf[3, 2] = -np.inf
add(
    "neg-inf-non-target",
    fn,
    _neginf,
    np.array([0, 2, 3, 1]),
    grad=False,
    check=lambda r: np.testing.assert_array_equal(np.isfinite(r), True),
)
add(
    "neg-inf-target",
    fn,
    _neginf,
    np.array([1, 0, 3, 2]),
    grad=False,
    check=lambda r: np.testing.assert_array_equal(np.isposinf(r), [True, True, False, True]),
)
# Probability targets that are exactly 0 where the logit is -inf: 0 log 0 = 0.
# MLX (and PyTorch) return NaN (0 * -inf); the spec asks for the exact value.
_probs0 = softmax(randn(*S2))
_probs0[0, 1] = _probs0[1, 0] = _probs0[1, 4] = _probs0[3, 2] = 0.0
_probs0 = f32(_probs0 / _probs0.sum(-1, keepdims=True))
add(
    "neg-inf-logit-zero-prob",
    fn,
    _neginf,
    _probs0,
    ref=ref_cross_entropy_probs,
    note="MLX: 0 * -inf = NaN",
    grad=False,
)

# nll_loss (default 'none') -----------------------------------------------------------
fn = "nll_loss"
add_reductions("2d", fn, log_softmax(randn(*S2)), labels(5, 4))
add("1d", fn, log_softmax(randn(*S1)), np.array(2, dtype=np.int64))
add("3d", fn, log_softmax(randn(*S3)), labels(5, 2, 3))
add("3d-axis=1", fn, log_softmax(randn(*S3), 1), labels(3, 2, 5), kwargs={"axis": 1})
add(
    "3d-axis=0",
    fn,
    log_softmax(randn(*S3), 0),
    labels(2, 3, 5),
    kwargs={"axis": 0, "reduction": "mean"},
)
add("2d-axis=0", fn, log_softmax(randn(*S2), 0), labels(4, 5), kwargs={"axis": 0})
add("int32-targets", fn, log_softmax(randn(*S2)), labels(5, 4).astype(np.int32))
add("broadcast-targets-(2,1)", fn, log_softmax(randn(*S3)), labels(5, 2, 1))
add(
    "broadcast-targets-(1,3)",
    fn,
    log_softmax(randn(*S3)),
    labels(5, 1, 3),
    kwargs={"reduction": "sum"},
)

# hinge_loss (default 'none') ---------------------------------------------------------
fn = "hinge_loss"
add_reductions("2d", fn, randn(*S2, scale=2), signs(*S2))
add("1d", fn, randn(*S1, scale=2), signs(*S1))
add("3d", fn, randn(*S3, scale=2), signs(*S3))
add("broadcast-targets-(5,)", fn, randn(*S2, scale=2), signs(5))
add("broadcast-inputs-(4,1)", fn, randn(4, 1, scale=2), signs(*S2), kwargs={"reduction": "sum"})
add("broadcast-scalar-target", fn, randn(*S3, scale=2), f32(-1.0))

# huber_loss (default 'none') ---------------------------------------------------------
fn = "huber_loss"
add_reductions("2d", fn, randn(*S2, scale=2), randn(*S2))
add("1d", fn, randn(*S1, scale=2), randn(*S1))
add("3d", fn, randn(*S3, scale=2), randn(*S3))
for d in (0.5, 2.0, 1e-3):
    add(f"delta={d:g}", fn, randn(*S2, scale=2), randn(*S2), kwargs={"delta": d})
add(
    "delta=0.5-mean",
    fn,
    randn(*S3, scale=2),
    randn(*S3),
    kwargs={"delta": 0.5, "reduction": "mean"},
)
add("broadcast-(5,)", fn, randn(*S2, scale=2), randn(5))
add("broadcast-(4,1)", fn, randn(4, 1, scale=2), randn(*S2), kwargs={"delta": 0.7})

# log_cosh_loss (default 'none') ------------------------------------------------------
fn = "log_cosh_loss"
add_reductions("2d", fn, randn(*S2, scale=2), randn(*S2))
add("1d", fn, randn(*S1, scale=2), randn(*S1))
add("3d", fn, randn(*S3, scale=3), randn(*S3))
add("broadcast-(5,)", fn, randn(*S2, scale=2), randn(5))
add("broadcast-(4,1)", fn, randn(4, 1, scale=2), randn(*S2), kwargs={"reduction": "mean"})
# Large errors: log(cosh(e)) = |e| - log 2 (no overflow). MLX is exact here too,
# but a float64 reference pins the exact value.
add(
    "large-errors",
    fn,
    f32([1e4, -1e4, 100.0, -50.0, 3e38, 88.0, 89.0]),
    f32(np.zeros(7)),
    ref=ref_log_cosh,
    note="exact value",
    grad=False,
)
# Tiny errors: MLX's logaddexp(e, -e) - log 2 cancels and goes negative
# (about -6e-8 for 1e-4); the exact value is e^2 / 2.
add(
    "tiny-errors",
    fn,
    f32([1e-4, -1e-4, 3e-3, 1e-20, 0.0, -2e-2, 1e-6]),
    f32(np.zeros(7)),
    ref=ref_log_cosh,
    note="MLX cancels to negative values",
    grad=False,
    atol=0.0,
    rtol=1e-5,
)

# kl_div_loss (default 'none') --------------------------------------------------------
fn = "kl_div_loss"
add_reductions("2d", fn, log_softmax(randn(*S2)), log_softmax(randn(*S2)))
add("1d", fn, log_softmax(randn(*S1)), log_softmax(randn(*S1)))
add("3d", fn, log_softmax(randn(*S3)), log_softmax(randn(*S3)))
add("3d-axis=1", fn, log_softmax(randn(*S3), 1), log_softmax(randn(*S3), 1), kwargs={"axis": 1})
add(
    "3d-axis=0",
    fn,
    log_softmax(randn(*S3), 0),
    log_softmax(randn(*S3), 0),
    kwargs={"axis": 0, "reduction": "sum"},
)
add("2d-axis=0", fn, log_softmax(randn(*S2), 0), log_softmax(randn(*S2), 0), kwargs={"axis": 0})
add("broadcast-targets-(5,)", fn, log_softmax(randn(*S2)), log_softmax(randn(5)))
add(
    "broadcast-inputs-(5,)",
    fn,
    log_softmax(randn(5)),
    log_softmax(randn(*S2)),
    kwargs={"reduction": "mean"},
)
# A target probability of exactly 0 (log-prob -inf): that term is 0 (0 log 0 = 0).
# MLX computes exp(-inf) * (-inf - x) = 0 * -inf = NaN.
_kl_t = softmax(randn(*S2))
_kl_t[0, 1] = _kl_t[2, 0] = _kl_t[2, 3] = 0.0
with np.errstate(divide="ignore"):
    _kl_t = f32(np.log(_kl_t / _kl_t.sum(-1, keepdims=True)))
add(
    "neg-inf-targets",
    fn,
    log_softmax(randn(*S2)),
    _kl_t,
    ref=ref_kl,
    note="MLX: 0 * -inf = NaN",
    grad=False,
)
add(
    "neg-inf-targets-sum",
    fn,
    log_softmax(randn(*S2)),
    _kl_t,
    kwargs={"reduction": "sum"},
    ref=ref_kl,
    note="MLX: 0 * -inf = NaN",
    grad=False,
)

# l1_loss, mse_loss (default 'mean') --------------------------------------------------
for fn in ("l1_loss", "mse_loss"):
    add_reductions("2d", fn, randn(*S2, scale=2), randn(*S2))
    add("1d", fn, randn(*S1, scale=2), randn(*S1), kwargs={"reduction": "none"})
    add("3d", fn, randn(*S3, scale=2), randn(*S3), kwargs={"reduction": "none"})
    add("3d-mean", fn, randn(*S3, scale=2), randn(*S3))
# The mean of many float32 losses: MLX's CPU mean sums one element after the
# other (relative error ~n eps); anyloss must be within float32 rounding of the
# float64 mean.
# (rtol 5e-7 is 4 ulp; MLX's own mean is off by ~20 ulp at this length.)
_many_p, _many_t = uniform(0.5, 1.5, 200, 500), f32(np.zeros((200, 500)))
add(
    "many-elements-mean",
    "l1_loss",
    _many_p,
    _many_t,
    ref=ref_l1,
    note="MLX sums sequentially in float32",
    grad=False,
    rtol=5e-7,
)
add(
    "many-elements-sum",
    "mse_loss",
    _many_p,
    _many_t,
    kwargs={"reduction": "sum"},
    ref=ref_mse,
    note="MLX sums sequentially in float32",
    grad=False,
    rtol=5e-7,
)

# smooth_l1_loss (default 'mean') -----------------------------------------------------
fn = "smooth_l1_loss"
add_reductions("2d", fn, randn(*S2, scale=2), randn(*S2))
add("1d", fn, randn(*S1, scale=2), randn(*S1), kwargs={"reduction": "none"})
add("3d", fn, randn(*S3, scale=2), randn(*S3), kwargs={"reduction": "none"})
for b in (0.5, 2.0, 1e-3):
    add(
        f"beta={b:g}", fn, randn(*S2, scale=2), randn(*S2), kwargs={"beta": b, "reduction": "none"}
    )
add("beta=0.5-sum", fn, randn(*S3, scale=2), randn(*S3), kwargs={"beta": 0.5, "reduction": "sum"})

# gaussian_nll_loss (default 'mean') --------------------------------------------------
fn = "gaussian_nll_loss"
add_reductions("2d", fn, randn(*S2), randn(*S2), uniform(0.1, 2.0, *S2))
add("1d", fn, randn(*S1), randn(*S1), uniform(0.1, 2.0, *S1), kwargs={"reduction": "none"})
add("3d", fn, randn(*S3), randn(*S3), uniform(0.1, 2.0, *S3), kwargs={"reduction": "none"})
for r in ("none", "mean", "sum"):
    add(
        f"full-{r}",
        fn,
        randn(*S2),
        randn(*S2),
        uniform(0.1, 2.0, *S2),
        kwargs={"full": True, "reduction": r},
    )
add(
    "full=False-explicit",
    fn,
    randn(*S2),
    randn(*S2),
    uniform(0.1, 2.0, *S2),
    kwargs={"full": False, "reduction": "none"},
)
# variances below eps are clamped to eps (the gradient w.r.t. the means is smooth)
_vars = uniform(0.1, 2.0, *S2)
_vars[0, :3] = [0.0, 1e-9, 1e-3]
_vars[2, 1] = 0.05
for e in (1e-6, 1e-2, 0.2):
    add(f"eps={e:g}", fn, randn(*S2), randn(*S2), _vars, kwargs={"eps": e, "reduction": "none"})
add("eps-full-mean", fn, randn(*S2), randn(*S2), _vars, kwargs={"eps": 0.2, "full": True})

# cosine_similarity_loss (default axis=1, 'none') ------------------------------------
fn = "cosine_similarity_loss"
add_reductions("2d-default-axis", fn, randn(*S2), randn(*S2))
add("3d-default-axis", fn, randn(*S3), randn(*S3))
add("2d-axis=-1", fn, randn(*S2), randn(*S2), kwargs={"axis": -1})
add("2d-axis=0", fn, randn(*S2), randn(*S2), kwargs={"axis": 0}, grad=False)
add("3d-axis=-1", fn, randn(*S3), randn(*S3), kwargs={"axis": -1, "reduction": "mean"}, grad=False)
add("3d-axis=0", fn, randn(*S3), randn(*S3), kwargs={"axis": 0})
add("1d-axis=0", fn, randn(*S1), randn(*S1), kwargs={"axis": 0}, grad=False)
add("broadcast-(1,5)", fn, randn(*S2), randn(1, 5))
add("broadcast-(4,1)-axis=-1", fn, randn(4, 1), randn(*S2), kwargs={"axis": -1})
add(
    "broadcast-3d-(1,3,5)", fn, randn(*S3), randn(1, 3, 5), kwargs={"reduction": "sum"}, grad=False
)
# eps bounds the product of the norms from below
add("eps=10-small-vectors", fn, randn(*S2), randn(*S2), kwargs={"eps": 10.0})
add("eps=0.5", fn, randn(*S2, scale=0.5), randn(*S2, scale=0.5), kwargs={"eps": 0.5})
_zeros = randn(*S2)
_zeros[1] = 0.0
_zeros2 = randn(*S2)
_zeros2[2] = 0.0
_zeros2[1] = 0.0


def _zero_rows(r: np.ndarray) -> None:
    assert r[1] == 0.0 and r[2] == 0.0, r
    assert np.all(np.isfinite(r)), r


add("zero-vectors", fn, _zeros, _zeros2, grad=False, check=_zero_rows)
# 1e20 entries: the squared norm overflows float32 and MLX returns NaN.
_big = f32(
    [
        [1e20, 1e20, 0, 0, 0],
        [1e20, -3e20, 2e19, 0, 1e20],
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [-1e20, 5e19, 1e20, 2e20, 0],
    ]
)
_big2 = f32(
    [
        [1e20, 1e20, 0, 0, 0],
        [2e20, 1e20, -1e20, 3e20, 0],
        [1e20, 1e20, 1e20, 1e20, 1e20],
        [1e-20, 1e-20, 0, 1e-20, 2e-20],
    ]
)
add(
    "magnitude-1e20",
    fn,
    _big,
    _big2,
    ref=ref_cosine,
    note="MLX: overflow of the squared norm gives NaN",
    grad=False,
)

# triplet_loss (default axis=-1, p=2, 'none') ----------------------------------------
fn = "triplet_loss"
add_reductions("2d", fn, randn(*S2), randn(*S2), randn(*S2))
add("1d", fn, randn(*S1), randn(*S1), randn(*S1))
add("3d", fn, randn(*S3), randn(*S3), randn(*S3))
add("3d-axis=1", fn, randn(*S3), randn(*S3), randn(*S3), kwargs={"axis": 1})
add("3d-axis=0", fn, randn(*S3), randn(*S3), randn(*S3), kwargs={"axis": 0, "reduction": "sum"})
add("2d-axis=0", fn, randn(*S2), randn(*S2), randn(*S2), kwargs={"axis": 0})
for p in (1, 2, 3):
    add(f"p={p}", fn, randn(*S2), randn(*S2), randn(*S2), kwargs={"p": p})
    add(
        f"p={p}-3d-axis=1-mean",
        fn,
        randn(*S3),
        randn(*S3),
        randn(*S3),
        kwargs={"p": p, "axis": 1, "reduction": "mean"},
    )
for m in (0.0, 0.5, 3.0):
    add(f"margin={m:g}", fn, randn(*S2), randn(*S2), randn(*S2), kwargs={"margin": m})
for e in (1e-3, 0.5):
    add(f"eps={e:g}", fn, randn(*S2), randn(*S2), randn(*S2), kwargs={"eps": e})
add("eps-p=3", fn, randn(*S2), randn(*S2), randn(*S2), kwargs={"eps": 0.1, "p": 3})
add("broadcast-positives-(5,)", fn, randn(*S2), randn(5), randn(*S2))
add("broadcast-anchors-(1,5)", fn, randn(1, 5), randn(*S2), randn(*S2), kwargs={"margin": 2.0})
add("broadcast-negatives-(4,1)", fn, randn(*S2), randn(*S2), randn(4, 1))
# 1e20 entries: |a - b|^2 overflows float32 and MLX returns NaN/inf.
_ta = randn(*S2, scale=1e20)
_tp = randn(*S2, scale=1e20)
_tn = randn(*S2, scale=1e20)
add(
    "magnitude-1e20",
    fn,
    _ta,
    _tp,
    _tn,
    ref=ref_triplet,
    note="MLX: overflow of the p-th power",
    grad=False,
    rtol=1e-5,
    check=lambda r: np.testing.assert_array_equal(np.isfinite(r), True),
)
add(
    "magnitude-1e20-p=3",
    fn,
    _ta,
    _tp,
    _tn,
    kwargs={"p": 3},
    ref=ref_triplet,
    note="MLX: overflow of the p-th power",
    grad=False,
    rtol=1e-5,
)

# margin_ranking_loss (default margin=0, 'none') -------------------------------------
fn = "margin_ranking_loss"
add_reductions("2d", fn, randn(*S2), randn(*S2), signs(*S2))
add("1d", fn, randn(*S1), randn(*S1), signs(*S1))
add("3d", fn, randn(*S3), randn(*S3), signs(*S3))
for m in (0.5, 2.0, -0.3):
    add(f"margin={m:g}", fn, randn(*S2), randn(*S2), signs(*S2), kwargs={"margin": m})
add(
    "margin-sum",
    fn,
    randn(*S3),
    randn(*S3),
    signs(*S3),
    kwargs={"margin": 1.0, "reduction": "sum"},
)
add(
    "doc-example",
    fn,
    f32([-0.573409, -0.765166, -0.0638]),
    f32([0.75596, 0.225763, 0.256995]),
    f32([1, 1, -1]),
    grad=False,
    check=lambda r: np.testing.assert_allclose(r, [1.32937, 0.990929, 0.0], rtol=1e-5, atol=1e-6),
)

del fn

# Gradients: every case that is smooth at its inputs, less a few that only vary
# the shape (each new shape costs JAX a round of compilations).
GRAD_CASES = [c for c in CASES if c.values[0].grad]


# -------------------------------------------------------------------------- helpers


def to_xp(xp: Any, v: Any) -> Any:
    return xp.asarray(v) if isinstance(v, np.ndarray) else v


def to_mx(v: Any) -> Any:
    return mx.array(v) if isinstance(v, np.ndarray) else v


def call_anyloss(xp: Any, case: Case) -> Any:
    args = [to_xp(xp, a) for a in case.args]
    kwargs = {k: to_xp(xp, v) for k, v in case.kwargs.items()}
    return getattr(al, case.fn)(*args, **kwargs)


def call_mlx(case: Case) -> np.ndarray:
    args = [to_mx(a) for a in case.args]
    kwargs = {k: to_mx(v) for k, v in case.kwargs.items()}
    out = getattr(mlx_losses, case.fn)(*args, **kwargs)
    assert out.dtype == mx.float32
    return np.array(out)


def read_back(xp: Any, out: Any) -> np.ndarray:
    """``xp.to_numpy(out)``, which also asserts ``out`` is an array of xp's library.

    Dask evaluates the graph here, outside the ``np.errstate`` anyloss wraps
    its functions in: under this suite's ``filterwarnings = error`` any
    ``log(0)``, ``0 * inf`` or overflow formed in a discarded branch fails the
    test, so the extreme cases also check that none is formed.
    """
    return xp.to_numpy(out)


def expected_for(case: Case, mlx_result: np.ndarray) -> np.ndarray:
    if case.ref is None:
        return mlx_result
    kwargs = {
        k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v)
        for k, v in case.kwargs.items()
    }
    return case.ref(*_f64(case.args), **kwargs)


# Results below float32's smallest normal number (a BCE of 3.7e-44 for a logit
# of 100, log_cosh of a 1e-20 error) are subnormal: NumPy and torch return them,
# XLA (JAX) and MLX flush them to 0 on CPU. Either is accepted.
_TINY = float(np.finfo(np.float32).tiny)


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> None:
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=max(atol * scale, _TINY), equal_nan=False
    )


# ---------------------------------------------------------------------------- tests


def test_every_function_has_cases() -> None:
    covered = {c.values[0].fn for c in CASES}
    assert covered == set(FUNCTIONS)
    assert set(FUNCTIONS) <= set(dir(mlx_losses))
    for name in FUNCTIONS:
        assert getattr(al, name) is getattr(anyloss, name)


@pytest.mark.parametrize("case", CASES)
def test_values_match_mlx(xp: Any, case: Case, request: pytest.FixtureRequest) -> None:
    if xp.name in case.xfail:
        request.applymarker(pytest.mark.xfail(strict=True, reason=case.xfail[xp.name]))
    out = call_anyloss(xp, case)
    got = read_back(xp, out)
    assert xp.dtype_name(out) == "float32", f"float32 in, {xp.dtype_name(out)} out"
    mlx_result = call_mlx(case)
    assert got.shape == mlx_result.shape, f"shape {got.shape}, MLX gives {mlx_result.shape}"
    expected = expected_for(case, mlx_result)
    assert expected.shape == mlx_result.shape
    assert_close(got, expected.astype(np.float64), case.rtol, case.atol)
    if case.check is not None:
        case.check(got)


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradients_match_mlx(grad_xp: Any, case: Case) -> None:
    xp = grad_xp
    x0, rest = case.args[0], case.args[1:]
    rest_xp = [to_xp(xp, a) for a in rest]
    kw_xp = {k: to_xp(xp, v) for k, v in case.kwargs.items()}
    fn = getattr(al, case.fn)
    got = xp.grad(lambda v: fn(v, *rest_xp, **kw_xp), x0)

    rest_mx = [to_mx(a) for a in rest]
    kw_mx = {k: to_mx(v) for k, v in case.kwargs.items()}
    mfn = getattr(mlx_losses, case.fn)
    expected = np.array(mx.grad(lambda v: mfn(v, *rest_mx, **kw_mx).sum())(mx.array(x0)))

    assert got.shape == x0.shape
    assert got.dtype == np.float32
    assert np.all(np.isfinite(expected)), "test case must be smooth"
    assert_close(got, expected, rtol=1e-4, atol=2e-6)


# ----------------------------------------------------------------------------- errors

A, B = randn(*S2), randn(4, 4)
IDX = labels(5, 4)


def _error_cases() -> list[Any]:
    """(function, args, kwargs, strings the anyloss message must contain)."""
    s2, s44 = str(S2), str((4, 4))
    c = []

    def e(id: str, fn: str, *args: Any, must: tuple[str, ...] = (), **kwargs: Any) -> None:
        c.append(pytest.param(fn, args, kwargs, must, id=f"{fn}-{id}"))

    # same-shape functions
    e("shape", "binary_cross_entropy", A, B, must=(s2, s44))
    e("shape-probs", "binary_cross_entropy", A, B, with_logits=False, must=(s2, s44))
    e("shape", "l1_loss", A, B, must=(s2, s44))
    e("shape", "mse_loss", A, B, must=(s2, s44))
    e("shape", "smooth_l1_loss", A, B, must=(s2, s44))
    e("shape-1d", "mse_loss", randn(*S1), randn(5), must=(str(S1), "(5,)"))
    e("shape-targets", "gaussian_nll_loss", A, B, A, must=(s2, s44))
    e("shape-vars", "gaussian_nll_loss", A, A, B, must=(s2, s44))
    e("shape-targets", "margin_ranking_loss", A, A, B, must=(s2, s44))
    e("shape-inputs2", "margin_ranking_loss", A, B, A, must=(s2, s44))
    # no broadcasting for the same-shape functions
    e("no-broadcast", "mse_loss", A, randn(5), must=(s2, "(5,)"))
    e("no-broadcast", "binary_cross_entropy", A, bits(1, 5), must=(s2, "(1, 5)"))
    # cross_entropy targets and weights
    e("index-targets-shape", "cross_entropy", A, labels(5, 3), must=(s2, "(3,)"))
    e("index-targets-axis", "cross_entropy", A, labels(5, 4), axis=0, must=(s2, "(4,)"))
    e("prob-targets-shape", "cross_entropy", A, softmax(B), must=(s2, s44))
    e("weights-shape", "cross_entropy", A, IDX, weights=uniform(0, 1, 5), must=("(5,)", "(4,)"))
    e(
        "weights-shape-2d",
        "cross_entropy",
        A,
        IDX,
        weights=uniform(0, 1, 4, 1),
        must=("(4, 1)", "(4,)"),
    )
    e("weights-shape", "binary_cross_entropy", A, bits(*S2), weights=B, must=(s2, s44))
    # label_smoothing outside [0, 1)
    for s in (-0.1, 1.0, 1.5):
        e(f"label_smoothing={s}", "cross_entropy", A, IDX, label_smoothing=s, must=(str(s),))
    # shapes that cannot broadcast
    e("broadcast", "hinge_loss", A, B, must=(s2, s44))
    e("broadcast", "huber_loss", A, B, must=(s2, s44))
    e("broadcast", "log_cosh_loss", A, B, must=(s2, s44))
    e("broadcast", "kl_div_loss", A, B, must=(s2, s44))
    e("broadcast", "cosine_similarity_loss", A, B, must=(s2, s44))
    e("broadcast", "triplet_loss", A, A, B, must=(s2, s44))
    e("broadcast", "nll_loss", A, labels(5, 3), must=(s2, "(3,)"))
    # invalid reductions
    minimal = {
        "binary_cross_entropy": (A, bits(*S2)),
        "cosine_similarity_loss": (A, A),
        "cross_entropy": (A, IDX),
        "gaussian_nll_loss": (A, A, uniform(0.1, 1, *S2)),
        "hinge_loss": (A, signs(*S2)),
        "huber_loss": (A, A),
        "kl_div_loss": (A, A),
        "l1_loss": (A, A),
        "log_cosh_loss": (A, A),
        "margin_ranking_loss": (A, A, signs(*S2)),
        "mse_loss": (A, A),
        "nll_loss": (A, IDX),
        "smooth_l1_loss": (A, A),
        "triplet_loss": (A, A, A),
    }
    for name in FUNCTIONS:
        e(
            "reduction=avg",
            name,
            *minimal[name],
            reduction="avg",
            must=("avg", "none", "mean", "sum"),
        )
    e("reduction=Mean", "mse_loss", A, A, reduction="Mean", must=("Mean", "none", "mean", "sum"))
    return c


ERROR_CASES = _error_cases()


def _mlx_error(fn: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BaseException:
    try:
        out = getattr(mlx_losses, fn)(
            *[to_mx(a) for a in args], **{k: to_mx(v) for k, v in kwargs.items()}
        )
        mx.eval(out)
    except Exception as exc:  # the type is compared by the caller
        return exc
    raise AssertionError("MLX accepted the arguments")


@pytest.mark.parametrize(("fn", "args", "kwargs", "must"), ERROR_CASES)
def test_errors_match_mlx(
    xp: Any, fn: str, args: tuple[Any, ...], kwargs: dict[str, Any], must: tuple[str, ...]
) -> None:
    mlx_exc = _mlx_error(fn, args, kwargs)
    assert type(mlx_exc) is ValueError
    with pytest.raises(ValueError) as info:
        getattr(al, fn)(
            *[to_xp(xp, a) for a in args], **{k: to_xp(xp, v) for k, v in kwargs.items()}
        )
    message = str(info.value)
    for s in must:
        assert s in message, f"{s!r} not in {message!r}"


AXIS_CASES = [
    pytest.param("cross_entropy", (A, IDX), {"axis": 2}, id="cross_entropy-axis=2"),
    pytest.param("cross_entropy", (A, IDX), {"axis": -3}, id="cross_entropy-axis=-3"),
    pytest.param("cross_entropy", (A, softmax(A)), {"axis": 2}, id="cross_entropy-probs-axis=2"),
    pytest.param("nll_loss", (A, IDX), {"axis": 2}, id="nll_loss-axis=2"),
    pytest.param("kl_div_loss", (A, A), {"axis": 2}, id="kl_div_loss-axis=2"),
    pytest.param("kl_div_loss", (A, A), {"axis": -3}, id="kl_div_loss-axis=-3"),
    pytest.param(
        "cosine_similarity_loss",
        (randn(*S1), randn(*S1)),
        {},
        id="cosine_similarity_loss-1d-default-axis=1",
    ),
    pytest.param(
        "cosine_similarity_loss", (A, A), {"axis": 2}, id="cosine_similarity_loss-axis=2"
    ),
    pytest.param("triplet_loss", (A, A, A), {"axis": 2}, id="triplet_loss-axis=2"),
    pytest.param("triplet_loss", (randn(*S3),) * 3, {"axis": -4}, id="triplet_loss-axis=-4"),
]


@pytest.mark.parametrize(("fn", "args", "kwargs"), AXIS_CASES)
def test_axis_out_of_range(
    xp: Any, fn: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    mlx_exc = _mlx_error(fn, args, kwargs)
    assert isinstance(mlx_exc, IndexError)
    with pytest.raises(anyloss.AxisError) as info:
        getattr(al, fn)(
            *[to_xp(xp, a) for a in args], **{k: to_xp(xp, v) for k, v in kwargs.items()}
        )
    assert isinstance(info.value, IndexError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, type(mlx_exc))
    axis = kwargs.get("axis", 1)
    assert str(axis) in str(info.value)

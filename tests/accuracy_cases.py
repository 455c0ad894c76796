"""Accuracy regimes of every loss, their mpmath references, and ulp errors.

Every regime is a seeded generator of float32 inputs (ordinary values and
adversarial ones: confident predictions, huge offsets, many classes, tiny and
huge errors, values at thresholds, near-cancellation, 1e20 and 1e-20
magnitudes). Its reference is the loss formula of ``spec/losses.md`` evaluated
with mpmath from the *exact* float32 input values, at 50 significant digits
or more: each example is evaluated at two precisions (50 and 80 digits, then
higher) until both agree to 30 digits, so the cancellation inside a formula
(``log(1 + exp(80)) - 80``, ``log(cosh(1e-19))``) cannot leak into the
reference.

The error of a result is measured in ulp of the float32 true value:
``|got - true| / ulp(fl32(true))`` with ``true`` the exact value and
``fl32(true)`` its rounding to float32 (a correctly rounded result has an error
of at most 0.5). A true value that is not a normal float32 (``|true| < 2**-126``,
zero included) only requires a correctly signed small result:
``|got| <= 2**-122`` and not of the opposite sign; that counts as 0 ulp, and
anything else (as every NaN) as ``inf``.

The losses are MLX's (``LOSSES``) and those anyloss has beyond MLX
(``BEYOND_MLX``, with the options of ``cross_entropy`` MLX lacks: ``class_weights``,
``ignore_index``). The examples of a loss are the entries of axis 0 of its
inputs; for ``info_nce_loss`` and ``nt_xent_loss`` (``BATCH_LOSSES``) every
example depends on the whole batch, and their references take the whole
arrays and return the losses of the examples asked for. ``'mean'`` follows each loss's own
convention (``mean_parts``): PyTorch's weighted mean for ``cross_entropy`` with
class weights or ``ignore_index``, per target length for ``ctc_loss``, per
positive pair for ``nt_xent_loss``.

Used by ``tests/test_accuracy.py`` (asserted bounds) and
``tools/accuracy_table.py`` (the table in the docs).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import mpmath
import numpy as np

mp = mpmath.mp
mpf = mpmath.mpf

F32 = np.float32
TINY = float(np.finfo(np.float32).tiny)  # 2**-126, smallest normal float32
FMAX = float(np.finfo(np.float32).max)
UNDERFLOW_OK = 2.0**-122  # "small" for a true value that is not a normal float32

LOSSES = (
    "binary_cross_entropy",
    "cross_entropy",
    "nll_loss",
    "hinge_loss",
    "l1_loss",
    "mse_loss",
    "smooth_l1_loss",
    "huber_loss",
    "log_cosh_loss",
    "gaussian_nll_loss",
    "kl_div_loss",
    "cosine_similarity_loss",
    "triplet_loss",
    "margin_ranking_loss",
)

# The losses of anyloss that MLX does not have (no ``mlx.nn.losses`` column).
BEYOND_MLX = (
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "dice_loss",
    "info_nce_loss",
    "nt_xent_loss",
    "squared_hinge_loss",
    "multiclass_hinge_loss",
    "cosine_embedding_loss",
    "poisson_nll_loss",
    "ctc_loss",
)

# Options of an MLX loss that MLX does not have: a case using one is beyond MLX.
BEYOND_MLX_OPTIONS = frozenset({"class_weights", "ignore_index"})

# Losses whose examples are coupled through the batch: ``ref(*arrays, rows=...)``
# takes the whole arrays and returns the losses of the examples ``rows``.
BATCH_LOSSES = frozenset({"info_nce_loss", "nt_xent_loss"})


# ---------------------------------------------------------------------------
# mpmath references: the spec's formulas, one example at a time
# ---------------------------------------------------------------------------
#
# Each takes one example (mpf scalars, or lists of mpf for a row along the
# class/feature axis, ints for class indices) and the keyword arguments of the
# call without ``reduction``, and returns the per-example loss.

_NEG_INF = mpf("-inf")


def _clamped_log(q: Any) -> Any:
    """``max(log(q), -100)`` with ``log(0) = -inf``."""
    return max(mpmath.log(q) if q > 0 else _NEG_INF, mpf(-100))


def ref_binary_cross_entropy(x: Any, t: Any, with_logits: bool = True) -> Any:
    if with_logits:
        return mpmath.log(1 + mpmath.exp(x)) - x * t
    return -(t * _clamped_log(x) + (1 - t) * _clamped_log(1 - x))


def ref_cross_entropy(
    x: list,
    t: Any,
    label_smoothing: float = 0.0,
    class_weights: list | None = None,
    ignore_index: int | None = None,
) -> Any:
    if ignore_index is not None and t == ignore_index:
        return mpf(0)
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in x))
    s = mpf(label_smoothing)
    if class_weights is not None:  # PyTorch: sum_c w_c q_c (lse - x_c), q smoothed
        w = class_weights
        if isinstance(t, int):
            base = w[t] * (lse - x[t])
        else:
            base = mpmath.fsum(
                wc * p * (lse - v) for wc, p, v in zip(w, t, x, strict=True) if p != 0
            )
        if s > 0:
            uniform = mpmath.fsum(wc * (lse - v) for wc, v in zip(w, x, strict=True))
            return (1 - s) * base + s * uniform / len(x)
        return base
    if isinstance(t, int):
        score = x[t]
    else:  # probabilities: a class with probability exactly 0 contributes 0
        score = mpmath.fsum(p * v for p, v in zip(t, x, strict=True) if p != 0)
    if s > 0:
        return lse - (1 - s) * score - s * mpmath.fsum(x) / len(x)
    return lse - score


def ref_nll_loss(x: list, t: int) -> Any:
    return -x[t]


def ref_hinge_loss(x: Any, t: Any) -> Any:
    return max(mpf(0), 1 - x * t)


def ref_l1_loss(p: Any, t: Any) -> Any:
    return abs(p - t)


def ref_mse_loss(p: Any, t: Any) -> Any:
    return (p - t) ** 2


def ref_smooth_l1_loss(p: Any, t: Any, beta: float = 1.0) -> Any:
    d, b = abs(p - t), mpf(beta)
    return mpf(0.5) * d**2 / b if d < b else d - mpf(0.5) * b


def ref_huber_loss(x: Any, t: Any, delta: float = 1.0) -> Any:
    a, dl = abs(x - t), mpf(delta)
    return mpf(0.5) * a**2 if a <= dl else dl * (a - mpf(0.5) * dl)


def ref_log_cosh_loss(x: Any, t: Any) -> Any:
    return mpmath.log(mpmath.cosh(x - t))


def ref_gaussian_nll_loss(mu: Any, y: Any, v: Any, full: bool = False, eps: float = 1e-6) -> Any:
    vv = max(v, mpf(eps))
    loss = mpf(0.5) * (mpmath.log(vv) + (y - mu) ** 2 / vv)
    if full:
        loss += mpf(0.5) * mpmath.log(2 * mpmath.pi)
    return loss


def ref_kl_div_loss(x: list, t: list) -> Any:
    # 0 log 0 = 0: a class with target log-probability -inf contributes 0
    return mpmath.fsum(mpmath.exp(b) * (b - a) for a, b in zip(x, t, strict=True) if b != _NEG_INF)


def ref_cosine_similarity_loss(a: list, b: list, eps: float = 1e-8) -> Any:
    dot = mpmath.fsum(u * v for u, v in zip(a, b, strict=True))
    n1 = mpmath.sqrt(mpmath.fsum(u * u for u in a))
    n2 = mpmath.sqrt(mpmath.fsum(v * v for v in b))
    return dot / max(n1 * n2, mpf(eps))


def ref_triplet_loss(
    a: list, pos: list, neg: list, p: float = 2, margin: float = 1.0, eps: float = 1e-6
) -> Any:
    pp = mpf(p)

    def dist(u: list, v: list) -> Any:
        s = mpmath.fsum(abs(x - y) ** pp for x, y in zip(u, v, strict=True))
        return (s + mpf(eps)) ** (1 / pp)

    return max(dist(a, pos) - dist(a, neg) + mpf(margin), mpf(0))


def ref_margin_ranking_loss(x1: Any, x2: Any, y: Any, margin: float = 0.0) -> Any:
    return max(mpf(0), -y * (x1 - x2) + mpf(margin))


# -- beyond MLX ------------------------------------------------------------------


def _sigmoid(z: Any) -> Any:
    return 1 / (1 + mpmath.exp(-z))


def ref_sigmoid_focal_loss(x: Any, t: Any, alpha: float | None = 0.25, gamma: float = 2.0) -> Any:
    ce = mpmath.log(1 + mpmath.exp(x)) - x * t
    # 1 - p_t = 1 - (p t + (1 - p)(1 - t)) = t sigma(-x) + (1 - t) sigma(x), an
    # identity: no cancellation left to the working precision
    loss = ce
    if gamma != 0:
        loss = (t * _sigmoid(-x) + (1 - t) * _sigmoid(x)) ** mpf(gamma) * ce
    if alpha is not None:
        a = mpf(alpha)
        loss *= a * t + (1 - a) * (1 - t)
    return loss


def ref_softmax_focal_loss(x: list, t: Any, alpha: Any = None, gamma: float = 2.0) -> Any:
    e = [mpmath.exp(v) for v in x]
    total = mpmath.fsum(e)
    lse = mpmath.log(total)
    q = [mpf(c == t) for c in range(len(x))] if isinstance(t, int) else t
    a = alpha if isinstance(alpha, list) else [mpf(1 if alpha is None else alpha)] * len(x)
    terms = []
    for c, qc in enumerate(q):
        if qc == 0:  # 0 log 0 = 0, also where the logit is -inf
            continue
        # 1 - p_c as the sum of the other terms over the total (an identity)
        not_p = mpmath.fsum(v for j, v in enumerate(e) if j != c) / total
        weight = not_p ** mpf(gamma) if gamma != 0 else 1
        terms.append(a[c] * qc * weight * (lse - x[c]))
    return mpmath.fsum(terms)


def ref_dice_loss(x: list, t: list, smooth: float = 1.0) -> Any:
    s = mpf(smooth)
    den = mpmath.fsum(x) + mpmath.fsum(t) + s
    if den == 0:  # nothing in either, smooth 0: the limit 0
        return mpf(0)
    return 1 - (2 * mpmath.fsum(a * b for a, b in zip(x, t, strict=True)) + s) / den


def _dot(u: list, v: list) -> Any:
    return mpmath.fdot(u, v)


def _unit(v: list) -> list:
    """``v / ||v||``; a zero vector stays zero (no eps)."""
    n = mpmath.sqrt(_dot(v, v))
    return v if n == 0 else [a / n for a in v]


def ref_info_nce_loss(
    queries: list,
    keys: list,
    *,
    rows: Sequence[int],
    temperature: float = 0.1,
    normalize: bool = True,
    symmetric: bool = False,
) -> list:
    tau = mpf(temperature)
    q = [_unit(v) for v in queries] if normalize else queries
    k = [_unit(v) for v in keys] if normalize else keys

    def nll(s: list, i: int) -> Any:  # -log softmax(s)_i
        return mpmath.log(mpmath.fsum(mpmath.exp(v) for v in s)) - s[i]

    out = []
    for i in rows:
        loss = nll([_dot(q[i], kj) / tau for kj in k], i)
        if symmetric:
            loss = (loss + nll([_dot(qj, k[i]) / tau for qj in q], i)) / 2
        out.append(loss)
    return out


def ref_nt_xent_loss(
    embeddings: list, labels: list, *, rows: Sequence[int], temperature: float = 0.07
) -> list:
    tau = mpf(temperature)
    u = [_unit(v) for v in embeddings]
    out = []
    for i in rows:
        s = [_dot(u[i], v) / tau for v in u]
        negatives = [s[k] for k, y in enumerate(labels) if y != labels[i]]
        pairs = [  # none where the anchor has no negatives
            mpmath.log1p(mpmath.fsum(mpmath.exp(v - s[j]) for v in negatives))
            for j, y in enumerate(labels)
            if negatives and j != i and y == labels[i]
        ]
        out.append(mpmath.fsum(pairs))
    return out


def ref_squared_hinge_loss(x: Any, t: Any) -> Any:
    return max(mpf(0), 1 - x * t) ** 2


def ref_multiclass_hinge_loss(x: list, t: int, margin: float = 1.0) -> Any:
    if len(x) == 1:
        return mpf(0)
    rival = max(v for c, v in enumerate(x) if c != t)
    return max(mpf(0), mpf(margin) + rival - x[t])


def ref_cosine_embedding_loss(
    a: list, b: list, y: Any, margin: float = 0.0, eps: float = 1e-8
) -> Any:
    n = mpmath.sqrt(_dot(a, a)) * mpmath.sqrt(_dot(b, b))
    cos = _dot(a, b) / max(n, mpf(eps))
    if y == 1:
        return 1 - cos
    return max(mpf(0), cos - mpf(margin))


def ref_poisson_nll_loss(
    x: Any, t: Any, log_input: bool = True, full: bool = False, eps: float = 1e-8
) -> Any:
    # a target of 0 has no t x (t log(rate)) term, even where x = -inf
    if log_input:
        loss = mpmath.exp(x) - (t * x if t != 0 else 0)
    else:
        loss = x - (t * mpmath.log(x + mpf(eps)) if t != 0 else 0)
    if full and t > 1:  # Stirling's log t!, only for t > 1
        loss += t * mpmath.log(t) - t + mpmath.log(2 * mpmath.pi * t) / 2
    return loss


def ref_ctc_loss(
    lp: list, y: list, t_len: int, y_len: int, blank: int = 0, zero_infinity: bool = False
) -> Any:
    """``-log`` of the probability of all alignments of length ``t_len`` that
    collapse to ``y[:y_len]``: the forward recursion in probability space (exact
    products; mpmath has no underflow). See ``ctc_alignments`` for the sum over
    the alignments themselves, which it is checked against."""
    ext = [blank]
    for c in y[:y_len]:
        ext += [c, blank]
    k = len(ext)
    total: Any
    if t_len == 0:
        total = mpf(1) if y_len == 0 else mpf(0)
    else:
        p = [[mpmath.exp(row[c]) for c in ext] for row in lp[:t_len]]
        alpha = [p[0][s] if s < 2 else mpf(0) for s in range(k)]  # blank or y_1 first
        for t in range(1, t_len):
            new = []
            for s in range(k):
                a = alpha[s] + (alpha[s - 1] if s >= 1 else 0)
                if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                    a += alpha[s - 2]
                new.append(a * p[t][s])
            alpha = new
        total = alpha[-1] + (alpha[-2] if k > 1 else 0)
    if total == 0:
        return mpf(0) if zero_infinity else mpf("inf")
    return -mpmath.log(total)


def ctc_alignments(t_len: int, classes: int, y: list, blank: int = 0) -> list[tuple[int, ...]]:
    """Every alignment of length ``t_len`` that collapses to ``y`` (brute force)."""
    import itertools

    out = []
    for path in itertools.product(range(classes), repeat=t_len):
        merged = [c for j, c in enumerate(path) if j == 0 or c != path[j - 1]]
        if [c for c in merged if c != blank] == list(y):
            out.append(path)
    return out


REFERENCES: dict[str, Callable[..., Any]] = {
    name: globals()[f"ref_{name}"] for name in LOSSES + BEYOND_MLX
}


# ---------------------------------------------------------------------------
# Naive float32 transcriptions (the "naive" column) and float64 evaluations
# ---------------------------------------------------------------------------
#
# ``naive(loss, args, kwargs, dtype)`` is the formula written literally with
# NumPy in ``dtype``, per example (reduction applied by the caller). In float32
# it is the naive column; in float64 (with the stable forms of ``_F64``) it
# gives the per-example values of the large reduction regimes.


def _naive_cross_entropy(x, t, label_smoothing=0.0, class_weights=None, ignore_index=None):
    lse = np.log(np.sum(np.exp(x), axis=-1))
    s = label_smoothing
    ignored = None
    if t.ndim < x.ndim and ignore_index is not None:
        ignored = t == ignore_index
        t = np.where(ignored, 0, t)
    if class_weights is not None:
        w = class_weights
        nll = lse[:, None] - x
        if t.ndim == x.ndim:
            base = np.sum(w * t * nll, axis=-1)
        else:
            base = w[t] * np.take_along_axis(nll, t[:, None], axis=-1)[:, 0]
        if s > 0:
            base = (1 - s) * base + s * np.mean(w * nll, axis=-1)
        return base if ignored is None else np.where(ignored, 0, base)
    if t.ndim == x.ndim:
        score = np.sum(t * x, axis=-1)
    else:
        score = np.take_along_axis(x, t[:, None], axis=-1)[:, 0]
    loss = lse - (1 - s) * score - s * np.mean(x, axis=-1) if s > 0 else lse - score
    return loss if ignored is None else np.where(ignored, 0, loss)


def _naive_bce(x, t, with_logits=True):
    if with_logits:
        return np.log(1 + np.exp(x)) - x * t
    return -(t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log(1 - x), -100))


def _naive_smooth_l1(p, t, beta=1.0):
    d = np.abs(p - t)
    return np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)


def _naive_huber(x, t, delta=1.0):
    a = np.abs(x - t)
    return np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))


def _naive_gaussian(mu, y, v, full=False, eps=1e-6):
    v = np.maximum(v, eps)
    loss = 0.5 * (np.log(v) + (y - mu) ** 2 / v)
    return loss + 0.5 * math.log(2 * math.pi) if full else loss


def _naive_kl(x, t):
    return np.sum(np.exp(t) * (t - x), axis=-1)


def _naive_cosine(a, b, eps=1e-8):
    n = np.sqrt(np.sum(a * a, axis=-1)) * np.sqrt(np.sum(b * b, axis=-1))
    return np.sum(a * b, axis=-1) / np.maximum(n, eps)


def _naive_triplet(a, pos, neg, p=2, margin=1.0, eps=1e-6):
    def dist(u, v):
        return (np.sum(np.abs(u - v) ** p, axis=-1) + eps) ** (1.0 / p)

    return np.maximum(dist(a, pos) - dist(a, neg) + margin, 0)


def _naive_sigmoid_focal(x, t, alpha=0.25, gamma=2.0):
    p = 1 / (1 + np.exp(-x))
    p_t = p * t + (1 - p) * (1 - t)
    loss = (1 - p_t) ** gamma * (np.log(1 + np.exp(x)) - x * t)
    return loss if alpha is None else (alpha * t + (1 - alpha) * (1 - t)) * loss


def _one_hot(t, classes, dtype):
    return (t[:, None] == np.arange(classes)).astype(dtype)


def _naive_softmax_focal(x, t, alpha=None, gamma=2.0):
    e = np.exp(x)
    p = e / np.sum(e, axis=-1, keepdims=True)
    q = t if t.ndim == x.ndim else _one_hot(t, x.shape[-1], x.dtype)
    terms = np.where(q == 0, 0, -q * (1 - p) ** gamma * np.log(p))
    return np.sum(terms if alpha is None else alpha * terms, axis=-1)


def _naive_dice(x, t, smooth=1.0):
    num = 2 * np.sum(x * t, axis=-1) + smooth
    return 1 - num / (np.sum(x, axis=-1) + np.sum(t, axis=-1) + smooth)


def _unit_rows(x):
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True))


def _naive_info_nce(q, k, temperature=0.1, normalize=True, symmetric=False):
    if normalize:
        q, k = _unit_rows(q), _unit_rows(k)
    s = (q @ k.T) / temperature
    diag = np.diagonal(s)
    loss = np.log(np.sum(np.exp(s), axis=1)) - diag
    if symmetric:
        loss = (loss + np.log(np.sum(np.exp(s), axis=0)) - diag) / 2
    return loss


def _naive_nt_xent(x, y, temperature=0.07):
    u = _unit_rows(x)
    e = np.exp((u @ u.T) / temperature)
    same = y[:, None] == y[None, :]
    negatives = np.sum(np.where(same, 0, e), axis=1, keepdims=True)
    pair = -np.log(e / (e + negatives))
    valid = same & ~np.eye(len(y), dtype=bool) & ~np.all(same, axis=1, keepdims=True)
    return np.sum(np.where(valid, pair, 0), axis=1)


def _naive_multiclass_hinge(x, t, margin=1.0):
    target = np.take_along_axis(x, t[:, None], axis=-1)[:, 0]
    rival = np.max(np.where(_one_hot(t, x.shape[-1], bool), -np.inf, x), axis=-1)
    return np.maximum(0, margin + rival - target)


def _naive_cosine_embedding(a, b, y, margin=0.0, eps=1e-8):
    cos = _naive_cosine(a, b, eps)
    return np.where(y == 1, 1 - cos, np.maximum(0, cos - margin))


def _naive_poisson(x, t, log_input=True, full=False, eps=1e-8):
    loss = np.exp(x) - t * x if log_input else x - t * np.log(x + eps)
    loss = np.where(t == 0, np.exp(x) if log_input else x, loss)
    if full:
        stirling = t * np.log(t) - t + 0.5 * np.log(2 * math.pi * t)
        loss = loss + np.where(t > 1, stirling, 0)
    return loss


def _naive_ctc(log_probs, targets, input_lengths, target_lengths, blank=0, zero_infinity=False):
    """The forward recursion on probabilities (not their logarithms), batched."""
    n, steps, _ = log_probs.shape
    k = 2 * targets.shape[1] + 1
    ext = np.full((n, k), blank)
    ext[:, 1::2] = np.where(np.arange(targets.shape[1]) < target_lengths[:, None], targets, blank)
    two_back = np.concatenate([np.full((n, 2), blank), ext[:, :-2]], axis=1)
    skip = (ext != blank) & (ext != two_back)
    p = np.exp(log_probs)
    alpha = np.zeros((n, k), log_probs.dtype)
    alpha[:, 0] = 1  # the start, before the first step
    zero = np.zeros((n, 1), alpha.dtype)
    for t in range(steps):
        one = np.concatenate([zero, alpha[:, :-1]], axis=1)
        two = np.concatenate([zero, zero, alpha[:, :-2]], axis=1)
        emit = np.take_along_axis(p[:, t, :], ext, axis=1)
        new = (alpha + one + np.where(skip, two, 0)) * emit
        alpha = np.where(t < input_lengths[:, None], new, alpha)
    rows = np.arange(n)
    end = 2 * target_lengths
    total = alpha[rows, end] + np.where(end > 0, alpha[rows, np.maximum(end - 1, 0)], 0)
    loss = -np.log(total)
    return np.where(np.isinf(loss), 0, loss) if zero_infinity else loss


_NAIVE: dict[str, Callable[..., Any]] = {
    "binary_cross_entropy": _naive_bce,
    "cross_entropy": _naive_cross_entropy,
    "nll_loss": lambda x, t: -np.take_along_axis(x, t[:, None], axis=-1)[:, 0],
    "hinge_loss": lambda x, t: np.maximum(0, 1 - x * t),
    "l1_loss": lambda p, t: np.abs(p - t),
    "mse_loss": lambda p, t: (p - t) ** 2,
    "smooth_l1_loss": _naive_smooth_l1,
    "huber_loss": _naive_huber,
    "log_cosh_loss": lambda x, t: np.log(np.cosh(x - t)),
    "gaussian_nll_loss": _naive_gaussian,
    "kl_div_loss": _naive_kl,
    "cosine_similarity_loss": _naive_cosine,
    "triplet_loss": _naive_triplet,
    "margin_ranking_loss": lambda x1, x2, y, margin=0.0: np.maximum(0, -y * (x1 - x2) + margin),
    "sigmoid_focal_loss": _naive_sigmoid_focal,
    "softmax_focal_loss": _naive_softmax_focal,
    "dice_loss": _naive_dice,
    "info_nce_loss": _naive_info_nce,
    "nt_xent_loss": _naive_nt_xent,
    "squared_hinge_loss": lambda x, t: np.maximum(0, 1 - x * t) ** 2,
    "multiclass_hinge_loss": _naive_multiclass_hinge,
    "cosine_embedding_loss": _naive_cosine_embedding,
    "poisson_nll_loss": _naive_poisson,
    "ctc_loss": _naive_ctc,
}


def _softplus64(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _bce64(x, t, with_logits=True):
    if with_logits:  # log(1 + e^x) - x t without cancellation
        return t * _softplus64(-x) + (1 - t) * _softplus64(x)
    return _naive_bce(x, t, with_logits=False)


def _cross_entropy64(x, t, **opts):
    m = np.max(x, axis=-1, keepdims=True)
    return _naive_cross_entropy(x - m, t, **opts)  # x - m is exact in float64


def _log_cosh64(x, t):
    a = np.abs(x - t)
    small = np.minimum(a, 20.0)
    near = np.log1p(2 * np.sinh(small / 2) ** 2)
    far = a - math.log(2) + np.log1p(np.exp(-2 * a))
    return np.where(a < 20, near, far)


def _sigmoid64(z):
    return 1 / (1 + np.exp(-z))


def _sigmoid_focal64(x, t, alpha=0.25, gamma=2.0):
    not_p_t = t * _sigmoid64(-x) + (1 - t) * _sigmoid64(x)  # 1 - p_t, an identity
    loss = not_p_t**gamma * _bce64(x, t)
    return loss if alpha is None else (alpha * t + (1 - alpha) * (1 - t)) * loss


def _softmax_focal64(x, t, alpha=None, gamma=2.0):
    z = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(z)
    total = np.sum(e, axis=-1, keepdims=True)
    c = x.shape[-1]
    others = np.sum(e[:, None, :] * (1 - np.eye(c)), axis=-1)  # sum of e_j, j != c
    # 1 - p_c = others / total and -log p_c = log1p(others / e_c): identities
    q = t if t.ndim == x.ndim else _one_hot(t, c, x.dtype)
    terms = np.where(q == 0, 0, q * (others / total) ** gamma * np.log1p(others / e))
    return np.sum(terms if alpha is None else alpha * terms, axis=-1)


def _dice64(x, t, smooth=1.0):
    den = np.sum(x, axis=-1) + np.sum(t, axis=-1) + smooth
    mismatch = np.sum(x * (1 - t) + t * (1 - x), axis=-1)  # = den - (2 sum x t + smooth)
    return np.where(den == 0, 0, mismatch / np.where(den == 0, 1, den))


def _cosine_embedding64(a, b, y, margin=0.0, eps=1e-8):
    na = np.sqrt(np.sum(a * a, axis=-1, keepdims=True))
    nb = np.sqrt(np.sum(b * b, axis=-1, keepdims=True))
    similar = 0.5 * np.sum((a / na - b / nb) ** 2, axis=-1)  # 1 - cos, an identity
    similar = np.where(na[:, 0] * nb[:, 0] >= eps, similar, 1 - _naive_cosine(a, b, eps))
    return np.where(y == 1, similar, np.maximum(0, _naive_cosine(a, b, eps) - margin))


_F64: dict[str, Callable[..., Any]] = {
    "binary_cross_entropy": _bce64,
    "cross_entropy": _cross_entropy64,
    "log_cosh_loss": _log_cosh64,
    "sigmoid_focal_loss": _sigmoid_focal64,
    "softmax_focal_loss": _softmax_focal64,
    "dice_loss": _dice64,
    "cosine_embedding_loss": _cosine_embedding64,
}


def naive(loss: str, args: Sequence[np.ndarray], kwargs: dict, dtype: Any = F32) -> np.ndarray:
    """The formula of ``loss`` per example, transcribed literally in ``dtype``
    (float64: with the stable forms of ``_F64`` where the literal one cancels)."""

    def cast(a: Any) -> Any:
        return a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a

    opts = {k: cast(v) for k, v in kwargs.items() if k != "reduction"}
    fn = _F64.get(loss, _NAIVE[loss]) if dtype == np.float64 else _NAIVE[loss]
    with np.errstate(all="ignore"):
        return np.asarray(fn(*map(cast, args), **opts), dtype=dtype)


def mean_parts(loss: str, args: Sequence[np.ndarray], kwargs: dict) -> tuple[Any, Any]:
    """``(divisors, denominator)`` of ``reduction='mean'``: the mean is
    ``sum_i (loss_i / divisors[i]) / denominator``; ``None`` for the plain mean's
    parts (divisors 1, the number of per-example losses).

    PyTorch's ``cross_entropy`` with ``class_weights``/``ignore_index`` divides
    by the sum of the class weights of the examples kept, ``ctc_loss`` each
    loss by its target length (at least 1) first, ``nt_xent_loss`` by the
    number of (ordered) positive pairs.
    """
    if loss == "ctc_loss":
        return np.maximum(args[3], 1), None
    if loss == "nt_xent_loss":
        y = args[1]
        return None, int(np.sum(y[:, None] == y[None, :])) - len(y)
    cw, ignore = kwargs.get("class_weights"), kwargs.get("ignore_index")
    weighted = cw is not None or ignore is not None
    if loss == "cross_entropy" and args[1].ndim < args[0].ndim and weighted:
        t = args[1]
        kept = np.ones(t.shape, bool) if ignore is None else t != ignore
        w = np.ones(t.shape) if cw is None else cw.astype(np.float64)[np.where(kept, t, 0)]
        return None, math.fsum(w[kept].tolist())
    return None, None


def naive_reduced(loss: str, args: Sequence[np.ndarray], kwargs: dict) -> np.ndarray:
    """The naive float32 column: the literal formula, then ``np.mean``/``np.sum``
    (the mean as ``mean_parts`` defines it)."""
    per = naive(loss, args, kwargs, F32)
    red = kwargs.get("reduction", "none")
    with np.errstate(all="ignore"):
        if red == "mean":
            divisors, den = mean_parts(loss, args, kwargs)
            if divisors is not None:
                per = per / divisors.astype(F32)
            if den is None:
                return np.mean(per, dtype=F32)
            return np.sum(per, dtype=F32) / F32(den)
        if red == "sum":
            return np.sum(per, dtype=F32)
    return per


# ---------------------------------------------------------------------------
# Regimes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One (loss, regime): seeded float32 inputs and the keyword arguments.

    ``args`` are the positional arrays; axis 0 indexes the examples (for row
    losses the class/feature axis is the last one). ``reduction`` is part of
    ``kwargs``: ``'none'`` for the small regimes, ``'mean'``/``'sum'`` for the
    one large reduction regime of each loss.
    """

    loss: str
    regime: str
    build: Callable[[np.random.Generator], tuple[tuple[np.ndarray, ...], dict]] = field(
        repr=False, compare=False
    )
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.loss}-{self.regime}"

    @property
    def in_mlx(self) -> bool:
        """Whether ``mlx.nn.losses`` has this loss with these options."""
        return self.loss in LOSSES and not BEYOND_MLX_OPTIONS & set(self.inputs()[1])

    def inputs(self) -> tuple[tuple[np.ndarray, ...], dict]:
        return _inputs(self)


@cache
def _inputs(case: Case) -> tuple[tuple[np.ndarray, ...], dict]:
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    args, kwargs = case.build(rng)
    args = tuple(np.ascontiguousarray(a) for a in args)
    for a in (*args, *kwargs.values()):
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    kwargs = {"reduction": "none", **kwargs}
    return args, kwargs


def f32(x: Any) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(x, dtype=np.float64).astype(F32)


def logu(rng: np.random.Generator, lo: float, hi: float, size: Any) -> np.ndarray:
    """Log-uniform magnitudes in [10**lo, 10**hi] (float64)."""
    return 10.0 ** rng.uniform(lo, hi, size)


def sign(rng: np.random.Generator, size: Any) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size)


def bits(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``x`` moved by ``k`` float32 ulps (k integer array)."""
    x = f32(x)
    return (x.view(np.int32) + np.asarray(k, dtype=np.int32)).view(F32)


N = 64  # elements of an elementwise regime
ROWS = 16  # rows of a per-row regime
BIG = 100_000  # elements of a reduction regime


def log_softmax32(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return f32(z - np.log(np.exp(z).sum(axis=-1, keepdims=True)))


def dyadic_probs(
    rng: np.random.Generator, rows: int, classes: int, zeros: float = 0.0
) -> np.ndarray:
    """Probabilities that are multiples of 2**-20 summing to exactly 1."""
    w = rng.gamma(0.5, size=(rows, classes))
    w[rng.random((rows, classes)) < zeros] = 0
    w[:, 0] += 1e-3
    counts = np.stack([rng.multinomial(2**20, r / r.sum()) for r in w])
    return f32(counts / 2.0**20)


def _cases() -> list[Case]:
    cases: list[Case] = []

    def case(loss: str, regime: str, note: str = "") -> Callable:
        def deco(fn: Callable) -> Callable:
            cases.append(Case(loss, regime, fn, note))
            return fn

        return deco

    # -- binary_cross_entropy ------------------------------------------------
    L = "binary_cross_entropy"

    @case(L, "ordinary", "logits N(0, 3), targets {0, 1}")
    def _(r):
        return (f32(r.normal(0, 3, N)), f32(r.integers(0, 2, N))), {}

    @case(L, "confident", "correct logits of magnitude 17..86 (true 1.6e-38..4e-8)")
    def _(r):
        t = f32(r.integers(0, 2, N))
        x = f32(r.uniform(17, 86, N) * np.where(t == 1, 1, -1))
        x[:2], t[:2] = [27.7, 30.0], 1  # the and the spec's examples
        return (x, t), {}

    @case(L, "wrong", "wrong logits of magnitude 17..1e4 (loss ~ |x|)")
    def _(r):
        t = f32(r.integers(0, 2, N))
        x = f32(logu(r, 1.23, 4, N) * np.where(t == 1, -1, 1))
        return (x, t), {}

    @case(L, "huge", "logits of magnitude 1e2..3e38, random targets")
    def _(r):
        return (f32(sign(r, N) * logu(r, 2, 38.5, N)), f32(r.integers(0, 2, N))), {}

    @case(L, "soft_targets", "targets uniform in [0, 1]")
    def _(r):
        return (f32(r.normal(0, 4, N)), f32(r.uniform(0, 1, N))), {}

    @case(L, "probs", "with_logits=False, p in (0,1) incl. 1e-30, 1-2**-24, 0, 1")
    def _(r):
        p = r.uniform(0, 1, N)
        p[:8] = logu(r, -30, -2, 8)
        p[8:16] = 1 - logu(r, -7.2, -2, 8)
        p[16:18] = [0.0, 1.0]
        p[18:20] = [1e-44, 1e-40]
        return (f32(p), f32(r.integers(0, 2, N))), {"with_logits": False}

    @case(L, "mean_1e5", "mean of 1e5 losses, logits N(0, 3)")
    def _(r):
        return (f32(r.normal(0, 3, BIG)), f32(r.integers(0, 2, BIG))), {"reduction": "mean"}

    # -- cross_entropy -------------------------------------------------------
    L = "cross_entropy"

    @case(L, "ordinary", "16 x 10 logits N(0, 3), class indices")
    def _(r):
        return (f32(r.normal(0, 3, (ROWS, 10))), r.integers(0, 10, ROWS)), {}

    @case(L, "confident", "the correct logit leads by 17..60 (true 1e-26..4e-8)")
    def _(r):
        x = r.normal(0, 1, (ROWS, 10))
        t = r.integers(0, 10, ROWS)
        x[np.arange(ROWS), t] = x.max(axis=1) + r.uniform(17, 60, ROWS)
        return (f32(x), t), {}

    @case(L, "leading", "the correct logit leads by 3..17 (true 4e-8..0.5)")
    def _(r):
        x = r.normal(0, 1, (ROWS, 10))
        t = r.integers(0, 10, ROWS)
        x[np.arange(ROWS), t] = x.max(axis=1) + r.uniform(3, 17, ROWS)
        return (f32(x), t), {}

    @case(L, "offset_1e4", "logits N(0, 3) + 1e4")
    def _(r):
        return (f32(r.normal(0, 3, (ROWS, 10)) + 1e4), r.integers(0, 10, ROWS)), {}

    @case(L, "offset_1e6", "logits N(0, 3) - 1e6")
    def _(r):
        return (f32(r.normal(0, 3, (ROWS, 10)) - 1e6), r.integers(0, 10, ROWS)), {}

    @case(L, "equal_1e20", "equal logits of magnitude 1e-20..1e20 per row (true log 10)")
    def _(r):
        x = np.repeat(sign(r, (ROWS, 1)) * logu(r, -20, 20, (ROWS, 1)), 10, axis=1)
        return (f32(x), r.integers(0, 10, ROWS)), {}

    @case(L, "many_classes", "4 x 4096 logits N(0, 3)")
    def _(r):
        return (f32(r.normal(0, 3, (4, 4096))), r.integers(0, 4096, 4)), {}

    @case(L, "probs", "probability targets (dyadic, summing to exactly 1)")
    def _(r):
        return (f32(r.normal(0, 3, (ROWS, 10))), dyadic_probs(r, ROWS, 10)), {}

    @case(L, "probs_zero_inf", "probabilities with exact zeros where the logit is -inf")
    def _(r):
        p = dyadic_probs(r, ROWS, 10, zeros=0.3)
        x = f32(r.normal(0, 3, (ROWS, 10)))
        x[(p == 0) & (r.random((ROWS, 10)) < 0.5)] = -np.inf
        return (x, p), {}

    @case(L, "smoothing", "label_smoothing=0.1, logits N(0, 3)")
    def _(r):
        return (
            (f32(r.normal(0, 3, (ROWS, 10))), r.integers(0, 10, ROWS)),
            {"label_smoothing": 0.1},
        )

    @case(L, "mean_1e5", "mean over 20000 rows x 5 classes")
    def _(r):
        return (
            (f32(r.normal(0, 3, (BIG // 5, 5))), r.integers(0, 5, BIG // 5)),
            {"reduction": "mean"},
        )

    # -- nll_loss ------------------------------------------------------------
    L = "nll_loss"

    @case(L, "ordinary", "log-probabilities of 16 x 10 logits")
    def _(r):
        return (log_softmax32(r.normal(0, 3, (ROWS, 10))), r.integers(0, 10, ROWS)), {}

    @case(L, "magnitudes", "entries of magnitude 1e-20..1e20")
    def _(r):
        x = f32(sign(r, (ROWS, 10)) * logu(r, -20, 20, (ROWS, 10)))
        return (x, r.integers(0, 10, ROWS)), {}

    @case(L, "mean_1e5", "mean over 20000 rows x 5 classes")
    def _(r):
        return (
            (log_softmax32(r.normal(0, 3, (BIG // 5, 5))), r.integers(0, 5, BIG // 5)),
            {"reduction": "mean"},
        )

    # -- hinge_loss ----------------------------------------------------------
    L = "hinge_loss"

    @case(L, "ordinary", "inputs N(0, 2), targets +-1")
    def _(r):
        return (f32(r.normal(0, 2, N)), f32(sign(r, N))), {}

    @case(L, "threshold", "x t within 16 ulp of 1 (loss 0 or a few ulp of 1)")
    def _(r):
        t = f32(sign(r, N))
        return (f32(bits(np.ones(N), r.integers(-16, 17, N)) * t), t), {}

    @case(L, "magnitudes", "inputs of magnitude 1e-20..1e20")
    def _(r):
        return (f32(sign(r, N) * logu(r, -20, 20, N)), f32(sign(r, N))), {}

    @case(L, "sum_1e5", "sum of 1e5 losses")
    def _(r):
        return (f32(r.normal(0, 2, BIG)), f32(sign(r, BIG))), {"reduction": "sum"}

    # -- l1_loss / mse_loss ----------------------------------------------------
    for L in ("l1_loss", "mse_loss"):
        hi = 20 if L == "l1_loss" else 18

        @case(L, "ordinary", "predictions, targets N(0, 1)")
        def _(r):
            return (f32(r.normal(0, 1, N)), f32(r.normal(0, 1, N))), {}

        @case(L, "near_equal", "targets within 1e-7..1e-3 (relative) of the predictions")
        def _(r):
            p = f32(r.normal(0, 1, N))
            return (p, f32(p * (1 + sign(r, N) * logu(r, -7, -3, N)))), {}

        @case(L, f"mixed_1e{hi}", f"predictions ~1e{hi}, targets ~1")
        def _(r, hi=hi):
            return (f32(r.normal(0, 1, N) * 10.0**hi), f32(r.normal(0, 1, N))), {}

        @case(L, f"tiny_1e-{hi}", f"both of magnitude 1e-{hi}")
        def _(r, hi=hi):
            return (f32(r.normal(0, 1, N) * 10.0**-hi), f32(r.normal(0, 1, N) * 10.0**-hi)), {}

    @case("l1_loss", "mean_1e6", "mean of 1e6 losses (MLX's own mean drifts here)")
    def _(r):
        n = 1_000_000
        return (f32(r.uniform(0, 1, n)), f32(r.uniform(0, 1, n))), {"reduction": "mean"}

    @case("mse_loss", "mean_1e5", "mean of 1e5 losses")
    def _(r):
        return (f32(r.normal(0, 1, BIG)), f32(r.normal(0, 1, BIG))), {"reduction": "mean"}

    # -- smooth_l1_loss / huber_loss ---------------------------------------------
    for L, par in (("smooth_l1_loss", "beta"), ("huber_loss", "delta")):

        @case(L, "ordinary", "errors N(0, 2)")
        def _(r):
            t = f32(r.normal(0, 1, N))
            return (f32(t + r.normal(0, 2, N)), t), {}

        @case(L, "threshold", f"|error| within 16 ulp of {par}=1 (exactly, or nearly)")
        def _(r):
            d = bits(np.ones(N), r.integers(-16, 17, N))
            t = f32(r.uniform(-0.25, 0.25, N))
            t[: N // 2] = 0  # p - t is exactly d there
            return (f32(t.astype(np.float64) + d * sign(r, N)), t), {}

        @case(L, "threshold_0.75", f"{par}=0.75, |error| within 16 ulp of it")
        def _(r, par=par):
            d = bits(np.full(N, 0.75), r.integers(-16, 17, N))
            t = f32(r.uniform(-0.25, 0.25, N))
            return (f32(t.astype(np.float64) + d * sign(r, N)), t), {par: 0.75}

        @case(L, "tiny", "|error| 1e-18..1e-4")
        def _(r):
            e = sign(r, N) * logu(r, -18, -4, N)
            return (f32(e), f32(np.zeros(N))), {}

        @case(L, "huge", "|error| 1e2..1e30")
        def _(r):
            t = f32(r.normal(0, 1, N))
            return (f32(sign(r, N) * logu(r, 2, 30, N)), t), {}

        @case(L, "mean_1e5", "mean of 1e5 losses, errors N(0, 2)")
        def _(r):
            t = f32(r.normal(0, 1, BIG))
            return (f32(t + r.normal(0, 2, BIG)), t), {"reduction": "mean"}

    # -- log_cosh_loss -------------------------------------------------------
    L = "log_cosh_loss"

    @case(L, "ordinary", "errors N(0, 3)")
    def _(r):
        return (f32(r.normal(0, 3, N)), f32(r.normal(0, 1, N))), {}

    @case(L, "tiny", "|error| 1e-19..1e-4 (true 5e-39..5e-9)")
    def _(r):
        s = logu(r, -19, -4, N)
        return (f32(s * r.uniform(-1, 1, N)), f32(s * r.uniform(-1, 1, N))), {}

    @case(L, "underflow", "|error| 1e-30..1e-20 (true value below the normal range)")
    def _(r):
        s = logu(r, -30, -20, N)
        return (f32(s * r.uniform(-1, 1, N)), f32(s * r.uniform(-1, 1, N))), {}

    @case(L, "switch", "|error| near 20 (the switch of forms) and near 9")
    def _(r):
        e = np.where(r.random(N) < 0.5, r.uniform(19.5, 20.5, N), r.uniform(8.5, 9.5, N))
        return (f32(sign(r, N) * e), f32(np.zeros(N))), {}

    @case(L, "large", "|error| 1e2..1e30 (1e4: naive cosh overflows)")
    def _(r):
        x, t = f32(sign(r, N) * logu(r, 2, 30, N)), f32(r.normal(0, 1, N))
        x[0], t[0] = 1e4, 0  # the spec's example: 1e4 - log 2
        return (x, t), {}

    @case(L, "mean_1e5", "mean of 1e5 losses, errors N(0, 3)")
    def _(r):
        return (f32(r.normal(0, 3, BIG)), f32(r.normal(0, 1, BIG))), {"reduction": "mean"}

    # -- gaussian_nll_loss ---------------------------------------------------
    L = "gaussian_nll_loss"

    @case(L, "ordinary", "vars 0.1..4, errors N(0, 1)")
    def _(r):
        return ((f32(r.normal(0, 1, N)), f32(r.normal(0, 1, N)), f32(r.uniform(0.1, 4, N))), {})

    @case(L, "cancel", "log(v) and d^2/v cancel to ~1e-4 relative")
    def _(r):
        v = r.uniform(0.01, 0.9, N)
        d = np.sqrt(-v * np.log(v) * (1 + r.uniform(-1e-4, 1e-4, N)))
        mu = f32(r.normal(0, 1, N))
        y = f32(mu.astype(np.float64) + d)
        return (mu, y, f32(v)), {}

    @case(L, "eps_clamp", "vars 0..1e-6 (clamped to eps)")
    def _(r):
        v = logu(r, -12, -6, N)
        v[:4] = 0
        return ((f32(r.normal(0, 1e-3, N)), f32(r.normal(0, 1e-3, N)), f32(v)), {})

    @case(L, "huge", "errors ~1e20, vars ~1e30..1e37")
    def _(r):
        return (
            (f32(r.normal(0, 1e20, N)), f32(r.normal(0, 1e20, N)), f32(logu(r, 30, 37, N))),
            {},
        )

    @case(L, "full", "full=True, ordinary values")
    def _(r):
        return (
            (f32(r.normal(0, 1, N)), f32(r.normal(0, 1, N)), f32(r.uniform(0.1, 4, N))),
            {"full": True},
        )

    @case(L, "mean_1e5", "mean of 1e5 losses, vars 0.1..4")
    def _(r):
        return (
            (f32(r.normal(0, 1, BIG)), f32(r.normal(0, 1, BIG)), f32(r.uniform(0.1, 4, BIG))),
            {"reduction": "mean"},
        )

    # -- kl_div_loss -----------------------------------------------------------
    L = "kl_div_loss"

    @case(L, "ordinary", "log-probabilities of 16 x 10 logits")
    def _(r):
        return (
            log_softmax32(r.normal(0, 2, (ROWS, 10))),
            log_softmax32(r.normal(0, 2, (ROWS, 10))),
        ), {}

    @case(L, "near_equal", "targets = inputs perturbed by 1e-3 in the logits")
    def _(r):
        z = r.normal(0, 2, (ROWS, 10))
        return (log_softmax32(z), log_softmax32(z + r.normal(0, 1e-3, (ROWS, 10)))), {}

    @case(L, "zero_probs", "target log-probabilities -inf (0 log 0 = 0)")
    def _(r):
        t = log_softmax32(r.normal(0, 2, (ROWS, 10)))
        t[r.random((ROWS, 10)) < 0.3] = -np.inf
        return (log_softmax32(r.normal(0, 2, (ROWS, 10))), t), {}

    @case(L, "tiny_probs", "target log-probabilities down to -80")
    def _(r):
        return (
            log_softmax32(r.normal(0, 2, (ROWS, 10))),
            log_softmax32(r.normal(0, 25, (ROWS, 10))),
        ), {}

    @case(L, "mean_1e5", "mean over 10000 rows x 10 classes")
    def _(r):
        return (
            (
                log_softmax32(r.normal(0, 2, (BIG // 10, 10))),
                log_softmax32(r.normal(0, 2, (BIG // 10, 10))),
            ),
            {"reduction": "mean"},
        )

    # -- cosine_similarity_loss ----------------------------------------------
    L = "cosine_similarity_loss"
    D = 8

    @case(L, "ordinary", "16 x 8 vectors N(0, 1)")
    def _(r):
        return (f32(r.normal(0, 1, (ROWS, D))), f32(r.normal(0, 1, (ROWS, D)))), {}

    @case(L, "huge_1e20", "vectors of magnitude 1e20 (norm^2 overflows float32)")
    def _(r):
        return (f32(r.normal(0, 1e20, (ROWS, D))), f32(r.normal(0, 1e20, (ROWS, D)))), {}

    @case(L, "huge_1e30", "vectors of magnitude 1e30")
    def _(r):
        return (f32(r.normal(0, 1e30, (ROWS, D))), f32(r.normal(0, 1e30, (ROWS, D)))), {}

    @case(L, "tiny_1e-20", "vectors of magnitude 1e-20, eps=0")
    def _(r):
        return (
            (f32(r.normal(0, 1e-20, (ROWS, D))), f32(r.normal(0, 1e-20, (ROWS, D)))),
            {"eps": 0.0},
        )

    @case(L, "mixed_1e20_1e-20", "x1 ~1e20, x2 ~1e-20 (norm product ~1)")
    def _(r):
        return (f32(r.normal(0, 1e20, (ROWS, D))), f32(r.normal(0, 1e-20, (ROWS, D)))), {}

    @case(L, "near_orthogonal", "cosine ~1e-5")
    def _(r):
        a = r.normal(0, 1, (ROWS, D))
        v = r.normal(0, 1, (ROWS, D))
        v -= (np.sum(v * a, axis=1) / np.sum(a * a, axis=1))[:, None] * a
        v += (
            1e-5
            * sign(r, (ROWS, 1))
            * a
            * np.linalg.norm(v, axis=1)[:, None]
            / np.linalg.norm(a, axis=1)[:, None]
        )
        return (f32(a), f32(v)), {}

    @case(L, "parallel", "x2 = c x1 (1 + 1e-6 noise): cosine ~1")
    def _(r):
        a = r.normal(0, 1, (ROWS, D))
        c = logu(r, -3, 3, (ROWS, 1))
        return (f32(a), f32(c * a * (1 + r.normal(0, 1e-6, (ROWS, D))))), {}

    @case(L, "mean_1e5", "mean over 12500 rows x 8, correlated vectors")
    def _(r):
        a = r.normal(0, 1, (BIG // D, D))
        return (f32(a), f32(a + r.normal(0, 1, (BIG // D, D)))), {"reduction": "mean"}

    # -- triplet_loss ----------------------------------------------------------
    L = "triplet_loss"

    def near_equal(r: np.random.Generator, scale: float):
        a = r.normal(0, 1, (ROWS, D)) * scale
        pos = f32(a + r.normal(0, 1, (ROWS, D)) * scale)
        a = f32(a)
        dp = pos.astype(np.float64) - a
        neg = f32(a + dp[:, ::-1])  # same distance up to the float32 rounding
        return (a, pos, neg), {"margin": 0.0}

    @case(L, "ordinary", "16 x 8 entries N(0, 1), margin 1")
    def _(r):
        return tuple(f32(r.normal(0, 1, (ROWS, D))) for _ in range(3)), {}

    @case(L, "near_equal", "dist(a, p) = dist(a, n) up to rounding, margin 0")
    def _(r):
        return near_equal(r, 1.0)

    @case(L, "near_equal_1e20", "as near_equal with entries of magnitude 1e20")
    def _(r):
        return near_equal(r, 1e20)

    @case(L, "huge_1e20", "entries of magnitude 1e20")
    def _(r):
        return tuple(f32(r.normal(0, 1e20, (ROWS, D))) for _ in range(3)), {}

    @case(L, "tiny_1e-20", "entries of magnitude 1e-20 (eps dominates)")
    def _(r):
        return tuple(f32(r.normal(0, 1e-20, (ROWS, D))) for _ in range(3)), {}

    @case(L, "p1", "p=1, entries N(0, 1)")
    def _(r):
        return tuple(f32(r.normal(0, 1, (ROWS, D))) for _ in range(3)), {"p": 1}

    @case(L, "p3", "p=3, entries N(0, 1)")
    def _(r):
        return tuple(f32(r.normal(0, 1, (ROWS, D))) for _ in range(3)), {"p": 3}

    @case(L, "mean_1e5", "mean over 12500 rows x 8")
    def _(r):
        return (tuple(f32(r.normal(0, 1, (BIG // D, D))) for _ in range(3)), {"reduction": "mean"})

    # -- margin_ranking_loss ---------------------------------------------------
    L = "margin_ranking_loss"

    @case(L, "ordinary", "scores N(0, 1), targets +-1, margin 0")
    def _(r):
        return (f32(r.normal(0, 1, N)), f32(r.normal(0, 1, N)), f32(sign(r, N))), {}

    @case(L, "near_margin", "y (x1 - x2) within ~1e-6 of margin=0.1, scores ~1..100")
    def _(r):
        y = f32(sign(r, N))
        x2 = f32(logu(r, 0, 2, N) * sign(r, N))
        x1 = f32(x2 + y * 0.1 * (1 + r.uniform(-1e-6, 1e-6, N)))
        return (x1, x2, y), {"margin": 0.1}

    @case(L, "near_margin_0.5", "y (x1 - x2) within 16 ulp of margin=0.5")
    def _(r):
        y = f32(sign(r, N))
        x2 = f32(r.uniform(-0.25, 0.25, N))
        d = bits(np.full(N, 0.5), r.integers(-16, 17, N))
        return (f32(x2 + y * d), x2, y), {"margin": 0.5}

    @case(L, "huge_1e20", "scores of magnitude 1e20, margin 1")
    def _(r):
        return (
            (f32(r.normal(0, 1e20, N)), f32(r.normal(0, 1e20, N)), f32(sign(r, N))),
            {"margin": 1.0},
        )

    @case(L, "sum_1e5", "sum of 1e5 losses, margin 0.5")
    def _(r):
        return (
            (f32(r.normal(0, 1, BIG)), f32(r.normal(0, 1, BIG)), f32(sign(r, BIG))),
            {"margin": 0.5, "reduction": "sum"},
        )

    # == beyond MLX ===========================================================

    # -- cross_entropy's PyTorch options ------------------------------------------
    L = "cross_entropy"

    @case(L, "class_weights", "class_weights 0.1..3, label_smoothing=0.1, logits N(0, 3)")
    def _(r):
        return (
            (f32(r.normal(0, 3, (ROWS, 10))), r.integers(0, 10, ROWS)),
            {"class_weights": f32(r.uniform(0.1, 3, 10)), "label_smoothing": 0.1},
        )

    @case(L, "ignore_weighted_mean", "ignore_index=-100 on 1/4 of 16 rows, class weights, mean")
    def _(r):
        t = r.integers(0, 10, ROWS)
        t[r.random(ROWS) < 0.25] = -100
        t[0] = -100
        opts = {"class_weights": f32(r.uniform(0.1, 3, 10)), "ignore_index": -100}
        return (f32(r.normal(0, 3, (ROWS, 10))), t), {**opts, "reduction": "mean"}

    # -- sigmoid_focal_loss --------------------------------------------------------
    L = "sigmoid_focal_loss"

    @case(L, "ordinary", "logits N(0, 3), targets {0, 1}, alpha 0.25, gamma 2")
    def _(r):
        return (f32(r.normal(0, 3, N)), f32(r.integers(0, 2, N))), {}

    @case(L, "confident", "correct logits of magnitude 3..28 (true 1e-37..1e-5)")
    def _(r):
        t = f32(r.integers(0, 2, N))
        return (f32(r.uniform(3, 28, N) * np.where(t == 1, 1, -1)), t), {}

    @case(L, "soft_gamma", "targets uniform in [0, 1], gamma=0.5, alpha=None, logits N(0, 4)")
    def _(r):
        return (f32(r.normal(0, 4, N)), f32(r.uniform(0, 1, N))), {"gamma": 0.5, "alpha": None}

    @case(L, "huge", "logits of magnitude 1e2..1e30, random targets")
    def _(r):
        return (f32(sign(r, N) * logu(r, 2, 30, N)), f32(r.integers(0, 2, N))), {}

    @case(L, "mean_1e5", "mean of 1e5 losses, logits N(0, 3)")
    def _(r):
        return (f32(r.normal(0, 3, BIG)), f32(r.integers(0, 2, BIG))), {"reduction": "mean"}

    # -- softmax_focal_loss ----------------------------------------------------------
    L = "softmax_focal_loss"

    @case(L, "ordinary", "16 x 10 logits N(0, 3), class indices, gamma 2")
    def _(r):
        return (f32(r.normal(0, 3, (ROWS, 10))), r.integers(0, 10, ROWS)), {}

    @case(L, "confident", "the correct logit leads by 3..28 (true 1e-34..1e-2)")
    def _(r):
        x = r.normal(0, 1, (ROWS, 10))
        t = r.integers(0, 10, ROWS)
        x[np.arange(ROWS), t] = x.max(axis=1) + r.uniform(3, 28, ROWS)
        return (f32(x), t), {}

    @case(L, "probs_alpha", "dyadic probabilities (zeros: some -inf logits), alpha per class")
    def _(r):
        p = dyadic_probs(r, ROWS, 10, zeros=0.3)
        x = f32(r.normal(0, 3, (ROWS, 10)))
        x[(p == 0) & (r.random((ROWS, 10)) < 0.5)] = -np.inf
        return (x, p), {"alpha": f32(r.uniform(0.25, 2, 10)), "gamma": 1.5}

    @case(L, "mean_1e5", "mean over 20000 rows x 5 classes")
    def _(r):
        return (
            (f32(r.normal(0, 3, (BIG // 5, 5))), r.integers(0, 5, BIG // 5)),
            {"reduction": "mean"},
        )

    # -- dice_loss -----------------------------------------------------------------
    L = "dice_loss"
    W = 64  # entries summed per row

    @case(L, "ordinary", "16 rows x 64: probabilities uniform, masks {0, 1}")
    def _(r):
        return (f32(r.uniform(0, 1, (ROWS, W))), f32(r.integers(0, 2, (ROWS, W)))), {
            "reduction": "none"
        }

    @case(L, "near_perfect", "probabilities within 1e-7..1e-3 of the masks (loss ~1e-7..1e-3)")
    def _(r):
        m = r.integers(0, 2, (ROWS, W))
        d = logu(r, -7, -3, (ROWS, 1)) * r.uniform(0, 2, (ROWS, W))
        return (f32(np.where(m == 1, 1 - d, d)), f32(m)), {"reduction": "none"}

    @case(L, "edge_smooth0", "smooth=0: empty rows (0), empty masks (1), near-perfect overlap")
    def _(r):
        m = (r.random((ROWS, W)) < 0.1).astype(np.float64)
        d = logu(r, -6, -2, (ROWS, 1)) * r.uniform(0, 2, (ROWS, W))
        x = np.where(m == 1, 1 - d, d)
        m[:4], x[:2] = 0, 0  # rows 0-1: nothing in either; rows 2-3: empty masks
        return (f32(x), f32(m)), {"smooth": 0.0, "reduction": "none"}

    @case(L, "mean_1e5", "mean over 10000 rows x 10, probabilities uniform, masks {0, 1}")
    def _(r):
        shape = (BIG // 10, 10)
        return (f32(r.uniform(0, 1, shape)), f32(r.integers(0, 2, shape))), {"reduction": "mean"}

    # -- info_nce_loss ---------------------------------------------------------------
    L = "info_nce_loss"

    @case(L, "ordinary", "16 pairs x 8, keys = queries + N(0, 0.5^2), temperature 0.1")
    def _(r):
        q = r.normal(0, 1, (ROWS, D))
        return (f32(q), f32(q + r.normal(0, 0.5, (ROWS, D)))), {"reduction": "none"}

    @case(L, "confident", "keys = queries (1 + 1e-3 noise), temperature 0.02 (loss 1e-25..1e-2)")
    def _(r):
        q = r.normal(0, 1, (ROWS, D))
        k = q * (1 + r.normal(0, 1e-3, (ROWS, D)))
        return (f32(q), f32(k)), {"temperature": 0.02, "reduction": "none"}

    @case(L, "symmetric_raw", "symmetric=True, normalize=False, entries N(0, 0.7^2), temp. 0.5")
    def _(r):
        q = r.normal(0, 0.7, (ROWS, D))
        k = q + r.normal(0, 0.5, (ROWS, D))
        opts = {"temperature": 0.5, "normalize": False, "symmetric": True}
        return (f32(q), f32(k)), {**opts, "reduction": "none"}

    @case(L, "huge_1e20", "queries of magnitude 1e20, keys 1e-20 (normalized)")
    def _(r):
        q = r.normal(0, 1, (ROWS, D))
        k = q + r.normal(0, 0.5, (ROWS, D))
        return (f32(q * 1e20), f32(k * 1e-20)), {"reduction": "none"}

    @case(L, "mean_256", "mean over 256 pairs x 32 (256 x 256 similarities)")
    def _(r):
        q = r.normal(0, 1, (256, 32))
        return (f32(q), f32(q + r.normal(0, 1, (256, 32)))), {"reduction": "mean"}

    # -- nt_xent_loss --------------------------------------------------------------
    L = "nt_xent_loss"

    def views(r: np.random.Generator, n: int, dim: int, noise: float) -> np.ndarray:
        z = r.normal(0, 1, (n, dim))
        return f32(np.concatenate([z, z + r.normal(0, noise, (n, dim))]))

    @case(L, "ordinary", "SimCLR: 2 views (noise 0.5) of 8 examples x 8, temperature 0.07")
    def _(r):
        return (views(r, 8, D, 0.5), np.tile(np.arange(8), 2)), {"reduction": "none"}

    @case(L, "multi_positive", "16 x 8 around 5 class centers, one label alone, temperature 0.5")
    def _(r):
        y = r.integers(0, 5, ROWS)
        y[0] = 9  # no positive: 0
        x = r.normal(0, 1, (10, D))[y] + r.normal(0, 0.7, (ROWS, D))
        return (f32(x), y), {"temperature": 0.5, "reduction": "none"}

    @case(L, "confident", "2 views (1e-3 apart) of 8 nearly orthogonal examples, temp. 0.05")
    def _(r):
        z = np.eye(8, D) + r.normal(0, 0.1, (8, D))
        x = np.concatenate([z, z * (1 + r.normal(0, 1e-3, (8, D)))])
        return (f32(x), np.tile(np.arange(8), 2)), {"temperature": 0.05, "reduction": "none"}

    @case(L, "mean_256", "mean over the 256 positive pairs of 2 views of 128 x 32, temp. 0.1")
    def _(r):
        return (views(r, 128, 32, 1.0), np.tile(np.arange(128), 2)), {
            "temperature": 0.1,
            "reduction": "mean",
        }

    # -- squared_hinge_loss --------------------------------------------------------
    L = "squared_hinge_loss"

    @case(L, "ordinary", "inputs N(0, 2), targets +-1")
    def _(r):
        return (f32(r.normal(0, 2, N)), f32(sign(r, N))), {}

    @case(L, "threshold", "x t within 16 ulp of 1 (loss 0 or below 1e-12)")
    def _(r):
        t = f32(sign(r, N))
        return (f32(bits(np.ones(N), r.integers(-16, 17, N)) * t), t), {}

    @case(L, "magnitudes", "inputs of magnitude 1e-20..1.8e19 (loss up to 3e38)")
    def _(r):
        return (f32(sign(r, N) * logu(r, -20, 19.25, N)), f32(sign(r, N))), {}

    @case(L, "sum_1e5", "sum of 1e5 losses")
    def _(r):
        return (f32(r.normal(0, 2, BIG)), f32(sign(r, BIG))), {"reduction": "sum"}

    # -- multiclass_hinge_loss -----------------------------------------------------
    L = "multiclass_hinge_loss"

    @case(L, "ordinary", "16 x 10 logits N(0, 1), margin 1")
    def _(r):
        return (f32(r.normal(0, 1, (ROWS, 10))), r.integers(0, 10, ROWS)), {}

    @case(L, "near_margin", "x_y - max of the others within ~1e-6 of margin=0.1, logits ~1..100")
    def _(r):
        x = f32(sign(r, (ROWS, 1)) * logu(r, 0, 2, (ROWS, 1)) + r.normal(0, 1, (ROWS, 10)))
        t = r.integers(0, 10, ROWS)
        rows = np.arange(ROWS)
        x[rows, t] = -np.inf
        rival = x.max(axis=1).astype(np.float64)
        x[rows, t] = f32(rival + 0.1 * (1 + r.uniform(-1e-6, 1e-6, ROWS)))
        return (x, t), {"margin": 0.1}

    @case(L, "magnitudes", "logits of magnitude 1e-20..1e30, margin 1")
    def _(r):
        x = f32(sign(r, (ROWS, 10)) * logu(r, -20, 30, (ROWS, 10)))
        return (x, r.integers(0, 10, ROWS)), {}

    @case(L, "mean_1e5", "mean over 20000 rows x 5, logits N(0, 1)")
    def _(r):
        return (
            (f32(r.normal(0, 1, (BIG // 5, 5))), r.integers(0, 5, BIG // 5)),
            {"reduction": "mean"},
        )

    # -- cosine_embedding_loss -----------------------------------------------------
    L = "cosine_embedding_loss"

    @case(L, "ordinary", "16 x 8 vectors N(0, 1), targets +-1, margin 0")
    def _(r):
        return (
            (f32(r.normal(0, 1, (ROWS, D))), f32(r.normal(0, 1, (ROWS, D))), f32(sign(r, ROWS))),
            {},
        )

    @case(L, "parallel", "targets 1, x2 = c x1 (1 + 1e-6 noise): 1 - cos ~1e-12")
    def _(r):
        a = r.normal(0, 1, (ROWS, D))
        c = logu(r, -3, 3, (ROWS, 1))
        b = c * a * (1 + r.normal(0, 1e-6, (ROWS, D)))
        return (f32(a), f32(b), f32(np.ones(ROWS))), {}

    @case(L, "magnitudes", "each vector of magnitude 1e-20..1e20 (eps 1e-8 binds), margin -0.5")
    def _(r):
        a = r.normal(0, 1, (ROWS, D)) * logu(r, -20, 20, (ROWS, 1))
        b = r.normal(0, 1, (ROWS, D)) * logu(r, -20, 20, (ROWS, 1))
        return (f32(a), f32(b), f32(sign(r, ROWS))), {"margin": -0.5}

    @case(L, "mean_1e5", "mean over 12500 rows x 8, correlated vectors, margin 0.2")
    def _(r):
        a = r.normal(0, 1, (BIG // D, D))
        b = a + r.normal(0, 1, (BIG // D, D))
        return (f32(a), f32(b), f32(sign(r, BIG // D))), {"margin": 0.2, "reduction": "mean"}

    # -- poisson_nll_loss ----------------------------------------------------------
    L = "poisson_nll_loss"

    @case(L, "ordinary", "log-rates N(0, 1), counts ~ Poisson(e^x)")
    def _(r):
        x = f32(r.normal(0, 1, N))
        return (x, f32(r.poisson(np.exp(x)))), {"reduction": "none"}

    @case(L, "full_near_min", "full=True, counts 3..1e6, log-rates within 1e-3 of log t")
    def _(r):
        t = f32(np.round(logu(r, 0.4, 6, N)))
        x = f32(np.log(t) + r.normal(0, 1e-3, N))
        return (x, t), {"full": True, "reduction": "none"}

    @case(L, "rates_full", "log_input=False, full=True: rates 0, 1e-30..1e-6, near counts 0..1e4")
    def _(r):
        t = np.round(logu(r, 0, 4, N))
        t[:8], t[8:12] = 0, 1
        lam = t * (1 + r.normal(0, 1e-3, N))
        lam[:8] = r.uniform(0, 2, 8)
        lam[12:20] = logu(r, -30, -6, 8)
        lam[20:22] = 0
        return (f32(lam), f32(t)), {"log_input": False, "full": True, "reduction": "none"}

    @case(L, "extreme", "log-rates -80..80, counts 0..1e6; -inf with count 0")
    def _(r):
        x = r.uniform(-80, 80, N)
        t = np.round(logu(r, 0, 6, N))
        t[:12] = 0
        x[:4] = -np.inf
        return (f32(x), f32(t)), {"reduction": "none"}

    @case(L, "mean_1e5", "mean of 1e5 losses, log-rates N(-1, 1), counts ~ Poisson(e^x)")
    def _(r):
        x = f32(r.normal(-1, 1, BIG))
        return (x, f32(r.poisson(np.exp(x)))), {"reduction": "mean"}

    # -- ctc_loss --------------------------------------------------------------------
    L = "ctc_loss"

    def ctc_batch(
        r: np.random.Generator, n: int, steps: int, classes: int, width: int, least: int = 1
    ):
        """Random targets of least..width labels, input lengths from the shortest
        possible (a blank between repeated labels) to ``steps``."""
        y = r.integers(1, classes, (n, width))
        tl = r.integers(least, width + 1, n)
        repeats = [np.sum(row[1:k] == row[: k - 1]) for row, k in zip(y, tl, strict=True)]
        return y, r.integers(tl + np.array(repeats), steps + 1), tl

    @case(L, "ordinary", "8 sequences: T=12, 5 classes, 1..4 labels, log_softmax of N(0, 2)")
    def _(r):
        y, il, tl = ctc_batch(r, 8, 12, 5, 4)
        return (log_softmax32(r.normal(0, 2, (8, 12, 5))), y, il, tl), {"reduction": "none"}

    @case(L, "confident", "one alignment leads by 9..16 at every step (loss ~1e-6..1e-3)")
    def _(r):
        n, steps, classes, width = 8, 12, 5, 4
        y, _, tl = ctc_batch(r, n, steps, classes, width)
        z = r.normal(0, 1, (n, steps, classes))
        for i in range(n):
            path: list[int] = []
            for j, c in enumerate(y[i, : tl[i]]):
                if j and c == y[i, j - 1]:
                    path.append(0)  # the blank between repeats
                path.append(int(c))
            while len(path) < steps:  # repeat a step, or add a blank at a boundary
                at = int(r.integers(0, len(path) + 1))
                if at and r.random() < 0.5:
                    path.insert(at, path[at - 1])
                elif at in (0, len(path)) or path[at - 1] != path[at]:
                    path.insert(at, 0)
            z[i, np.arange(steps), path] += r.uniform(9, 16)
        return (log_softmax32(z), y, np.full(n, steps), tl), {"reduction": "none"}

    @case(L, "long", "8 sequences: T=50, 32 classes, 1..4 labels (naive: underflow)")
    def _(r):
        y, _, tl = ctc_batch(r, 8, 50, 32, 4)
        z = r.normal(0, 1, (8, 50, 32))
        return (log_softmax32(z), y, np.full(8, 50), tl), {"reduction": "none"}

    @case(L, "lengths", "empty targets, shortest inputs, impossible ones (inf), length 0")
    def _(r):
        y = r.integers(0, 4, (8, 4))  # padding: anything, blank included
        rows = [  # (labels, input length)
            ([], 8),
            ([], 0),  # nothing to align: loss 0
            ([1, 1, 1], 5),  # the shortest: 1 b 1 b 1
            ([1, 1, 1], 4),  # too short: inf
            ([1, 2, 3, 1], 4),
            ([1, 2, 3, 1], 3),  # too short: inf
            ([3, 2], 8),
            ([2, 2, 3, 3], 6),
        ]
        for i, (labels, _) in enumerate(rows):
            y[i, : len(labels)] = labels
        il = np.array([k for _, k in rows])
        tl = np.array([len(labels) for labels, _ in rows])
        return (log_softmax32(r.normal(0, 2, (8, 12, 5))), y, il, tl), {"reduction": "none"}

    @case(L, "mean_per_length", "PyTorch's mean (per target length): 8 x T=50 x 32 classes")
    def _(r):
        y, il, tl = ctc_batch(r, 8, 50, 32, 4)
        return (log_softmax32(r.normal(0, 2, (8, 50, 32))), y, il, tl), {"reduction": "mean"}

    return cases


CASES: list[Case] = _cases()
CASE_BY_ID: dict[str, Case] = {c.id: c for c in CASES}


# ---------------------------------------------------------------------------
# Exact values
# ---------------------------------------------------------------------------


def _to_mp(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_to_mp(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    return mpf(float(v))  # float32 -> float64 -> mpf: exact


def _agree(a: Any, b: Any) -> bool:
    return a == b or abs(a - b) <= abs(a) * mpf(10) ** -30


def _stable(fn: Callable[[], Any]) -> Any:
    """``fn()`` at 50, 80, 120, ... digits until two precisions agree to 30 digits
    (every entry, where ``fn`` returns a list)."""
    prev = None
    for dps in (50, 80, 120, 200, 400, 800):
        with mp.workdps(dps):
            cur = fn()
        if prev is not None:
            if isinstance(cur, list):
                if all(_agree(a, b) for a, b in zip(cur, prev, strict=True)):
                    return cur
            elif _agree(cur, prev):
                return cur
        prev = cur
    raise AssertionError(f"reference did not converge: {prev}")


def exact_examples(
    loss: str, args: Sequence[np.ndarray], kwargs: dict, count: int | None = None
) -> list:
    """The exact per-example losses (mpf) of the first axis of ``args`` (the first
    ``count`` examples only, if given)."""
    ref = REFERENCES[loss]
    opts = {
        k: _to_mp(v) if isinstance(v, np.ndarray) else v
        for k, v in kwargs.items()
        if k != "reduction"
    }
    n = args[0].shape[0] if count is None else count
    out = []
    with mp.workdps(50):
        if loss in BATCH_LOSSES:  # the whole batch, and the examples wanted
            whole = [_to_mp(a) for a in args]
            return _stable(lambda: ref(*whole, rows=range(n), **opts))
        for i in range(n):
            ex = [_to_mp(a[i]) for a in args]
            out.append(_stable(lambda ex=ex: ref(*ex, **opts)))
    return out


# Reductions over at most this many examples sum their mpmath values exactly.
EXACT_REDUCTION_MAX = 1024

# Examples checked against mpmath in a float64 reduction: fewer where the
# reference is costly (each example of a batch loss needs the whole batch).
_CHECKED = {"info_nce_loss": 8, "nt_xent_loss": 8}


@cache
def exact(case_id: str) -> list:
    """The exact result of a case: per-example mpf values, or ``[total]``.

    A reduction over at most ``EXACT_REDUCTION_MAX`` examples sums their mpmath
    values (``mean_parts`` gives the mean's divisors and denominator). A larger
    one (~1e5 elements), or one of a batch loss, is ``math.fsum`` of per-example
    values evaluated in float64 (``naive(..., float64)``, with stable forms
    where the literal formula cancels). That is exact enough: every input is a
    float32, so differences are exact and each per-example value carries a
    relative error of a few 2**-53; this is checked here against mpmath on the
    first 64 examples (8 of a batch loss; relative error <= 1e-14), and the
    condition number ``sum|v| / |sum v|`` is checked to be <= 1e3, so the total
    is within 1e-11 relative (~2e-4 ulp of float32) of the exact one. ``fsum``
    itself is correctly rounded, and the mean divides the float64 sum exactly
    in mpmath.
    """
    case = CASE_BY_ID[case_id]
    args, kwargs = case.inputs()
    red = kwargs["reduction"]
    if red == "none":
        return exact_examples(case.loss, args, kwargs)
    divisors, den = mean_parts(case.loss, args, kwargs) if red == "mean" else (None, None)
    n = args[0].shape[0]
    if n <= EXACT_REDUCTION_MAX and case.loss not in _CHECKED:
        values = exact_examples(case.loss, args, kwargs)
        with mp.workdps(50):
            if divisors is not None:
                values = [v / int(d) for v, d in zip(values, divisors, strict=True)]
            total = mpmath.fsum(values)
            if red == "mean":
                total /= len(values) if den is None else mpf(den)
        return [total]
    per = naive(case.loss, args, kwargs, np.float64)
    k = min(n, _CHECKED.get(case.loss, 64))
    check = exact_examples(case.loss, args, kwargs, count=k)
    for v, ref in zip(per[:k], check, strict=True):
        assert abs(mpf(float(v)) - ref) <= mpf(1e-14) * abs(ref) + mpf(1e-300), (
            case_id,
            float(v),
            ref,
        )
    if divisors is not None:
        per = per / divisors  # within 2**-53 relative of the exact quotients
    total = math.fsum(per.tolist())
    assert math.fsum(np.abs(per).tolist()) <= 1e3 * abs(total), case_id
    with mp.workdps(50):
        value = mpf(total)
        if red == "mean":
            value /= per.size if den is None else mpf(den)
    return [value]


# ---------------------------------------------------------------------------
# ulp errors
# ---------------------------------------------------------------------------


def ulp_error(got: float, true: Any) -> float:
    """``|got - true|`` in ulp of ``fl32(true)``; see the module docstring for
    true values that are not normal float32 numbers."""
    got = float(got)
    if math.isnan(got):
        return math.inf
    with mp.workprec(24):
        t24 = +true  # rounded to 24 bits (the exponent range is checked below)
    if abs(t24) < TINY:
        if abs(got) <= UNDERFLOW_OK and not (got * true < 0):
            return 0.0
        return math.inf
    if abs(t24) > FMAX:  # the true value overflows float32: +-inf is right
        return 0.0 if math.isinf(got) and (got > 0) == (true > 0) else math.inf
    if math.isinf(got):
        return math.inf
    _, e = math.frexp(float(t24))
    with mp.workdps(50):
        return float(abs(mpf(got) - true) / mpf(2.0 ** (e - 24)))


@dataclass
class Measurement:
    """The worst ulp error of one result against the exact values."""

    ulp: float
    index: int
    got: float
    true: float
    inputs: str

    def __str__(self) -> str:
        return (
            f"{self.ulp:.3g} ulp at [{self.index}] {self.inputs}: "
            f"got {self.got!r}, true {self.true!r}"
        )


def _describe(args: Sequence[np.ndarray], i: int, reduced: bool) -> str:
    if reduced:
        return "(reduction over " + " x ".join(map(str, args[0].shape)) + ")"
    parts = []
    for a in args:
        v = a[i]
        parts.append(
            np.array2string(v, precision=9, separator=",", max_line_width=10**6)
            if isinstance(v, np.ndarray)
            else repr(v.item())
        )
    return "(" + ", ".join(parts) + ")"


def measure_output(case: Case, out: Any) -> Measurement:
    """Worst ulp error of ``out`` (the result of ``case``, as NumPy)."""
    args, kwargs = case.inputs()
    true = exact(case.id)
    got = np.asarray(out, dtype=np.float64).reshape(-1)
    if got.size != len(true):
        raise AssertionError(f"{case.id}: {got.size} results for {len(true)} examples")
    errs = [ulp_error(g, t) for g, t in zip(got.tolist(), true, strict=True)]
    i = (
        int(np.argmax(errs))
        if not any(map(math.isinf, errs))
        else next(j for j, e in enumerate(errs) if math.isinf(e))
    )
    return Measurement(
        errs[i],
        i,
        float(got[i]),
        float(true[i]),
        _describe(args, i, kwargs["reduction"] != "none"),
    )


def run_anyloss(case: Case, backend: Any) -> np.ndarray:
    """``anyloss.<loss>`` on ``backend`` (a ``tests/backends.py`` Backend)."""
    import anyloss

    args, kwargs = case.inputs()
    opts = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    out = getattr(anyloss, case.loss)(*(backend.asarray(a) for a in args), **opts)
    return backend.to_numpy(out)


def run_compiled(case: Case, backend: Any) -> np.ndarray:
    """``anyloss.<loss>`` on ``backend`` under its compiler: ``jax.jit`` on
    JAX, ``mx.compile`` on MLX (the options as constants of the trace)."""
    import anyloss

    args, kwargs = case.inputs()
    opts = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    fn = getattr(anyloss, case.loss)

    def call(*arrays: Any) -> Any:
        return fn(*arrays, **opts)

    if backend.name == "jax":
        compiled = backend.module.jit(call)
    elif backend.name == "mlx":
        compiled = backend.module.compile(call)
    else:
        raise ValueError(f"no compiler for {backend.name}")
    return backend.to_numpy(compiled(*(backend.asarray(a) for a in args)))


def run_naive(case: Case) -> np.ndarray:
    args, kwargs = case.inputs()
    return naive_reduced(case.loss, args, kwargs)


def run_mlx_native(case: Case) -> np.ndarray:
    """MLX's own ``mlx.nn.losses.<loss>`` (float32 MLX arrays)."""
    import mlx.core as mx
    import mlx.nn.losses as mlx_losses

    args, kwargs = case.inputs()
    out = getattr(mlx_losses, case.loss)(*(mx.array(a) for a in args), **kwargs)
    return np.array(out)


def measure(case: Case, backend: Any) -> Measurement:
    return measure_output(case, run_anyloss(case, backend))


def measure_naive(case: Case) -> Measurement:
    return measure_output(case, run_naive(case))

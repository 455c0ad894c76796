"""ctc_loss on every backend, against PyTorch, optax and an mpmath brute force.

References are independent of anyloss: ``torch.nn.functional.ctc_loss`` in
float64 (values, and gradients through torch autograd), ``optax.ctc_loss``
(values) and, as the exactness reference, the sum over every alignment of a
tiny problem enumerated with mpmath. A few shapes only: JAX compiles per shape.
"""

from __future__ import annotations

import functools
import itertools

import accuracy_cases as A
import mpmath
import numpy as np
import pytest
from backends import make

import anyloss

torch = pytest.importorskip("torch")
F = torch.nn.functional

# one shape for everything (JAX compiles per shape): batch 4, 5 steps, 3
# classes (3**5 = 243 alignments, few enough to enumerate), targets padded to 3
N, T, C, S = 4, 5, 3, 3
PAD = -7  # a padding value no library could gather: it must be ignored


def _log_softmax(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=-1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=-1, keepdims=True))


@functools.cache
def case(blank: int = 0, seed: int = 0):
    """float32 log-probabilities (N, T, C), padded targets and lengths.

    Row 0 repeats a label (a blank is needed between), row 1 is shorter than T,
    row 2 has one label and row 3 an empty target (only blanks), both with
    shorter inputs.
    """
    rng = np.random.default_rng(seed)
    lp = _log_softmax(2.0 * rng.normal(size=(N, T, C))).astype(np.float32)
    a, b = _labels(blank)
    targets = np.array([[a, a, b], [b, a, PAD], [b, PAD, PAD], [PAD, PAD, PAD]])
    input_lengths = np.array([5, 4, 3, 2])
    target_lengths = np.array([3, 2, 1, 0])
    return lp, targets, input_lengths, target_lengths


def _labels(blank: int) -> tuple[int, int]:
    a, b = (lab for lab in range(C) if lab != blank)
    return a, b


def _for_torch(targets: np.ndarray, blank: int) -> np.ndarray:
    """The padding replaced by a valid label (torch never reads it either)."""
    return np.where(targets == PAD, _labels(blank)[0], targets)


def torch_ctc(lp, targets, il, tl, blank=0, reduction="none", zero_infinity=False, grad=False):
    """torch's CTC in float64 on the same values; (loss, d loss.sum() / d lp)."""
    x = torch.tensor(lp, dtype=torch.float64).requires_grad_(grad)
    out = F.ctc_loss(
        x.transpose(0, 1),
        torch.tensor(_for_torch(targets, blank)),
        torch.tensor(il),
        torch.tensor(tl),
        blank=blank,
        reduction=reduction,
        zero_infinity=zero_infinity,
    )
    if not grad:
        return out.detach().numpy(force=True), None
    (g,) = torch.autograd.grad(out.sum(), x)
    return out.detach().numpy(force=True), g.numpy(force=True)


def _args(xp, lp, targets, il, tl, dtype="float32"):
    ints = "int32" if xp.name == "jax" else None
    return (
        xp.asarray(lp, dtype),
        xp.asarray(targets, ints),
        xp.asarray(il, ints),
        xp.asarray(tl, ints),
    )


def _rtol(xp) -> float:
    # float64 recursion where the library has float64, float32 on JAX / MLX
    return 1e-6 if xp.has_float64 else 1e-5


# ---------------------------------------------------------------------------
# values against PyTorch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("blank", [0, 2])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_matches_torch(xp, blank, reduction):
    lp, targets, il, tl = case(blank)
    out = anyloss.ctc_loss(*_args(xp, lp, targets, il, tl), blank=blank, reduction=reduction)
    got = xp.to_numpy(out)
    assert xp.dtype_name(out) == "float32"
    want, _ = torch_ctc(lp, targets, il, tl, blank, reduction)
    assert got.shape == want.shape == ((N,) if reduction == "none" else ())
    np.testing.assert_allclose(got, want, rtol=_rtol(xp), atol=1e-7)


def test_float64_matches_torch(xp):
    if not xp.has_float64:
        pytest.skip(f"{xp.name} has no float64 here")
    _, targets, il, tl = case(0, seed=1)
    lp64 = _log_softmax(np.random.default_rng(2).normal(size=(N, T, C)) * 3)
    out = anyloss.ctc_loss(*_args(xp, lp64, targets, il, tl, "float64"), reduction="none")
    assert xp.dtype_name(out) == "float64"
    np.testing.assert_allclose(
        xp.to_numpy(out), torch_ctc(lp64, targets, il, tl)[0], rtol=1e-13, atol=0
    )


def test_lengths_as_python_lists(xp):
    lp, targets, il, tl = case()
    out = anyloss.ctc_loss(
        xp.asarray(lp), xp.asarray(targets), il.tolist(), tl.tolist(), reduction="none"
    )
    np.testing.assert_allclose(xp.to_numpy(out), torch_ctc(lp, targets, il, tl)[0], rtol=1e-5)


def test_impossible_alignments_and_zero_infinity(xp):
    """A target too long for its input (row 0: 'a a b' needs 4 steps; row 1: 2
    labels in 1 step) has an infinite loss; zero_infinity makes it 0."""
    lp, targets, _, tl = case()
    il = np.array([3, 1, 4, 0])  # row 3: empty input, empty target: loss 0
    for zero_inf in (False, True):
        for reduction in ("none", "mean", "sum"):
            out = anyloss.ctc_loss(
                *_args(xp, lp, targets, il, tl),
                zero_infinity=zero_inf,
                reduction=reduction,
            )
            want, _ = torch_ctc(lp, targets, il, tl, 0, reduction, zero_inf)
            got = xp.to_numpy(out)
            if reduction == "none":
                assert list(np.isinf(want)) == [not zero_inf] * 2 + [False] * 2
                assert want[3] == 0
            np.testing.assert_allclose(got, want, rtol=_rtol(xp), atol=1e-7)


def test_empty_target_is_all_blanks(xp):
    lp, targets, il, tl = case()
    out = xp.to_numpy(anyloss.ctc_loss(*_args(xp, lp, targets, il, tl), reduction="none"))
    np.testing.assert_allclose(out[3], -lp[3, :2, 0].astype(np.float64).sum(), rtol=1e-6)


# ---------------------------------------------------------------------------
# values against optax
# ---------------------------------------------------------------------------


@functools.cache
def optax_reference(blank: int) -> np.ndarray:
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    lp, targets, il, tl = case(blank)
    logit_paddings = (np.arange(T)[None, :] >= il[:, None]).astype(np.float32)
    label_paddings = (np.arange(S)[None, :] >= tl[:, None]).astype(np.float32)
    # optax applies log_softmax to its logits, which leaves log-probabilities as
    # they are (to float32 rounding)
    out = optax.ctc_loss(
        jnp.asarray(lp),
        jnp.asarray(logit_paddings),
        jnp.asarray(_for_torch(targets, blank).astype(np.int32)),
        jnp.asarray(label_paddings),
        blank_id=blank,
    )
    return np.asarray(out, dtype=np.float64)


@pytest.mark.parametrize("blank", [2])
def test_matches_optax(xp, blank):
    lp, targets, il, tl = case(blank)
    out = anyloss.ctc_loss(*_args(xp, lp, targets, il, tl), blank=blank, reduction="none")
    np.testing.assert_allclose(xp.to_numpy(out), optax_reference(blank), rtol=2e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# exactness: brute force over all alignments with mpmath
# ---------------------------------------------------------------------------


def _collapse(path, blank):
    out, prev = [], None
    for p in path:
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return out


def _brute_force(lp, target, steps, blank):
    """-log of the sum over every alignment of length ``steps`` giving ``target``,
    from the exact float32 values, at 60 digits."""
    with mpmath.workdps(60):
        total = mpmath.mpf(0)
        for path in itertools.product(range(lp.shape[1]), repeat=steps):
            if _collapse(path, blank) == target:
                total += mpmath.exp(
                    mpmath.fsum(mpmath.mpf(float(lp[t, c])) for t, c in enumerate(path))
                )
        return -mpmath.log(total) if total > 0 else mpmath.inf


@functools.cache
def brute_cases():
    """Seeded float32 problems from flat to very confident predictions, each
    blank, and a cancelling one (below), with the exact loss of every sequence
    (inf where impossible)."""
    rng = np.random.default_rng(20261202)
    problems = []
    for i, scale in enumerate([0.5, 1.0, 3.0, 8.0, 20.0, 50.0] * 2):
        blank = i % C
        lp = _log_softmax(scale * rng.normal(size=(N, T, C))).astype(np.float32)
        labels = [c for c in range(C) if c != blank]
        targets = rng.choice(labels, size=(N, S))
        problems.append(
            (lp, targets, rng.integers(1, T + 1, size=N), rng.integers(0, S + 1, size=N), blank)
        )
    # Row 0: the target [2] (blank 1) over 3 steps, from two likely alignments
    # (2 1 1 and 2 2 1, probabilities 0.69 and 0.31): a loss of 2.1e-6 summed
    # from log-probabilities of -0.37 and -1.17.
    lp, targets, il, tl, _ = problems[1]  # blank 1 already
    lp = lp.copy()
    lp[0, :3] = np.array(
        [
            [-61.6246, -12.3019, -4.5433e-6],
            [-17.5594, -0.372997, -1.16689],
            [-75.8017, 0.0, -43.6704],
        ],
        dtype=np.float32,
    )
    targets = targets.copy()
    targets[0, 0] = 2
    problems.append((lp, targets, np.array([3, *il[1:]]), np.array([1, *tl[1:]]), 1))
    return [
        (
            lp,
            targets,
            il,
            tl,
            blank,
            [_brute_force(lp[n], list(targets[n, : tl[n]]), int(il[n]), blank) for n in range(N)],
        )
        for lp, targets, il, tl, blank in problems
    ]


EPS32 = 2.0**-23


def test_exact_against_brute_force(xp):
    """float64 recursion (NumPy, torch, Dask, array-api-strict, CuPy): the
    float32 result within 4 ulp of the exact value (measured: 0.5, correctly
    rounded, the cancelling case included).

    float32 recursion (JAX without x64, MLX): the error is that of float32 log
    space, about an ulp of the log-probabilities the alignments add up at each
    step, not an ulp of the loss. On the cancelling case (a loss of 2.1e-6 from
    log-probabilities of -0.37 and -1.17) that is 1e5 ulp of the loss, as it is
    for torch's own float32 ctc_loss. Asserted instead:
    ``|error| <= eps32 * input_length * max(1, loss)``. Measured worst, as a
    fraction of that bound: 0.18 on every backend (and on torch's float32
    ctc_loss); in ulp of the loss, on the cancelling case: JAX 1.2e5, MLX 1.1e4,
    torch's float32 ctc_loss 1.2e5 (on all the other cases: at most 1.7 ulp on
    JAX and MLX, 3.1 on torch's float32 ctc_loss).
    """
    worst = 0.0
    for lp, targets, il, tl, blank, exact in brute_cases():
        out = anyloss.ctc_loss(*_args(xp, lp, targets, il, tl), blank=blank, reduction="none")
        for got, true, steps in zip(xp.to_numpy(out), exact, il, strict=True):
            if true == mpmath.inf:
                assert np.isposinf(got)
            elif xp.has_float64:
                worst = max(worst, A.ulp_error(got, true))
            else:
                err = abs(mpmath.mpf(float(got)) - true) / max(1, true)
                worst = max(worst, float(err) / (EPS32 * int(steps)))
    assert worst <= (4.0 if xp.has_float64 else 1.0), f"{xp.name}: {worst}"


# ---------------------------------------------------------------------------
# gradients through torch autograd, jax.grad and mx.grad
# ---------------------------------------------------------------------------


def _active(il) -> np.ndarray:
    return (np.arange(T)[None, :] < np.asarray(il)[:, None])[:, :, None]


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_gradient_wrt_log_probs(grad_xp, zero_infinity):
    """d loss / d log_probs with log_probs free.

    torch's own CTC backward returns ``exp(log_probs) - gamma`` (the gradient
    for log_probs that come out of a log_softmax, where the ``exp`` term is what
    the log_softmax backward removes), not ``-gamma``: the reference here is
    torch's gradient minus ``exp(log_probs)`` on the steps it covers.
    """
    lp, targets, _, tl = case()
    il = np.array([3, 4, 3, 2])  # row 0 impossible
    _, g_torch = torch_ctc(lp, targets, il, tl, reduction="sum", zero_infinity=True, grad=True)
    finite = np.array([False, True, True, True])[:, None, None]
    want = np.where(finite & _active(il), g_torch - np.exp(lp.astype(np.float64)), 0.0)
    ints = "int32" if grad_xp.name == "jax" else None
    y, ilx, tlx = (grad_xp.asarray(a, ints) for a in (targets, il, tl))

    def loss(v):
        return anyloss.ctc_loss(v, y, ilx, tlx, zero_infinity=zero_infinity, reduction="none")

    g = grad_xp.grad(loss, lp)
    # the infinite loss has a zero gradient either way (torch: NaN without
    # zero_infinity)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradient_through_log_softmax_matches_torch(grad_xp, reduction):
    """The usual setting: logits -> log_softmax -> CTC, against torch directly."""
    _, targets, il, tl = case(2)
    logits = (np.random.default_rng(5).normal(size=(N, T, C)) * 2).astype(np.float32)
    x = torch.tensor(logits, dtype=torch.float64).requires_grad_(True)
    want = F.ctc_loss(
        torch.log_softmax(x, -1).transpose(0, 1),
        torch.tensor(_for_torch(targets, 2)),
        torch.tensor(il),
        torch.tensor(tl),
        blank=2,
        reduction=reduction,
    )
    (g_want,) = torch.autograd.grad(want, x)
    ints = "int32" if grad_xp.name == "jax" else None
    y, ilx, tlx = (grad_xp.asarray(a, ints) for a in (targets, il, tl))

    def loss(v):
        return anyloss.ctc_loss(_lib_log_softmax(grad_xp, v), y, ilx, tlx, 2, reduction=reduction)

    np.testing.assert_allclose(
        grad_xp.grad(loss, logits), g_want.numpy(force=True), rtol=1e-5, atol=1e-6
    )


def _lib_log_softmax(xp, v):
    if xp.name == "torch":
        return torch.log_softmax(v, -1)
    if xp.name == "jax":
        import jax

        return jax.nn.log_softmax(v, axis=-1)
    return v - xp.module.logsumexp(v, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------
# transforms: jax.jit, mx.compile, Dask laziness
# ---------------------------------------------------------------------------


def test_jax_jit_and_grad_under_jit():
    jax = pytest.importorskip("jax")
    lib = make("jax")
    lp, targets, il, tl = case()
    args = _args(lib, lp, targets, il, tl)

    def loss(v, *a):
        per_sequence = anyloss.ctc_loss(v, *a, reduction="none")
        return per_sequence.sum(), per_sequence

    # lengths are tracers here: the value checks are skipped, the trace holds
    (_, got), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(*args)
    want, g_torch = torch_ctc(lp, targets, il, tl, grad=True)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    want_g = np.where(_active(il), g_torch - np.exp(lp.astype(np.float64)), 0.0)
    np.testing.assert_allclose(np.asarray(g), want_g, rtol=1e-5, atol=1e-6)


def test_mx_compile():
    mx = pytest.importorskip("mlx.core")
    lib = make("mlx")
    lp, targets, il, tl = case()
    compiled = mx.compile(lambda *a: anyloss.ctc_loss(*a, reduction="mean"))
    want, _ = torch_ctc(lp, targets, il, tl, reduction="mean")
    for _ in range(2):
        out = compiled(*_args(lib, lp, targets, il, tl))
        lib.check_library(out)
        np.testing.assert_allclose(lib.to_numpy(out), want, rtol=1e-5)


def test_dask_stays_lazy():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    lib = make("dask")
    lp, targets, il, tl = case()

    def refuse(dsk, keys, **kwargs):
        raise AssertionError("anyloss computed the Dask graph")

    with dask.config.set(scheduler=refuse):
        outs = {
            r: anyloss.ctc_loss(*_args(lib, lp, targets, il, tl), reduction=r)
            for r in ("none", "mean", "sum")
        }
        # lengths as Python data are checked even on Dask, without computing
        with pytest.raises(ValueError, match=r"input_lengths\[0\] = 6"):
            anyloss.ctc_loss(lib.asarray(lp), lib.asarray(targets), [6, 4, 3, 2], tl)
    for r, out in outs.items():
        assert isinstance(out, da.Array)
        want, _ = torch_ctc(lp, targets, il, tl, reduction=r)
        np.testing.assert_allclose(out.compute(scheduler="sync"), want, rtol=1e-6)


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_in_and_out(dtype):
    lib = make("torch")
    lp, targets, il, tl = case()
    out = anyloss.ctc_loss(*_args(lib, lp, targets, il, tl, dtype), reduction="none")
    assert lib.dtype_name(out) == dtype
    x = lib.asarray(lp, dtype).double().numpy(force=True)  # the rounded inputs
    want, _ = torch_ctc(x, targets, il, tl)
    np.testing.assert_allclose(lib.to_numpy(out), want, rtol=1e-2 if dtype == "bfloat16" else 1e-3)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def _errors():
    lp, targets, il, tl = case()
    good = {"log_probs": lp, "targets": targets, "input_lengths": il, "target_lengths": tl}
    bad_label = targets.copy()
    bad_label[1, 1] = C
    blank_label = targets.copy()
    blank_label[0, 2] = 0
    return good, [
        ({"log_probs": lp[0]}, ValueError, r"log_probs must have shape \(N, T, C\).*\(5, 3\)"),
        ({"targets": targets[0]}, ValueError, r"targets must have shape \(N, S\) = \(4, S\)"),
        ({"targets": targets[:2]}, ValueError, r"targets must have shape .*\(2, 3\)"),
        ({"input_lengths": il[:3]}, ValueError, r"input_lengths must have shape \(N,\) = \(4,\)"),
        ({"target_lengths": tl[:, None]}, ValueError, r"target_lengths must have shape"),
        ({"input_lengths": [5, 6, 3, 2]}, ValueError, r"input_lengths\[1\] = 6 .*<= 5"),
        ({"input_lengths": [5, 4, -1, 2]}, ValueError, r"input_lengths\[2\] = -1"),
        ({"target_lengths": [3, 2, 4, 0]}, ValueError, r"target_lengths\[2\] = 4 .*<= 3"),
        ({"targets": bad_label}, ValueError, r"targets\[1, 1\] = 3 is out of range for 3"),
        ({"targets": blank_label}, ValueError, r"targets\[0, 2\] = 0 is the blank label"),
        ({"blank": 3}, ValueError, r"blank = 3 is out of range for 3 classes"),
        ({"blank": -1}, ValueError, r"blank = -1 is out of range"),
        ({"blank": 1.0}, TypeError, r"blank must be an int, got float"),
        ({"targets": targets.astype(float)}, TypeError, r"targets holds labels .*integer"),
        ({"input_lengths": [5.0, 4, 3, 2]}, TypeError, r"input_lengths holds lengths"),
        ({"target_lengths": tl.astype(np.float32)}, TypeError, r"target_lengths holds"),
        ({"reduction": "avg"}, ValueError, r"invalid reduction 'avg'"),
        ({"zero_infinity": 1}, TypeError, r"zero_infinity must be a bool"),
    ]


@pytest.mark.parametrize("i", range(len(_errors()[1])))
def test_errors(xp, i):
    if xp.lazy:
        pytest.skip("values of Dask arrays are not checked (that would compute them)")
    good, cases = _errors()
    change, exc, message = cases[i]
    kwargs = {**good, **change}
    for name in ("log_probs", "targets", "input_lengths", "target_lengths"):
        if isinstance(kwargs[name], np.ndarray):
            ints = "int32" if xp.name == "jax" and kwargs[name].dtype.kind == "i" else None
            kwargs[name] = xp.asarray(kwargs[name], ints)
    with pytest.raises(exc, match=rf"^ctc_loss\(\): {message}"):
        anyloss.ctc_loss(**kwargs)

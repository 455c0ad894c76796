"""The Triton kernels (PyTorch CUDA tensors), checked without a GPU.

Triton's interpreter runs the kernels on CPU tensors (``_triton.on_cpu``;
with ``ANYLOSS_TEST_DEVICE=cuda`` they run on the GPU instead):
the values against the 50-digit references of ``accuracy_cases.py`` (4 ulp,
as every backend), with one block per row and with blocks of 4 classes (the
online logsumexp then raises its maximum many times per row); the gradients
against float64; the options the loss applies around the kernel (class
weights, ignored rows, weights, reductions) against the generic code; the
special values; ``torch.compile(fullgraph=True)``. The kernels use no
libdevice function and no ``tl.exp``/``tl.log`` (whose GPU versions differ
from the interpreter's NumPy ones), so the interpreter computes what the GPU
does, up to the contraction of products into fused multiply-adds, which the
error-free transformations do not rely on.

Every kernel is also compiled for an sm_90 GPU (PTX and cubin, no GPU
needed), and its PTX holds no float64 instruction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import accuracy_cases as A
import numpy as np
import pytest
from backends import DEVICE, make

import anyloss
from anyloss import kernels

pytest.importorskip("triton")
torch = pytest.importorskip("torch")
from triton_support import INF, NAN, TRITON_BOUND, both, compiled_and_generic  # noqa: E402

pytestmark = pytest.mark.usefixtures("triton_on_cpu")

from anyloss.kernels import _registry, _triton, _triton_softmax_ops  # noqa: E402


@pytest.fixture(params=[4096, 4], ids=["one_block", "blocks_of_4"])
def block(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(_triton_softmax_ops, "_MAX_BLOCK", request.param)
    return int(request.param)


def _ce_cases() -> list[str]:
    # mean_1e5: 20000 rows are 20000 programs in the interpreter (the mean is
    # the loss module's, not the kernel's); class_weights: with label
    # smoothing the loss computes its rows itself, not by an entry
    left_out = {"cross_entropy-mean_1e5", "cross_entropy-class_weights"}
    return [c.id for c in A.CASES if c.loss == "cross_entropy" and c.id not in left_out]


@pytest.mark.parametrize("case_id", _ce_cases())
def test_values_within_4_ulp(
    case_id: str, block: int, triton_on_cpu: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    case = A.CASE_BY_ID[case_id]
    if block == 4 and case_id.endswith("many_classes"):  # 16 blocks, not 1024 (interpreted)
        monkeypatch.setattr(_triton_softmax_ops, "_MAX_BLOCK", 256)
    m = A.measure(case, make("torch"))
    assert triton_on_cpu, "the Triton entry did not run"
    assert m.ulp <= TRITON_BOUND, f"{case_id}, blocks of {block}: {m}"


def _triton_losses() -> list[str]:
    entries = _registry.entries(library="torch")
    return sorted({e.loss for e in entries if e.name == "triton"} - {"cross_entropy"})


def _interpretable(case: A.Case) -> bool:
    """Small enough for the interpreter: a row loss of at most 2048 rows
    (every row is an interpreted program; 12500 take minutes)."""
    first = case.inputs()[0][0]
    return DEVICE != "cpu" or first.ndim < 2 or first.shape[0] <= 2048


def _other_cases() -> list[str]:
    """Every regime of every loss with a Triton entry (the cross entropy's
    above), but the binary cross entropy of probabilities (the generic code)."""
    losses = _triton_losses()
    cases = [c for c in A.CASES if c.loss in losses and _interpretable(c)]
    return [c.id for c in cases if c.id != "binary_cross_entropy-probs"]


def test_every_entry_has_regimes() -> None:
    covered = {A.CASE_BY_ID[i].loss for i in _other_cases()}
    assert covered == set(_triton_losses())


@pytest.mark.parametrize("case_id", _other_cases())
def test_elementwise_and_row_values_within_4_ulp(case_id: str, triton_on_cpu: list[str]) -> None:
    case = A.CASE_BY_ID[case_id]
    with np.errstate(over="ignore", invalid="ignore"):  # (the interpreter's NumPy at 1e30)
        m = A.measure(case, make("torch"))
    assert triton_on_cpu, "the Triton entry did not run"
    assert m.ulp <= TRITON_BOUND, f"{case_id}: {m}"


def test_the_entry_is_chosen_only_when_switched_on() -> None:
    x, t = torch.zeros(3, 5), torch.tensor([0, 1, 2])
    be = anyloss._backend.resolve("cross_entropy", ("logits", x))
    args = {"logits": x, "targets": t, "axis": -1, "label_smoothing": 0.0}
    entry = _registry.lookup(be, "cross_entropy", "none", args)
    assert entry is not None and entry.name == "triton"
    with _triton.on_cpu(False):
        entry = _registry.lookup(be, "cross_entropy", "none", args)
        assert entry is None or entry.name != "triton"
    cuda = [e for e in _registry.entries("cross_entropy", "torch") if e.device == "cuda"]
    assert [e.name for e in cuda] == ["triton"]


_SWITCH = """
import torch, anyloss
from anyloss.kernels import _registry, _triton
x, t = torch.randn(3, 5), torch.tensor([0, 1, 4])
be = anyloss._backend.resolve("cross_entropy", ("logits", x))
args = {"logits": x, "targets": t, "axis": -1, "label_smoothing": 0.0}
print(_registry.lookup(be, "cross_entropy", "none", args).name)
print(float(anyloss.cross_entropy(x, t, reduction="sum")))
"""


@pytest.mark.cpu_only
def test_the_environment_switch_in_a_fresh_process() -> None:
    """``ANYLOSS_TRITON_ON_CPU=1``: CPU tensors take the Triton entry (and
    Triton its interpreter); without it, and with the kernels already
    compiled for a GPU, ``on_cpu()`` says what to do."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run(
        [sys.executable, "-c", _SWITCH],
        env={**env, "ANYLOSS_TRITON_ON_CPU": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[0] == "triton"
    late = "from anyloss.kernels import _triton_math, _triton\nwith _triton.on_cpu(): pass"
    run = subprocess.run(
        [sys.executable, "-c", late], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode != 0 and "ANYLOSS_TRITON_ON_CPU=1" in run.stderr


# -- gradients against float64 ----------------------------------------------------


def _softmax64(x: np.ndarray) -> np.ndarray:
    z = x - x.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("targets", ["indices", "probs"])
def test_gradients_within_4_ulp_of_float64(
    targets: str, smoothing: float, block: int, triton_on_cpu: list[str]
) -> None:
    """d loss / d logits = g (softmax - (1 - s) target - s / V), each element
    within 4 ulp of the float64 value (ulps of the larger of its two terms:
    their difference is what float32 can hold of it)."""
    rng = np.random.default_rng(5)
    n, v = 7, 37
    x = rng.normal(0, 3, (n, v)).astype(np.float32)
    g = rng.uniform(0.5, 2, n).astype(np.float32)
    if targets == "indices":
        t = rng.integers(0, v, n)
        target = np.eye(v)[t]
        tt = torch.tensor(t)
    else:
        p = _softmax64(rng.normal(0, 1, (n, v))).astype(np.float32)
        target = p.astype(np.float64)
        tt = torch.tensor(p)
    xt = torch.tensor(x, requires_grad=True)
    out = anyloss.cross_entropy(xt, tt, label_smoothing=smoothing)
    (grad,) = torch.autograd.grad(out, xt, torch.tensor(g))
    assert len(triton_on_cpu) == 2  # forward and backward
    sm = _softmax64(x.astype(np.float64))
    want_target = (1 - smoothing) * target + smoothing / v
    want = g[:, None].astype(np.float64) * (sm - want_target)
    scale = g[:, None] * np.maximum(sm, want_target)
    ulps = np.abs(grad.numpy(force=True).astype(np.float64) - want) / np.spacing(
        scale.astype(np.float32)
    )
    assert ulps.max() <= 4, ulps.max()


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    return np.where(
        x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))
    )


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "log_cosh_loss"])
def test_elementwise_gradients_within_4_ulp_of_float64(
    loss: str, triton_on_cpu: list[str]
) -> None:
    """Both arguments' gradients, each element within 4 ulp of float64 (ulps
    of the larger of the two terms of a difference)."""
    rng = np.random.default_rng(10)
    x = rng.normal(0, 3, 300).astype(np.float32)
    x[:40] = rng.normal(0, 0.3, 40)  # (log-cosh: the Taylor side of tanh)
    t = rng.uniform(0, 1, 300).astype(np.float32)
    t[:100] = np.round(t[:100])  # hard targets too
    g = rng.uniform(0.5, 2, 300).astype(np.float32)
    xt, tt = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
    out = getattr(anyloss, loss)(xt, tt, reduction="none")
    gx, gt = torch.autograd.grad(out, (xt, tt), torch.tensor(g))
    assert len(triton_on_cpu) == 2
    x64, t64, g64 = (a.astype(np.float64) for a in (x, t, g))
    if loss == "binary_cross_entropy":
        want_x, scale_x = _sigmoid64(x64) - t64, np.maximum(_sigmoid64(x64), t64)
        want_t = scale_t = -x64
    else:
        want_x = scale_x = np.tanh(x64 - t64)
        want_t = scale_t = -want_x
    for got, want, scale in ((gx, want_x, scale_x), (gt, want_t, scale_t)):
        spacing = np.spacing(np.abs(g64 * scale).astype(np.float32)).astype(np.float64)
        ulps = np.abs(got.numpy(force=True) - g64 * want) / spacing
        assert ulps.max() <= 4, ulps.max()


def test_cosine_similarity_gradients_within_4_ulp_of_float64(triton_on_cpu: list[str]) -> None:
    """d cos / d x1 = x2 / (|x1||x2|) - cos x1 / |x1|^2 (ulps of the larger
    term), and the same for x2; also at 1e20 and 1e-20 (the scaling)."""
    rng = np.random.default_rng(12)
    for scale in (1.0, 1e20, 1e-20):
        a = (rng.normal(size=(9, 33)) * scale).astype(np.float32)
        b = (rng.normal(size=(9, 33)) * scale).astype(np.float32)
        at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        out = anyloss.cosine_similarity_loss(at, bt, eps=0.0)  # (1e-20: not eps-bounded)
        ga, gb = torch.autograd.grad(out.sum(), (at, bt))
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        na, nb = (
            np.linalg.norm(a64, axis=1, keepdims=True),
            np.linalg.norm(b64, axis=1, keepdims=True),
        )
        cos = (a64 * b64).sum(1, keepdims=True) / (na * nb)
        for got, x, y, nx in ((ga, a64, b64, na), (gb, b64, a64, nb)):
            first, second = y / (na * nb), cos * x / nx**2
            spacing = np.spacing(np.maximum(np.abs(first), np.abs(second)).astype(np.float32))
            ulps = np.abs(got.numpy(force=True) - (first - second)) / spacing
            assert ulps.max() <= 4, (scale, ulps.max())
    assert len(triton_on_cpu) == 6


@pytest.mark.parametrize("eps", [0.0, 1e-8, 1e3])
def test_cosine_similarity_special_rows_as_the_generic_code(
    eps: float, triton_on_cpu: list[str]
) -> None:
    """A zero row (NaN for eps = 0), a NaN and an inf entry, a row whose norms'
    product is below eps (bounded by eps), subnormal and huge rows."""
    a = torch.tensor(
        [[0.0, 0.0, 0.0], [1.0, NAN, 2.0], [1.0, INF, 2.0], [0.1, 0.2, 0.3], [1e-40, 2e-40, 0.0],
         [3e38, -3e38, 1e38], [1.0, 2.0, 3.0]]
    )  # fmt: skip
    b = torch.tensor(
        [[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.3, -0.1, 0.2],
         [1e-40, 1e-40, 1e-40], [3e38, 3e38, -3e38], [-1.0, 0.5, 2.0]]
    )  # fmt: skip
    a.requires_grad_(True)
    with np.errstate(all="ignore"):
        got = anyloss.cosine_similarity_loss(a, b, eps=eps)
        (got_grad,) = torch.autograd.grad(got.sum(), a)
    assert triton_on_cpu
    with kernels.generic():
        want = anyloss.cosine_similarity_loss(a, b, eps=eps)
        (want_grad,) = torch.autograd.grad(want.sum(), a)
    torch.testing.assert_close(got, want, rtol=4e-7, atol=0, equal_nan=True)
    finite = torch.isfinite(want_grad).all(1)  # (NaN/inf rows: the generic gradient is NaN)
    torch.testing.assert_close(got_grad[finite], want_grad[finite], rtol=1e-5, atol=1e-30)


def test_gaussian_nll_gradients_within_4_ulp_of_float64(triton_on_cpu: list[str]) -> None:
    """d/dmu = -(y - mu) / v, d/dy its negative, d/dvar = (v - (y - mu)^2) / (2 v^2)
    (ulps of the larger of v and (y - mu)^2 over 2 v^2), below eps 0."""
    rng = np.random.default_rng(13)
    mu, y = (rng.normal(0, 2, 300).astype(np.float32) for _ in range(2))
    var = rng.uniform(0.05, 4, 300).astype(np.float32)
    var[:20] = 1e-8  # clamped to eps
    ts = [torch.tensor(a, requires_grad=True) for a in (mu, y, var)]
    out = anyloss.gaussian_nll_loss(*ts, full=True, reduction="sum")
    grads = torch.autograd.grad(out, ts)
    assert len(triton_on_cpu) == 2
    m64, y64, v64 = (a.astype(np.float64) for a in (mu, y, var))
    v = np.maximum(v64, 1e-6)
    d = y64 - m64
    wants = [(-d / v, np.abs(d / v)), (d / v, np.abs(d / v))]
    dv = np.where(v64 >= 1e-6, (v - d * d) / (2 * v * v), 0.0)
    wants.append((dv, np.maximum(v, d * d) / (2 * v * v)))
    for got, (want, scale) in zip(grads, wants, strict=True):
        ulps = np.abs(got.numpy(force=True) - want) / np.spacing(scale.astype(np.float32))
        assert ulps.max() <= 4, ulps.max()


@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_gaussian_nll_special_values_as_the_generic_code(
    eps: float, triton_on_cpu: list[str]
) -> None:
    mu = torch.tensor([0.0, 1.0, NAN, INF, 0.0, 0.0, 1e30, 0.0])
    y = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1e30, 1e-30])
    var = torch.tensor([0.0, 0.0, 1.0, 1.0, NAN, INF, 1.0, 1e-40])
    with np.errstate(all="ignore"):
        got = anyloss.gaussian_nll_loss(mu, y, var, eps=eps, reduction="none")
    assert triton_on_cpu
    with kernels.generic():
        want = anyloss.gaussian_nll_loss(mu, y, var, eps=eps, reduction="none")
    torch.testing.assert_close(got, want, rtol=4e-7, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    "options", [{}, {"gamma": 0.5, "alpha": None}, {"gamma": 3.7, "alpha": 0.6}, {"gamma": 0.0}]
)
def test_sigmoid_focal_gradients_as_float64(options: dict, triton_on_cpu: list[str]) -> None:
    """Both gradients (soft and hard targets) against float64 autograd of the
    generic formula, and the weights applied by the loss around the kernel."""
    rng = np.random.default_rng(14)
    x = torch.tensor(rng.normal(0, 3, (40, 7)), dtype=torch.float32)
    t = torch.tensor(rng.uniform(0, 1, (40, 7)), dtype=torch.float32)
    t[:20] = t[:20].round()
    w = torch.tensor(rng.uniform(0, 2, (40, 7)), dtype=torch.float32)
    xt, tt = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
    out = anyloss.sigmoid_focal_loss(xt, tt, weights=w, reduction="sum", **options)
    grads = torch.autograd.grad(out, (xt, tt))
    assert len(triton_on_cpu) == 2
    x64, t64 = x.double().requires_grad_(True), t.double().requires_grad_(True)
    with kernels.generic():
        ref = anyloss.sigmoid_focal_loss(x64, t64, weights=w.double(), reduction="sum", **options)
    ref_grads = torch.autograd.grad(ref, (x64, t64))
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=0)
    for got, want in zip(grads, ref_grads, strict=True):
        tol = 2e-6 * float(want.abs().max())
        torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=tol)


def test_binary_cross_entropy_weights_and_half_precision(triton_on_cpu: list[str]) -> None:
    rng = np.random.default_rng(11)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.tensor(rng.normal(0, 3, (6, 9)), dtype=dtype)
        t = torch.tensor(rng.integers(0, 2, (6, 9)), dtype=dtype)
        w = torch.tensor(rng.uniform(0, 2, (6, 9)), dtype=dtype)
        got, got_grad, want, want_grad = both(
            anyloss.binary_cross_entropy, x, t, weights=w, reduction="sum"
        )
        tol = {"rtol": 1e-6, "atol": 0} if dtype == torch.float32 else {"rtol": 2**-8, "atol": 0}
        torch.testing.assert_close(got, want, **tol)
        torch.testing.assert_close(got_grad, want_grad, **tol)
    assert len(triton_on_cpu) == 4


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "log_cosh_loss", "sigmoid_focal_loss"])
def test_elementwise_special_values_as_the_generic_code(
    loss: str, triton_on_cpu: list[str]
) -> None:
    x = torch.tensor([INF, -INF, NAN, 1e30, -1e30, 0.0, 89.0, -89.0, 1e-30])
    t = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0, 0.0])
    fn = getattr(anyloss, loss)
    with np.errstate(all="ignore"):  # (the interpreter computes with NumPy)
        got = fn(x, t, reduction="none")
    assert triton_on_cpu
    with kernels.generic():
        want = fn(x, t, reduction="none")
    torch.testing.assert_close(got, want, rtol=4e-7, atol=0, equal_nan=True)


# -- the options around the kernel, against the generic code ------------------------


OPTIONS = {
    "plain_mean": {"reduction": "mean"},
    "sum_smoothing": {"reduction": "sum", "label_smoothing": 0.3},
    "class_weights": {"reduction": "mean", "class_weights": "cw"},
    "class_weights_smoothing": {"class_weights": "cw", "label_smoothing": 0.1},
    "ignore_index": {"reduction": "mean", "ignore_index": 2},
    "ignore_weighted": {"reduction": "mean", "ignore_index": 0, "class_weights": "cw"},
    "weights": {"reduction": "sum", "weights": "w"},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_options_match_the_generic_code(name: str, triton_on_cpu: list[str]) -> None:
    rng = np.random.default_rng(6)
    x = torch.tensor(rng.normal(0, 2, (5, 3, 11)), dtype=torch.float32)
    t = torch.tensor(rng.integers(0, 11, (5, 3)))
    kw: dict[str, Any] = dict(OPTIONS[name])
    if kw.get("class_weights") == "cw":
        kw["class_weights"] = torch.tensor(rng.uniform(0.2, 2, 11), dtype=torch.float32)
    if kw.get("weights") == "w":
        kw["weights"] = torch.tensor(rng.uniform(0, 1, (5, 3)), dtype=torch.float32)
    got, got_grad, want, want_grad = both(anyloss.cross_entropy, x, t, **kw)
    if "class_weights" not in kw or not kw.get("label_smoothing"):
        assert triton_on_cpu, "the Triton entry did not run"
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_logits_are_read_as_they_are(dtype: str, triton_on_cpu: list[str]) -> None:
    """bf16/fp16 logits: accumulated in float32, the gradient in their dtype."""
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.normal(0, 2, (6, 50)), dtype=getattr(torch, dtype))
    t = torch.tensor(rng.integers(0, 50, 6))
    xt = x.clone().requires_grad_(True)
    out = anyloss.cross_entropy(xt, t)
    (grad,) = torch.autograd.grad(out.sum(), xt)
    assert triton_on_cpu and grad.dtype == x.dtype
    x64 = x.double().requires_grad_(True)
    with kernels.generic():
        ref = anyloss.cross_entropy(x64, t)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x64)
    assert out.dtype == x.dtype
    bits = {"bfloat16": 8, "float16": 11}[dtype]  # the result rounded once to the dtype
    torch.testing.assert_close(out.double(), ref, rtol=2.0**-bits, atol=0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-2, atol=1e-3)  # its rounding


def test_strided_logits(triton_on_cpu: list[str]) -> None:
    rng = np.random.default_rng(8)
    big = torch.tensor(rng.normal(size=(20, 9)), dtype=torch.float32)
    x = big.T[:, ::2]  # (9, 10), no axis contiguous
    t = torch.tensor(rng.integers(0, 10, 9))
    got, got_grad, want, want_grad = both(anyloss.cross_entropy, x, t, reduction="none")
    assert triton_on_cpu
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("row", "target", "smoothing"),
    [
        ([0.0, -INF, 1.0], 0, 0.0),  # a -inf logit elsewhere: finite
        ([0.0, -INF, 1.0], 1, 0.0),  # the target's logit is -inf: inf
        ([0.0, -INF, 1.0], 0, 0.1),  # smoothed toward a -inf logit: inf
        ([0.0, NAN, 1.0], 0, 0.0),  # NaN
        ([0.0, INF, 1.0], 0, 0.0),  # NaN (inf - inf)
        ([-INF, -INF, -INF], 0, 0.0),  # NaN
        ([3e38, -3e38, 0.0], 0, 0.0),  # finite, near the largest float
        ([5.0, 5.0, 5.0], 2, 0.2),  # ties: log 3
    ],
)
def test_special_values_as_the_generic_code(
    row: list[float], target: int, smoothing: float, triton_on_cpu: list[str]
) -> None:
    x = torch.tensor([row], dtype=torch.float32)
    t = torch.tensor([target])
    with np.errstate(all="ignore"):  # (the interpreter computes with NumPy)
        got = anyloss.cross_entropy(x, t, label_smoothing=smoothing)
    assert triton_on_cpu
    with kernels.generic():
        want = anyloss.cross_entropy(x.double(), t, label_smoothing=smoothing)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=0, equal_nan=True)


def test_probability_targets_with_zeros_at_minus_infinity(triton_on_cpu: list[str]) -> None:
    """0 * log 0 counts 0: a -inf logit where the target is 0 adds nothing."""
    x = torch.tensor([[0.0, -INF, 1.0]])
    p = torch.tensor([[0.25, 0.0, 0.75]])
    got = anyloss.cross_entropy(x, p)
    assert triton_on_cpu
    want = -(
        0.25 * torch.log_softmax(x.double(), -1)[0, 0]
        + 0.75 * torch.log_softmax(x.double(), -1)[0, 2]
    )
    torch.testing.assert_close(got.double(), want.reshape(1), rtol=1e-7, atol=0)


def test_a_second_derivative_raises(triton_on_cpu: list[str]) -> None:
    x = torch.randn(3, 4, requires_grad=True)
    out = anyloss.cross_entropy(x, torch.tensor([0, 1, 3]), reduction="sum")
    with pytest.raises(RuntimeError, match="second derivative"):
        torch.autograd.grad(out, x, create_graph=True)
    out = anyloss.log_cosh_loss(x, torch.zeros(3, 4), reduction="sum")
    with pytest.raises(RuntimeError, match="second derivative"):
        torch.autograd.grad(out, x, create_graph=True)
    assert triton_on_cpu


# -- torch.compile -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiles_as_one_op(triton_on_cpu: list[str]) -> None:
    pytest.importorskip("torch._dynamo")
    rng = np.random.default_rng(9)
    x = torch.tensor(rng.normal(size=(4, 13)), dtype=torch.float32)
    t = torch.tensor(rng.integers(0, 13, 4))

    def step(v: Any) -> Any:
        return anyloss.cross_entropy(v, t, label_smoothing=0.1, reduction="mean")

    out, grad, want, want_grad = compiled_and_generic(step, x)
    assert triton_on_cpu
    torch.testing.assert_close(out, want, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-8)


# -- compiled for a GPU ------------------------------------------------------------------

_LOWER = """
import json, re
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from anyloss.kernels import _triton_elementwise as E, _triton_rows as R, _triton_softmax as S

# the arguments' types by name; the data pointers are bf16, the per-row floats fp32
SCALARS = dict(V="i32", D="i32", N="i64", smoothing="fp32", eps="fp32", p="fp32", q="fp32")
FLOAT32 = {"LOSS", "MAX", "LSE", "G", "OUT", "SAVED"}
names = ASTSource.__init__.__code__.co_varnames
keyword = "constexprs" if "constexprs" in names else "constants"  # (Triton < 3.3)
report = {}


def lower(name, fn, constants, **types):
    constants = {k: v for k, v in constants.items() if k in fn.arg_names}
    signature = {}
    for arg in fn.arg_names:
        if arg in constants:
            signature[arg] = "constexpr"
        elif arg in types:
            signature[arg] = types[arg]
        elif arg.endswith("stride"):
            signature[arg] = "i64"
        else:
            signature[arg] = SCALARS.get(arg, "*fp32" if arg in FLOAT32 else "*bf16")
    compiled = triton.compile(
        ASTSource(fn, signature, **{keyword: constants}),
        target=GPUTarget("cuda", 90, 32),
        options={"enable_fp_fusion": True},
    )
    ptx = compiled.asm["ptx"]
    report[name] = {"cubin": len(compiled.asm["cubin"]), "f64": bool(re.search(r"\\.f64\\b", ptx))}


flags = {"BLOCK": 1024, "SMOOTH": True, "WEIGHTED": True, "THREE": True}
flags.update(WANT_A=True, WANT_B=True, WANT_C=True)

# _triton_softmax
softmax_types = dict(A="*fp32", SCALE="*fp32", NOT_P="*fp32", AUX="*fp32", AUX_LO="*fp32",
                     gamma="fp32", gamma_lo="fp32", R="i32")
for kernel in ("ce_forward", "ce_backward"):
    for probs in (False, True):
        lower(f"{kernel}-probs={probs}", getattr(S, kernel),
              {**flags, "PROBS": probs, "SCALED": False}, **softmax_types,
              T="*fp32" if probs else "*i64")
lower("ce_backward-scaled", S.ce_backward, {**flags, "PROBS": False, "SCALED": True},
      T="*i64", **softmax_types)
for probs in (False, True):
    lower(f"focal_forward-probs={probs}", S.focal_forward,
          {**flags, "PROBS": probs, "ALPHA": probs}, **softmax_types,
          T="*fp32" if probs else "*i64")
lower("focal_backward", S.focal_backward, {**flags, "ALPHA": True}, T="*fp32", **softmax_types)
lower("kl_forward", S.kl_forward, flags)
lower("kl_backward", S.kl_backward, {**flags, "WANT_X": True, "WANT_T": True})
lower("nll_forward", S.nll_forward, flags, T="*i64", **softmax_types)
lower("nll_backward", S.nll_backward, {**flags, "BLOCK_R": 16}, T="*i64", **softmax_types)

# _triton_elementwise
for kind in ("bce_logits", "log_cosh", "gaussian_nll", "sigmoid_focal", "poisson_nll"):
    lower(f"forward-{kind}", E.forward, {**flags, "VALUE": getattr(E, f"{kind}_value")})
    lower(f"backward-{kind}", E.backward, {**flags, "GRAD": getattr(E, f"{kind}_grad")})

# _triton_rows
words = {n: "fp32" for n in ("eps_hi", "eps_lo", "m_hi", "m_lo", "root_hi", "root_lo")}
words.update(p_hi="fp32", p_lo="fp32", q_hi="fp32", q_lo="fp32", Y="*fp32", N="*bf16")
for kernel in ("cosine_forward", "cosine_backward"):
    lower(kernel, getattr(R, kernel), flags)
for kernel in ("cosine_embedding_forward", "cosine_embedding_backward"):
    lower(kernel, getattr(R, kernel), flags, **words)
for kind in (0, 1, 2):  # (p other than 1 and 2, 1, 2)
    for kernel in ("triplet_forward", "triplet_backward"):
        lower(f"{kernel}-kind={kind}", getattr(R, kernel),
              {**flags, "KIND": kind, "WANT_P": True, "WANT_N": True}, **words)

print(json.dumps(report))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="Triton's CUDA compiler ships for Linux")
def test_every_kernel_lowers_to_sm90_without_float64() -> None:
    """Compiled for an H100 (sm_90: PTX, then cubin by the ptxas Triton
    ships), in a process without the interpreter; no float64 instruction."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", _LOWER], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # every kernel (a public jitted function taking BLOCK) of the three modules
    from anyloss.kernels import _triton_elementwise, _triton_rows, _triton_softmax

    kernels_found = {
        name
        for module in (_triton_elementwise, _triton_rows, _triton_softmax)
        for name, fn in vars(module).items()
        if "BLOCK" in getattr(fn, "arg_names", ()) and not name.startswith("_")
    }
    assert {name.partition("-")[0] for name in report} == kernels_found
    for name, result in report.items():
        assert result["cubin"] > 0 and not result["f64"], (name, result)

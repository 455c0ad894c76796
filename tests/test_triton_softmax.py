"""The softmax-family Triton kernels beyond the cross entropy: ``kl_div_loss``,
``softmax_focal_loss`` (class indices and probabilities) and ``nll_loss``.

Checked without a GPU in Triton's interpreter, as ``tests/test_triton.py``
does (which also runs every accuracy regime of these losses at 4 ulp and
compiles their kernels for sm_90): the gradients against float64 (NumPy
formulas, or float64 autograd of the generic code), special values,
options and reductions against the generic code, bf16 inputs, a second
derivative, ``torch.compile``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import anyloss
from anyloss import kernels

pytest.importorskip("triton")
torch = pytest.importorskip("torch")
from triton_support import INF, NAN, both  # noqa: E402

pytestmark = pytest.mark.usefixtures("triton_on_cpu")

from anyloss.kernels import _registry, _triton_softmax_ops  # noqa: E402

LOSSES = ("kl_div_loss", "softmax_focal_loss", "nll_loss")


def _np(x: Any) -> np.ndarray:
    return x.detach().double().numpy(force=True)


def _ulps(got: Any, want: np.ndarray, scale: np.ndarray) -> float:
    """The worst ``|got - want|`` in ulp of float32 ``|scale|`` (at least the
    smallest normal: below it a float32 has fewer bits)."""
    spacing = np.spacing(np.maximum(np.abs(scale), 2.0**-126).astype(np.float32))
    return float((np.abs(_np(got) - want) / spacing.astype(np.float64)).max())


def _generic(fn: Any, *args: Any, **kw: Any) -> Any:
    with kernels.generic():
        return fn(*args, **kw)


def _logp(z: np.ndarray, axis: int) -> torch.Tensor:
    return torch.log_softmax(torch.tensor(z, dtype=torch.float64), axis).float()


def test_every_loss_has_a_cuda_entry() -> None:
    for loss in LOSSES:
        cuda = [e.name for e in _registry.entries(loss, "torch") if e.device == "cuda"]
        assert cuda == ["triton"], loss


# -- gradients against float64 ----------------------------------------------------


def _kl_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities: ordinary rows, near-equal ones (their terms cancel
    to 1e-6 of their size), targets down to about -100, absent classes (-inf), and
    targets beyond +-64 (the kernel's scaled exponential; the terms stay
    normal floats)."""
    n, v = 8, 9
    z = rng.normal(0, 2, (n, v))
    z[4] *= 12
    x, t = _logp(rng.normal(0, 2, (n, v)), -1).numpy(force=True), _logp(z, -1).numpy(force=True)
    x[2:4] = _logp(z[2:4] + rng.normal(0, 1e-3, (2, v)), -1).numpy(force=True)
    t[5, rng.random(v) < 0.4] = -INF
    t[6] = rng.uniform(64, 80, v).astype(np.float32)  # (not log-probabilities)
    x[6] = t[6] - rng.uniform(-1, 1, v).astype(np.float32)
    t[7] = rng.uniform(-150, -66, v).astype(np.float32)
    x[7] = -rng.uniform(1e20, 1e30, v).astype(np.float32)  # e^t (t - x): normal
    return x, t


def test_kl_div_gradients_within_4_ulp_of_float64(
    triton_on_cpu: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """d/dx = -g e^t; d/dt = g e^t (t - x + 1) (ulps of the larger of e^t and
    |e^t (t - x)|): 0 where t = -inf; and the values against float64 (the
    row summed over blocks of 4)."""
    monkeypatch.setattr(_triton_softmax_ops, "_MAX_BLOCK", 4)
    rng = np.random.default_rng(20)
    x, t = _kl_case(rng)
    g = rng.uniform(0.5, 2, x.shape[0]).astype(np.float32)
    xt, tt = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
    out = anyloss.kl_div_loss(xt, tt)
    gx, gt = torch.autograd.grad(out, (xt, tt), torch.tensor(g))
    assert len(triton_on_cpu) == 2
    x64, t64, g64 = x.astype(np.float64), t.astype(np.float64), g[:, None].astype(np.float64)
    absent = np.isinf(t64)
    e = np.where(absent, 0.0, np.exp(np.where(absent, 0.0, t64)))
    d = np.where(absent, 0.0, t64 - x64)
    assert _ulps(gx, -g64 * e, g64 * e) <= 4
    assert _ulps(gt, g64 * e * (d + 1), g64 * np.maximum(e, np.abs(e * d))) <= 4
    assert (_np(gx)[absent] == 0).all() and (_np(gt)[absent] == 0).all()
    want = (e * d).sum(1)  # (exact enough: float64 for float32 inputs)
    assert _ulps(out, want, want) <= 4


# (gamma, the largest block: 4 raises the row maximum many times per row)
@pytest.mark.parametrize(
    ("gamma", "size"), [(2.0, 4096), (0.5, 4096), (3.7, 4), (0.0, 4096), (1.0, 8)]
)
def test_softmax_focal_index_gradients_as_float64(
    gamma: float, size: int, triton_on_cpu: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """d/dx_j = g |C| (p_j - delta_tj), |C| = (1 - p)^gamma + gamma p (1 -
    p)^(gamma - 1) (-log p) in double words and the target's ``1 - p_t``
    exact: no difference left, so every element within 4 ulp of itself,
    confident rows (p_t near 1) included. The values within 2 ulp (gamma =
    3.7 is not a float32: the kernel takes it in two parts)."""
    monkeypatch.setattr(_triton_softmax_ops, "_MAX_BLOCK", size)
    rng = np.random.default_rng(21)
    n, v = 8, 9
    x = rng.normal(0, 3, (n, v)).astype(np.float32)
    t = rng.integers(0, v, n)
    x[:4] = rng.normal(0, 1, (4, v))
    x[np.arange(4), t[:4]] += rng.uniform(3, 15, 4).astype(np.float32)  # confident
    g = rng.uniform(0.5, 2, n).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    out = anyloss.softmax_focal_loss(xt, torch.tensor(t), gamma=gamma)
    (gx,) = torch.autograd.grad(out, xt, torch.tensor(g))
    assert len(triton_on_cpu) == 2
    x64 = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ref = _generic(anyloss.softmax_focal_loss, x64, torch.tensor(t), gamma=gamma)
    (want,) = torch.autograd.grad(ref, x64, torch.tensor(g, dtype=torch.float64))
    assert _ulps(gx, _np(want), _np(want)) <= 4
    assert _ulps(out, _np(ref), _np(ref)) <= 2


@pytest.mark.parametrize(("gamma", "size"), [(2.0, 4096), (1.5, 8), (0.0, 4096)])
def test_softmax_focal_probability_gradients_within_4_ulp(
    gamma: float, size: int, triton_on_cpu: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With w_c = alpha_c q_c: d/dx_j = g (B p_j - w_j |C_j|), B = sum_c w_c
    |C_c| (ulps of the larger term), against float64 autograd of the
    generic code."""
    monkeypatch.setattr(_triton_softmax_ops, "_MAX_BLOCK", size)
    rng = np.random.default_rng(22)
    n, v = 6, 9
    x = rng.normal(0, 3, (n, v)).astype(np.float32)
    q = rng.dirichlet(np.ones(v), n)
    q[q < 0.05] = 0
    q[0] = np.eye(v)[int(np.argmax(x[0]))]  # all the mass on the top class
    q = q.astype(np.float32)
    alpha = rng.uniform(0.25, 2, v).astype(np.float32)
    g = rng.uniform(0.5, 2, n).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    out = anyloss.softmax_focal_loss(xt, torch.tensor(q), alpha=torch.tensor(alpha), gamma=gamma)
    (gx,) = torch.autograd.grad(out, xt, torch.tensor(g))
    assert len(triton_on_cpu) == 2
    x64 = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    q64, a64 = torch.tensor(q, dtype=torch.float64), torch.tensor(alpha, dtype=torch.float64)
    ref = _generic(anyloss.softmax_focal_loss, x64, q64, alpha=a64, gamma=gamma)
    (want,) = torch.autograd.grad(ref, x64, torch.tensor(g, dtype=torch.float64))
    z = x.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    c_abs = (1 - p) ** gamma + gamma * p * (1 - p) ** (gamma - 1) * -np.log(p)
    w = alpha.astype(np.float64) * q
    b = (w * c_abs).sum(1, keepdims=True)
    scale = g[:, None] * np.maximum(b * p, w * c_abs)
    assert _ulps(gx, _np(want), scale) <= 4
    assert _ulps(out, _np(ref), _np(ref)) <= 2


def test_nll_gradient_is_minus_g_at_the_target(triton_on_cpu: list[str]) -> None:
    rng = np.random.default_rng(23)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.tensor(rng.normal(0, 2, (7, 300)), dtype=dtype, requires_grad=True)
        t = rng.integers(0, 300, 7)
        g = torch.tensor(rng.uniform(0.5, 2, 7), dtype=dtype)
        out = anyloss.nll_loss(x, torch.tensor(t))
        (gx,) = torch.autograd.grad(out, x, g)
        assert gx.dtype == dtype and out.dtype == dtype
        want = np.zeros((7, 300))
        want[np.arange(7), t] = -_np(g)
        np.testing.assert_array_equal(_np(gx), want)
        np.testing.assert_array_equal(_np(out), -_np(x)[np.arange(7), t])
    assert len(triton_on_cpu) == 4


# -- special values, against the generic code ------------------------------------------


def test_kl_div_special_values_as_the_generic_code(triton_on_cpu: list[str]) -> None:
    pairs = [  # (x, t) per row, each a class of a row [x, -1.0] / [t, -2.0]
        (NAN, -1.0), (-1.0, NAN), (-INF, -1.0), (INF, -1.0), (-INF, -INF), (0.0, -INF),
        (1.0, INF), (INF, INF), (100.0, 100.0), (1e30, 1e30), (99.99, 100.0),
        (-1e30, -100.0), (-3e38, -200.0), (3e38, -1.0), (-3e38, 1.0), (0.0, 1e-45),
        (-5.0, -87.5), (-0.0, 0.0), (50.0, 89.0), (88.0, 88.5),
    ]  # fmt: skip
    x = torch.tensor([[a, -1.0] for a, _ in pairs])
    t = torch.tensor([[b, -2.0] for _, b in pairs])
    with np.errstate(all="ignore"):  # (the interpreter computes with NumPy)
        got = anyloss.kl_div_loss(x, t)
    assert triton_on_cpu
    want = _generic(anyloss.kl_div_loss, x.double(), t.double()).float()
    torch.testing.assert_close(got, want, rtol=2**-21, atol=0, equal_nan=True)


_FOCAL_ROWS = [
    ([0.0, -INF, 1.0], 0),  # a -inf logit elsewhere: finite
    ([0.0, -INF, 1.0], 1),  # the target's logit is -inf: inf
    ([0.0, NAN, 1.0], 0),  # NaN
    ([0.0, INF, 1.0], 0),  # NaN (inf - inf)
    ([-INF, -INF, -INF], 0),  # NaN
    ([3e38, -3e38, 0.0], 0),  # near the largest float: 0
    ([3e38, -3e38, 3e38], 0),  # two maxima
    ([5.0, 5.0, 5.0], 2),  # ties
    ([0.0, -80.0, -200.0], 0),  # exp(x - max) near and below float32's range
    ([1e-30, -1e-30, 0.0], 1),
    ([20.0, 0.0, 0.0], 0),  # 1 - p_t = 4.1e-9
]


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_softmax_focal_special_values_as_the_generic_code(
    gamma: float, triton_on_cpu: list[str]
) -> None:
    x = torch.tensor([r for r, _ in _FOCAL_ROWS], dtype=torch.float32)
    t = torch.tensor([k for _, k in _FOCAL_ROWS])
    with np.errstate(all="ignore"):
        got = anyloss.softmax_focal_loss(x, t, gamma=gamma)
        one = anyloss.softmax_focal_loss(torch.tensor([[2.5]]), torch.tensor([0]), gamma=gamma)
    assert len(triton_on_cpu) == 2
    want = _generic(anyloss.softmax_focal_loss, x.double(), t, gamma=gamma).float()
    torch.testing.assert_close(got, want, rtol=2**-22, atol=0, equal_nan=True)
    assert float(one) == 0.0  # one class: p = 1


def test_softmax_focal_probability_special_values(triton_on_cpu: list[str]) -> None:
    """A -inf logit without mass adds nothing, with mass it is infinite (NaN
    where its alpha is 0); a NaN logit: NaN; ties."""
    x = torch.tensor(
        [[0.0, -INF, 1.0], [0.0, -INF, 1.0], [0.0, -INF, 1.0], [NAN, 0.0, 1.0],
         [2.0, 2.0, -1.0], [20.0, 0.0, -INF]]
    )  # fmt: skip
    q = torch.tensor(
        [[0.5, 0.0, 0.5], [0.25, 0.25, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5],
         [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]
    )  # fmt: skip
    for alpha in (None, torch.tensor([1.0, 0.0, 0.5])):
        with np.errstate(all="ignore"):
            got = anyloss.softmax_focal_loss(x, q, alpha=alpha, gamma=1.5)
        with np.errstate(all="ignore"):
            want = _generic(
                anyloss.softmax_focal_loss,
                x.double(),
                q.double(),
                alpha=None if alpha is None else alpha.double(),
                gamma=1.5,
            ).float()
        torch.testing.assert_close(got, want, rtol=2**-22, atol=0, equal_nan=True)
    assert len(triton_on_cpu) == 2


def test_nll_special_values_as_the_generic_code(triton_on_cpu: list[str]) -> None:
    x = torch.tensor([[NAN, 1.0], [-INF, 0.0], [INF, 0.0], [-0.0, 1.0], [3e38, 1e-45]])
    t = torch.tensor([0, 0, 0, 0, 1])
    got = anyloss.nll_loss(x, t)
    assert triton_on_cpu
    want = _generic(anyloss.nll_loss, x, t)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    assert torch.signbit(got[3]) == torch.signbit(want[3])  # (-(-0.0))


# -- options and reductions, against the generic code ---------------------------------

_RNG = np.random.default_rng(24)
_X3 = _RNG.normal(0, 2, (3, 6, 4)).astype(np.float32)  # classes on axis 1


FOCAL_OPTIONS: dict[str, dict[str, Any]] = {
    "weights_sum": {"reduction": "sum", "weights": "w"},
    "alpha_float": {"alpha": 0.25, "gamma": 3.7},
    "alpha_classes": {"alpha": "a", "reduction": "mean"},
    "probs_alpha_float": {"targets": "probs", "alpha": 0.5, "gamma": 0.5, "reduction": "sum"},
    "axis1": {"axis": 1},
    "axis1_probs_alpha_weights": {"axis": 1, "targets": "probs", "alpha": "a", "weights": "w"},
}


@pytest.mark.parametrize("name", list(FOCAL_OPTIONS))
def test_softmax_focal_options_match_the_generic_code(name: str, triton_on_cpu: list[str]) -> None:
    kw = dict(FOCAL_OPTIONS[name])
    axis = kw.get("axis", -1)
    x = torch.tensor(_X3 if axis == 1 else _X3.reshape(12, 6))
    rows = (3, 4) if axis == 1 else (12,)
    if kw.pop("targets", None) == "probs":
        t: Any = torch.softmax(torch.tensor(_RNG.normal(size=x.shape), dtype=torch.float32), axis)
    else:
        t = torch.tensor(_RNG.integers(0, 6, rows))
    if kw.get("alpha") == "a":
        kw["alpha"] = torch.tensor(_RNG.uniform(0.2, 2, 6), dtype=torch.float32)
    if kw.get("weights") == "w":
        kw["weights"] = torch.tensor(_RNG.uniform(0, 2, rows), dtype=torch.float32)
    got, got_grad, want, want_grad = both(anyloss.softmax_focal_loss, x, t, **kw)
    assert len(triton_on_cpu) == 2
    torch.testing.assert_close(got, want, rtol=2e-6, atol=0)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("axis", "reduction"), [(-1, "mean"), (0, "sum"), (1, "none")])
def test_kl_div_axes_and_reductions_match_the_generic_code(
    axis: int, reduction: str, triton_on_cpu: list[str]
) -> None:
    z = _X3 if axis == 1 else _X3.reshape(12, 6)
    x, t = _logp(z, axis), _logp(z + _RNG.normal(0, 0.5, z.shape), axis)
    t.requires_grad_(True)
    got, got_grad, want, want_grad = both(
        anyloss.kl_div_loss, x, t, axis=axis, reduction=reduction
    )
    assert len(triton_on_cpu) == 2
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-6, atol=1e-7)
    (dt,) = torch.autograd.grad(anyloss.kl_div_loss(x, t, axis=axis).sum(), t)
    (want_dt,) = torch.autograd.grad(_generic(anyloss.kl_div_loss, x, t, axis=axis).sum(), t)
    torch.testing.assert_close(dt, want_dt, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("axis", "reduction", "strided"),
    [(-1, "none", False), (-1, "sum", True), (0, "mean", False), (1, "sum", False)],
)
def test_nll_axes_reductions_and_strides_match_the_generic_code(
    axis: int, reduction: str, strided: bool, triton_on_cpu: list[str]
) -> None:
    z = _X3 if axis == 1 else _X3.reshape(12, 6)
    x = _logp(z, axis)
    if strided:  # (12, 6), neither axis contiguous
        big = torch.zeros(6, 24)
        big[:, ::2] = x.T
        x = big[:, ::2].T
    shape = list(x.shape)
    del shape[axis]
    t = torch.tensor(_RNG.integers(0, x.shape[axis], shape))
    got, got_grad, want, want_grad = both(anyloss.nll_loss, x, t, axis=axis, reduction=reduction)
    assert len(triton_on_cpu) == 2
    torch.testing.assert_close(got, want, rtol=1e-7, atol=0)
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=0)


def test_what_the_kernels_leave_to_the_generic_code(triton_on_cpu: list[str]) -> None:
    """Broadcast KL targets; nll's ignore_index and class weights; focal
    probabilities (or alpha) that need a gradient; non-float logits."""
    x = _logp(_X3.reshape(12, 6), -1)
    anyloss.kl_div_loss(x, x[:1])
    t = torch.tensor(_RNG.integers(0, 6, 12))
    anyloss.nll_loss(x, t, ignore_index=2)
    anyloss.nll_loss(x, t, class_weights=torch.ones(6))
    q = torch.softmax(x, -1).requires_grad_(True)
    anyloss.softmax_focal_loss(x, q)
    anyloss.softmax_focal_loss(x, q.detach(), alpha=torch.ones(6, requires_grad=True))
    anyloss.softmax_focal_loss(torch.zeros(3, 4, dtype=torch.float64), torch.tensor([0, 1, 2]))
    assert triton_on_cpu == []


# -- half precision, second derivatives, torch.compile --------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_bfloat16_inputs(loss: str, triton_on_cpu: list[str]) -> None:
    """bf16 inputs (computed in float32, the result rounded to bf16 once; the
    gradient in bf16)."""
    rng = np.random.default_rng(25)
    z = rng.normal(0, 2, (6, 40))
    x = _logp(z, -1).to(torch.bfloat16)
    if loss == "kl_div_loss":
        t: Any = _logp(z + rng.normal(0, 0.3, z.shape), -1).to(torch.bfloat16)
    else:
        t = torch.tensor(rng.integers(0, 40, 6))
    fn = getattr(anyloss, loss)
    xt = x.clone().requires_grad_(True)
    out = fn(xt, t)
    (grad,) = torch.autograd.grad(out.sum(), xt)
    assert len(triton_on_cpu) == 2
    assert out.dtype == grad.dtype == torch.bfloat16
    x64 = x.double().requires_grad_(True)
    ref = _generic(fn, x64, t.double() if t.is_floating_point() else t)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x64)
    torch.testing.assert_close(out.double(), ref, rtol=2**-8, atol=0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=2**-7, atol=1e-3)


@pytest.mark.parametrize("loss", LOSSES)
def test_a_second_derivative_raises(loss: str, triton_on_cpu: list[str]) -> None:
    x = torch.log_softmax(torch.randn(3, 4), -1).requires_grad_(True)
    t = x.detach() * 0.5 if loss == "kl_div_loss" else torch.tensor([0, 1, 3])
    out = getattr(anyloss, loss)(x, t, reduction="sum")
    with pytest.raises(RuntimeError, match="second derivative"):
        torch.autograd.grad(out, x, create_graph=True)
    assert triton_on_cpu


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiles_as_one_op(triton_on_cpu: list[str]) -> None:
    """The focal loss under ``torch.compile(fullgraph=True)``, its options
    around the op; nll_loss's indices cannot be checked there, so an index out
    of range is a NaN loss (and a 0 gradient), as the generic code makes it."""
    dynamo = pytest.importorskip("torch._dynamo")
    rng = np.random.default_rng(26)
    x = torch.tensor(rng.normal(size=(4, 13)), dtype=torch.float32)
    t = torch.tensor([0, 5, 13, 12])  # 13: out of range
    ok = torch.tensor([0, 5, 7, 12])
    alpha = torch.tensor(rng.uniform(0.5, 2, 13), dtype=torch.float32)

    def step(v: Any, targets: Any) -> Any:
        focal = anyloss.softmax_focal_loss(v, ok, alpha=alpha, gamma=1.5, reduction="mean")
        return focal, anyloss.nll_loss(v, targets)

    dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    first = x.clone().requires_grad_(True)
    focal, nll = compiled(first, t)
    (grad,) = torch.autograd.grad(focal + nll[[0, 1, 3]].sum(), first)
    assert "softmax_focal_loss" in triton_on_cpu and "nll_loss" in triton_on_cpu
    want_first = x.clone().requires_grad_(True)
    want_focal, want_nll = _generic(step, want_first, ok)  # (eagerly: 13 is an error)
    (want_grad,) = torch.autograd.grad(want_focal + want_nll[[0, 1, 3]].sum(), want_first)
    assert torch.isnan(nll[2]) and not torch.isnan(nll[[0, 1, 3]]).any()
    torch.testing.assert_close(focal, want_focal, rtol=1e-6, atol=0)
    torch.testing.assert_close(nll[[0, 1, 3]], want_nll[[0, 1, 3]], rtol=0, atol=0)
    torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-8)

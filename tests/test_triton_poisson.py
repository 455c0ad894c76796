"""The Triton kernel of ``poisson_nll_loss``, checked without a GPU.

Triton's interpreter runs it on CPU tensors (``_triton.on_cpu``; with
``ANYLOSS_TEST_DEVICE=cuda`` on the GPU instead). Its accuracy regimes of
``accuracy_cases.py`` run in ``tests/test_triton.py``; here, regimes they do
not reach against mpmath (4 ulp): log-rates above 64 (the scaled exponential)
where ``e^x`` and ``t x`` cancel, fractional counts with ``full``, rates
near ``-eps`` and a large ``eps``, counts above 2^100 (the scaled product);
both gradients against float64 formulas (4 ulp of the larger term of a
difference); infinities, NaN, zero counts, ``x + eps <= 0``, overflow against
the generic code (values) and the float64 formulas (gradients, where the
generic code's autograd gives NaN through a branch it does not select, or
cancels in float64); the options and reductions against the generic code;
bf16; a second derivative; ``torch.compile``.
"""

from __future__ import annotations

import zlib
from typing import Any

import accuracy_cases as A
import numpy as np
import pytest
from backends import DEVICE

import anyloss
from anyloss import kernels

pytest.importorskip("triton")
torch = pytest.importorskip("torch")
from triton_support import INF, NAN, TRITON_BOUND, compiled_and_generic  # noqa: E402

pytestmark = pytest.mark.usefixtures("triton_on_cpu")

LOSS = "poisson_nll_loss"
MODES = {
    "log": {},
    "log_full": {"full": True},
    "rates": {"log_input": False},
    "rates_full": {"log_input": False, "full": True},
}


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _tensor(a: Any, **kw: Any) -> Any:
    return torch.tensor(_f32(a), device=DEVICE, **kw)


def _numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _logu(r: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return 10.0 ** r.uniform(lo, hi, n)


# -- values against mpmath, beyond accuracy_cases' regimes ---------------------------


def _regime(name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    r = np.random.default_rng(zlib.crc32(name.encode()))
    n = 64
    if name == "large_log_rates":  # e^x (beyond float32 above 88.7) and t x within 1e-3
        x = r.uniform(64, 93, n)
        return _f32(x), _f32(np.exp(x) / x * (1 + r.normal(0, 1e-3, n))), {}
    if name == "full_fractional":  # t in (1, 50): d = x - log t on both sides of 0.5
        t = r.uniform(1.0, 50.0, n)
        return _f32(np.log(t) + r.normal(0, 1, n) * _logu(r, -5, 0.3, n)), _f32(t), {"full": True}
    if name == "full_large_counts":  # t up to 1e12, x near log t
        t = np.round(_logu(r, 0.1, 12, n))
        x = np.log(t) + r.normal(0, 1, n) * _logu(r, -6, 0, n)
        return _f32(x), _f32(t), {"full": True}
    if name == "rates_near_minus_eps":  # eps 0.25, x + eps from 1e-6 to 1
        x = -0.25 + _logu(r, -6, 0, n)
        t = r.uniform(0, 10, n)
        t[:8] = 0
        return _f32(x), _f32(t), {"log_input": False, "eps": 0.25}
    if name == "rates_full_large_eps":  # eps 3: q small around x = t - eps, and far
        t = _logu(r, 0.01, 5, n)
        x = np.abs(t * (1 + r.normal(0, 1, n) * _logu(r, -5, 0, n)) - 3.0)
        kw = {"log_input": False, "full": True, "eps": 3.0}
        return _f32(x), _f32(t), kw
    if name == "rates_huge_counts":  # t > 2^100 (the product at 2^-64), x = t log x
        t = _logu(r, 31, 36, n)
        x = t * 80
        for _ in range(5):
            x = t * np.log(x)
        return _f32(x * (1 + r.normal(0, 1e-5, n))), _f32(t), {"log_input": False}
    raise AssertionError(name)


REGIMES = [
    "large_log_rates",
    "full_fractional",
    "full_large_counts",
    "rates_near_minus_eps",
    "rates_full_large_eps",
    "rates_huge_counts",
]


@pytest.mark.parametrize("name", REGIMES)
def test_values_within_4_ulp_of_mpmath(name: str, triton_on_cpu: list[str]) -> None:
    x, t, kw = _regime(name)
    got = _numpy(anyloss.poisson_nll_loss(_tensor(x), _tensor(t), reduction="none", **kw))
    assert triton_on_cpu == ["poisson_nll"]
    true = A.exact_examples(LOSS, [x, t], kw)
    errs = [A.ulp_error(g, e) for g, e in zip(got.tolist(), true, strict=True)]
    i = int(np.argmax(errs))
    assert errs[i] <= TRITON_BOUND, (name, errs[i], x[i], t[i], got[i], float(true[i]))


# -- gradients against float64 ---------------------------------------------------


def _gradient_data(mode: str) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(list(MODES).index(mode) + 20)
    n = 300
    t = np.round(_logu(r, 0, 5, n))
    t[:40], t[40:100] = 0, r.uniform(0, 2, 60)
    if mode.startswith("log"):
        x = np.log(np.maximum(t, 0.5)) + r.normal(0, 1, n) * _logu(r, -4, 0.5, n)
        x[:60] = r.normal(0, 3, 60)
    else:
        x = np.abs(t * (1 + r.normal(0, 1, n) * _logu(r, -5, 0, n)))
        x[:60] = _logu(r, -20, 3, 60)
    return _f32(x), _f32(t)


def _want(
    mode: str, x: np.ndarray, t: np.ndarray, eps: float = 1e-8
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(d/dx, its scale), (d/dt, its scale) in float64: the larger term of a
    difference, else the value."""
    full = mode.endswith("full") & (t > 1)
    ts = np.where(full, t, 2.0)
    if mode.startswith("log"):
        dx, sx = np.exp(x) - t, np.maximum(np.exp(x), np.abs(t))
        dt = np.where(t == 0, 0.0, -x)
        d = np.log(ts) - x
        scale_full = np.maximum(np.abs(d), 0.5 / ts)
        return [(dx, sx), (np.where(full, d + 0.5 / ts, dt), np.where(full, scale_full, dt))]
    w = x + eps
    dx = np.where(t == 0, 1.0, ((x - t) + eps) / w)
    dt = np.where(t == 0, 0.0, -np.log(w))
    log_ratio = -np.log1p(((x - ts) + eps) / ts)
    dt_full = log_ratio + 0.5 / ts
    scale_full = np.maximum(np.abs(log_ratio), 0.5 / ts)
    return [(dx, dx), (np.where(full, dt_full, dt), np.where(full, scale_full, dt))]


@pytest.mark.parametrize("mode", list(MODES))
def test_gradients_within_4_ulp_of_float64(mode: str, triton_on_cpu: list[str]) -> None:
    """d/dx: log-rates ``e^x - t``; rates ``(x + eps - t) / (x + eps)``. d/dt:
    ``-x`` / ``-log(x + eps)`` (0 where ``t = 0``, whose term the loss leaves
    out), with ``full`` and ``t > 1`` ``log t - x + 0.5 / t`` / ``log(t / (x +
    eps)) + 0.5 / t``; times an incoming gradient."""
    x, t = _gradient_data(mode)
    g = np.random.default_rng(3).uniform(0.5, 2, x.size).astype(np.float32)
    xt, tt = _tensor(x, requires_grad=True), _tensor(t, requires_grad=True)
    out = anyloss.poisson_nll_loss(xt, tt, reduction="none", **MODES[mode])
    grads = torch.autograd.grad(out, (xt, tt), _tensor(g))
    assert triton_on_cpu == ["poisson_nll", "poisson_nll"]  # forward and backward
    g64 = g.astype(np.float64)
    wants = _want(mode, x.astype(np.float64), t.astype(np.float64))
    for got, (want, scale) in zip(grads, wants, strict=True):
        spacing = np.spacing(np.abs(g64 * scale).astype(np.float32)).astype(np.float64)
        spacing = np.maximum(spacing, 2.0**-149)
        ulps = np.abs(_numpy(got) - g64 * want) / spacing
        assert ulps.max() <= TRITON_BOUND, (mode, ulps.max(), int(ulps.argmax()))


def test_only_the_wanted_gradient(triton_on_cpu: list[str]) -> None:
    x, t = _gradient_data("log")
    xt = _tensor(x, requires_grad=True)
    out = anyloss.poisson_nll_loss(xt, _tensor(t), full=True, reduction="sum")
    (gx,) = torch.autograd.grad(out, xt)
    assert len(triton_on_cpu) == 2
    want = np.exp(x.astype(np.float64)) - t
    np.testing.assert_allclose(_numpy(gx), want, rtol=3e-7, atol=1e-6)


# -- special values -----------------------------------------------------------------

_XS = [INF, -INF, NAN, 0.0, 1.0, -1.0, -0.25, 0.75, 88.0, 90.0, 100.0, 140.0, 800.0, -200.0,
       1e30, -1e30, -1e-8, 3e38, 1e-40]  # fmt: skip
_TS = [0.0, 0.5, 1.0, 2.0, 5.0, INF, -INF, NAN, -2.0, 3e38, 1e-40, 1e36, 1.356e37]
_SPECIAL_X = _f32([a for a in _XS for _ in _TS])
_SPECIAL_T = _f32([b for _ in _XS for b in _TS])
# (eps is for rates: 0.25 makes x = -0.25 a zero rate)
_SPECIAL_CASES = [(m, 1e-8) for m in MODES] + [("rates", 0.25), ("rates_full", 0.25)]


@pytest.mark.parametrize(("mode", "eps"), _SPECIAL_CASES)
def test_special_values_as_the_generic_code(
    mode: str, eps: float, triton_on_cpu: list[str]
) -> None:
    """Infinities, NaN, zero and negative counts, ``x + eps`` zero or negative,
    overflow, ``e^x`` beyond float32 where ``t x`` cancels it (``x = 90``,
    ``t = e^90 / 90``)."""
    x, t = _tensor(_SPECIAL_X), _tensor(_SPECIAL_T)
    with np.errstate(all="ignore"):  # (the interpreter computes with NumPy)
        got = anyloss.poisson_nll_loss(x, t, eps=eps, reduction="none", **MODES[mode])
    assert triton_on_cpu
    with kernels.generic():
        want = anyloss.poisson_nll_loss(x, t, eps=eps, reduction="none", **MODES[mode])
    torch.testing.assert_close(got, want, rtol=4e-7, atol=0, equal_nan=True)


@pytest.mark.parametrize(("mode", "eps"), _SPECIAL_CASES)
def test_special_gradients_as_float64(mode: str, eps: float, triton_on_cpu: list[str]) -> None:
    """The gradients' formulas in float64 (NumPy's infinities and NaN): the
    generic code's autograd gives NaN with ``full=True`` wherever the branch
    it does not select overflows (``0 * inf``), and cancels in float64 at
    ``x = 100`` and for rates of 1e30, where the kernel keeps the value."""
    xt, tt = _tensor(_SPECIAL_X, requires_grad=True), _tensor(_SPECIAL_T, requires_grad=True)
    with np.errstate(all="ignore"):
        out = anyloss.poisson_nll_loss(xt, tt, eps=eps, reduction="sum", **MODES[mode])
        gx, gt = torch.autograd.grad(out, (xt, tt))
        x, t = _SPECIAL_X.astype(np.float64), _SPECIAL_T.astype(np.float64)
        full = mode.endswith("full") & (t > 1)
        if mode.startswith("log"):
            want_x = np.exp(x) - t
            want_t = np.where(full, np.log(t) - x + 0.5 / t, np.where(t == 0, 0.0, -x))
        else:
            w = x + eps
            want_x = np.where(t == 0, 1.0, 1.0 - t / w)
            log_ratio = np.log(t) - np.log(w)
            want_t = np.where(full, log_ratio + 0.5 / t, np.where(t == 0, 0.0, -np.log(w)))
    assert triton_on_cpu
    for got, want in ((gx, want_x), (gt, want_t)):
        want32 = torch.tensor(want, device=DEVICE).float()
        # (rates near t: 1 - t / w cancels in float64 where the kernel is exact)
        torch.testing.assert_close(got, want32, rtol=1e-6, atol=1e-30, equal_nan=True)


def test_zero_count_and_minus_inf_log_rate(triton_on_cpu: list[str]) -> None:
    """A count of 0 at rate 0 (log-rate -inf) has likelihood 1: loss 0, its
    gradient 0 (PyTorch's own gives NaN)."""
    x = _tensor([-INF, 0.0], requires_grad=True)
    out = anyloss.poisson_nll_loss(x, _tensor([0.0, 0.0]), reduction="none")
    (g,) = torch.autograd.grad(out.sum(), x)
    assert triton_on_cpu
    np.testing.assert_array_equal(_numpy(out), [0.0, 1.0])
    np.testing.assert_array_equal(_numpy(g), [0.0, 1.0])


# -- options and reductions against the generic code ---------------------------------


def _both(**kw: Any) -> tuple[list[Any], list[Any]]:
    """(value, d/dx, d/dt) through the kernel and through the generic code."""
    r = np.random.default_rng(31)
    t = r.poisson(3.0, (5, 7)).astype(np.float32)
    t[0, :3] = [0.0, 1.0, 0.5]
    if kw.get("log_input", True):
        x = _f32(r.normal(0.5, 1.0, (5, 7)))
    else:
        x = _f32(np.exp(r.normal(0.5, 1.0, (5, 7))))
        x[0, 0] = 0.0
    results = []
    for generic in (False, True):
        xt, tt = _tensor(x, requires_grad=True), _tensor(t, requires_grad=True)
        if generic:
            with kernels.generic():
                out = anyloss.poisson_nll_loss(xt, tt, **kw)
        else:
            out = anyloss.poisson_nll_loss(xt, tt, **kw)
        results.append([out.detach(), *torch.autograd.grad(out.sum(), (xt, tt))])
    return results[0], results[1]


OPTIONS = {
    "defaults": {},
    "none": {"reduction": "none"},
    "full_sum": {"full": True, "reduction": "sum"},
    "rates_mean": {"log_input": False},
    "rates_full_eps": {"log_input": False, "full": True, "eps": 0.25, "reduction": "none"},
    "rates_eps_sum": {"log_input": False, "eps": 1e-3, "reduction": "sum"},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_options_and_reductions_as_the_generic_code(name: str, triton_on_cpu: list[str]) -> None:
    got, want = _both(**OPTIONS[name])
    assert len(triton_on_cpu) == 2
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_integer_counts_and_the_default_dtype(triton_on_cpu: list[str]) -> None:
    x = torch.tensor([[0.1, 1.2, -0.4], [2.0, 0.0, 1.0]], device=DEVICE)
    t = torch.tensor([[0, 1, 3], [7, 2, 0]], device=DEVICE)
    got = anyloss.poisson_nll_loss(x, t, full=True, reduction="none")
    assert triton_on_cpu and got.dtype == torch.float32
    with kernels.generic():
        want = anyloss.poisson_nll_loss(x, t, full=True, reduction="none")
    torch.testing.assert_close(got, want, rtol=4e-7, atol=0)


@pytest.mark.parametrize("eps", [2.0**-100, 2.0**100])
def test_the_range_of_eps(eps: float, triton_on_cpu: list[str]) -> None:
    x = _tensor([0.0, 1.0, 3.0, 1e30, 1e-30])
    t = _tensor([0.0, 2.0, 3.0, 5.0, 1.0])
    got = anyloss.poisson_nll_loss(x, t, log_input=False, eps=eps, reduction="none")
    assert triton_on_cpu
    with kernels.generic():
        want = anyloss.poisson_nll_loss(x, t, log_input=False, eps=eps, reduction="none")
    torch.testing.assert_close(got, want, rtol=4e-7, atol=0)


@pytest.mark.parametrize(
    ("kw", "x"),
    [
        ({"log_input": False, "eps": 1e-200}, torch.ones(3)),  # eps below the kernel's range
        ({"log_input": False, "eps": 1e40}, torch.ones(3)),  # above
        ({}, torch.ones(3, dtype=torch.float64)),  # float64
    ],
)
def test_what_the_kernel_leaves_to_the_generic_code(
    kw: dict, x: Any, triton_on_cpu: list[str]
) -> None:
    x = x.to(DEVICE)
    got = anyloss.poisson_nll_loss(x, torch.full_like(x, 2.0), **kw)
    assert not triton_on_cpu
    with kernels.generic():
        want = anyloss.poisson_nll_loss(x, torch.full_like(x, 2.0), **kw)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


# -- half precision --------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_bfloat16_inputs(mode: str, triton_on_cpu: list[str]) -> None:
    """Through the loss (cast to float32 for the kernel, the result rounded to
    bf16: within half an ulp of bf16), and the op itself on bf16 tensors (read
    as they are, stored in bf16: within an ulp, as Triton's interpreter
    truncates float32 to bf16 where the GPU rounds to nearest)."""
    from anyloss.kernels import _triton_elementwise_ops as ops

    x, t = _gradient_data(mode)
    xb = torch.tensor(x, device=DEVICE).to(torch.bfloat16)
    tb = torch.tensor(t, device=DEVICE).to(torch.bfloat16)
    got = anyloss.poisson_nll_loss(xb, tb, reduction="none", **MODES[mode])
    assert triton_on_cpu and got.dtype == torch.bfloat16
    with kernels.generic():
        want = anyloss.poisson_nll_loss(xb.double(), tb.double(), reduction="none", **MODES[mode])
    torch.testing.assert_close(got.double(), want, rtol=2.0**-8, atol=1e-30)
    args = {"log_input": True, "full": False, "eps": 1e-8, **MODES[mode]}
    p, q = ops._poisson_params(args)
    direct = torch.ops.anyloss.triton_elementwise("poisson_nll", xb, tb, None, None, p, q)
    assert direct.dtype == torch.bfloat16
    torch.testing.assert_close(direct.double(), want, rtol=2.0**-7, atol=1e-30)


# -- autograd and the compiler ---------------------------------------------------------


def test_a_second_derivative_raises(triton_on_cpu: list[str]) -> None:
    x = torch.randn(3, 4, device=DEVICE, requires_grad=True)
    out = anyloss.poisson_nll_loss(x, torch.ones(3, 4, device=DEVICE) * 2, full=True)
    with pytest.raises(RuntimeError, match="second derivative"):
        torch.autograd.grad(out, x, create_graph=True)
    assert triton_on_cpu
    with kernels.generic():
        out = anyloss.poisson_nll_loss(x, torch.ones(3, 4, device=DEVICE) * 2, full=True)
        torch.autograd.grad(out, x, create_graph=True)  # (the generic code's)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiles_as_one_op(triton_on_cpu: list[str]) -> None:
    pytest.importorskip("torch._dynamo")
    r = np.random.default_rng(9)
    x = _tensor(np.exp(r.normal(size=(4, 13))))
    t = _tensor(r.poisson(2.0, (4, 13)))

    def step(v: Any) -> Any:
        return anyloss.poisson_nll_loss(v, t, log_input=False, full=True, eps=0.1)

    out, grad, want, want_grad = compiled_and_generic(step, x)
    assert triton_on_cpu
    torch.testing.assert_close(out, want, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-8)

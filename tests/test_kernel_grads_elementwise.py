"""The elementwise numba kernels' gradients (``<name>_grad``).

Expected values: PyTorch float64 autograd of the plain formulas (written as
the generic code writes them, so ties and kinks are torch's) and, for
float64 inputs, mpmath. The loss a gradient kernel writes must be the
forward kernel's, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

# numba's CPU kernels (skipped on another ANYLOSS_TEST_DEVICE)
pytestmark = pytest.mark.cpu_only

pytest.importorskip("numba")
torch = pytest.importorskip("torch")
mpmath = pytest.importorskip("mpmath")

from anyloss.kernels import _numba as k  # noqa: E402

BLOCK = k.BLOCK
N = 4096 * 3 + 17  # not a multiple of the block size
DTYPES = [np.float32, np.float64]
HALF_LOG_2PI = 0.9189385332046728


# --------------------------------------------------------------------------
# the losses: array inputs, scalar parameters and torch references


def _t_maximum(u: Any, c: float) -> Any:
    return torch.maximum(u, torch.tensor(c, dtype=u.dtype))


def _ref_bce_probs(p: Any, t: Any) -> Any:
    # as anyloss._classification: p = 0 and p = 1 take the floor directly
    floor = torch.tensor(-100.0, dtype=p.dtype)
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    at_zero, at_one = p == 0, p == 1
    log_p = torch.where(
        at_zero, floor, torch.maximum(torch.log(torch.where(at_zero, one, p)), floor)
    )
    log_q = torch.where(
        at_one, floor, torch.maximum(torch.log1p(-torch.where(at_one, zero, p)), floor)
    )
    return -(t * log_p + (1 - t) * log_q)


def _ref_smooth_l1(x: Any, y: Any, beta: float) -> Any:
    d = (x - y).abs()
    quadratic = d < beta
    dq = torch.where(quadratic, d, torch.zeros_like(d))
    return torch.where(quadratic, (0.5 * dq) * (dq / beta), d - 0.5 * beta)


def _ref_huber(x: Any, y: Any, delta: float) -> Any:
    a = (x - y).abs()
    if delta == float("inf"):
        return (0.5 * a) * a
    q = torch.minimum(a, torch.tensor(delta, dtype=a.dtype))
    return (0.5 * q) * q + delta * (a - q)


def _ref_gaussian(mu: Any, y: Any, v: Any, eps: float, const: float) -> Any:
    v = _t_maximum(v, eps)
    return 0.5 * (torch.log(v) + (y - mu) ** 2 / v) + const


# name -> (array inputs, weights?, parameter sets, reference)
LOSSES: dict[str, tuple[int, bool, list[tuple[float, ...]], Callable[..., Any]]] = {
    "l1": (2, False, [()], lambda x, y: (x - y).abs()),
    "mse": (2, False, [()], lambda x, y: (x - y) ** 2),
    "smooth_l1": (2, False, [(1.0,), (0.25,), (3.0,)], _ref_smooth_l1),
    "huber": (2, False, [(1.0,), (0.0,), (0.5,), (float("inf"),)], _ref_huber),
    "log_cosh": (2, False, [()], lambda x, y: torch.log(torch.cosh(x - y))),
    "hinge": (2, False, [()], lambda x, t: _t_maximum(1 - x * t, 0.0)),
    "margin_ranking": (
        3,
        False,
        [(0.0,), (0.5,), (-0.3,)],
        lambda a, b, z, m: _t_maximum(m - z * (a - b), 0.0),
    ),
    "bce_logits": (
        2,
        True,
        [()],
        lambda x, t: (
            t * torch.logaddexp(torch.zeros_like(x), -x)
            + (1 - t) * torch.logaddexp(torch.zeros_like(x), x)
        ),
    ),
    "bce_probs": (2, True, [()], _ref_bce_probs),
    "gaussian_nll": (
        3,
        False,
        [(1e-6, 0.0), (1e-6, HALF_LOG_2PI), (0.5, 0.0)],
        _ref_gaussian,
    ),
}
NAMES = list(LOSSES)


def _data(name: str, dt: Any, n: int, seed: int = 0, binary: bool = False) -> list[np.ndarray]:
    """Ordinary random inputs of loss ``name``."""
    rng = np.random.default_rng(seed)
    normal = lambda: rng.standard_normal(n).astype(dt)  # noqa: E731
    sign = lambda: np.where(rng.standard_normal(n) < 0, -1.0, 1.0).astype(dt)  # noqa: E731
    if name == "hinge":
        return [normal(), sign()]
    if name == "margin_ranking":
        return [normal(), normal(), sign()]
    if name == "bce_logits":
        t = rng.integers(0, 2, n) if binary else rng.uniform(0, 1, n)
        return [(3 * normal()).astype(dt), t.astype(dt)]
    if name == "bce_probs":
        t = rng.integers(0, 2, n) if binary else rng.uniform(0, 1, n)
        return [rng.uniform(0.001, 0.999, n).astype(dt), t.astype(dt)]
    if name == "gaussian_nll":
        return [normal(), normal(), np.exp(rng.standard_normal(n)).astype(dt)]
    return [normal(), normal()]


def _weights(dt: Any, n: int) -> np.ndarray:
    return np.random.default_rng(7).uniform(0.0, 2.0, n).astype(dt)


def _args(name: str, arrays: list[np.ndarray], params: tuple[float, ...], w: Any) -> tuple:
    if LOSSES[name][1]:
        return (*arrays, np.empty(0, arrays[0].dtype) if w is None else w)
    return (*arrays, *params)


def _forward(name, arrays, params, w=None, mode="none"):
    n, dt = arrays[0].size, arrays[0].dtype
    blocks = -(-n // BLOCK)
    out = np.empty(n if mode == "none" else 0, dt)
    part = np.empty(0 if mode == "none" else blocks)
    getattr(k, name)(*_args(name, arrays, params, w), out, part, 0, blocks)
    return out if mode == "none" else part


def _grad(name, arrays, params, w=None, mode="none", want=None, ranges=None):
    """(loss or block sums, [gradient per array input]) by ``<name>_grad``;
    ``want[j]`` False passes a gradient array of size 0; ``ranges`` splits
    the blocks over several calls."""
    n, dt = arrays[0].size, arrays[0].dtype
    blocks = -(-n // BLOCK)
    out = np.empty(n if mode == "none" else 0, dt)
    part = np.empty(0 if mode == "none" else blocks)
    want = want or [True] * len(arrays)
    grads = [np.empty(n if wj else 0, dt) for wj in want]
    for b0, b1 in ranges or [(0, blocks)]:
        getattr(k, name + "_grad")(*_args(name, arrays, params, w), out, part, *grads, b0, b1)
    return (out if mode == "none" else part), grads


def _torch_grads(name, arrays, params, w=None):
    """float64 torch autograd of the reference: d loss_i / d input_i."""
    ts = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in arrays]
    loss = LOSSES[name][3](*ts, *params)
    if w is not None:
        loss = loss * torch.tensor(w.astype(np.float64))
    loss.sum().backward()
    return [t.grad.numpy() for t in ts]


def _ulps(got: np.ndarray, ref: np.ndarray, dt: Any) -> np.ndarray:
    """|got - ref| in ulps of dt at ref (0 where both are equal); float64:
    in ulps of max(|ref|, 1), as the float64 reference itself cancels (huber:
    delta + (q - delta))."""
    ref = np.asarray(ref, np.float64)
    scale = np.abs(ref) if dt == np.float32 else np.maximum(np.abs(ref), 1.0)
    spacing = np.spacing(scale.astype(dt)).astype(np.float64)
    err = np.abs(got.astype(np.float64) - ref)
    return np.where(got.astype(np.float64) == ref, 0.0, err / spacing)


# --------------------------------------------------------------------------
# float32 and float64 against torch's float64 autograd


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_gradient_vs_torch(name: str, dt: Any) -> None:
    arity, weighted, param_sets, _ = LOSSES[name]
    arrays = _data(name, dt, N)
    for params in param_sets:
        for w in [None, _weights(dt, N)] if weighted else [None]:
            _, grads = _grad(name, arrays, params, w)
            ref = _torch_grads(name, arrays, params, w)
            # float32: the float64 reference is exact enough; float64: it
            # has rounding errors of its own (mpmath below is the 4 ulp test)
            bound = 4.0 if dt == np.float32 else 16.0
            for j in range(arity):
                worst = _ulps(grads[j], ref[j], dt).max()
                assert worst <= bound, (name, params, j, worst)


MP_SAMPLE = 400


def _mp_grads(name: str, vals: list[float], params: tuple[float, ...]) -> list[Any]:
    """The exact derivatives (mpmath, 50 digits) at float64 inputs."""
    mp = mpmath.mp
    a = [mp.mpf(v) for v in vals]
    p = [mp.mpf(v) for v in params]
    sign = lambda u: (u > 0) - (u < 0)  # noqa: E731
    if name in ("l1", "mse", "smooth_l1", "huber", "log_cosh"):
        d = a[0] - a[1]
        g = {
            "l1": lambda: mp.mpf(sign(d)),
            "mse": lambda: 2 * d,
            "smooth_l1": lambda: d / p[0] if abs(d) < p[0] else mp.mpf(sign(d)),
            "huber": lambda: d if abs(d) <= p[0] else p[0] * sign(d),
            "log_cosh": lambda: mp.tanh(d),
        }[name]()
        return [g, -g]
    if name == "hinge":
        on = 1 - a[0] * a[1] > 0
        return [-a[1] if on else 0, -a[0] if on else 0]
    if name == "margin_ranking":
        on = p[0] - a[2] * (a[0] - a[1]) > 0
        return [-a[2] if on else 0, a[2] if on else 0, -(a[0] - a[1]) if on else 0]
    if name == "bce_logits":
        return [1 / (1 + mp.exp(-a[0])) - a[1], -a[0]]
    if name == "bce_probs":
        x, t = a
        return [-t / x + (1 - t) / (1 - x), mp.log(1 - x) - mp.log(x)]
    mu, y, v = a
    v = max(v, p[0])
    d = y - mu
    return [-d / v, d / v, (1 / v - d * d / (v * v)) / 2 if a[2] > p[0] else 0]


@pytest.mark.parametrize("name", NAMES)
def test_float64_gradient_vs_mpmath(name: str) -> None:
    arity, _, param_sets, _ = LOSSES[name]
    arrays = _data(name, np.float64, MP_SAMPLE, seed=3, binary=True)
    with mpmath.workdps(50):
        for params in param_sets:
            _, grads = _grad(name, arrays, params)
            for i in range(MP_SAMPLE):
                ref = _mp_grads(name, [float(a[i]) for a in arrays], params)
                for j in range(arity):
                    r = float(ref[j])
                    err = abs(mpmath.mpf(float(grads[j][i])) - ref[j])
                    ulp = np.spacing(abs(r)) if r != 0 else 0.0
                    assert err <= 4 * ulp, (name, params, j, arrays[0][i], grads[j][i], r)


def test_bce_soft_targets_float64() -> None:
    # sigmoid(x) - t cancels where they are close: within 4 ulp of the larger
    # of (1 - t) sigmoid(x) and t sigmoid(-x); bce_probs' (p - t)/(p (1 - p))
    # does not cancel
    arrays = _data("bce_logits", np.float64, MP_SAMPLE, seed=5)
    _, (gx, _) = _grad("bce_logits", arrays, ())
    probs = _data("bce_probs", np.float64, MP_SAMPLE, seed=5)
    _, (gp, _) = _grad("bce_probs", probs, ())
    with mpmath.workdps(50):
        for i in range(MP_SAMPLE):
            x, t = (mpmath.mpf(float(a[i])) for a in arrays)
            s = 1 / (1 + mpmath.exp(-x))
            scale = float(max((1 - t) * s, t * (1 - s)))
            assert abs(gx[i] - (s - t)) <= 4 * np.spacing(scale)
            p, t = (mpmath.mpf(float(a[i])) for a in probs)
            r = float((p - t) / (p * (1 - p)))
            assert abs(gp[i] - r) <= 4 * np.spacing(abs(r)), (p, t)


# --------------------------------------------------------------------------
# the loss is the forward kernel's; modes, thread ranges, gradients skipped


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_loss_bit_identical_and_ranges(name: str, dt: Any) -> None:
    arity, weighted, param_sets, _ = LOSSES[name]
    arrays = _data(name, dt, N, seed=1)
    blocks = -(-N // BLOCK)
    for params in param_sets[:2]:
        for w in [None, _weights(dt, N)] if weighted else [None]:
            for mode in ("none", "sum"):
                loss, grads = _grad(name, arrays, params, w, mode)
                assert _same(loss, _forward(name, arrays, params, w, mode))
                split = _grad(name, arrays, params, w, mode, ranges=[(0, 1), (1, blocks)])
                assert _same(loss, split[0])
                assert all(_same(g, h) for g, h in zip(grads, split[1], strict=True))
                # each gradient alone: the same values
                for j in range(arity):
                    want = [i == j for i in range(arity)]
                    loss_j, grads_j = _grad(name, arrays, params, w, mode, want=want)
                    assert _same(loss, loss_j)
                    assert _same(grads_j[j], grads[j])
                    assert all(g.size == 0 for i, g in enumerate(grads_j) if i != j)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 63, 65, 1000, 4096, 4097])
def test_small_and_odd_sizes(name: str, dt: Any, n: int) -> None:
    arity, _, param_sets, _ = LOSSES[name]
    arrays = _data(name, dt, n, seed=2)
    params = param_sets[0]
    loss, grads = _grad(name, arrays, params)
    assert _same(loss, _forward(name, arrays, params))
    part, _ = _grad(name, arrays, params, mode="sum")
    assert _same(part, _forward(name, arrays, params, mode="sum"))
    ref = _torch_grads(name, arrays, params)
    for j in range(arity):
        assert _ulps(grads[j], ref[j], dt).max() <= (4.0 if dt == np.float32 else 16.0)


# --------------------------------------------------------------------------
# NaN and inf


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, 1e-30]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_nan_inf(name: str, dt: Any) -> None:
    param_sets = LOSSES[name][2]
    arrays = _data(name, dt, 5000, seed=4)
    rng = np.random.default_rng(9)
    for a in arrays:
        idx = rng.integers(0, a.size, 1500)
        a[idx] = rng.choice(np.array(SPECIAL, dt), idx.size)
    if name == "bce_probs":  # probabilities: inf and negative values are NaN losses
        arrays[0][:3] = [0.0, 1.0, 1.5]
    for params in param_sets:
        for mode in ("none", "sum"):
            loss, grads = _grad(name, arrays, params, mode=mode)
            assert _same(loss, _forward(name, arrays, params, mode=mode))
        loss, grads = _grad(name, arrays, params)
        nan = np.isnan(loss)
        finite = np.isfinite(loss)
        assert nan.any()
        for g in grads:
            assert np.isnan(g[nan]).all()
            # where the loss is finite, so is the gradient (a subnormal
            # variance or probability could overflow 1/v, 1/p: not here)
            assert np.isfinite(g[finite]).all(), name


# --------------------------------------------------------------------------
# ties and kinks: torch's autograd of the generic formula


def _pairs_vs_torch(name: str, arrays: list[np.ndarray], params: tuple[float, ...]) -> None:
    for dt in DTYPES:
        arr = [np.asarray(a, dt) for a in arrays]
        _, grads = _grad(name, arr, params)
        ref = _torch_grads(name, arr, params)
        for g, r in zip(grads, ref, strict=True):
            np.testing.assert_array_equal(g, r.astype(dt))


def test_ties_maximum_half() -> None:
    # maximum(u, 0) at u == 0: half the gradient (torch.maximum, jnp.maximum)
    _pairs_vs_torch("hinge", [[2.0, 0.5, -4.0, 3.0], [0.5, 2.0, -0.25, -1.0]], ())
    _pairs_vs_torch(
        "margin_ranking", [[1.5, 0.0, 2.0], [1.0, 0.5, 1.0], [1.0, -1.0, -1.0]], (0.5,)
    )
    # the variance floor: half at var == eps, none below
    eps = 0.25
    _pairs_vs_torch(
        "gaussian_nll", [[0.0, 0.0, 1.0], [1.0, 2.0, 0.5], [0.25, 0.125, 2.0]], (eps, 0.0)
    )
    _, (_, _, gv) = _grad(
        "gaussian_nll", [np.array([0.0]), np.array([1.0]), np.array([eps])], (eps, 0.0)
    )
    assert gv[0] == 0.5 * 0.5 * (1 / eps - 1 / eps**2)


def test_kinks() -> None:
    # abs at 0: gradient 0
    _pairs_vs_torch("l1", [[1.0, -2.0, 3.0], [1.0, 1.0, 1.0]], ())
    _pairs_vs_torch("log_cosh", [[1.0, 0.0], [1.0, 0.0]], ())
    # smooth_l1 at |d| == beta: the linear branch (d < beta is quadratic)
    _pairs_vs_torch("smooth_l1", [[2.0, -1.0, 0.0, 1.5], [0.0, 1.0, 0.0, 1.0]], (2.0,))
    # huber at |d| == delta: both parts give delta
    _pairs_vs_torch("huber", [[2.0, -1.0, 0.0], [0.0, 1.0, 0.0]], (2.0,))
    _pairs_vs_torch("huber", [[2.0, -1.0, 0.0], [0.0, 1.0, 0.0]], (0.0,))


def test_bce_probs_at_zero_and_one() -> None:
    # p = 0 and p = 1: the floored log passes no gradient (1 - t, -t); d/dt
    # is the difference of the floored logs
    p = [0.0, 0.0, 1.0, 1.0, 0.0]
    t = [0.0, 0.75, 1.0, 0.25, 1.0]
    _pairs_vs_torch("bce_probs", [p, t], ())
    _, (gp, gt) = _grad("bce_probs", [np.array(p), np.array(t)], ())
    np.testing.assert_array_equal(gp, [1.0, 0.25, -1.0, -0.25, 0.0])
    np.testing.assert_array_equal(gt, [100.0, 100.0, -100.0, -100.0, 100.0])


def test_bce_logits_extremes() -> None:
    x = np.array([-800.0, -40.0, 40.0, 800.0, 0.0])
    cases = (
        (1.0, [-1.0, -1.0, -np.exp(-40.0), -0.0, -0.5]),
        (0.0, [0.0, np.exp(-40.0), 1.0, 1.0, 0.5]),
    )
    for t, expect in cases:
        _, (gx, gt) = _grad("bce_logits", [x, np.full(5, t)], ())
        np.testing.assert_allclose(gx, expect, rtol=4e-16, atol=0)
        np.testing.assert_array_equal(gt, -x)


def test_cache_index_keys() -> None:
    # every kernel is cached on disk like the other kernels (cache=True)
    for name in NAMES:
        for suffix in ("", "_grad"):
            assert getattr(k, name + suffix)._cache.__class__.__name__ == "FunctionCache"

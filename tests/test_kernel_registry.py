"""The registry of fast paths, and the numba kernels with their gradients on
PyTorch, JAX and MLX.

Every case runs one loss through the registry's numba entry on each
library with autodiff and compares the value and the gradient of every
differentiable argument with the generic code evaluated in float64 by
PyTorch's autograd (an independent implementation of the same formulas;
float32 results within 4 ulp of it, plus one ulp of the largest gradient
entry). ``MIN_SIZE`` is lowered so that small arrays take the kernels.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import anyloss
from anyloss import kernels
from anyloss.kernels import _config, _cpu, _registry

# numba's CPU kernels (skipped on another ANYLOSS_TEST_DEVICE)
pytestmark = pytest.mark.cpu_only

pytest.importorskip("numba")
torch = pytest.importorskip("torch")

ROWS, CLASSES, N = 48, 100, 6000  # N spans two blocks of the elementwise kernels


def _cases() -> list[tuple[str, str, Callable[[np.random.Generator], Any], dict[str, Any]]]:
    """(id, loss, make(rng) -> (arrays, differentiable positions), kwargs)."""

    def logits(rng: np.random.Generator) -> np.ndarray:
        return (rng.standard_normal((ROWS, CLASSES)) * 2).astype(np.float32)

    def idx(rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, CLASSES, ROWS)

    def vec(rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(N).astype(np.float32)

    def unit(rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0.02, 0.98, N).astype(np.float32)

    def sign(rng: np.random.Generator) -> np.ndarray:
        return rng.choice(np.array([-1.0, 1.0], np.float32), N)

    def probs(rng: np.random.Generator) -> np.ndarray:
        return rng.dirichlet(np.ones(CLASSES), ROWS).astype(np.float32)

    def logprobs(rng: np.random.Generator) -> np.ndarray:
        x = logits(rng).astype(np.float64)
        return (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)

    def emb(rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((ROWS, CLASSES)).astype(np.float32)

    return [
        ("ce_index", "cross_entropy", lambda r: ((logits(r), idx(r)), (0,)), {}),
        (
            "ce_index_smooth",
            "cross_entropy",
            lambda r: ((logits(r), idx(r)), (0,)),
            {"label_smoothing": 0.1},
        ),
        ("ce_probs", "cross_entropy", lambda r: ((logits(r), probs(r)), (0,)), {}),
        ("kl_div", "kl_div_loss", lambda r: ((logprobs(r), logprobs(r)), (0, 1)), {}),
        ("nll", "nll_loss", lambda r: ((logprobs(r), idx(r)), (0,)), {}),
        ("bce_logits", "binary_cross_entropy", lambda r: ((vec(r), unit(r)), (0, 1)), {}),
        (
            "bce_probs",
            "binary_cross_entropy",
            lambda r: ((unit(r), unit(r)), (0, 1)),
            {"with_logits": False},
        ),
        ("l1", "l1_loss", lambda r: ((vec(r), vec(r)), (0, 1)), {}),
        ("mse", "mse_loss", lambda r: ((vec(r), vec(r)), (0, 1)), {}),
        ("smooth_l1", "smooth_l1_loss", lambda r: ((vec(r), vec(r)), (0, 1)), {"beta": 0.5}),
        ("huber", "huber_loss", lambda r: ((vec(r), vec(r)), (0, 1)), {"delta": 0.7}),
        ("log_cosh", "log_cosh_loss", lambda r: ((vec(r), vec(r) * 3), (0, 1)), {}),
        ("hinge", "hinge_loss", lambda r: ((vec(r), sign(r)), (0, 1)), {}),
        (
            "margin_ranking",
            "margin_ranking_loss",
            lambda r: ((vec(r), vec(r), sign(r)), (0, 1, 2)),
            {"margin": 0.1},
        ),
        (
            "gaussian_nll",
            "gaussian_nll_loss",
            lambda r: ((vec(r), vec(r), unit(r) + 0.1), (0, 1, 2)),
            {"full": True},
        ),
        ("cosine", "cosine_similarity_loss", lambda r: ((emb(r), emb(r)), (0, 1)), {}),
        ("triplet", "triplet_loss", lambda r: ((emb(r), emb(r), emb(r)), (0, 1, 2)), {}),
        (
            "triplet_p1",
            "triplet_loss",
            lambda r: ((emb(r), emb(r), emb(r)), (0, 1, 2)),
            {"p": 1},
        ),
    ]


CASES = {case[0]: case for case in _cases()}


@pytest.fixture(autouse=True)
def small_inputs_take_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small arrays take the kernels; so does JAX (its entries need force)."""
    monkeypatch.setattr(_cpu, "MIN_SIZE", 16)
    monkeypatch.setattr(_config, "_MODE", "force")


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the entries the registry chooses, in order."""
    used: list[str] = []
    original = _registry.lookup

    def spy(be: Any, loss: str, reduction: str, args: Any) -> Any:
        entry = original(be, loss, reduction, args)
        used.append("generic" if entry is None else entry.name)
        return entry

    monkeypatch.setattr(_registry, "lookup", spy)
    return used


def _reference(
    loss: str, arrays: tuple[np.ndarray, ...], diff: tuple[int, ...], kw: dict[str, Any]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The loss ('none') and the gradients of its sum, in float64, by the
    generic code under PyTorch's autograd."""
    ts = []
    for i, a in enumerate(arrays):
        t = torch.asarray(a.astype(np.float64) if a.dtype.kind == "f" else a)
        ts.append(t.requires_grad_(True) if i in diff else t)
    with kernels.generic():
        out = getattr(anyloss, loss)(*ts, **kw, reduction="none")
    grads = torch.autograd.grad(out.sum(), [ts[i] for i in diff])
    return out.detach().numpy(), [g.numpy() for g in grads]


def _assert_close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    floor = float(np.spacing(np.float32(np.abs(ref).max(initial=0.0))))
    err = np.abs(got - ref)
    ok = err <= 4 * spacing + floor
    assert ok.all(), f"{what}: {(err / spacing)[~ok].max():.3g} ulp off (of {ok.size})"


def _run_torch(loss: str, arrays: Any, diff: Any, kw: Any, reduction: str) -> Any:
    ts = [torch.asarray(a.copy()) for a in arrays]
    for i in diff:
        ts[i].requires_grad_(True)
    out = getattr(anyloss, loss)(*ts, **kw, reduction=reduction)
    grads = torch.autograd.grad(out.sum(), [ts[i] for i in diff])
    return out.detach().numpy(), [g.numpy() for g in grads]


def _run_jax(loss: str, arrays: Any, diff: Any, kw: Any, reduction: str, jit: bool) -> Any:
    import jax
    import jax.numpy as jnp

    def f(*xs: Any) -> Any:
        out = getattr(anyloss, loss)(*xs, **kw, reduction=reduction)
        return out.sum(), out

    vg = jax.value_and_grad(f, argnums=diff, has_aux=True)
    if jit:
        vg = jax.jit(vg)
    (_, out), grads = vg(*(jnp.asarray(a) for a in arrays))
    return np.asarray(out), [np.asarray(g) for g in grads]


def _run_mlx(loss: str, arrays: Any, diff: Any, kw: Any, reduction: str) -> Any:
    mx = pytest.importorskip("mlx.core")
    holder: list[Any] = []

    def f(*xs: Any) -> Any:
        out = getattr(anyloss, loss)(*xs, **kw, reduction=reduction)
        holder.append(out)
        return out.sum()

    _, grads = mx.value_and_grad(f, argnums=list(diff))(*(mx.array(a) for a in arrays))
    if not isinstance(grads, list | tuple):  # one argument: its gradient alone
        grads = [grads]
    return np.array(holder[-1]), [np.array(g) for g in grads]


@pytest.mark.parametrize("library", ["torch", "jax", "jax_jit", "mlx"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("case", list(CASES))
def test_values_and_gradients(
    case: str, reduction: str, library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The numba entry runs (with its gradient kernel), and its values and
    gradients match float64 autograd of the generic code."""
    _, loss, make, kw = CASES[case]
    arrays, diff = make(np.random.default_rng(7))
    ref, ref_grads = _reference(loss, arrays, diff, kw)
    used = _spy(monkeypatch)
    if library == "torch":
        got, grads = _run_torch(loss, arrays, diff, kw, reduction)
    elif library.startswith("jax"):
        pytest.importorskip("jax")
        got, grads = _run_jax(loss, arrays, diff, kw, reduction, library == "jax_jit")
    else:
        got, grads = _run_mlx(loss, arrays, diff, kw, reduction)
    if library in ("torch", "mlx") and loss == "nll_loss":
        # the library's own backward (_torch._NATIVE_GRADIENT, _mlx._SLOWER)
        assert used == ["generic"]
    else:
        assert "numba" in used, used
    if reduction == "none":
        _assert_close(got, ref, f"{case} loss")
    else:
        _assert_close(got, np.mean(ref), f"{case} mean")
    scale = 1.0 if reduction == "none" else 1.0 / ref.size
    for i, g, r in zip(diff, grads, ref_grads, strict=True):
        assert g.shape == r.shape
        _assert_close(g, r * scale, f"{case} d/d(argument {i})")


def test_every_loss_has_entries() -> None:
    for loss in _cpu.PLANNERS:
        names = {(e.library, e.name) for e in _registry.entries(loss)}
        for library in ("numpy", "torch", "jax", "mlx"):
            assert (library, "numba") in names, (loss, library)
    functional = {e.loss for e in _registry.entries(library="torch") if e.device == "*"}
    assert functional == {"l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss"}


def test_every_gradient_kernel_exists() -> None:
    k = kernels.load()
    names = {
        "ce_index",
        "ce_probs",
        "nll",
        "kl_div",
        "cosine",
        "cosine_dd",
        "triplet",
        "triplet_dd",
    }
    names |= {"bce_logits", "bce_probs", "l1", "mse", "smooth_l1", "huber", "log_cosh"}
    names |= {"hinge", "margin_ranking", "gaussian_nll"}
    missing = sorted(n for n in names if not hasattr(k, _cpu.grad_kernel(n)))
    assert not missing


def test_generic_turns_every_entry_off(monkeypatch: pytest.MonkeyPatch) -> None:
    used = _spy(monkeypatch)
    x = torch.randn(64, 100)
    with kernels.generic():
        anyloss.l1_loss(x, x)
        anyloss.cross_entropy(x, torch.zeros(64, dtype=torch.int64))
    assert used == []  # the registry is not even asked


def test_torch_functional_where_numba_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    used = _spy(monkeypatch)
    x = torch.randn(100, 64).T  # not contiguous: no kernel
    got = anyloss.l1_loss(x, torch.zeros_like(x), reduction="mean")
    assert used == ["torch.nn.functional"]
    assert float(got) == pytest.approx(float(x.abs().mean()), rel=1e-6)


def test_nll_gradient_on_torch_is_torchs(monkeypatch: pytest.MonkeyPatch) -> None:
    used = _spy(monkeypatch)
    x = torch.randn(64, 100, requires_grad=True)
    t = torch.randint(0, 100, (64,))
    out = anyloss.nll_loss(x, t, reduction="sum")
    (g,) = torch.autograd.grad(out, x)
    assert used == ["generic"]  # torch's scatter writes the gradient once
    anyloss.nll_loss(x.detach(), t)
    assert used == ["generic", "numba"]
    expected = torch.zeros(64, 100)
    expected[torch.arange(64), t] = -1.0
    assert torch.equal(g, expected)


def test_targets_with_a_gradient_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probability targets have no gradient in the kernel: generic code."""
    used = _spy(monkeypatch)
    x = torch.randn(64, 100, requires_grad=True)
    p = torch.softmax(torch.randn(64, 100), -1).requires_grad_(True)
    anyloss.cross_entropy(x, p, reduction="mean").backward()
    assert used == ["generic"]
    assert p.grad is not None


def test_torch_second_derivative_raises() -> None:
    x = torch.randn(64, 100, requires_grad=True)
    t = torch.randint(0, 100, (64,))
    out = anyloss.cross_entropy(x, t, reduction="mean")
    with pytest.raises(RuntimeError, match="second derivative"):
        torch.autograd.grad(out, x, create_graph=True)


def test_torch_no_grad_forward_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    original = _cpu.execute
    monkeypatch.setattr(
        _cpu, "execute", lambda p, a, g=(): calls.append(tuple(g)) or original(p, a, g)
    )
    x = torch.randn(64, 100, requires_grad=True)
    t = torch.randint(0, 100, (64,))
    with torch.no_grad():
        anyloss.cross_entropy(x, t)
    anyloss.cross_entropy(x.detach(), t)
    anyloss.cross_entropy(x, t)
    assert calls == [(), (), (True,)]


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("case", "reduction"), [("ce_index", "none"), ("gaussian_nll", "mean")])
def test_torch_compile_fullgraph(case: str, reduction: str) -> None:
    """The kernel is one op to torch.compile: forward and backward compile
    without a graph break and agree with eager."""
    _, loss, make, kw = CASES[case]
    arrays, diff = make(np.random.default_rng(3))
    be = anyloss._backend.resolve(loss, ("x", torch.asarray(arrays[0])))

    def eager(*ts: Any) -> Any:
        names = _argument_names(loss)
        args = dict(zip(names, ts, strict=False), **kw)
        return kernels.fast(be, loss, reduction, **args).sum()

    ts = [torch.asarray(a.copy()) for a in arrays]
    for i in diff:
        ts[i].requires_grad_(True)
    expected = eager(*ts)
    expected_grads = torch.autograd.grad(expected, [ts[i] for i in diff])
    torch._dynamo.reset()
    compiled = torch.compile(eager, fullgraph=True, dynamic=False)
    got = compiled(*ts)
    grads = torch.autograd.grad(got, [ts[i] for i in diff])
    assert torch.equal(got, expected)
    for g, e in zip(grads, expected_grads, strict=True):
        assert torch.equal(g, e)


def _argument_names(loss: str) -> list[str]:
    import inspect

    return list(inspect.signature(getattr(anyloss, loss)).parameters)


def test_torch_opcheck() -> None:
    x = torch.randn(64, 100, requires_grad=True)
    t = torch.randint(0, 100, (64,))
    op = torch.ops.anyloss.numba_kernel.default
    torch.library.opcheck(op, ("ce_index", True, False, [x, t], [0.1], [0], [True]))
    a = torch.randn(N, requires_grad=True)
    b = torch.randn(N, requires_grad=True)
    torch.library.opcheck(op, ("log_cosh", False, True, [a, b], [], [0, 1], [True, False]))
    u = torch.randn(64, 100, requires_grad=True)
    v = torch.randn(64, 100, requires_grad=True)
    torch.library.opcheck(op, ("cosine", True, False, [u, v], [1e-8], [0, 1], [True, False]))


def test_jax_vmap_and_jvp() -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((3, 16, 50)).astype(np.float32))
    t = jnp.asarray(rng.integers(0, 50, (3, 16)))
    for reduction in ("mean", "none"):

        def f(a: Any, b: Any, reduction: str = reduction) -> Any:
            return anyloss.cross_entropy(a, b, reduction=reduction)

        got = jax.vmap(f)(x, t)
        grads = jax.vmap(jax.grad(lambda a, b: f(a, b).sum()))(x, t)
        with kernels.generic():
            ref = jax.vmap(f)(x, t)
            ref_grads = jax.vmap(jax.grad(lambda a, b: f(a, b).sum()))(x, t)
        np.testing.assert_allclose(got, ref, rtol=2e-6)
        np.testing.assert_allclose(grads, ref_grads, rtol=2e-5, atol=1e-8)
    tangent = jnp.asarray(rng.standard_normal((16, 50)).astype(np.float32))

    def g(a: Any) -> Any:
        return anyloss.cross_entropy(a, t[0], reduction="sum")

    _, got_t = jax.jvp(g, (x[0],), (tangent,))
    with kernels.generic():
        _, ref_t = jax.jvp(g, (x[0],), (tangent,))
    np.testing.assert_allclose(got_t, ref_t, rtol=1e-5)


def test_mlx_compile_takes_the_generic_code(monkeypatch: pytest.MonkeyPatch) -> None:
    mx = pytest.importorskip("mlx.core")
    used = _spy(monkeypatch)
    rng = np.random.default_rng(6)
    x = mx.array(rng.standard_normal((64, 100)).astype(np.float32))
    t = mx.array(rng.integers(0, 100, 64))
    got = mx.compile(lambda a: anyloss.cross_entropy(a, t, reduction="mean"))(x)
    assert used == ["generic"]
    eager = anyloss.cross_entropy(x, t, reduction="mean")
    assert used == ["generic", "numba"]
    assert abs(got.item() - eager.item()) <= 4e-7 * abs(eager.item())


def test_jax_kernels_measured_slower_need_force(monkeypatch: pytest.MonkeyPatch) -> None:
    """nll_loss's kernel is slower than XLA's code forward+backward: JAX
    takes it with ``ANYLOSS_KERNELS=force`` only."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    if jax.config.jax_enable_x64:
        pytest.skip("x64 is on: no kernel without force")
    used = _spy(monkeypatch)
    x = jnp.ones((64, 100))
    t = jnp.zeros(64, dtype=jnp.int32)
    anyloss.nll_loss(x, t)
    anyloss.cross_entropy(x, t)
    monkeypatch.setattr(_config, "_MODE", "on")
    anyloss.nll_loss(x, t)
    anyloss.cross_entropy(x, t)
    assert used == ["numba", "numba", "generic", "numba"]


@pytest.mark.parametrize(
    ("loss", "count"),
    [
        ("cosine_similarity_loss", 2),
        ("triplet_loss", 3),
        ("gaussian_nll_loss", 3),
        ("kl_div_loss", 2),
        ("huber_loss", 2),
    ],
)
def test_jax_without_x64_takes_the_kernels_measured_faster(
    monkeypatch: pytest.MonkeyPatch, loss: str, count: int
) -> None:
    """Without x64 the kernels of ``FAST_FLOAT32`` run in the default mode
    (float64 inside, read in place through XLA's FFI), values and gradients
    of every argument under ``jax.jit``; the others (nll, mse) keep XLA's
    code, and so does BCE with weights (no gradient kernel for them)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    if jax.config.jax_enable_x64:
        pytest.skip("x64 is on: the generic code computes in float64")
    from anyloss.kernels import _jax

    monkeypatch.setattr(_config, "_MODE", "on")
    rng = np.random.default_rng(21)
    arrays = [rng.standard_normal((256, 256)).astype(np.float32) for _ in range(count)]
    if loss == "gaussian_nll_loss":
        arrays[2] = np.abs(arrays[2]) + np.float32(0.1)
    if loss == "kl_div_loss":
        arrays = [a - np.log(np.exp(a).sum(-1, keepdims=True)) for a in arrays]
    used = _spy(monkeypatch)
    js = [jnp.asarray(a) for a in arrays]
    value = jax.jit(lambda *a: getattr(anyloss, loss)(*a, reduction="none"))(*js)
    grads = jax.jit(
        jax.grad(lambda *a: getattr(anyloss, loss)(*a, reduction="sum"), range(count))
    )(*js)
    anyloss.nll_loss(js[0], jnp.zeros(256, dtype=jnp.int32))
    anyloss.mse_loss(js[0], js[1])
    probs = jax.nn.sigmoid(js[1])
    anyloss.binary_cross_entropy(js[0], probs, weights=probs)
    assert used == ["numba", "numba", "generic", "generic", "generic"]
    assert {"ce_index", "kl_div", "cosine", "triplet", "gaussian_nll"} <= _jax.FAST_FLOAT32
    ref, ref_grads = _reference(loss, tuple(arrays), tuple(range(count)), {})
    _assert_close(np.asarray(value), ref, "value")
    for g, r in zip(grads, ref_grads, strict=True):
        _assert_close(np.asarray(g), r, "gradient")


def test_threads_agree_with_one_thread() -> None:
    """Concurrent calls (torch, forward and backward) give what one call gives."""
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((64, 1000)).astype(np.float32) for _ in range(4)]
    t = torch.asarray(rng.integers(0, 1000, 64))

    def one(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xt = torch.asarray(x.copy()).requires_grad_(True)
        out = anyloss.cross_entropy(xt, t, reduction="mean")
        (g,) = torch.autograd.grad(out, xt)
        return out.detach().numpy(), g.numpy()

    expected = [one(x) for x in xs]
    results: list[Any] = [None] * len(xs)

    def worker(i: int) -> None:
        for _ in range(5):
            results[i] = one(xs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for (v, g), (ev, eg) in zip(results, expected, strict=True):
        assert np.array_equal(v, ev) and np.array_equal(g, eg)


def test_first_call_in_a_fresh_process() -> None:
    """A new process loads the kernels (numba's cache) and gets the gradient."""
    code = (
        "import numpy as np, torch, anyloss\n"
        "from anyloss import kernels\n"
        "x = torch.randn(256, 512, requires_grad=True)\n"
        "t = torch.randint(0, 512, (256,))\n"
        "out = anyloss.cross_entropy(x, t, reduction='mean')\n"
        "(g,) = torch.autograd.grad(out, x)\n"
        "with kernels.generic():\n"
        "    ref = anyloss.cross_entropy(x, t, reduction='mean')\n"
        "    (rg,) = torch.autograd.grad(ref, x)\n"
        "print(float((out - ref).abs()), float((g - rg).abs().max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    value_err, grad_err = map(float, out.stdout.split())
    assert value_err <= 1e-6 and grad_err <= 1e-9


def test_gradient_kernel_list_matches_the_numba_module() -> None:
    """``_cpu.WITH_GRADIENT`` (read without importing numba, as torch.compile
    needs) names exactly the forward kernels that have a gradient kernel."""
    numba = pytest.importorskip("numba")
    impl = _config.load()
    forward = {
        name
        for name in dir(impl)
        if not name.startswith("_")
        and isinstance(getattr(impl, name), numba.core.registry.CPUDispatcher)
        and not name.endswith("_grad")
    }
    with_gradient = {name for name in forward if hasattr(impl, _cpu.grad_kernel(name))}
    assert forward >= _cpu.WITH_GRADIENT
    assert with_gradient == _cpu.WITH_GRADIENT

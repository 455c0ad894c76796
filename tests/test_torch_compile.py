"""Every loss under ``torch.compile(fullgraph=True)`` and ``torch.export``.

Forward and backward compile as one graph (``fullgraph=True`` turns any graph
break into an error), the compiled values and gradients agree with eager
PyTorch, a second call with new values of the same shapes runs the same
graph (``error_on_recompile``), also after calls on other libraries and
dtypes, and growing batch sizes compile at most once more (a dynamic graph).

Under compilation the data-dependent checks are not run (reading values
would break the graph): as under ``jax.jit``, an out-of-range class index
gives a NaN loss instead of a ValueError.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import anyloss

torch = pytest.importorskip("torch")
dynamo = pytest.importorskip("torch._dynamo")

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)

from torch_cases import C, N, cases, public_losses  # noqa: E402

CASES = cases()


def test_every_public_loss_has_a_case() -> None:
    assert public_losses() == {fn.__name__ for fn, _, _ in CASES.values()}


def _run(step: Callable[..., Any], arrays: list[Any], scale: float) -> tuple[Any, Any]:
    """``step``'s loss and the gradient of its sum for the first array times ``scale``."""
    first = (arrays[0].detach() * scale).requires_grad_(True)
    out = step(first, *arrays[1:])
    (grad,) = torch.autograd.grad(out.sum(), first)
    return out.detach(), grad


@pytest.mark.parametrize("name", list(CASES))
def test_compiles_fullgraph_and_matches_eager(name: str) -> None:
    fn, arrays, kw = CASES[name]

    def step(*a: Any) -> Any:
        return fn(*a, **kw, reduction="none")

    dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    with dynamo.config.patch(error_on_recompile=True):
        for scale in (1.0, 0.75):  # the second call: new values, the same graph
            got, got_grad = _run(compiled, arrays, scale)
            expected, expected_grad = _run(step, arrays, scale)
            assert got.shape == expected.shape
            assert got.dtype == expected.dtype == torch.float32
            torch.testing.assert_close(got, expected, rtol=2e-6, atol=1e-7)
            torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-7)
            assert bool(torch.isfinite(got).all()) and bool(torch.isfinite(got_grad).all())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reductions_compile(reduction: str) -> None:
    fn, arrays, kw = CASES["cross_entropy_options"]
    dynamo.reset()
    compiled = torch.compile(
        lambda *a: fn(*a, **kw, reduction=reduction), fullgraph=True, dynamic=False
    )
    got, got_grad = _run(compiled, arrays, 1.0)
    expected, expected_grad = _run(lambda *a: fn(*a, **kw, reduction=reduction), arrays, 1.0)
    assert got.shape == ()
    torch.testing.assert_close(got, expected, rtol=2e-6, atol=0)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-8)


def test_no_recompilation_after_calls_on_other_libraries() -> None:
    """The compiled graph reads no cache that other calls fill: NumPy float16,
    Python lists, JAX and MLX calls in between do not invalidate it."""
    fn, arrays, kw = CASES["cross_entropy"]
    dynamo.reset()
    compiled = torch.compile(lambda *a: fn(*a, **kw), fullgraph=True, dynamic=False)
    _run(compiled, arrays, 1.0)
    anyloss.mse_loss(np.ones(3, np.float16), np.zeros(3, np.float16))
    anyloss.mse_loss([1.0, 2.0], (0.0, 1.0))
    anyloss.cross_entropy(np.ones((2, 3), np.float32), [0, 2])
    for module in ("jax.numpy", "mlx.core"):
        try:
            xp = __import__(module, fromlist=["_"])
        except ImportError:
            continue
        anyloss.cross_entropy(xp.ones((2, 3)), xp.array([0, 1]))
    with dynamo.config.patch(error_on_recompile=True):
        got, _ = _run(compiled, arrays, 0.5)
    torch.testing.assert_close(got, _run(lambda *a: fn(*a, **kw), arrays, 0.5)[0])


def test_growing_batches_compile_at_most_twice() -> None:
    """Default ``dynamic``: the second batch size makes the graph dynamic, and
    later sizes reuse it."""
    testing = pytest.importorskip("torch._dynamo.testing")
    counter = testing.CompileCounterWithBackend("inductor")
    dynamo.reset()
    compiled = torch.compile(
        lambda x, t: anyloss.cross_entropy(x, t, reduction="mean"), backend=counter, fullgraph=True
    )
    rng = np.random.default_rng(1)
    for rows in (4, 6, 9, 13):
        x = torch.tensor(rng.normal(size=(rows, C)), dtype=torch.float32)
        t = torch.tensor(rng.integers(0, C, rows))
        torch.testing.assert_close(compiled(x, t), anyloss.cross_entropy(x, t, reduction="mean"))
    assert counter.frame_count <= 2


def test_the_kernel_op_compiles_with_unchecked_indices() -> None:
    """Large enough for the numba kernel (one custom op in the graph): an
    out-of-range index, which eager PyTorch reports, gives a NaN row and a
    zero gradient row under compilation; the other rows are exact."""
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(size=(64, 1024)), dtype=torch.float32, requires_grad=True)
    t = torch.tensor(rng.integers(0, 1024, 64))
    bad = t.clone()
    bad[3], bad[5] = 5000, -7
    with pytest.raises(ValueError, match=r"targets\[3\] = 5000 is out of range"):
        anyloss.cross_entropy(x, bad)
    dynamo.reset()
    compiled = torch.compile(anyloss.cross_entropy, fullgraph=True, dynamic=False)
    out = compiled(x, bad)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isnan(out[[3, 5]]).all()
    keep = torch.ones(64, dtype=torch.bool)
    keep[[3, 5]] = False
    expected = torch.nn.functional.cross_entropy(x, t, reduction="none")
    torch.testing.assert_close(out[keep], expected[keep].detach(), rtol=2e-6, atol=0)
    assert (grad[[3, 5]] == 0).all()
    (expected_grad,) = torch.autograd.grad(expected[keep].sum(), x)
    torch.testing.assert_close(grad[keep], expected_grad[keep], rtol=1e-5, atol=1e-8)


def test_unchecked_values_under_compile_give_nan_not_a_number() -> None:
    """Small inputs (the generic code): a bad class index is NaN, as under jax.jit."""
    x = torch.randn(N, C)
    t = torch.tensor([0, 9, 1, -2])
    dynamo.reset()
    for fn in (anyloss.cross_entropy, anyloss.nll_loss, anyloss.multiclass_hinge_loss):
        out = torch.compile(fn, fullgraph=True, dynamic=False)(x, t)
        assert torch.isnan(out[[1, 3]]).all() and torch.isfinite(out[[0, 2]]).all()
        with pytest.raises(ValueError, match="out of range"):
            fn(x, t)


class _Classifier(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(C, 3)

    def forward(self, x: Any, t: Any) -> Any:
        return anyloss.cross_entropy(self.linear(x), t, label_smoothing=0.1, reduction="mean")


def test_torch_export_of_a_module_calling_a_loss() -> None:
    torch.manual_seed(0)
    model = _Classifier()
    x = torch.randn(N, C)
    t = torch.tensor([0, 2, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        exported = torch.export.export(model, (x, t))
    got = exported.module()(x, t)
    expected = torch.nn.functional.cross_entropy(model.linear(x), t, label_smoothing=0.1)
    torch.testing.assert_close(got, expected.detach(), rtol=2e-6, atol=0)
    x2 = torch.randn(N, C)
    torch.testing.assert_close(exported.module()(x2, t), model(x2, t).detach())


def test_module_classes_compile_fullgraph() -> None:
    """The ``anyloss.torch`` classes, buffers included, inside a compiled step."""
    modules = pytest.importorskip("anyloss.torch")
    _, arrays, _ = CASES["cross_entropy"]
    criterion = modules.CrossEntropyLoss(label_smoothing=0.1, class_weights=[1.0, 2, 1, 1, 0.5])
    model = torch.nn.Linear(C, C)
    dynamo.reset()

    def step(x: Any, t: Any) -> Any:
        return criterion(model(x), t)

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    x, t = arrays
    got = compiled(x, t)
    (got_grad,) = torch.autograd.grad(got, model.weight)
    expected = torch.nn.CrossEntropyLoss(weight=criterion.class_weights, label_smoothing=0.1)(
        model(x), t
    )
    (expected_grad,) = torch.autograd.grad(expected, model.weight)
    torch.testing.assert_close(got, expected, rtol=2e-6, atol=0)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-8)

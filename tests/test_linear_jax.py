"""``linear_cross_entropy`` on JAX's CPU: the registry entry that runs the
NumPy code in XLA FFI calls (``anyloss.kernels._jax_linear``), and the
generic ``lax.scan`` path it replaces there (kept for other devices and
under ``kernels.generic()``).

References are independent of the code: torch's ``F.cross_entropy`` in
float64 on the explicit logits, values and float64 autograd gradients.
Tolerances as in ``tests/test_linear_tiles.py``: losses within 4 float32
ulp of ``max(|loss|, max_j |x_j|)`` per row (4 ulp of the value for a
reduction), gradients normwise within max(8, sqrt(K)) eps of the scale of
a float32 product of the logits' gradient, K the length of its sums (the
classes for hidden, the rows for weight and bias): a float32 product's
rounding grows as sqrt(K) (NumPy's OpenBLAS: 12 eps at K = 1000, where
PyTorch's and XLA's products gave 5 and 3).

Shapes are few (JAX compiles per shape): 37 rows, hidden 16, 1000 classes.
"""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import numpy as np
import pytest
from linear_cases import N, V, data, targets

import anyloss
from anyloss import kernels

jax = pytest.importorskip("jax")
jnp = jax.numpy
torch = pytest.importorskip("torch")
F = torch.nn.functional

# the FFI targets are registered for the CPU
pytestmark = pytest.mark.cpu_only

EPS32 = float(np.finfo(np.float32).eps)
OPTIONS = {
    "plain": {},
    "all": {"bias": True, "ignore_index": -100, "label_smoothing": 0.2, "softcap": 3.0},
    "weights": {"bias": True, "class_weights": True, "ignore_index": -100},
}
CHUNKS = {"blocks": (8, 100), "one-block": 16}


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The FFI handlers' runs of the NumPy code, by kind: ``forward``,
    ``backward`` (from saved statistics), ``gradients`` (beside the value)."""
    from anyloss.kernels import _jax_linear

    calls: list[str] = []
    numpy_run = _jax_linear._numpy_run

    def counted(spec: Any, arrays: Any, **kw: Any) -> Any:
        kind = "backward" if "stats" in kw else "gradients" if "coef" in kw else "forward"
        calls.append(kind)
        return numpy_run(spec, arrays, **kw)

    monkeypatch.setattr(_jax_linear, "_numpy_run", counted)
    return calls


def _kwargs(opts: dict) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k not in ("bias", "class_weights")}


def _anyloss(d: dict, opts: dict, reduction: str, chunk: Any) -> Any:
    """``f(h, w, b)`` of JAX arrays: the loss, weighted by ``g`` and summed for 'none'."""
    t = jnp.asarray(targets(d, opts))
    cw = jnp.asarray(d["cw"]) if opts.get("class_weights") else None

    def f(h: Any, w: Any, b: Any) -> Any:
        out = anyloss.linear_cross_entropy(
            h,
            w,
            t,
            b if opts.get("bias") else None,
            reduction=reduction,
            class_weights=cw,
            chunk_size=chunk,
            **_kwargs(opts),
        )
        return jnp.sum(out * jnp.asarray(d["g"])) if reduction == "none" else out

    return f


def _reference(d: dict, opts: dict, reduction: str) -> tuple[Any, list[np.ndarray], list[float]]:
    """float64 torch: the loss (per row for 'none'), the gradients of the
    function :func:`_anyloss` differentiates, and each gradient's scale."""
    h = torch.tensor(d["h"], dtype=torch.float64, requires_grad=True)
    w = torch.tensor(d["w"], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(d["b"], dtype=torch.float64, requires_grad=True)
    x = h @ w.T + (b if opts.get("bias") else 0)
    cap = opts.get("softcap")
    if cap is not None:
        x = cap * torch.tanh(x / cap)
    x.retain_grad()
    loss = F.cross_entropy(
        x,
        torch.as_tensor(targets(d, opts)),
        weight=torch.tensor(d["cw"], dtype=torch.float64) if opts.get("class_weights") else None,
        ignore_index=opts.get("ignore_index", -100),
        label_smoothing=opts.get("label_smoothing", 0.0),
        reduction=reduction,
    )
    value = loss.detach().numpy().copy()
    if reduction == "none":
        loss = (loss * torch.tensor(d["g"], dtype=torch.float64)).sum()
    loss.backward()
    dx = x.grad.abs().numpy()
    scales = [(dx @ np.abs(d["w"])).max(), (dx.T @ np.abs(d["h"])).max(), dx.sum(axis=0).max()]
    grads = [a.grad.numpy() if a.grad is not None else np.zeros(a.shape) for a in (h, w, b)]
    return value, grads, [float(s) for s in scales]


def _check(d: dict, opts: dict, reduction: str, got: Any, grads: Any) -> None:
    value, ref_grads, scales = _reference(d, opts, reduction)
    got = np.asarray(got, dtype=np.float64)
    if reduction == "none":
        x = d["h"].astype(np.float64) @ d["w"].T.astype(np.float64)
        scale = np.maximum(np.abs(value), 4 * np.abs(x).max(axis=1))
        assert np.all(np.abs(got - value) <= 4 * np.spacing(scale.astype(np.float32)))
    else:
        assert abs(float(got) - float(value)) <= 4 * np.spacing(np.float32(abs(value)))
    names = ("hidden", "weight", "bias") if opts.get("bias") else ("hidden", "weight")
    for name, g, r, s, k in zip(names, grads, ref_grads, scales, (V, N, N), strict=False):
        err = np.abs(np.asarray(g, dtype=np.float64) - r).max()
        assert err <= max(8.0, math.sqrt(k)) * EPS32 * s, f"{name}: {err / (EPS32 * s):.2f} eps"


def _arrays(d: dict) -> tuple[Any, Any, Any]:
    return jnp.asarray(d["h"]), jnp.asarray(d["w"]), jnp.asarray(d["b"])


@pytest.mark.parametrize("chunk", list(CHUNKS.values()), ids=list(CHUNKS))
@pytest.mark.parametrize("opts", list(OPTIONS.values()), ids=list(OPTIONS))
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_values_and_gradients(spy: list[str], reduction: str, opts: dict, chunk: Any) -> None:
    d = data()
    f = _anyloss(d, opts, reduction, chunk)
    value, grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(*_arrays(d))
    jax.block_until_ready(grads)  # (the calls run asynchronously)
    assert "forward" in spy or "gradients" in spy
    expected = "gradients" if reduction == "mean" and chunk == 16 else "backward"
    assert expected in spy, spy
    rows = anyloss.linear_cross_entropy(
        jnp.asarray(d["h"]),
        jnp.asarray(d["w"]),
        jnp.asarray(targets(d, opts)),
        jnp.asarray(d["b"]) if opts.get("bias") else None,
        reduction=reduction,
        class_weights=jnp.asarray(d["cw"]) if opts.get("class_weights") else None,
        chunk_size=chunk,
        **_kwargs(opts),
    )
    _check(d, opts, reduction, rows, grads)
    if reduction == "mean":
        assert float(value) == pytest.approx(float(rows), rel=1e-6)


@pytest.mark.parametrize("opts", ["plain", "all"])
def test_generic_scan_path(spy: list[str], opts: str) -> None:
    """``kernels.generic()``: the ``lax.scan`` of the library's operations
    (what other devices run), within the same bounds, no FFI call."""
    d = data(1)
    with kernels.generic():
        for reduction in ("none", "mean"):
            f = _anyloss(d, OPTIONS[opts], reduction, CHUNKS["blocks"])
            grads = jax.grad(f, argnums=(0, 1, 2))(*_arrays(d))
            t = jnp.asarray(targets(d, OPTIONS[opts]))
            b = jnp.asarray(d["b"]) if OPTIONS[opts].get("bias") else None
            kw = _kwargs(OPTIONS[opts])
            rows = anyloss.linear_cross_entropy(
                jnp.asarray(d["h"]),
                jnp.asarray(d["w"]),
                t,
                b,
                reduction=reduction,
                chunk_size=CHUNKS["blocks"],
                **kw,
            )
            _check(d, OPTIONS[opts], reduction, rows, grads)
    assert spy == []


def test_eager_grad_and_vmap(spy: list[str]) -> None:
    """Eager ``jax.grad`` and ``jax.vmap`` over a batch of hidden states (the
    FFI calls run once per batch item)."""
    d = data(2)
    h, w, _ = _arrays(d)
    t = jnp.asarray(targets(d, {}))

    def loss(h: Any, w: Any) -> Any:
        return anyloss.linear_cross_entropy(h, w, t, chunk_size=CHUNKS["blocks"])

    grads = jax.grad(loss, argnums=(0, 1))(h, w)
    _check(d, {}, "mean", loss(h, w), grads)
    batch = jnp.stack([h, h * 0.5])
    got = jax.vmap(loss, in_axes=(0, None))(batch, w)
    one = [loss(h, w), loss(h * 0.5, w)]
    np.testing.assert_allclose(np.asarray(got), np.asarray(one), rtol=1e-6)
    per_item = jax.vmap(jax.grad(loss), in_axes=(0, None))(batch, w)
    np.testing.assert_allclose(np.asarray(per_item[1]), np.asarray(jax.grad(loss)(h * 0.5, w)))
    assert "backward" in spy


def test_bfloat16_hidden(spy: list[str]) -> None:
    """bfloat16 hidden states: widened to float32 before the call, the
    gradient of hidden comes back in bfloat16 (one rounding of it)."""
    d = data(3)
    d["h"] = np.asarray(jnp.asarray(d["h"], jnp.bfloat16).astype(jnp.float32))
    h = jnp.asarray(d["h"], jnp.bfloat16)
    w = jnp.asarray(d["w"])
    t = jnp.asarray(targets(d, {}))

    def loss(h: Any) -> Any:
        return anyloss.linear_cross_entropy(h, w, t, chunk_size=CHUNKS["blocks"])

    g = jax.grad(loss)(h)
    assert g.dtype == jnp.bfloat16
    _, ref, _ = _reference(d, {}, "mean")
    np.testing.assert_allclose(np.asarray(g, np.float64), ref[0], rtol=2**-8, atol=1e-6)
    assert spy


def test_deterministic(spy: list[str]) -> None:
    d = data(4)
    f = jax.jit(jax.value_and_grad(_anyloss(d, {}, "mean", CHUNKS["blocks"]), argnums=(0, 1)))
    args = _arrays(d)
    first = jax.tree.map(np.asarray, f(*args))
    again = jax.tree.map(np.asarray, f(*args))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_memory(spy: list[str]) -> None:
    """4096 x 64 -> 8192 float32, forward and backward: XLA's temporary
    buffers and the handlers' NumPy allocations are each at most 5% of the
    logits (128 MiB); the generic scan path's temporaries are more than
    them all (XLA's own memory analysis of the compiled program)."""
    rows, width, vocab = 4096, 64, 8192
    rng = np.random.default_rng(5)
    h = jnp.asarray(rng.standard_normal((rows, width), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((vocab, width), dtype=np.float32) * 0.1)
    t = jnp.asarray(rng.integers(0, vocab, rows))
    logits = rows * vocab * 4

    def loss(h: Any, w: Any) -> Any:
        return anyloss.linear_cross_entropy(h, w, t)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    compiled = step.lower(h, w).compile()
    assert compiled.memory_analysis().temp_size_in_bytes <= 0.05 * logits
    jax.block_until_ready(step(h, w))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        jax.block_until_ready(step(h, w))
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert "backward" in spy
    assert 0 < peak <= 0.05 * logits, peak / logits
    with kernels.generic():
        scan = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(h, w).compile()
    assert scan.memory_analysis().temp_size_in_bytes > 0.05 * logits

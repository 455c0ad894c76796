"""``linear_cross_entropy``'s numba tile kernels (``anyloss._linear_tiles``).

Float32 NumPy arrays and CPU torch tensors without class weights reduce each
tile of logits with ``linear_ce_stats32`` and turn it into its gradient with
``linear_ce_grad32``. Each test checks that the kernels really ran (a spy on
the kernel module), and compares with references independent of the code:
torch's ``F.cross_entropy`` in float64 on the explicit logits (values, and
float64 autograd for gradients). Vocabulary blocks of 100 (a 64-class block
and a tail per row), 64 and 37 classes and one block, the maximum in any block, ties
across blocks, ``-inf`` logits, NaN rows.

Tolerances as in ``tests/test_linear_cross_entropy.py``: a row's loss within
4 float32 ulp of ``max(|loss|, max_j |x_j|)`` (the logits' own rounding),
reductions within 4 ulp, gradients normwise within max(8, sqrt(K)) eps of
the scale of a float32 product of the logits' gradient (``|dL/dx| @
|weight|`` for hidden), K the length of its sums (the classes for hidden,
the rows for weight and bias): a float32 product's rounding grows as
sqrt(K).
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from linear_cases import N, V, data, targets

import anyloss
from anyloss import kernels

torch = pytest.importorskip("torch")
pytest.importorskip("numba")
F = torch.nn.functional

# numba's CPU kernels (skipped on another ANYLOSS_TEST_DEVICE)
pytestmark = pytest.mark.cpu_only

EPS32 = float(np.finfo(np.float32).eps)
CHUNKS = {"blocks-100": (8, 100), "blocks-64": (8, 64), "blocks-37": (5, 37), "one-block": 16}
OPTIONS = {
    "plain": {},
    "bias": {"bias": True},
    "smoothing": {"bias": True, "label_smoothing": 0.1},
    "ignore": {"ignore_index": -100},
    "softcap": {"bias": True, "softcap": 2.5},
    "all": {"bias": True, "ignore_index": -100, "label_smoothing": 0.2, "softcap": 3.0},
}


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The number of calls of each tile kernel."""
    from anyloss.kernels import _config

    module = _config.load()
    assert module, "numba is installed: the kernels load"
    calls = {"linear_ce_stats32": 0, "linear_ce_grad32": 0}
    for name in calls:
        kernel = getattr(module, name)

        def counted(*args: Any, _kernel: Any = kernel, _name: str = name) -> Any:
            calls[_name] += 1
            return _kernel(*args)

        monkeypatch.setattr(module, name, counted)
    return calls


def _reference(d: dict, opts: dict, reduction: str) -> Any:
    """float64 ``F.cross_entropy`` of the explicit logits, and the logits."""
    x = torch.tensor(d["h"], dtype=torch.float64) @ torch.tensor(d["w"], dtype=torch.float64).T
    if opts.get("bias"):
        x = x + torch.tensor(d["b"], dtype=torch.float64)
    cap = opts.get("softcap")
    if cap is not None:
        x = cap * torch.tanh(x / cap)
    loss = F.cross_entropy(
        x,
        torch.as_tensor(targets(d, opts)),
        ignore_index=opts.get("ignore_index", -100),
        label_smoothing=opts.get("label_smoothing", 0.0),
        reduction=reduction,
    )
    return loss.numpy(), np.abs(x.numpy()).max(axis=1)


def _call(xp: Any, d: dict, opts: dict, reduction: str, chunk: Any) -> Any:
    kw = {k: v for k, v in opts.items() if k != "bias"}
    return anyloss.linear_cross_entropy(
        xp(d["h"]),
        xp(d["w"]),
        xp(targets(d, opts)),
        xp(d["b"]) if opts.get("bias") else None,
        reduction=reduction,
        chunk_size=chunk,
        **kw,
    )


def _numpy(x: Any) -> np.ndarray:
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


LIBRARIES = {"numpy": np.asarray, "torch": torch.as_tensor}


def _assert_rows(got: Any, ref: np.ndarray, scale: np.ndarray) -> None:
    got = _numpy(got).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    bound = 4 * np.spacing(np.maximum(np.abs(ref), scale).astype(np.float32)).astype(np.float64)
    err = np.where(np.isnan(ref), 0.0, np.abs(got - ref))
    assert np.all(err <= bound), (err / bound).max()


@pytest.mark.parametrize("chunk", list(CHUNKS.values()), ids=list(CHUNKS))
@pytest.mark.parametrize("opts", list(OPTIONS.values()), ids=list(OPTIONS))
@pytest.mark.parametrize("lib", list(LIBRARIES))
def test_values(spy: dict, lib: str, opts: dict, chunk: Any) -> None:
    d = data()
    out = _call(LIBRARIES[lib], d, opts, "none", chunk)
    assert spy["linear_ce_stats32"] > 0
    assert out.dtype in (np.float32, torch.float32)
    ref, scale = _reference(d, opts, "none")
    _assert_rows(out, ref, scale)
    if "ignore_index" in opts:
        assert np.all(_numpy(out)[[2, 20]] == 0.0)
    with kernels.generic():  # the library's own operations: the same within the bound
        _assert_rows(_call(LIBRARIES[lib], d, opts, "none", chunk), ref, scale)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("lib", list(LIBRARIES))
def test_reductions(spy: dict, lib: str, reduction: str) -> None:
    d = data(1)
    opts = OPTIONS["all"]
    got = float(_numpy(_call(LIBRARIES[lib], d, opts, reduction, CHUNKS["blocks-100"])))
    ref = float(_reference(d, opts, reduction)[0])
    assert spy["linear_ce_stats32"] > 0
    assert abs(got - ref) <= 4 * np.spacing(np.float32(abs(ref)))


def _torch_grads(d: dict, opts: dict, reduction: str, chunk: Any, dtype: Any) -> list[np.ndarray]:
    """The gradients of hidden, weight (and bias) by anyloss (float32) or by
    float64 autograd through the explicit logits (float64)."""
    return _grads(d, opts, reduction, chunk, dtype)[0]


def _grads(
    d: dict, opts: dict, reduction: str, chunk: Any, dtype: Any
) -> tuple[list[np.ndarray], list[float]]:
    """:func:`_torch_grads`, and for float64 the scale of each gradient's
    float32 rounding: the largest entry of ``|dL/dx| @ |weight|`` (hidden),
    ``|dL/dx|.T @ |hidden|`` (weight), ``sum |dL/dx|`` (bias), which a
    float32 product of the logits' gradient carries a few eps of."""
    h = torch.tensor(d["h"], dtype=dtype, requires_grad=True)
    w = torch.tensor(d["w"], dtype=dtype, requires_grad=True)
    b = torch.tensor(d["b"], dtype=dtype, requires_grad=True) if opts.get("bias") else None
    t = torch.as_tensor(targets(d, opts))
    kw = {k: v for k, v in opts.items() if k != "bias"}
    if dtype == torch.float32:
        loss = anyloss.linear_cross_entropy(
            h, w, t, b, reduction=reduction, chunk_size=chunk, **kw
        )
    else:  # the reference: autograd through the explicit logits
        x = h @ w.T + (0 if b is None else b)
        if "softcap" in kw:
            x = kw["softcap"] * torch.tanh(x / kw["softcap"])
        x.retain_grad()
        loss = F.cross_entropy(
            x,
            t,
            ignore_index=kw.get("ignore_index", -100),
            label_smoothing=kw.get("label_smoothing", 0.0),
            reduction=reduction,
        )
    if reduction == "none":
        loss = (loss * torch.as_tensor(d["g"], dtype=dtype)).sum()
    loss.backward()
    grads = [a.grad.numpy() for a in (h, w, b) if a is not None]
    if dtype == torch.float32:
        return grads, []
    dx = x.grad.abs().numpy()
    scales = [dx @ np.abs(d["w"]), dx.T @ np.abs(d["h"]), dx.sum(axis=0)]
    return grads, [float(s.max()) for s in scales[: len(grads)]]


def _assert_grads(got: list[np.ndarray], ref: tuple[list[np.ndarray], list[float]]) -> None:
    for g, r, scale, k in zip(got, *ref, (V, N, N), strict=False):
        err = np.abs(g - r).max()
        assert err <= max(8.0, math.sqrt(k)) * EPS32 * scale, err / (EPS32 * scale)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("chunk", list(CHUNKS.values()), ids=list(CHUNKS))
@pytest.mark.parametrize("opts", ["plain", "smoothing", "softcap", "all"])
def test_torch_gradients(spy: dict, opts: str, chunk: Any, reduction: str) -> None:
    d = data(2)
    got = _torch_grads(d, OPTIONS[opts], reduction, chunk, torch.float32)
    assert spy["linear_ce_grad32"] > 0
    _assert_grads(got, _grads(d, OPTIONS[opts], reduction, chunk, torch.float64))


def test_torch_gradients_match_the_generic_path(spy: dict) -> None:
    d = data(3)
    got = _torch_grads(d, OPTIONS["all"], "mean", CHUNKS["blocks-64"], torch.float32)
    assert spy["linear_ce_grad32"] > 0
    calls = dict(spy)
    with kernels.generic():
        generic = _torch_grads(d, OPTIONS["all"], "mean", CHUNKS["blocks-64"], torch.float32)
    assert spy == calls, "kernels.generic() keeps the kernels out"
    for g, r in zip(got, generic, strict=True):
        assert np.abs(g - r).max() <= 8 * EPS32 * np.abs(r).max()


@pytest.mark.parametrize("lib", list(LIBRARIES))
def test_not_taken(spy: dict, lib: str) -> None:
    """Class weights and float64 keep the library's own operations."""
    d = data()
    xp = LIBRARIES[lib]
    anyloss.linear_cross_entropy(
        xp(d["h"]), xp(d["w"]), xp(targets(d, {})), class_weights=xp(np.ones(V, np.float32))
    )
    anyloss.linear_cross_entropy(
        xp(d["h"].astype(np.float64)), xp(d["w"].astype(np.float64)), xp(targets(d, {}))
    )
    assert spy == {"linear_ce_stats32": 0, "linear_ce_grad32": 0}


def test_small_calls_keep_the_library_code(spy: dict) -> None:
    """Logits below kernels.MIN_SIZE entries are not worth numba's import."""
    d = data()
    rows = kernels.MIN_SIZE // V - 1
    anyloss.linear_cross_entropy(d["h"][:rows], d["w"], targets(d, {})[:rows])
    assert spy["linear_ce_stats32"] == 0
    anyloss.linear_cross_entropy(d["h"], d["w"], targets(d, {}))
    assert spy["linear_ce_stats32"] > 0


@pytest.mark.parametrize("where", ["first", "last"])
def test_ties_across_blocks(spy: dict, where: str) -> None:
    """The largest logit in two blocks (equal weight rows): each maximum counted once."""
    d = data(4)
    a, b = (3, 250) if where == "first" else (250, 3)
    d["w"][b] = d["w"][a] = d["w"][a] * 4  # the maximum of most rows, in blocks 0 and 2
    d["t"][:10] = a
    d["t"][10:20] = b
    opts = {"label_smoothing": 0.1}
    out = _call(np.asarray, d, opts, "none", CHUNKS["blocks-100"])
    ref, scale = _reference(d, opts, "none")
    _assert_rows(out, ref, scale)
    got = _torch_grads(d, {}, "mean", CHUNKS["blocks-100"], torch.float32)
    _assert_grads(got, _grads(d, {}, "mean", CHUNKS["blocks-100"], torch.float64))
    assert spy["linear_ce_stats32"] > 0


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_minus_inf_logits(spy: dict, smoothing: float) -> None:
    """A bias of -inf masks classes (a whole first block, and scattered ones):
    they add nothing to the sum; with label smoothing the loss is inf."""
    d = data(5)
    d["b"][:64] = -np.inf
    d["b"][[100, 299]] = -np.inf
    d["t"][d["t"] < 64] = 70
    d["t"][np.isin(d["t"], [100, 299])] = 70
    opts = {"bias": True, "label_smoothing": smoothing}
    out = _numpy(_call(np.asarray, d, opts, "none", CHUNKS["blocks-64"]))
    ref, scale = _reference(d, opts, "none")
    if smoothing:
        assert np.all(np.isposinf(out)) and np.all(np.isposinf(ref))
    else:
        _assert_rows(out, ref, np.where(np.isfinite(scale), scale, 0.0))
    assert spy["linear_ce_stats32"] > 0


def test_nan_rows(spy: dict) -> None:
    """A NaN in a row of ``hidden`` makes that row's loss NaN, no other."""
    d = data(6)
    d["h"][4, 3] = np.nan
    out = _numpy(_call(np.asarray, d, {}, "none", CHUNKS["blocks-100"]))
    assert np.isnan(out[4])
    assert not np.isnan(np.delete(out, 4)).any()
    assert spy["linear_ce_stats32"] > 0


def test_torch_backward_keeps_no_gradient_copy(spy: dict) -> None:
    """With the vocabulary in several blocks, nothing weight-sized is saved
    for the backward pass but the weight itself, and ``weight.grad`` is the
    tensor the backward pass computed (not a copy of it): the gradients cost
    no memory beyond themselves."""
    d = data(7)
    h = torch.tensor(d["h"], requires_grad=True)
    w = torch.tensor(d["w"], requires_grad=True)
    saved: list[tuple[int, int]] = []

    def pack(x: Any) -> Any:
        saved.append((x.numel(), x.data_ptr()))
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        loss = anyloss.linear_cross_entropy(
            h, w, torch.as_tensor(targets(d, {})), chunk_size=CHUNKS["blocks-64"]
        )
    big = [ptr for size, ptr in saved if size >= w.numel()]
    assert big == [w.data_ptr()], saved
    seen: list[int] = []
    w.register_hook(lambda g: seen.append(g.data_ptr()))
    loss.backward()
    assert spy["linear_ce_grad32"] > 0
    assert w.grad is not None and w.grad.data_ptr() == seen[0]


def test_torch_compile_in_a_fresh_process() -> None:
    """``torch.compile(fullgraph=True)`` of a call the kernels take, numba not
    yet imported: tracing plans the tiles without importing it (an import
    under TorchDynamo breaks the graph), the custom ops load it when they
    run."""
    code = (
        "import sys, torch, anyloss\n"
        "torch.manual_seed(0)\n"
        "h = torch.randn(64, 32, requires_grad=True)\n"
        "w = torch.randn(2000, 32, requires_grad=True)\n"
        "t = torch.randint(0, 2000, (64,))\n"
        "assert 'numba' not in sys.modules\n"
        "loss_fn = lambda h, w, t: anyloss.linear_cross_entropy(h, w, t)\n"
        "f = torch.compile(loss_fn, fullgraph=True)\n"
        "loss = f(h, w, t)\n"
        "loss.backward()\n"
        "ref = torch.nn.functional.cross_entropy(h.double() @ w.double().T, t)\n"
        "assert abs(loss.item() - ref.item()) <= 4 * 2**-23 * abs(ref.item()), (loss, ref)\n"
        "assert w.grad is not None and 'numba' in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip().endswith("ok")

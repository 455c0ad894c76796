"""``anyloss.linear_cross_entropy``: the cross entropy of ``hidden @ weight.T +
bias`` computed a chunk of rows at a time.

References are independent of the code under test: PyTorch's
``F.cross_entropy`` in float64 on the explicitly formed logits (values, and
gradients by float64 autograd of that unfused formula), and mpmath for
confident rows. They are computed from the inputs as the library received
them (read back, so float32/bfloat16 roundings are in the reference too).

Tolerances (all in :data:`TOL` and :func:`_scale_rows`):

* float64 inputs: relative ``1e-12``.
* float32 (JAX without x64, MLX; float32 cases of the other libraries):
  4 ulp of float32. ``'mean'``/``'sum'``: relative to the reference.
  ``'none'``: relative to ``max(|loss|, max_j |w_j x_j|)`` of the row, because
  the float32 logits themselves carry an ulp or so of their own magnitude,
  which a small loss ``lse(x) - x_y`` cannot have fewer of (measured worst:
  3.2 ulp on that scale, up to 19 ulp of a small loss itself; reductions:
  3 ulp relative).
* Gradients: normwise per array, ``|g - ref| <= 8 eps max|ref|`` (measured
  worst 2.4 on torch/JAX/MLX, float32 and float64).
* bfloat16 results and gradients: one bfloat16 rounding (half an ulp) of the
  float64 reference plus the float32 bound above.
* Confident rows (loss e^-30 .. e^-80): 4 ulp of the loss itself; MLX 32
  ulp, its own float32 ``exp`` being off by up to 17 ulp there (as in
  ``tests/test_accuracy.py``).

Each new shape or option set compiles JAX's ``lax.scan`` once: JAX runs a representative
subset of the cases (:func:`_jax_subset`).
"""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest

import anyloss

torch = pytest.importorskip("torch")
F = torch.nn.functional

N, H, V = 37, 8, 11  # the main shape: 37 rows, chunk_size 5 leaves a ragged last chunk
CHUNK = 5
TILE = (5, 4)  # (rows, classes): 3 blocks of the vocabulary, the last one ragged
LEAD = (3, 7)  # leading dims (batch, seq)
IGNORE = -100
REDUCTIONS = ("none", "mean", "sum")

# every tolerance of the file (see the module docstring)
TOL = {
    "f64_rtol": 1e-12,
    "f32_ulps": 4.0,
    # gradients, normwise: times eps times the array's largest |ref| (measured: 2.4)
    "grad_f32": 8.0,
    "grad_f64": 8.0,
    "bf16_ulps": 0.5,  # of bfloat16: one rounding of the result
    "same_f32": 4.0,  # compiled vs eager: times float32 eps times the array's largest |value|
    "mlx_confident_ulps": 32.0,  # MLX's own float32 exp is off by up to ~17 ulp
}
EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
BF16_EPS = 2.0**-7  # bfloat16 has 8 significant bits

OPTIONS = {
    "plain": {},
    "bias": {"bias": True},
    "smoothing": {"bias": True, "label_smoothing": 0.1},
    "ignore": {"ignore": True},
    "weights": {"bias": True, "weights": True},
    "ignore+weights+smoothing": {"ignore": True, "weights": True, "label_smoothing": 0.2},
    "softcap": {"bias": True, "softcap": 3.0},
    "softcap+all": {
        "bias": True,
        "ignore": True,
        "weights": True,
        "label_smoothing": 0.15,
        "softcap": 2.5,
    },
}
GRAD_CASES = [  # (options, reduction): every option set with 'none' and 'mean', some 'sum'
    (opts, reduction)
    for opts in ("bias", "smoothing", "ignore+weights+smoothing", "softcap+all")
    for reduction in REDUCTIONS
    if reduction != "sum" or opts in ("smoothing", "softcap+all")
]


# -- data and references ---------------------------------------------------------


def _data(lead: tuple[int, ...] = (N,), seed: int = 0) -> dict[str, np.ndarray]:
    """float64 inputs whose logits are a few units in magnitude."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, V, lead)
    flat = t.reshape(-1).copy()
    if flat.size > 3:
        flat[[1, flat.size // 2, flat.size - 2]] = IGNORE
    return {
        "h": rng.standard_normal((*lead, H)),
        "w": rng.standard_normal((V, H)) * 0.7,
        "b": rng.standard_normal(V) * 0.5,
        "cw": rng.uniform(0.5, 2.0, V),
        "t": t,
        "t_ignore": flat.reshape(lead),
        "g": rng.standard_normal(lead),
    }


def _float(xp: Any) -> str:
    return "float64" if xp.has_float64 else "float32"


def _inputs(xp: Any, d: dict, opts: dict, dtype: str) -> tuple[dict, dict]:
    """(arrays of ``xp`` as passed, the same read back as float64 NumPy)."""
    arrays = {
        "hidden": xp.asarray(d["h"], dtype),
        "weight": xp.asarray(d["w"], dtype),
        "targets": xp.asarray(d["t_ignore"] if opts.get("ignore") else d["t"]),
    }
    if opts.get("bias"):
        arrays["bias"] = xp.asarray(d["b"], dtype)
    if opts.get("weights"):
        arrays["class_weights"] = xp.asarray(d["cw"], dtype)
    back = {k: xp.to_numpy(v) for k, v in arrays.items()}
    back = {k: v if k == "targets" else v.astype(np.float64) for k, v in back.items()}
    return arrays, back


def _kwargs(opts: dict) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if opts.get("ignore"):
        kw["ignore_index"] = IGNORE
    for k in ("label_smoothing", "softcap"):
        if k in opts:
            kw[k] = opts[k]
    return kw


def _logits64(hidden: Any, weight: Any, bias: Any = None, softcap: float | None = None) -> Any:
    x = hidden @ weight.T
    if bias is not None:
        x = x + bias
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    return x


def _unfused(
    hidden: Any,
    weight: Any,
    targets: np.ndarray,
    bias: Any = None,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    class_weights: Any = None,
    softcap: float | None = None,
) -> Any:
    """The reference: torch ``F.cross_entropy`` of the explicit logits (float64 tensors)."""
    x = _logits64(hidden, weight, bias, softcap)
    t = torch.as_tensor(np.array(targets), dtype=torch.int64)
    out = F.cross_entropy(
        x.reshape(-1, x.shape[-1]),
        t.reshape(-1),
        weight=None if class_weights is None else torch.as_tensor(class_weights),
        ignore_index=IGNORE if ignore_index is None else ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    return out.reshape(t.shape) if reduction == "none" else out


def _t64(a: np.ndarray, grad: bool = False) -> Any:
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _reference(back: dict, reduction: str, kw: dict) -> np.ndarray:
    with torch.no_grad():
        out = _unfused(
            _t64(back["hidden"]),
            _t64(back["weight"]),
            back["targets"],
            _t64(back["bias"]) if "bias" in back else None,
            reduction=reduction,
            class_weights=_t64(back["class_weights"]) if "class_weights" in back else None,
            **kw,
        )
    return out.numpy(force=True)


def _scale_rows(back: dict, kw: dict) -> np.ndarray:
    """Per row: the largest |class weight * logit| (the scale of a row's rounding)."""
    with torch.no_grad():
        x = _logits64(
            _t64(back["hidden"]),
            _t64(back["weight"]),
            _t64(back["bias"]) if "bias" in back else None,
            kw.get("softcap"),
        ).numpy(force=True)
    if "class_weights" in back:
        x = x * back["class_weights"]
    return np.abs(x).max(axis=-1)


def _assert_value(
    got: np.ndarray, ref: np.ndarray, dtype: str, scale: Any = 0.0, ulps: float | None = None
) -> None:
    """``got`` within the tolerance of ``dtype`` of ``ref`` (at ``max(|ref|, scale)``)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg="NaN positions differ")
    mag = np.maximum(np.abs(ref), scale)
    if dtype == "float64":
        bound = TOL["f64_rtol"] * mag
    elif dtype == "float32":
        bound = (TOL["f32_ulps"] if ulps is None else ulps) * np.spacing(mag.astype(np.float32))
    else:  # bfloat16: one rounding of the result, and the float32 error before it
        half = (
            TOL["bf16_ulps"] * BF16_EPS * 2.0 ** np.floor(np.log2(np.maximum(np.abs(ref), 1e-300)))
        )
        bound = half + TOL["f32_ulps"] * np.spacing(mag.astype(np.float32))
    err = np.where(nan, 0.0, np.abs(got - ref))
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
    assert np.all(err <= bound), (
        f"{dtype}: at {worst} got {got[worst]!r}, expected {ref[worst]!r} "
        f"(error {err[worst]:.3g} > bound {np.asarray(bound)[worst]:.3g})"
    )


def _check_result(xp: Any, out: Any, back: dict, reduction: str, kw: dict, dtype: str) -> None:
    got = xp.to_numpy(out)
    assert xp.dtype_name(out) == dtype
    ref = _reference(back, reduction, kw)
    if reduction == "none":
        assert got.shape == back["targets"].shape
        ignored = back["targets"] == IGNORE
        assert np.all(got[ignored] == 0.0), "ignored rows must give exactly 0"
        _assert_value(got, ref, dtype, _scale_rows(back, kw))
    else:
        assert got.shape == ()
        _assert_value(got, ref, dtype)


def _jax_subset(xp: Any, keep: bool) -> None:
    """Skip a case on JAX unless ``keep``: each eager JAX call traces and
    compiles its ``lax.scan`` anew (0.15-4 s a call here), so JAX runs a
    representative subset of the cases the other libraries run."""
    if xp.name == "jax" and not keep:
        pytest.skip("JAX runs a subset: each shape and option set compiles its scan")


def _call(arrays: dict, reduction: str, kw: dict, chunk_size: Any = CHUNK) -> Any:
    return anyloss.linear_cross_entropy(
        arrays["hidden"],
        arrays["weight"],
        arrays["targets"],
        arrays.get("bias"),
        reduction=reduction,
        class_weights=arrays.get("class_weights"),
        chunk_size=chunk_size,
        **kw,
    )


# -- values on every backend -----------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("opts", list(OPTIONS.values()), ids=list(OPTIONS))
def test_values(xp: Any, opts: dict, reduction: str) -> None:
    _jax_subset(xp, reduction == "none" or opts in (OPTIONS["plain"], OPTIONS["softcap+all"]))
    d = _data()
    dtype = _float(xp)
    arrays, back = _inputs(xp, d, opts, dtype)
    kw = _kwargs(opts)
    _check_result(xp, _call(arrays, reduction, kw), back, reduction, kw, dtype)


@pytest.mark.parametrize("opts", ["plain", "ignore+weights+smoothing", "softcap+all"])
def test_values_sum(xp: Any, opts: str) -> None:
    _jax_subset(xp, opts == "ignore+weights+smoothing")
    opt = OPTIONS[opts]
    dtype = _float(xp)
    arrays, back = _inputs(xp, _data(), opt, dtype)
    kw = _kwargs(opt)
    _check_result(xp, _call(arrays, "sum", kw), back, "sum", kw, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_values_float32(xp: Any, reduction: str) -> None:
    """float32 inputs on the libraries with float64 (JAX and MLX: test_values)."""
    if not xp.has_float64:
        pytest.skip("float32 already: test_values")
    opts = OPTIONS["softcap+all"]
    arrays, back = _inputs(xp, _data(), opts, "float32")
    kw = _kwargs(opts)
    _check_result(xp, _call(arrays, reduction, kw), back, reduction, kw, "float32")


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("opts", ["plain", "softcap+all"])
def test_leading_dims(xp: Any, opts: str, reduction: str) -> None:
    """hidden (batch, seq, H), targets (batch, seq): 'none' keeps (batch, seq)."""
    _jax_subset(xp, (opts == "softcap+all") == (reduction == "none"))
    opt = OPTIONS[opts]
    dtype = _float(xp)
    arrays, back = _inputs(xp, _data(LEAD, seed=1), opt, dtype)
    kw = _kwargs(opt)
    _check_result(xp, _call(arrays, reduction, kw, chunk_size=4), back, reduction, kw, dtype)


@pytest.mark.parametrize(
    ("chunk_size", "reduction"),
    [
        (1, "none"),
        (2, "mean"),
        (36, "none"),
        (37, "mean"),
        (100, "none"),
        (None, "mean"),
        ((5, 3), "none"),
        ((5, 3), "mean"),
        ((1, 1), "mean"),
        ((37, 4), "none"),
        ([4, 100], "none"),
    ],
    ids=str,
)
def test_chunk_sizes(xp: Any, chunk_size: Any, reduction: str) -> None:
    """Chunks of one row, not dividing the rows, exactly the rows, more than
    the rows, the default; (rows, classes) tiles: blocks of the vocabulary
    not dividing it, of one class, wider than it."""
    _jax_subset(xp, chunk_size in (1, None, (5, 3), (1, 1)))
    opts = OPTIONS["softcap+all"]
    dtype = _float(xp)
    arrays, back = _inputs(xp, _data(), opts, dtype)
    kw = _kwargs(opts)
    out = _call(arrays, reduction, kw, chunk_size=chunk_size)
    _check_result(xp, out, back, reduction, kw, dtype)


# rows of logits (hidden = logits, weight = I) for the online logsumexp over
# blocks of 3 classes: the maximum in the first block, in the last (ragged)
# one, moving at every block, tied across blocks, tied within a block, all
# equal; targets at and away from the maximum
BLOCK_ROWS = np.array(
    [
        [5.0, 1.0, 0.0, -1.0, 2.0, 0.5, -3.0, 1.0],
        [0.0, 1.0, -2.0, 0.5, 1.0, 0.0, 2.0, 6.0],
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
        [3.0, 0.0, 0.0, 0.0, 0.0, 3.0, 1.0, -1.0],
        [0.0, 4.0, 4.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
        [-9.0, -1.0, -8.5, 3.5, -2.0, 3.25, 0.0, 3.5],
    ]
)
BLOCK_TARGETS = np.array([0, 3, 7, 6, 5, 2, 4, 1])


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"label_smoothing": 0.3},
        {"weights": True, "label_smoothing": 0.3},
        {"bias": True, "softcap": 4.0},
    ],
    ids=["plain", "smoothing", "weights+smoothing", "bias+softcap"],
)
def test_blocks_max_positions(xp: Any, opts: dict) -> None:
    """Where each row's maximum lies among the vocabulary blocks does not matter."""
    width = BLOCK_ROWS.shape[1]
    rng = np.random.default_rng(4)
    d = {
        "h": BLOCK_ROWS,
        "w": np.eye(width),
        "t": BLOCK_TARGETS,
        "b": rng.integers(-4, 4, width) / 4.0,  # exact sums with the logits
        "cw": rng.uniform(0.5, 2.0, width),
    }
    dtype = _float(xp)
    arrays, back = _inputs(xp, d, opts, dtype)
    kw = _kwargs(opts)
    _check_result(xp, _call(arrays, "none", kw, chunk_size=(3, 3)), back, "none", kw, dtype)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("lead", [(1,), ()], ids=["one-row", "1d-hidden"])
def test_single_row(xp: Any, lead: tuple[int, ...], reduction: str) -> None:
    """One row: hidden (1, H) with targets (1,), and hidden (H,) with a scalar target."""
    _jax_subset(xp, (lead == ()) == (reduction == "none"))
    opts = {"bias": True, "weights": True, "label_smoothing": 0.1, "softcap": 2.0}
    dtype = _float(xp)
    d = _data((1,), seed=2)
    d["h"], d["t"] = d["h"].reshape((*lead, H)), d["t"].reshape(lead)
    arrays, back = _inputs(xp, d, opts, dtype)
    kw = _kwargs(opts)
    _check_result(xp, _call(arrays, reduction, kw), back, reduction, kw, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_rows_ignored(xp: Any, reduction: str) -> None:
    """Every row ignored: 'mean' is NaN (0 / 0, as in PyTorch), 'sum' 0, 'none' zeros."""
    _jax_subset(xp, reduction == "mean")
    d = _data()
    d["t_ignore"] = np.full(N, IGNORE)
    opts = {"bias": True, "ignore": True, "weights": True}
    dtype = _float(xp)
    arrays, back = _inputs(xp, d, opts, dtype)
    kw = _kwargs(opts)
    out = _call(arrays, reduction, kw)
    # Dask computes 0 / 0 here, outside the library's np.errstate (as cross_entropy does)
    with np.errstate(invalid="ignore" if xp.lazy else "raise"):
        out = xp.to_numpy(out)
    ref = _reference(back, reduction, kw)
    if reduction == "mean":
        assert np.isnan(ref) and np.isnan(out)
    else:
        np.testing.assert_array_equal(out, np.zeros_like(ref))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_no_rows(xp: Any, reduction: str) -> None:
    """hidden (0, H): 'none' is empty, 'sum' 0, 'mean' NaN (as in PyTorch)."""
    d = _data()
    d["h"], d["t"] = d["h"][:0], d["t"][:0]
    dtype = _float(xp)
    arrays, back = _inputs(xp, d, {"bias": True}, dtype)
    out = xp.to_numpy(_call(arrays, reduction, {}))
    ref = _reference(back, reduction, {})
    np.testing.assert_array_equal(out, ref)


def test_result_dtype() -> None:
    """The result type of hidden and weight; bfloat16 computed in float32."""
    d = _data()
    t = d["t"]
    h32, w64 = d["h"].astype(np.float32), d["w"]
    assert anyloss.linear_cross_entropy(h32, w64, t).dtype == np.float64
    assert anyloss.linear_cross_entropy(h32, w64.astype(np.float32), t).dtype == np.float32
    hb = torch.tensor(d["h"], dtype=torch.bfloat16)
    wf = torch.tensor(d["w"], dtype=torch.float32)
    tt = torch.as_tensor(t)
    assert anyloss.linear_cross_entropy(hb, wf, tt).dtype == torch.float32
    assert anyloss.linear_cross_entropy(hb, wf.bfloat16(), tt).dtype == torch.bfloat16
    assert anyloss.linear_cross_entropy(hb, wf.half(), tt).dtype == torch.float32


# -- gradients -------------------------------------------------------------------


def _names(arrays: dict) -> list[str]:
    return [k for k in ("hidden", "weight", "bias") if k in arrays]


def _grads(xp: Any, fn: Callable[..., Any], diff: list[Any]) -> tuple[np.ndarray, list]:
    """(value as NumPy, gradients of the scalar ``fn(*diff)`` w.r.t. each of
    ``diff`` as arrays of the library)."""
    if xp.name == "torch":
        leaves = [a.detach().clone().requires_grad_(True) for a in diff]
        out = fn(*leaves)
        out.backward()
        return xp.to_numpy(out), [leaf.grad for leaf in leaves]
    if xp.name == "jax":
        import jax

        value, gs = jax.value_and_grad(fn, argnums=tuple(range(len(diff))))(*diff)
        return xp.to_numpy(value), list(gs)
    if xp.name == "mlx":
        mx = xp.module
        value, gs = mx.value_and_grad(fn, argnums=list(range(len(diff))))(*diff)
        return xp.to_numpy(value), list(gs)
    raise AssertionError(xp.name)


def _scalar_fn(xp: Any, arrays: dict, reduction: str, kw: dict, g: Any, chunk: Any = CHUNK) -> Any:
    """``fn(*differentiable arrays)``: the loss, or ``sum(loss * g)`` for 'none'."""
    names = _names(arrays)

    def fn(*diff: Any) -> Any:
        args = dict(arrays)
        args.update(zip(names, diff, strict=True))
        out = _call(args, reduction, kw, chunk_size=chunk)
        return (out * g).sum() if reduction == "none" else out

    return fn


def _reference_grads(back: dict, reduction: str, kw: dict, g: np.ndarray) -> tuple:
    """(value, gradients) by float64 autograd of the unfused formula."""
    leaves = {k: _t64(back[k], grad=True) for k in _names(back)}
    out = _unfused(
        leaves["hidden"],
        leaves["weight"],
        back["targets"],
        leaves.get("bias"),
        reduction=reduction,
        class_weights=_t64(back["class_weights"]) if "class_weights" in back else None,
        **kw,
    )
    if reduction == "none":
        out = (out * _t64(g)).sum()
    out.backward()
    return out.detach().numpy(force=True), [leaves[k].grad.numpy(force=True) for k in _names(back)]


def _assert_grads(xp: Any, got: list, ref: list, names: list[str], dtype: str) -> None:
    for name, gg, rr in zip(names, got, ref, strict=True):
        assert xp.dtype_name(gg) == dtype, f"d {name}: dtype {xp.dtype_name(gg)}"
        arr = xp.to_numpy(gg).astype(np.float64)
        assert arr.shape == rr.shape, f"d {name}: shape {arr.shape} != {rr.shape}"
        top = np.abs(rr).max()
        if dtype == "float64":
            bound = TOL["grad_f64"] * EPS64 * top
        elif dtype == "float32":
            bound = TOL["grad_f32"] * EPS32 * top
        else:
            half = (
                TOL["bf16_ulps"]
                * BF16_EPS
                * 2.0 ** np.floor(np.log2(np.maximum(np.abs(rr), 1e-300)))
            )
            bound = half + TOL["grad_f32"] * EPS32 * top
        err = np.abs(arr - rr)
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        assert np.all(err <= bound), (
            f"d {name} ({dtype}) at {worst}: got {arr[worst]!r}, expected {rr[worst]!r} "
            f"(error {err[worst]:.3g}; max|ref| {top:.3g}, "
            f"{err.max() / (top * (EPS64 if dtype == 'float64' else EPS32)):.1f} eps of it)"
        )


def _assert_same(got: Any, want: Any) -> None:
    """Compiled vs eager (float32): normwise within TOL['same_f32'] eps."""
    a = np.asarray(got, dtype=np.float64)
    b = np.asarray(want, dtype=np.float64)
    assert a.shape == b.shape
    bound = TOL["same_f32"] * EPS32 * max(np.abs(b).max(initial=0.0), np.finfo(np.float32).tiny)
    assert np.abs(a - b).max(initial=0.0) <= bound, (a, b)


def _grad_case(
    xp: Any,
    opts: dict,
    reduction: str,
    dtype: str,
    lead: tuple[int, ...] = (N,),
    chunk: Any = CHUNK,
) -> tuple[Any, list, dict, dict, np.ndarray]:
    d = _data(lead)
    arrays, back = _inputs(xp, d, opts, dtype)
    kw = _kwargs(opts)
    g = xp.asarray(d["g"], dtype)
    fn = _scalar_fn(xp, arrays, reduction, kw, g, chunk)
    return fn, [arrays[k] for k in _names(arrays)], back, kw, xp.to_numpy(g).astype(np.float64)


@pytest.mark.parametrize(("opts", "reduction"), GRAD_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients(grad_xp: Any, dtype: str, opts: str, reduction: str) -> None:
    """d hidden, d weight, d bias against float64 autograd of the unfused formula."""
    xp = grad_xp
    if dtype == "float64" and not xp.has_float64:
        pytest.skip(f"{xp.name} has no float64 here")
    _jax_subset(xp, opts == "softcap+all" or (opts, reduction) == ("bias", "mean"))
    fn, diff, back, kw, g = _grad_case(xp, OPTIONS[opts], reduction, dtype)
    value, grads = _grads(xp, fn, diff)
    ref_value, ref_grads = _reference_grads(back, reduction, kw, g)
    _assert_value(value, ref_value, dtype, ulps=TOL["grad_f32"])
    _assert_grads(xp, grads, ref_grads, _names(back), dtype)


@pytest.mark.parametrize("reduction", ["none"])
def test_gradients_leading_dims(grad_xp: Any, reduction: str) -> None:
    xp = grad_xp
    _jax_subset(xp, False)  # reshapes only: torch and MLX
    fn, diff, back, kw, g = _grad_case(
        xp, OPTIONS["softcap+all"], reduction, "float32", lead=LEAD, chunk=4
    )
    _, grads = _grads(xp, fn, diff)
    _, ref_grads = _reference_grads(back, reduction, kw, g)
    _assert_grads(xp, grads, ref_grads, _names(back), "float32")


@pytest.mark.parametrize(
    ("chunk", "reduction"),
    [(1, "none"), (100, "sum"), ((5, 3), "mean"), ((4, 2), "none")],
    ids=str,
)
def test_gradients_chunk_sizes(grad_xp: Any, chunk: Any, reduction: str) -> None:
    xp = grad_xp
    _jax_subset(xp, isinstance(chunk, tuple))
    opts = OPTIONS["softcap+all"]
    fn, diff, back, kw, g = _grad_case(xp, opts, reduction, "float32", chunk=chunk)
    _, grads = _grads(xp, fn, diff)
    _, ref_grads = _reference_grads(back, reduction, kw, g)
    _assert_grads(xp, grads, ref_grads, _names(back), "float32")


def test_gradient_of_hidden_only() -> None:
    """Only hidden requires grad (a frozen output layer): d hidden still right."""
    d = _data()
    h = torch.tensor(d["h"], requires_grad=True)
    w, b = torch.tensor(d["w"]), torch.tensor(d["b"])
    t = torch.as_tensor(d["t"])
    anyloss.linear_cross_entropy(h, w, t, b, chunk_size=CHUNK).backward()
    hr = _t64(d["h"], grad=True)
    _unfused(hr, w, d["t"], b).backward()
    np.testing.assert_allclose(
        h.grad.numpy(force=True), hr.grad.numpy(force=True), rtol=0, atol=1e-14
    )


# -- transforms: jax.jit, jax.vmap, mx.compile, torch.compile ------------------------


def _jax_case(reduction: str) -> tuple[Any, list, dict, dict, np.ndarray]:
    from backends import make

    xp = make("jax")
    return (xp, *_grad_case(xp, OPTIONS["softcap+all"], reduction, "float32", chunk=TILE))


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_jax_jit_grad(reduction: str) -> None:
    jax = pytest.importorskip("jax")
    xp, fn, diff, back, kw, g = _jax_case(reduction)
    argnums = tuple(range(len(diff)))
    jitted = jax.jit(jax.value_and_grad(fn, argnums=argnums))(*diff)
    eager = jax.value_and_grad(fn, argnums=argnums)(*diff)
    ref_value, ref_grads = _reference_grads(back, reduction, kw, g)
    _assert_value(xp.to_numpy(jitted[0]), ref_value, "float32", ulps=TOL["grad_f32"])
    _assert_grads(xp, list(jitted[1]), ref_grads, _names(back), "float32")
    _assert_same(jitted[0], eager[0])
    for a, b in zip(jitted[1], eager[1], strict=True):
        _assert_same(a, b)


def test_jax_vmap() -> None:
    """vmap over a batch of hidden: value and gradients as one call per item."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    xp, fn, diff, back, kw, g = _jax_case("mean")
    hb = jnp.stack([diff[0], diff[0] * 0.5, diff[0] * 2.0])
    rest = diff[1:]
    in_axes = (0, *([None] * len(rest)))
    values = jax.vmap(fn, in_axes=in_axes)(hb, *rest)
    dh = jax.vmap(jax.grad(fn), in_axes=in_axes)(hb, *rest)
    for i in range(hb.shape[0]):
        item = dict(back, hidden=np.asarray(hb[i], dtype=np.float64))
        ref_value, ref_grads = _reference_grads(item, "mean", kw, g)
        _assert_value(np.asarray(values[i]), ref_value, "float32", ulps=TOL["grad_f32"])
        _assert_grads(xp, [dh[i]], ref_grads[:1], ["hidden"], "float32")


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_mx_compile_value_and_grad(reduction: str) -> None:
    from backends import make

    mx = pytest.importorskip("mlx.core")
    xp = make("mlx")
    fn, diff, back, kw, g = _grad_case(
        xp, OPTIONS["softcap+all"], reduction, "float32", chunk=TILE
    )
    argnums = list(range(len(diff)))
    compiled = mx.compile(mx.value_and_grad(fn, argnums=argnums))(*diff)
    eager = mx.value_and_grad(fn, argnums=argnums)(*diff)
    ref_value, ref_grads = _reference_grads(back, reduction, kw, g)
    _assert_value(xp.to_numpy(compiled[0]), ref_value, "float32", ulps=TOL["grad_f32"])
    _assert_grads(xp, list(compiled[1]), ref_grads, _names(back), "float32")
    _assert_same(np.array(compiled[0]), np.array(eager[0]))
    for a, b in zip(compiled[1], eager[1], strict=True):
        _assert_same(np.array(a), np.array(b))


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_torch_compile_fullgraph(reduction: str) -> None:
    """One graph (fullgraph=True) for forward and backward; equal to eager."""
    from backends import make

    xp = make("torch")
    fn, diff, back, kw, g = _grad_case(
        xp, OPTIONS["softcap+all"], reduction, "float32", chunk=TILE
    )
    compiled = torch.compile(fn, fullgraph=True, dynamic=False)
    value, grads = _grads(xp, compiled, diff)
    eager_value, eager_grads = _grads(xp, fn, diff)
    _assert_same(value, eager_value)
    for a, b in zip(grads, eager_grads, strict=True):
        _assert_same(a.numpy(force=True), b.numpy(force=True))
    ref_value, ref_grads = _reference_grads(back, reduction, kw, g)
    _assert_value(value, ref_value, "float32", ulps=TOL["grad_f32"])
    _assert_grads(xp, grads, ref_grads, _names(back), "float32")


# -- bfloat16 --------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_bfloat16(grad_xp: Any, reduction: str) -> None:
    """bfloat16 inputs: a bfloat16 result within one rounding of the float64
    value of the rounded inputs, and bfloat16 gradients."""
    xp = grad_xp
    _jax_subset(xp, reduction == "mean")
    opts = OPTIONS["softcap+all"]
    d = _data()
    arrays, back = _inputs(xp, d, opts, "bfloat16")
    kw = _kwargs(opts)
    out = _call(arrays, reduction, kw)
    _check_result(xp, out, back, reduction, kw, "bfloat16")
    g = xp.asarray(d["g"], "bfloat16")
    fn = _scalar_fn(xp, arrays, reduction, kw, g)
    _, grads = _grads(xp, fn, [arrays[k] for k in _names(arrays)])
    _, ref_grads = _reference_grads(back, reduction, kw, xp.to_numpy(g).astype(np.float64))
    _assert_grads(xp, grads, ref_grads, _names(back), "bfloat16")


# -- determinism -----------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none"])
def test_deterministic_values(xp: Any, reduction: str) -> None:
    opts = OPTIONS["softcap+all"]
    arrays, _ = _inputs(xp, _data(), opts, _float(xp))
    kw = _kwargs(opts)
    first = xp.to_numpy(_call(arrays, reduction, kw, chunk_size=TILE))
    second = xp.to_numpy(_call(arrays, reduction, kw, chunk_size=TILE))
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_deterministic_gradients(grad_xp: Any, reduction: str) -> None:
    xp = grad_xp
    _jax_subset(xp, reduction == "mean")
    fn, diff, _, _, _ = _grad_case(xp, OPTIONS["softcap+all"], reduction, "float32", chunk=(3, 4))
    v1, g1 = _grads(xp, fn, diff)
    v2, g2 = _grads(xp, fn, diff)
    assert v1.tobytes() == v2.tobytes()
    for a, b in zip(g1, g2, strict=True):
        assert xp.to_numpy(a).tobytes() == xp.to_numpy(b).tobytes()


# -- confident rows --------------------------------------------------------------

GAPS = (30.0, 41.5, 55.25, 67.0, 80.0)


def _confident() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, targets, class weights): each row's target leads by a gap of
    30..80; binary fractions, exact in float32. hidden = logits, weight = I."""
    rows, width = len(GAPS), 6
    x = np.zeros((rows, width))
    t = np.arange(rows) % width
    for r, gap in enumerate(GAPS):
        x[r] = 1.5 - gap - 0.25 * np.arange(width)
        x[r, t[r]] = 1.5
    return x, t, np.linspace(0.5, 2.0, width)


def _confident_ref(x: np.ndarray, t: np.ndarray, cw: np.ndarray | None) -> np.ndarray:
    """log(sum exp(x)) - x_t in mpmath (times the target's class weight)."""
    out = []
    with mpmath.workdps(50):
        for row, k in zip(x, t, strict=True):
            lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
            loss = lse - mpmath.mpf(float(row[k]))
            out.append(float(loss * (1 if cw is None else mpmath.mpf(float(cw[k])))))
    return np.array(out)


@pytest.mark.parametrize(("weighted", "chunk"), [(False, 2), (True, 2), (False, (2, 2))], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_confident_rows(xp: Any, dtype: str, weighted: bool, chunk: Any) -> None:
    """A tiny positive loss (e^-30 .. e^-80) to a few ulp, not 0; also with
    blocks of 2 classes (the maximum then moves from block to block)."""
    if dtype == "float64" and not xp.has_float64:
        pytest.skip(f"{xp.name} has no float64 here")
    x, t, cw = _confident()
    kw = {"class_weights": xp.asarray(cw, dtype)} if weighted else {}
    out = anyloss.linear_cross_entropy(
        xp.asarray(x, dtype),
        xp.asarray(np.eye(x.shape[1]), dtype),
        xp.asarray(t),
        reduction="none",
        chunk_size=chunk,
        **kw,
    )
    got = xp.to_numpy(out).astype(np.float64)
    cw_used = xp.to_numpy(xp.asarray(cw, dtype)).astype(np.float64) if weighted else None
    ref = _confident_ref(x, t, cw_used)
    assert np.all(got > 0), got
    err = np.abs(got - ref) / np.spacing(ref.astype(dtype)).astype(np.float64)
    bound = TOL["mlx_confident_ulps"] if xp.name == "mlx" else TOL["f32_ulps"]
    assert np.all(err <= bound), f"{err} ulp: got {got}, expected {ref}"


# -- errors ----------------------------------------------------------------------


def _np_args() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = _data()
    return d["h"], d["w"], d["t"]


def test_weight_transposed() -> None:
    h, w, t = _np_args()
    with pytest.raises(ValueError, match="transposed"):
        anyloss.linear_cross_entropy(h, w.T, t)
    with pytest.raises(ValueError, match=r"weight\.shape"):
        anyloss.linear_cross_entropy(h, w[:, :-1], t)
    with pytest.raises(ValueError, match=r"weight\.shape"):
        anyloss.linear_cross_entropy(h, w[None], t)


def test_bias_shape() -> None:
    h, w, t = _np_args()
    with pytest.raises(ValueError, match=r"bias\.shape"):
        anyloss.linear_cross_entropy(h, w, t, np.zeros(V + 1))
    with pytest.raises(ValueError, match=r"bias\.shape"):
        anyloss.linear_cross_entropy(h, w, t, np.zeros((1, V)))


def test_class_weights_shape() -> None:
    h, w, t = _np_args()
    with pytest.raises(ValueError, match=r"class_weights\.shape"):
        anyloss.linear_cross_entropy(h, w, t, class_weights=np.ones(V - 1))


def test_targets_shape() -> None:
    h, w, t = _np_args()
    with pytest.raises(ValueError, match=r"targets\.shape") as info:
        anyloss.linear_cross_entropy(h, w, t[:-1])
    assert "use cross_entropy" not in str(info.value)  # the hint is for probabilities only
    with pytest.raises(ValueError, match=r"targets\.shape"):
        anyloss.linear_cross_entropy(h, w, t[None])


def test_probability_targets() -> None:
    h, w, _ = _np_args()
    probs = np.full((N, V), 1.0 / V)
    with pytest.raises(ValueError, match="cross_entropy"):
        anyloss.linear_cross_entropy(h, w, probs)


def test_float_targets() -> None:
    h, w, t = _np_args()
    with pytest.raises(TypeError, match="targets"):
        anyloss.linear_cross_entropy(h, w, t.astype(np.float64))


@pytest.mark.parametrize("bad", [V, -1, 10**6])
def test_out_of_range_index_eager(xp: Any, bad: int) -> None:
    if xp.lazy:
        pytest.skip("Dask does not read the targets eagerly")
    d = _data()
    t = d["t"].copy()
    t[3] = bad
    with pytest.raises(ValueError, match="targets"):
        anyloss.linear_cross_entropy(xp.asarray(d["h"]), xp.asarray(d["w"]), xp.asarray(t))


def test_ignore_index_is_not_out_of_range() -> None:
    """-100 is an error without ignore_index, fine with it."""
    d = _data()
    with pytest.raises(ValueError, match="targets"):
        anyloss.linear_cross_entropy(d["h"], d["w"], d["t_ignore"])
    out = anyloss.linear_cross_entropy(d["h"], d["w"], d["t_ignore"], ignore_index=IGNORE)
    assert np.isfinite(out)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing"),
        ({"label_smoothing": -0.1}, ValueError, "label_smoothing"),
        ({"softcap": 0.0}, ValueError, "softcap"),
        ({"softcap": -1.0}, ValueError, "softcap"),
        ({"softcap": math.inf}, ValueError, "softcap"),
        ({"softcap": math.nan}, ValueError, "softcap"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"chunk_size": -3}, ValueError, "chunk_size"),
        ({"chunk_size": 1.5}, TypeError, "chunk_size"),
        ({"chunk_size": True}, TypeError, "chunk_size"),
        ({"chunk_size": (0, 4)}, ValueError, "chunk_size"),
        ({"chunk_size": (4, 0)}, ValueError, "chunk_size"),
        ({"chunk_size": (4, 1.5)}, TypeError, "chunk_size"),
        ({"chunk_size": (4, True)}, TypeError, "chunk_size"),
        ({"chunk_size": (4, 2, 1)}, TypeError, "chunk_size"),
        ({"chunk_size": ()}, TypeError, "chunk_size"),
        ({"reduction": "avg"}, ValueError, "reduction"),
        ({"ignore_index": 1.5}, TypeError, "ignore_index"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, dict) else None,
)
def test_bad_options(kwargs: dict, error: type, name: str) -> None:
    h, w, t = _np_args()
    with pytest.raises(error, match=name):
        anyloss.linear_cross_entropy(h, w, t, **kwargs)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_out_of_range_under_jax_jit_is_nan(reduction: str) -> None:
    """Under jax.jit the indices cannot be read: the bad row (and any
    reduction over it) is NaN, not a plausible number."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    d = _data()
    t = d["t"].copy()
    t[3] = V
    f = jax.jit(
        lambda h, w, t: anyloss.linear_cross_entropy(
            h, w, t, reduction=reduction, chunk_size=CHUNK
        )
    )
    out = np.asarray(f(jnp.asarray(d["h"]), jnp.asarray(d["w"]), jnp.asarray(t)))
    if reduction == "none":
        assert np.isnan(out[3])
        assert np.all(np.isfinite(np.delete(out, 3)))
    else:
        assert np.isnan(out)


# -- memory ----------------------------------------------------------------------


def test_memory_numpy() -> None:
    """NumPy float32, 4096 x 64 hidden, V = 8192: the peak allocation during
    a call (inputs excluded; after a first one) is at most 5% of the logits'
    128 MiB."""
    rows, width, vocab = 4096, 64, 8192
    rng = np.random.default_rng(3)
    h = rng.standard_normal((rows, width), dtype=np.float32)
    w = rng.standard_normal((vocab, width), dtype=np.float32) * np.float32(0.1)
    t = rng.integers(0, vocab, rows)
    logits_bytes = rows * vocab * 4
    # a first call loads the numba kernels (a one-time cost, not the call's)
    anyloss.linear_cross_entropy(h, w, t, reduction="mean")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = anyloss.linear_cross_entropy(h, w, t, reduction="mean")
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert np.isfinite(out)
    assert peak <= 0.05 * logits_bytes, (
        f"peak {peak / 2**20:.1f} MiB > 5% of the logits ({0.05 * logits_bytes / 2**20:.1f} MiB)"
    )


# -- exports ---------------------------------------------------------------------


def test_exported() -> None:
    assert "linear_cross_entropy" in anyloss.__all__
    assert callable(anyloss.linear_cross_entropy)
    assert anyloss.linear_cross_entropy.__doc__ and ">>>" in anyloss.linear_cross_entropy.__doc__

"""Empty arrays, infinities and the MLX parity edge cases, on every array library.

* Empty inputs (a batch of ``N = 0`` rows, an embedding or class axis of size
  ``D = 0``): every loss of ``mlx.nn.losses`` gives what MLX gives (an empty
  array for ``'none'``, NaN for ``'mean'``, 0 for ``'sum'``, and MLX's value
  where only the reduced axis is empty); where MLX raises (``cross_entropy``
  of an empty batch) or defines nothing, every library gives the same
  hand-derived value, or the same clear ``ValueError``.
* MLX 0.32 hangs now and then on a sum over an empty axis: those run in
  subprocesses with a timeout.
* Infinite inputs on float32-only libraries (MLX, JAX without x64), where the
  error-free transformations (TwoSum) would form ``inf - inf``.

MLX's own results for empty inputs are computed in a subprocess with a timeout
(MLX's reductions over nothing may hang, see above) and retried.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import numpy as np
import pytest

import anyloss
from anyloss import losses as al

F32 = np.float32
LOG2, LOG3 = math.log(2.0), math.log(3.0)


def zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, F32)


def ones(*shape: int) -> np.ndarray:
    return np.ones(shape, F32)


def indices(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.int64)


def _elementwise(n: int) -> Any:
    return lambda s: (zeros(*s),) * n


# ------------------------------------------------------- the 14 losses of MLX, empty

# (name, builder of the positional arguments from a shape, shapes): MLX defines
# a result for each of these (no exception, no empty logsumexp).
_ELEMENTWISE = ((0,), (0, 4), (3, 0))
MLX_EMPTY: list[tuple[str, Any, tuple[tuple[int, ...], ...], dict[str, Any]]] = [
    ("binary_cross_entropy", _elementwise(2), _ELEMENTWISE, {}),
    ("hinge_loss", _elementwise(2), _ELEMENTWISE, {}),
    ("huber_loss", _elementwise(2), _ELEMENTWISE, {}),
    ("l1_loss", _elementwise(2), _ELEMENTWISE, {}),
    ("log_cosh_loss", _elementwise(2), _ELEMENTWISE, {}),
    ("mse_loss", _elementwise(2), _ELEMENTWISE, {}),
    ("smooth_l1_loss", _elementwise(2), _ELEMENTWISE, {}),
    ("gaussian_nll_loss", lambda s: (zeros(*s), zeros(*s), ones(*s)), _ELEMENTWISE, {}),
    ("margin_ranking_loss", lambda s: (zeros(*s), zeros(*s), ones(*s)), _ELEMENTWISE, {}),
    ("cosine_similarity_loss", _elementwise(2), ((0, 4), (3, 0), (0, 0)), {}),
    ("cosine_similarity_loss", _elementwise(2), ((3, 0),), {"eps": 0.0}),
    ("kl_div_loss", _elementwise(2), ((0, 4), (3, 0), (0, 0)), {}),
    ("triplet_loss", _elementwise(3), ((0, 4), (3, 0), (0, 0)), {}),
    ("triplet_loss", _elementwise(3), ((3, 0),), {"margin": 0.5, "p": 1}),
    ("triplet_loss", _elementwise(3), ((3, 0),), {"p": 3}),
    ("nll_loss", lambda s: (zeros(*s), indices(*s[:-1])), ((0, 4), (0, 0)), {}),
]

EMPTY_CASES = [
    pytest.param(name, build, shape, kwargs, id=f"{name}-{shape}-{kwargs}".replace(" ", ""))
    for name, build, shapes, kwargs in MLX_EMPTY
    for shape in shapes
]
REDUCTIONS = ("none", "mean", "sum")


def _key(name: str, shape: tuple[int, ...], kwargs: dict[str, Any], reduction: str) -> str:
    return json.dumps([name, list(shape), sorted(kwargs.items()), reduction])


_ORACLE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import mlx.core as mx
    import mlx.nn.losses as L
    out = {}
    for key in json.loads(sys.stdin.read()):
        name, shape, kwargs, reduction = json.loads(key)
        args = [np.asarray(a, dtype=np.float32 if k == "f" else np.int64).reshape(s)
                for k, a, s in ARGS[key]]
        # empty arrays built by MLX itself: MLX 0.32 may hang reducing an empty
        # array made from NumPy (its result does not depend on the values)
        arrays = [mx.array(a) if a.size else mx.zeros(a.shape, dtype=mx.array(a).dtype)
                  for a in args]
        r = getattr(L, name)(*arrays, **dict(kwargs), reduction=reduction)
        mx.eval(r)
        v = np.array(r)
        out[key] = [list(v.shape), [None if x != x else float(x) for x in v.ravel()]]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def mlx_empty() -> dict[str, tuple[tuple[int, ...], np.ndarray]]:
    """MLX's result of every case in ``EMPTY_CASES``, from a subprocess (MLX may
    hang on a reduction over nothing: a hung attempt is killed and retried)."""
    pytest.importorskip("mlx.core")
    args: dict[str, Any] = {}
    for p in EMPTY_CASES:
        name, build, shape, kwargs = p.values
        for reduction in REDUCTIONS:
            arrays = build(shape)
            args[_key(name, shape, kwargs, reduction)] = [
                ("f" if a.dtype.kind == "f" else "i", a.ravel().tolist(), list(a.shape))
                for a in arrays
            ]
    script = f"ARGS = {args!r}\n" + _ORACLE
    # a run takes about 2 s; a hung one is given up after 15 s and retried
    for _ in range(8):
        try:
            done = subprocess.run(
                [sys.executable, "-c", script],
                input=json.dumps(list(args)),
                capture_output=True,
                text=True,
                timeout=15,
                check=True,
            )
        except subprocess.TimeoutExpired:
            continue
        raw = json.loads(done.stdout)
        return {
            k: (tuple(s), np.array([np.nan if x is None else x for x in v], dtype=np.float64))
            for k, (s, v) in raw.items()
        }
    pytest.fail("MLX hung in 8 attempts at computing its losses of empty arrays")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "build", "shape", "kwargs"), EMPTY_CASES)
def test_empty_inputs_match_mlx(
    xp: Any,
    mlx_empty: dict[str, Any],
    name: str,
    build: Any,
    shape: tuple[int, ...],
    kwargs: dict[str, Any],
    reduction: str,
) -> None:
    want_shape, want = mlx_empty[_key(name, shape, kwargs, reduction)]
    out = getattr(al, name)(*[xp.asarray(a) for a in build(shape)], **kwargs, reduction=reduction)
    got = xp.to_numpy(out)  # Dask computes here: no warning may be raised
    assert xp.dtype_name(out) == "float32"
    assert got.shape == want_shape, f"shape {got.shape}, MLX gives {want_shape}"
    np.testing.assert_array_equal(got.ravel().astype(np.float64), want)


def test_mlx_empty_oracle_is_what_mlx_documents(mlx_empty: dict[str, Any]) -> None:
    """The oracle itself: MLX's mean of nothing is NaN, its sum 0, and a
    reduced axis of size 0 gives the formula's value (cosine 0, triplet the
    margin, KL 0)."""
    shape, v = mlx_empty[_key("l1_loss", (0,), {}, "mean")]
    assert shape == () and np.isnan(v).all()
    shape, v = mlx_empty[_key("l1_loss", (0,), {}, "sum")]
    assert shape == () and (v == 0).all()
    shape, v = mlx_empty[_key("triplet_loss", (3, 0), {}, "none")]
    assert shape == (3,) and (v == 1.0).all()


# ----------------------------------- empty inputs where MLX defines nothing (or raises)


def _expect(shape: tuple[int, ...], value: float) -> dict[str, np.ndarray]:
    """The three reductions of a per-example loss of ``shape``, all ``value``."""
    n = math.prod(shape)
    none = np.full(shape, value, dtype=np.float64)
    return {
        "none": none,
        "mean": np.array(value if n else np.nan),
        "sum": np.array(value * n),
    }


# (id, function, arguments, keyword arguments, expected per reduction), values by hand:
# a zero-length vector has norm 0, so its cosine with anything is 0 (eps > 0), a
# distance of eps^(1/p) to anything, and a row of such vectors gives every
# logit the same value.
_CE_EMPTY_BATCH = _expect((0,), 0.0)
BY_HAND: list[Any] = [
    ("cross_entropy-N0", "cross_entropy", (zeros(0, 4), indices(0)), {}, _CE_EMPTY_BATCH),
    ("cross_entropy-N0-probs", "cross_entropy", (zeros(0, 4), zeros(0, 4)), {}, _CE_EMPTY_BATCH),
    (
        "cross_entropy-N0-smoothing",
        "cross_entropy",
        (zeros(0, 4), indices(0)),
        {"label_smoothing": 0.1},
        _CE_EMPTY_BATCH,
    ),
    ("softmax_focal-N0", "softmax_focal_loss", (zeros(0, 4), indices(0)), {}, _CE_EMPTY_BATCH),
    (
        "multiclass_hinge-N0",
        "multiclass_hinge_loss",
        (zeros(0, 4), indices(0)),
        {},
        _CE_EMPTY_BATCH,
    ),
    (
        "sigmoid_focal-empty",
        "sigmoid_focal_loss",
        (zeros(3, 0), zeros(3, 0)),
        {},
        _expect((3, 0), 0.0),
    ),
    ("poisson-empty", "poisson_nll_loss", (zeros(0, 4), zeros(0, 4)), {}, _expect((0, 4), 0.0)),
    (
        "squared_hinge-empty",
        "squared_hinge_loss",
        (
            zeros(
                0,
            ),
            ones(0),
        ),
        {},
        _expect((0,), 0.0),
    ),
    (
        "cosine_embedding-N0",
        "cosine_embedding_loss",
        (zeros(0, 4), zeros(0, 4), ones(0)),
        {},
        _expect((0,), 0.0),
    ),
    # y = 1: 1 - cos = 1; y = -1: max(0, cos - margin) = 0
    (
        "cosine_embedding-D0",
        "cosine_embedding_loss",
        (zeros(2, 0), zeros(2, 0), np.array([1.0, -1.0], F32)),
        {},
        {"none": np.array([1.0, 0.0]), "mean": np.array(0.5), "sum": np.array(1.0)},
    ),
    ("info_nce-N0", "info_nce_loss", (zeros(0, 4), zeros(0, 4)), {}, _expect((0,), 0.0)),
    ("info_nce-N0D0", "info_nce_loss", (zeros(0, 0), zeros(0, 0)), {}, _expect((0,), 0.0)),
    # three equal logits (every similarity 0): log 3
    ("info_nce-D0", "info_nce_loss", (zeros(3, 0), zeros(3, 0)), {}, _expect((3,), LOG3)),
    (
        "info_nce-D0-raw",
        "info_nce_loss",
        (zeros(3, 0), zeros(3, 0)),
        {"normalize": False},
        _expect((3,), LOG3),
    ),
    (
        "info_nce-D0-symmetric",
        "info_nce_loss",
        (zeros(3, 0), zeros(3, 0)),
        {"symmetric": True},
        _expect((3,), LOG3),
    ),
    ("nt_xent-N0", "nt_xent_loss", (zeros(0, 4), indices(0)), {}, _expect((0,), 0.0)),
    # labels [0, 0, 1]: anchors 0 and 1 have one positive and one negative, all
    # similarities 0: log(1 + e^0) = log 2 each; anchor 2 has no positive: 0.
    # 'mean' is over the 2 positive pairs.
    (
        "nt_xent-D0",
        "nt_xent_loss",
        (zeros(3, 0), np.array([0, 0, 1])),
        {},
        {"none": np.array([LOG2, LOG2, 0.0]), "mean": np.array(LOG2), "sum": np.array(2 * LOG2)},
    ),
    ("dice-D0", "dice_loss", (zeros(3, 0), zeros(3, 0)), {}, _expect((3,), 0.0)),
    (
        "dice-D0-unsmoothed",
        "dice_loss",
        (zeros(3, 0), zeros(3, 0)),
        {"smooth": 0.0},
        _expect((3,), 0.0),
    ),
    ("dice-N0", "dice_loss", (zeros(0, 5), zeros(0, 5)), {}, _expect((0,), 0.0)),
    ("dice-all-axes", "dice_loss", (zeros(2, 0), zeros(2, 0)), {"axis": None}, _expect((), 0.0)),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "expected"), [pytest.param(*c[1:], id=c[0]) for c in BY_HAND]
)
def test_empty_inputs_by_hand(
    xp: Any, fn: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: Any, reduction: str
) -> None:
    out = getattr(anyloss, fn)(*[xp.asarray(a) for a in args], **kwargs, reduction=reduction)
    got = xp.to_numpy(out)
    want = expected[reduction]
    assert got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-6, atol=0)


NO_CLASSES = [
    ("cross_entropy", (zeros(3, 0), indices(3))),
    ("cross_entropy", (zeros(0, 0), indices(0))),
    ("cross_entropy", (zeros(3, 0), zeros(3, 0))),
    ("softmax_focal_loss", (zeros(3, 0), indices(3))),
    ("softmax_focal_loss", (zeros(0, 0), zeros(0, 0))),
    ("multiclass_hinge_loss", (zeros(0, 0), indices(0))),
    ("nll_loss", (zeros(3, 0), indices(3))),
]


@pytest.mark.parametrize(("fn", "args"), NO_CLASSES)
def test_no_classes_is_a_clear_error(xp: Any, fn: str, args: tuple[Any, ...]) -> None:
    """A softmax over 0 classes has no value: the same ValueError everywhere
    (Dask too, since it is decided from the shape), naming the function, the
    argument, the axis and the shape."""
    with pytest.raises(ValueError) as info:
        getattr(anyloss, fn)(*[xp.asarray(a) for a in args])
    message = str(info.value)
    assert f"{fn}()" in message
    assert "no classes" in message
    assert f"shape={args[0].shape}" in message
    assert "axis 1" in message


def test_empty_inputs_under_jit_and_compile() -> None:
    """The empty-input results come from shapes only, so they trace."""
    jax = pytest.importorskip("jax")
    f = jax.jit(lambda a, b: al.mse_loss(a, b))
    assert np.isnan(np.asarray(f(jax.numpy.zeros((0, 3)), jax.numpy.zeros((0, 3)))))
    g = jax.jit(lambda a, b: al.cosine_similarity_loss(a, b, reduction="sum"))
    assert float(g(jax.numpy.zeros((3, 0)), jax.numpy.zeros((3, 0)))) == 0.0
    mx = pytest.importorskip("mlx.core")
    h = mx.compile(lambda a, b: al.l1_loss(a, b, reduction="sum"))
    assert float(h(mx.zeros((0,)), mx.zeros((0,))).item()) == 0.0
    k = mx.compile(lambda a, b, c: al.triplet_loss(a, b, c, reduction="mean"))
    assert float(k(mx.zeros((2, 0)), mx.zeros((2, 0)), mx.zeros((2, 0))).item()) == 1.0


def test_empty_gradients(grad_xp: Any) -> None:
    """A gradient with respect to an empty input is empty, and with respect to
    rows with an empty embedding axis has that shape."""
    for shape in ((0, 4), (3, 0)):
        x = zeros(*shape)
        other = grad_xp.asarray(x)
        g = grad_xp.grad(lambda v, o=other: al.cosine_similarity_loss(v, o), x)
        assert g.shape == shape
        g = grad_xp.grad(lambda v, o=other: al.mse_loss(v, o, reduction="sum"), x)
        assert g.shape == shape


# ------------------------------------------------- MLX hangs on sums over nothing

_HANG = textwrap.dedent(
    """
    import numpy as np
    import mlx.core as mx
    import anyloss
    for _ in range(30):
        e = mx.array(np.zeros((3, 0), np.float32))
        n = mx.array(np.zeros((0,), np.float32))
        out = [
            anyloss.dice_loss(e, e, reduction="none"),
            anyloss.dice_loss(e, e, axis=None),
            anyloss.kl_div_loss(e, e),
            anyloss.cosine_similarity_loss(e, e),
            anyloss.l1_loss(n, n),
        ]
        mx.eval(*out)
    print([np.array(o).tolist() for o in out])
    """
)


def test_mlx_empty_axis_never_hangs() -> None:
    """MLX 0.32.4 hangs in about half the processes on a sum (or mean) over
    an empty axis of an array made from NumPy; anyloss never asks it for one.
    Five fresh processes, 30 rounds each: unguarded, one of them hangs in
    all but a few percent of runs."""
    pytest.importorskip("mlx.core")
    env = dict(os.environ, ANYLOSS_KERNELS="off")
    for _ in range(5):
        try:
            done = subprocess.run(
                [sys.executable, "-c", _HANG],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=True,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("an MLX loss over an empty axis hung (MLX 0.32 empty-reduction bug)")
        last = done.stdout.strip().splitlines()[-1]
        assert last == "[[0.0, 0.0, 0.0], 0.0, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], nan]"


# ------------------------------------------------------------------- infinities

_INF, _MAX = float("inf"), float(np.finfo(np.float32).max)
# pairs (x1, x2, y): infinite scores, and differences that overflow float32
RANKING = (
    np.array([_INF, _INF, -_INF, -_INF, 0, 0, 0, 0, _INF, _MAX, _MAX, -_MAX, 1], F32),
    np.array([0, 0, 0, 0, _INF, _INF, -_INF, -_INF, -_INF, -_MAX, -_MAX, _MAX, 2], F32),
    np.array([1, -1, 1, -1, 1, -1, 1, -1, 1, 1, -1, 1, 1], F32),
)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.1, 1.0])
def test_margin_ranking_infinite_inputs_match_mlx(xp: Any, margin: float, reduction: str) -> None:
    """max(0, margin - y (x1 - x2)) is 0 or inf for infinite scores (by hand:
    -y (x1 - x2) is -inf or +inf); a float32 TwoSum gave NaN (inf - inf) on
    MLX and JAX without x64."""
    mx = pytest.importorskip("mlx.core")
    mlx_losses = pytest.importorskip("mlx.nn.losses")
    want = np.array(
        mlx_losses.margin_ranking_loss(
            *[mx.array(a) for a in RANKING], margin=margin, reduction=reduction
        )
    )
    by_hand = np.array([0, _INF, _INF, 0, _INF, 0, 0, _INF, 0, 0, _INF, _INF, 1 + margin])
    if reduction == "none":
        np.testing.assert_allclose(want, by_hand, rtol=1e-6)
    out = al.margin_ranking_loss(
        *[xp.asarray(a) for a in RANKING], margin=margin, reduction=reduction
    )
    np.testing.assert_allclose(xp.to_numpy(out), want, rtol=1e-6)


def test_margin_ranking_infinite_pair_is_nan(xp: Any) -> None:
    """inf - inf has no value: NaN, as in MLX (Dask's NumPy says so with a
    RuntimeWarning when it computes: the NaN is the answer, not a discarded
    branch)."""
    x = np.array([_INF], F32)
    out = al.margin_ranking_loss(xp.asarray(x), xp.asarray(x), xp.asarray(ones(1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(xp.to_numpy(out)).all()


def test_multiclass_hinge_infinite_logits(xp: Any) -> None:
    """max(0, margin + max_other - x_target), by hand, on float32-only
    libraries too (the same TwoSum as margin_ranking_loss)."""
    x = np.array(
        [[_MAX, -_MAX, 0], [-_MAX, _MAX, 0], [_INF, 0, 0], [0, _INF, 0], [-_INF, 0, 1], [1, 2, 3]],
        F32,
    )
    t = np.array([0, 0, 0, 0, 0, 2])
    out = anyloss.multiclass_hinge_loss(xp.asarray(x), xp.asarray(t), margin=0.1)
    np.testing.assert_allclose(xp.to_numpy(out), [0, _INF, 0, _INF, _INF, 0], rtol=1e-6)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_sum_of_cancelling_huge_losses(xp: Any, reduction: str) -> None:
    """Per-example KL terms of +-3e38 (signed: exp(t) (t - x)) sum to 0 exactly.
    MLX's accurate sum adds them pairwise, 3e38 + 3e38 = inf, and its TwoSum
    then formed inf - inf = NaN; a correction that is not finite is dropped.
    MLX's own (sequential) sum gives 0, as does the exact sum."""
    x = np.array([[-3e38], [3e38], [-3e38], [3e38]], F32)
    out = al.kl_div_loss(xp.asarray(x), xp.asarray(zeros(4, 1)), reduction=reduction)
    assert float(xp.to_numpy(out)) == 0.0


# rows (anchor, positive, negative) with infinite entries; by hand (eps = 1e-6):
# d(a, pos) = inf, d(a, neg) finite: inf; the other way round: 0; both inf: NaN
TRIPLET = (
    np.array([[_INF, 0], [0, 0], [0, 0], [0, 0], [-_INF, 1], [_MAX, 0]], F32),
    np.array([[0, 0], [_INF, 0], [0, 0], [0, 0], [0, 1], [-_MAX, 0]], F32),
    np.array([[0, 0], [0, 0], [_INF, 0], [-_INF, _INF], [0, 1], [_MAX, 0]], F32),
)
TRIPLET_BY_HAND = np.array([np.nan, _INF, 0, 0, np.nan, _INF])  # the last: 2 FLT_MAX


@pytest.mark.parametrize("p", [2, 1, 3])
def test_triplet_infinite_inputs_match_mlx(xp: Any, p: int) -> None:
    """The scaled and error-free distance forms gave NaN (inf / inf, inf - inf)
    for an infinite positive or negative on every library; MLX's plain
    formula gives inf or 0."""
    mx = pytest.importorskip("mlx.core")
    mlx_losses = pytest.importorskip("mlx.nn.losses")
    want = np.array(mlx_losses.triplet_loss(*[mx.array(v) for v in TRIPLET], p=p))
    np.testing.assert_array_equal(want, TRIPLET_BY_HAND)
    out = al.triplet_loss(*[xp.asarray(v) for v in TRIPLET], p=p)
    with warnings.catch_warnings():  # Dask: inf - inf is the answer in two rows
        warnings.simplefilter("ignore", RuntimeWarning)
        got = xp.to_numpy(out)
    np.testing.assert_array_equal(got, want)
    if xp.has_float64 and p in (1, 2):  # float64: the double-double path
        out = al.triplet_loss(*[xp.asarray(v.astype(np.float64)) for v in TRIPLET], p=p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = xp.to_numpy(out)
        wide = TRIPLET_BY_HAND.copy()
        wide[-1] = 2.0 * _MAX  # (+ margin - sqrt(eps): below float64's resolution there)
        np.testing.assert_allclose(got, wide, rtol=1e-15)


@pytest.mark.parametrize("rows", [1, 40000])  # (40000 rows: the numba kernel on NumPy/torch)
@pytest.mark.parametrize("eps", [0.0, 1e-8])
def test_cosine_similarity_of_a_nan_entry_is_nan(xp: Any, eps: float, rows: int) -> None:
    """As MLX: a NaN entry makes its row NaN, also with eps = 0 (the norms'
    comparison with eps is False for NaN, which once chose a 0)."""
    if rows > 1 and xp.name not in ("numpy", "torch"):
        pytest.skip("the kernel rows: NumPy and PyTorch")
    a = np.tile(np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 2.0]], np.float32), (rows, 1))
    b = np.ones_like(a)
    out = xp.to_numpy(anyloss.cosine_similarity_loss(xp.asarray(a), xp.asarray(b), eps=eps))
    assert np.isnan(out[0]) and np.isnan(out[::2]).all()
    np.testing.assert_allclose(out[1], 5 / (3 * np.sqrt(3)), rtol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 1e-8])
def test_cosine_embedding_of_a_nan_entry_is_nan(xp: Any, eps: float) -> None:
    """A NaN entry, or an infinite one against a zero vector, makes the row
    NaN for both targets, also with eps = 0 (the norms' comparison with eps is
    False there, which once chose a cosine of 0: losses 1 and max(-margin, 0))."""
    a = np.array([[1.0, np.nan, 2.0], [np.inf, 1.0, 0.0], [1.0, 2.0, 2.0]], np.float32)
    b = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    for target in (1.0, -1.0):
        y = np.full(3, target, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = anyloss.cosine_embedding_loss(
                xp.asarray(a), xp.asarray(b), xp.asarray(y), margin=-0.5, eps=eps
            )
            got = xp.to_numpy(out)
        assert np.isnan(got[:2]).all(), (target, got)
        cos = 5 / (3 * np.sqrt(3))
        np.testing.assert_allclose(got[2], 1 - cos if target > 0 else cos + 0.5, rtol=1e-6)

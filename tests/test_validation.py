"""Input validation that points to the fix (issue 15, "Hardening").

Probabilities and binary targets outside [0, 1], padding labels without
``ignore_index``, PyTorch's keyword names, arrays on two devices, boolean
flags, NumPy subclasses and dtypes that are not real numbers, class indices
that cannot be checked (jit, compile, Dask), 0-d inputs and NaN options.

Expected values are hand arithmetic on all-zero logits: ``log(3)`` for a
3-class cross entropy, 0 for ``nll_loss``, ``(2/3)**2 log 3`` for the focal
loss with ``gamma=2`` and 1 for the multi-class hinge with margin 1.
"""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from backends import make

import anyloss

EAGER = ["numpy", "numpy_readonly", "array_api_strict", "torch", "jax", "mlx"]


def _eager(backend: str):
    return make(backend)


# ---------------------------------------------------------------------------
# 1. probabilities / binary targets outside [0, 1]
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", EAGER)
def test_bce_probabilities_outside_unit_interval(backend):
    lib = _eager(backend)
    p = lib.asarray(np.array([[0.2, 0.5], [2.5, 0.1]], np.float32))
    t = lib.asarray(np.array([[0, 1], [1, 0]], np.float32))
    with pytest.raises(ValueError) as info:
        anyloss.binary_cross_entropy(p, t, with_logits=False)
    message = str(info.value)
    assert "binary_cross_entropy" in message
    assert "inputs[1, 0] = 2.5" in message, message
    assert "with_logits=True" in message, message
    # negative too
    p = lib.asarray(np.array([0.5, -0.25], np.float32))
    with pytest.raises(ValueError, match=r"inputs\[1\] = -0.25"):
        anyloss.binary_cross_entropy(
            p, lib.asarray(np.array([1.0, 0.0], np.float32)), with_logits=False
        )


@pytest.mark.parametrize("backend", EAGER)
def test_bce_targets_outside_unit_interval(backend):
    lib = _eager(backend)
    x = lib.asarray(np.array([0.3, -1.0, 2.0], np.float32))
    t = lib.asarray(np.array([1, -1, 1], np.float32))
    for with_logits in (True, False):
        inputs = x if with_logits else lib.asarray(np.array([0.3, 0.4, 0.9], np.float32))
        with pytest.raises(ValueError) as info:
            anyloss.binary_cross_entropy(inputs, t, with_logits=with_logits)
        message = str(info.value)
        assert "targets[1] = -1" in message, message
        assert "{0, 1}" in message and "hinge_loss" in message, message
    with pytest.raises(ValueError, match=r"targets\[1\] = -1"):
        anyloss.sigmoid_focal_loss(x, t)


def test_bce_boundaries_and_nan_still_propagate():
    # 0 and 1 are valid probabilities (the -100 floor), soft targets too
    out = anyloss.binary_cross_entropy(
        np.array([0.0, 1.0, 0.5]),
        np.array([0.0, 1.0, 0.25]),
        with_logits=False,
        reduction="none",
    )
    np.testing.assert_allclose(out, [0.0, 0.0, math.log(2)], rtol=1e-15)
    # NaN is not "outside [0, 1]": NaN in gives NaN out, as before
    out = anyloss.binary_cross_entropy(
        np.array([0.5, np.nan]), np.array([1.0, 0.0]), with_logits=False, reduction="none"
    )
    assert out[0] == pytest.approx(math.log(2)) and np.isnan(out[1])
    out = anyloss.binary_cross_entropy(
        np.array([0.5, 0.5]), np.array([np.nan, 1.0]), reduction="none"
    )
    assert np.isnan(out[0]) and np.isfinite(out[1])
    # a NaN next to a bad value: the bad value is still reported
    with pytest.raises(ValueError, match=r"inputs\[2\] = 3"):
        anyloss.binary_cross_entropy(np.array([np.nan, 0.5, 3.0]), np.zeros(3), with_logits=False)


def test_bce_unit_interval_not_checked_where_values_are_not_concrete():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = jax.jit(lambda p, t: anyloss.binary_cross_entropy(p, t, with_logits=False))
    assert np.isnan(float(f(jnp.array([0.5, 2.0]), jnp.array([1.0, 0.0]))))
    da = pytest.importorskip("dask.array")
    out = anyloss.binary_cross_entropy(
        da.from_array(np.array([0.5, 2.0]), chunks=1), np.array([1.0, 0.0]), with_logits=False
    )
    with np.errstate(invalid="ignore"):  # the caller's compute: log1p(-2)
        assert np.isnan(float(out.compute()))


def test_bce_unit_interval_on_torch_keeps_gradients_and_meta():
    torch = pytest.importorskip("torch")
    p = torch.tensor([0.25, 0.75], requires_grad=True)
    anyloss.binary_cross_entropy(p, torch.tensor([0.0, 1.0]), with_logits=False).backward()
    np.testing.assert_allclose(p.grad.numpy(force=True), [0.5 / 0.75, -0.5 / 0.75], rtol=1e-6)
    # meta tensors have no values: no check, no error
    out = anyloss.binary_cross_entropy(
        torch.zeros(3, device="meta"), torch.zeros(3, device="meta"), with_logits=False
    )
    assert out.device.type == "meta"


# ---------------------------------------------------------------------------
# 2. negative padding labels suggest ignore_index
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", EAGER)
@pytest.mark.parametrize("pad", [-1, -100])
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_negative_label_suggests_ignore_index(backend, pad, name):
    lib = _eager(backend)
    logits = lib.asarray(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError) as info:
        getattr(anyloss, name)(logits, lib.asarray(np.array([1, pad, 2], np.int32)))
    message = str(info.value)
    assert f"targets[1] = {pad}" in message, message
    assert f"ignore_index={pad}" in message, message


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_too_large_label_does_not_suggest_ignore_index(name):
    with pytest.raises(ValueError) as info:
        getattr(anyloss, name)(np.zeros((3, 4)), np.array([1, 4, 2]))
    assert "ignore_index" not in str(info.value)


@pytest.mark.parametrize("name", ["softmax_focal_loss", "multiclass_hinge_loss"])
def test_no_ignore_index_hint_where_the_loss_has_none(name):
    assert "ignore_index" not in inspect.signature(getattr(anyloss, name)).parameters
    with pytest.raises(ValueError) as info:
        getattr(anyloss, name)(np.zeros((3, 4)), np.array([1, -1, 2]))
    assert "targets[1] = -1" in str(info.value)
    assert "ignore_index" not in str(info.value)


# ---------------------------------------------------------------------------
# 3. the ignore_index message for probability targets says what is true
# ---------------------------------------------------------------------------


def test_ignore_index_with_probability_targets_message_is_true():
    logits = np.zeros((2, 3))
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError) as info:
        anyloss.cross_entropy(logits, probs, ignore_index=-100)
    message = str(info.value)
    assert "weights=" in message, message
    assert "give a target row of zeros to drop" not in message
    # what it says: a zero row still adds its logsumexp (log 3 here) ...
    rows = anyloss.cross_entropy(logits, probs)
    np.testing.assert_allclose(rows, [math.log(3), math.log(3)], rtol=1e-15)
    # ... and weights of 0 drop the example from the sum
    out = anyloss.cross_entropy(logits, probs, weights=np.array([1.0, 0.0]), reduction="sum")
    np.testing.assert_allclose(out, math.log(3), rtol=1e-15)


# ---------------------------------------------------------------------------
# 4. class weights passed as weights=, PyTorch's keyword names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax", "mlx", "dask"])
def test_class_weights_passed_as_weights(backend):
    lib = make(backend)
    logits = lib.asarray(np.zeros((4, 3), np.float32))
    idx = lib.asarray(np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError) as info:
        anyloss.cross_entropy(logits, idx, weights=lib.asarray(np.ones(3, np.float32)))
    message = str(info.value)
    assert "(3,)" in message and "(4,)" in message, message
    assert "class_weights=" in message, message
    with pytest.raises(ValueError, match="alpha="):
        anyloss.softmax_focal_loss(logits, idx, weights=lib.asarray(np.ones(3, np.float32)))


def test_weight_keyword_names_weights_and_class_weights():
    x, idx = np.zeros((4, 3)), np.array([0, 1, 2, 0])
    with pytest.raises(TypeError) as info:
        anyloss.cross_entropy(x, idx, weight=np.ones(3))
    message = str(info.value)
    assert "'weight'" in message and "weights=" in message and "class_weights=" in message
    with pytest.raises(TypeError) as info:
        anyloss.nll_loss(x, idx, weight=np.ones(3))
    assert "class_weights=" in str(info.value)
    with pytest.raises(TypeError) as info:
        anyloss.nll_loss(x, idx, weights=np.ones(4))
    assert "class_weights=" in str(info.value)
    with pytest.raises(TypeError) as info:
        anyloss.binary_cross_entropy(x, x, weight=np.ones((4, 3)))
    assert "weights=" in str(info.value)
    with pytest.raises(TypeError) as info:
        anyloss.mse_loss(x, x, weight=np.ones((4, 3)))
    assert "'weight'" in str(info.value) and "no weights" in str(info.value)


@pytest.mark.parametrize(
    "name, kw, hint",
    [
        ("mse_loss", "size_average", "reduction="),
        ("cross_entropy", "reduce", "reduction="),
        ("cross_entropy", "dim", "axis="),
        ("cross_entropy", "pos_weight", "binary_cross_entropy"),
        ("mse_loss", "ignore_index", "cross_entropy"),
        ("l1_loss", "redution", "reduction="),  # a typo: the keywords are listed
    ],
)
def test_foreign_keywords_get_a_hint(name, kw, hint):
    with pytest.raises(TypeError) as info:
        getattr(anyloss, name)(np.zeros((4, 3)), np.array([0, 1, 2, 0]), **{kw: 1})
    message = str(info.value)
    assert f"'{kw}'" in message and hint in message, message


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in anyloss.__all__
        if n.endswith("_loss") or n in ("cross_entropy", "binary_cross_entropy")
    ],
)
def test_decorator_keeps_the_signature(name):
    fn = getattr(anyloss, name)
    sig = inspect.signature(fn)
    assert sig == inspect.signature(fn.__wrapped__)
    assert "kwargs" not in sig.parameters and "reduction" in sig.parameters
    assert fn.__name__ == name and fn.__doc__


# ---------------------------------------------------------------------------
# 5. arrays of one library on two devices
# ---------------------------------------------------------------------------


def test_torch_arrays_on_two_devices():
    torch = pytest.importorskip("torch")
    meta = torch.zeros((4, 3), device="meta")
    with pytest.raises(ValueError) as info:
        anyloss.cross_entropy(meta, torch.tensor([0, 1, 2, 0]))
    message = str(info.value)
    assert "logits" in message and "targets" in message
    assert "meta" in message and "cpu" in message, message
    assert "take_along" not in message
    with pytest.raises(ValueError, match=r"weights.*meta|meta.*weights"):
        anyloss.binary_cross_entropy(
            torch.zeros(4), torch.zeros(4), weights=torch.ones(4, device="meta")
        )
    # NumPy and Python data still follow the prediction's device
    out = anyloss.mse_loss(meta, np.ones((4, 3)))
    assert out.device.type == "meta"


def test_jax_arrays_on_two_devices():
    """Two host devices need an XLA flag set before JAX starts: a subprocess."""
    pytest.importorskip("jax")
    code = textwrap.dedent("""
        import jax, numpy as np, anyloss
        d = jax.devices()
        assert len(d) == 2, d
        a = jax.device_put(np.zeros(3, np.float32), d[0])
        b = jax.device_put(np.ones(3, np.float32), d[1])
        try:
            anyloss.mse_loss(a, b)
        except ValueError as e:
            print("ERROR", e)
        # uncommitted arrays (not placed by the caller) follow the others
        print("OK", float(anyloss.mse_loss(b, jax.numpy.zeros(3))))
    """)
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    error = next(line for line in result.stdout.splitlines() if line.startswith("ERROR"))
    assert "predictions" in error and "targets" in error, error
    assert "cpu:0" in error and "cpu:1" in error, error
    assert "OK 1.0" in result.stdout


# ---------------------------------------------------------------------------
# 6. boolean flags
# ---------------------------------------------------------------------------

X = np.array([[0.5, 1.0], [2.0, 0.25]])
FLAG_CALLS = [
    (
        "binary_cross_entropy",
        "with_logits",
        lambda **k: anyloss.binary_cross_entropy(X / 4, X / 4, **k),
    ),
    ("gaussian_nll_loss", "full", lambda **k: anyloss.gaussian_nll_loss(X, X, X, **k)),
    ("poisson_nll_loss", "log_input", lambda **k: anyloss.poisson_nll_loss(X, X, **k)),
    ("poisson_nll_loss", "full", lambda **k: anyloss.poisson_nll_loss(X, X, **k)),
    ("info_nce_loss", "normalize", lambda **k: anyloss.info_nce_loss(X, X, **k)),
    ("info_nce_loss", "symmetric", lambda **k: anyloss.info_nce_loss(X, X, **k)),
]


@pytest.mark.parametrize(
    "name, flag, call", FLAG_CALLS, ids=[f"{c[0]}-{c[1]}" for c in FLAG_CALLS]
)
@pytest.mark.parametrize("value", ["false", "True", 1, 0, None, 0.0, [True]])
def test_flags_must_be_bools(name, flag, call, value):
    with pytest.raises(TypeError) as info:
        call(**{flag: value})
    message = str(info.value)
    assert name in message and flag in message, message


@pytest.mark.parametrize(
    "name, flag, call", FLAG_CALLS, ids=[f"{c[0]}-{c[1]}" for c in FLAG_CALLS]
)
def test_numpy_bools_are_flags(name, flag, call):
    for value in (True, False):
        want = call(**{flag: value})
        np.testing.assert_array_equal(call(**{flag: np.bool_(value)}), want)
        np.testing.assert_array_equal(call(**{flag: np.array(value)}), want)


def test_ctc_zero_infinity_must_be_a_bool():
    logp = np.log(np.full((2, 1, 3), 1 / 3))
    with pytest.raises(TypeError, match="zero_infinity"):
        anyloss.ctc_loss(
            logp, np.array([[1]]), np.array([2]), np.array([1]), zero_infinity="false"
        )


# ---------------------------------------------------------------------------
# 7. np.matrix and masked arrays
# ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself
def test_numpy_matrix_is_a_plain_array():
    m = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    out = anyloss.mse_loss(m, np.zeros((2, 2)))
    assert not isinstance(out, np.matrix) and np.ndim(out) == 0
    assert float(out) == 7.5  # (1 + 4 + 9 + 16) / 4; m * m would give 13.5
    assert float(anyloss.mse_loss(np.zeros((2, 2)), m)) == 7.5
    assert float(anyloss.l1_loss(m, np.matrix(np.zeros((2, 2))), reduction="sum")) == 10.0
    ce = anyloss.cross_entropy(np.matrix(np.zeros((2, 3))), np.array([0, 2]))
    np.testing.assert_allclose(ce, [math.log(3)] * 2, rtol=1e-15)


@pytest.mark.parametrize("which", [0, 1])
def test_masked_arrays_are_refused(which):
    masked = np.ma.array([1.0, 2.0, 100.0], mask=[False, False, True])
    args = [np.zeros(3), np.zeros(3)]
    args[which] = masked
    with pytest.raises(TypeError) as info:
        anyloss.mse_loss(*args)
    message = str(info.value)
    assert "masked" in message and ".filled(" in message and ".compressed()" in message
    with pytest.raises(TypeError, match="masked"):
        anyloss.binary_cross_entropy(np.zeros(3), np.zeros(3), weights=masked)


# ---------------------------------------------------------------------------
# 8. dtypes that are not real numbers
# ---------------------------------------------------------------------------

BAD_NUMPY = [
    np.array([1 + 2j, 0j]),
    np.array(["1.5", "2"]),
    np.array([1.0, 2.0], dtype=object),
    np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"),
    np.array([1, 2], dtype="timedelta64[s]"),
]


@pytest.mark.parametrize("bad", BAD_NUMPY, ids=lambda a: str(a.dtype))
@pytest.mark.parametrize("position", [0, 1])
def test_numpy_arrays_that_are_not_real_numbers(bad, position):
    args = [np.zeros(2), np.zeros(2)]
    args[position] = bad
    with pytest.raises(TypeError) as info:
        anyloss.mse_loss(*args)
    message = str(info.value)
    assert "real numbers" in message and str(bad.dtype) in message, message


@pytest.mark.parametrize("backend", ["torch", "jax", "mlx", "dask", "array_api_strict"])
def test_complex_arrays_of_other_libraries(backend):
    lib = make(backend)
    if backend == "array_api_strict":
        z = lib.module.asarray(np.array([1 + 1j, 2]))
    elif backend == "dask":
        z = lib.module.from_array(np.array([1 + 1j, 2j]))
    elif backend == "jax":
        z = lib.module.numpy.asarray(np.array([1 + 1j, 2j], np.complex64))
    else:
        z = lib.asarray(np.array([1 + 1j, 2j], np.complex64))
    real = lib.asarray(np.zeros(2, np.float32))
    for args in ((z, real), (real, z)):
        with pytest.raises(TypeError, match="complex"):
            anyloss.mse_loss(*args)
    # bool and integer predictions stay allowed
    out = anyloss.mse_loss(lib.asarray(np.array([True, False])), lib.asarray(np.array([1, 1])))
    assert float(lib.to_numpy(out)) == 0.5


# ---------------------------------------------------------------------------
# 9. out-of-range class indices where they cannot be checked give NaN
# ---------------------------------------------------------------------------

ZERO_LOGIT_LOSS = {
    "cross_entropy": math.log(3),
    "nll_loss": 0.0,
    "softmax_focal_loss": (2 / 3) ** 2 * math.log(3),
    "multiclass_hinge_loss": 1.0,
}
TARGETS = np.array([0, 3, -1, 2, 7, 1])
BAD_ROWS = np.array([False, True, True, False, True, False])


def _check_rows(out, name, ignored=None):
    out = np.asarray(out, np.float64)
    want = np.where(BAD_ROWS, np.nan, ZERO_LOGIT_LOSS[name])
    if ignored is not None:
        want = np.where(ignored, 0.0, want)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(ZERO_LOGIT_LOSS))
def test_unchecked_indices_give_nan_under_jit(name):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = jax.jit(lambda x, t: getattr(anyloss, name)(x, t, reduction="none"))
    _check_rows(f(jnp.zeros((6, 3)), jnp.asarray(TARGETS)), name)
    g = jax.jit(lambda x, t: getattr(anyloss, name)(x, t, reduction="mean"))
    assert np.isnan(float(g(jnp.zeros((6, 3)), jnp.asarray(TARGETS))))


@pytest.mark.parametrize("name", list(ZERO_LOGIT_LOSS))
def test_unchecked_indices_give_nan_under_mx_compile(name):
    mx = pytest.importorskip("mlx.core")
    f = mx.compile(lambda x, t: getattr(anyloss, name)(x, t, reduction="none"))
    _check_rows(np.array(f(mx.zeros((6, 3)), mx.array(TARGETS))), name)


@pytest.mark.parametrize("name", list(ZERO_LOGIT_LOSS))
def test_unchecked_indices_give_nan_on_dask(name):
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")

    def scheduler(dsk, keys, **kwargs):
        raise AssertionError("anyloss computed the Dask graph")

    with dask.config.set(scheduler=scheduler):
        out = getattr(anyloss, name)(
            da.zeros((6, 3), chunks=2), da.from_array(TARGETS, chunks=2), reduction="none"
        )
    _check_rows(out.compute(), name)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_unchecked_indices_keep_ignored_rows_at_zero(name):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = jax.jit(lambda x, t: getattr(anyloss, name)(x, t, ignore_index=-1))
    # -1 is ignored: its row is 0, not NaN; 3 and 7 stay NaN
    _check_rows(f(jnp.zeros((6, 3)), jnp.asarray(TARGETS)), name, ignored=TARGETS == -1)
    da = pytest.importorskip("dask.array")
    out = getattr(anyloss, name)(
        da.zeros((6, 3), chunks=2), da.from_array(TARGETS, chunks=2), ignore_index=-1
    )
    _check_rows(out.compute(), name, ignored=TARGETS == -1)


def test_unchecked_valid_indices_are_unchanged_and_differentiable():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    t = np.array([0, 2, 1, 1])
    f = jax.jit(lambda x, t: anyloss.cross_entropy(x, t, reduction="sum"))
    want = anyloss.cross_entropy(x, t, reduction="sum")
    np.testing.assert_allclose(float(f(jnp.asarray(x), jnp.asarray(t))), want, rtol=1e-6)
    grad = jax.jit(jax.grad(lambda x: anyloss.cross_entropy(x, jnp.asarray(t), reduction="sum")))
    g = np.asarray(grad(jnp.asarray(x)))
    soft = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(g, soft - np.eye(3)[t], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# 10. 0-d inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda s: anyloss.kl_div_loss(s, s),
        lambda s: anyloss.cosine_similarity_loss(s, s),
        lambda s: anyloss.triplet_loss(s, s, s),
        lambda s: anyloss.cosine_embedding_loss(s, s, np.array(1.0)),
        lambda s: anyloss.dice_loss(s, s, axis=-1),
    ],
    ids=["kl_div", "cosine_similarity", "triplet", "cosine_embedding", "dice"],
)
def test_zero_dimensional_inputs(call):
    with pytest.raises(ValueError) as info:
        call(np.array(0.5, np.float32))
    message = str(info.value)
    assert "0-d" in message and "at least 1 dimension" in message, message
    assert "-0 <=" not in message


# ---------------------------------------------------------------------------
# 11. NaN options
# ---------------------------------------------------------------------------

NAN = float("nan")


@pytest.mark.parametrize(
    "name, call",
    [
        ("pos_weight", lambda: anyloss.binary_cross_entropy(X, X / 4, pos_weight=NAN)),
        ("pos_weight", lambda: anyloss.binary_cross_entropy(X, X / 4, pos_weight=np.float64(NAN))),
        ("pos_weight", lambda: anyloss.binary_cross_entropy(X, X / 4, pos_weight=np.array(NAN))),
        (
            "pos_weight",
            lambda: anyloss.binary_cross_entropy(X, X / 4, pos_weight=np.array([1.0, NAN])),
        ),
        (
            "class_weights",
            lambda: anyloss.cross_entropy(X, np.array([0, 1]), class_weights=[1.0, NAN]),
        ),
        ("alpha", lambda: anyloss.softmax_focal_loss(X, np.array([0, 1]), alpha=[NAN, 1.0])),
        ("alpha", lambda: anyloss.sigmoid_focal_loss(X, X / 4, alpha=NAN)),
        ("gamma", lambda: anyloss.sigmoid_focal_loss(X, X / 4, gamma=NAN)),
        (
            "label_smoothing",
            lambda: anyloss.cross_entropy(X, np.array([0, 1]), label_smoothing=NAN),
        ),
        ("margin", lambda: anyloss.triplet_loss(X, X, X, margin=NAN)),
        ("margin", lambda: anyloss.margin_ranking_loss(X, X, np.ones((2, 2)), margin=NAN)),
        ("beta", lambda: anyloss.smooth_l1_loss(X, X, beta=NAN)),
        ("delta", lambda: anyloss.huber_loss(X, X, delta=NAN)),
        ("eps", lambda: anyloss.gaussian_nll_loss(X, X, X, eps=NAN)),
        ("temperature", lambda: anyloss.info_nce_loss(X, X, temperature=NAN)),
        ("smooth", lambda: anyloss.dice_loss(X, X, smooth=NAN)),
    ],
)
def test_nan_options_are_refused(name, call):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert name in message and "nan" in message.lower(), message


def test_pos_weight_nan_on_torch():
    torch = pytest.importorskip("torch")
    x = torch.zeros((2, 2))
    with pytest.raises(ValueError, match=r"pos_weight\[1\] is NaN"):
        anyloss.binary_cross_entropy(x, x, pos_weight=torch.tensor([1.0, float("nan")]))
    # a finite pos_weight is fine, including inf-free large values
    out = anyloss.binary_cross_entropy(x, torch.ones((2, 2)), pos_weight=torch.tensor([1.0, 3.0]))
    np.testing.assert_allclose(float(out), 2 * math.log(2), rtol=1e-6)

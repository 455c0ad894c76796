"""The XLA FFI handlers that run anyloss's kernels inside JAX programs
(``anyloss.kernels._xla_ffi``): results in place, errors raised, no copies."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from anyloss.kernels import _xla_ffi  # noqa: E402


def _twice_plus(operands, results):
    x, y = operands
    (out,) = results
    np.multiply(x, 2, out=out)
    out += y


def _call(name, x, y):
    out = jax.ShapeDtypeStruct(x.shape, x.dtype)
    return jax.ffi.ffi_call(name, out, vmap_method="broadcast_all")(x, y)


@pytest.mark.parametrize("dtype", ["float32", "int32", "float16", "uint8"])
def test_results_are_written_in_place(dtype):
    name = _xla_ffi.target(("test", "twice_plus"), _twice_plus)
    x = jnp.asarray(np.arange(12).reshape(3, 4), dtype=dtype)
    y = jnp.ones((3, 4), dtype=dtype)
    expected = np.arange(12).reshape(3, 4) * 2 + 1
    np.testing.assert_array_equal(np.asarray(_call(name, x, y)), expected)
    jitted = jax.jit(_call, static_argnums=0)(name, x, y)
    np.testing.assert_array_equal(np.asarray(jitted), expected)
    batched = jax.vmap(lambda a: _call(name, a, y[0]))(x)  # y broadcast to the batch
    np.testing.assert_array_equal(np.asarray(batched), expected)


def test_a_key_has_one_target():
    a = _xla_ffi.target(("test", "same"), _twice_plus)
    assert _xla_ffi.target(("test", "same"), _twice_plus) == a
    assert _xla_ffi.target(("test", "other"), _twice_plus) != a


def test_empty_operands():
    name = _xla_ffi.target(("test", "twice_plus"), _twice_plus)
    x = jnp.zeros((0, 3), dtype=jnp.float32)
    assert _call(name, x, x).shape == (0, 3)


def test_an_exception_is_raised_by_jax_with_its_message():
    def fail(operands, results):
        raise ValueError("the kernel saw a bad row 7")

    name = _xla_ffi.target(("test", "fail"), fail)
    x = jnp.ones(3)
    with pytest.raises(Exception, match="ValueError: the kernel saw a bad row 7"):
        np.asarray(jax.jit(_call, static_argnums=0)(name, x, x))


def test_operands_are_not_copied():
    """The handler reads XLA's own buffer: the jitted function's argument."""
    seen = []

    def record(operands, results):
        seen.append(operands[0].__array_interface__["data"][0])
        results[0][...] = operands[0]

    name = _xla_ffi.target(("test", "record"), record)
    x = jnp.arange(1 << 16, dtype=jnp.float32)
    np.asarray(jax.jit(_call, static_argnums=0)(name, x, x))
    assert seen == [x.unsafe_buffer_pointer()]

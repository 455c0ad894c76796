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


_CE_IN_A_FRESH_PROCESS = """
import numpy as np, jax, jax.numpy as jnp, anyloss
from anyloss import kernels
from anyloss.kernels import _registry
used = []
lookup = _registry.lookup
_registry.lookup = lambda *a: used.append(lookup(*a)) or used[-1]
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((256, 512), dtype=np.float32))
t = jnp.asarray(rng.integers(0, 512, 256))
f = jax.jit(jax.value_and_grad(lambda x: anyloss.cross_entropy(x, t, reduction="mean")))
value, grad = f(x)
assert used[-1] is not None and used[-1].name == "numba", used
with kernels.generic():
    ref, ref_grad = jax.value_and_grad(lambda x: anyloss.cross_entropy(x, t, reduction="mean"))(x)
print(abs(float(value) - float(ref)) / float(ref), float(jnp.abs(grad - ref_grad).max()))
"""


def test_first_jax_call_in_a_fresh_process():
    """A new process registers the FFI target and gets the kernel's value
    and gradient under ``jax.jit`` (the default entries, without x64)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _CE_IN_A_FRESH_PROCESS],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    value_err, grad_err = map(float, out.stdout.split())
    assert value_err <= 4 * 2.0**-24 and grad_err <= 1e-8


def test_concurrent_jax_calls_agree_with_one_call():
    """Threads running jitted kernel calls at once (each handler call takes
    the GIL and the kernels' own threads) give what one call gives."""
    import threading

    import anyloss

    rng = np.random.default_rng(5)
    xs = [jnp.asarray(rng.standard_normal((256, 512), dtype=np.float32)) for _ in range(4)]
    t = jnp.asarray(rng.integers(0, 512, 256))
    f = jax.jit(jax.value_and_grad(lambda x: anyloss.cross_entropy(x, t, reduction="sum")))
    expected = [tuple(np.asarray(a) for a in f(x)) for x in xs]
    results: list = [None] * 4

    def run(i):
        for _ in range(5):
            results[i] = tuple(np.asarray(a) for a in f(xs[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for got, want in zip(results, expected, strict=True):
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])

"""The kernel tests (forward and gradient kernels) again, compiled for a plain AVX2 CPU.

numba compiles for the CPU it runs on, and float32 sums vectorize with as
many lanes as that CPU has: 16 with AVX-512, 8 with AVX2. Accuracy bounds
measured on one CPU can fail on the other (the float32 cross entropy was 1 ulp
off on an AVX-512 Xeon and 5 ulp on an AVX2-only EPYC), so on an x86-64
machine ``tests/test_kernels.py`` runs a second time in a subprocess whose
kernels target Haswell: ``NUMBA_CPU_NAME=haswell`` with the matching
``NUMBA_CPU_FEATURES`` (the name alone keeps the host's features, AVX-512
included). numba's on-disk cache keys compiled code by target, so the two
builds share it without mixing.
"""

from __future__ import annotations

import os
import pathlib
import platform
import subprocess
import sys

import pytest

# numba's CPU kernels (skipped on another ANYLOSS_TEST_DEVICE)
pytestmark = pytest.mark.cpu_only

pytest.importorskip("numba")

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: The features of a Haswell-class CPU (AVX2 and FMA, no AVX-512), which any
#: x86-64 CPU of the last decade has.
AVX2_FEATURES = ",".join(
    f"+{f}"
    for f in (
        "64bit", "sse", "sse2", "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt",
        "cx16", "avx", "avx2", "fma", "f16c", "bmi", "bmi2", "lzcnt", "movbe",
    )
)  # fmt: skip
AVX2_ENV = {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": AVX2_FEATURES}

on_x86_64 = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="the AVX2 target exists on x86-64 only",
)


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **AVX2_ENV}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
    )


@on_x86_64
def test_the_avx2_target_compiles_without_avx512() -> None:
    """The environment above really gives AVX2 code: a vectorized float32 sum
    uses 256-bit registers and no 512-bit ones."""
    code = (
        "import numpy as np, numba\n"
        "@numba.njit(fastmath=True)\n"
        "def total(a):\n"
        "    s = np.float32(0)\n"
        "    for v in a:\n"
        "        s += v\n"
        "    return s\n"
        "total(np.ones(64, np.float32))\n"
        "print(total.inspect_asm(total.signatures[0]))\n"
    )
    done = _run(["-c", code])
    assert done.returncode == 0, done.stderr
    assert "ymm" in done.stdout
    assert "zmm" not in done.stdout


@on_x86_64
def test_kernel_suite_on_an_avx2_target() -> None:
    done = _run(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", "tests/test_kernels.py"])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


@on_x86_64
def test_gradient_kernels_on_an_avx2_target() -> None:
    """The gradient kernels' bounds (4 ulp of float64 autograd, losses bit for
    bit the forward kernels') hold for AVX2 code too."""
    files = [
        "tests/test_kernel_grads_softmax.py",
        "tests/test_kernel_grads_elementwise.py",
        "tests/test_kernel_grads_embedding.py",
        "tests/test_linear_tiles.py",
    ]
    done = _run(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", *files])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout

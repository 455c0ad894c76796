"""Running the ``anyloss`` command in the CLI tests (one copy for every file)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest


def executable() -> list[str]:
    here = pathlib.Path(sys.executable).with_name("anyloss")
    found = str(here) if here.exists() else shutil.which("anyloss")
    if found is None:
        pytest.fail("the `anyloss` command is not installed: pip install -e '.[cli]'")
    return [found]


def run(*args: object, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    """``anyloss ARGS``, its output captured (``timeout`` only bounds a hang)."""
    return subprocess.run(
        [*executable(), *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
    )


def result(*args: object, timeout: float = 120) -> dict:
    """``anyloss eval ... --json``: the JSON line, after checking the run succeeded."""
    proc = run("eval", *args, "--json", timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fails(*args: object, timeout: float = 120) -> str:
    """Run a command that must fail as a user error: exit 2, one line, no traceback."""
    proc = run(*args, timeout=timeout)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anyloss: error: "), proc.stderr
    return lines[0]


def close(got: float, want: np.ndarray) -> None:
    """A CLI result equals the Python function's to float rounding."""
    rtol = 1e-6 if want.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, float(want), rtol=rtol)

"""What the tests of the Triton kernels share (``tests/test_triton*.py``).

Their modules use ``conftest.py``'s ``triton_on_cpu`` fixture in every test
(``pytestmark = pytest.mark.usefixtures("triton_on_cpu")``).
"""

from __future__ import annotations

from typing import Any

import pytest

from anyloss import kernels

pytest.importorskip("triton")
torch = pytest.importorskip("torch")

TRITON_BOUND = 4.0  # ulp, as NUMPY_BOUND in test_accuracy.py
INF = float("inf")
NAN = float("nan")

__all__ = ["INF", "NAN", "TRITON_BOUND", "both"]


def both(fn: Any, *arrays: Any, **kw: Any) -> tuple[Any, Any, Any, Any]:
    """(value, gradient) through the Triton entry and through the generic code."""
    results = []
    for generic in (False, True):
        first = arrays[0].detach().clone().requires_grad_(True)
        if generic:
            with kernels.generic():
                out = fn(first, *arrays[1:], **kw)
        else:
            out = fn(first, *arrays[1:], **kw)
        (grad,) = torch.autograd.grad(out.sum(), first)
        results += [out.detach(), grad]
    return results[0], results[1], results[2], results[3]

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

__all__ = ["INF", "NAN", "TRITON_BOUND", "both", "compiled_and_generic"]


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


def compiled_and_generic(step: Any, x: Any) -> tuple[Any, Any, Any, Any]:
    """``step(x)`` and its gradient by ``x`` under ``torch.compile(fullgraph=True)``
    (the Triton entries), then through the generic code, eagerly."""
    import torch._dynamo as dynamo

    dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    first = x.clone().requires_grad_(True)
    out = compiled(first)
    (grad,) = torch.autograd.grad(out, first)
    with kernels.generic():
        want_first = x.clone().requires_grad_(True)
        want = step(want_first)
    (want_grad,) = torch.autograd.grad(want, want_first)
    return out, grad, want, want_grad

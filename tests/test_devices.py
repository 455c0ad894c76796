"""Every array anyloss creates is on its input's device.

PyTorch's ``meta`` device has shapes and dtypes but no values: a loss whose
code builds a tensor without ``device=`` (a CPU tensor) fails there with
"Tensor on device meta is not on the expected device cpu", and one that reads
a value on the way (``.item()``, a host sync) fails too. Every public loss,
forward and backward, with the options that create arrays of their own
(class weights, ignored rows, probability targets, label smoothing, ...),
runs on ``meta``, and on ``ANYLOSS_TEST_DEVICE`` where that is a GPU (there
the values are also compared with the same call on the CPU).

JAX: a subprocess with two host devices puts every input on the second; the
values and gradients must stay there (JAX refuses to combine arrays committed
to different devices).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from backends import DEVICE

import anyloss

torch = pytest.importorskip("torch")
from torch_cases import C, Case, N, cases, public_losses  # noqa: E402

DEVICES = ["meta"] + ([DEVICE] if DEVICE != "cpu" else [])
REDUCTIONS = ("none", "mean", "sum")


def _option_cases() -> dict[str, Case]:
    """More options of the losses that build arrays from them, and other dtypes."""
    rng = np.random.default_rng(1)

    def f(*shape: int, dtype: Any = torch.float32) -> Any:
        return torch.tensor(rng.normal(size=shape), dtype=dtype)

    def unit(*shape: int) -> Any:
        return torch.tensor(rng.uniform(0.05, 0.95, shape), dtype=torch.float32)

    idx = torch.tensor(rng.integers(0, C, N))
    bits = torch.tensor(rng.integers(0, 2, (N, C)), dtype=torch.float32)
    steps, labels = 6, 5
    return {
        "cross_entropy_weights_axis": (
            anyloss.cross_entropy,
            [f(N, C, 3), torch.tensor(rng.integers(0, C, (N, 3)))],
            {"weights": unit(N, 3), "axis": 1, "label_smoothing": 0.2},
        ),
        "cross_entropy_float64": (anyloss.cross_entropy, [f(N, C, dtype=torch.float64), idx], {}),
        "cross_entropy_bfloat16": (
            anyloss.cross_entropy,
            [f(N, C, dtype=torch.bfloat16), idx],
            {"class_weights": unit(C), "ignore_index": 2},
        ),
        "binary_cross_entropy_weights": (
            anyloss.binary_cross_entropy,
            [unit(N, C), bits],
            {"weights": unit(N, C), "with_logits": False},
        ),
        "nll_loss_options": (
            anyloss.nll_loss,
            [torch.log_softmax(f(N, C), -1), idx],
            {"class_weights": unit(C), "ignore_index": 0},
        ),
        "kl_div_loss_axis0": (
            anyloss.kl_div_loss,
            [torch.log_softmax(f(N, C), 0), torch.log_softmax(f(N, C), 0)],
            {"axis": 0},
        ),
        "softmax_focal_loss_alpha": (
            anyloss.softmax_focal_loss,
            [f(N, C), torch.softmax(f(N, C), -1)],
            {"alpha": unit(C), "weights": unit(N), "gamma": 0.5},
        ),
        "sigmoid_focal_loss_no_alpha": (
            anyloss.sigmoid_focal_loss,
            [f(N, C), bits],
            {"alpha": None, "weights": unit(N, C)},
        ),
        "poisson_nll_loss_rates": (
            anyloss.poisson_nll_loss,
            [unit(N, C) + 0.5, 3 * unit(N, C)],
            {"log_input": False, "full": True},
        ),
        "gaussian_nll_loss_float64": (
            anyloss.gaussian_nll_loss,
            [f(N, C, dtype=torch.float64), f(N, C), unit(N, C).double() + 0.5],
            {},
        ),
        "triplet_loss_p3": (anyloss.triplet_loss, [f(N, C), f(N, C), f(N, C)], {"p": 3}),
        "dice_loss_all_axes": (anyloss.dice_loss, [unit(N, C), bits], {"axis": None}),
        "info_nce_loss_raw": (anyloss.info_nce_loss, [f(N, C), f(N, C)], {"normalize": False}),
        "linear_cross_entropy_options": (
            anyloss.linear_cross_entropy,
            [f(N, C), f(7, C), torch.tensor(rng.integers(0, 7, N))],
            {"ignore_index": 3, "class_weights": unit(7), "chunk_size": (2, 3)},
        ),
        "ctc_loss_options": (
            anyloss.ctc_loss,
            [
                torch.log_softmax(f(2, steps, labels), -1),
                torch.tensor(rng.integers(0, 3, (2, 3))),  # labels 0..2, blank 4
                torch.tensor([6, 2]),  # the second cannot fit its labels: infinite
                torch.tensor([3, 3]),
            ],
            {"blank": 4, "zero_infinity": True},
        ),
    }


CASES = {**cases(), **_option_cases()}


def test_every_public_loss_has_a_case() -> None:
    assert public_losses() == {fn.__name__ for fn, _, _ in CASES.values()}


def _on(device: str, value: Any) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _call(case: Case, device: str, reduction: str) -> tuple[Any, Any, Any]:
    """The loss on ``device`` and the gradient of its sum for the first array."""
    fn, arrays, kw = case
    first = arrays[0].detach().to(device).requires_grad_(True)
    rest = [_on(device, a) for a in arrays[1:]]
    out = fn(first, *rest, **{k: _on(device, v) for k, v in kw.items()}, reduction=reduction)
    (grad,) = torch.autograd.grad(out.sum(), first)
    return first, out, grad


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("device", DEVICES)
def test_forward_and_backward_stay_on_the_device(device: str, name: str, reduction: str) -> None:
    first, out, grad = _call(CASES[name], device, reduction)
    want = torch.device(device)
    assert out.device.type == want.type and grad.device == first.device
    assert grad.shape == first.shape and grad.dtype == first.dtype
    assert out.dtype == first.dtype or first.dtype == torch.bfloat16
    if reduction != "none":
        assert out.shape == ()
    if device != "meta":  # the same values as on the CPU
        _, cpu_out, cpu_grad = _call(CASES[name], "cpu", reduction)
        torch.testing.assert_close(out.cpu(), cpu_out, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad.cpu(), cpu_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_modules_move_their_buffers(device: str) -> None:
    """A module's per-class arrays are buffers: ``.to(device)`` takes them along."""
    from anyloss.torch import CrossEntropyLoss, LinearCrossEntropyLoss

    ce = CrossEntropyLoss(class_weights=[1.0, 2.0, 0.5], label_smoothing=0.1).to(device)
    logits = torch.zeros(4, 3, device=device, requires_grad=True)
    out = ce(logits, torch.tensor([0, 1, 2, 1], device=device))
    (grad,) = torch.autograd.grad(out, logits)
    assert out.device.type == grad.device.type == torch.device(device).type

    lce = LinearCrossEntropyLoss(5, 7, bias=True).to(device)
    hidden = torch.ones(4, 5, device=device, requires_grad=True)
    out = lce(hidden, torch.tensor([0, 6, 2, 1], device=device))
    out.backward()
    assert out.device.type == torch.device(device).type
    assert lce.weight.grad is not None and lce.weight.grad.device == lce.weight.device


# -- JAX: inputs committed to the second of two host devices -------------------

_JAX_SCRIPT = """
import json, os, sys
import numpy as np
import jax
import torch
sys.path.insert(0, os.environ["ANYLOSS_TESTS"])
from test_devices import CASES

second = jax.devices("cpu")[1]
report = {"__second__": str(second)}
for name, (fn, arrays, kw) in CASES.items():
    if any(a.dtype == torch.bfloat16 for a in arrays):
        continue
    put = lambda a: (
        jax.device_put(a.numpy(force=True), second) if isinstance(a, torch.Tensor) else a
    )
    args = [put(a) for a in arrays]
    options = {k: put(v) for k, v in kw.items()}
    try:
        out = fn(*args, **options, reduction="mean")
        grad = jax.grad(lambda x: fn(x, *args[1:], **options, reduction="sum"))(args[0])
        report[name] = sorted(str(d) for d in out.devices() | grad.devices())
    except Exception as exc:  # noqa: BLE001 - reported to the test
        report[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(report))
"""


def test_jax_results_stay_on_the_inputs_device() -> None:
    pytest.importorskip("jax")
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=(env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"),
        ANYLOSS_TESTS=str(pathlib.Path(__file__).parent),
        ANYLOSS_TEST_DEVICE="cpu",
    )
    done = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    second = report.pop("__second__")
    assert len(report) >= len(public_losses())
    wrong = {k: v for k, v in report.items() if v != [second]}
    assert not wrong, wrong

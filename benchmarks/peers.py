"""The benchmark cases: input data per loss and one callable per implementation.

Every implementation of a case computes the same loss (the 'mean' reduction a
training step uses) on the same float32 data, converted to its library before
timing. A factory returns ``None`` where a library has no equivalent.

Names of the implementations:

- ``anyloss``: the public ``anyloss.<loss>`` on NumPy arrays (whatever path
  the loss takes: generic, or a kernel once the loss calls ``kernels.run``);
- ``kernel``: ``anyloss.kernels.run`` called directly, as a loss would;
- ``numpy``: a straight NumPy transcription of the formula;
- ``torch``: ``torch.nn.functional`` on CPU (or a transcription where torch
  has no such loss);
- ``jax``: the loss under ``jax.jit`` (optax where it has the loss, else a
  ``jax.numpy`` transcription), compile time excluded;
- ``mlx``: ``mlx.nn.losses`` (CPU);
- ``anyloss[torch]`` / ``anyloss[jax]`` / ``anyloss[mlx]``: anyloss on that
  library's arrays (jax: under ``jax.jit``).

With ``backward=True`` the autograd libraries time the loss and its gradient
with respect to the first input (torch: ``backward()``; jax:
``jax.jit(jax.value_and_grad(...))``; mlx: ``mx.value_and_grad``).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import anyloss
from anyloss import kernels

Thunk = Callable[[], Any]

SIZES = {
    # (rows, classes) for the class losses, elements for the elementwise
    # ones, (rows, dim) for the embedding losses
    "full": {"classes": (4096, 32000), "elements": 1 << 24, "embed": (65536, 256)},
    "small": {"classes": (512, 32000), "elements": 1 << 21, "embed": (8192, 256)},
    "tiny": {"classes": (64, 1000), "elements": 1 << 14, "embed": (256, 64)},
}


@dataclass
class Case:
    """One loss at one size: the data and the parameters of the call."""

    loss: str
    shape: str
    arrays: dict[str, np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)
    # which arrays are read in full (for the one-pass reference)
    reads: tuple[str, ...] = ()


def make_cases(size: str, losses: list[str] | None, seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    dims = SIZES[size]
    rows, classes = dims["classes"]
    n = dims["elements"]
    er, ed = dims["embed"]
    f32 = np.float32

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=f32) * f32(scale)).astype(f32)

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(axis=-1, keepdims=True)
        out: np.ndarray = (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(f32)
        return out

    builders: dict[str, Callable[[], Case]] = {
        "cross_entropy": lambda: Case(
            "cross_entropy",
            f"{rows}x{classes}",
            {
                "logits": normal(rows, classes, scale=2.0),
                "targets": rng.integers(0, classes, rows),
            },
            reads=("logits",),
        ),
        "nll_loss": lambda: Case(
            "nll_loss",
            f"{rows}x{classes}",
            {
                "inputs": log_softmax(normal(rows, classes)),
                "targets": rng.integers(0, classes, rows),
            },
            reads=(),
        ),
        "kl_div_loss": lambda: Case(
            "kl_div_loss",
            f"{rows}x{classes}",
            {
                "inputs": log_softmax(normal(rows, classes)),
                "targets": log_softmax(normal(rows, classes)),
            },
            reads=("inputs", "targets"),
        ),
        "binary_cross_entropy": lambda: Case(
            "binary_cross_entropy",
            str(n),
            {"inputs": normal(n, scale=3.0), "targets": (rng.random(n) < 0.5).astype(f32)},
            reads=("inputs", "targets"),
        ),
        "binary_cross_entropy[probs]": lambda: Case(
            "binary_cross_entropy",
            str(n),
            {
                "inputs": rng.uniform(1e-4, 1 - 1e-4, n).astype(f32),
                "targets": (rng.random(n) < 0.5).astype(f32),
            },
            params={"with_logits": False},
            reads=("inputs", "targets"),
        ),
        "cross_entropy[probs]": lambda: Case(
            "cross_entropy",
            f"{rows}x{classes}",
            {
                "logits": normal(rows, classes, scale=2.0),
                "targets": np.exp(log_softmax(normal(rows, classes))),
            },
            reads=("logits", "targets"),
        ),
    }
    for name in ("l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss", "log_cosh_loss"):
        first = "predictions" if name in ("l1_loss", "mse_loss", "smooth_l1_loss") else "inputs"
        builders[name] = lambda name=name, first=first: Case(
            name, str(n), {first: normal(n), "targets": normal(n)}, reads=(first, "targets")
        )
    builders["hinge_loss"] = lambda: Case(
        "hinge_loss",
        str(n),
        {"inputs": normal(n), "targets": np.where(rng.random(n) < 0.5, -1, 1).astype(f32)},
        reads=("inputs", "targets"),
    )
    builders["margin_ranking_loss"] = lambda: Case(
        "margin_ranking_loss",
        str(n),
        {
            "inputs1": normal(n),
            "inputs2": normal(n),
            "targets": np.where(rng.random(n) < 0.5, -1, 1).astype(f32),
        },
        params={"margin": 0.1},
        reads=("inputs1", "inputs2", "targets"),
    )
    builders["gaussian_nll_loss"] = lambda: Case(
        "gaussian_nll_loss",
        str(n),
        {
            "inputs": normal(n),
            "targets": normal(n),
            "vars": rng.uniform(0.1, 2.0, n).astype(f32),
        },
        reads=("inputs", "targets", "vars"),
    )
    builders["cosine_similarity_loss"] = lambda: Case(
        "cosine_similarity_loss",
        f"{er}x{ed}",
        {"x1": normal(er, ed), "x2": normal(er, ed)},
        reads=("x1", "x2"),
    )
    builders["triplet_loss"] = lambda: Case(
        "triplet_loss",
        f"{er}x{ed}",
        {"anchors": normal(er, ed), "positives": normal(er, ed), "negatives": normal(er, ed)},
        reads=("anchors", "positives", "negatives"),
    )
    names = losses or list(builders)
    unknown = set(names) - set(builders)
    if unknown:
        raise SystemExit(f"unknown losses {sorted(unknown)}; known: {sorted(builders)}")
    return [builders[name]() for name in names]


def case_label(case: Case) -> str:
    if case.loss == "binary_cross_entropy" and case.params.get("with_logits") is False:
        return "binary_cross_entropy[probs]"
    if case.loss == "cross_entropy" and case.arrays["targets"].ndim == 2:
        return "cross_entropy[probs]"
    return case.loss


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# -- NumPy ---------------------------------------------------------------------


def _np_softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.float32(0), x)


def numpy_impl(case: Case) -> Thunk | None:
    a = case.arrays
    p = case.params
    loss = case_label(case)
    f32 = np.float32
    if loss == "cross_entropy":
        x, t = a["logits"], a["targets"]

        def ce() -> Any:
            m = x.max(axis=1, keepdims=True)
            lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
            return (lse - x[np.arange(x.shape[0]), t]).mean()

        return ce
    if loss == "cross_entropy[probs]":
        x, q = a["logits"], a["targets"]

        def ce_p() -> Any:
            m = x.max(axis=1, keepdims=True)
            lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
            return (lse - (q * x).sum(axis=1)).mean()

        return ce_p
    if loss == "nll_loss":
        x, t = a["inputs"], a["targets"]
        return lambda: (-x[np.arange(x.shape[0]), t]).mean()
    if loss == "kl_div_loss":
        x, t = a["inputs"], a["targets"]
        return lambda: (np.exp(t) * (t - x)).sum(axis=-1).mean()
    if loss == "binary_cross_entropy":
        x, t = a["inputs"], a["targets"]
        return lambda: (_np_softplus(x) - x * t).mean()
    if loss == "binary_cross_entropy[probs]":
        x, t = a["inputs"], a["targets"]
        return lambda: (
            -(t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log1p(-x), -100))
        ).mean()
    if loss in ("l1_loss", "mse_loss", "smooth_l1_loss"):
        x, t = a["predictions"], a["targets"]
        if loss == "l1_loss":
            return lambda: np.abs(x - t).mean()
        if loss == "mse_loss":
            return lambda: np.square(x - t).mean()

        def sl1() -> Any:
            d = np.abs(x - t)
            return np.where(d < 1, 0.5 * d * d, d - f32(0.5)).mean()

        return sl1
    if loss == "huber_loss":
        x, t = a["inputs"], a["targets"]

        def hub() -> Any:
            d = np.abs(x - t)
            return np.where(d <= 1, 0.5 * d * d, d - f32(0.5)).mean()

        return hub
    if loss == "log_cosh_loss":
        x, t = a["inputs"], a["targets"]

        def lc() -> Any:
            e = x - t
            return (np.logaddexp(e, -e) - f32(math.log(2))).mean()

        return lc
    if loss == "hinge_loss":
        x, t = a["inputs"], a["targets"]
        return lambda: np.maximum(1 - x * t, 0).mean()
    if loss == "margin_ranking_loss":
        x1, x2, y = a["inputs1"], a["inputs2"], a["targets"]
        m = f32(p.get("margin", 0.0))
        return lambda: np.maximum(m - y * (x1 - x2), 0).mean()
    if loss == "gaussian_nll_loss":
        mu, y, v = a["inputs"], a["targets"], a["vars"]

        def g() -> Any:
            vv = np.maximum(v, f32(1e-6))
            return (0.5 * (np.log(vv) + (y - mu) ** 2 / vv)).mean()

        return g
    if loss == "cosine_similarity_loss":
        x1, x2 = a["x1"], a["x2"]

        def cos() -> Any:
            num = (x1 * x2).sum(axis=1)
            den = np.linalg.norm(x1, axis=1) * np.linalg.norm(x2, axis=1)
            return (num / np.maximum(den, f32(1e-8))).mean()

        return cos
    if loss == "triplet_loss":
        an, po, ne = a["anchors"], a["positives"], a["negatives"]

        def trip() -> Any:
            dp = np.sqrt(((an - po) ** 2).sum(axis=-1) + f32(1e-6))
            dn = np.sqrt(((an - ne) ** 2).sum(axis=-1) + f32(1e-6))
            return np.maximum(dp - dn + 1, 0).mean()

        return trip
    return None


def anyloss_impl(case: Case) -> Thunk:
    func = getattr(anyloss, case.loss)
    kw = dict(case.arrays, **case.params)
    return lambda: func(**kw, reduction="mean")


def kernel_impl(case: Case) -> Thunk | None:
    """``anyloss.kernels.run`` with the arguments a loss would pass it."""
    kw = dict(case.arrays, **case.params)
    if kernels.run(case.loss, "mean", **kw) is None:
        return None
    return lambda: kernels.run(case.loss, "mean", **kw)


# -- torch -----------------------------------------------------------------------


def torch_impl(case: Case, backward: bool, use_anyloss: bool) -> Thunk | None:
    import torch
    import torch.nn.functional as F

    loss = case_label(case)
    names = list(case.arrays)
    ts = {k: torch.from_numpy(v) for k, v in case.arrays.items()}
    first = names[0]
    if backward:
        ts[first] = ts[first].clone().requires_grad_(True)
    p = case.params
    native: Callable[..., Any] | None = None
    if loss == "cross_entropy" or loss == "cross_entropy[probs]":
        native = lambda logits, targets: F.cross_entropy(logits, targets)  # noqa: E731
    elif loss == "nll_loss":
        native = lambda inputs, targets: F.nll_loss(inputs, targets)  # noqa: E731
    elif loss == "kl_div_loss":

        def native(inputs, targets):
            return F.kl_div(inputs, targets, reduction="none", log_target=True).sum(-1).mean()
    elif loss == "binary_cross_entropy":
        native = lambda inputs, targets: F.binary_cross_entropy_with_logits(inputs, targets)  # noqa: E731
    elif loss == "binary_cross_entropy[probs]":
        native = lambda inputs, targets: F.binary_cross_entropy(inputs, targets)  # noqa: E731
    elif loss == "l1_loss":
        native = lambda predictions, targets: F.l1_loss(predictions, targets)  # noqa: E731
    elif loss == "mse_loss":
        native = lambda predictions, targets: F.mse_loss(predictions, targets)  # noqa: E731
    elif loss == "smooth_l1_loss":
        native = lambda predictions, targets: F.smooth_l1_loss(predictions, targets)  # noqa: E731
    elif loss == "huber_loss":
        native = lambda inputs, targets: F.huber_loss(inputs, targets)  # noqa: E731
    elif loss == "log_cosh_loss":  # no torch loss: a transcription

        def native(inputs: Any, targets: Any) -> Any:
            e = inputs - targets
            return (torch.logaddexp(e, -e) - math.log(2)).mean()

    elif loss == "hinge_loss":
        native = lambda inputs, targets: torch.clamp(1 - inputs * targets, min=0).mean()  # noqa: E731
    elif loss == "margin_ranking_loss":
        native = lambda inputs1, inputs2, targets: F.margin_ranking_loss(  # noqa: E731
            inputs1, inputs2, targets, margin=p["margin"]
        )
    elif loss == "gaussian_nll_loss":
        native = lambda inputs, targets, vars: F.gaussian_nll_loss(inputs, targets, vars)  # noqa: E731
    elif loss == "cosine_similarity_loss":
        native = lambda x1, x2: F.cosine_similarity(x1, x2, dim=1).mean()  # noqa: E731
    elif loss == "triplet_loss":
        native = lambda anchors, positives, negatives: F.triplet_margin_loss(  # noqa: E731
            anchors, positives, negatives, margin=1.0, p=2, eps=1e-6
        )
    if use_anyloss:
        func = getattr(anyloss, case.loss)

        def call() -> Any:
            return func(**ts, **p, reduction="mean")

    elif native is not None:
        fn = native

        def call() -> Any:
            return fn(**ts)

    else:
        return None
    if not backward:

        def fwd() -> Any:
            with torch.no_grad():
                return call()

        return fwd

    def fwd_bwd() -> Any:
        ts[first].grad = None
        out = call()
        out.backward()
        return out

    return fwd_bwd


# -- JAX ---------------------------------------------------------------------------


def jax_impl(case: Case, backward: bool, use_anyloss: bool) -> Thunk | None:
    import jax
    import jax.numpy as jnp

    loss = case_label(case)
    p = case.params
    arrays = {k: jnp.asarray(v) for k, v in case.arrays.items()}
    native: Callable[..., Any] | None = None
    try:
        import optax
    except ImportError:  # pragma: no cover
        optax = None
    if loss == "cross_entropy":
        if optax is not None:
            native = lambda logits, targets: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
                logits, targets
            ).mean()
    elif loss == "cross_entropy[probs]":
        if optax is not None:
            native = lambda logits, targets: optax.softmax_cross_entropy(logits, targets).mean()  # noqa: E731
    elif loss == "nll_loss":

        def native(inputs, targets):
            return -jnp.take_along_axis(inputs, targets[:, None], axis=1).mean()
    elif loss == "kl_div_loss":
        native = lambda inputs, targets: (jnp.exp(targets) * (targets - inputs)).sum(-1).mean()  # noqa: E731
    elif loss == "binary_cross_entropy":
        if optax is not None:
            native = lambda inputs, targets: optax.sigmoid_binary_cross_entropy(  # noqa: E731
                inputs, targets
            ).mean()
    elif loss == "binary_cross_entropy[probs]":
        native = lambda inputs, targets: (  # noqa: E731
            -(
                targets * jnp.maximum(jnp.log(inputs), -100)
                + (1 - targets) * jnp.maximum(jnp.log1p(-inputs), -100)
            )
        ).mean()
    elif loss == "l1_loss":
        native = lambda predictions, targets: jnp.abs(predictions - targets).mean()  # noqa: E731
    elif loss == "mse_loss":
        native = lambda predictions, targets: jnp.square(predictions - targets).mean()  # noqa: E731
    elif loss == "smooth_l1_loss":

        def native(predictions: Any, targets: Any) -> Any:
            d = jnp.abs(predictions - targets)
            return jnp.where(d < 1, 0.5 * d * d, d - 0.5).mean()

    elif loss == "huber_loss":
        if optax is not None:
            native = lambda inputs, targets: optax.huber_loss(inputs, targets).mean()  # noqa: E731
    elif loss == "log_cosh_loss":
        if optax is not None:
            native = lambda inputs, targets: optax.log_cosh(inputs, targets).mean()  # noqa: E731
    elif loss == "hinge_loss":
        native = lambda inputs, targets: jnp.maximum(1 - inputs * targets, 0).mean()  # noqa: E731
    elif loss == "margin_ranking_loss":
        native = lambda inputs1, inputs2, targets: jnp.maximum(  # noqa: E731
            p["margin"] - targets * (inputs1 - inputs2), 0
        ).mean()
    elif loss == "gaussian_nll_loss":

        def native(inputs: Any, targets: Any, vars: Any) -> Any:
            v = jnp.maximum(vars, 1e-6)
            return (0.5 * (jnp.log(v) + (targets - inputs) ** 2 / v)).mean()

    elif loss == "cosine_similarity_loss":
        if optax is not None:
            native = lambda x1, x2: optax.cosine_similarity(x1, x2, epsilon=1e-8).mean()  # noqa: E731
    elif loss == "triplet_loss":

        def native(anchors: Any, positives: Any, negatives: Any) -> Any:
            dp = jnp.sqrt(((anchors - positives) ** 2).sum(-1) + 1e-6)
            dn = jnp.sqrt(((anchors - negatives) ** 2).sum(-1) + 1e-6)
            return jnp.maximum(dp - dn + 1.0, 0).mean()

    if use_anyloss:
        func = getattr(anyloss, case.loss)

        def fn(**kw: Any) -> Any:
            return func(**kw, **p, reduction="mean")

    elif native is not None:
        fn = native
    else:
        return None
    names = list(arrays)
    first = names[0]

    def as_positional(x0: Any, *rest: Any) -> Any:
        return fn(**{first: x0}, **dict(zip(names[1:], rest, strict=False)))

    jitted = jax.jit(jax.value_and_grad(as_positional) if backward else as_positional)
    args = [arrays[k] for k in names]

    def call() -> Any:
        return jax.block_until_ready(jitted(*args))

    return call


# -- MLX -----------------------------------------------------------------------------


def mlx_impl(case: Case, backward: bool, use_anyloss: bool) -> Thunk | None:
    import mlx.core as mx
    import mlx.nn.losses as L

    loss = case_label(case)
    p = case.params
    arrays = {k: mx.array(v) for k, v in case.arrays.items()}
    if use_anyloss:
        func = getattr(anyloss, case.loss)
    else:
        func = getattr(L, case.loss, None)
        if func is None:
            return None
    names = list(arrays)
    first = names[0]
    rest = {k: arrays[k] for k in names[1:]}
    if loss == "cross_entropy[probs]" and not use_anyloss:
        pass  # mlx takes probabilities as targets too

    def f(x0: Any) -> Any:
        return func(**{first: x0}, **rest, **p, reduction="mean")

    mx.eval(*arrays.values())
    if backward:
        vg = mx.value_and_grad(f)

        def call() -> Any:
            out = vg(arrays[first])
            mx.eval(out)
            return out[0]

        return call

    def call_fwd() -> Any:
        out = f(arrays[first])
        mx.eval(out)
        return out

    return call_fwd

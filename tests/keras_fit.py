"""Checks of ``anyloss.keras`` under one Keras backend, run by ``test_keras.py``.

Keras picks its backend once, at import, from ``KERAS_BACKEND``; so each
backend gets a process of its own running this script::

    KERAS_BACKEND=torch python tests/keras_fit.py WORKDIR

It asserts as it goes (a failure exits non-zero with the assertion's message)
and prints, as its last line, a JSON summary: the backend, the checks done and
the loss histories of the ``model.fit`` runs. The references are the plain
anyloss functions on NumPy copies of the same inputs, and Keras's own losses.
Importing this file (pytest's ``--doctest-modules`` does) runs nothing.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np


def main(work: pathlib.Path) -> dict[str, Any]:
    """Run the checks; return the summary."""
    import anyloss

    # `import anyloss` alone must not load Keras
    assert "keras" not in sys.modules, "import anyloss imported keras"

    import keras

    import anyloss.keras as ak

    backend = keras.backend.backend()
    done: list[str] = []
    tol = 2e-6  # float32: a sum of a few values, in another order

    def close(got: object, want: object, what: str, rtol: float = tol) -> None:
        g = np.asarray(keras.ops.convert_to_numpy(got), dtype=np.float64)
        w = np.asarray(want, dtype=np.float64)
        assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
        assert np.allclose(g, w, rtol=rtol, atol=1e-7), f"{what}: {g} != {w}"

    rng = np.random.default_rng(20261205)
    N, C = 4, 3
    logits = rng.normal(size=(N, C)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    other = rng.normal(size=(N, C)).astype(np.float32)
    binary = (rng.random((N, C)) < 0.5).astype(np.float32)
    signs = 2.0 * binary - 1.0
    probs = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    log_p = (logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(np.float32)
    log_q = (other - np.log(np.exp(other).sum(-1, keepdims=True))).astype(np.float32)
    counts = rng.poisson(2.0, size=(N, C)).astype(np.float32)
    alpha = np.array([0.5, 1.0, 2.0])

    # class -> (y_true, y_pred, options); y_true as the user holds it (ints for labels)
    cases: dict[str, tuple[np.ndarray, np.ndarray, dict[str, object]]] = {
        "BinaryCrossEntropyLoss": (binary, logits, {}),
        "CosineSimilarityLoss": (other, logits, {}),
        "CrossEntropyLoss": (labels, logits, {"label_smoothing": 0.1}),
        "DiceLoss": (binary, probs, {"smooth": 0.5}),
        "HingeLoss": (signs, logits, {}),
        "HuberLoss": (other, logits, {"delta": 0.5}),
        "InfoNCELoss": (other, logits, {"temperature": 0.5}),
        "KLDivLoss": (log_q, log_p, {}),
        "L1Loss": (other, logits, {}),
        "LogCoshLoss": (other, logits, {}),
        "MSELoss": (other, logits, {}),
        "MulticlassHingeLoss": (labels, logits, {"margin": 0.5}),
        "NLLLoss": (labels, log_p, {}),
        "NTXentLoss": (np.array([0, 1, 0, 1]), logits, {"temperature": 0.5}),
        "PoissonNLLLoss": (counts, logits, {"full": True}),
        "SigmoidFocalLoss": (binary, logits, {"gamma": 1.5}),
        "SmoothL1Loss": (other, logits, {"beta": 0.5}),
        "SoftmaxFocalLoss": (labels, logits, {"alpha": alpha, "gamma": 1.0}),
        "SquaredHingeLoss": (signs, logits, {}),
    }
    assert sorted(cases) == sorted(n for n in ak.__all__ if n != "AnylossLoss")

    def per_sample(name: str, **extra: object) -> np.ndarray:
        """The reference per-sample losses: the function's 'none' result on NumPy
        arrays, averaged over the last axis where it is elementwise."""
        y_true, y_pred, options = cases[name]
        fn = getattr(ak, name).fn
        none = np.asarray(fn(y_pred, y_true, **options, **extra, reduction="none"))
        return none.mean(axis=-1) if none.shape == y_pred.shape else none

    # -- values: Keras's reductions against the function's ------------------------------------

    def traced(fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` under ``jax.jit`` on JAX (as ``model.fit`` runs a loss there, and
        faster than JAX's op-by-op dispatch), as it is on the other backends."""
        if backend != "jax":
            return fn
        import jax

        return jax.jit(fn)

    def run(loss: Any, *args: Any) -> Any:
        """``loss(y_true, y_pred[, sample_weight])``, under ``jax.jit`` on JAX."""
        return traced(loss)(*args)

    def three_calls(loss: Any, unreduced: Any) -> Callable[..., tuple[Any, ...]]:
        """The default reduction, none, and the default with sample_weight."""

        def calls(y_true: Any, y_pred: Any, weights: Any) -> tuple[Any, ...]:
            return loss(y_true, y_pred), unreduced(y_true, y_pred), loss(y_true, y_pred, weights)

        return calls

    weights = np.array([0.5, 2.0, 0.0, 1.0], dtype=np.float32)
    for name, (y_true, y_pred, options) in cases.items():
        cls = getattr(ak, name)
        fn = cls.fn
        ref = per_sample(name)
        assert ref.shape == (N,), (name, ref.shape)
        mean = np.asarray(fn(y_pred, y_true, **options, reduction="mean"))
        default, none, weighted = traced(
            three_calls(cls(**options), cls(**options, reduction="none"))
        )(y_true, y_pred, weights)
        # sum_over_batch_size: sum of the per-sample losses over their number,
        # which is the function's own mean
        close(default, ref.sum() / N, f"{name} default")
        close(default, mean, f"{name} vs {fn.__name__}(mean)")
        close(none, ref, f"{name} none")
        # sample_weight multiplies each sample's loss; the divisor stays N
        close(weighted, (weights * ref).sum() / N, f"{name} sample_weight")

    # Keras's other reductions, and a loss rebuilt from its config
    for name in ("CrossEntropyLoss", "MSELoss", "SoftmaxFocalLoss"):
        y_true, y_pred, options = cases[name]
        cls = getattr(ak, name)
        ref = per_sample(name)
        close(run(cls(**options, reduction="sum"), y_true, y_pred), ref.sum(), f"{name} sum")
        got = run(cls(**options, reduction="mean_with_sample_weight"), y_true, y_pred, weights)
        close(got, (weights * ref).sum() / weights.sum(), f"{name} mean_with_sample_weight")
        again = cls.from_config(cls(**options).get_config())
        close(run(again, y_true, y_pred), ref.mean(), f"{name} from_config")
    done.append("values")

    # sample_weight is the function's per-example weights where it has them
    for name in ("CrossEntropyLoss", "SoftmaxFocalLoss", "BinaryCrossEntropyLoss"):
        y_true, y_pred, options = cases[name]
        cls = getattr(ak, name)
        w = weights if name != "BinaryCrossEntropyLoss" else np.repeat(weights[:, None], C, 1)
        want = cls.fn(y_pred, y_true, w, **options, reduction="mean")
        close(run(cls(**options), y_true, y_pred, weights), want, f"{name} weights")
    done.append("sample_weight")

    # class indices: Keras's (N, 1) labels and float labels are indices too; one-hot
    # targets of the logits' shape stay probabilities
    ce = ak.CrossEntropyLoss()
    want = anyloss.cross_entropy(logits, labels, reduction="mean")
    close(run(ce, labels[:, None], logits), want, "(N, 1) labels")
    close(run(ce, labels.astype(np.float32), logits), want, "float labels")
    close(run(ce, np.eye(C, dtype=np.float32)[labels], logits), want, "one-hot targets")
    close(
        run(ak.NLLLoss(), labels[:, None].astype(np.float32), log_p),
        anyloss.nll_loss(log_p, labels, reduction="mean"),
        "NLL (N, 1) float labels",
    )
    # ignore_index: masked out, so Keras's mean is the function's (over the others)
    padded = np.array([0, -100, 1, -100])
    got = run(ak.CrossEntropyLoss(ignore_index=-100), padded, logits)
    close(
        got, anyloss.cross_entropy(logits, padded, ignore_index=-100, reduction="mean"), "ignore"
    )
    got = run(ak.NLLLoss(ignore_index=-100), padded, log_p, weights)
    want = (weights * np.asarray(anyloss.nll_loss(log_p, padded, ignore_index=-100))).sum() / 2
    close(got, want, "ignore_index with sample_weight")
    # class_weights: Keras divides by the number of samples, not the applied weights
    cw = np.array([1.0, 2.0, 0.5])
    got = run(ak.CrossEntropyLoss(class_weights=cw), labels, logits)
    close(got, anyloss.cross_entropy(logits, labels, class_weights=cw, reduction="sum") / N, "cw")
    done.append("class indices")

    # against Keras's own losses, values and gradients through the backend's autodiff
    pairs = [
        (
            ak.CrossEntropyLoss(),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            labels,
            logits,
        ),
        (ak.MSELoss(), keras.losses.MeanSquaredError(), other, logits),
        (ak.HuberLoss(delta=0.5), keras.losses.Huber(delta=0.5), other, logits),
        (
            ak.BinaryCrossEntropyLoss(),
            keras.losses.BinaryCrossentropy(from_logits=True),
            binary,
            logits,
        ),
    ]

    def value_and_grad(loss: Any, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, Any]:
        if backend == "jax":
            import jax

            grad_fn = jax.jit(jax.value_and_grad(lambda p: loss(y_true, p)))
            value, grad = grad_fn(jax.numpy.asarray(y_pred))
            return float(value), grad
        import torch

        p = torch.tensor(y_pred, requires_grad=True)
        value = loss(y_true, p)
        value.backward()
        return float(value.detach()), p.grad

    if backend in ("jax", "torch"):
        for ours, theirs, y_true, y_pred in pairs:
            v1, g1 = value_and_grad(ours, y_true, y_pred)
            v2, g2 = value_and_grad(theirs, y_true, y_pred)
            what = type(ours).__name__
            close(v1, v2, f"{what} vs Keras", rtol=1e-5)
            close(g1, keras.ops.convert_to_numpy(g2), f"{what} grad vs Keras", rtol=1e-5)
        done.append("gradients")

    # -- model.fit: a tiny Dense model whose loss goes down -----------------------------------
    history: dict[str, list[float]] = {}
    if backend in ("jax", "torch"):
        keras.utils.set_random_seed(0)
        x = rng.normal(size=(64, 2)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)  # classes 0..2

        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
        model.compile(
            loss=ak.CrossEntropyLoss(class_weights=[1.0, 1.5, 1.0]),
            optimizer=keras.optimizers.SGD(learning_rate=0.5),
        )
        sw = np.where(y == 2, 2.0, 1.0).astype(np.float32)
        fit = model.fit(x, y, sample_weight=sw, batch_size=16, epochs=6, verbose=0, shuffle=False)
        history["cross_entropy"] = [float(v) for v in fit.history["loss"]]
        # jit_compile="auto" compiles the train step with jax.jit on JAX
        assert model.jit_compile == (backend == "jax"), model.jit_compile

        # the evaluated loss is the function's, on the model's own predictions
        pred = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
        value = model.evaluate(x, y, sample_weight=sw, batch_size=64, verbose=0)
        per = np.asarray(anyloss.cross_entropy(pred, y, class_weights=np.array([1.0, 1.5, 1.0])))
        close(value, (sw * per).sum() / 64, "evaluate", rtol=1e-5)

        # save and reload: the registered loss comes back with its options
        path = work / f"model-{backend}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded.loss) is ak.CrossEntropyLoss, type(loaded.loss)
        assert loaded.loss.get_config() == model.loss.get_config()
        again = loaded.evaluate(x, y, sample_weight=sw, batch_size=64, verbose=0)
        close(again, value, "evaluate after load_model", rtol=1e-6)
        done.append("fit+save")

        # a regression loss
        t = (x @ np.array([[1.5], [-2.0]]) + 0.5).astype(np.float32)
        reg = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        reg.compile(
            loss=ak.HuberLoss(delta=1.0), optimizer=keras.optimizers.SGD(learning_rate=0.1)
        )
        fit = reg.fit(x, t[:, 0], batch_size=16, epochs=6, verbose=0, shuffle=False)
        history["huber"] = [float(v) for v in fit.history["loss"]]
        done.append("fit regression")

    return {"backend": backend, "checks": done, "history": history}


if __name__ == "__main__":
    print(json.dumps(main(pathlib.Path(sys.argv[1]))))

"""``anyloss.keras``: the Keras 3 loss classes.

Keras fixes its backend at import, so the checks per backend (values against
the functions and Keras's own losses, gradients, ``model.fit``, ``model.save``
and ``load_model``) run in one subprocess per backend (``tests/keras_fit.py``),
all started at once. The tests in this process use whatever backend Keras got
here (JAX unless ``KERAS_BACKEND`` says otherwise): the configuration round
trip, the generated signatures and the errors.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import anyloss

os.environ.setdefault("KERAS_BACKEND", "jax")  # as docs/conf.py sets it
keras = pytest.importorskip("keras")
ak = pytest.importorskip("anyloss.keras")

HERE = pathlib.Path(__file__).resolve().parent
BACKENDS = {"jax": "jax", "torch": "torch", "numpy": "numpy"}  # Keras backend -> module
CLASSES = [n for n in ak.__all__ if n != "AnylossLoss"]
# the losses with a third array, which Keras's call(y_true, y_pred) has no place for
LEFT_OUT = {
    "gaussian_nll_loss",
    "triplet_loss",
    "margin_ranking_loss",
    "cosine_embedding_loss",
    "ctc_loss",
    "linear_cross_entropy",
}


# -- one subprocess per backend ----------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def processes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """``tests/keras_fit.py`` started under every installed backend, in parallel,
    before the first test of this file (they run while the others do); none
    where no ``test_backend`` is selected."""
    started: dict[str, subprocess.Popen[str]] = {}
    wanted = {
        str(item.callspec.params["backend"])
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_backend"
    }
    work = tmp_path_factory.mktemp("keras") if wanted else None
    for backend in sorted(wanted):
        if importlib.util.find_spec(BACKENDS[backend]) is None:
            continue
        env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
        started[backend] = subprocess.Popen(
            # warnings raised in anyloss's code are errors, as in the test suite
            [sys.executable, "-W", "error:::anyloss", str(HERE / "keras_fit.py"), str(work)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    yield started
    for proc in started.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps it and closes its pipes


def test_import_anyloss_imports_no_keras() -> None:
    code = "import sys, anyloss; print('keras' in sys.modules)"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"


def test_one_class_per_two_array_loss() -> None:
    losses = {
        n
        for n in anyloss.__all__
        if callable(getattr(anyloss, n)) and n[0].islower() and n != "losses"
    }
    wrapped = {getattr(ak, n).fn.__name__ for n in CLASSES}
    assert wrapped == losses - LEFT_OUT
    assert len(CLASSES) == len(wrapped) == 19
    for name in CLASSES:
        cls = getattr(ak, name)
        assert issubclass(cls, keras.losses.Loss)
        assert cls.__module__ == "anyloss.keras"
        assert keras.saving.get_registered_name(cls) == f"anyloss>{name}"


@pytest.mark.parametrize("name", CLASSES)
def test_signature_is_the_functions_options(name: str) -> None:
    cls = getattr(ak, name)
    params = list(inspect.signature(cls.fn).parameters.values())[2:]
    options = {p.name: p.default for p in params if p.name not in ("weights", "reduction")}
    sig = inspect.signature(cls)
    got = {n: p.default for n, p in sig.parameters.items()}
    assert got == {
        **options,
        "reduction": "sum_over_batch_size",
        "name": None,
        "dtype": None,
    }
    assert all(p.kind is p.KEYWORD_ONLY for p in sig.parameters.values())
    assert cls().options == options


# options other than the defaults, arrays and tuples included
OPTIONS: dict[str, dict[str, object]] = {
    "BinaryCrossEntropyLoss": {"with_logits": False, "pos_weight": np.array([1.0, 2.0])},
    "CosineSimilarityLoss": {"axis": -1, "eps": 1e-6},
    "CrossEntropyLoss": {
        "label_smoothing": 0.1,
        "ignore_index": -100,
        "class_weights": np.array([1.0, 0.5, 2.0]),
    },
    "DiceLoss": {"axis": (1, 2), "smooth": 0.5},
    "HuberLoss": {"delta": 0.5},
    "InfoNCELoss": {"temperature": 0.2, "normalize": False, "symmetric": True},
    "KLDivLoss": {"axis": 1},
    "MulticlassHingeLoss": {"margin": 0.5},
    "NLLLoss": {"ignore_index": 0, "class_weights": [1.0, 2.0]},
    "NTXentLoss": {"temperature": 0.5},
    "PoissonNLLLoss": {"log_input": False, "full": True, "eps": 1e-6},
    "SigmoidFocalLoss": {"alpha": None, "gamma": 1.0},
    "SmoothL1Loss": {"beta": 0.25},
    "SoftmaxFocalLoss": {"alpha": [0.25, 0.75], "gamma": 0.5},
}


@pytest.mark.parametrize("name", CLASSES)
def test_config_round_trip(name: str) -> None:
    cls = getattr(ak, name)
    options = OPTIONS.get(name, {})
    loss = cls(**options, reduction="sum", name="my_loss")
    config = loss.get_config()
    json.dumps(config)  # plain JSON: arrays as lists, tuples as lists
    want = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in options.items()}
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in want.items()}
    assert {k: config[k] for k in want} == want
    assert config["reduction"] == "sum"
    assert config["name"] == "my_loss"
    again = cls.from_config(json.loads(json.dumps(config)))
    assert type(again) is cls
    assert again.get_config() == config
    for key, value in options.items():  # the options as the loss keeps them
        kept = again.options[key]
        if isinstance(value, np.ndarray | list):
            assert isinstance(kept, np.ndarray)
            np.testing.assert_array_equal(kept, np.asarray(value, dtype=np.float64))
        else:
            assert kept == value
    # Keras's own serialization finds the class by its registered name
    blob = keras.saving.serialize_keras_object(loss)
    assert blob["registered_name"] == f"anyloss>{name}"
    revived = keras.saving.deserialize_keras_object(json.loads(json.dumps(blob)))
    assert type(revived) is cls
    assert revived.get_config() == config


def test_repr_shows_the_options_set() -> None:
    loss = ak.CrossEntropyLoss(label_smoothing=0.1, class_weights=[1, 2], reduction="sum")
    assert repr(loss) == (
        "CrossEntropyLoss(label_smoothing=0.1, class_weights=[1.0, 2.0], reduction='sum')"
    )
    assert repr(ak.MSELoss()) == "MSELoss()"


def test_dtype_in_config() -> None:
    loss = ak.MSELoss(dtype=keras.DTypePolicy("mixed_bfloat16"))
    config = json.loads(json.dumps(loss.get_config()))
    assert config["dtype"] == "mixed_bfloat16"
    again = ak.MSELoss.from_config(config)
    assert again.dtype == loss.dtype == "bfloat16"
    assert ak.MSELoss().get_config()["dtype"] is None  # Keras's floatx() when called


def _numpy(x: object) -> np.ndarray:
    """A backend tensor as NumPy (``tolist``: ``np.array`` of a torch tensor, as in Keras's
    ``convert_to_numpy``, trips NumPy 2's ``__array__(copy=)`` DeprecationWarning)."""
    return np.asarray(x.tolist())  # type: ignore[attr-defined]


def test_values_on_this_backend() -> None:
    """The rebuilt loss computes what the function does (whatever Keras's backend)."""
    logits = np.array([[2.0, -1.0, 0.5], [-1.0, 2.0, 0.0], [0.3, 0.2, 0.1]], np.float32)
    targets = np.array([0, -100, 2])
    cw = np.array([1.0, 0.5, 2.0])
    loss = ak.CrossEntropyLoss(label_smoothing=0.1, ignore_index=-100, class_weights=cw)
    loss = ak.CrossEntropyLoss.from_config(loss.get_config())
    got = _numpy(loss(targets, logits, sample_weight=[1.0, 1.0, 3.0]))
    per = anyloss.cross_entropy(
        logits, targets, label_smoothing=0.1, ignore_index=-100, class_weights=cw
    )
    # Keras's mean: the weighted per-sample sum over the 2 samples not ignored
    np.testing.assert_allclose(got, (per[0] + 3.0 * per[2]) / 2, rtol=1e-6)

    x = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    t = np.array([[0.5, 1.0], [2.0, 1.0]], np.float32)
    got = _numpy(ak.MSELoss(reduction="none")(t, x))
    np.testing.assert_allclose(got, np.asarray(anyloss.mse_loss(x, t, "none")).mean(-1))


def test_unknown_keyword_is_a_type_error_at_construction() -> None:
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\).*'smoothing'.*label_smoothing="):
        ak.CrossEntropyLoss(smoothing=0.1)
    with pytest.raises(TypeError, match=r"'weights'.*sample_weight="):
        ak.MSELoss(weights=[1.0, 2.0])
    with pytest.raises(TypeError, match=r"'from_logits'.*with_logits="):
        ak.BinaryCrossEntropyLoss(from_logits=True)
    with pytest.raises(TypeError, match=r"'ignore_class'.*ignore_index="):
        ak.CrossEntropyLoss(ignore_class=0)
    with pytest.raises(TypeError, match="positional"):
        ak.HuberLoss(0.5)  # keywords only


def test_bad_reduction_is_keras_error_at_construction() -> None:
    with pytest.raises(ValueError, match="reduction"):
        ak.MSELoss(reduction="average")


def test_bad_option_value_is_the_functions_error_at_first_call() -> None:
    x = np.zeros((2, 3), np.float32)
    loss = ak.HuberLoss(delta=-1.0)  # accepted here ...
    with pytest.raises(ValueError, match=r"huber_loss\(\): delta must be in \[0, inf\)"):
        loss(x, x)  # ... rejected by huber_loss at the first call
    loss = ak.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"cross_entropy\(\): label_smoothing"):
        loss(np.array([0, 1]), x)
    loss = ak.BinaryCrossEntropyLoss(with_logits="no")
    with pytest.raises(TypeError, match=r"binary_cross_entropy\(\): with_logits must be True"):
        loss(x, x)
    loss = ak.CrossEntropyLoss(axis="last")
    with pytest.raises(TypeError, match=r"cross_entropy\(\): axis must be an int, got str"):
        loss(np.array([0, 1]), x)
    loss = ak.CrossEntropyLoss(class_weights=[1.0, 2.0])  # 2 weights, 3 classes
    with pytest.raises(ValueError, match="class_weights"):
        loss(np.array([0, 1]), x)


def test_class_index_out_of_range_is_the_functions_error() -> None:
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"cross_entropy\(\): targets\[1\] = 3 is out of range"):
        ak.CrossEntropyLoss()(np.array([0, 3]), x)


# -- the backends' reports (last: the processes ran meanwhile) ----------------------------


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_backend(processes: dict[str, subprocess.Popen[str]], backend: str) -> None:
    if backend not in processes:
        pytest.skip(f"{BACKENDS[backend]} is not installed")
    out, err = processes[backend].communicate(timeout=600)
    assert processes[backend].returncode == 0, f"{out}\n{err}"
    report = json.loads(out.strip().splitlines()[-1])
    assert report["backend"] == backend
    checks = ["values", "sample_weight", "class indices"]
    if backend == "numpy":  # Keras's NumPy backend cannot train
        assert report["checks"] == checks
        return
    assert report["checks"] == [*checks, "gradients", "fit+save", "fit regression"]
    for name, history in report["history"].items():
        assert len(history) == 6, name
        assert all(np.isfinite(history)), (name, history)
        assert all(b < a for a, b in itertools.pairwise(history)), (name, history)
        assert history[-1] < 0.6 * history[0], (name, history)

"""``anyloss.torch``: the loss modules against the anyloss functions they wrap
(values and gradients), their buffers, repr and constructor errors, and
``torch.nn``'s own losses where the math is the same."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import anyloss  # noqa: E402
import anyloss.torch as at  # noqa: E402

N, C = 4, 3  # one small shape for every case


def _log_softmax(x: Any) -> Any:
    return torch.log_softmax(x, dim=-1)


def cases(seed: int = 0) -> dict[str, tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]]:
    """class name -> (arrays for forward, a non-default option, another one).

    float64 tensors at smooth points of each loss; int64 class indices.
    """
    g = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> Any:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def uniform(lo: float, hi: float, *shape: int) -> Any:
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    def index(n: int, high: int) -> Any:
        return torch.randint(0, high, (n,), generator=g)

    def binary(*shape: int) -> Any:
        return torch.randint(0, 2, shape, generator=g).to(torch.float64)

    def sign(*shape: int) -> Any:
        return 2 * binary(*shape) - 1

    t = normal(N, C)
    away = sign(N, C) * uniform(0.2, 2.0, N, C)  # |difference| >= 0.2: no kinks nearby
    w = uniform(0.5, 2.0, N)
    ctc_lp = _log_softmax(normal(2, 5, 4))
    ctc = (ctc_lp, torch.tensor([[1, 2], [3, 0]]), torch.tensor([5, 4]), torch.tensor([2, 1]))
    return {
        "CrossEntropyLoss": (
            (normal(N, C), index(N, C), w),
            {"label_smoothing": 0.1},
            {"class_weights": [0.5, 2.0, 1.0], "ignore_index": 1},
        ),
        "BinaryCrossEntropyLoss": (
            (2 * normal(N, C), binary(N, C), uniform(0.5, 2.0, N, C)),
            {"pos_weight": 2.0},
            {"pos_weight": [1.0, 3.0, 0.5]},
        ),
        "NLLLoss": (
            (_log_softmax(normal(N, C)), index(N, C)),
            {"ignore_index": 0},
            {"class_weights": np.array([0.5, 2.0, 1.0])},
        ),
        "KLDivLoss": ((_log_softmax(normal(N, C)), _log_softmax(normal(N, C))), {"axis": 0}, {}),
        "L1Loss": ((t + away, t), {}, {}),
        "MSELoss": ((normal(N, C), t), {}, {}),
        "HuberLoss": ((t + away, t), {"delta": 0.5}, {}),
        "SmoothL1Loss": ((t + away, t), {"beta": 0.5}, {}),
        "GaussianNLLLoss": ((normal(N, C), t, uniform(0.5, 2.0, N, C)), {"full": True}, {}),
        "PoissonNLLLoss": (
            (normal(N, C), torch.randint(0, 5, (N, C), generator=g).to(torch.float64)),
            {"full": True},
            {"log_input": False, "eps": 1e-3},
        ),
        "CTCLoss": (ctc, {"zero_infinity": True}, {"blank": 0}),
        "HingeLoss": ((normal(N, C), sign(N, C)), {}, {}),
        "SquaredHingeLoss": ((normal(N, C), sign(N, C)), {}, {}),
        "MulticlassHingeLoss": ((normal(N, C), index(N, C)), {"margin": 0.5}, {}),
        "CosineEmbeddingLoss": ((normal(N, C), normal(N, C), sign(N)), {"margin": 0.2}, {}),
        "MarginRankingLoss": ((normal(N), normal(N), sign(N)), {"margin": 0.3}, {}),
        "TripletLoss": ((normal(N, C), normal(N, C), normal(N, C)), {"margin": 0.5}, {"p": 1}),
        "CosineSimilarityLoss": ((normal(N, C), normal(N, C)), {"axis": -1}, {"eps": 1e-3}),
        "LogCoshLoss": ((t + away, t), {}, {}),
        "DiceLoss": ((uniform(0.05, 0.95, N, C), binary(N, C)), {"smooth": 0.5}, {"axis": None}),
        "InfoNCELoss": ((normal(N, C), normal(N, C)), {"symmetric": True}, {"normalize": False}),
        "NTXentLoss": ((normal(N, C), torch.tensor([0, 1, 0, 1])), {"temperature": 0.5}, {}),
        "SigmoidFocalLoss": (
            (2 * normal(N, C), binary(N, C), uniform(0.5, 2.0, N, C)),
            {"gamma": 1.0},
            {"alpha": None},
        ),
        "SoftmaxFocalLoss": (
            (normal(N, C), index(N, C), w),
            {"alpha": torch.tensor([0.5, 2.0, 1.0])},
            {"alpha": 0.25, "gamma": 1.0},
        ),
    }


CASES = cases()
NAMES = sorted(CASES)
# modules that own parameters (an output layer and its loss): not generated
# from the function's signature, tested on their own below
LAYERS = ["LinearCrossEntropyLoss"]


def _function_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """The options as the function takes them (lists as tensors, as the module
    stores them)."""
    return {
        k: torch.tensor(v) if isinstance(v, list | np.ndarray) else v for k, v in options.items()
    }


def _call_both(name: str, arrays: tuple[Any, ...], options: dict[str, Any], reduction: str):
    """(module result, function result, module gradients, function gradients)."""
    cls = getattr(at, name)
    module = cls(**options, reduction=reduction)
    kwargs = {**_function_kwargs(options), "reduction": reduction}
    weighted = len(arrays) == len(cls.arrays) and cls.arrays[-1] == "weights"
    outs, grads = [], []
    for use_module in (True, False):
        leaves = [a.detach().clone().requires_grad_(a.is_floating_point()) for a in arrays]
        if use_module:  # per-example weights: positional for the module
            out = module(*leaves)
        elif weighted:  # and a keyword for the function
            out = cls.loss_function(*leaves[:-1], weights=leaves[-1], **kwargs)
        else:
            out = cls.loss_function(*leaves, **kwargs)
        diff = [x for x in leaves if x.requires_grad]
        grads.append(torch.autograd.grad(out.sum(), diff, allow_unused=True))
        outs.append(out)
    return outs[0], outs[1], grads[0], grads[1]


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", NAMES)
def test_module_equals_function(name: str, reduction: str) -> None:
    arrays, option, other = CASES[name]
    for options in ({}, option, other):
        out, expected, grads, expected_grads = _call_both(name, arrays, options, reduction)
        assert out.dtype == expected.dtype
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
        for got, want in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def test_all_losses_have_a_module() -> None:
    functions = {getattr(at, n).loss_function for n in at.__all__}
    public = {
        getattr(anyloss, n)
        for n in anyloss.__all__
        if n[0].islower() and n not in ("losses",) and callable(getattr(anyloss, n))
    }
    assert functions == public
    assert len(at.__all__) == 25 == len(set(at.__all__))
    assert sorted(at.__all__) == sorted([*NAMES, *LAYERS])
    for n in at.__all__:
        cls = getattr(at, n)
        assert issubclass(cls, torch.nn.Module)
        assert cls.__name__ == n
        assert cls.__module__ == "anyloss.torch"


def test_default_reduction_is_mean() -> None:
    arrays, _, _ = CASES["HingeLoss"]
    module = at.HingeLoss()
    assert module.reduction == "mean"
    torch.testing.assert_close(module(*arrays), anyloss.hinge_loss(*arrays).mean())
    assert inspect.signature(anyloss.hinge_loss).parameters["reduction"].default == "none"


def test_signatures() -> None:
    sig = inspect.signature(at.CrossEntropyLoss)
    assert list(sig.parameters) == [
        "axis",
        "label_smoothing",
        "reduction",
        "ignore_index",
        "class_weights",
    ]
    assert all(p.kind is p.KEYWORD_ONLY for p in sig.parameters.values())
    assert sig.parameters["reduction"].default == "mean"
    assert sig.parameters["label_smoothing"].default == 0.0
    forward = inspect.signature(at.CrossEntropyLoss.forward)
    assert list(forward.parameters) == ["self", "logits", "targets", "weights"]
    assert forward.parameters["weights"].default is None
    ctc = inspect.signature(at.CTCLoss.forward)
    assert list(ctc.parameters) == [
        "self",
        "log_probs",
        "targets",
        "input_lengths",
        "target_lengths",
    ]
    assert list(inspect.signature(at.MSELoss).parameters) == ["reduction"]
    for n in NAMES:
        cls = getattr(at, n)
        func = cls.loss_function
        params = inspect.signature(func).parameters
        init = inspect.signature(cls).parameters
        assert set(init) | set(cls.arrays) == set(params), n
        for k, p in init.items():
            assert p.default == ("mean" if k == "reduction" else params[k].default), (n, k)
        doc = cls.__doc__
        assert f":func:`anyloss.{func.__name__}`" in doc
        assert cls.forward.__doc__
        if cls.torch_twin is not None:
            assert hasattr(torch.nn, cls.torch_twin), n
            assert f"torch.nn.{cls.torch_twin}" in doc


def test_buffers_move_and_are_saved() -> None:
    module = at.CrossEntropyLoss(class_weights=[1.0, 2.0, 3.0], label_smoothing=0.1)
    assert module.class_weights.dtype == torch.get_default_dtype()
    assert dict(module.named_buffers()).keys() == {"class_weights"}
    module = module.to(torch.float64)
    assert module.class_weights.dtype == torch.float64
    state = module.state_dict()
    assert list(state) == ["class_weights"]
    torch.testing.assert_close(
        state["class_weights"], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    )
    other = at.CrossEntropyLoss(class_weights=[0.0, 0.0, 0.0], label_smoothing=0.1).double()
    other.load_state_dict(state)
    logits, targets, _ = CASES["CrossEntropyLoss"][0]
    torch.testing.assert_close(other(logits, targets), module(logits, targets), rtol=0, atol=0)
    # buffers are found by torch's own machinery: a model holding the loss
    model = torch.nn.ModuleDict({"criterion": module})
    assert "criterion.class_weights" in model.state_dict()

    # no buffer where the option is None or a single number
    assert at.CrossEntropyLoss().state_dict() == {}
    assert at.BinaryCrossEntropyLoss(pos_weight=2.0).state_dict() == {}
    assert at.SoftmaxFocalLoss(alpha=0.25).state_dict() == {}
    pos = at.BinaryCrossEntropyLoss(pos_weight=np.array([1.0, 2.0]))
    assert list(pos.state_dict()) == ["pos_weight"]
    alpha = at.SoftmaxFocalLoss(alpha=torch.tensor([1, 2, 3]))  # integers become floats
    assert alpha.alpha.dtype == torch.get_default_dtype()
    kept = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert at.NLLLoss(class_weights=kept).class_weights.dtype == torch.float64


def test_repr() -> None:
    assert repr(at.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(at.MSELoss(reduction="sum")) == "MSELoss(reduction='sum')"
    module = at.CrossEntropyLoss(label_smoothing=0.1, class_weights=[1.0, 2.0], ignore_index=-100)
    assert repr(module) == (
        "CrossEntropyLoss(label_smoothing=0.1, ignore_index=-100, "
        "class_weights=tensor(shape=(2,)))"
    )
    assert repr(at.HuberLoss(delta=1)) == "HuberLoss()"  # equal to the default 1.0
    assert repr(at.TripletLoss(p=1)) == "TripletLoss(p=1)"
    assert repr(at.SigmoidFocalLoss(alpha=None)) == "SigmoidFocalLoss(alpha=None)"
    assert repr(at.BinaryCrossEntropyLoss(with_logits=np.False_)) == (
        "BinaryCrossEntropyLoss(with_logits=False)"
    )


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match=r"^cross_entropy\(\): invalid reduction 'avg'"):
        at.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"^l1_loss\(\): invalid reduction 'batchmean'"):
        at.L1Loss(reduction="batchmean")
    with pytest.raises(
        TypeError,
        match=r"'weight'; per-class weights are class_weights=; per-example weights go to "
        r"the call, criterion\(logits, targets, weights\) \(its keywords: axis=, ",
    ):
        at.CrossEntropyLoss(weight=torch.ones(3))
    with pytest.raises(
        TypeError, match=r"'sample_weight'; per-example weights go to the call, criterion\("
    ):
        at.BinaryCrossEntropyLoss(sample_weight=torch.ones(3))
    with pytest.raises(TypeError, match=r"'weight'; per-class weights are class_weights= \("):
        at.NLLLoss(weight=torch.ones(3))
    with pytest.raises(TypeError, match=r"MSELoss\(\) takes no weights"):
        at.MSELoss(weight=torch.ones(3))
    with pytest.raises(TypeError, match=r"use reduction="):
        at.MSELoss(size_average=False)
    with pytest.raises(TypeError, match=r"'targets'; targets is an argument of the call"):
        at.MSELoss(targets=torch.ones(3))
    with pytest.raises(
        TypeError, match=r"'weights'; NLLLoss\(\) takes per-class weights as class_weights="
    ):
        at.NLLLoss(weights=torch.ones(3))
    with pytest.raises(TypeError, match=r"'foo' \(its keywords: reduction=\)"):
        at.MSELoss(foo=1)
    with pytest.raises(TypeError, match=r"keyword arguments only"):
        at.CrossEntropyLoss(torch.ones(3))
    with pytest.raises(TypeError, match=r"label_smoothing must be a real number, got str"):
        at.CrossEntropyLoss(label_smoothing="0.1")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        at.CrossEntropyLoss(label_smoothing=1.0)
    with pytest.raises(TypeError, match=r"with_logits must be True or False"):
        at.BinaryCrossEntropyLoss(with_logits="false")
    with pytest.raises(TypeError, match=r"axis must be an int, got float"):
        at.KLDivLoss(axis=1.0)
    with pytest.raises(TypeError, match=r"ignore_index must be an int or None"):
        at.NLLLoss(ignore_index=0.5)
    with pytest.raises(TypeError, match=r"blank must be an int"):
        at.CTCLoss(blank=None)
    with pytest.raises(ValueError, match=r"class_weights\[1\] is NaN"):
        at.CrossEntropyLoss(class_weights=[1.0, float("nan")])
    with pytest.raises(ValueError, match=r"class_weights must be 1-D"):
        at.CrossEntropyLoss(class_weights=[[1.0, 2.0]])
    with pytest.raises(TypeError, match=r"class_weights must be a number or an array of numbers"):
        at.CrossEntropyLoss(class_weights="heavy")


_BAD = ["x", None, float("nan"), float("inf"), -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 1, True, 2.5]


@pytest.mark.parametrize("name", NAMES)
def test_constructor_checks_as_the_function(name: str) -> None:
    """For every option and a set of odd values: the constructor raises what the
    function raises (type and message), and accepts what the function accepts.
    Options whose validity depends on the inputs' shape (axis, blank, per-class
    arrays) are only required not to reject what the function takes."""
    cls = getattr(at, name)
    arrays = CASES[name][0]
    func = cls.loss_function
    shape_dependent = {"axis", "blank", "ignore_index"}
    for option in cls.options:
        for value in _BAD:
            try:
                func(*arrays, **{option: value})
                function_error = None
            except (TypeError, ValueError) as e:
                function_error = e
            try:
                cls(**{option: value})
                module_error = None
            except (TypeError, ValueError) as e:
                module_error = e
            if module_error is not None:
                assert function_error is not None, (option, value, module_error)
                if not str(module_error).startswith(cls.__name__):
                    assert type(module_error) is type(function_error), (option, value)
                    assert str(module_error) == str(function_error), (option, value)
            elif option not in shape_dependent and function_error is not None:
                # the function's complaint is about the option, not the data
                assert option not in str(function_error), (option, value, function_error)


@pytest.mark.parametrize("name", NAMES)
def test_every_option_is_checked_eagerly(name: str) -> None:
    """No option is stored unchecked: a string is wrong for each of them."""
    cls = getattr(at, name)
    for option in cls.options:
        with pytest.raises((TypeError, ValueError), match=option):
            cls(**{option: "x"})


def test_sequential_model_trains() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 5)
    y = torch.randint(0, 3, (16,))

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
            )
            self.criterion = at.CrossEntropyLoss(
                label_smoothing=0.05, class_weights=[1.0, 2.0, 1.0]
            )

        def forward(self, x: Any, y: Any) -> Any:
            return self.criterion(self.net(x), y)

    model = Model().to(torch.float64)
    assert model.criterion.class_weights.dtype == torch.float64
    assert "criterion.class_weights" in model.state_dict()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x = x.double()
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = model(x, y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > losses[1] > losses[2]
    # the same loss from torch.nn at the end (the math is the same)
    expected = torch.nn.CrossEntropyLoss(
        weight=torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64), label_smoothing=0.05
    )(model.net(x), y)
    torch.testing.assert_close(model(x, y), expected)


# --- the torch.nn twins --------------------------------------------------------------


def _twin_pairs() -> list[tuple[str, Any, Any, tuple[Any, ...]]]:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1, 2, 3, 0])
    padded = torch.tensor([0, 3, -100, 2, 3, -100])
    cw = torch.tensor([0.5, 2.0, 1.0, 1.5], dtype=torch.float64)
    t = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x = t + torch.randn(6, 4, generator=g, dtype=torch.float64)
    probs = torch.rand(6, 4, generator=g, dtype=torch.float64) * 0.9 + 0.05
    binary = torch.randint(0, 2, (6, 4), generator=g).to(torch.float64)
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    logp = torch.log_softmax(logits, -1)
    logq = torch.log_softmax(t, -1)
    var = torch.rand(6, 4, generator=g, dtype=torch.float64) + 0.5
    counts = torch.randint(0, 5, (6, 4), generator=g).to(torch.float64)
    s = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    a, b = torch.randn(2, 6, generator=g, dtype=torch.float64)
    ctc = torch.log_softmax(torch.randn(3, 7, 5, generator=g, dtype=torch.float64), -1)
    ctc_args = (
        ctc,
        torch.tensor([[1, 2, 2], [3, 4, 0], [1, 0, 0]]),
        torch.tensor([7, 6, 4]),
        torch.tensor([3, 2, 1]),
    )

    def pairs(red: str) -> list[tuple[str, Any, Any, tuple[Any, ...]]]:
        nn = torch.nn
        kl = "batchmean" if red == "mean" else red
        out = [
            (
                "CrossEntropyLoss",
                at.CrossEntropyLoss(label_smoothing=0.1, class_weights=cw, reduction=red),
                nn.CrossEntropyLoss(weight=cw, label_smoothing=0.1, reduction=red),
                (logits, labels),
            ),
            (
                "CrossEntropyLoss ignore_index",
                at.CrossEntropyLoss(ignore_index=-100, class_weights=cw, reduction=red),
                nn.CrossEntropyLoss(weight=cw, reduction=red),
                (logits, padded),
            ),
            (
                "CrossEntropyLoss probabilities",
                at.CrossEntropyLoss(label_smoothing=0.2, reduction=red),
                nn.CrossEntropyLoss(label_smoothing=0.2, reduction=red),
                (logits, torch.softmax(t, -1)),
            ),
            ("MSELoss", at.MSELoss(reduction=red), nn.MSELoss(reduction=red), (x, t)),
            ("L1Loss", at.L1Loss(reduction=red), nn.L1Loss(reduction=red), (x, t)),
            (
                "HuberLoss",
                at.HuberLoss(delta=0.7, reduction=red),
                nn.HuberLoss(delta=0.7, reduction=red),
                (x, t),
            ),
            (
                "SmoothL1Loss",
                at.SmoothL1Loss(beta=0.7, reduction=red),
                nn.SmoothL1Loss(beta=0.7, reduction=red),
                (x, t),
            ),
            (
                "BinaryCrossEntropyLoss",
                at.BinaryCrossEntropyLoss(pos_weight=pw, reduction=red),
                nn.BCEWithLogitsLoss(pos_weight=pw, reduction=red),
                (logits, binary),
            ),
            (
                "BinaryCrossEntropyLoss probabilities",
                at.BinaryCrossEntropyLoss(with_logits=False, reduction=red),
                nn.BCELoss(reduction=red),
                (probs, binary),
            ),
            (
                "NLLLoss",
                at.NLLLoss(class_weights=cw, ignore_index=-100, reduction=red),
                nn.NLLLoss(weight=cw, reduction=red),
                (logp, padded),
            ),
            (
                "GaussianNLLLoss",
                at.GaussianNLLLoss(full=True, reduction=red),
                nn.GaussianNLLLoss(full=True, reduction=red),
                (x, t, var),
            ),
            (
                "PoissonNLLLoss",
                at.PoissonNLLLoss(reduction=red),
                nn.PoissonNLLLoss(reduction=red),
                (x, counts),
            ),
            (
                "MarginRankingLoss",
                at.MarginRankingLoss(margin=0.3, reduction=red),
                nn.MarginRankingLoss(margin=0.3, reduction=red),
                (a, b, s),
            ),
            (
                "CosineEmbeddingLoss",
                at.CosineEmbeddingLoss(margin=0.2, reduction=red),
                nn.CosineEmbeddingLoss(margin=0.2, reduction=red),
                (x, t, s),
            ),
        ]
        if red != "none":  # KL: anyloss sums over the class axis, torch does not
            out.append(
                (
                    "KLDivLoss",
                    at.KLDivLoss(reduction=red),
                    nn.KLDivLoss(reduction=kl, log_target=True),
                    (logp, logq),
                )
            )
        out.append(
            (
                "CTCLoss",
                at.CTCLoss(reduction=red),
                nn.CTCLoss(reduction=red),
                ctc_args,
            )
        )
        return out

    return [p for red in ("none", "mean", "sum") for p in pairs(red)]


@pytest.mark.parametrize("case", _twin_pairs(), ids=lambda c: f"{c[0]}-{c[1].reduction}")
def test_torch_nn_twin(case: tuple[str, Any, Any, tuple[Any, ...]]) -> None:
    """Values and gradients with respect to the predictions (the arrays before
    the targets; torch.nn's losses do not all differentiate their targets)."""
    name, ours, theirs, arrays = case
    leaves = [a.clone().requires_grad_(a.is_floating_point()) for a in arrays]
    our_args = list(leaves)
    their_args = list(leaves)
    if name == "CTCLoss":
        # torch.nn.CTCLoss takes (T, N, C), and its gradient is right only for
        # log-probabilities computed in the graph: differentiate through log_softmax
        our_args[0] = torch.log_softmax(leaves[0], -1)
        their_args[0] = torch.log_softmax(leaves[0], -1).transpose(0, 1)
    got = ours(*our_args)
    expected = theirs(*their_args)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    predictions = leaves[: 2 if name in ("MarginRankingLoss", "CosineEmbeddingLoss") else 1]
    g1 = torch.autograd.grad(got.sum(), predictions)
    g2 = torch.autograd.grad(expected.sum(), predictions)
    for x, y in zip(g1, g2, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-11)


def test_import_anyloss_imports_no_torch() -> None:
    code = (
        "import sys, anyloss; assert 'torch' not in sys.modules, 'torch imported'; "
        "import anyloss.torch; assert 'torch' in sys.modules; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_subclass_keeps_its_loss() -> None:
    class Mine(at.MSELoss):
        pass

    arrays = CASES["MSELoss"][0]
    torch.testing.assert_close(Mine()(*arrays), anyloss.mse_loss(*arrays))
    assert math.isfinite(Mine(reduction="sum")(*arrays).item())


# -- LinearCrossEntropyLoss: an output layer and its loss ----------------------------


def _twin_pair(**options: Any) -> tuple[Any, Any]:
    """Our module and torch.nn's twin, float64, with the same parameters."""
    torch.manual_seed(0)
    ours = at.LinearCrossEntropyLoss(6, 9, bias=True, dtype=torch.float64, **options)
    twin_options = {
        "weight" if k == "class_weights" else k: torch.as_tensor(v, dtype=torch.float64)
        if k == "class_weights"
        else v
        for k, v in options.items()
        if k != "chunk_size"
    }
    twin = torch.nn.LinearCrossEntropyLoss(6, 9, bias=True, dtype=torch.float64, **twin_options)
    with torch.no_grad():
        twin.linear.weight.copy_(ours.weight.reshape(twin.linear.weight.shape))
        twin.linear.bias.copy_(ours.bias.reshape(twin.linear.bias.shape))
    return ours, twin


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"label_smoothing": 0.1, "ignore_index": -100, "chunk_size": 2},
        {"class_weights": [0.5, 2.0, 1.0, 1.0, 3.0, 0.25, 1.0, 1.5, 2.0], "reduction": "sum"},
        {"ignore_index": -100, "reduction": "none"},
    ],
)
def test_linear_module_matches_torch_twin(options: dict[str, Any]) -> None:
    ours, twin = _twin_pair(**options)
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 9, (2, 5), generator=g)
    targets[0, 1] = targets[1, 4] = -100 if "ignore_index" in options else 3
    results = []
    for module in (ours, twin):
        h = hidden.clone().requires_grad_(True)
        if module is ours:  # (batch, sequence, H)
            out = module(h, targets)
        else:  # the twin takes 2-D inputs only
            out = module(h.reshape(10, 6), targets.reshape(10))
        params = [p for p in module.parameters()]
        grads = torch.autograd.grad(out.sum(), [h, *params])
        results.append((out, grads))
    (out, grads), (want, want_grads) = results
    assert out.shape == ((2, 5) if options.get("reduction") == "none" else ())
    torch.testing.assert_close(out.reshape(want.shape), want, rtol=1e-12, atol=1e-14)
    for got, expected in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(got.reshape(expected.shape), expected, rtol=1e-10, atol=1e-13)


def test_linear_module_parameters_buffers_and_repr() -> None:
    module = at.LinearCrossEntropyLoss(4, 7, class_weights=[1.0] * 7, softcap=30.0)
    assert module.weight.shape == (7, 4) and module.bias is None
    assert set(module.state_dict()) == {"weight", "class_weights"}
    bound = 1 / math.sqrt(4)  # torch.nn.Linear's initialization
    assert float(module.weight.detach().abs().max()) <= bound
    assert repr(module) == (
        "LinearCrossEntropyLoss(in_features=4, num_classes=7, bias=False, "
        "class_weights=tensor(shape=(7,)), softcap=30.0)"
    )
    moved = module.to(torch.float64)
    assert moved.weight.dtype == moved.class_weights.dtype == torch.float64
    assert at.LinearCrossEntropyLoss(4, 7, bias=True).bias.shape == (7,)
    assert at.LinearCrossEntropyLoss.loss_function is anyloss.linear_cross_entropy


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"in_features": 0, "num_classes": 3}, ValueError, "in_features must be >= 1"),
        ({"in_features": 2, "num_classes": 2.5}, TypeError, "num_classes must be an int"),
        ({"in_features": 2, "num_classes": 3, "reduction": "avg"}, ValueError, "reduction"),
        ({"in_features": 2, "num_classes": 3, "softcap": 0.0}, ValueError, "softcap"),
        ({"in_features": 2, "num_classes": 3, "chunk_size": 0}, ValueError, "chunk_size"),
        (
            {"in_features": 2, "num_classes": 3, "class_weights": [1.0, 2.0]},
            ValueError,
            r"class_weights must have one weight per class, shape \(3,\), got \(2,\)",
        ),
    ],
)
def test_linear_module_constructor_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        at.LinearCrossEntropyLoss(**kwargs)


def test_linear_module_trains() -> None:
    torch.manual_seed(0)
    head = at.LinearCrossEntropyLoss(8, 20, bias=True)
    hidden = torch.randn(64, 8)
    targets = (hidden[:, 0] > 0).long() * 3 + (hidden[:, 1] > 0).long()
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        optimizer.zero_grad()
        loss = head(hidden, targets)
        loss.backward()
        optimizer.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < 0.5 * first

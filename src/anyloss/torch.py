r"""The anyloss losses as ``torch.nn.Module`` classes, for PyTorch code.

Each class wraps one loss function of anyloss: the constructor takes the
loss's options as keywords, and ``forward`` takes the arrays in the order of
the function::

    criterion = CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(logits, targets)  # anyloss.cross_entropy(logits, targets, ...)

The classes are generated from the signatures of the functions: the
parameters before the first default, and the per-example ``weights``, are the
arguments of ``forward``; every other parameter is a keyword-only argument of
the constructor, with the function's default (but see ``reduction`` below),
checked when the module is built by the same checks, with the same messages,
as the function's. Whatever depends on the arrays' shapes (an ``axis`` in
range, one class weight per class) is checked when the module is called.

Two differences from calling the function:

- ``reduction`` defaults to ``'mean'`` in every class, as in ``torch.nn``;
  several functions default to ``'none'``, as their MLX originals do.
- Per-class arrays given to the constructor (``class_weights``, an array
  ``pos_weight``, an array ``alpha``) are registered buffers: they move with
  ``module.to(...)``, and ``module.state_dict()`` saves them. A list or NumPy
  array becomes a tensor of PyTorch's default float dtype; a floating tensor
  is kept as it is.

==========================  ==========================  ======================================
Class                       Function (anyloss.)         ``torch.nn`` twin
==========================  ==========================  ======================================
``CrossEntropyLoss``        ``cross_entropy``           ``CrossEntropyLoss`` [1]
``BinaryCrossEntropyLoss``  ``binary_cross_entropy``    ``BCEWithLogitsLoss``, ``BCELoss`` [2]
``NLLLoss``                 ``nll_loss``                ``NLLLoss`` [1]
``KLDivLoss``               ``kl_div_loss``             ``KLDivLoss(log_target=True)`` [3]
``L1Loss``                  ``l1_loss``                 ``L1Loss``
``MSELoss``                 ``mse_loss``                ``MSELoss``
``HuberLoss``               ``huber_loss``              ``HuberLoss``
``SmoothL1Loss``            ``smooth_l1_loss``          ``SmoothL1Loss``
``GaussianNLLLoss``         ``gaussian_nll_loss``       ``GaussianNLLLoss``
``PoissonNLLLoss``          ``poisson_nll_loss``        ``PoissonNLLLoss``
``CTCLoss``                 ``ctc_loss``                ``CTCLoss`` [4]
``HingeLoss``               ``hinge_loss``              none
``SquaredHingeLoss``        ``squared_hinge_loss``      none
``MulticlassHingeLoss``     ``multiclass_hinge_loss``   none [5]
``CosineEmbeddingLoss``     ``cosine_embedding_loss``   ``CosineEmbeddingLoss``
``MarginRankingLoss``       ``margin_ranking_loss``     ``MarginRankingLoss``
``TripletLoss``             ``triplet_loss``            ``TripletMarginLoss`` [6]
``CosineSimilarityLoss``    ``cosine_similarity_loss``  none [7]
``LogCoshLoss``             ``log_cosh_loss``           none
``DiceLoss``                ``dice_loss``               none
``InfoNCELoss``             ``info_nce_loss``           none
``NTXentLoss``              ``nt_xent_loss``            none
``SigmoidFocalLoss``        ``sigmoid_focal_loss``      none [8]
``SoftmaxFocalLoss``        ``softmax_focal_loss``      none
``LinearCrossEntropyLoss``  ``linear_cross_entropy``    ``LinearCrossEntropyLoss`` [9]
==========================  ==========================  ======================================

Notes on the twins:

- [1] ``weight`` is ``class_weights``; ``ignore_index`` defaults to ``None``
  (every example counts), not ``-100``.
- [2] ``BCEWithLogitsLoss`` by default, ``BCELoss`` with ``with_logits=False``.
- [3] Summed over ``axis``: ``'mean'`` is ``torch.nn.KLDivLoss``'s ``'batchmean'``
  for 2-D inputs, ``'sum'`` its ``'sum'``.
- [4] ``log_probs`` is ``(N, T, C)`` (batch first), not ``(T, N, C)``.
- [5] Crammer-Singer: the largest non-target logit; ``MultiMarginLoss`` averages
  the hinges of all classes.
- [6] ``eps`` is added inside the square root, not to the difference.
- [7] The value is the similarity itself, as ``torch.nn.CosineSimilarity``'s.
- [8] ``torchvision.ops.sigmoid_focal_loss``.
- [9] An output layer and its loss: like its twin (not generated from the
  function's signature), it owns ``weight`` (``(num_classes, in_features)``)
  and an optional ``bias``, and ``forward(hidden, targets)`` never forms the
  logits. ``class_weights`` is its twin's ``weight``; ``ignore_index``
  defaults to ``None``.

Importing this module imports PyTorch; ``import anyloss`` alone does not.

Examples:
    >>> import torch
    >>> from anyloss.torch import CrossEntropyLoss
    >>> criterion = CrossEntropyLoss(label_smoothing=0.1)
    >>> criterion
    CrossEntropyLoss(label_smoothing=0.1)
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> criterion(logits, torch.tensor([0, 1]))
    tensor(0.5047)

    Class weights are a buffer, saved with the module:

    >>> criterion = CrossEntropyLoss(class_weights=[1.0, 2.0, 1.0])
    >>> criterion.state_dict()
    OrderedDict([('class_weights', tensor([1., 2., 1.]))])
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from ._backend import resolve
from ._checks import Reduction, _keyword_error, check_reduction, flag, no_nan, number, optional_int
from ._classification import binary_cross_entropy, cross_entropy, hinge_loss, nll_loss
from ._contrastive import info_nce_loss, nt_xent_loss
from ._distributions import kl_div_loss
from ._embedding import cosine_similarity_loss, margin_ranking_loss, triplet_loss
from ._focal import sigmoid_focal_loss, softmax_focal_loss
from ._linear import _chunk_size, _softcap, linear_cross_entropy
from ._margin import cosine_embedding_loss, multiclass_hinge_loss, squared_hinge_loss
from ._poisson import poisson_nll_loss
from ._regression import (
    gaussian_nll_loss,
    huber_loss,
    l1_loss,
    log_cosh_loss,
    mse_loss,
    smooth_l1_loss,
)
from ._segmentation import dice_loss
from ._sequence import ctc_loss

__all__ = [
    "BinaryCrossEntropyLoss",
    "CTCLoss",
    "CosineEmbeddingLoss",
    "CosineSimilarityLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "GaussianNLLLoss",
    "HingeLoss",
    "HuberLoss",
    "InfoNCELoss",
    "KLDivLoss",
    "L1Loss",
    "LinearCrossEntropyLoss",
    "LogCoshLoss",
    "MSELoss",
    "MarginRankingLoss",
    "MulticlassHingeLoss",
    "NLLLoss",
    "NTXentLoss",
    "PoissonNLLLoss",
    "SigmoidFocalLoss",
    "SmoothL1Loss",
    "SoftmaxFocalLoss",
    "SquaredHingeLoss",
    "TripletLoss",
]

_INF = float("inf")

# The bounds each function gives number() for its float options: an option
# name alone applies to every function, (function, option) overrides it.
_BOUNDS: dict[str | tuple[str, str], dict[str, Any]] = {
    "beta": {"low": 0.0},
    "delta": {"low": 0.0},
    "eps": {"low": 0.0},
    "gamma": {"low": 0.0, "high": _INF, "high_open": True},
    "label_smoothing": {"low": 0.0, "high": 1.0, "high_open": True},
    "margin": {},
    "p": {"low": 0.0, "low_open": True},
    "pos_weight": {},
    "smooth": {"low": 0.0, "high": _INF, "high_open": True},
    "temperature": {"low": 0.0, "low_open": True},
    ("cosine_embedding_loss", "margin"): {"low": -1.0, "high": 1.0},
    ("poisson_nll_loss", "eps"): {"low": 0.0, "low_open": True},
    ("sigmoid_focal_loss", "alpha"): {"low": 0.0, "high": 1.0},
    ("softmax_focal_loss", "alpha"): {"low": 0.0, "high": _INF, "high_open": True},
}
_FLAGS = frozenset({"with_logits", "full", "normalize", "symmetric", "log_input"})
# options that may hold one value per class: a buffer when given as an array
_PER_CLASS = {
    "cross_entropy": "class_weights",
    "nll_loss": "class_weights",
    "binary_cross_entropy": "pos_weight",
    "softmax_focal_loss": "alpha",
}


def _is_scalar(value: object) -> bool:
    """A Python/NumPy real number or a 0-d array (the functions' test for a
    single ``alpha``)."""
    return isinstance(value, numbers.Real) or getattr(value, "ndim", None) == 0


def _int(func: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{func}(): {name} must be an int, got {type(value).__name__}")
    return int(value)


def _axis(func: str, value: object) -> object:
    """``axis``: an int (``dice_loss``: also a tuple/list of ints, or None).

    Only the type is checked here; the range depends on the inputs' shape and
    is checked by the function.
    """
    if func == "dice_loss":
        if value is None:
            return None
        if isinstance(value, tuple | list):
            return tuple(_int(func, "axis", a) for a in value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"{func}(): axis must be an int, a tuple of ints or None, "
                f"got {type(value).__name__}"
            )
        return int(value)
    return _int(func, "axis", value)


def _check_option(func: str, name: str, value: Any) -> Any:
    """The value to store for option ``name`` of ``func``, checked as ``func``
    checks it (same exception type and message).

    Python numbers and bools are stored as given; NumPy scalars and 0-d arrays
    as the Python value the function would take from them. An option this
    table does not know is stored unchecked (the function checks it when the
    module is called).
    """
    checked: Any
    if name == "reduction":
        check_reduction(func, value)
        return value
    if name == "axis":
        return _axis(func, value)
    if name == "ignore_index":
        return optional_int(func, name, value)
    if name == "blank":
        return _int(func, name, value)
    if name == "zero_infinity":
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{func}(): {name} must be a bool, got {type(value).__name__}")
        return bool(value)
    if name in _FLAGS:
        checked = flag(func, name, value)
    elif (func, name) in _BOUNDS or name in _BOUNDS:
        if value is None and func == "sigmoid_focal_loss" and name == "alpha":
            return None
        checked = number(func, name, value, **_BOUNDS.get((func, name), _BOUNDS.get(name, {})))
    else:
        return value
    return value if type(value) in (bool, int, float) else checked


def _buffer(cls_name: str, func: str, name: str, value: Any) -> torch.Tensor:
    """A per-class option array as a float tensor without NaN (the function's check)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.get_default_dtype())
    else:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{cls_name}(): {name} must be a number or an array of numbers, "
                f"got {type(value).__name__}"
            ) from None
        tensor = torch.as_tensor(array, dtype=torch.get_default_dtype())
    if name != "pos_weight" and tensor.ndim != 1:
        raise ValueError(
            f"{cls_name}(): {name} must be 1-D, one weight per class, "
            f"got shape {tuple(tensor.shape)}"
        )
    no_nan(resolve(func, (name, tensor)), func, name, tensor)
    return tensor


def _arg_docs(doc: str | None) -> dict[str, str]:
    """The ``Args:`` entries of a Google-style docstring, one line each."""
    entries: dict[str, str] = {}
    current = None
    inside = False
    for line in inspect.cleandoc(doc or "").splitlines():
        if line.strip() == "Args:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            break
        match = re.match(r" {4}(\w+): (.*)", line)
        if match:
            current = match[1]
            entries[current] = match[2].strip()
        elif current is not None and line.strip():
            entries[current] += " " + line.strip()
    return {k: v.removeprefix("Keyword only.").strip() for k, v in entries.items() if v.strip()}


_BUFFER_NOTE = (
    "Given as an array, it is a registered buffer: it moves with ``.to()`` and is "
    "saved in ``state_dict``."
)


class _Loss(torch.nn.Module):
    """The common base of the loss modules; each subclass names its function.

    A subclass is declared as ``class Name(_Loss, loss=function, twin=...)``;
    ``__init_subclass__`` reads the function's signature and gives the class
    its constructor signature, ``forward`` and docstring.
    """

    loss_function: ClassVar[Callable[..., Any]]
    """The anyloss function the module calls."""
    arrays: ClassVar[tuple[str, ...]]
    """The arguments of ``forward``, in order (``weights`` last, where taken)."""
    options: ClassVar[dict[str, Any]]
    """The constructor's keywords and their defaults."""
    torch_twin: ClassVar[str | None]
    """The ``torch.nn`` class with the same loss, if any."""

    def __init_subclass__(
        cls, *, loss: Callable[..., Any] | None = None, twin: str | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if loss is None:  # a subclass of a loss module: keeps its parent's loss
            return
        sig = inspect.signature(inspect.unwrap(loss))  # not autodoc's rewritten one
        params = list(sig.parameters.values())
        first_default = next(
            (i for i, p in enumerate(params) if p.default is not inspect.Parameter.empty),
            len(params),
        )
        arrays = [p.name for p in params[:first_default]]
        weighted = "weights" in sig.parameters
        options = {
            p.name: ("mean" if p.name == "reduction" else p.default)
            for p in params[first_default:]
            if p.name != "weights"
        }
        cls.loss_function = loss
        cls.arrays = (*arrays, "weights") if weighted else tuple(arrays)
        cls.options = options
        cls.torch_twin = twin
        cls.__init__ = _make_init(cls, sig, options)  # type: ignore[method-assign]
        cls.forward = _make_forward(cls, arrays, weighted, list(options))  # type: ignore[method-assign]
        cls.__doc__ = _class_doc(cls, loss, twin, arrays, weighted, options)

    def _setup(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Check and store the constructor's arguments (see the class docstring)."""
        cls = type(self)
        name = cls.__name__
        func = cls.loss_function.__name__
        if args:
            raise TypeError(
                f"{name}() takes keyword arguments only (its keywords: "
                f"{', '.join(f'{k}=' for k in cls.options)}); the arrays go to the "
                f"call: criterion({', '.join(cls.arrays)})"
            )
        unknown = [k for k in kwargs if k not in cls.options]
        if unknown:
            raise _unknown_keyword(cls, unknown[0])
        super().__init__()
        per_class = _PER_CLASS.get(func)
        for option, default in cls.options.items():
            value = kwargs.get(option, default)
            if (
                option == per_class
                and value is not None
                and (option == "class_weights" or not _is_scalar(value))
            ):
                self.register_buffer(option, _buffer(name, func, option, value))
            elif option == per_class and value is None:
                self.register_buffer(option, None)
            else:
                setattr(self, option, _check_option(func, option, value))

    def forward(self, *arrays: torch.Tensor) -> torch.Tensor:  # replaced per subclass
        """The loss of the arrays, by the class's anyloss function."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        """The options that differ from the class's defaults (buffers by shape)."""
        shown = []
        for option, default in type(self).options.items():
            value = getattr(self, option)
            if isinstance(value, torch.Tensor):
                shown.append(f"{option}=tensor(shape={tuple(value.shape)})")
            elif isinstance(default, float) and isinstance(value, int | float):
                if value != default or value != value:
                    shown.append(f"{option}={value!r}")
            elif type(value) is not type(default) or value != default:
                shown.append(f"{option}={value!r}")
        return ", ".join(shown)


def _unknown_keyword(cls: type[_Loss], key: str) -> TypeError:
    """The TypeError for a constructor keyword the class does not take."""
    name = cls.__name__
    call = f"criterion({', '.join(cls.arrays)})"
    if key in cls.arrays:
        also = "; per-class weights are class_weights=" if "class_weights" in cls.options else ""
        return TypeError(
            f"{name}() got an unexpected keyword argument {key!r}; {key} is an "
            f"argument of the call, {call}{also}"
        )
    keywords = ", ".join(f"{k}=" for k in cls.options)
    if key in ("weight", "sample_weight"):
        hints = []
        if "class_weights" in cls.options:
            hints.append("per-class weights are class_weights=")
        if "weights" in cls.arrays:
            hints.append(f"per-example weights go to the call, {call}")
        hint = "; ".join(hints) or f"{name}() takes no weights"
        return TypeError(
            f"{name}() got an unexpected keyword argument {key!r}; {hint} (its keywords: "
            f"{keywords})"
        )
    error = _keyword_error(name, tuple(cls.options), {key: None})
    if error is None:  # cannot happen: key is not an option
        error = TypeError(f"{name}() got an unexpected keyword argument {key!r}")
    return error


def _make_init(
    cls: type[_Loss], sig: inspect.Signature, options: dict[str, Any]
) -> Callable[..., None]:
    def __init__(self: _Loss, *args: Any, **kwargs: Any) -> None:
        self._setup(args, kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__module__ = cls.__module__
    __init__.__doc__ = f"Build the module; the keywords are those of ``{cls.__name__}``."
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [
        sig.parameters[k].replace(kind=inspect.Parameter.KEYWORD_ONLY, default=default)
        for k, default in options.items()
    ]
    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=None
    )
    return __init__


def _make_forward(
    cls: type[_Loss],
    arrays: list[str],
    weighted: bool,
    options: list[str],
) -> Callable[..., torch.Tensor]:
    """``forward(self, <arrays>[, weights=None])`` calling the loss with the
    module's options, as real Python code: its signature is the one
    ``inspect``, ``torch.compile`` and ``torch.export`` see, and it reads each
    option as a plain attribute."""
    for name in (*arrays, *options):
        if not name.isidentifier():  # names come from a signature: cannot happen
            raise AssertionError(name)
    head = ", ".join(["self", *arrays, *(["weights=None"] if weighted else [])])
    keywords = [*(["weights=weights"] if weighted else []), *(f"{o}=self.{o}" for o in options)]
    source = f"def forward({head}):\n    return _loss({', '.join([*arrays, *keywords])})\n"
    namespace: dict[str, Any] = {"_loss": cls.loss_function}
    exec(compile(source, f"<anyloss.torch.{cls.__name__}.forward>", "exec"), namespace)
    forward: Callable[..., torch.Tensor] = namespace["forward"]
    forward.__qualname__ = f"{cls.__qualname__}.forward"
    forward.__module__ = cls.__module__
    annotations: dict[str, Any] = dict.fromkeys(arrays, torch.Tensor)
    if weighted:
        annotations["weights"] = torch.Tensor | None
    annotations["return"] = torch.Tensor
    forward.__annotations__ = annotations
    docs = _arg_docs(cls.loss_function.__doc__)
    func = cls.loss_function.__name__
    lines = [
        f"The loss of the arrays: ``anyloss.{func}`` with the module's options.",
        "",
        "Args:",
    ]
    for name in [*arrays, *(["weights"] if weighted else [])]:
        lines.append(f"    {name}: {docs.get(name, f'See :func:`anyloss.{func}`.')}")
    lines += ["", "Returns:", "    The loss, reduced as ``self.reduction`` says."]
    forward.__doc__ = "\n".join(lines)
    return forward


def _class_doc(
    cls: type[_Loss],
    loss: Callable[..., Any],
    twin: str | None,
    arrays: list[str],
    weighted: bool,
    options: dict[str, Any],
) -> str:
    func = loss.__name__
    reduction_default = inspect.signature(inspect.unwrap(loss)).parameters["reduction"].default
    docs = _arg_docs(loss.__doc__)
    summary = (inspect.cleandoc(loss.__doc__ or "").splitlines() or [""])[0]
    call = ", ".join([*arrays, *(["weights"] if weighted else [])])
    lines = [
        f"Module form of :func:`anyloss.{func}`: {summary[0].lower()}{summary[1:]}",
        "",
        f"``{cls.__name__}(**options)(" + call + f")`` is ``anyloss.{func}(" + call + ", "
        "**options)``, with ``reduction='mean'`` by default as in ``torch.nn``.",
        "",
        (
            f"PyTorch twin: ``torch.nn.{twin}``."
            if twin
            else "PyTorch has no ``torch.nn`` twin of this loss."
        ),
        "",
        "Args:",
    ]
    per_class = _PER_CLASS.get(func)
    for option, default in options.items():
        if option == "reduction":
            text = (
                "``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'`` (as in "
                f"``torch.nn``; ``anyloss.{func}`` defaults to "
                f"``{reduction_default!r}``)."
            )
        else:
            text = docs.get(option, f"See :func:`anyloss.{func}`. Default: ``{default!r}``.")
            if option == per_class:
                text += " " + _BUFFER_NOTE
        lines.append(f"    {option}: {text}")
    lines += [
        "",
        "Raises:",
        "    TypeError: An unknown keyword, positional arguments, an option of the",
        f"        wrong type (as ``anyloss.{func}`` raises it).",
        "    ValueError: An option out of range, an unknown reduction (as",
        f"        ``anyloss.{func}`` raises it).",
    ]
    return "\n".join(lines)


class CrossEntropyLoss(_Loss, loss=cross_entropy, twin="CrossEntropyLoss"):
    pass


class BinaryCrossEntropyLoss(_Loss, loss=binary_cross_entropy, twin="BCEWithLogitsLoss"):
    pass


class NLLLoss(_Loss, loss=nll_loss, twin="NLLLoss"):
    pass


class KLDivLoss(_Loss, loss=kl_div_loss, twin="KLDivLoss"):
    pass


class L1Loss(_Loss, loss=l1_loss, twin="L1Loss"):
    pass


class MSELoss(_Loss, loss=mse_loss, twin="MSELoss"):
    pass


class HuberLoss(_Loss, loss=huber_loss, twin="HuberLoss"):
    pass


class SmoothL1Loss(_Loss, loss=smooth_l1_loss, twin="SmoothL1Loss"):
    pass


class GaussianNLLLoss(_Loss, loss=gaussian_nll_loss, twin="GaussianNLLLoss"):
    pass


class PoissonNLLLoss(_Loss, loss=poisson_nll_loss, twin="PoissonNLLLoss"):
    pass


class CTCLoss(_Loss, loss=ctc_loss, twin="CTCLoss"):
    pass


class HingeLoss(_Loss, loss=hinge_loss):
    pass


class SquaredHingeLoss(_Loss, loss=squared_hinge_loss):
    pass


class MulticlassHingeLoss(_Loss, loss=multiclass_hinge_loss):
    pass


class CosineEmbeddingLoss(_Loss, loss=cosine_embedding_loss, twin="CosineEmbeddingLoss"):
    pass


class MarginRankingLoss(_Loss, loss=margin_ranking_loss, twin="MarginRankingLoss"):
    pass


class TripletLoss(_Loss, loss=triplet_loss, twin="TripletMarginLoss"):
    pass


class CosineSimilarityLoss(_Loss, loss=cosine_similarity_loss):
    pass


class LogCoshLoss(_Loss, loss=log_cosh_loss):
    pass


class DiceLoss(_Loss, loss=dice_loss):
    pass


class InfoNCELoss(_Loss, loss=info_nce_loss):
    pass


class NTXentLoss(_Loss, loss=nt_xent_loss):
    pass


class SigmoidFocalLoss(_Loss, loss=sigmoid_focal_loss):
    pass


class SoftmaxFocalLoss(_Loss, loss=softmax_focal_loss):
    pass


class LinearCrossEntropyLoss(torch.nn.Module):
    """An output layer and its cross entropy in one module:
    :func:`anyloss.linear_cross_entropy` of a learned ``weight`` (and ``bias``).

    ``LinearCrossEntropyLoss(H, V)(hidden, targets)`` is
    ``anyloss.linear_cross_entropy(hidden, module.weight, targets, module.bias,
    **options)``: the loss of ``torch.nn.Linear(H, V)`` followed by a cross
    entropy, without ever holding the ``(tokens, V)`` logits. The parameters
    are initialized as ``torch.nn.Linear``'s.

    PyTorch twin: ``torch.nn.LinearCrossEntropyLoss`` (its ``weight`` is
    ``class_weights`` here, its ``options`` is ``chunk_size``).

    Args:
        in_features: The size ``H`` of each hidden vector.
        num_classes: The number of classes ``V`` (the vocabulary).
        bias: Keyword only. Whether the layer has a bias. Default: ``False``
            (as the twin; language-model heads usually have none).
        device: Keyword only. The device of the parameters. Default: ``None``.
        dtype: Keyword only. The dtype of the parameters. Default: ``None``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.
        label_smoothing: Label smoothing factor in ``[0, 1)``. Default: ``0``.
        ignore_index: A target value left out of the loss and the ``'mean'``.
            Default: ``None``.
        class_weights: One weight per class, a registered buffer (moves with
            ``.to()``, saved in ``state_dict``). Default: ``None``.
        softcap: Cap the logits at ``±softcap`` (``softcap * tanh(x /
            softcap)``). Default: ``None``.
        chunk_size: Rows per chunk, or ``(rows, classes)`` per tile of logits.
            Default: ``None`` (see :func:`anyloss.linear_cross_entropy`).

    Raises:
        TypeError: An option of the wrong type.
        ValueError: An option out of range, an unknown reduction.

    Examples:
        >>> import torch
        >>> from anyloss.torch import LinearCrossEntropyLoss
        >>> _ = torch.manual_seed(0)
        >>> head = LinearCrossEntropyLoss(16, 1000, ignore_index=-100)
        >>> hidden = torch.randn(8, 16, requires_grad=True)
        >>> targets = torch.tensor([1, 5, 7, 999, 0, -100, 3, 3])
        >>> loss = head(hidden, targets)
        >>> loss.backward()
        >>> head.weight.grad.shape
        torch.Size([1000, 16])
    """

    loss_function: ClassVar[Callable[..., Any]] = linear_cross_entropy
    arrays: ClassVar[tuple[str, ...]] = ("hidden", "targets")
    options: ClassVar[dict[str, Any]] = {
        "reduction": "mean",
        "label_smoothing": 0.0,
        "ignore_index": None,
        "class_weights": None,
        "softcap": None,
        "chunk_size": None,
    }
    torch_twin: ClassVar[str | None] = "LinearCrossEntropyLoss"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        bias: bool = False,
        device: Any = None,
        dtype: Any = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
        class_weights: Any = None,
        softcap: float | None = None,
        chunk_size: int | tuple[int, int] | None = None,
    ) -> None:
        func = "linear_cross_entropy"
        name = type(self).__name__
        for arg, value in (("in_features", in_features), ("num_classes", num_classes)):
            if _int(name, arg, value) < 1:
                raise ValueError(f"{name}(): {arg} must be >= 1, got {value}")
        check_reduction(func, reduction)
        super().__init__()
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        self.reduction: Reduction = reduction  # type: ignore[assignment]
        self.label_smoothing = number(
            func, "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True
        )
        self.ignore_index = optional_int(func, "ignore_index", ignore_index)
        self.softcap = _softcap(softcap)
        _chunk_size(chunk_size)  # checked as the function checks it
        self.chunk_size = tuple(chunk_size) if isinstance(chunk_size, list) else chunk_size
        kw = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.empty((self.num_classes, self.in_features), **kw))
        if bias:
            self.bias = torch.nn.Parameter(torch.empty((self.num_classes,), **kw))
        else:
            self.register_parameter("bias", None)
        weights = None
        if class_weights is not None:
            weights = _buffer(name, func, "class_weights", class_weights)
            if weights.shape != (self.num_classes,):
                raise ValueError(
                    f"{name}(): class_weights must have one weight per class, shape "
                    f"({self.num_classes},), got {tuple(weights.shape)}"
                )
        self.register_buffer("class_weights", weights)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize ``weight`` and ``bias`` as ``torch.nn.Linear`` does."""
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of ``hidden`` (``(..., in_features)``) against the class
        indices ``targets`` (the shape of ``hidden`` without its last axis)."""
        loss: torch.Tensor = linear_cross_entropy(
            hidden,
            self.weight,
            targets,
            self.bias,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
            class_weights=self.class_weights,
            softcap=self.softcap,
            chunk_size=self.chunk_size,
        )
        return loss

    def extra_repr(self) -> str:
        """The sizes, and the options that differ from their defaults."""
        shown = [f"in_features={self.in_features}", f"num_classes={self.num_classes}"]
        shown.append(f"bias={self.bias is not None}")
        for option, default in type(self).options.items():
            value = getattr(self, option)
            if isinstance(value, torch.Tensor):
                shown.append(f"{option}=tensor(shape={tuple(value.shape)})")
            elif value != default:
                shown.append(f"{option}={value!r}")
        return ", ".join(shown)

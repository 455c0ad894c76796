"""Keras 3 losses: anyloss's functions as ``keras.losses.Loss`` classes.

Pass one to ``model.compile(loss=...)``; Keras's own machinery does the rest
(``sample_weight``, masks, the reduction, ``model.save``):

>>> import keras
>>> import numpy as np
>>> import anyloss.keras
>>> loss = anyloss.keras.CrossEntropyLoss(label_smoothing=0.1)
>>> logits = np.array([[2.0, -1.0], [-1.0, 2.0]], dtype=np.float32)
>>> y = np.array([0, 1])
>>> round(float(loss(y, logits)), 6)  # Keras's argument order: y_true, y_pred
0.198587
>>> round(float(anyloss.cross_entropy(logits, y, label_smoothing=0.1, reduction="mean")), 6)
0.198587
>>> anyloss.keras.CrossEntropyLoss.from_config(loss.get_config()).get_config() == loss.get_config()
True

The classes, and the function each one calls (one class per loss of anyloss
that takes two arrays):

======================================  ==============================
class                                   function
======================================  ==============================
:class:`BinaryCrossEntropyLoss`         :func:`~anyloss.binary_cross_entropy`
:class:`CosineSimilarityLoss`           :func:`~anyloss.cosine_similarity_loss`
:class:`CrossEntropyLoss`               :func:`~anyloss.cross_entropy`
:class:`DiceLoss`                       :func:`~anyloss.dice_loss`
:class:`HingeLoss`                      :func:`~anyloss.hinge_loss`
:class:`HuberLoss`                      :func:`~anyloss.huber_loss`
:class:`InfoNCELoss`                    :func:`~anyloss.info_nce_loss`
:class:`KLDivLoss`                      :func:`~anyloss.kl_div_loss`
:class:`L1Loss`                         :func:`~anyloss.l1_loss`
:class:`LogCoshLoss`                    :func:`~anyloss.log_cosh_loss`
:class:`MSELoss`                        :func:`~anyloss.mse_loss`
:class:`MulticlassHingeLoss`            :func:`~anyloss.multiclass_hinge_loss`
:class:`NLLLoss`                        :func:`~anyloss.nll_loss`
:class:`NTXentLoss`                     :func:`~anyloss.nt_xent_loss`
:class:`PoissonNLLLoss`                 :func:`~anyloss.poisson_nll_loss`
:class:`SigmoidFocalLoss`               :func:`~anyloss.sigmoid_focal_loss`
:class:`SmoothL1Loss`                   :func:`~anyloss.smooth_l1_loss`
:class:`SoftmaxFocalLoss`               :func:`~anyloss.softmax_focal_loss`
:class:`SquaredHingeLoss`               :func:`~anyloss.squared_hinge_loss`
======================================  ==============================

How a call maps onto the function:

* ``loss(y_true, y_pred, sample_weight)`` calls
  ``fn(y_pred, y_true, **options, reduction="none")``; Keras applies
  ``sample_weight`` (the function's per-example ``weights``) and its own
  ``reduction`` (default ``"sum_over_batch_size"``: the sum of the weighted
  per-sample losses divided by their number).
* The constructor takes the function's options as keywords, with the
  function's defaults (MLX's: ``BinaryCrossEntropyLoss`` expects logits, as
  ``with_logits=True``), and Keras's ``reduction=``, ``name=`` and ``dtype=``.
* Losses that work along an axis (cross entropy, KL divergence, cosine
  similarity, Dice, InfoNCE ...) give one value per sample. Elementwise losses
  (MSE, L1, Huber, binary cross entropy, focal ...) are averaged over the last
  axis of 2-D and higher predictions, as Keras's own ``MeanSquaredError`` is,
  so that a ``sample_weight`` of shape ``(batch,)`` weights whole samples.
  With uniform weights Keras's default reduction then equals the function's
  ``reduction="mean"``.
* Class indices: Keras hands the loss ``y_true`` as floats. Where the
  function takes class indices (``CrossEntropyLoss``, ``SoftmaxFocalLoss``,
  ``NLLLoss``, ``MulticlassHingeLoss``, ``NTXentLoss``), ``y_true`` with one
  dimension less than ``y_pred``, or with size 1 on the class axis (Keras's
  ``(batch, 1)`` labels), is cast to ``int32`` class indices; for
  ``CrossEntropyLoss`` and ``SoftmaxFocalLoss`` a ``y_true`` shaped like
  ``y_pred`` stays class probabilities (one-hot labels), and for the other
  three it is cast too (they take indices only). Keras casts ``y_true`` to
  the loss's ``dtype`` first: float32 (the default) holds every index below
  2**24, ``dtype="bfloat16"`` only those up to 256.
* ``ignore_index`` (``CrossEntropyLoss``, ``NLLLoss``): the ignored samples
  are masked out (a Keras mask on the per-sample losses), so Keras's mean
  divides by the number of the others, as the function's ``"mean"`` does.
  With ``class_weights`` Keras's mean still divides by the number of samples,
  not by the sum of the applied class weights as the function's ``"mean"``
  does: use ``reduction="sum"`` and divide yourself to get that.
* Array options (``class_weights``, ``pos_weight``, an ``alpha`` array) are
  kept as NumPy arrays, handed to the function as tensors of the Keras
  backend, and written to ``get_config()`` as lists. Every class is
  registered with ``keras.saving.register_keras_serializable(package="anyloss")``
  (as ``"anyloss>CrossEntropyLoss"`` ...), so a model saved with one reloads
  with ``keras.models.load_model`` once ``anyloss.keras`` is imported.
* An unknown keyword is a ``TypeError`` at construction; a bad option value
  (``HuberLoss(delta=-1.0)``) is the function's own error at the first call.

The backend's arrays reach the function unchanged (JAX arrays under the JAX
backend, torch tensors under the torch backend), so gradients flow through the
backend's autodiff and ``model.fit`` compiles the loss with the model (under
``jax.jit`` the data-dependent checks, such as class indices out of range, are
skipped and such a sample's loss is NaN, see the functions).

Left out: the losses that take a third array, which Keras's
``Loss.call(y_true, y_pred)`` has no place for, namely
:func:`~anyloss.gaussian_nll_loss` (variances), :func:`~anyloss.triplet_loss`
(negatives), :func:`~anyloss.margin_ranking_loss` and
:func:`~anyloss.cosine_embedding_loss` (a second input),
:func:`~anyloss.ctc_loss` (lengths) and :func:`~anyloss.linear_cross_entropy`
(the output layer's weight). Call those functions in a custom ``train_step``
or through ``model.add_loss``.
"""

from __future__ import annotations

import inspect
import numbers
import re
from collections.abc import Callable
from typing import Any, ClassVar

import keras  # type: ignore[import-untyped, unused-ignore]
import numpy as np

from ._classification import binary_cross_entropy, cross_entropy, hinge_loss, nll_loss
from ._contrastive import info_nce_loss, nt_xent_loss
from ._distributions import kl_div_loss
from ._embedding import cosine_similarity_loss
from ._focal import sigmoid_focal_loss, softmax_focal_loss
from ._margin import multiclass_hinge_loss, squared_hinge_loss
from ._poisson import poisson_nll_loss
from ._regression import huber_loss, l1_loss, log_cosh_loss, mse_loss, smooth_l1_loss
from ._segmentation import dice_loss

try:  # Keras's own hook for masks on loss values (not in its public API)
    from keras.src.backend import set_keras_mask as _set_keras_mask
except ImportError:  # pragma: no cover - a Keras without it: no mask
    _set_keras_mask = None

__all__ = [
    "AnylossLoss",
    "BinaryCrossEntropyLoss",
    "CosineSimilarityLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "HingeLoss",
    "HuberLoss",
    "InfoNCELoss",
    "KLDivLoss",
    "L1Loss",
    "LogCoshLoss",
    "MSELoss",
    "MulticlassHingeLoss",
    "NLLLoss",
    "NTXentLoss",
    "PoissonNLLLoss",
    "SigmoidFocalLoss",
    "SmoothL1Loss",
    "SoftmaxFocalLoss",
    "SquaredHingeLoss",
]

# Keyword arguments of keras.losses.Loss itself; anyloss's `reduction` is not
# an option (the function is always called with reduction="none").
_KERAS_KEYWORDS = ("reduction", "name", "dtype")

# The function's parameters that are no options: the two arrays come from
# Keras's call, the per-example weights from its sample_weight.
_NOT_OPTIONS = ("weights", "reduction")

# How y_true is read where the function takes class indices: "indices" (always
# cast to int), "either" (indices if y_true lacks the class axis, else class
# probabilities). Every other loss takes y_true as floats.
_INDICES = "indices"
_EITHER = "either"


def _option_docs(fn: Callable[..., Any]) -> dict[str, str]:
    """The descriptions of ``fn``'s arguments, from its Google-style ``Args:``."""
    doc = inspect.getdoc(fn) or ""
    block = doc.partition("Args:\n")[2]
    out: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if line and not line.startswith(" "):
            break  # the end of the Args: block
        entry = re.match(r"    (\w+): (.*)", line)
        if entry:
            current = entry.group(1)
            out[current] = entry.group(2).removeprefix("Keyword only. ")
        elif current is not None and line.strip():
            out[current] += " " + line.strip()
    return out


def _jsonable(value: Any) -> Any:
    """An option value as get_config() writes it: arrays and tuples as lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def _normalize(name: str, value: Any) -> Any:
    """An option value as the loss keeps it: Python scalars, a tuple of ints
    for an axis list, and a NumPy array for every other array-like."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if name == "axis" and isinstance(value, list | tuple):
        return tuple(int(a) if isinstance(a, numbers.Integral) else a for a in value)
    array = np.asarray(value)
    if array.ndim == 0:
        return array.item()
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    return value  # left to the function to reject


def _same_rank(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Keras's rule for targets that differ from the predictions by a trailing
    dimension of size 1: a 1-D one gains the dimension, others lose theirs."""
    ops = keras.ops
    t, p = len(y_true.shape), len(y_pred.shape)
    if t == p + 1 and y_true.shape[-1] == 1:
        if p == 1:
            y_pred = ops.expand_dims(y_pred, axis=-1)
        else:
            y_true = ops.squeeze(y_true, axis=-1)
    elif p == t + 1 and y_pred.shape[-1] == 1:
        if t == 1:
            y_true = ops.expand_dims(y_true, axis=-1)
        else:
            y_pred = ops.squeeze(y_pred, axis=-1)
    return y_true, y_pred


def _class_targets(y_true: Any, y_pred: Any, axis: object, always: bool) -> tuple[Any, bool]:
    """``y_true`` as int32 class indices where it holds them, and whether it does.

    Indices: one dimension less than ``y_pred``; or Keras's ``(batch, 1)``
    labels, the class axis of size 1 (squeezed) where ``y_pred``'s is not;
    or any ``y_true`` when the loss takes indices only (``always``).
    """
    ops = keras.ops
    t, p = len(y_true.shape), len(y_pred.shape)
    if (
        isinstance(axis, int)  # else the function rejects it
        and t == p
        and -p <= axis < p
        and y_true.shape[axis] == 1
        and y_pred.shape[axis] != 1
    ):
        y_true = ops.squeeze(y_true, axis=axis)
        t -= 1
    if always or t == p - 1:
        return ops.cast(y_true, "int32"), True
    return y_true, False


class AnylossLoss(keras.losses.Loss):  # type: ignore[misc]
    """The base of the Keras losses of anyloss: calls :attr:`fn`.

    Subclasses are made by ``_make`` from a loss function; see the module
    documentation for how ``y_true``, ``y_pred`` and ``sample_weight`` reach it.
    """

    fn: ClassVar[Callable[..., Any]]
    """The anyloss function this class calls."""
    defaults: ClassVar[dict[str, Any]] = {}
    """The function's options and their defaults."""
    targets: ClassVar[str | None] = None
    """``"indices"``, ``"either"`` or None: see ``_class_targets``."""

    def __init__(
        self,
        *,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
        **options: Any,
    ) -> None:
        unknown = [k for k in options if k not in self.defaults]
        if unknown:
            raise TypeError(self._keyword_error(unknown[0]))
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        # for get_config: a policy's name rebuilds it ("mixed_bfloat16", "float64")
        self._given_dtype = None if dtype is None else self._dtype_policy.name
        self.options: dict[str, Any] = {
            k: _normalize(k, options.get(k, default)) for k, default in self.defaults.items()
        }

    @classmethod
    def _keyword_error(cls, key: str) -> str:
        func = cls.fn.__name__
        if key in ("weights", "weight", "sample_weight"):
            hint = (
                "per-example weights are Keras's sample_weight= "
                "(of the loss call, model.fit or model.evaluate)"
            )
        elif key in ("from_logits", "with_logits") and "with_logits" in cls.defaults:
            hint = "whether the inputs are logits is with_logits="
        elif key == "ignore_class":
            hint = "the ignored target is ignore_index="
        else:
            hint = ""
        known = ", ".join(f"{k}=" for k in (*cls.defaults, *_KERAS_KEYWORDS))
        return (
            f"{cls.__name__}() got an unexpected keyword argument {key!r}"
            f"{f'; {hint}' if hint else ''} (the options of anyloss.{func}, "
            f"and Keras's: {known})"
        )

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """The per-sample losses of ``fn(y_pred, y_true, **options, reduction="none")``.

        Args:
            y_true: The targets (Keras's first argument).
            y_pred: The predictions.

        Returns:
            The loss per sample: the function's per-example loss, averaged
            over the last axis where it has the shape of ``y_pred`` (2-D and
            higher). Keras applies ``sample_weight`` and the reduction.
        """
        ops = keras.ops
        options = dict(self.options)
        indices = False
        if self.targets is not None:
            axis = options.get("axis", -1)
            y_true, indices = _class_targets(y_true, y_pred, axis, self.targets == _INDICES)
        else:
            y_true, y_pred = _same_rank(y_true, y_pred)
        for key, value in options.items():
            if isinstance(value, np.ndarray):
                options[key] = ops.convert_to_tensor(value, dtype=self.dtype)
        losses = self.fn(y_pred, y_true, **options, reduction="none")
        ndim = len(y_pred.shape)
        if ndim >= 2 and len(losses.shape) == ndim:  # elementwise: one value per sample
            losses = ops.mean(losses, axis=-1)
        ignore = options.get("ignore_index")
        if indices and ignore is not None and _set_keras_mask is not None:
            _set_keras_mask(losses, ops.not_equal(y_true, ignore))
        return losses

    def __repr__(self) -> str:
        changed = [
            f"{k}={_jsonable(v)!r}"
            for k, v in self.options.items()
            if isinstance(v, np.ndarray) or v != self.defaults[k]
        ]
        if self.reduction != "sum_over_batch_size":
            changed.append(f"reduction={self.reduction!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments: Keras's and the options (arrays as lists).

        Returns:
            A JSON-serializable dict; ``cls.from_config(config)`` rebuilds the loss.
        """
        config: dict[str, Any] = super().get_config()
        config["dtype"] = self._given_dtype
        config.update({k: _jsonable(v) for k, v in self.options.items()})
        return config


def _make(
    class_name: str, fn: Callable[..., Any], targets: str | None = None
) -> type[AnylossLoss]:
    """The Keras loss class of ``fn``, registered with Keras's serialization.

    Its options are the parameters of ``fn`` after the two arrays, less the
    per-example weights and the reduction.
    """
    # the function's own signature: Sphinx autodoc rewrites the wrapper's defaults
    params = list(inspect.signature(inspect.unwrap(fn)).parameters.values())[2:]
    defaults = {p.name: p.default for p in params if p.name not in _NOT_OPTIONS}
    docs = _option_docs(fn)
    lines = [
        f"Keras loss calling :func:`anyloss.{fn.__name__}`: "
        f"``{fn.__name__}(y_pred, y_true, **options, reduction='none')``.",
        "",
        (inspect.getdoc(fn) or "").splitlines()[0],
        "",
        "Args:",
    ]
    lines += [f"    {k}: {docs.get(k, f'Default: ``{v!r}``.')}" for k, v in defaults.items()]
    lines += [
        "    reduction: Keras's reduction of the per-sample losses. Default: "
        "``'sum_over_batch_size'``.",
        "    name: The loss's name. Default: derived from the class name.",
        "    dtype: Keras's dtype (policy) of the computation. Default: ``None`` "
        "(``keras.backend.floatx()``).",
        "",
        "Raises:",
        "    TypeError: A keyword that is no option of the function (bad values are "
        "the function's own error at the first call).",
    ]
    signature = inspect.Signature(
        [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
            for k, v in defaults.items()
        ]
        + [
            inspect.Parameter(
                "reduction", inspect.Parameter.KEYWORD_ONLY, default="sum_over_batch_size"
            ),
            inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None),
            inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None),
        ]
    )
    namespace = {
        "fn": staticmethod(fn),
        "defaults": defaults,
        "targets": targets,
        "__doc__": "\n".join(lines),
        "__module__": __name__,
        "__qualname__": class_name,
        "__signature__": signature,
    }
    cls = type(class_name, (AnylossLoss,), namespace)
    registered: type[AnylossLoss] = keras.saving.register_keras_serializable(package="anyloss")(
        cls
    )
    return registered


BinaryCrossEntropyLoss = _make("BinaryCrossEntropyLoss", binary_cross_entropy)
CosineSimilarityLoss = _make("CosineSimilarityLoss", cosine_similarity_loss)
CrossEntropyLoss = _make("CrossEntropyLoss", cross_entropy, _EITHER)
DiceLoss = _make("DiceLoss", dice_loss)
HingeLoss = _make("HingeLoss", hinge_loss)
HuberLoss = _make("HuberLoss", huber_loss)
InfoNCELoss = _make("InfoNCELoss", info_nce_loss)
KLDivLoss = _make("KLDivLoss", kl_div_loss)
L1Loss = _make("L1Loss", l1_loss)
LogCoshLoss = _make("LogCoshLoss", log_cosh_loss)
MSELoss = _make("MSELoss", mse_loss)
MulticlassHingeLoss = _make("MulticlassHingeLoss", multiclass_hinge_loss, _INDICES)
NLLLoss = _make("NLLLoss", nll_loss, _INDICES)
NTXentLoss = _make("NTXentLoss", nt_xent_loss, _INDICES)
PoissonNLLLoss = _make("PoissonNLLLoss", poisson_nll_loss)
SigmoidFocalLoss = _make("SigmoidFocalLoss", sigmoid_focal_loss)
SmoothL1Loss = _make("SmoothL1Loss", smooth_l1_loss)
SoftmaxFocalLoss = _make("SoftmaxFocalLoss", softmax_focal_loss, _EITHER)
SquaredHingeLoss = _make("SquaredHingeLoss", squared_hinge_loss)

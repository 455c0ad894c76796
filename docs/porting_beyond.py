"""Porting examples beyond MLX: the losses and options MLX does not have.

The same pattern as ``porting_examples.py``: every function registered with
:func:`example` returns ``(theirs, ours)``, the value computed by PyTorch,
optax or Keras and the value computed by anyloss on the same float32 NumPy
inputs. ``tests/test_porting.py`` runs each of them; the "Beyond MLX" part of
the Porting page is generated from this file at build time and shows the
same functions, so it claims no equivalence the tests do not check.

``NAMES`` is the table behind that part: for each of the eleven losses beyond
MLX and each keyword-only option of the core losses, the counterpart of every
framework (``"(none)"`` where it has none), how its arguments differ, what its
inputs are and its default reduction. A counterpart described as ``"(none;
...)"`` with full facts is a hand-written replacement, and is tested too.

An example is compared to float32 rounding (``rtol=2e-6, atol=1e-7``) unless
it passes looser bounds with a reason to :func:`example`: the other
framework's own float32 rounding, not anyloss's, is what they allow for.
"""

from __future__ import annotations

import os
from collections.abc import Callable

# Keras 3 picks its backend when it is first imported (see porting_examples.py).
os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np

import anyloss

#: The frameworks compared, in table order: key -> (column title, module to import).
FRAMEWORKS = {
    "torch": ("PyTorch", "torch"),
    "optax": ("optax", "optax"),
    "keras": ("Keras 3", "keras"),
}

#: The default tolerances of the comparison (float32 rounding).
RTOL, ATOL = 2e-6, 1e-7

#: (entry, framework) -> example function returning (theirs, ours).
EXAMPLES: dict[tuple[str, str], Callable[[], tuple[object, object]]] = {}

#: (entry, framework) -> (rtol, atol, reason), for the examples checked more loosely.
TOLERANCES: dict[tuple[str, str], tuple[float, float, str]] = {}


def example(
    entry: str,
    framework: str,
    rtol: float = RTOL,
    atol: float = ATOL,
    why: str = "",
) -> Callable[[Callable], Callable]:
    """Register ``func`` as the tested example of ``entry`` (a loss or an option)
    from ``framework``; looser tolerances need their reason in ``why``."""
    looser = rtol > RTOL or atol > ATOL
    if looser and not why:
        raise ValueError(f"{entry}/{framework}: a looser tolerance needs a reason")

    def register(func: Callable) -> Callable:
        EXAMPLES[(entry, framework)] = func
        if looser:
            TOLERANCES[(entry, framework)] = (rtol, atol, why)
        return func

    return register


def tolerance(entry: str, framework: str) -> tuple[float, float]:
    """``(rtol, atol)`` the example of ``entry`` from ``framework`` is held to."""
    rtol, atol, _ = TOLERANCES.get((entry, framework), (RTOL, ATOL, ""))
    return rtol, atol


# [inputs]
# The inputs every example uses: float32 NumPy arrays, fixed seed.
rng = np.random.default_rng(3)
f32 = np.float32

logits = rng.standard_normal((4, 5)).astype(f32)  # 4 examples, 5 classes
labels = np.array([0, 3, 1, 4])  # class indices
onehot = np.eye(5, dtype=f32)[labels]  # the same labels, one-hot
log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))  # log_softmax
padded = np.array([0, -100, 1, -100])  # -100 marks padding to ignore
class_w = np.array([1.0, 2.0, 0.5, 1.5, 3.0], dtype=f32)  # one weight per class

bin_logits = rng.standard_normal((4, 3)).astype(f32)  # 4 examples, 3 binary labels
bin_targets = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=f32)
bin_signs = 2 * bin_targets - 1  # the same targets in {-1, 1}
pos_w = np.array([3.0, 1.0, 0.5], dtype=f32)  # a positive weight per label column

seg_logits = rng.standard_normal((2, 10, 3))  # 2 images, 10 pixels, 3 classes
seg_probs = (np.exp(seg_logits) / np.exp(seg_logits).sum(-1, keepdims=True)).astype(f32)
seg_masks = np.eye(3, dtype=f32)[rng.integers(0, 3, (2, 10))]  # one-hot masks

queries = rng.standard_normal((4, 8)).astype(f32)  # 4 query/key pairs
keys = (queries + rng.standard_normal((4, 8))).astype(f32)  # keys[i] pairs with queries[i]
pair_signs = np.array([1, -1, 1, -1], dtype=f32)  # similar (1) / dissimilar (-1) pairs
views = rng.standard_normal((6, 8)).astype(f32)  # 3 examples x 2 views
view_labels = np.array([0, 1, 2, 0, 1, 2])  # equal labels: views of one example

log_rates = (0.5 * rng.standard_normal((4, 3))).astype(f32)  # Poisson log-rates
rates = np.exp(log_rates)
counts = rng.poisson(2.0, (4, 3)).astype(f32)  # observed counts

ctc_logits = rng.standard_normal((2, 6, 4)).astype(f32)  # (N, T, C); class 0 is blank
ctc_log_probs = ctc_logits - np.log(np.exp(ctc_logits).sum(-1, keepdims=True))
ctc_targets = np.array([[1, 2, 2], [3, 1, 0]])  # padded: row 1 has 2 labels
input_lengths = np.array([6, 5])
target_lengths = np.array([3, 2])

hidden = rng.standard_normal((6, 4)).astype(f32)  # 6 tokens, hidden size 4
head = rng.standard_normal((10, 4)).astype(f32)  # output layer: 10 classes x 4
head_bias = rng.standard_normal(10).astype(f32)
tokens = np.array([1, 9, 0, 4, 4, 7])  # the next tokens
# [/inputs]


def np_(x: object) -> np.ndarray:
    """Any framework's array as NumPy."""
    if hasattr(x, "detach"):  # torch
        return x.detach().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------
# sigmoid_focal_loss
# --------------------------------------------------------------------------


@example("sigmoid_focal_loss", "torch")
def sigmoid_focal_loss_torch():
    import torch
    import torch.nn.functional as F

    # torchvision.ops.sigmoid_focal_loss is not installed with the tests: this
    # is its documented computation, step by step, in plain torch.
    x, t = torch.from_numpy(bin_logits), torch.from_numpy(bin_targets)
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = 0.25 * t + 0.75 * (1 - t)
    theirs = alpha_t * ce * (1 - p_t) ** 2
    ours = anyloss.sigmoid_focal_loss(bin_logits, bin_targets)
    return theirs, ours


@example("sigmoid_focal_loss", "optax")
def sigmoid_focal_loss_optax():
    import optax

    # optax's alpha defaults to None (no class balancing); anyloss's to 0.25.
    theirs = optax.losses.sigmoid_focal_loss(bin_logits, bin_targets)
    ours = anyloss.sigmoid_focal_loss(bin_logits, bin_targets, alpha=None)
    return theirs, ours


@example("sigmoid_focal_loss", "keras")
def sigmoid_focal_loss_keras():
    import keras

    # alpha is applied only with apply_class_balancing=True; mean over the last axis.
    theirs = keras.losses.binary_focal_crossentropy(bin_targets, bin_logits, from_logits=True)
    ours = anyloss.sigmoid_focal_loss(bin_logits, bin_targets, alpha=None).mean(axis=-1)
    return theirs, ours


# --------------------------------------------------------------------------
# softmax_focal_loss
# --------------------------------------------------------------------------


@example("softmax_focal_loss", "torch")
def softmax_focal_loss_torch():
    import torch
    import torch.nn.functional as F

    # No multi-class focal loss in PyTorch; the usual hand-written form:
    ce = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="none")
    theirs = (1 - torch.exp(-ce)) ** 2 * ce
    ours = anyloss.softmax_focal_loss(logits, labels)
    return theirs, ours


@example("softmax_focal_loss", "optax")
def softmax_focal_loss_optax():
    import jax.numpy as jnp
    import optax

    # No multi-class focal loss in optax; built on the integer-label cross entropy:
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    theirs = (1 - jnp.exp(-ce)) ** 2 * ce
    ours = anyloss.softmax_focal_loss(logits, labels)
    return theirs, ours


@example("softmax_focal_loss", "keras")
def softmax_focal_loss_keras():
    import keras

    # One-hot targets first; alpha (default 0.25) scales every class alike.
    theirs = keras.losses.categorical_focal_crossentropy(onehot, logits, from_logits=True)
    ours = anyloss.softmax_focal_loss(logits, labels, alpha=0.25)
    return theirs, ours


# --------------------------------------------------------------------------
# dice_loss
# --------------------------------------------------------------------------


@example("dice_loss", "optax")
def dice_loss_optax():
    import optax

    # optax: classes on the last axis, sums over the axes between, mean over
    # classes; its smooth s enters as 2 s in anyloss's formula.
    theirs = optax.losses.dice_loss(seg_probs, seg_masks, apply_softmax=False)
    ours = anyloss.dice_loss(seg_probs, seg_masks, axis=1, smooth=2.0, reduction="none").mean(-1)
    return theirs, ours


@example("dice_loss", "keras")
def dice_loss_keras():
    import keras

    # Keras: targets first, axis=None (one value for everything), no smoothing.
    theirs = keras.losses.dice(seg_masks, seg_probs)
    ours = anyloss.dice_loss(seg_probs, seg_masks, axis=None, smooth=0.0)
    return theirs, ours


# --------------------------------------------------------------------------
# squared_hinge_loss
# --------------------------------------------------------------------------


@example("squared_hinge_loss", "torch")
def squared_hinge_loss_torch():
    import torch

    # No squared hinge in PyTorch; the usual hand-written form:
    x, t = torch.from_numpy(bin_logits), torch.from_numpy(bin_signs)
    theirs = torch.clamp(1 - x * t, min=0) ** 2
    ours = anyloss.squared_hinge_loss(bin_logits, bin_signs)
    return theirs, ours


@example("squared_hinge_loss", "keras")
def squared_hinge_loss_keras():
    import keras

    # Keras maps {0, 1} targets to {-1, 1} and averages over the last axis.
    theirs = keras.losses.squared_hinge(bin_targets, bin_logits)
    ours = anyloss.squared_hinge_loss(bin_logits, 2 * bin_targets - 1).mean(axis=-1)
    return theirs, ours


# --------------------------------------------------------------------------
# multiclass_hinge_loss
# --------------------------------------------------------------------------


@example("multiclass_hinge_loss", "torch")
def multiclass_hinge_loss_torch():
    import torch

    # F.multi_margin_loss averages the hinges of all classes: another loss.
    # Crammer-Singer by hand: the target logit against the largest other one.
    x, y = torch.from_numpy(logits), torch.from_numpy(labels)[:, None]
    target = x.gather(1, y)[:, 0]
    rival = x.scatter(1, y, float("-inf")).amax(dim=1)
    theirs = torch.clamp(1 + rival - target, min=0)
    ours = anyloss.multiclass_hinge_loss(logits, labels)
    return theirs, ours


@example("multiclass_hinge_loss", "optax")
def multiclass_hinge_loss_optax():
    import optax

    theirs = optax.losses.multiclass_hinge_loss(logits, labels)
    ours = anyloss.multiclass_hinge_loss(logits, labels)
    return theirs, ours


@example("multiclass_hinge_loss", "keras")
def multiclass_hinge_loss_keras():
    import keras

    # One-hot targets first. Keras's rival logit is at least 0: the two agree
    # where some non-target logit is >= 0, as in every row here.
    theirs = keras.losses.categorical_hinge(onehot, logits)
    ours = anyloss.multiclass_hinge_loss(logits, labels)
    return theirs, ours


# --------------------------------------------------------------------------
# cosine_embedding_loss
# --------------------------------------------------------------------------


@example("cosine_embedding_loss", "torch")
def cosine_embedding_loss_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.cosine_embedding_loss(
        torch.from_numpy(queries), torch.from_numpy(keys), torch.from_numpy(pair_signs), margin=0.5
    )
    ours = anyloss.cosine_embedding_loss(queries, keys, pair_signs, margin=0.5, reduction="mean")
    return theirs, ours


# --------------------------------------------------------------------------
# poisson_nll_loss
# --------------------------------------------------------------------------


@example("poisson_nll_loss", "torch")
def poisson_nll_loss_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.poisson_nll_loss(torch.from_numpy(log_rates), torch.from_numpy(counts), full=True)
    ours = anyloss.poisson_nll_loss(log_rates, counts, full=True)
    return theirs, ours


@example("poisson_nll_loss", "keras")
def poisson_nll_loss_keras():
    import keras

    # Keras: targets first, rates (not log-rates), eps 1e-7, mean over the last axis.
    theirs = keras.losses.poisson(counts, rates)
    ours = anyloss.poisson_nll_loss(
        rates, counts, log_input=False, eps=1e-7, reduction="none"
    ).mean(axis=-1)
    return theirs, ours


# --------------------------------------------------------------------------
# info_nce_loss
# --------------------------------------------------------------------------


@example("info_nce_loss", "torch")
def info_nce_loss_torch():
    import torch
    import torch.nn.functional as F

    # No InfoNCE in PyTorch; the usual hand-written form (cosine similarities):
    q = F.normalize(torch.from_numpy(queries), dim=1)
    k = F.normalize(torch.from_numpy(keys), dim=1)
    theirs = F.cross_entropy(q @ k.T / 0.1, torch.arange(len(q)))
    ours = anyloss.info_nce_loss(queries, keys, temperature=0.1)
    return theirs, ours


@example(
    "info_nce_loss",
    "optax",
    atol=1e-6,
    why="written out in float32, the cross entropy subtracts logits near 10 "
    "(similarities over the temperature 0.1): an absolute error of about 1e-7, "
    "which exceeds float32 rounding for the best pairs' losses of 1e-3",
)
def info_nce_loss_optax():
    import jax.numpy as jnp
    import optax

    # No InfoNCE in optax; the symmetric (CLIP) form on the integer-label
    # cross entropy, one value per pair:
    q = queries / jnp.linalg.norm(queries, axis=1, keepdims=True)
    k = keys / jnp.linalg.norm(keys, axis=1, keepdims=True)
    sims, pairs = q @ k.T / 0.1, jnp.arange(len(q))
    ce = optax.losses.softmax_cross_entropy_with_integer_labels
    theirs = (ce(sims, pairs) + ce(sims.T, pairs)) / 2
    ours = anyloss.info_nce_loss(queries, keys, temperature=0.1, symmetric=True, reduction="none")
    return theirs, ours


# --------------------------------------------------------------------------
# nt_xent_loss
# --------------------------------------------------------------------------


@example("nt_xent_loss", "optax")
def nt_xent_loss_optax():
    import optax

    theirs = optax.losses.ntxent(views, view_labels)
    ours = anyloss.nt_xent_loss(views, view_labels)
    return theirs, ours


# --------------------------------------------------------------------------
# ctc_loss
# --------------------------------------------------------------------------


@example("ctc_loss", "torch")
def ctc_loss_torch():
    import torch
    import torch.nn.functional as F

    # PyTorch wants (T, N, C): transpose the batch-first log-probabilities.
    theirs = F.ctc_loss(
        torch.from_numpy(ctc_log_probs).transpose(0, 1),
        torch.from_numpy(ctc_targets),
        torch.from_numpy(input_lengths),
        torch.from_numpy(target_lengths),
    )
    ours = anyloss.ctc_loss(ctc_log_probs, ctc_targets, input_lengths, target_lengths)
    return theirs, ours


@example("ctc_loss", "optax")
def ctc_loss_optax():
    import optax

    # optax takes logits (it applies log_softmax) and 0/1 padding masks, and
    # returns one loss per sequence, not divided by its length.
    logit_pad = (np.arange(6) >= input_lengths[:, None]).astype(f32)
    label_pad = (np.arange(3) >= target_lengths[:, None]).astype(f32)
    theirs = optax.losses.ctc_loss(ctc_logits, logit_pad, ctc_targets, label_pad)
    ours = anyloss.ctc_loss(
        ctc_log_probs, ctc_targets, input_lengths, target_lengths, reduction="none"
    )
    return theirs, ours


@example("ctc_loss", "keras")
def ctc_loss_keras():
    import keras

    # Keras: targets first, logits; every sequence uses all T steps, and its
    # target length is its number of nonzero labels (0: blank and padding).
    theirs = keras.losses.ctc(ctc_targets, ctc_logits)
    ours = anyloss.ctc_loss(
        ctc_log_probs, ctc_targets, [6, 6], (ctc_targets != 0).sum(axis=1), reduction="none"
    )
    return theirs, ours


# --------------------------------------------------------------------------
# ignore_index (cross_entropy, nll_loss)
# --------------------------------------------------------------------------


@example("ignore_index", "torch")
def ignore_index_torch():
    import torch
    import torch.nn.functional as F

    # PyTorch ignores -100 by default; anyloss only when asked.
    theirs = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(padded))
    ours = anyloss.cross_entropy(logits, padded, ignore_index=-100, reduction="mean")
    return theirs, ours


@example("ignore_index", "optax")
def ignore_index_optax():
    import jax.numpy as jnp
    import optax

    # optax's `where` masks classes, not examples: mask the padding by hand.
    keep = padded != -100
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(logits, np.where(keep, padded, 0))
    theirs = jnp.sum(jnp.where(keep, ce, 0.0)) / keep.sum()
    ours = anyloss.cross_entropy(logits, padded, ignore_index=-100, reduction="mean")
    return theirs, ours


@example("ignore_index", "keras")
def ignore_index_keras():
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100)
    theirs = loss(padded, logits)
    ours = anyloss.cross_entropy(logits, padded, ignore_index=-100, reduction="mean")
    return theirs, ours


# --------------------------------------------------------------------------
# class_weights (cross_entropy, nll_loss)
# --------------------------------------------------------------------------


@example("class_weights", "torch")
def class_weights_torch():
    import torch
    import torch.nn.functional as F

    # weight= and the default ignore_index=-100 together; the mean divides by
    # the weights of the examples that count.
    theirs = F.nll_loss(
        torch.from_numpy(log_probs), torch.from_numpy(padded), weight=torch.from_numpy(class_w)
    )
    ours = anyloss.nll_loss(
        log_probs, padded, ignore_index=-100, class_weights=class_w, reduction="mean"
    )
    return theirs, ours


@example("class_weights", "optax")
def class_weights_optax():
    import jax.numpy as jnp
    import optax

    # No class weights in optax: weight each example by its class, by hand.
    w = class_w[labels]
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    theirs = jnp.sum(w * ce) / jnp.sum(w)
    ours = anyloss.cross_entropy(logits, labels, class_weights=class_w, reduction="mean")
    return theirs, ours


@example("class_weights", "keras")
def class_weights_keras():
    import keras

    # Keras weighs classes in Model.fit(class_weight=...); a loss object takes
    # them as sample weights, and this reduction divides by their sum.
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight"
    )
    theirs = loss(labels, logits, sample_weight=class_w[labels])
    ours = anyloss.cross_entropy(logits, labels, class_weights=class_w, reduction="mean")
    return theirs, ours


# --------------------------------------------------------------------------
# pos_weight (binary_cross_entropy)
# --------------------------------------------------------------------------


@example("pos_weight", "torch")
def pos_weight_torch():
    import torch
    import torch.nn.functional as F

    x, t = torch.from_numpy(bin_logits), torch.from_numpy(bin_targets)
    theirs = F.binary_cross_entropy_with_logits(x, t, pos_weight=torch.from_numpy(pos_w))
    ours = anyloss.binary_cross_entropy(bin_logits, bin_targets, pos_weight=pos_w)
    return theirs, ours


@example("pos_weight", "optax")
def pos_weight_optax():
    import jax

    # No pos_weight in optax: weight the positive term by hand.
    x, t = bin_logits, bin_targets
    theirs = -(pos_w * t * jax.nn.log_sigmoid(x) + (1 - t) * jax.nn.log_sigmoid(-x))
    ours = anyloss.binary_cross_entropy(x, t, pos_weight=pos_w, reduction="none")
    return theirs, ours


# --------------------------------------------------------------------------
# The counterparts tabulated on the Porting page
# --------------------------------------------------------------------------
# linear_cross_entropy
# --------------------------------------------------------------------------


@example("linear_cross_entropy", "torch")
def linear_cross_entropy_torch():
    import torch
    import torch.nn.functional as F

    # Same order; the bias is the keyword linear_bias=.
    theirs = F.linear_cross_entropy(
        torch.from_numpy(hidden),
        torch.from_numpy(head),
        torch.from_numpy(tokens),
        linear_bias=torch.from_numpy(head_bias),
    )
    ours = anyloss.linear_cross_entropy(hidden, head, tokens, head_bias)
    return theirs, ours


@example("linear_cross_entropy", "optax")
def linear_cross_entropy_optax():
    import jax.numpy as jnp
    import optax

    # No fused form in optax: the logits are formed, and the loss is per token.
    logits = jnp.asarray(hidden) @ jnp.asarray(head).T + jnp.asarray(head_bias)
    theirs = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(tokens))
    ours = anyloss.linear_cross_entropy(hidden, head, tokens, head_bias, reduction="none")
    return theirs, ours


# --------------------------------------------------------------------------

#: The columns of each table: "anyloss" first, then FRAMEWORKS.
COLUMNS = {"anyloss": "anyloss", **{fw: title for fw, (title, _) in FRAMEWORKS.items()}}

#: Row titles of each table, in order.
ROWS = {
    "name": "Function",
    "args": "Arguments",
    "inputs": "Inputs are",
    "reduction": "Default reduction",
}

#: The entries in page order, grouped: the eleven losses, then the options.
GROUPS: dict[str, list[str]] = {
    "Focal and overlap": ["sigmoid_focal_loss", "softmax_focal_loss", "dice_loss"],
    "Margin": ["squared_hinge_loss", "multiclass_hinge_loss", "cosine_embedding_loss"],
    "Counts": ["poisson_nll_loss"],
    "Contrastive": ["info_nce_loss", "nt_xent_loss"],
    "Sequence": ["ctc_loss"],
    "Language-model heads": ["linear_cross_entropy"],
    "Options of the core losses": ["ignore_index", "class_weights", "pos_weight"],
}

#: The options, each with the anyloss functions that take it (keyword only).
OPTIONS: dict[str, list[str]] = {
    "ignore_index": ["cross_entropy", "nll_loss"],
    "class_weights": ["cross_entropy", "nll_loss"],
    "pos_weight": ["binary_cross_entropy"],
}

_NONE = "(none)"
_ELEMENTWISE = "none (elementwise)"
_PER_EXAMPLE = "none (per example)"
_LAST_AXIS = "mean over the last axis"
_TARGETS_FIRST = "``y_true, y_pred`` (**targets first**)"

#: NAMES[entry][column][row] -> text (reST inline markup allowed). A framework
#: without a counterpart has only "name".
NAMES: dict[str, dict[str, dict[str, str]]] = {
    "sigmoid_focal_loss": {
        "anyloss": {
            "name": "``sigmoid_focal_loss``",
            "args": "``inputs, targets, weights=None, alpha=0.25, gamma=2.0, reduction``",
            "inputs": "logits; targets in ``{0, 1}`` (or soft)",
            "reduction": "``'none'``",
        },
        "torch": {
            "name": "(none in PyTorch; ``torchvision.ops.sigmoid_focal_loss``)",
            "args": "``inputs, targets, alpha=0.25, gamma=2, reduction``; ``alpha=-1`` "
            "switches the balancing off (anyloss: ``alpha=None``)",
            "inputs": "logits; targets in ``{0, 1}``",
            "reduction": "``'none'``",
        },
        "optax": {
            "name": "``sigmoid_focal_loss``",
            "args": "``logits, labels, *, alpha=None, gamma=2.0``: **no** class balancing "
            "by default",
            "inputs": "logits; labels in ``[0, 1]``",
            "reduction": _ELEMENTWISE,
        },
        "keras": {
            "name": "``binary_focal_crossentropy``",
            "args": _TARGETS_FIRST + ", ``apply_class_balancing=False, alpha=0.25, "
            "gamma=2.0, from_logits=False, label_smoothing``: ``alpha`` is used only "
            "with ``apply_class_balancing=True``",
            "inputs": "**probabilities** unless ``from_logits=True`` (clipped to "
            "``[1e-7, 1 - 1e-7]``)",
            "reduction": _LAST_AXIS,
        },
    },
    "softmax_focal_loss": {
        "anyloss": {
            "name": "``softmax_focal_loss``",
            "args": "``logits, targets, weights=None, axis=-1, alpha=None, gamma=2.0, "
            "reduction``; ``alpha`` a float or one weight per class",
            "inputs": "logits; class indices or probabilities",
            "reduction": "``'none'``",
        },
        "torch": {
            "name": "(none; ``(1 - exp(-ce)) ** gamma * ce`` on ``F.cross_entropy``)",
            "args": "``input, target, reduction='none'``",
            "inputs": "logits; class indices",
            "reduction": "as written",
        },
        "optax": {
            "name": "(none; the same on ``softmax_cross_entropy_with_integer_labels``)",
            "args": "``logits, labels``",
            "inputs": "logits; class indices",
            "reduction": _PER_EXAMPLE,
        },
        "keras": {
            "name": "``categorical_focal_crossentropy``",
            "args": _TARGETS_FIRST + ", ``alpha=0.25, gamma=2.0, from_logits=False, "
            "label_smoothing, axis=-1``; ``alpha`` scales every class alike",
            "inputs": "**one-hot**; **probabilities** unless ``from_logits=True`` "
            "(clipped to ``[1e-7, 1 - 1e-7]``)",
            "reduction": _PER_EXAMPLE,
        },
    },
    "dice_loss": {
        "anyloss": {
            "name": "``dice_loss``",
            "args": "``inputs, targets, axis=-1, smooth=1.0, reduction``: "
            "``1 - (2 I + s) / (P + T + s)``",
            "inputs": "probabilities; masks or soft targets",
            "reduction": "``'mean'``",
        },
        "torch": {"name": "(none; MONAI and segmentation-models-pytorch have one)"},
        "optax": {
            "name": "``dice_loss`` (``binary_dice_loss``: one class, sigmoid)",
            "args": "``predictions, targets, *, class_weights, smooth=1.0, alpha, beta, "
            "apply_softmax=True, reduction, ignore_background, axis=None``: classes on "
            "the **last** axis, ``smooth`` counts **twice** (anyloss ``smooth=2 s``)",
            "inputs": "**logits** unless ``apply_softmax=False``; one-hot targets",
            "reduction": "``'mean'`` over **classes** (per example); ``axis=None`` "
            "sums the axes between the first and the last",
        },
        "keras": {
            "name": "``dice``",
            "args": _TARGETS_FIRST + ", ``axis=None``; no smoothing, ``1e-7`` added to "
            "the denominator",
            "inputs": "probabilities",
            "reduction": "``axis=None``: **one value** for the whole batch",
        },
    },
    "squared_hinge_loss": {
        "anyloss": {
            "name": "``squared_hinge_loss``",
            "args": "``inputs, targets, reduction``",
            "inputs": "scores; targets in ``{-1, 1}``, used as given",
            "reduction": "``'none'``",
        },
        "torch": {
            "name": "(none; ``clamp(1 - x * t, min=0) ** 2``)",
            "args": "—",
            "inputs": "scores; targets in ``{-1, 1}``",
            "reduction": "as written",
        },
        "optax": {"name": _NONE},
        "keras": {
            "name": "``squared_hinge``",
            "args": _TARGETS_FIRST,
            "inputs": "scores; targets ``{0, 1}`` are mapped to ``{-1, 1}``",
            "reduction": _LAST_AXIS,
        },
    },
    "multiclass_hinge_loss": {
        "anyloss": {
            "name": "``multiclass_hinge_loss``",
            "args": "``logits, targets, axis=-1, margin=1.0, reduction``",
            "inputs": "scores; class indices",
            "reduction": "``'none'``",
        },
        "torch": {
            "name": "(none; ``F.multi_margin_loss`` is a different loss)",
            "args": "by hand: ``gather`` the target logit, ``scatter`` ``-inf`` over it "
            "and take the maximum of the rest",
            "inputs": "scores; class indices",
            "reduction": "as written",
        },
        "optax": {
            "name": "``multiclass_hinge_loss``",
            "args": "``scores, labels``; margin fixed at 1, classes on the last axis",
            "inputs": "scores; class indices",
            "reduction": _PER_EXAMPLE,
        },
        "keras": {
            "name": "``categorical_hinge``",
            "args": _TARGETS_FIRST + "; margin fixed at 1",
            "inputs": "scores; **one-hot** targets; the largest other score counts as at least 0",
            "reduction": _PER_EXAMPLE,
        },
    },
    "cosine_embedding_loss": {
        "anyloss": {
            "name": "``cosine_embedding_loss``",
            "args": "``x1, x2, targets, axis=-1, margin=0.0, eps=1e-8, reduction``",
            "inputs": "vectors along ``axis``; targets in ``{-1, 1}``",
            "reduction": "``'none'``",
        },
        "torch": {
            "name": "``F.cosine_embedding_loss``",
            "args": "``input1, input2, target, margin=0, reduction``; no ``dim`` (the "
            "vectors lie along the last dimension of ``(N, D)`` or ``(D,)``) and no "
            "``eps`` (``1e-12`` is added to each squared norm)",
            "inputs": "vectors; targets in ``{-1, 1}``",
            "reduction": "``'mean'``",
        },
        "optax": {"name": _NONE},
        "keras": {"name": "(none; ``cosine_similarity`` is minus the cosine)"},
    },
    "poisson_nll_loss": {
        "anyloss": {
            "name": "``poisson_nll_loss``",
            "args": "``inputs, targets, log_input=True, full=False, eps=1e-8, reduction``",
            "inputs": "**log-rates** (``log_input=False``: rates); counts",
            "reduction": "``'mean'``",
        },
        "torch": {
            "name": "``F.poisson_nll_loss``",
            "args": "``input, target, log_input=True, full=False, eps=1e-8, reduction`` "
            "(same order)",
            "inputs": "log-rates (``log_input=False``: rates); counts",
            "reduction": "``'mean'``",
        },
        "optax": {"name": _NONE},
        "keras": {
            "name": "``poisson``",
            "args": _TARGETS_FIRST + "; ``eps`` fixed at ``1e-7``",
            "inputs": "**rates** (``log_input=False``); no Stirling term",
            "reduction": _LAST_AXIS,
        },
    },
    "info_nce_loss": {
        "anyloss": {
            "name": "``info_nce_loss``",
            "args": "``queries, keys, temperature=0.1, normalize=True, symmetric=False, "
            "reduction``",
            "inputs": "``(N, D)`` embeddings; ``keys[i]`` is the positive of ``queries[i]``",
            "reduction": "``'mean'``",
        },
        "torch": {
            "name": "(none; ``F.cross_entropy(q @ k.T / tau, arange(N))`` on normalized rows)",
            "args": "—",
            "inputs": "the similarity matrix as logits",
            "reduction": "``'mean'``",
        },
        "optax": {
            "name": "(none; ``softmax_cross_entropy_with_integer_labels`` on the similarities)",
            "args": "—",
            "inputs": "the similarity matrix as logits",
            "reduction": _PER_EXAMPLE,
        },
        "keras": {"name": _NONE},
    },
    "nt_xent_loss": {
        "anyloss": {
            "name": "``nt_xent_loss``",
            "args": "``embeddings, labels, temperature=0.07, reduction``",
            "inputs": "``(N, D)`` embeddings; equal labels mark positives",
            "reduction": "``'mean'`` over the positive pairs",
        },
        "torch": {"name": "(none; pytorch-metric-learning's ``NTXentLoss``)"},
        "optax": {
            "name": "``ntxent``",
            "args": "``embeddings, labels, temperature=0.07`` (same order)",
            "inputs": "``(N, D)`` embeddings; equal labels mark positives",
            "reduction": "one value: the mean over the positive pairs",
        },
        "keras": {"name": _NONE},
    },
    "ctc_loss": {
        "anyloss": {
            "name": "``ctc_loss``",
            "args": "``log_probs, targets, input_lengths, target_lengths, blank=0, "
            "zero_infinity=False, reduction``",
            "inputs": "log-probabilities, **batch first** ``(N, T, C)``; padded targets "
            "and lengths",
            "reduction": "``'mean'`` (each loss divided by its target length, then "
            "averaged, as PyTorch)",
        },
        "torch": {
            "name": "``F.ctc_loss``",
            "args": "``log_probs, targets, input_lengths, target_lengths, blank=0, "
            "reduction, zero_infinity=False`` (same order)",
            "inputs": "log-probabilities, **time first** ``(T, N, C)``",
            "reduction": "``'mean'`` (per target length)",
        },
        "optax": {
            "name": "``ctc_loss``",
            "args": "``logits, logit_paddings, labels, label_paddings, *, blank_id=0, "
            "log_epsilon=-1e5``: 0/1 **padding masks** instead of lengths",
            "inputs": "**logits** (``log_softmax`` applied inside), ``(N, T, C)``; an "
            "impossible target costs about ``1e5``, not ``inf``",
            "reduction": "none (per sequence, **not** divided by its length)",
        },
        "keras": {
            "name": "``ctc``",
            "args": _TARGETS_FIRST + "; no lengths: all ``T`` steps are used and the "
            "target length is the number of nonzero labels",
            "inputs": "**logits** ``(N, T, C)``; label 0 is the blank **and** the padding",
            "reduction": "none (per sequence)",
        },
    },
    "linear_cross_entropy": {
        "anyloss": {
            "name": "``linear_cross_entropy``",
            "args": "``hidden, weight, targets, bias=None, *, reduction, label_smoothing, "
            "ignore_index, class_weights, softcap, chunk_size``",
            "inputs": "hidden states ``(..., H)``, the layer's ``weight`` ``(V, H)``, class "
            "indices; the logits are never formed",
            "reduction": "``'mean'``",
        },
        "torch": {
            "name": "``F.linear_cross_entropy``",
            "args": "``input, linear_weight, target, *, linear_bias, weight, reduction, "
            "ignore_index, label_smoothing, options`` (same order; ``weight`` is "
            "``class_weights``)",
            "inputs": "``(N, H)`` or ``(H,)``; chunked only with ``options=`` given",
            "reduction": "``'mean'``",
        },
        "optax": {
            "name": "(none; ``softmax_cross_entropy_with_integer_labels(h @ W.T + b, y)``)",
            "args": "—",
            "inputs": "the full logits, formed first",
            "reduction": _PER_EXAMPLE,
        },
        "keras": {"name": _NONE},
    },
    "ignore_index": {
        "anyloss": {
            "name": "``cross_entropy`` / ``nll_loss``",
            "args": "``ignore_index=None`` (keyword only)",
            "inputs": "class indices; the ignored value need not be a valid class",
            "reduction": "``'mean'`` divides by the examples kept",
        },
        "torch": {
            "name": "``F.cross_entropy`` / ``F.nll_loss``",
            "args": "``ignore_index=-100``: **on by default**",
            "inputs": "class indices",
            "reduction": "``'mean'`` divides by the examples kept",
        },
        "optax": {
            "name": "(none; mask by hand: ``where`` masks classes, not examples)",
            "args": "—",
            "inputs": "class indices, with the padding replaced by a valid class",
            "reduction": "as written",
        },
        "keras": {
            "name": "``sparse_categorical_crossentropy`` / ``SparseCategoricalCrossentropy``",
            "args": "``ignore_class=None``",
            "inputs": "class indices",
            "reduction": "function: 0 where ignored; loss object: mean over the kept",
        },
    },
    "class_weights": {
        "anyloss": {
            "name": "``cross_entropy`` / ``nll_loss``",
            "args": "``class_weights=None`` (keyword only), one weight per class; "
            "``weights`` stays per example",
            "inputs": "class indices (``cross_entropy``: or probabilities)",
            "reduction": "``'mean'`` divides by the sum of the applied class weights",
        },
        "torch": {
            "name": "``F.cross_entropy`` / ``F.nll_loss``",
            "args": "``weight=None``, one weight per class",
            "inputs": "class indices or probabilities",
            "reduction": "``'mean'`` divides by the sum of the applied weights",
        },
        "optax": {
            "name": "(none; weight each example by its class by hand)",
            "args": "—",
            "inputs": "class indices",
            "reduction": "as written",
        },
        "keras": {
            "name": "(none in the losses; ``Model.fit(class_weight=...)``)",
            "args": "a loss object's ``sample_weight=class_w[labels]``",
            "inputs": "class indices",
            "reduction": "``reduction='mean_with_sample_weight'`` divides by the weights",
        },
    },
    "pos_weight": {
        "anyloss": {
            "name": "``binary_cross_entropy``",
            "args": "``pos_weight=None`` (keyword only); a scalar or one per column",
            "inputs": "logits or probabilities",
            "reduction": "``'mean'``",
        },
        "torch": {
            "name": "``F.binary_cross_entropy_with_logits``",
            "args": "``pos_weight=None``; only the logits variant has it",
            "inputs": "logits",
            "reduction": "``'mean'``",
        },
        "optax": {
            "name": "(none; weight the positive term by hand)",
            "args": "—",
            "inputs": "logits",
            "reduction": _ELEMENTWISE,
        },
        "keras": {"name": _NONE},
    },
}

#: What people trip on, per entry (reST), shown under each table.
TRIP_UPS: dict[str, list[str]] = {
    "sigmoid_focal_loss": [
        "The defaults of ``alpha`` differ: 0.25 in anyloss and torchvision, ``None`` in "
        "optax, and in Keras it is ignored unless ``apply_class_balancing=True``.",
        "Keras takes probabilities unless ``from_logits=True`` and averages over the last axis.",
    ],
    "softmax_focal_loss": [
        "Keras's ``categorical_focal_crossentropy`` multiplies every class by "
        "``alpha=0.25`` by default; anyloss's ``alpha=None`` applies no weight.",
    ],
    "dice_loss": [
        "optax's ratio is ``(I + s) / ((P + T) / 2 + s)`` (``I`` the intersection, "
        "``P`` and ``T`` the sums of predictions and targets): its ``smooth=s`` is "
        "anyloss's ``smooth=2 s``. It also applies a softmax (or a sigmoid for one "
        "class) unless ``apply_softmax=False``.",
        "Keras's default ``axis=None`` gives one loss for the whole batch, not one per example.",
    ],
    "squared_hinge_loss": [
        "Keras silently maps targets ``{0, 1}`` to ``{-1, 1}``; anyloss uses the targets "
        "as given: pass ``2 * t - 1``.",
    ],
    "multiclass_hinge_loss": [
        "``F.multi_margin_loss`` averages ``max(0, margin - x_y + x_c)`` over the "
        "classes: a different loss.",
        "Keras's ``categorical_hinge`` treats the largest other logit as at least 0, so "
        "it differs where every non-target logit is negative.",
    ],
    "cosine_embedding_loss": [
        "PyTorch averages by default; anyloss returns one value per pair.",
    ],
    "poisson_nll_loss": [
        "The inputs are **log**-rates by default (as PyTorch); Keras's ``poisson`` takes rates.",
        "``full=True`` adds the Stirling term only for counts above 1, as PyTorch does.",
    ],
    "info_nce_loss": [
        "The similarities divided by a small temperature amplify the rounding of float32 "
        "similarities; anyloss forms them in float64 where the library has it.",
    ],
    "nt_xent_loss": [
        "The ``'mean'`` divides by the number of positive pairs, not by ``N``; with two "
        "views per example they are the same.",
    ],
    "ctc_loss": [
        "anyloss is batch first, ``(N, T, C)``; PyTorch is time first: pass "
        "``log_probs.transpose(0, 1)`` to one or the other.",
        "PyTorch's and anyloss's ``'mean'`` divide each loss by its target length; "
        "optax and Keras return the plain per-sequence loss.",
        "optax and Keras take logits; anyloss and PyTorch take log-probabilities.",
    ],
    "linear_cross_entropy": [
        "``weight`` is the output layer's, ``(V, H)`` as ``torch.nn.Linear.weight``; "
        "PyTorch's ``weight=`` keyword is the class weights, ``class_weights=`` here.",
        "PyTorch ignores targets equal to -100 by default; anyloss only with "
        "``ignore_index=-100``.",
        "anyloss never forms the logits, with or without options, on every library; "
        "``F.linear_cross_entropy`` chunks only when given ``options=``.",
    ],
    "ignore_index": [
        "PyTorch ignores targets equal to -100 **by default**; anyloss raises on such an "
        "index unless ``ignore_index=-100`` is passed.",
    ],
    "class_weights": [
        "``weights`` (positional, MLX's) weighs each *example*; ``class_weights`` "
        "(keyword only) each *class*, and only the latter changes the ``'mean'``'s "
        "denominator.",
    ],
    "pos_weight": [
        "PyTorch has ``pos_weight`` only on ``binary_cross_entropy_with_logits``; "
        "anyloss accepts it with probabilities too.",
    ],
}

#: The entries in page order.
ENTRIES = [entry for group in GROUPS.values() for entry in group]

#: The losses among them (each has a page of its own).
LOSSES = [entry for entry in ENTRIES if entry not in OPTIONS]

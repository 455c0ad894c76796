"""Porting examples: a framework's loss next to the anyloss call that gives its number.

Every function registered with :func:`example` returns ``(theirs, ours)``: the
value computed by MLX, PyTorch, optax or Keras and the value computed by
anyloss on the same NumPy inputs. ``tests/test_porting.py`` runs each of them
and checks that the two agree to float32 rounding; the Porting page of the
documentation shows the same functions (its per-loss sections are generated
from this file at build time), so the page cannot claim an equivalence the
tests do not check.

``FACTS`` holds the conventions the Porting page tabulates for each loss and
framework: the function's name, its argument order, what its inputs mean, its
default reduction and where it puts ``eps`` or a clip.
"""

from __future__ import annotations

import os
from collections.abc import Callable

# Keras 3 picks its backend when it is first imported; these examples (and the
# tests that run them) use JAX. An explicit KERAS_BACKEND is left alone.
os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np

import anyloss

#: The frameworks compared, in table order: key -> (column title, module to import).
FRAMEWORKS = {
    "mlx": ("MLX", "mlx.core"),
    "torch": ("PyTorch", "torch"),
    "optax": ("optax", "optax"),
    "keras": ("Keras 3", "keras"),
}

#: (loss, framework) -> example function returning (theirs, ours).
EXAMPLES: dict[tuple[str, str], Callable[[], tuple[object, object]]] = {}


def example(loss: str, framework: str) -> Callable[[Callable], Callable]:
    """Register ``func`` as the tested porting example of ``loss`` from ``framework``."""

    def register(func: Callable) -> Callable:
        EXAMPLES[(loss, framework)] = func
        return func

    return register


# [inputs]
# The inputs every example uses: float32 NumPy arrays, fixed seed.
rng = np.random.default_rng(2024)
f32 = np.float32

logits = rng.standard_normal((4, 5)).astype(f32)  # 4 examples, 5 classes
labels = np.array([0, 3, 1, 4])  # class indices
probs = rng.dirichlet(np.ones(5), size=4).astype(f32)  # class probabilities
log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))  # log_softmax
log_targets = np.log(probs)

scores = rng.standard_normal(6).astype(f32)  # binary logits
targets01 = np.array([0, 1, 1, 0, 1, 0], dtype=f32)  # binary targets in {0, 1}
sigmoid = (1 / (1 + np.exp(-scores))).astype(f32)  # probabilities
signs = np.array([1, -1, 1, 1, -1, -1], dtype=f32)  # targets in {-1, 1}

preds = rng.standard_normal((4, 3)).astype(f32)  # regression predictions
y = rng.standard_normal((4, 3)).astype(f32)  # regression targets
var = rng.uniform(0.1, 2.0, (4, 3)).astype(f32)  # predicted variances

emb1 = rng.standard_normal((4, 8)).astype(f32)  # embeddings, one per row
emb2 = rng.standard_normal((4, 8)).astype(f32)
emb3 = rng.standard_normal((4, 8)).astype(f32)
x1 = rng.standard_normal(6).astype(f32)  # ranking scores
x2 = rng.standard_normal(6).astype(f32)
# [/inputs]


def np_(x: object) -> np.ndarray:
    """Any framework's array as NumPy."""
    if hasattr(x, "detach"):  # torch
        return x.detach().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------
# cross_entropy
# --------------------------------------------------------------------------


@example("cross_entropy", "mlx")
def cross_entropy_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.cross_entropy(mx.array(logits), mx.array(labels))
    ours = anyloss.cross_entropy(logits, labels)
    return theirs, ours


@example("cross_entropy", "torch")
def cross_entropy_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(labels), label_smoothing=0.1
    )
    ours = anyloss.cross_entropy(logits, labels, label_smoothing=0.1, reduction="mean")
    return theirs, ours


@example("cross_entropy", "optax")
def cross_entropy_optax():
    import optax

    theirs = optax.losses.softmax_cross_entropy(logits, optax.smooth_labels(probs, 0.1))
    ours = anyloss.cross_entropy(logits, probs, label_smoothing=0.1)
    return theirs, ours


@example("cross_entropy", "keras")
def cross_entropy_keras():
    import keras

    theirs = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    ours = anyloss.cross_entropy(logits, labels)
    return theirs, ours


# --------------------------------------------------------------------------
# binary_cross_entropy
# --------------------------------------------------------------------------


@example("binary_cross_entropy", "mlx")
def binary_cross_entropy_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.binary_cross_entropy(mx.array(scores), mx.array(targets01))
    ours = anyloss.binary_cross_entropy(scores, targets01)
    return theirs, ours


@example("binary_cross_entropy", "torch")
def binary_cross_entropy_torch():
    import torch
    import torch.nn.functional as F

    # F.binary_cross_entropy takes probabilities; MLX's default takes logits.
    theirs = F.binary_cross_entropy(torch.from_numpy(sigmoid), torch.from_numpy(targets01))
    ours = anyloss.binary_cross_entropy(sigmoid, targets01, with_logits=False)
    return theirs, ours


@example("binary_cross_entropy", "optax")
def binary_cross_entropy_optax():
    import optax

    theirs = optax.losses.sigmoid_binary_cross_entropy(scores, targets01)
    ours = anyloss.binary_cross_entropy(scores, targets01, reduction="none")
    return theirs, ours


@example("binary_cross_entropy", "keras")
def binary_cross_entropy_keras():
    import keras

    # keras: (y_true, y_pred), probabilities by default, mean over the last axis.
    theirs = keras.losses.binary_crossentropy(targets01, sigmoid)
    ours = anyloss.binary_cross_entropy(sigmoid, targets01, with_logits=False)
    return theirs, ours


# --------------------------------------------------------------------------
# nll_loss
# --------------------------------------------------------------------------


@example("nll_loss", "mlx")
def nll_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.nll_loss(mx.array(log_probs), mx.array(labels))
    ours = anyloss.nll_loss(log_probs, labels)
    return theirs, ours


@example("nll_loss", "torch")
def nll_loss_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.nll_loss(torch.from_numpy(log_probs), torch.from_numpy(labels))
    ours = anyloss.nll_loss(log_probs, labels, reduction="mean")
    return theirs, ours


@example("nll_loss", "optax")
def nll_loss_optax():
    import optax

    # No NLL in optax; on log-probabilities the integer-label cross entropy is it.
    theirs = optax.losses.softmax_cross_entropy_with_integer_labels(log_probs, labels)
    ours = anyloss.nll_loss(log_probs, labels)
    return theirs, ours


@example("nll_loss", "keras")
def nll_loss_keras():
    import keras

    theirs = keras.losses.sparse_categorical_crossentropy(labels, log_probs, from_logits=True)
    ours = anyloss.nll_loss(log_probs, labels)
    return theirs, ours


# --------------------------------------------------------------------------
# hinge_loss
# --------------------------------------------------------------------------


@example("hinge_loss", "mlx")
def hinge_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.hinge_loss(mx.array(scores), mx.array(signs))
    ours = anyloss.hinge_loss(scores, signs)
    return theirs, ours


@example("hinge_loss", "torch")
def hinge_loss_torch():
    import torch

    # F.hinge_embedding_loss is a different loss; write the hinge out.
    theirs = torch.clamp(1 - torch.from_numpy(scores) * torch.from_numpy(signs), min=0)
    ours = anyloss.hinge_loss(scores, signs)
    return theirs, ours


@example("hinge_loss", "optax")
def hinge_loss_optax():
    import optax

    theirs = optax.losses.hinge_loss(scores, signs)
    ours = anyloss.hinge_loss(scores, signs)
    return theirs, ours


@example("hinge_loss", "keras")
def hinge_loss_keras():
    import keras

    # keras maps {0, 1} targets to {-1, 1} and means over the last axis.
    theirs = keras.losses.hinge(targets01, scores)
    ours = anyloss.hinge_loss(scores, 2 * targets01 - 1, reduction="mean")
    return theirs, ours


# --------------------------------------------------------------------------
# l1_loss
# --------------------------------------------------------------------------


@example("l1_loss", "mlx")
def l1_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.l1_loss(mx.array(preds), mx.array(y))
    ours = anyloss.l1_loss(preds, y)
    return theirs, ours


@example("l1_loss", "torch")
def l1_loss_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.l1_loss(torch.from_numpy(preds), torch.from_numpy(y))
    ours = anyloss.l1_loss(preds, y)
    return theirs, ours


@example("l1_loss", "optax")
def l1_loss_optax():
    import jax.numpy as jnp

    # optax has no L1 loss.
    theirs = jnp.abs(jnp.asarray(preds) - jnp.asarray(y))
    ours = anyloss.l1_loss(preds, y, reduction="none")
    return theirs, ours


@example("l1_loss", "keras")
def l1_loss_keras():
    import keras

    theirs = keras.losses.mean_absolute_error(y, preds)  # mean over the last axis
    ours = anyloss.l1_loss(preds, y, reduction="none").mean(axis=-1)
    return theirs, ours


# --------------------------------------------------------------------------
# mse_loss
# --------------------------------------------------------------------------


@example("mse_loss", "mlx")
def mse_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.mse_loss(mx.array(preds), mx.array(y))
    ours = anyloss.mse_loss(preds, y)
    return theirs, ours


@example("mse_loss", "torch")
def mse_loss_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.mse_loss(torch.from_numpy(preds), torch.from_numpy(y))
    ours = anyloss.mse_loss(preds, y)
    return theirs, ours


@example("mse_loss", "optax")
def mse_loss_optax():
    import optax

    # optax.losses.l2_loss is half of this.
    theirs = optax.losses.squared_error(preds, y)
    ours = anyloss.mse_loss(preds, y, reduction="none")
    return theirs, ours


@example("mse_loss", "keras")
def mse_loss_keras():
    import keras

    theirs = keras.losses.mean_squared_error(y, preds)  # mean over the last axis
    ours = anyloss.mse_loss(preds, y, reduction="none").mean(axis=-1)
    return theirs, ours


# --------------------------------------------------------------------------
# smooth_l1_loss
# --------------------------------------------------------------------------


@example("smooth_l1_loss", "mlx")
def smooth_l1_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.smooth_l1_loss(mx.array(preds), mx.array(y), beta=0.5)
    ours = anyloss.smooth_l1_loss(preds, y, beta=0.5)
    return theirs, ours


@example("smooth_l1_loss", "torch")
def smooth_l1_loss_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.smooth_l1_loss(torch.from_numpy(preds), torch.from_numpy(y), beta=0.5)
    ours = anyloss.smooth_l1_loss(preds, y, beta=0.5)
    return theirs, ours


@example("smooth_l1_loss", "optax")
def smooth_l1_loss_optax():
    import optax

    # Smooth L1 with beta is Huber with delta = beta, divided by beta.
    theirs = optax.losses.huber_loss(preds, y, delta=0.5) / 0.5
    ours = anyloss.smooth_l1_loss(preds, y, beta=0.5, reduction="none")
    return theirs, ours


@example("smooth_l1_loss", "keras")
def smooth_l1_loss_keras():
    import keras

    theirs = keras.losses.huber(y, preds, delta=0.5) / 0.5
    ours = anyloss.smooth_l1_loss(preds, y, beta=0.5, reduction="none").mean(axis=-1)
    return theirs, ours


# --------------------------------------------------------------------------
# huber_loss
# --------------------------------------------------------------------------


@example("huber_loss", "mlx")
def huber_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.huber_loss(mx.array(preds), mx.array(y), delta=0.5)
    ours = anyloss.huber_loss(preds, y, delta=0.5)
    return theirs, ours


@example("huber_loss", "torch")
def huber_loss_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.huber_loss(torch.from_numpy(preds), torch.from_numpy(y), delta=0.5)
    ours = anyloss.huber_loss(preds, y, delta=0.5, reduction="mean")
    return theirs, ours


@example("huber_loss", "optax")
def huber_loss_optax():
    import optax

    theirs = optax.losses.huber_loss(preds, y, delta=0.5)
    ours = anyloss.huber_loss(preds, y, delta=0.5)
    return theirs, ours


@example("huber_loss", "keras")
def huber_loss_keras():
    import keras

    theirs = keras.losses.huber(y, preds, delta=0.5)  # mean over the last axis
    ours = anyloss.huber_loss(preds, y, delta=0.5).mean(axis=-1)
    return theirs, ours


# --------------------------------------------------------------------------
# log_cosh_loss
# --------------------------------------------------------------------------


@example("log_cosh_loss", "mlx")
def log_cosh_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.log_cosh_loss(mx.array(preds), mx.array(y))
    ours = anyloss.log_cosh_loss(preds, y)
    return theirs, ours


@example("log_cosh_loss", "torch")
def log_cosh_loss_torch():
    import torch

    # PyTorch has no log-cosh loss; the usual hand-written form:
    e = torch.from_numpy(preds) - torch.from_numpy(y)
    theirs = torch.log(torch.cosh(e))
    ours = anyloss.log_cosh_loss(preds, y)
    return theirs, ours


@example("log_cosh_loss", "optax")
def log_cosh_loss_optax():
    import optax

    theirs = optax.losses.log_cosh(preds, y)
    ours = anyloss.log_cosh_loss(preds, y)
    return theirs, ours


@example("log_cosh_loss", "keras")
def log_cosh_loss_keras():
    import keras

    theirs = keras.losses.log_cosh(y, preds)  # mean over the last axis
    ours = anyloss.log_cosh_loss(preds, y).mean(axis=-1)
    return theirs, ours


# --------------------------------------------------------------------------
# gaussian_nll_loss
# --------------------------------------------------------------------------


@example("gaussian_nll_loss", "mlx")
def gaussian_nll_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.gaussian_nll_loss(mx.array(preds), mx.array(y), mx.array(var))
    ours = anyloss.gaussian_nll_loss(preds, y, var)
    return theirs, ours


@example("gaussian_nll_loss", "torch")
def gaussian_nll_loss_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.gaussian_nll_loss(
        torch.from_numpy(preds), torch.from_numpy(y), torch.from_numpy(var), full=True
    )
    ours = anyloss.gaussian_nll_loss(preds, y, var, full=True)
    return theirs, ours


@example("gaussian_nll_loss", "optax")
def gaussian_nll_loss_optax():
    import jax.numpy as jnp

    # optax has no Gaussian NLL; the formula with MLX's clamp of the variance:
    v = jnp.maximum(jnp.asarray(var), 1e-6)
    theirs = 0.5 * (jnp.log(v) + (jnp.asarray(y) - jnp.asarray(preds)) ** 2 / v)
    ours = anyloss.gaussian_nll_loss(preds, y, var, reduction="none")
    return theirs, ours


# --------------------------------------------------------------------------
# kl_div_loss
# --------------------------------------------------------------------------


@example("kl_div_loss", "mlx")
def kl_div_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.kl_div_loss(mx.array(log_probs), mx.array(log_targets))
    ours = anyloss.kl_div_loss(log_probs, log_targets)
    return theirs, ours


@example("kl_div_loss", "torch")
def kl_div_loss_torch():
    import torch
    import torch.nn.functional as F

    # targets are probabilities unless log_target=True; terms are pointwise
    # and "batchmean" is the sum over everything divided by the batch size.
    theirs = F.kl_div(torch.from_numpy(log_probs), torch.from_numpy(probs), reduction="batchmean")
    ours = anyloss.kl_div_loss(log_probs, np.log(probs), reduction="mean")
    return theirs, ours


@example("kl_div_loss", "optax")
def kl_div_loss_optax():
    import optax

    theirs = optax.losses.kl_divergence(log_probs, probs)  # targets: probabilities
    ours = anyloss.kl_div_loss(log_probs, np.log(probs))
    return theirs, ours


@example("kl_div_loss", "keras")
def kl_div_loss_keras():
    import keras

    # keras: (y_true, y_pred), both probabilities, clipped to [1e-7, 1].
    theirs = keras.losses.kl_divergence(probs, np.exp(log_probs))
    ours = anyloss.kl_div_loss(log_probs, np.log(probs))
    return theirs, ours


# --------------------------------------------------------------------------
# cosine_similarity_loss
# --------------------------------------------------------------------------


@example("cosine_similarity_loss", "mlx")
def cosine_similarity_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.cosine_similarity_loss(mx.array(emb1), mx.array(emb2))
    ours = anyloss.cosine_similarity_loss(emb1, emb2)
    return theirs, ours


@example("cosine_similarity_loss", "torch")
def cosine_similarity_loss_torch():
    import torch
    import torch.nn.functional as F

    # Same default dim=1; a loss to minimise is usually 1 - this.
    theirs = F.cosine_similarity(torch.from_numpy(emb1), torch.from_numpy(emb2))
    ours = anyloss.cosine_similarity_loss(emb1, emb2)
    return theirs, ours


@example("cosine_similarity_loss", "optax")
def cosine_similarity_loss_optax():
    import optax

    theirs = optax.losses.cosine_distance(emb1, emb2)  # 1 - similarity, axis=-1
    ours = 1 - anyloss.cosine_similarity_loss(emb1, emb2, axis=-1)
    return theirs, ours


@example("cosine_similarity_loss", "keras")
def cosine_similarity_loss_keras():
    import keras

    theirs = keras.losses.cosine_similarity(emb2, emb1)  # minus the similarity
    ours = -anyloss.cosine_similarity_loss(emb1, emb2, axis=-1)
    return theirs, ours


# --------------------------------------------------------------------------
# triplet_loss
# --------------------------------------------------------------------------


@example("triplet_loss", "mlx")
def triplet_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.triplet_loss(mx.array(emb1), mx.array(emb2), mx.array(emb3))
    ours = anyloss.triplet_loss(emb1, emb2, emb3)
    return theirs, ours


@example("triplet_loss", "torch")
def triplet_loss_torch():
    import torch
    import torch.nn.functional as F

    # PyTorch's distance is ||a - b + eps||_p: shift the anchors, pass eps=0.
    theirs = F.triplet_margin_loss(
        torch.from_numpy(emb1), torch.from_numpy(emb2), torch.from_numpy(emb3)
    )
    ours = anyloss.triplet_loss(emb1 + f32(1e-6), emb2, emb3, eps=0.0, reduction="mean")
    return theirs, ours


@example("triplet_loss", "optax")
def triplet_loss_optax():
    import optax

    theirs = optax.losses.triplet_margin_loss(emb1, emb2, emb3)
    ours = anyloss.triplet_loss(emb1, emb2, emb3)
    return theirs, ours


# --------------------------------------------------------------------------
# margin_ranking_loss
# --------------------------------------------------------------------------


@example("margin_ranking_loss", "mlx")
def margin_ranking_loss_mlx():
    import mlx.core as mx
    import mlx.nn.losses as nn_losses

    theirs = nn_losses.margin_ranking_loss(mx.array(x1), mx.array(x2), mx.array(signs), margin=0.5)
    ours = anyloss.margin_ranking_loss(x1, x2, signs, margin=0.5)
    return theirs, ours


@example("margin_ranking_loss", "torch")
def margin_ranking_loss_torch():
    import torch
    import torch.nn.functional as F

    theirs = F.margin_ranking_loss(
        torch.from_numpy(x1), torch.from_numpy(x2), torch.from_numpy(signs), margin=0.5
    )
    ours = anyloss.margin_ranking_loss(x1, x2, signs, margin=0.5, reduction="mean")
    return theirs, ours


@example("margin_ranking_loss", "optax")
def margin_ranking_loss_optax():
    import jax.numpy as jnp

    # optax has no margin ranking loss.
    theirs = jnp.maximum(0.0, -jnp.asarray(signs) * (jnp.asarray(x1) - jnp.asarray(x2)) + 0.5)
    ours = anyloss.margin_ranking_loss(x1, x2, signs, margin=0.5)
    return theirs, ours


# --------------------------------------------------------------------------
# The conventions tabulated on the Porting page
# --------------------------------------------------------------------------

#: Row titles of each loss's table, in order.
FACT_ROWS = {
    "name": "Function",
    "args": "Argument order",
    "inputs": "Inputs are",
    "reduction": "Default reduction",
    "eps": "eps / clipping",
}

_NONE = "(none)"
_PER_EXAMPLE = "none (per example)"
_LAST_AXIS = "mean over the last axis"
_ELEMENTWISE = "none (elementwise)"

#: FACTS[loss][framework][row] -> text (reST inline markup allowed).
#: A framework without the loss has only "name".
FACTS: dict[str, dict[str, dict[str, str]]] = {
    "cross_entropy": {
        "mlx": {
            "name": "``nn.losses.cross_entropy``",
            "args": "``logits, targets, weights, axis=-1, label_smoothing, reduction``",
            "inputs": "logits; targets are indices or probabilities; ``weights`` per example",
            "reduction": "``'none'``",
            "eps": "none",
        },
        "torch": {
            "name": "``F.cross_entropy``",
            "args": "``input, target, weight, ..., reduction, label_smoothing``; "
            "classes on **dim 1**",
            "inputs": "logits; ``weight`` is per **class**, not per example; "
            "``ignore_index=-100``",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "optax": {
            "name": "``softmax_cross_entropy`` (probabilities), "
            "``softmax_cross_entropy_with_integer_labels`` (indices)",
            "args": "``logits, labels, axis=-1``",
            "inputs": "logits; smoothing through ``optax.smooth_labels``",
            "reduction": _PER_EXAMPLE,
            "eps": "none",
        },
        "keras": {
            "name": "``sparse_categorical_crossentropy`` (indices), "
            "``categorical_crossentropy`` (one-hot)",
            "args": "``y_true, y_pred`` (**targets first**), ``from_logits=False``",
            "inputs": "**probabilities** unless ``from_logits=True``",
            "reduction": _PER_EXAMPLE + "; loss classes: mean",
            "eps": "probabilities clipped to ``[1e-7, 1 - 1e-7]``",
        },
    },
    "binary_cross_entropy": {
        "mlx": {
            "name": "``nn.losses.binary_cross_entropy``",
            "args": "``inputs, targets, weights, with_logits=True, reduction``",
            "inputs": "**logits** (``with_logits=False``: probabilities)",
            "reduction": "``'mean'``",
            "eps": "probabilities: ``log`` floored at -100",
        },
        "torch": {
            "name": "``F.binary_cross_entropy`` / ``F.binary_cross_entropy_with_logits``",
            "args": "``input, target, weight, ..., reduction``",
            "inputs": "**probabilities** (the ``_with_logits`` variant: logits)",
            "reduction": "``'mean'``",
            "eps": "``log`` clamped at -100 (as MLX)",
        },
        "optax": {
            "name": "``sigmoid_binary_cross_entropy``",
            "args": "``logits, labels``",
            "inputs": "logits",
            "reduction": _ELEMENTWISE,
            "eps": "none",
        },
        "keras": {
            "name": "``binary_crossentropy``",
            "args": "``y_true, y_pred`` (**targets first**), ``from_logits=False``, "
            "``label_smoothing``",
            "inputs": "**probabilities** unless ``from_logits=True``",
            "reduction": _LAST_AXIS,
            "eps": "probabilities clipped to ``[1e-7, 1 - 1e-7]``",
        },
    },
    "nll_loss": {
        "mlx": {
            "name": "``nn.losses.nll_loss``",
            "args": "``inputs, targets, axis=-1, reduction``",
            "inputs": "log-probabilities, integer targets",
            "reduction": "``'none'``",
            "eps": "none",
        },
        "torch": {
            "name": "``F.nll_loss``",
            "args": "``input, target, weight, ..., reduction``; classes on **dim 1**",
            "inputs": "log-probabilities; ``weight`` per class; ``ignore_index=-100``",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "optax": {
            "name": "(none; ``softmax_cross_entropy_with_integer_labels`` on log-probabilities)",
            "args": "``logits, labels``",
            "inputs": "logits (log-probabilities are valid logits)",
            "reduction": _PER_EXAMPLE,
            "eps": "none",
        },
        "keras": {
            "name": "(none; ``sparse_categorical_crossentropy(..., from_logits=True)`` "
            "on log-probabilities)",
            "args": "``y_true, y_pred`` (**targets first**)",
            "inputs": "logits with ``from_logits=True``",
            "reduction": _PER_EXAMPLE,
            "eps": "none with ``from_logits=True``",
        },
    },
    "hinge_loss": {
        "mlx": {
            "name": "``nn.losses.hinge_loss``",
            "args": "``inputs, targets, reduction``",
            "inputs": "scores; targets in ``{-1, 1}``",
            "reduction": "``'none'``",
            "eps": "none",
        },
        "torch": {
            "name": "(none; ``F.hinge_embedding_loss`` is a different loss)",
        },
        "optax": {
            "name": "``hinge_loss``",
            "args": "``predictor_outputs, targets``",
            "inputs": "scores; targets in ``{-1, 1}``",
            "reduction": _ELEMENTWISE,
            "eps": "none",
        },
        "keras": {
            "name": "``hinge``",
            "args": "``y_true, y_pred`` (**targets first**)",
            "inputs": "scores; targets ``{0, 1}`` are mapped to ``{-1, 1}``",
            "reduction": _LAST_AXIS,
            "eps": "none",
        },
    },
    "l1_loss": {
        "mlx": {
            "name": "``nn.losses.l1_loss``",
            "args": "``predictions, targets, reduction``",
            "inputs": "values, same shape",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "torch": {
            "name": "``F.l1_loss``",
            "args": "``input, target, ..., reduction``",
            "inputs": "values (broadcast, with a warning)",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "optax": {"name": "(none)"},
        "keras": {
            "name": "``mean_absolute_error``",
            "args": "``y_true, y_pred`` (**targets first**)",
            "inputs": "values",
            "reduction": _LAST_AXIS,
            "eps": "none",
        },
    },
    "mse_loss": {
        "mlx": {
            "name": "``nn.losses.mse_loss``",
            "args": "``predictions, targets, reduction``",
            "inputs": "values, same shape",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "torch": {
            "name": "``F.mse_loss``",
            "args": "``input, target, ..., reduction``",
            "inputs": "values",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "optax": {
            "name": "``squared_error`` (``l2_loss`` is **half** of it)",
            "args": "``predictions, targets=None``",
            "inputs": "values",
            "reduction": _ELEMENTWISE,
            "eps": "none",
        },
        "keras": {
            "name": "``mean_squared_error``",
            "args": "``y_true, y_pred`` (**targets first**)",
            "inputs": "values",
            "reduction": _LAST_AXIS,
            "eps": "none",
        },
    },
    "smooth_l1_loss": {
        "mlx": {
            "name": "``nn.losses.smooth_l1_loss``",
            "args": "``predictions, targets, beta=1.0, reduction``",
            "inputs": "values, same shape",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "torch": {
            "name": "``F.smooth_l1_loss``",
            "args": "``input, target, ..., reduction, beta=1.0``",
            "inputs": "values",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "optax": {
            "name": "(none; ``huber_loss(delta=beta) / beta``)",
            "args": "``predictions, targets, delta``",
            "inputs": "values",
            "reduction": _ELEMENTWISE,
            "eps": "none",
        },
        "keras": {
            "name": "(none; ``huber(delta=beta) / beta``)",
            "args": "``y_true, y_pred`` (**targets first**), ``delta``",
            "inputs": "values",
            "reduction": _LAST_AXIS,
            "eps": "none",
        },
    },
    "huber_loss": {
        "mlx": {
            "name": "``nn.losses.huber_loss``",
            "args": "``inputs, targets, delta=1.0, reduction``",
            "inputs": "values (broadcast)",
            "reduction": "``'none'``",
            "eps": "none",
        },
        "torch": {
            "name": "``F.huber_loss``",
            "args": "``input, target, reduction, delta=1.0``",
            "inputs": "values",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "optax": {
            "name": "``huber_loss``",
            "args": "``predictions, targets=None, delta=1.0``",
            "inputs": "values",
            "reduction": _ELEMENTWISE,
            "eps": "none",
        },
        "keras": {
            "name": "``huber``",
            "args": "``y_true, y_pred`` (**targets first**), ``delta=1.0``",
            "inputs": "values",
            "reduction": _LAST_AXIS,
            "eps": "none",
        },
    },
    "log_cosh_loss": {
        "mlx": {
            "name": "``nn.losses.log_cosh_loss``",
            "args": "``inputs, targets, reduction``",
            "inputs": "values (broadcast)",
            "reduction": "``'none'``",
            "eps": "none",
        },
        "torch": {"name": "(none; ``log(cosh(e))`` overflows for ``|e| > 89``)"},
        "optax": {
            "name": "``log_cosh``",
            "args": "``predictions, targets=None``",
            "inputs": "values",
            "reduction": _ELEMENTWISE,
            "eps": "none",
        },
        "keras": {
            "name": "``log_cosh``",
            "args": "``y_true, y_pred`` (**targets first**)",
            "inputs": "values",
            "reduction": _LAST_AXIS,
            "eps": "none",
        },
    },
    "gaussian_nll_loss": {
        "mlx": {
            "name": "``nn.losses.gaussian_nll_loss``",
            "args": "``inputs, targets, vars, full=False, eps=1e-6, reduction``",
            "inputs": "means, samples, **variances** (same shape)",
            "reduction": "``'mean'``",
            "eps": "variance clamped below at ``eps``",
        },
        "torch": {
            "name": "``F.gaussian_nll_loss``",
            "args": "``input, target, var, full=False, eps=1e-6, reduction``",
            "inputs": "means, samples, variances (``var`` may drop the last dimension)",
            "reduction": "``'mean'``",
            "eps": "variance clamped at ``eps`` (without gradient through the clamp)",
        },
        "optax": {"name": "(none)"},
        "keras": {"name": "(none)"},
    },
    "kl_div_loss": {
        "mlx": {
            "name": "``nn.losses.kl_div_loss``",
            "args": "``inputs, targets, axis=-1, reduction``",
            "inputs": "**both** log-probabilities; summed along ``axis``",
            "reduction": "``'none'`` (one value per distribution)",
            "eps": "none",
        },
        "torch": {
            "name": "``F.kl_div``",
            "args": "``input, target, ..., reduction, log_target=False``",
            "inputs": "log-probabilities; targets **probabilities** unless ``log_target``; "
            "**pointwise**, no sum along an axis",
            "reduction": "``'mean'`` over **all elements** (warns; ``'batchmean'`` is the KL)",
            "eps": "none; ``0 log 0 = 0``",
        },
        "optax": {
            "name": "``kl_divergence`` / ``kl_divergence_with_log_targets``",
            "args": "``log_predictions, targets, axis=-1``",
            "inputs": "log-probabilities; targets **probabilities** (``_with_log_targets``: log)",
            "reduction": _PER_EXAMPLE,
            "eps": "none; ``0 log 0 = 0``",
        },
        "keras": {
            "name": "``kl_divergence``",
            "args": "``y_true, y_pred`` (**targets first**)",
            "inputs": "**both probabilities**",
            "reduction": _PER_EXAMPLE + " (sum over the last axis)",
            "eps": "both clipped to ``[1e-7, 1]``",
        },
    },
    "cosine_similarity_loss": {
        "mlx": {
            "name": "``nn.losses.cosine_similarity_loss``",
            "args": "``x1, x2, axis=1, eps=1e-8, reduction``",
            "inputs": "vectors along **axis 1**; returns the **similarity**, not a distance",
            "reduction": "``'none'``",
            "eps": "``max(||x1|| ||x2||, eps)``",
        },
        "torch": {
            "name": "``F.cosine_similarity``",
            "args": "``x1, x2, dim=1, eps=1e-8``",
            "inputs": "vectors along dim 1; the similarity",
            "reduction": _PER_EXAMPLE + " (no ``reduction``)",
            "eps": "each norm: ``max(||x1||, eps) max(||x2||, eps)``",
        },
        "optax": {
            "name": "``cosine_similarity`` / ``cosine_distance`` (``1 -`` it)",
            "args": "``predictions, targets, epsilon=0.0, axis=-1``",
            "inputs": "vectors along the **last** axis",
            "reduction": _PER_EXAMPLE,
            "eps": "each squared norm: ``max(||x||^2, epsilon)``",
        },
        "keras": {
            "name": "``cosine_similarity``",
            "args": "``y_true, y_pred`` (**targets first**), ``axis=-1``",
            "inputs": "vectors along the last axis; returns **minus** the similarity",
            "reduction": _PER_EXAMPLE,
            "eps": "each norm: ``max(||x||, 1e-7)``",
        },
    },
    "triplet_loss": {
        "mlx": {
            "name": "``nn.losses.triplet_loss``",
            "args": "``anchors, positives, negatives, axis=-1, p=2, margin=1.0, "
            "eps=1e-6, reduction``",
            "inputs": "embeddings",
            "reduction": "``'none'``",
            "eps": "inside the root: ``(sum |a - b|^p + eps)^(1/p)``",
        },
        "torch": {
            "name": "``F.triplet_margin_loss``",
            "args": "``anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap, reduction``",
            "inputs": "embeddings along the last dim",
            "reduction": "``'mean'``",
            "eps": "added to the **difference**: ``||a - b + eps||_p``",
        },
        "optax": {
            "name": "``triplet_margin_loss``",
            "args": "``anchors, positives, negatives, axis=-1, norm_degree=2, "
            "margin=1.0, eps=1e-6``",
            "inputs": "embeddings; ``(a - b)^p`` without ``abs`` (odd ``p`` differs)",
            "reduction": _PER_EXAMPLE,
            "eps": "inside the root (as MLX)",
        },
        "keras": {"name": "(none)"},
    },
    "margin_ranking_loss": {
        "mlx": {
            "name": "``nn.losses.margin_ranking_loss``",
            "args": "``inputs1, inputs2, targets, margin=0.0, reduction``",
            "inputs": "scores; targets in ``{-1, 1}``",
            "reduction": "``'none'``",
            "eps": "none",
        },
        "torch": {
            "name": "``F.margin_ranking_loss``",
            "args": "``input1, input2, target, margin=0, ..., reduction``",
            "inputs": "scores; targets in ``{-1, 1}``",
            "reduction": "``'mean'``",
            "eps": "none",
        },
        "optax": {"name": "(none)"},
        "keras": {"name": "(none)"},
    },
}

#: What people trip on, per loss (reST), shown under each table.
TRIP_UPS: dict[str, list[str]] = {
    "cross_entropy": [
        "MLX returns one value per example (``reduction='none'``); PyTorch averages.",
        "PyTorch's ``weight`` holds one weight per *class*; MLX's ``weights`` one per "
        "*example*; anyloss's keyword-only ``class_weights`` is PyTorch's ``weight`` "
        "(:ref:`porting-class_weights`). Keras takes probabilities unless "
        "``from_logits=True``.",
        "PyTorch puts the classes on dimension 1, the others on the last axis: pass "
        "``axis=1`` for ``(N, C, d1, ...)`` inputs ported from PyTorch.",
    ],
    "binary_cross_entropy": [
        "PyTorch's ``F.binary_cross_entropy`` takes **probabilities**, MLX's default "
        "**logits**: port it with ``with_logits=False``; port "
        "``F.binary_cross_entropy_with_logits`` with the default.",
        "Keras puts the targets first and takes probabilities by default.",
    ],
    "nll_loss": [
        "MLX does not reduce by default; PyTorch averages. PyTorch skips targets equal "
        "to ``ignore_index`` (-100 by default); anyloss rejects out-of-range indices "
        "unless it is given ``ignore_index=-100`` (:ref:`porting-ignore_index`).",
    ],
    "hinge_loss": [
        "``torch.nn.functional.hinge_embedding_loss`` is *not* this loss.",
        "Keras silently maps targets ``{0, 1}`` to ``{-1, 1}``; anyloss expects ``{-1, 1}``.",
    ],
    "l1_loss": ["Keras averages over the last axis only; MLX over everything."],
    "mse_loss": ["optax's ``l2_loss`` is **half** the squared error."],
    "smooth_l1_loss": [
        "Smooth L1 with ``beta`` equals Huber with ``delta = beta`` divided by ``beta``; "
        "the two agree only for ``beta = 1``.",
    ],
    "huber_loss": [
        "MLX's Huber loss does not reduce by default, unlike its own ``smooth_l1_loss`` "
        "and PyTorch's ``huber_loss``.",
    ],
    "log_cosh_loss": [
        "``log(cosh(e))`` overflows to ``inf`` for ``|e| > 89`` in float32 and loses "
        "all digits for tiny errors; anyloss stays exact for both.",
    ],
    "gaussian_nll_loss": [
        "The third argument is the **variance**, not the standard deviation nor its log.",
    ],
    "kl_div_loss": [
        "MLX takes **log**-probabilities for both arguments; PyTorch and optax take "
        "probabilities as targets (unless ``log_target=True`` / "
        "``kl_divergence_with_log_targets``); Keras takes probabilities for both, "
        "targets first.",
        "PyTorch's ``F.kl_div`` is pointwise: ``reduction='mean'`` divides by the "
        "number of *elements*; ``'batchmean'`` is the mean over examples of the KL, "
        "i.e. anyloss's ``reduction='mean'`` on 2-D inputs.",
    ],
    "cosine_similarity_loss": [
        "Despite its name, MLX's ``cosine_similarity_loss`` returns the **similarity** "
        "(1 for equal directions), along **axis 1** by default; optax's "
        "``cosine_distance`` is ``1 -`` it and Keras's ``cosine_similarity`` is "
        "**minus** it, both along the last axis.",
        "``eps`` bounds the product of the norms in MLX, each norm in PyTorch and "
        "Keras, each squared norm in optax: results differ only for near-zero vectors.",
    ],
    "triplet_loss": [
        "PyTorch adds ``eps`` to the difference vector, MLX under the root: "
        "``d(a, a)`` is ``1e-3`` in MLX and ``eps * sqrt(dim)`` in PyTorch. Shift the "
        "anchors by ``eps`` and pass ``eps=0.0`` to reproduce PyTorch exactly.",
    ],
    "margin_ranking_loss": ["MLX does not reduce by default; PyTorch averages."],
}

#: The losses in page order.
LOSSES = list(FACTS)

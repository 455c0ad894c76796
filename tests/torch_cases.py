"""Smooth, valid PyTorch inputs of every public loss, some with non-default
options: the cases of ``test_torch_compile.py`` and ``test_devices.py``.

The tensors are built on the default device (``ANYLOSS_TEST_DEVICE`` sets
it, see ``conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import anyloss

N, C = 4, 5  # one small shape: each case compiles once
Case = tuple[Callable[..., Any], list[Any], dict[str, Any]]


def cases() -> dict[str, Case]:
    """id -> (loss, arrays (the first one differentiable), options): smooth,
    valid inputs of every public loss (24), some with non-default options."""
    rng = np.random.default_rng(0)

    def f(*shape: int) -> Any:
        return torch.tensor(rng.normal(size=shape), dtype=torch.float32)

    def unit(*shape: int) -> Any:
        return torch.tensor(rng.uniform(0.05, 0.95, shape), dtype=torch.float32)

    def lsm(x: Any) -> Any:
        return torch.log_softmax(x, -1)

    idx = torch.tensor(rng.integers(0, C, N))
    sign = torch.tensor(rng.choice([-1.0, 1.0], size=(N, C)), dtype=torch.float32)
    bits = torch.tensor(rng.integers(0, 2, (N, C)), dtype=torch.float32)
    steps, labels, width = 6, 4, 3
    return {
        "cross_entropy": (anyloss.cross_entropy, [f(N, C), idx], {}),
        "cross_entropy_probs": (
            anyloss.cross_entropy,
            [f(N, C), torch.softmax(f(N, C), -1)],
            {"label_smoothing": 0.1},
        ),
        "cross_entropy_options": (
            anyloss.cross_entropy,
            [f(N, C), idx],
            {"ignore_index": 1, "class_weights": unit(C) + 0.5, "label_smoothing": 0.05},
        ),
        "binary_cross_entropy": (
            anyloss.binary_cross_entropy,
            [f(N, C), bits],
            {"pos_weight": unit(C) + 0.5},
        ),
        "binary_cross_entropy_probs": (
            anyloss.binary_cross_entropy,
            [unit(N, C), bits],
            {"with_logits": False},
        ),
        "nll_loss": (anyloss.nll_loss, [lsm(f(N, C)), idx], {}),
        "hinge_loss": (anyloss.hinge_loss, [f(N, C), sign], {}),
        "huber_loss": (anyloss.huber_loss, [f(N, C), f(N, C)], {"delta": 0.5}),
        "l1_loss": (anyloss.l1_loss, [f(N, C), f(N, C)], {}),
        "mse_loss": (anyloss.mse_loss, [f(N, C), f(N, C)], {}),
        "smooth_l1_loss": (anyloss.smooth_l1_loss, [f(N, C), f(N, C)], {"beta": 0.5}),
        "log_cosh_loss": (anyloss.log_cosh_loss, [f(N, C), f(N, C)], {}),
        "gaussian_nll_loss": (
            anyloss.gaussian_nll_loss,
            [f(N, C), f(N, C), unit(N, C) + 0.5],
            {"full": True},
        ),
        "kl_div_loss": (anyloss.kl_div_loss, [lsm(f(N, C)), lsm(f(N, C))], {}),
        "cosine_similarity_loss": (anyloss.cosine_similarity_loss, [f(N, C), f(N, C)], {}),
        "triplet_loss": (anyloss.triplet_loss, [f(N, C), f(N, C), f(N, C)], {"p": 1}),
        "margin_ranking_loss": (
            anyloss.margin_ranking_loss,
            [f(N), f(N), sign[:, 0]],
            {"margin": 0.5},
        ),
        "cosine_embedding_loss": (
            anyloss.cosine_embedding_loss,
            [f(N, C), f(N, C), sign[:, 0]],
            {"margin": 0.1},
        ),
        "linear_cross_entropy": (
            anyloss.linear_cross_entropy,
            [f(N, C), f(7, C), idx],
            {"bias": f(7), "label_smoothing": 0.1, "softcap": 2.0, "chunk_size": 3},
        ),
        "ctc_loss": (
            anyloss.ctc_loss,
            [
                torch.log_softmax(f(2, steps, labels), -1),
                torch.tensor(rng.integers(1, labels, (2, width))),
                torch.tensor([6, 5]),
                torch.tensor([3, 2]),
            ],
            {},
        ),
        "dice_loss": (anyloss.dice_loss, [unit(N, C), bits], {}),
        "info_nce_loss": (anyloss.info_nce_loss, [f(N, C), f(N, C)], {"symmetric": True}),
        "multiclass_hinge_loss": (anyloss.multiclass_hinge_loss, [f(N, C), idx], {}),
        "nt_xent_loss": (anyloss.nt_xent_loss, [f(N, C), torch.tensor([0, 0, 1, 1])], {}),
        "poisson_nll_loss": (anyloss.poisson_nll_loss, [f(N, C), 3 * unit(N, C)], {}),
        "sigmoid_focal_loss": (anyloss.sigmoid_focal_loss, [f(N, C), bits], {}),
        "softmax_focal_loss": (anyloss.softmax_focal_loss, [f(N, C), idx], {"gamma": 1.5}),
        "squared_hinge_loss": (anyloss.squared_hinge_loss, [f(N, C), sign], {}),
    }


def public_losses() -> set[str]:
    """The names of anyloss's loss functions."""
    return {
        name
        for name in anyloss.__all__
        if callable(getattr(anyloss, name)) and name.islower() and name != "losses"
    }

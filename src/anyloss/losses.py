"""Drop-in replacement for ``mlx.nn.losses``.

``import anyloss.losses as losses`` (or ``from anyloss import losses``) gives the
same names, parameter order and defaults as ``mlx.nn.losses``; the functions
take the arrays of any supported library.
"""

from ._backend import AxisError
from ._checks import Reduction
from ._classification import binary_cross_entropy, cross_entropy, hinge_loss, nll_loss
from ._distributions import kl_div_loss
from ._embedding import cosine_similarity_loss, margin_ranking_loss, triplet_loss
from ._regression import (
    gaussian_nll_loss,
    huber_loss,
    l1_loss,
    log_cosh_loss,
    mse_loss,
    smooth_l1_loss,
)

__all__ = [
    "AxisError",
    "Reduction",
    "binary_cross_entropy",
    "cosine_similarity_loss",
    "cross_entropy",
    "gaussian_nll_loss",
    "hinge_loss",
    "huber_loss",
    "kl_div_loss",
    "l1_loss",
    "log_cosh_loss",
    "margin_ranking_loss",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
    "triplet_loss",
]

"""anyloss: MLX's loss functions, exact, on the arrays of any library.

Pass NumPy, PyTorch, JAX, MLX, CuPy, Dask or array-api-strict arrays; the result
is an array of the same library, on the same device, and gradients flow through
the library's own autodiff.

>>> import numpy as np
>>> import anyloss
>>> anyloss.mse_loss(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
array(2.)
"""

from importlib.metadata import PackageNotFoundError, version

from . import losses
from ._backend import AxisError
from ._checks import Reduction
from ._classification import binary_cross_entropy, cross_entropy, hinge_loss, nll_loss
from ._contrastive import info_nce_loss, nt_xent_loss
from ._distributions import kl_div_loss
from ._embedding import cosine_similarity_loss, margin_ranking_loss, triplet_loss
from ._focal import sigmoid_focal_loss, softmax_focal_loss
from ._linear import linear_cross_entropy
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
from ._typing import Array, ArrayLike

try:
    __version__ = version("anyloss")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "Array",
    "ArrayLike",
    "AxisError",
    "Reduction",
    "__version__",
    # the 14 losses of mlx.nn.losses (also in anyloss.losses)
    "binary_cross_entropy",
    "cosine_similarity_loss",
    "cross_entropy",
    "gaussian_nll_loss",
    "hinge_loss",
    "huber_loss",
    "kl_div_loss",
    "l1_loss",
    "log_cosh_loss",
    "losses",
    "margin_ranking_loss",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
    "triplet_loss",
    # beyond MLX
    "cosine_embedding_loss",
    "ctc_loss",
    "dice_loss",
    "info_nce_loss",
    "linear_cross_entropy",
    "multiclass_hinge_loss",
    "nt_xent_loss",
    "poisson_nll_loss",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "squared_hinge_loss",
]

"""Contrastive losses: InfoNCE and NT-Xent with in-batch negatives.

Both build the ``(N, N)`` matrix of similarities of a batch (nothing larger)
in float64 where the array library has it: the losses are differences of
similarities divided by a small temperature, so every rounding error of a
float32 similarity is amplified by ``1 / temperature`` before it reaches the
result.
"""

from __future__ import annotations

from typing import Any

from ._backend import Backend, convert, resolve
from ._checks import Reduction, check_reduction, float_arg, number, public, shape_of
from ._classification import _shifted_logsumexp, _softplus, _take_along
from ._embedding import _scale
from ._reduction import reduce

__all__ = [
    "info_nce_loss",
    "nt_xent_loss",
]


def _matrix(func: str, name: str, x: Any) -> None:
    if x.ndim != 2:
        raise ValueError(
            f"{func}(): {name} must be a 2-D array of shape (N, D), got {name}.shape={shape_of(x)}"
        )
    if any(d != d for d in shape_of(x)):
        raise ValueError(
            f"{func}(): {name}.shape={shape_of(x)} has sizes Dask does not know yet; "
            f"call {name}.compute_chunk_sizes() first"
        )


def _unit_rows(be: Backend, x: Any) -> Any:
    """``x / ||x||`` along the rows, a zero row left at zero.

    Each row is first divided by its largest magnitude, so the squared norm
    lies in ``[1, D]``: magnitudes of ``1e20`` or ``1e-20`` neither overflow nor
    underflow. The scale is a constant for differentiation, which is exact: the
    unit vector does not depend on it.
    """
    xp = be.xp
    u = x / _scale(be, x, 1)
    sq = xp.sum(u * u, axis=1, keepdims=True)
    # a zero row has sq = 0: divide by 1 instead (no 0/0, no inf gradient of sqrt)
    return u / xp.sqrt(xp.where(sq > be.scalar(0.0, sq.dtype), sq, be.scalar(1.0, sq.dtype)))


def _diagonal_cross_entropy(be: Backend, sims: Any, tau: float, axis: int, index: Any) -> Any:
    """Cross entropy of the logits ``sims / tau`` of every row (``axis=1``) or
    column (``axis=0``) of a square matrix, the diagonal entry the target:
    ``logsumexp - diag``, summed as ``log1p`` as in ``cross_entropy``.

    The maximum is subtracted before the division by ``tau``: a compiler
    that fuses ``sims / tau - max`` into one fused multiply-add (XLA on the
    CPU does) would otherwise leave the maximum entry at a few ulp from 0,
    an absolute error that swamps a small loss.
    """
    xp = be.xp
    z = (sims - be.stop_gradient(xp.max(sims, axis=axis, keepdims=True))) / tau
    return _shifted_logsumexp(be, z, axis) - _take_along(be, z, index, axis)


@public
def info_nce_loss(
    queries: Any,
    keys: Any,
    temperature: float = 0.1,
    normalize: bool = True,
    symmetric: bool = False,
    reduction: Reduction = "mean",
) -> Any:
    r"""Compute the InfoNCE loss with in-batch negatives.

    Query :math:`q_i` is paired with key :math:`k_i`; every other key of the
    batch is a negative:

    .. math::

        \ell_i = -\log \frac{e^{s_{ii}}}{\sum_j e^{s_{ij}}}, \qquad
        s_{ij} = \frac{\hat q_i \cdot \hat k_j}{\tau}

    where :math:`\hat v = v / \|v\|` when ``normalize`` (else :math:`\hat v = v`)
    and :math:`\tau` is the temperature. With ``symmetric=True`` (CLIP) the
    loss of pair :math:`i` is the mean of the query-to-key and key-to-query
    cross entropies,
    :math:`\tfrac12\big(\ell_i + (\operatorname{logsumexp}_j s_{ji} - s_{ii})\big)`.

    This is ``cross_entropy(s, arange(N))``: evaluated with the maximum
    shifted out and the small terms summed through ``log1p``. The rows are
    scaled by their largest entry before they are normalized (magnitudes of
    ``1e20`` or ``1e-20`` neither overflow nor underflow, and there is no
    ``eps``: a zero row stays zero), and the similarities are computed in
    float64 where the array library has it.

    Args:
        queries: Query embeddings of shape ``(N, D)``.
        keys: Key embeddings of shape ``(N, D)``; ``keys[i]`` is the positive of
            ``queries[i]``.
        temperature: The temperature :math:`\tau`, ``> 0``. Default: ``0.1``.
        normalize: Whether to L2-normalize queries and keys along ``D`` (cosine
            similarities) or use the raw dot products. Default: ``True``.
        symmetric: Whether to average the query-to-key and key-to-query
            losses (CLIP). Default: ``False``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The InfoNCE loss, of shape ``(N,)`` for ``'none'`` (one value per
        pair) and 0-d otherwise, in the array library and dtype of ``queries``.

    Raises:
        ValueError: ``queries`` or ``keys`` not 2-D or of different shapes,
            ``temperature <= 0``, an unknown reduction.

    Examples:
        >>> import numpy as np
        >>> import anyloss
        >>> q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
        >>> k = np.array([[1.0, 0.2], [0.1, 1.0], [1.0, 0.9]], dtype=np.float32)
        >>> anyloss.info_nce_loss(q, k, temperature=0.5, reduction="none").tolist()
        [0.584350, 0.544218, 0.856428]
        >>> anyloss.info_nce_loss(q, k, temperature=0.5)
        array(0.661665, dtype=float32)
        >>> anyloss.info_nce_loss(q, k, temperature=0.5, symmetric=True)
        array(0.666106, dtype=float32)
    """
    func = "info_nce_loss"
    check_reduction(func, reduction)
    tau = number(func, "temperature", temperature, low=0.0, low_open=True)
    be = resolve(func, ("queries", queries), ("keys", keys))
    xp = be.xp
    q = float_arg(be, func, "queries", queries, be.wide)
    k = float_arg(be, func, "keys", keys, be.wide)
    _matrix(func, "queries", q)
    _matrix(func, "keys", k)
    if shape_of(q) != shape_of(k):
        raise ValueError(
            f"{func}(): queries and keys must have the same shape (N, D), got "
            f"queries.shape={shape_of(q)}, keys.shape={shape_of(k)}"
        )
    if normalize:
        q, k = _unit_rows(be, q), _unit_rows(be, k)
    sims = xp.matmul(q, k.T)
    index = be.arange(shape_of(q)[0])
    loss = _diagonal_cross_entropy(be, sims, tau, 1, index)
    if symmetric:
        loss = (loss + _diagonal_cross_entropy(be, sims, tau, 0, index)) * 0.5
    return reduce(be, loss, reduction)


@public
def nt_xent_loss(
    embeddings: Any,
    labels: Any,
    temperature: float = 0.07,
    reduction: Reduction = "mean",
) -> Any:
    r"""Compute the normalized temperature-scaled cross entropy (NT-Xent).

    Embeddings with equal labels form positive pairs; embeddings with
    different labels are negatives of each other; an embedding is never
    compared with itself. Every ordered positive pair :math:`(i, j)`
    contributes the cross entropy of picking :math:`j` among :math:`j` and the
    negatives of :math:`i`:

    .. math::

        \ell_{ij} = -\log \frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k:\, y_k \ne y_i} e^{s_{ik}}}
                  = \log\Big(1 + \sum_{k:\, y_k \ne y_i} e^{s_{ik} - s_{ij}}\Big),
        \qquad s_{ij} = \frac{\cos(x_i, x_j)}{\tau}

    as in ``optax.losses.ntxent`` (SimCLR; the other positives of :math:`i`
    are not in the denominator). It is evaluated as
    ``softplus(logsumexp_neg(s_i) - s_ij)``, the log-sum-exp shifted by its
    maximum and everything in float64 where the array library has it; the
    rows are scaled by their largest entry before they are normalized
    (magnitudes of ``1e20`` or ``1e-20`` neither overflow nor underflow; there
    is no ``eps``, a zero row stays zero). A positive pair whose anchor has no
    negatives contributes 0.

    The reduction is over the positive pairs, as optax's loss: ``'none'``
    gives, per anchor :math:`i`, the sum :math:`\sum_{j} \ell_{ij}` over its
    positives (0 for an anchor without any); ``'sum'`` their total; ``'mean'``
    the total divided by the number of positive pairs (not by ``N``), which is
    ``optax.losses.ntxent``. With one positive per anchor (two views of each
    example, SimCLR) that is the plain mean of ``'none'``. A batch without any
    positive pair gives NaN for ``'mean'``.

    Args:
        embeddings: Embeddings of shape ``(N, D)``.
        labels: Integer labels of shape ``(N,)``; equal labels mark positives.
        temperature: The temperature :math:`\tau`, ``> 0``. Default: ``0.07``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        The NT-Xent loss, of shape ``(N,)`` for ``'none'`` and 0-d otherwise,
        in the array library and dtype of ``embeddings``.

    Raises:
        ValueError: ``embeddings`` not 2-D, ``labels`` not of shape ``(N,)``,
            ``temperature <= 0``, an unknown reduction.
        TypeError: ``labels`` that are not integers.

    Examples:
        SimCLR: two views ``z1``, ``z2`` of the same ``n`` examples.

        >>> import numpy as np
        >>> import anyloss
        >>> z1 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]], dtype=np.float32)
        >>> z2 = np.array([[0.9, 0.3], [0.2, 1.0], [-1.0, 0.0]], dtype=np.float32)
        >>> n = len(z1)
        >>> embeddings = np.concatenate([z1, z2])
        >>> labels = np.concatenate([np.arange(n), np.arange(n)])
        >>> anyloss.nt_xent_loss(embeddings, labels, temperature=0.5)
        array(0.507417, dtype=float32)
        >>> anyloss.nt_xent_loss(embeddings, labels, temperature=0.5, reduction="none").tolist()
        [0.348762, 0.636757, 0.565502, 0.557166, 0.652822, 0.283492]
    """
    func = "nt_xent_loss"
    check_reduction(func, reduction)
    tau = number(func, "temperature", temperature, low=0.0, low_open=True)
    be = resolve(func, ("embeddings", embeddings), ("labels", labels))
    xp = be.xp
    x = float_arg(be, func, "embeddings", embeddings, be.wide)
    _matrix(func, "embeddings", x)
    y = convert(be, f"{func}(): labels", labels)
    if not be.is_integer(y):
        raise TypeError(f"{func}(): labels must have an integer dtype, got {y.dtype}")
    n = shape_of(x)[0]
    if shape_of(y) != (n,):
        raise ValueError(
            f"{func}(): labels must have shape (N,) = ({n},) for embeddings.shape="
            f"{shape_of(x)}, got labels.shape={shape_of(y)}"
        )
    u = _unit_rows(be, x)
    cos = xp.matmul(u, u.T)
    same = y[:, None] == y[None, :]
    index = be.arange(n)
    negative = ~same
    positive = same & (index[:, None] != index[None, :])
    has_negative = xp.any(negative, axis=1, keepdims=True)
    # A row without negatives takes all its entries instead, so its
    # log-sum-exp stays finite (no -inf - -inf, no NaN gradient); its pairs
    # are masked out below.
    counted = negative | ~has_negative
    masked = xp.where(counted, cos, be.scalar(float("-inf"), cos.dtype))
    peak = be.stop_gradient(xp.max(masked, axis=1, keepdims=True))
    # logsumexp over the negatives of s = cos / tau, less peak / tau; the pair
    # loss softplus(logsumexp - s_ij) then takes (peak - cos_ij) / tau, a
    # difference of cosines before the division (see _diagonal_cross_entropy)
    rest = xp.expand_dims(_shifted_logsumexp(be, (masked - peak) / tau, 1), axis=1)
    zero = be.scalar(0.0, cos.dtype)
    pair = _softplus(be, rest + (peak - cos) / tau)
    valid = positive & has_negative
    loss = xp.sum(xp.where(valid, pair, zero), axis=1)
    if reduction == "mean":
        # sum over pairs / number of pairs, divided before the (accurate) sum
        count = xp.sum(be.cast(positive, cos.dtype))
        some = count > zero
        loss = xp.where(
            some,
            loss / xp.where(some, count, be.scalar(1.0, cos.dtype)),
            be.scalar(float("nan"), cos.dtype),
        )
        return reduce(be, loss, "sum")
    return reduce(be, loss, reduction)

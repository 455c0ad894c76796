"""Sequence losses: connectionist temporal classification (CTC)."""

from __future__ import annotations

import functools
import numbers
import sys
from typing import Any

import numpy as np

from ._backend import Backend, convert, library_of, resolve
from ._checks import Reduction, check_reduction, float_arg, public, shape_of
from ._classification import _take_along
from ._reduction import reduce
from ._typing import Array, ArrayLike

__all__ = [
    "ctc_loss",
]


def _logaddexp(be: Backend, a: Any, b: Any, zero: Any, neg_inf: Any) -> Any:
    """``log(exp(a) + exp(b))``, where two ``-inf`` give ``-inf`` with a zero (not
    NaN) gradient.

    The libraries' ``logaddexp`` is exact to an ulp and gets ``-inf`` and ``-inf``
    right in value, but its gradient ``exp(a - out)`` is then ``exp(nan)``. On
    the libraries with autodiff such pairs are replaced by zeros before the
    call and the result by ``-inf`` after it, so the discarded branch of the
    ``where`` stays finite. NaN propagates (it is not ``-inf``).
    """
    xp = be.xp
    if not be.differentiable:
        return xp.logaddexp(a, b)
    both = xp.maximum(a, b) == neg_inf
    return xp.where(both, neg_inf, xp.logaddexp(xp.where(both, zero, a), xp.where(both, zero, b)))


def _index_arg(be: Backend, func: str, name: str, x: Any, what: str) -> tuple[Any, Any]:
    """``x`` as an integer array of ``be``'s library, and its values as NumPy where
    they can be read without breaking a trace or forcing a computation."""
    arr = convert(be, f"{func}(): {name}", x)
    if not be.is_integer(arr):
        raise TypeError(
            f"{func}(): {name} holds {what} and must have an integer dtype, got {arr.dtype}"
        )
    values = np.asarray(x) if library_of(x) in (None, "numpy") else be.concrete(arr)
    if be.name == "torch" and str(arr.dtype) != "torch.int64":
        arr = be.xp.astype(arr, be.xp.int64)  # torch gathers with int64 indices
    return arr, values


def _int_option(func: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{func}(): {name} must be an int, got {type(value).__name__}")
    return int(value)


def _one_chunk(be: Backend, a: Any) -> Any:
    """``a`` (N, K) in one chunk along K on Dask, where a concatenation leaves
    several: every array of the recursion is then chunked alike (along the batch
    only) and Dask has nothing to rechunk at each step."""
    return a.rechunk({1: -1}) if be.name == "dask" else a


def _first(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _step(be: Backend, alpha: Any, emit_t: Any, active: Any, fixed: tuple[Any, ...]) -> Any:
    """One time step of the forward recursion on alpha (N, K), in log space:
    ``alpha[s] + alpha[s - 1] + alpha[s - 2]`` (the last where a skip is
    allowed), times the emission; unchanged where the step is not ``active``."""
    xp = be.xp
    skip_or_not, none_yet, zero, neg_inf = fixed
    k = alpha.shape[1]

    def back(j: int) -> Any:  # alpha[:, s - j], -inf for s < j
        if j >= k:
            return none_yet
        return _one_chunk(be, xp.concat([none_yet[:, :j], alpha[:, : k - j]], axis=1))

    paths = _logaddexp(
        be, _logaddexp(be, alpha, back(1), zero, neg_inf), back(2) + skip_or_not, zero, neg_inf
    )
    return xp.where(active, paths + emit_t, alpha)  # frozen past input_lengths


@functools.cache
def _jax_scan() -> Any:
    """The recursion over time as a ``jax.lax.scan`` of :func:`_step`, jitted once.

    XLA's compile time grows about as T**3 on an unrolled loop (T = 40: over two
    minutes for the value alone); the scan compiles once whatever T, and being
    jitted at module level it is reused by eager calls instead of being traced
    and compiled again each time.
    """
    jax = sys.modules["jax"]

    def run(be: Backend, alpha: Any, emit: Any, active: Any, fixed: tuple[Any, ...]) -> Any:
        def body(a: Any, inputs: tuple[Any, Any]) -> tuple[Any, None]:
            return _step(be, a, inputs[0], inputs[1], fixed), None

        return jax.lax.scan(body, alpha, (emit, active))[0]

    return jax.jit(run, static_argnums=0)


@public
def ctc_loss(
    log_probs: ArrayLike,
    targets: ArrayLike,
    input_lengths: ArrayLike,
    target_lengths: ArrayLike,
    blank: int = 0,
    zero_infinity: bool = False,
    reduction: Reduction = "mean",
) -> Array:
    r"""Compute the connectionist temporal classification (CTC) loss.

    .. math::

        \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(y_n)}
                 \prod_{t=1}^{T_n} p_{n, t, \pi_t}

    where the sum runs over every alignment :math:`\pi` of length
    :math:`T_n` (``input_lengths[n]``) that collapses to the target
    :math:`y_n` (``targets[n, :target_lengths[n]]``) once repeated labels are
    merged and blanks removed, and :math:`\log p` are ``log_probs``. It is
    computed by the forward (alpha) recursion in log space over the target
    interleaved with blanks. A target no alignment can produce (too long for
    its input, counting the blank needed between repeated labels) has an
    infinite loss, and a zero gradient.

    The layout is batch-first, ``(N, T, C)``; PyTorch's
    ``torch.nn.functional.ctc_loss`` takes ``(T, N, C)``:
    ``log_probs.transpose(0, 1)`` converts one into the other.

    ``reduction='mean'`` follows PyTorch, **not** the plain mean of the other
    anyloss losses: each sequence's loss is divided by its target length
    (lengths of 0 count as 1), then the quotients are averaged over the batch.
    Use ``reduction='none'`` and take the mean yourself for the plain mean.

    The recursion runs in float64 where the library has it, and float32
    results come out correctly rounded in the tests (0.5 ulp against an exact
    enumeration of all alignments); on JAX without x64 and on MLX it runs in
    float32. In either precision the error is about an ulp of the
    log-probabilities the alignments add up rather than of the loss, so a loss
    close to 0 built from alignments that are each far from certain keeps only
    its absolute accuracy (in float32, like PyTorch's own float32 CTC).

    The gradient is that of the loss with ``log_probs`` as free inputs.
    PyTorch's built-in backward returns ``exp(log_probs)`` more (the gradient
    meant for ``log_probs`` coming out of a ``log_softmax``); through a
    ``log_softmax`` both give the same gradient for the logits.

    Args:
        log_probs: Log-probabilities of shape ``(N, T, C)`` (batch, time,
            classes), e.g. the output of a ``log_softmax`` over classes.
        targets: Integer labels of shape ``(N, S)``, padded: the entries past
            ``target_lengths[n]`` are ignored. Labels within a target's length
            must be in ``[0, C)`` and differ from ``blank``.
        input_lengths: Integer lengths ``(N,)`` of the inputs, at most ``T``
            (a Python list or an array). Time steps past a length are ignored.
        target_lengths: Integer lengths ``(N,)`` of the targets, at most ``S``.
        blank: The blank label, in ``[0, C)``. Default: ``0``.
        zero_infinity: Whether to replace infinite losses (impossible
            alignments) and their gradients by 0. Default: ``False``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``
            (per target length, see above).

    Returns:
        The CTC loss, of shape ``(N,)`` for ``reduction='none'`` and a 0-d
        array otherwise, in the array library and dtype of ``log_probs``.

    Raises:
        ValueError: ``log_probs`` not 3-D, ``targets`` not ``(N, S)``, lengths
            not ``(N,)``, lengths negative or longer than ``T`` / ``S``, labels
            out of range or equal to ``blank``, ``blank`` outside ``[0, C)``,
            an unknown reduction. Values are checked where they are concrete
            (not under ``jax.jit``/``mx.compile``/``torch.compile``, nor in a Dask graph, unless
            passed as Python or NumPy data).
        TypeError: Non-integer targets, lengths or ``blank``; a
            ``zero_infinity`` that is not a bool.

    Examples:
        Uniform probabilities over 3 classes for 2 steps: 3 of the 9
        alignments (``1 1``, ``0 1``, ``1 0``) give the target ``[1]``, so the
        loss is ``log 3``.

        >>> import numpy as np
        >>> import anyloss
        >>> log_probs = np.full((1, 2, 3), np.log(1 / 3), dtype=np.float32)
        >>> anyloss.ctc_loss(log_probs, np.array([[1]]), [2], [1], reduction="none")
        array([1.0986123], dtype=float32)
        >>> rng = np.random.default_rng(0)
        >>> logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
        >>> log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        >>> targets = np.array([[1, 2], [2, 0]])  # the second is padded
        >>> anyloss.ctc_loss(log_probs, targets, [4, 3], [2, 1], reduction="none")
        array([2.126793 , 2.4908056], dtype=float32)

        The default ``'mean'`` divides by the target lengths first:
        ``(2.126793 / 2 + 2.4908056 / 1) / 2``.

        >>> anyloss.ctc_loss(log_probs, targets, [4, 3], [2, 1])
        array(1.7771009, dtype=float32)
    """
    func = "ctc_loss"
    check_reduction(func, reduction)
    blank = _int_option(func, "blank", blank)
    if not isinstance(zero_infinity, bool | np.bool_):
        raise TypeError(
            f"{func}(): zero_infinity must be a bool, got {type(zero_infinity).__name__}"
        )
    be = resolve(
        func,
        ("log_probs", log_probs),
        ("targets", targets),
        ("input_lengths", input_lengths),
        ("target_lengths", target_lengths),
    )
    xp = be.xp
    # The recursion runs in float64 where the library has it (alpha is a sum of
    # up to T rounded log-sum-exps; in float64 the float32 result is then
    # correctly rounded or nearly so), else in float32.
    wide = be.wide
    x = float_arg(be, func, "log_probs", log_probs, wide)
    if x.ndim != 3:
        raise ValueError(
            f"{func}(): log_probs must have shape (N, T, C) (batch, time, classes), got "
            f"shape {shape_of(x)}; for PyTorch's (T, N, C) layout pass "
            f"log_probs.transpose(0, 1)"
        )
    n, steps, classes = shape_of(x)
    if n != n or steps != steps:
        raise ValueError(
            f"{func}(): the batch size and number of time steps of log_probs must be known, "
            f"got shape {shape_of(x)}; for a Dask array call .compute_chunk_sizes() first"
        )
    if classes == classes and not 0 <= blank < classes:
        raise ValueError(
            f"{func}(): blank = {blank} is out of range for {classes} classes "
            f"(log_probs.shape={shape_of(x)}); expected 0 <= blank < {classes}"
        )

    y, y_np = _index_arg(be, func, "targets", targets, "labels")
    if y.ndim != 2 or shape_of(y)[0] != n:
        raise ValueError(
            f"{func}(): targets must have shape (N, S) = ({n}, S) (padded labels), got "
            f"shape {shape_of(y)} with log_probs.shape={shape_of(x)}"
        )
    width = shape_of(y)[1]
    if width != width:
        raise ValueError(f"{func}(): the padded length S of targets must be known")
    lengths = []
    for name, value, limit, what in (
        ("input_lengths", input_lengths, steps, "the number of time steps T"),
        ("target_lengths", target_lengths, width, "the padded target length S"),
    ):
        arr, vals = _index_arg(be, func, name, value, "lengths")
        if arr.ndim != 1 or shape_of(arr)[0] != n:
            raise ValueError(
                f"{func}(): {name} must have shape (N,) = ({n},), got shape {shape_of(arr)}"
            )
        if vals is not None and vals.size:
            bad = (vals < 0) | (vals > limit)
            if bad.any():
                (i,) = _first(bad)
                raise ValueError(
                    f"{func}(): {name}[{i}] = {int(vals[i])} is out of range; expected "
                    f"0 <= {name}[{i}] <= {limit} ({what})"
                )
        lengths.append((arr, vals))
    (il, _), (tl, tl_np) = lengths
    if y_np is not None and tl_np is not None and y_np.size:
        within = np.arange(width)[None, :] < tl_np[:, None]
        bad = within & ((y_np < 0) | (y_np >= classes))
        if bad.any():
            i, j = _first(bad)
            raise ValueError(
                f"{func}(): targets[{i}, {j}] = {int(y_np[i, j])} is out of range for "
                f"{classes} classes (log_probs.shape={shape_of(x)}); expected "
                f"0 <= label < {classes}"
            )
        bad = within & (y_np == blank)
        if bad.any():
            i, j = _first(bad)
            raise ValueError(
                f"{func}(): targets[{i}, {j}] = {blank} is the blank label; labels "
                f"within target_lengths[{i}] = {int(tl_np[i])} must differ from blank"
            )

    if be.name == "dask":  # one chunk along time and classes: batch-parallel graph
        x, y = x.rechunk({1: -1, 2: -1}), y.rechunk({1: -1})

    # Extended labels: blank, y_1, blank, y_2, ..., y_S, blank (K = 2S + 1);
    # padding past a target's length becomes blank (never gathered out of range).
    k = 2 * width + 1
    y = be.cast(y, tl.dtype)
    blank_col = xp.zeros_like(tl)[:, None] + blank  # (N, 1)
    within = xp.reshape(be.arange(width, dtype=tl.dtype), (1, width)) < tl[:, None]
    labels = xp.where(within, y, blank_col)
    pairs = xp.stack([xp.zeros_like(labels) + blank, labels], axis=2)
    ext = xp.concat([xp.reshape(pairs, (n, 2 * width)), blank_col], axis=1)
    ext = _one_chunk(be, ext)
    two_back = _one_chunk(be, xp.concat([blank_col, blank_col, ext], axis=1)[:, :k])
    skip = (ext != blank_col) & (ext != two_back)

    # Emissions log_probs[n, t, ext[n, s]] for every step: (N, T, K).
    if be.name == "dask" or not hasattr(xp, "take_along_axis"):
        emit = _take_along(be, x[:, :, None, :], ext[:, None, :], axis=3)
    else:
        emit = xp.take_along_axis(x, xp.broadcast_to(ext[:, None, :], (n, steps, k)), axis=2)

    zero = be.scalar(0.0, wide)
    neg_inf = be.scalar(-float("inf"), wide)
    consts = zero, neg_inf

    # -inf where nothing reaches yet; built from zeros_like, which keeps a Dask
    # array's chunks along the batch (a broadcast scalar would not)
    zeros = be.cast(xp.zeros_like(ext), wide)
    none_yet = zeros + neg_inf
    # alpha before the first step: all mass on position 0, which the recursion
    # turns into the usual start (blank or first label at t = 0)
    first = xp.reshape(be.arange(k, dtype=tl.dtype), (1, k)) == 0
    alpha = xp.where(first, zeros, none_yet)
    skip_or_not = xp.where(skip, zero, neg_inf)  # adds -inf where no skip is allowed
    fixed = (skip_or_not, none_yet, zero, neg_inf)
    if be.name == "jax" and steps:
        active = xp.reshape(be.arange(steps, dtype=il.dtype), (steps, 1, 1)) < il[None, :, None]
        alpha = _jax_scan()(be, alpha, xp.moveaxis(emit, 1, 0), active, fixed)
    else:
        active_until = il[:, None]
        for t in range(steps):
            alpha = _step(be, alpha, emit[:, t, :], active_until > t, fixed)

    end = _take_along(be, alpha, 2 * tl, axis=1)
    before = xp.where(
        tl > 0, _take_along(be, alpha, xp.maximum(2 * tl - 1, xp.zeros_like(tl)), axis=1), neg_inf
    )
    loss = -_logaddexp(be, end, before, *consts)
    if zero_infinity:
        loss = xp.where(loss == -neg_inf, zero, loss)
    if reduction == "mean":
        loss = loss / xp.maximum(be.cast(tl, wide), be.scalar(1.0, wide))
    return reduce(be, loss, reduction)

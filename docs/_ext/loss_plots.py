"""One figure per loss: the loss and its gradient for typical parameters.

Every curve is computed by anyloss itself on NumPy float64 arrays; the gradient
is the central finite difference ``(f(x + h) - f(x - h)) / 2h`` of that same
call, so the right panel shows what a library's autodiff should return.

Run directly (``python docs/_ext/loss_plots.py OUTDIR``) or through the Sphinx
extension ``anyloss_docs``, which calls :func:`write_all` at build time.
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import anyloss

Curve = tuple[str, Callable[[np.ndarray], np.ndarray]]
STEP = 1e-5  # finite-difference step (float64)


@dataclass
class Plot:
    xlabel: str
    x: np.ndarray
    curves: list[Curve]
    caption: str


def _grid(lo: float, hi: float, n: int = 600) -> np.ndarray:
    # an even number of points keeps 0 (where most kinks are) off the grid
    return np.linspace(lo, hi, n)


def _cross_entropy(s: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(z: np.ndarray) -> np.ndarray:
        logits = np.stack([z, np.zeros_like(z), np.zeros_like(z)], axis=-1)
        return anyloss.cross_entropy(logits, np.zeros(z.shape, dtype=int), label_smoothing=s)

    return f


def _kl(p: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(z: np.ndarray) -> np.ndarray:
        logq = np.stack([-np.logaddexp(0, -z), -np.logaddexp(0, z)], axis=-1)
        logp = np.broadcast_to(np.log([p, 1 - p]), logq.shape)
        return anyloss.kl_div_loss(logq, logp)

    return f


def _triplet(margin: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(g: np.ndarray) -> np.ndarray:
        zero = np.zeros_like(g)
        anchors = np.stack([zero, zero], axis=-1)
        positives = np.stack([zero + 2.0, zero], axis=-1)
        negatives = np.stack([2.0 + g, zero], axis=-1)
        return anyloss.triplet_loss(anchors, positives, negatives, margin=margin)

    return f


def _error(loss: Callable, **kw: object) -> Callable[[np.ndarray], np.ndarray]:
    """The loss of predictions ``e`` against targets 0, elementwise."""

    def f(e: np.ndarray) -> np.ndarray:
        return loss(e, np.zeros_like(e), reduction="none", **kw)

    return f


def _cosine(theta: np.ndarray) -> np.ndarray:
    x1 = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    x2 = np.broadcast_to(np.array([1.0, 0.0]), x1.shape)
    return anyloss.cosine_similarity_loss(x1, x2)


def _ranking(target: float, margin: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(d: np.ndarray) -> np.ndarray:
        return anyloss.margin_ranking_loss(d, np.zeros_like(d), np.full_like(d, target), margin)

    return f


# -- beyond MLX ---------------------------------------------------------------


def _softmax_focal(gamma: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(z: np.ndarray) -> np.ndarray:
        logits = np.stack([z, np.zeros_like(z), np.zeros_like(z)], axis=-1)
        return anyloss.softmax_focal_loss(logits, np.zeros(z.shape, dtype=int), gamma=gamma)

    return f


def _dice(smooth: float) -> Callable[[np.ndarray], np.ndarray]:
    """Target: 4 of 8 pixels; prediction ``p`` on those 4, 0 on the others."""

    def f(p: np.ndarray) -> np.ndarray:
        inputs = np.zeros((*p.shape, 8))
        inputs[:, :4] = p[:, None]
        targets = np.broadcast_to(np.repeat([1.0, 0.0], 4), inputs.shape)
        return anyloss.dice_loss(inputs, targets, smooth=smooth, reduction="none")

    return f


def _multiclass_hinge(margin: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(d: np.ndarray) -> np.ndarray:
        logits = np.stack([d, np.zeros_like(d), np.full_like(d, -1.0)], axis=-1)
        return anyloss.multiclass_hinge_loss(logits, np.zeros(d.shape, dtype=int), margin=margin)

    return f


def _cosine_embedding(target: float, margin: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(theta: np.ndarray) -> np.ndarray:
        x1 = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
        x2 = np.broadcast_to(np.array([1.0, 0.0]), x1.shape)
        return anyloss.cosine_embedding_loss(x1, x2, np.full_like(theta, target), margin=margin)

    return f


def _unit(angle: float) -> list[float]:
    return [np.cos(angle), np.sin(angle)]


def _info_nce(tau: float) -> Callable[[np.ndarray], np.ndarray]:
    """Loss of the pair (query 0, key 0) as their cosine moves; keys 1 and 2 are
    negatives of query 0 at 120 degrees from it."""

    def f(c: np.ndarray) -> np.ndarray:
        out = np.empty_like(c)
        queries = np.array([_unit(0.0), _unit(1.0), _unit(2.0)])
        for i, ci in enumerate(c):
            keys = np.array([[ci, np.sqrt(1 - ci * ci)], _unit(2.1), _unit(-2.1)])
            out[i] = anyloss.info_nce_loss(queries, keys, temperature=tau, reduction="none")[0]
        return out

    return f


def _nt_xent(tau: float) -> Callable[[np.ndarray], np.ndarray]:
    """Loss of anchor 0 (labels 0, 0, 1, 1) as the cosine of its positive moves;
    its two negatives lie at 120 degrees from it."""

    def f(c: np.ndarray) -> np.ndarray:
        out = np.empty_like(c)
        labels = np.array([0, 0, 1, 1])
        for i, ci in enumerate(c):
            x = np.array([_unit(0.0), [ci, np.sqrt(1 - ci * ci)], _unit(2.1), _unit(-2.1)])
            out[i] = anyloss.nt_xent_loss(x, labels, temperature=tau, reduction="none")[0]
        return out

    return f


def _ctc(steps: int) -> Callable[[np.ndarray], np.ndarray]:
    """Target: the single label 1 of two classes; every step has the logits [0, z]."""

    def f(z: np.ndarray) -> np.ndarray:
        log_probs = np.stack([-np.logaddexp(0, z), -np.logaddexp(0, -z)], axis=-1)
        log_probs = np.repeat(log_probs[:, None, :], steps, axis=1)
        n = len(z)
        targets = np.ones((n, 1), dtype=int)
        return anyloss.ctc_loss(
            log_probs, targets, np.full(n, steps), np.ones(n, dtype=int), reduction="none"
        )

    return f


def _linear(cap: float | None) -> Callable[[np.ndarray], np.ndarray]:
    """Four classes, weight rows (1, 0), (-1, 0), (0, 1), (0, -1); the hidden
    vector (a, 0.5), target class 0: the logits are (a, -a, 0.5, -0.5)."""
    weight = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])

    def f(a: np.ndarray) -> np.ndarray:
        hidden = np.stack([a, np.full_like(a, 0.5)], axis=-1)
        targets = np.zeros(len(a), dtype=int)
        return anyloss.linear_cross_entropy(hidden, weight, targets, reduction="none", softcap=cap)

    return f


ERROR = "error  (prediction - target)"

PLOTS: dict[str, Plot] = {
    "cross_entropy": Plot(
        "logit of the target class (3 classes, the other logits 0)",
        _grid(-6, 6),
        [(f"label_smoothing={s}", _cross_entropy(s)) for s in (0.0, 0.1, 0.3)],
        "Cross entropy of three classes as the target class's logit moves, the other "
        "two logits held at 0, for three label smoothings. With smoothing the loss has "
        "a minimum: confident logits are penalised.",
    ),
    "binary_cross_entropy": Plot(
        "logit  x",
        _grid(-6, 6),
        [
            (
                f"target {t}",
                lambda x, t=t: anyloss.binary_cross_entropy(
                    x, np.full_like(x, t), reduction="none"
                ),
            )
            for t in (1, 0)
        ],
        "Binary cross entropy on logits (``with_logits=True``) for both targets. The "
        "gradient is ``sigmoid(x) - t``.",
    ),
    "nll_loss": Plot(
        "log-probability of the target class",
        _grid(-5, 0),
        [
            (
                "nll_loss",
                lambda lp: anyloss.nll_loss(
                    np.stack([lp, np.log(-np.expm1(lp))], axis=-1),
                    np.zeros(lp.shape, dtype=int),
                ),
            )
        ],
        "Negative log likelihood of two classes against the target's log-probability: "
        "the loss is its negative, so the gradient is -1 everywhere.",
    ),
    "hinge_loss": Plot(
        "score  x",
        _grid(-3, 3),
        [
            (f"target {t:+d}", lambda x, t=t: anyloss.hinge_loss(x, np.full_like(x, t)))
            for t in (1, -1)
        ],
        "Hinge loss for targets +1 and -1: zero once the score is on the right side "
        "with a margin of 1.",
    ),
    "l1_loss": Plot(
        ERROR,
        _grid(-3, 3),
        [("l1_loss", _error(anyloss.l1_loss))],
        "L1 loss against the error; the gradient is the sign of the error.",
    ),
    "mse_loss": Plot(
        ERROR,
        _grid(-3, 3),
        [("mse_loss", _error(anyloss.mse_loss))],
        "Squared error against the error; the gradient is twice the error.",
    ),
    "smooth_l1_loss": Plot(
        ERROR,
        _grid(-3, 3),
        [(f"beta={b}", _error(anyloss.smooth_l1_loss, beta=b)) for b in (0.5, 1.0, 2.0)],
        "Smooth L1 loss for three values of ``beta``: quadratic (divided by ``beta``) "
        "inside ``|error| < beta``, linear with slope 1 outside.",
    ),
    "huber_loss": Plot(
        ERROR,
        _grid(-3, 3),
        [(f"delta={d}", _error(anyloss.huber_loss, delta=d)) for d in (0.5, 1.0, 2.0)],
        "Huber loss for three values of ``delta``: quadratic inside ``|error| <= delta``, "
        "linear with slope ``delta`` outside.",
    ),
    "log_cosh_loss": Plot(
        ERROR,
        _grid(-4, 4),
        [("log_cosh_loss", _error(anyloss.log_cosh_loss))],
        "Log-cosh loss: quadratic near 0, ``|error| - log 2`` far out; its gradient is "
        "``tanh(error)``.",
    ),
    "gaussian_nll_loss": Plot(
        ERROR,
        _grid(-3, 3),
        [
            (
                f"vars={v}",
                lambda e, v=v: anyloss.gaussian_nll_loss(
                    e, np.zeros_like(e), np.full_like(e, v), reduction="none"
                ),
            )
            for v in (0.25, 1.0, 4.0)
        ],
        "Gaussian negative log likelihood against the error of the mean, for three "
        "variances: a small variance is cheap when the error is small and expensive "
        "when it is not.",
    ),
    "kl_div_loss": Plot(
        "logit z of the prediction  q = softmax([z, 0])",
        _grid(-6, 6),
        [(f"target p = [{p}, {1 - p:.2g}]", _kl(p)) for p in (0.5, 0.8, 0.95)],
        "KL divergence between a two-class target ``p`` and the prediction "
        "``softmax([z, 0])``, as the prediction's logit ``z`` moves; zero where the "
        "prediction equals the target.",
    ),
    "cosine_similarity_loss": Plot(
        "angle between x1 and x2 (radians)",
        _grid(-np.pi, np.pi),
        [("cosine_similarity_loss", _cosine)],
        "The value is the cosine of the angle between the vectors (the similarity, as "
        "in MLX: 1 for equal directions), independent of their lengths.",
    ),
    "triplet_loss": Plot(
        "distance gap  d(a, n) - d(a, p)",
        _grid(-2, 3),
        [(f"margin={m}", _triplet(m)) for m in (0.5, 1.0, 2.0)],
        "Triplet loss in two dimensions with the positive at distance 2 from the anchor, "
        "as the negative moves: zero once the negative is farther than the positive by "
        "the margin.",
    ),
    "margin_ranking_loss": Plot(
        "score difference  x1 - x2",
        _grid(-3, 3),
        [
            ("y=+1, margin=0", _ranking(1.0, 0.0)),
            ("y=+1, margin=1", _ranking(1.0, 1.0)),
            ("y=-1, margin=1", _ranking(-1.0, 1.0)),
        ],
        "Margin ranking loss: zero once the item that should rank higher (``y=+1``: "
        "``x1``) leads by the margin.",
    ),
    # -- beyond MLX -----------------------------------------------------------
    "sigmoid_focal_loss": Plot(
        "logit  x  (target 1)",
        _grid(-6, 6),
        [
            (
                f"gamma={g}",
                lambda x, g=g: anyloss.sigmoid_focal_loss(x, np.ones_like(x), alpha=None, gamma=g),
            )
            for g in (0.0, 0.5, 2.0, 5.0)
        ],
        "Sigmoid focal loss of a positive example for four focusing parameters, without "
        "class balancing (``alpha=None``). ``gamma=0`` is the binary cross entropy; a "
        "larger ``gamma`` shrinks the loss of examples that are already right, while "
        "wrong ones keep nearly their cross entropy.",
    ),
    "softmax_focal_loss": Plot(
        "logit of the target class (3 classes, the other logits 0)",
        _grid(-6, 6),
        [(f"gamma={g}", _softmax_focal(g)) for g in (0.0, 2.0, 5.0)],
        "Softmax focal loss of three classes as the target class's logit moves, the other "
        "two held at 0. ``gamma=0`` is the cross entropy; the focal factor "
        "``(1 - p)^gamma`` flattens the loss once the target class is likely.",
    ),
    "dice_loss": Plot(
        "predicted probability on the target's pixels",
        _grid(0, 1),
        [(f"smooth={s}", _dice(s)) for s in (0.0, 1.0, 4.0)],
        "Soft Dice loss of a mask of 8 pixels whose target covers 4, as the prediction on "
        "those 4 grows from 0 to 1 (0 elsewhere), for three smoothings. The loss reaches "
        "0 at the perfect overlap; smoothing lowers the loss of a poor one and flattens "
        "the slope.",
    ),
    "squared_hinge_loss": Plot(
        "score  x",
        _grid(-3, 3),
        [
            (
                f"target {t:+d}",
                lambda x, t=t: anyloss.squared_hinge_loss(x, np.full_like(x, t)),
            )
            for t in (1, -1)
        ],
        "Squared hinge loss for targets +1 and -1: the square of the hinge, so zero with a "
        "margin of 1 and, unlike the hinge, smooth at the margin.",
    ),
    "multiclass_hinge_loss": Plot(
        "target logit minus the largest other logit",
        _grid(-3, 3),
        [(f"margin={m}", _multiclass_hinge(m)) for m in (0.5, 1.0, 2.0)],
        "Multi-class (Crammer-Singer) hinge loss of three classes against the margin by "
        "which the target class's logit leads the largest other one: zero once that lead "
        "exceeds the margin, slope -1 below it.",
    ),
    "cosine_embedding_loss": Plot(
        "angle between x1 and x2 (radians)",
        _grid(-np.pi, np.pi),
        [
            ("target +1", _cosine_embedding(1.0, 0.0)),
            ("target -1, margin=0", _cosine_embedding(-1.0, 0.0)),
            ("target -1, margin=0.5", _cosine_embedding(-1.0, 0.5)),
        ],
        "Cosine embedding loss against the angle between two vectors: ``1 - cos`` for a "
        "similar pair (target +1), ``max(0, cos - margin)`` for a dissimilar one (target "
        "-1), zero once the angle is wide enough.",
    ),
    "poisson_nll_loss": Plot(
        "log-rate  x  (log_input=True)",
        _grid(-3, 3),
        [
            (
                f"count {t}",
                lambda x, t=t: anyloss.poisson_nll_loss(x, np.full_like(x, t), reduction="none"),
            )
            for t in (0, 1, 4)
        ],
        "Poisson negative log likelihood ``exp(x) - t x`` against the log-rate, for three "
        "observed counts: the minimum lies at ``x = log t`` (none for ``t = 0``), and the "
        "gradient is ``exp(x) - t``.",
    ),
    "info_nce_loss": Plot(
        "cosine of the positive pair",
        _grid(-0.99, 0.99),
        [(f"temperature={t}", _info_nce(t)) for t in (0.1, 0.3, 1.0)],
        "InfoNCE loss of one query in two dimensions as the cosine with its own key moves, "
        "the two other keys of the batch (its negatives) fixed at about 120 degrees from "
        "it. A low temperature makes the loss drop sharply once the positive beats the "
        "negatives.",
    ),
    "nt_xent_loss": Plot(
        "cosine of the positive pair",
        _grid(-0.99, 0.99),
        [(f"temperature={t}", _nt_xent(t)) for t in (0.07, 0.2, 0.5)],
        "NT-Xent loss of one anchor of a batch of four 2-D embeddings (labels 0, 0, 1, 1) "
        "as the cosine with its positive moves, its two negatives fixed at about 120 "
        "degrees from it.",
    ),
    "linear_cross_entropy": Plot(
        "first component a of the hidden vector (a, 0.5)",
        _grid(-6, 6),
        [(f"softcap={c}", _linear(c)) for c in (None, 4.0, 2.0)],
        "Linear cross entropy of one token: four classes whose weight rows are (1, 0), "
        "(-1, 0), (0, 1) and (0, -1), target class 0, as the hidden vector (a, 0.5) "
        "moves, so that the logits are (a, -a, 0.5, -0.5). A softcap bounds the logits "
        "(c tanh(x / c)): the loss then levels off above 0 however far the target's "
        "logit leads, and its gradient fades.",
    ),
    "ctc_loss": Plot(
        "logit of the label at every step (the blank's logit 0)",
        _grid(-6, 6),
        [(f"T={t} steps", _ctc(t)) for t in (1, 2, 4)],
        "CTC loss of the one-label target ``[1]`` over ``T`` steps of two classes (blank "
        "0, label 1) as the label's logit moves. One step is the binary cross entropy. "
        "While the label is unlikely, more steps lower the loss (more places to emit it "
        "once); once it is likely, four steps cost more than two, since a blank between "
        "two label steps would spell the label twice.",
    ),
}


def gradient(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Central finite difference of the elementwise function ``f`` at ``x``."""
    return (np.asarray(f(x + STEP)) - np.asarray(f(x - STEP))) / (2 * STEP)


def draw(name: str, plot: Plot, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100, layout="constrained")
    x = plot.x.astype(np.float64)
    for label, f in plot.curves:
        value = np.asarray(f(x))
        assert value.dtype == np.float64 and value.shape == x.shape, (name, label)
        left.plot(x, value, label=label)
        right.plot(x, gradient(f, x), label=label)
    left.set_title(f"{name}", fontsize=10, family="monospace")
    right.set_title("gradient (central differences)", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel(plot.xlabel)
        ax.grid(True, alpha=0.3)
        ax.axhline(0, color="0.5", lw=0.6)
    if len(plot.curves) > 1:
        left.legend(fontsize=8)
    fig.savefig(path)
    plt.close(fig)


def fingerprint() -> str:
    """Changes when this script or anyloss's source does."""
    digest = hashlib.sha256(pathlib.Path(__file__).read_bytes())
    for source in sorted(pathlib.Path(anyloss.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def write_all(outdir: pathlib.Path) -> list[str]:
    """Write ``<loss>.png`` and ``<loss>.rst`` (a figure directive) per loss.

    Skipped when the stamp says nothing changed; returns the names drawn.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = outdir / ".stamp"
    key = fingerprint()
    fresh = stamp.exists() and stamp.read_text() == key
    drawn = []
    for name, plot in PLOTS.items():
        png, rst = outdir / f"{name}.png", outdir / f"{name}.rst"
        if not (fresh and png.exists()):
            with np.errstate(all="ignore"):
                draw(name, plot, png)
            drawn.append(name)
        rst.write_text(
            f".. figure:: /_generated/plots/{name}.png\n"
            f"   :alt: {name} and its gradient\n"
            f"   :width: 100%\n"
            f"   :class: loss-plot\n\n"
            f"   {plot.caption} Computed by ``anyloss.{name}`` on float64 NumPy arrays; "
            f"the gradient by central differences.\n"
        )
    stamp.write_text(key)
    return drawn


if __name__ == "__main__":
    print(write_all(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "plots")))

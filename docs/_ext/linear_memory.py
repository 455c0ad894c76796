"""The memory figure of the linear cross entropy page (``docs/linear.rst``).

Peak memory allocated during one call, measured with :mod:`tracemalloc` (it
sees NumPy's allocations exactly, so the numbers do not depend on the
machine's load) on NumPy float32 arrays: ``anyloss.linear_cross_entropy``
against the unfused ``anyloss.cross_entropy(hidden @ weight.T, ...)``, for a
range of vocabulary sizes. The inputs are allocated before tracing starts.

Run directly (``python docs/_ext/linear_memory.py OUTDIR``) or through the
Sphinx extension ``anyloss_docs``, which calls :func:`write` at build time.
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
import tracemalloc
from collections.abc import Callable

import numpy as np

import anyloss

TOKENS, HIDDEN = 1024, 64
VOCABULARIES = (2000, 4000, 8000, 16000, 32000, 64000)


def peak(call: Callable[[], object]) -> int:
    """Bytes allocated at the peak of ``call()`` beyond what existed before."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure() -> dict[str, list[float]]:
    """Peak MB per vocabulary size: the logits' own size, fused, unfused."""
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((TOKENS, HIDDEN), dtype=np.float32)
    out: dict[str, list[float]] = {"logits": [], "fused": [], "unfused": []}
    # warm up first (imports, kernel compilation and caches allocate once)
    small = rng.standard_normal((100, HIDDEN), dtype=np.float32)
    anyloss.linear_cross_entropy(hidden, small, np.zeros(TOKENS, dtype=np.int64))
    anyloss.cross_entropy(hidden @ small.T, np.zeros(TOKENS, dtype=np.int64), reduction="mean")
    for vocab in VOCABULARIES:
        weight = rng.standard_normal((vocab, HIDDEN), dtype=np.float32) * 0.1
        targets = rng.integers(0, vocab, TOKENS)
        fused = peak(lambda w=weight, t=targets: anyloss.linear_cross_entropy(hidden, w, t))
        unfused = peak(
            lambda w=weight, t=targets: anyloss.cross_entropy(hidden @ w.T, t, reduction="mean")
        )
        out["logits"].append(TOKENS * vocab * 4 / 1e6)
        out["fused"].append(fused / 1e6)
        out["unfused"].append(unfused / 1e6)
    return out


def draw(path: pathlib.Path) -> dict[str, list[float]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = measure()
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=100, layout="constrained")
    ax.plot(VOCABULARIES, data["logits"], "-", color="0.75", lw=6, label="the logits alone")
    ax.plot(VOCABULARIES, data["unfused"], "o-", label="hidden @ weight.T, then cross_entropy")
    ax.plot(VOCABULARIES, data["fused"], "o-", label="linear_cross_entropy")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(VOCABULARIES, [f"{v // 1000}k" for v in VOCABULARIES])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(f"vocabulary size ({TOKENS} tokens, hidden size {HIDDEN}, float32)")
    ax.set_ylabel("peak extra memory (MB)")
    ax.set_title("Peak memory of one forward call (NumPy, tracemalloc)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path)
    plt.close(fig)
    return data


def fingerprint() -> str:
    """Changes when this script or anyloss's source does."""
    digest = hashlib.sha256(pathlib.Path(__file__).read_bytes())
    for source in sorted(pathlib.Path(anyloss.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def write(outdir: pathlib.Path) -> bool:
    """Write ``linear_memory.png`` and ``linear_memory.rst`` (the figure and a
    table of its numbers) unless the stamp says nothing changed; True if drawn."""
    outdir.mkdir(parents=True, exist_ok=True)
    png, rst, stamp = (outdir / n for n in ("linear_memory.png", "linear_memory.rst", ".stamp"))
    key = fingerprint()
    if stamp.exists() and stamp.read_text() == key and png.exists() and rst.exists():
        return False
    data = draw(png)
    lines = [
        ".. figure:: /_generated/linear/linear_memory.png",
        "   :alt: Peak memory against vocabulary size, fused and unfused",
        "   :width: 100%",
        "",
        f"   Peak memory allocated during one call on NumPy float32 arrays, {TOKENS} "
        f"tokens of hidden size {HIDDEN}, measured with ``tracemalloc`` when this page "
        "was built.",
        "",
        ".. list-table:: The numbers of the figure (MB)",
        "   :header-rows: 1",
        "",
        "   * - vocabulary",
        "     - the logits",
        "     - unfused",
        "     - ``linear_cross_entropy``",
    ]
    for i, vocab in enumerate(VOCABULARIES):
        lines += [
            f"   * - {vocab}",
            f"     - {data['logits'][i]:.1f}",
            f"     - {data['unfused'][i]:.1f}",
            f"     - {data['fused'][i]:.1f}",
        ]
    rst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stamp.write_text(key)
    return True


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    write(target)
    print(target / "linear_memory.png")

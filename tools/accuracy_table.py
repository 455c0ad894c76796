"""Print the accuracy table of anyloss as Markdown.

For every (loss, regime) of ``tests/accuracy_cases.py``: the worst error, in
ulp of the float32 true value, of ``anyloss`` on each backend, of the naive
float32 NumPy transcription of the formula, and of MLX's own
``mlx.nn.losses`` where MLX is installed. The true values are mpmath
references computed from the same float32 inputs (see ``accuracy_cases``).
The losses and options MLX has come first; those beyond MLX (focal, Dice,
contrastive, margin, Poisson, CTC losses, ``cross_entropy``'s
``class_weights``/``ignore_index``) follow in a section of their own, with
"—" in the ``mlx.nn.losses`` column.

Usage::

    python tools/accuracy_table.py --backends numpy,torch,dask,jax,mlx \
        > docs/_generated/accuracy.md
    python tools/accuracy_table.py --backends numpy,torch,dask,jax,mlx
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import accuracy_cases as A  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from backends import make  # noqa: E402


def fmt(ulp: float | None, bound: float = 4.0) -> str:
    """``0.5``, ``6`` or ``1.6e+07`` ulp; bold where above ``bound``; ``inf`` for a
    NaN, an infinity or a wrong sign where the true value is finite."""
    if ulp is None:
        return "n/a"
    if math.isinf(ulp):
        text = "inf"
    elif ulp < 10:
        text = f"{ulp:.2g}" if ulp >= 0.01 or ulp == 0 else "<0.01"
    elif ulp < 1e4:
        text = f"{ulp:.0f}"
    else:
        text = f"{ulp:.1e}"
    return f"**{text}**" if ulp > bound else text


def quiet(fn, *args):
    """``fn(*args)`` with NumPy's floating-point warnings silenced (Dask emits
    them at compute time; the naive formulas overflow on purpose)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        default="numpy,jax,mlx",
        help="comma-separated anyloss backends (default: numpy,jax,mlx)",
    )
    parser.add_argument("--loss", default="", help="only the regimes of this loss")
    args = parser.parse_args(argv)

    backends = {}
    for name in args.backends.split(","):
        try:
            backends[name] = make(name)
        except pytest.skip.Exception:
            print(f"<!-- {name} is not installed: column left out -->")
    try:
        import mlx.nn.losses  # noqa: F401

        has_mlx = True
    except ImportError:
        has_mlx = False

    cases = [c for c in A.CASES if not args.loss or c.loss == args.loss]
    header = (
        ["loss", "regime"]
        + [f"anyloss {n}" for n in backends]
        + ["naive float32"]
        + (["mlx.nn.losses"] if has_mlx else [])
        + ["inputs"]
    )
    start = time.perf_counter()
    head = [
        "| " + " | ".join(header) + " |",
        "|"
        + "|".join("---" if i < 2 or h == "inputs" else "---:" for i, h in enumerate(header))
        + "|",
    ]
    sections: dict[bool, list[str]] = {True: [], False: []}
    for case in cases:
        row = [f"`{case.loss}`", case.regime]
        for be in backends.values():
            try:
                row.append(fmt(quiet(A.measure, case, be).ulp))
            except Exception as exc:
                row.append(f"error: {type(exc).__name__}")
        row.append(fmt(quiet(A.measure_naive, case).ulp))
        if has_mlx and not case.in_mlx:
            row.append("—")
        elif has_mlx:
            try:
                row.append(fmt(quiet(A.measure_output, case, quiet(A.run_mlx_native, case)).ulp))
            except Exception as exc:
                row.append(f"error: {type(exc).__name__}")
        row.append(case.note.replace("|", "\\|"))
        sections[case.in_mlx].append("| " + " | ".join(row) + " |")

    import anyloss

    versions = [f"anyloss {getattr(anyloss, '__version__', '?')}", f"numpy {np.__version__}"]
    for name, be in backends.items():
        if name != "numpy":
            top = be.module.__name__.partition(".")[0]
            try:
                from importlib.metadata import version

                versions.append(f"{name} {version(top)}")
            except Exception:
                versions.append(name)
    print("# Accuracy of anyloss\n")
    print(
        "Worst error over each regime, in ulp of the float32 true value "
        "(`|got - true| / ulp(fl32(true))`; 0.5 is correctly rounded). The true "
        "values are mpmath references (50+ digits) computed from the same float32 "
        "inputs; a reduction regime of ~1e5 elements (or of a batch-coupled loss) "
        "sums float64 per-example values (checked against mpmath) with `math.fsum`, "
        "a smaller one the mpmath values. Where the true value is not a "
        "normal float32, a "
        "correctly signed result below 2**-122 counts as 0; `inf` is a NaN, an "
        "overflow or a wrong sign. **Bold**: above 4 ulp.\n"
    )
    if sections[True]:
        print("\n".join(head + sections[True]))
    if sections[False]:
        print(
            "\n## Beyond MLX\n\n"
            "Losses and options `mlx.nn.losses` does not have (\u2014 in its column). "
            "`info_nce_loss` and `nt_xent_loss` couple the whole batch: each "
            "example's true value is computed from all of it. `'mean'` is the "
            "loss's own: PyTorch's weighted mean for `cross_entropy` with "
            "`class_weights`/`ignore_index`, per target length for `ctc_loss`, per "
            "positive pair for `nt_xent_loss`.\n"
        )
        print("\n".join(head + sections[False]))
    print(
        f"\n<!-- {', '.join(versions)}; {len(cases)} regimes in "
        f"{time.perf_counter() - start:.0f} s; tests/accuracy_cases.py -->"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``anyloss`` command: ``anyloss eval`` (losses over prediction files), ``anyloss list``.

Not imported by ``import anyloss``; pyarrow and tqdm are imported only by the
commands that use them (the ``cli`` extra: ``pip install "anyloss[cli]"``), dask
only by ``--scheduler`` (the ``dask`` extra: ``pip install "anyloss[dask]"``).
``python -m anyloss`` runs the same command.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ._errors import InputError, printable

__all__ = ["main"]

_EPILOG = """\
columns:
  --input, --target, --weights and --array NAME=COL each take a column name, a
  glob of columns stacked in natural order ('logit_*': logit_2 before logit_10),
  or a comma-separated list (a,b,c). A list or fixed-size-list column is one
  array of shape (rows, width). Rows are examples.
  --input is the loss's first array (inputs, logits, predictions, anchors, x1),
  --target its `targets`; other arrays (gaussian_nll_loss vars,
  margin_ranking_loss inputs2, triplet_loss positives and negatives,
  cosine_similarity_loss and cosine_embedding_loss x2) are given as
  --array NAME=COL. `anyloss list` shows each loss's arrays, parameters and
  defaults, and why info_nce_loss, nt_xent_loss and ctc_loss (not one loss per
  row) are not served.

dask:
  --scheduler tcp://HOST:8786 waits at most --timeout seconds (default 30) for
  the scheduler's handshake and for a worker; input paths are sent to the
  workers as absolute paths (they must see the same files). Many small shards
  are evaluated a group of files per task.

formats:
  .npy (columns are a structured array's fields, or "0", "1", ... of a 2-D
  array), .npz (arrays by name), .csv, .parquet, a directory or a glob of
  Parquet (or CSV) shards.

examples:
  anyloss eval preds.parquet --loss binary_cross_entropy --input logit --target clicked
  anyloss eval 'shards/*.parquet' --loss cross_entropy --input 'logit_*' --target label \\
      --param label_smoothing=0.1
  anyloss eval preds.npz --loss mse_loss --input yhat --target y --reduction none \\
      --out losses.parquet
  anyloss eval big/ --loss binary_cross_entropy --input p --target y \\
      --param with_logits=false --scheduler local

exit codes: 0 success; 1 a non-finite result (a NaN or inf mean or sum, or rows
whose finite inputs give a NaN/inf loss: the reason on stderr, `null` in --json);
2 bad input or usage (one line on stderr); 130 interrupted (Ctrl-C or SIGTERM; an
--out file is then not written).
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``anyloss: error: ...``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see `{self.prog} --help`)")


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"anyloss: error: {printable(message)}", file=sys.stderr)
    raise SystemExit(code)


def _version() -> str:
    from .. import __version__

    return f"anyloss {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="anyloss", description="MLX's losses over prediction files.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("list", help="every loss, its arrays, parameters and defaults, one a line")
    ev = sub.add_parser(
        "eval",
        help="a loss over the rows of a file (streamed; optionally on Dask)",
        description="Evaluate a loss over the rows of a file, a chunk at a time.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("path", help="a file, a directory or a glob of shards")
    ev.add_argument("--loss", required=True, help="a loss of anyloss.losses (see `anyloss list`)")
    ev.add_argument("--input", required=True, metavar="COL", help="the loss's first array")
    ev.add_argument("--target", metavar="COL", help="the loss's `targets`")
    ev.add_argument("--weights", metavar="COL", help="the loss's `weights` (where it has them)")
    ev.add_argument(
        "--array",
        action="append",
        default=[],
        metavar="NAME=COL",
        help="any array parameter by name (repeatable)",
    )
    ev.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter, typed from the signature (repeatable): "
        "label_smoothing=0.1, with_logits=false, axis=-1",
    )
    ev.add_argument(
        "--reduction",
        choices=("none", "mean", "sum"),
        help="default: the function's own default, as in Python",
    )
    ev.add_argument(
        "--out",
        metavar="FILE",
        help="with --reduction none: per-row losses to FILE (.parquet, .csv, .npy), "
        "written to a temporary file and renamed on success",
    )
    ev.add_argument("--force", action="store_true", help="replace an existing --out file")
    ev.add_argument(
        "--nan",
        choices=("error", "propagate", "skip"),
        default="error",
        help="rows with NaN/inf in an input: stop naming the first (default), "
        "keep them, or leave them out of the mean/sum (NaN loss in --out)",
    )
    ev.add_argument(
        "--format",
        choices=("npy", "npz", "csv", "parquet"),
        help="the input format (default: from the file extension)",
    )
    ev.add_argument(
        "--chunk-size",
        type=_positive,
        default=1 << 18,
        metavar="ROWS",
        help="rows read and evaluated at a time; bounds memory (default 262144)",
    )
    ev.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the Dask cluster at ADDRESS (tcp://host:8786), or `local` "
        "to start one on this machine",
    )
    ev.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="with --scheduler local: the number of worker processes",
    )
    ev.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="with --scheduler: how long to wait for the scheduler to answer and for "
        "a worker to join (default 30)",
    )
    ev.add_argument(
        "--json",
        action="store_true",
        help="print one JSON line (result and summary) instead of text; with "
        "--reduction none and no --out it holds every loss (small inputs only)",
    )
    ev.add_argument(
        "--quiet", "-q", action="store_true", help="no progress bar and no summary on stderr"
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _list() -> int:
    from ._spec import describe, loss_names

    for name in loss_names():
        print(describe(name))
    return 0


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anyloss`` executable; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # argparse's convention for a missing command
        parser.print_usage(sys.stderr)
        _fail("a command is required: eval or list (see `anyloss --help`)")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command == "list":
            return _list()
        from ._run import run_eval

        return run_eval(args)
    except InputError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        print("anyloss: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (`anyloss eval ... | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except ModuleNotFoundError as e:
        extra = "dask" if (e.name or "").partition(".")[0] in ("dask", "distributed") else "cli"
        _fail(f'{e.name} is needed by `anyloss {args.command}`: pip install "anyloss[{extra}]"')
    except MemoryError:
        _fail("out of memory; try a smaller --chunk-size", code=1)
    except Exception as e:
        if os.environ.get("ANYLOSS_DEBUG"):
            raise
        _fail(
            f"unexpected {type(e).__name__}: {e} (set ANYLOSS_DEBUG=1 for the traceback)", code=1
        )

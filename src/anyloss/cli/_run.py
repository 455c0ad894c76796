"""``anyloss eval``: plan, stream the chunks (here or on Dask), combine, report."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._columns import Selection, check_numeric, select
from ._compute import ChunkResult, Plan, Totals, evaluate, use_kernels
from ._errors import InputError, printable
from ._output import AtomicOutput, print_losses
from ._readers import Source, open_source
from ._spec import LossSpec, loss_spec, parse_params

__all__ = ["run_eval"]


def _selections(spec: LossSpec, args: argparse.Namespace, source: Source) -> dict[str, Selection]:
    given: dict[str, str] = {spec.required[0]: args.input}
    for option, param in ((args.target, "targets"), (args.weights, "weights")):
        if option is not None:
            if param not in spec.arrays:
                raise InputError(
                    f"{spec.name} has no {param}; its arrays are "
                    f"{', '.join(spec.arrays)} (see `anyloss list`)"
                )
            given[param] = option
    for item in args.array:
        name, sep, column = item.partition("=")
        if not sep or name not in spec.arrays:
            raise InputError(
                f"--array {item}: expected NAME=COLUMN with NAME one of {', '.join(spec.arrays)}"
            )
        given[name] = column
    missing = [a for a in spec.required if a not in given]
    if missing:
        raise InputError(f"{spec.name} needs {spec.option_for(missing[0])} (its {missing[0]})")
    out = {}
    for param in spec.arrays:  # signature order
        if param in given:
            sel = select(given[param], source.columns, source.label)
            check_numeric(sel, source.columns, source.label)
            out[param] = sel
    if source.lengths:  # .npz: every array its own length
        lengths = {n: source.lengths[n] for s in out.values() for n in s.names}
        if len(set(lengths.values())) > 1:
            (a, la), (b, lb) = sorted(lengths.items(), key=lambda kv: -kv[1])[:: len(lengths) - 1]
            raise InputError(
                f"arrays of different lengths: {a!r} has {la} rows, {b!r} has {lb}",
                where=source.label,
            )
    return out


def _local_results(source: Source, plan: Plan, chunk_rows: int) -> Iterator[ChunkResult]:
    for chunk in source.chunks(plan.columns, chunk_rows):
        try:
            yield evaluate(plan, chunk.rows, chunk.arrays)
        except InputError as e:
            e.row = None if e.row is None else chunk.row0 + e.row
            e.where = chunk.where
            yield ChunkResult(rows=0, error=e)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(args: argparse.Namespace, total: int | None) -> Any:
    if args.quiet or not sys.stderr.isatty():
        return _NoProgress()
    from tqdm import tqdm  # type: ignore[import-untyped]

    return tqdm(
        total=total,
        unit=" rows",
        unit_scale=True,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
        desc=args.loss,
    )


def run_eval(args: argparse.Namespace) -> int:
    spec = loss_spec(args.loss)
    params = parse_params(spec, args.param)
    reduction = args.reduction or spec.reduction
    if args.out and reduction != "none":
        raise InputError(
            f"--out is for per-row losses (--reduction none); the {reduction} is printed"
        )
    if args.scheduler is not None and not args.scheduler.strip():
        raise InputError(
            "--scheduler is empty: give the scheduler's address (tcp://HOST:8786) or "
            "`local`, or leave --scheduler out to run in this process"
        )
    if args.workers and args.scheduler != "local":
        raise InputError("--workers is for --scheduler local")
    source = open_source(args.path, args.format)
    selections = _selections(spec, args, source)
    kernels = use_kernels(spec.name, selections[spec.required[0]], source.columns, source.num_rows)
    plan = Plan(spec.name, selections, params, reduction, args.nan, kernels)
    collected: list[np.ndarray] = []
    start = time.perf_counter()
    bar = _progress(args, source.num_rows)
    results: Iterator[ChunkResult]
    if args.scheduler is not None:
        from ._distributed import dask_results

        results = dask_results(
            source, plan, args.chunk_size, args.scheduler, args.workers, args.timeout
        )
    else:
        results = _local_results(source, plan, args.chunk_size)
    totals = Totals()
    out = None
    try:
        out = AtomicOutput(args.out, args.force, source.files) if args.out else None
        for res in results:
            if res.error is not None:
                e = res.error
                if e.where in (None, ""):  # from a Dask partition: rows count from the start
                    e.where = source.label
                    e.row = None if e.row is None else totals.rows + e.row
                raise e
            try:
                totals.add(res, plan)
            except InputError as e:
                raise InputError(e.message, totals.rows, source.label) from None
            if res.losses is not None:
                if out is not None:
                    out.write(res.losses)
                elif args.json:
                    collected.append(res.losses)
                else:
                    print_losses(res.losses)
            bar.update(res.rows)
        if totals.rows == 0:
            raise InputError("no rows to evaluate", where=source.label)
        if out is not None:
            out.commit()
    except BaseException:
        if out is not None:
            out.abort()
        raise
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
        bar.close()
    seconds = time.perf_counter() - start
    value = None if plan.reduction == "none" else totals.value(plan.reduction)
    problem = _nonfinite_problem(args, plan, totals, value, source.label)
    _report(args, plan, totals, value, seconds, collected, problem)
    if problem:
        print(f"anyloss: error: {printable(problem)}", file=sys.stderr)
        return 1
    return 0


# Why a loss may be NaN or inf on finite inputs, by loss: the hint of the message.
_HINTS = {
    "binary_cross_entropy": "with --param with_logits=false the inputs must be probabilities "
    "in [0, 1]; logits need with_logits=true",
    "gaussian_nll_loss": "vars must be > 0 (or eps > 0)",
    "poisson_nll_loss": "with log_input=true the inputs are log-rates and their exp may "
    "overflow; with log_input=false they must be rates >= 0",
    "kl_div_loss": "the inputs are log-probabilities and the targets probabilities",
    "dice_loss": "inputs and targets summing to 0 with --param smooth=0 give 0/0",
}


def _nonfinite_problem(
    args: argparse.Namespace,
    plan: Plan,
    totals: Totals,
    value: np.generic | None,
    label: str,
) -> str:
    """Why the result is not a finite number (exit code 1), or '' when it is."""
    if totals.unexplained:
        n = totals.unexplained
        hint = _HINTS.get(
            plan.loss, f"values too large for {totals.dtype}, or outside the domain of {plan.loss}"
        )
        what = f"the {plan.reduction} is {value}: " if value is not None else ""
        dest = f" (written to {args.out} as they are)" if args.out else ""
        return (
            f"{what}{n:,} row{'s' if n > 1 else ''} with finite inputs gave a NaN or inf "
            f"loss{dest}, the first at row {totals.first_unexplained} of {label} "
            f"(rows counted from 0); check the columns and parameters: {hint}"
        )
    if value is None or math.isfinite(float(value)):
        return ""
    if totals.bad_losses:
        return (
            f"the {plan.reduction} is {value}: {totals.bad_losses:,} rows with NaN/inf inputs "
            "gave NaN/inf losses (kept by --nan propagate); --nan skip leaves them out"
        )
    return (
        f"the {plan.reduction} is {value}: every loss is finite, but their {plan.reduction} "
        f"overflows {totals.dtype}"
    )


def _report(
    args: argparse.Namespace,
    plan: Plan,
    totals: Totals,
    value: np.generic | None,
    seconds: float,
    collected: list[np.ndarray],
    problem: str,
) -> None:
    rate = totals.rows / seconds if seconds > 0 else math.inf
    if args.json:
        result: Any = None if value is None else _jsonable(float(value))
        if value is None and collected:
            losses = np.concatenate(collected)
            result = losses.tolist()
            if losses.dtype.kind == "f" and not np.isfinite(losses).all():  # JSON has no NaN
                result = [_jsonable(x) for x in losses.ravel().tolist()]
                if losses.ndim > 1:
                    result = np.array(result, dtype=object).reshape(losses.shape).tolist()
        print(
            json.dumps(
                {
                    "loss": plan.loss,
                    "reduction": plan.reduction,
                    "result": result,
                    "dtype": totals.dtype,
                    "rows": totals.rows,
                    "elements": totals.elements,
                    "nonfinite_rows": totals.nonfinite,
                    "nonfinite_losses": totals.bad_losses,
                    "error": problem or None,
                    "nan": plan.nan,
                    "out": args.out,
                    "seconds": round(seconds, 6),
                    "rows_per_s": round(rate, 1),
                    "scheduler": args.scheduler,
                }
            )
        )
        return
    if value is not None:
        print(value)
    if args.quiet:
        return
    what = f"{plan.loss} ({plan.reduction})"
    if totals.nonfinite:
        how = {"skip": "skipped", "propagate": "kept"}[plan.nan]
        nonfinite = f", {totals.nonfinite:,} with NaN/inf inputs ({how})"
    else:
        nonfinite = ", 0 with NaN/inf inputs"
    nonfinite += f", {totals.bad_losses:,} NaN/inf losses"
    dest = f" -> {args.out}" if args.out else ""
    print(
        printable(
            f"anyloss: {what}: {totals.rows:,} rows{nonfinite}, {seconds:.2f} s "
            f"({rate:,.0f} rows/s){dest}"
        ),
        file=sys.stderr,
    )


def _jsonable(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN: null, and exit code 1

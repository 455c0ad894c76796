"""``--scheduler``: the same evaluation on a Dask cluster.

Parquet and CSV are read by ``dask.dataframe`` (a partition per row group or
CSV block); .npy/.npz by row ranges, each read on a worker. Each partition is
evaluated on its worker, chunk by chunk, exactly as on one machine; the client
gathers the chunk results in row order (a bounded window ahead), so the mean
and sum are combined the same way and equal the local path's.
"""

from __future__ import annotations

import logging
import warnings
from collections import deque
from collections.abc import Iterator
from typing import Any

from ._compute import ChunkResult, Plan, evaluate
from ._errors import InputError
from ._readers import Source, table_arrays

__all__ = ["dask_results"]


def _quiet() -> None:
    """Dask's own deprecation warnings are not the user's business (our own cluster only)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _evaluate_all(
    plan: Plan, chunks: Iterator[tuple[int, int, dict[str, Any]]]
) -> list[ChunkResult]:
    """Results of a partition's chunks; an error ends the list, its row inside that chunk."""
    out = []
    try:
        for rows, _row0, arrays in chunks:
            out.append(evaluate(plan, rows, arrays))
    except InputError as e:
        out.append(ChunkResult(rows=0, error=e))
    return out


def _table_chunks(
    frame: Any, plan: Plan, chunk_rows: int
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    import pyarrow as pa  # type: ignore[import-untyped]

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for start in range(0, len(table), chunk_rows):
        chunk = table_arrays(table.slice(start, chunk_rows), plan.columns, "", 0)
        yield chunk.rows, start, chunk.arrays


def _frame_task(frame: Any, plan: Plan, chunk_rows: int) -> list[ChunkResult]:
    return _evaluate_all(plan, _table_chunks(frame, plan, chunk_rows))


def _range_task(
    source: Source, plan: Plan, start: int, stop: int, chunk_rows: int
) -> list[ChunkResult]:
    chunks = (
        (c.rows, c.row0, c.arrays) for c in source.chunks(plan.columns, chunk_rows, start, stop)
    )
    return _evaluate_all(plan, chunks)


def _tasks(source: Source, plan: Plan, chunk_rows: int) -> list[Any]:
    from dask.delayed import delayed

    if source.format in ("npy", "npz"):
        rows = source.num_rows or 0
        step = chunk_rows * 16
        return [
            delayed(_range_task)(source, plan, s, min(s + step, rows), chunk_rows)
            for s in range(0, rows, step)
        ]
    import dask.dataframe as dd

    with warnings.catch_warnings():
        _quiet()
        if source.format == "parquet":
            frame = dd.read_parquet(
                source.files, columns=plan.columns, dtype_backend="pyarrow", split_row_groups=True
            )
        else:
            frame = dd.read_csv(
                source.files,
                usecols=plan.columns,
                dtype_backend="pyarrow",
                engine="pyarrow",
                blocksize="64MiB",
            )
        parts = frame.to_delayed()
    return [delayed(_frame_task)(p, plan, chunk_rows) for p in parts]


def _client(address: str, workers: int | None) -> Any:
    from distributed import Client, LocalCluster

    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if address == "local":
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return Client(cluster)  # type: ignore[no-untyped-call]
    try:
        return Client(address, timeout=10)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as e:
        raise InputError(f"cannot reach the Dask scheduler ({e})", where=address) from None


def dask_results(
    source: Source, plan: Plan, chunk_rows: int, address: str, workers: int | None
) -> Iterator[ChunkResult]:
    """Chunk results in row order, computed on the cluster at ``address``."""
    client = _client(address, workers)
    pending: deque[Any] = deque()
    try:
        if address == "local":  # leave the warning filters of someone else's cluster alone
            client.run(_quiet)
        with warnings.catch_warnings():
            _quiet()
            tasks = _tasks(source, plan, chunk_rows)
        window = 2 * max(1, sum(client.nthreads().values()))
        for task in tasks:
            pending.append(client.compute(task))
            if len(pending) >= window:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        cluster = client.cluster
        client.close()
        if cluster is not None and address == "local":
            cluster.close()

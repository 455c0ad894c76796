"""``--scheduler``: the same evaluation on a Dask cluster.

Parquet and CSV are read by ``dask.dataframe`` (a partition per row group or
CSV block); .npy/.npz by row ranges, each read on a worker. Each partition is
evaluated on its worker, chunk by chunk, exactly as on one machine; the client
gathers the chunk results in row order (a bounded window ahead), so the mean
and sum are combined the same way and equal the local path's.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
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
    except OSError as e:  # the worker cannot read a file the client could
        where = getattr(e, "filename", None) or ""
        error = InputError(
            f"a Dask worker cannot read it ({e.strerror or e}); every worker must see "
            "the input at the same absolute path (a shared file system)",
            where=str(where) or None,
        )
        out.append(ChunkResult(rows=0, error=error))
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


def _files_task(source: Source, plan: Plan, chunk_rows: int) -> list[ChunkResult]:
    """A group of whole shards, read as on one machine (errors name the file and row)."""
    results: list[ChunkResult] = []
    for chunk in source.chunks(plan.columns, chunk_rows):
        res = _evaluate_all(plan, iter([(chunk.rows, chunk.row0, chunk.arrays)]))[0]
        if res.error is not None:
            e = res.error
            if e.where is None:
                e.row = None if e.row is None else chunk.row0 + e.row
                e.where = chunk.where
            return [*results, res]
        results.append(res)
    return results


def _groups(files: list[str], threads: int) -> list[list[str]]:
    """Consecutive shards in groups of about equal bytes, some per thread.

    A task per small shard costs more in scheduling than its evaluation: a
    thousand 10 kB shards took 87 s as a thousand tasks.
    """
    sizes = [max(os.path.getsize(f), 1) for f in files]
    target = max(sum(sizes) / (4 * threads), _GROUP_BYTES)
    groups: list[list[str]] = [[]]
    held = 0.0
    for f, size in zip(files, sizes, strict=True):
        if groups[-1] and held + size > target:
            groups.append([])
            held = 0.0
        groups[-1].append(f)
        held += size
    return groups


_GROUP_BYTES = 1 << 24  # a group of small shards holds at least about 16 MiB


def _tasks(source: Source, plan: Plan, chunk_rows: int, threads: int) -> list[Any]:
    from dask.delayed import delayed

    if source.format in ("npy", "npz"):
        rows = source.num_rows or 0
        step = chunk_rows * 16
        return [
            delayed(_range_task)(source, plan, s, min(s + step, rows), chunk_rows)
            for s in range(0, rows, step)
        ]
    if len(source.files) >= 2 * threads:  # many shards: whole files a task
        return [
            delayed(_files_task)(replace(source, files=group), plan, chunk_rows)
            for group in _groups(source.files, threads)
        ]
    import dask.dataframe as dd  # few files: a task per row group or CSV block

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


_ADDRESS_HELP = "expected tcp://HOST:PORT (a Dask scheduler, usually port 8786) or `local`"


def _probe(address: str, timeout: float) -> None:
    """Check that a Dask scheduler answers at ``address`` within ``timeout`` seconds.

    distributed waits without a bound for the handshake once a TCP connection
    is accepted (a dashboard or any other server), and reads any bytes as the
    length of a message (MemoryError for an SSH banner). A scheduler sends its
    handshake first: an 8-byte length of a small message.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        protocol, location = parse_address(address)
        if protocol not in ("tcp", "tls"):
            return  # inproc, ucx, ws: no raw TCP probe; the Client's own timeout holds
        host, port = parse_host_port(location, 8786)
    except ValueError as e:
        raise InputError(
            f"not a scheduler address ({e}); {_ADDRESS_HELP}", where=address
        ) from None
    if not host or not 0 < port < 65536:
        raise InputError(f"not a scheduler address; {_ADDRESS_HELP}", where=address)
    if protocol == "tls":
        return
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise InputError(
            f"no answer within {timeout:g} s (--timeout); is the scheduler running?",
            where=address,
        ) from None
    except OSError as e:
        raise InputError(
            f"cannot reach the Dask scheduler ({e.strerror or e})", where=address
        ) from None
    header = b""
    with sock:
        try:
            while len(header) < 8:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                part = sock.recv(8 - len(header))
                if not part:
                    break
                header += part
        except TimeoutError:
            raise InputError(
                f"the port accepted the connection but sent no Dask handshake within "
                f"{timeout:g} s (--timeout): not a Dask scheduler? (a scheduler usually "
                "listens on 8786, its dashboard on 8787)",
                where=address,
            ) from None
        except OSError as e:
            raise InputError(
                f"the connection failed ({e.strerror or e}) before a Dask handshake",
                where=address,
            ) from None
    if len(header) < 8:
        raise InputError(
            "the port closed the connection without a Dask handshake: not a Dask scheduler?",
            where=address,
        )
    (size,) = struct.unpack("Q", header)
    if not 0 < size < 1 << 20:
        raise InputError(
            f"the port answered {header!r}, not Dask's protocol: not a Dask scheduler "
            "(a scheduler usually listens on 8786)",
            where=address,
        )


def _connect(address: str, timeout: float) -> Any:
    """``Client(address)`` bounded by ``timeout`` even where distributed waits forever."""
    from distributed import Client

    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["client"] = Client(address, timeout=timeout)  # type: ignore[no-untyped-call]
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=connect, name="anyloss-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if thread.is_alive():
        raise InputError(
            f"no Dask handshake within {timeout:g} s (--timeout): not a Dask scheduler?",
            where=address,
        )
    e = box.get("error")
    if isinstance(e, (OSError, TimeoutError)):
        raise InputError(f"cannot reach the Dask scheduler ({e})", where=address) from None
    if isinstance(e, ValueError):
        raise InputError(f"not a scheduler address ({e}); {_ADDRESS_HELP}", where=address)
    if isinstance(e, MemoryError):
        raise InputError("the port does not speak Dask's protocol", where=address) from None
    if e is not None:
        raise e
    return box["client"]


def _client(address: str, workers: int | None, timeout: float) -> Any:
    from distributed import LocalCluster

    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if address == "local":
        from distributed import Client

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Port 8787 is already in use" and the like
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            return Client(cluster)  # type: ignore[no-untyped-call]
    _probe(address, timeout)
    client = _connect(address, timeout)
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise InputError(
            f"the Dask scheduler has no workers (waited {timeout:g} s, --timeout); "
            f"start one with `dask worker {address}`",
            where=address,
        ) from None
    return client


def _named(results: list[ChunkResult], given: dict[str, str]) -> list[ChunkResult]:
    for res in results:
        if res.error is not None and res.error.where in given:
            res.error.where = given[res.error.where]
    return results


def dask_results(
    source: Source,
    plan: Plan,
    chunk_rows: int,
    address: str,
    workers: int | None,
    timeout: float,
) -> Iterator[ChunkResult]:
    """Chunk results in row order, computed on the cluster at ``address``."""
    # Workers run elsewhere (another directory, another machine): absolute paths,
    # named in messages as the user gave them.
    given = {os.path.abspath(f): f for f in source.files}
    source = replace(source, files=list(given))
    client = _client(address, workers, timeout)
    pending: deque[Any] = deque()
    try:
        if address == "local":  # leave the warning filters of someone else's cluster alone
            client.run(_quiet)
        threads = max(1, sum(client.nthreads().values()))
        with warnings.catch_warnings():
            _quiet()
            tasks = _tasks(source, plan, chunk_rows, threads)
        window = 2 * threads
        for task in tasks:
            pending.append(client.compute(task))
            if len(pending) >= window:
                yield from _named(pending.popleft().result(), given)
        while pending:
            yield from _named(pending.popleft().result(), given)
    finally:
        for f in pending:
            f.cancel()
        cluster = client.cluster
        client.close()
        if cluster is not None and address == "local":
            cluster.close()

"""``--scheduler``: the same evaluation on a Dask cluster.

Every task reads its part of the input on a worker with the local readers (the
same column types, Parquet page checksums and CSV parsing as without
``--scheduler``): many shards in groups of whole files; a few files split by
runs of row groups (Parquet) or byte ranges (uncompressed CSV); .npy/.npz by row
ranges. Each part is evaluated on its worker, chunk by chunk, exactly as on one
machine; the client gathers the chunk results in row order (a bounded window
ahead), so the mean and sum are combined the same way as on the local path.
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
from dataclasses import dataclass, replace
from typing import Any

from ._compute import ChunkResult, Plan, evaluate
from ._errors import InputError
from ._readers import Chunk, Source, _arrow_chunks, _parquet_file

__all__ = ["dask_results"]


def _quiet() -> None:
    """Dask's own deprecation warnings are not the user's business (our own cluster only)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _chunk_results(plan: Plan, chunks: Iterator[Chunk]) -> list[ChunkResult]:
    """Results of chunks read on a worker; an error ends the list, named with file and row."""
    out = []
    try:
        for chunk in chunks:
            try:
                out.append(evaluate(plan, chunk.rows, chunk.arrays))
            except InputError as e:
                e.row = None if e.row is None else chunk.row0 + e.row
                e.where = chunk.where
                raise
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


def _range_task(
    source: Source, plan: Plan, start: int, stop: int, chunk_rows: int
) -> list[ChunkResult]:
    """Rows ``[start, stop)`` of a .npy/.npz file."""
    return _chunk_results(plan, source.chunks(plan.columns, chunk_rows, start, stop))


def _files_task(source: Source, plan: Plan, chunk_rows: int) -> list[ChunkResult]:
    """A group of whole shards, read as on one machine (errors name the file and row)."""
    return _chunk_results(plan, source.chunks(plan.columns, chunk_rows))


def _part_task(
    source: Source, plan: Plan, path: str, part: tuple[int, int] | None, row0: int, chunk_rows: int
) -> list[ChunkResult]:
    """Row groups ``part`` of a Parquet file, or the CSV lines that start in bytes ``part``.

    Read by the local reader: the same types (``source.casts``, CSV columns
    parsed per chunk), the same page checksums, the same messages.
    """
    return _chunk_results(plan, _arrow_chunks(source, path, plan.columns, chunk_rows, part, row0))


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
_TASK_CHUNKS = 16  # a task reads at most about this many chunks (when the input is large)
_CSV_ROW_BYTES = 64  # about a CSV row, as the readers' block size assumes
_CSV_RANGE_BYTES = 1 << 26  # a CSV byte range holds at most 64 MiB


def _task_size(total: int, chunk: int, threads: int) -> int:
    """Rows (or bytes) a task reads: a few tasks per thread, each a chunk up to 16 chunks."""
    return max(chunk, min(chunk * _TASK_CHUNKS, total // (4 * threads)))


@dataclass
class _Task:
    work: Any  # a dask.delayed call returning a list of ChunkResult
    # A CSV byte range: its rows count from the range's start; the client adds the
    # rows of the file's earlier ranges to the row an error names.
    counts_in: str | None = None


def _tasks(source: Source, plan: Plan, chunk_rows: int, threads: int) -> list[_Task]:
    """The work, in row order: a few files are split so that each spreads over the workers.

    Parquet by runs of row groups, uncompressed CSV by byte ranges (a line to the
    range holding its first byte), each part read on a worker by the local reader.
    """
    from dask.delayed import delayed

    if source.format in ("npy", "npz"):
        rows = source.num_rows or 0
        step = chunk_rows * _TASK_CHUNKS
        return [
            _Task(delayed(_range_task)(source, plan, s, min(s + step, rows), chunk_rows))
            for s in range(0, rows, step)
        ]
    if len(source.files) >= 2 * threads:  # many shards: whole files a task
        return [
            _Task(delayed(_files_task)(replace(source, files=group), plan, chunk_rows))
            for group in _groups(source.files, threads)
        ]
    tasks: list[_Task] = []
    if source.format == "parquet":
        target = _task_size(source.num_rows or 0, chunk_rows, threads)
        for path in source.files:
            meta = _parquet_file(path).metadata
            first = row0 = held = 0
            for g in range(meta.num_row_groups):
                held += meta.row_group(g).num_rows
                if held >= target or g == meta.num_row_groups - 1:
                    work = delayed(_part_task)(
                        source, plan, path, (first, g + 1), row0, chunk_rows
                    )
                    tasks.append(_Task(work))
                    first, row0, held = g + 1, row0 + held, 0
        return tasks
    sizes = [os.path.getsize(f) for f in source.files]
    chunk = chunk_rows * _CSV_ROW_BYTES
    step = min(_task_size(sum(sizes), chunk, threads), _CSV_RANGE_BYTES)
    for path, size in zip(source.files, sizes, strict=True):
        if os.path.splitext(path.lower())[1] in (".gz", ".bz2", ".zst"):  # read from its start
            tasks.append(_Task(delayed(_part_task)(source, plan, path, None, 0, chunk_rows)))
            continue
        for s in range(0, max(size, 1), step):
            part = (s, min(s + step, size))
            work = delayed(_part_task)(source, plan, path, part, 0, chunk_rows)
            tasks.append(_Task(work, counts_in=path))
    return tasks


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


def _named(
    results: list[ChunkResult], task: _Task, given: dict[str, str], done: dict[str, int]
) -> list[ChunkResult]:
    """Errors named with the file as the user gave it, and the row counted in that file.

    ``done``: the rows of each CSV file read by its earlier byte ranges.
    """
    path = task.counts_in
    before = 0 if path is None else done.get(path, 0)
    for res in results:
        e = res.error
        if e is not None:
            if path is not None and e.where == path and e.row is not None:
                e.row += before
            if e.where in given:
                e.where = given[e.where]
        elif path is not None:
            done[path] = done.get(path, 0) + res.rows
    return results


#: What ``--scheduler`` needs beyond the ``cli`` extra, and how to get it.
DASK_EXTRA = 'pip install "anyloss[dask]"'


def require_dask() -> None:
    """Check that ``--scheduler`` can run, without importing Dask.

    Raises:
        InputError: dask or distributed is not installed; the message names the
            ``dask`` extra.
    """
    import importlib.util

    for name in ("dask", "distributed"):
        if importlib.util.find_spec(name) is None:
            raise InputError(f"--scheduler needs {name}, which is not installed: {DASK_EXTRA}")


def dask_results(
    source: Source,
    plan: Plan,
    chunk_rows: int,
    address: str,
    workers: int | None,
    timeout: float,
) -> Iterator[ChunkResult]:
    """Chunk results in row order, computed on the cluster at ``address``.

    Raises:
        InputError: Dask or distributed is not installed (at the first result,
            inside the caller's clean-up of ``--out`` and the progress bar).
    """
    require_dask()
    # Workers run elsewhere (another directory, another machine): absolute paths,
    # named in messages as the user gave them.
    given = {os.path.abspath(f): f for f in source.files}
    source = replace(source, files=list(given))
    client = _client(address, workers, timeout)
    pending: deque[tuple[Any, _Task]] = deque()
    try:
        if address == "local":  # leave the warning filters of someone else's cluster alone
            client.run(_quiet)
        threads = max(1, sum(client.nthreads().values()))
        with warnings.catch_warnings():
            _quiet()
            tasks = _tasks(source, plan, chunk_rows, threads)
        window = 2 * threads
        done: dict[str, int] = {}
        for task in tasks:
            pending.append((client.compute(task.work), task))
            if len(pending) >= window:
                future, oldest = pending.popleft()
                yield from _named(future.result(), oldest, given, done)
        while pending:
            future, oldest = pending.popleft()
            yield from _named(future.result(), oldest, given, done)
    finally:
        for future, _ in pending:
            future.cancel()
        cluster = client.cluster
        client.close()
        if cluster is not None and address == "local":
            cluster.close()

"""Input files, read a chunk of rows at a time: .npy, .npz, .csv, Parquet (file, directory, glob).

Every source knows its column names and types before reading any data (so a
missing or non-numeric column fails at once) and yields :class:`Chunk` objects
of at most ``chunk_rows`` rows; memory is bounded by the chunk, whatever the
file's size.
"""

from __future__ import annotations

import glob as globmod
import math
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from ._columns import arrow_to_numpy, arrow_type_name, natural_key, numpy_type_name
from ._errors import InputError

__all__ = ["FORMATS", "Chunk", "Source", "open_source"]

FORMATS = ("npy", "npz", "csv", "parquet")
_PARQUET_EXT = (".parquet", ".parq", ".pq")


@dataclass
class Chunk:
    where: str  # the file the rows come from
    row0: int  # the first row's number inside that file
    rows: int
    arrays: dict[str, np.ndarray]


@dataclass
class Source:
    """A readable input: ``format``, its ``files``, column types and (when known) row count."""

    label: str
    format: str
    files: list[str]
    columns: dict[str, str] = field(default_factory=dict)
    num_rows: int | None = None
    lengths: dict[str, int] = field(default_factory=dict)  # .npz: rows of each array

    def chunks(
        self, names: list[str], chunk_rows: int, start: int = 0, stop: int | None = None
    ) -> Iterator[Chunk]:
        """Chunks of the columns ``names``; ``start``/``stop`` (rows) for .npy/.npz only."""
        if self.format in ("npy", "npz"):
            yield from _npy_chunks(self, names, chunk_rows, start, stop)
        else:
            for path in self.files:
                yield from _arrow_chunks(self.format, path, names, chunk_rows)


def open_source(path: str, fmt: str | None = None) -> Source:
    files = _expand(path)
    kinds = {fmt or _format_of(f) for f in files}
    if len(kinds) > 1:
        raise InputError(
            f"mixed file formats ({', '.join(sorted(kinds))}); give one kind", where=path
        )
    kind = kinds.pop()
    if kind not in ("parquet", "csv") and len(files) > 1:
        raise InputError(
            f"several .{kind} files matched; only Parquet and CSV can be sharded", where=path
        )
    try:
        if kind == "parquet":
            return _parquet_source(path, files)
        if kind == "csv":
            return _csv_source(path, files)
        return _npy_source(path, files[0], kind)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", where=files[0]) from None


def _expand(path: str) -> list[str]:
    if os.path.isdir(path):
        found = [
            os.path.join(root, f)
            for root, _, fs in os.walk(path)
            for f in fs
            if f.endswith((*_PARQUET_EXT, ".csv"))
        ]
        if not found:
            raise InputError("directory holds no .parquet or .csv files", where=path)
        return sorted(found, key=natural_key)
    if os.path.exists(path):
        return [path]
    if any(c in path for c in "*?["):
        found = [f for f in globmod.glob(path, recursive=True) if os.path.isfile(f)]
        if not found:
            raise InputError("no file matches this pattern", where=path)
        return sorted(found, key=natural_key)
    raise InputError("no such file or directory", where=path)


def _format_of(path: str) -> str:
    name = path.lower()
    for ext in (".csv.gz", ".csv.bz2", ".csv.zst"):
        if name.endswith(ext):
            return "csv"
    ext = os.path.splitext(name)[1]
    if ext in _PARQUET_EXT:
        return "parquet"
    if ext in (".npy", ".npz", ".csv"):
        return ext[1:]
    raise InputError(
        f"unknown file type {ext or '(no extension)'!r}; use --format ({', '.join(FORMATS)})",
        where=path,
    )


# -- Arrow: Parquet and CSV ---------------------------------------------------------------


def _parquet_source(label: str, files: list[str]) -> Source:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    rows, columns = 0, dict[str, str]()
    for f in files:
        try:
            meta = pq.ParquetFile(f)
        except Exception as e:  # pyarrow raises ArrowInvalid for a file that is not Parquet
            raise InputError(f"not a readable Parquet file ({e})", where=f) from None
        rows += meta.metadata.num_rows
        if not columns:
            columns = {fld.name: arrow_type_name(fld.type) for fld in meta.schema_arrow}
    return Source(label, "parquet", files, columns, rows)


def _csv_source(label: str, files: list[str]) -> Source:
    import pyarrow as pa
    import pyarrow.csv as pcsv  # type: ignore[import-untyped]

    try:
        with pcsv.open_csv(files[0]) as reader:
            schema = reader.schema
    except pa.ArrowInvalid as e:
        raise InputError(f"not a readable CSV file ({e})", where=files[0]) from None
    columns = {fld.name: arrow_type_name(fld.type) for fld in schema}
    return Source(label, "csv", files, columns, None)


def _arrow_batches(fmt: str, path: str, names: list[str], chunk_rows: int) -> Iterator[Any]:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
        missing = [n for n in names if n not in pf.schema_arrow.names]
        if missing:
            raise InputError(f"no column {missing[0]!r} in this shard", where=path)
        yield from pf.iter_batches(batch_size=chunk_rows, columns=names)
    else:
        # About 64 bytes a row: blocks of roughly a chunk, never above 64 MiB.
        block = min(max(chunk_rows * 64, 1 << 16), 1 << 26)
        with pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=block),
            convert_options=pcsv.ConvertOptions(include_columns=names),
        ) as reader:
            yield from reader


def _arrow_chunks(fmt: str, path: str, names: list[str], chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow as pa

    pending: list[Any] = []
    buffered = row0 = 0
    batches = _arrow_batches(fmt, path, names, chunk_rows)
    while True:
        try:
            batch = next(batches, None)
        except pa.ArrowException as e:
            raise InputError(f"cannot read ({e})", row=None, where=path) from None
        if batch is not None and len(batch):
            pending.append(batch)
            buffered += len(batch)
        while buffered >= chunk_rows or (batch is None and buffered):
            table = pa.Table.from_batches(pending)
            take = min(chunk_rows, buffered)
            yield _to_chunk(path, row0, table.slice(0, take), names)
            rest = table.slice(take)
            pending = rest.to_batches() if len(rest) else []
            buffered -= take
            row0 += take
        if batch is None:
            return


def _to_chunk(path: str, row0: int, table: Any, names: list[str]) -> Chunk:
    arrays = {}
    for n in names:
        try:
            arrays[n] = arrow_to_numpy(table.column(n), n)
        except InputError as e:
            raise InputError(e.message, None if e.row is None else row0 + e.row, path) from None
    return Chunk(path, row0, len(table), arrays)


def table_arrays(table: Any, names: list[str], where: str, row0: int) -> Chunk:
    """An in-memory Arrow table (a Dask partition) as a chunk."""
    return _to_chunk(where, row0, table, names)


# -- NumPy: .npy and .npz -----------------------------------------------------------------


@dataclass
class _Npy:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    offset: int  # where the data starts in the stream


def _npy_header(f: IO[bytes], where: str) -> _Npy:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except ValueError as e:
        raise InputError(f"not a readable .npy array ({e})", where=where) from None
    if dtype.hasobject:
        raise InputError("holds Python objects; only numeric arrays can be read", where=where)
    if fortran and len(shape) > 1:
        raise InputError(
            "Fortran-ordered array cannot be read by rows; save it C-ordered "
            "(np.ascontiguousarray)",
            where=where,
        )
    return _Npy(tuple(shape), dtype, f.tell())


def _npy_columns(h: _Npy) -> dict[str, str]:
    if not h.shape:
        return {}
    if h.dtype.names:
        return {n: numpy_type_name(h.dtype[n].base, h.dtype[n].shape) for n in h.dtype.names}
    if len(h.shape) == 1:
        return {"0": numpy_type_name(h.dtype)}
    return {str(i): numpy_type_name(h.dtype, h.shape[2:]) for i in range(h.shape[1])}


def _npy_source(label: str, path: str, kind: str) -> Source:
    if kind == "npy":
        with open(path, "rb") as f:
            h = _npy_header(f, path)
        if not h.shape:
            raise InputError("holds a 0-d array; rows are needed", where=path)
        return Source(label, "npy", [path], _npy_columns(h), h.shape[0])
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError("not a readable .npz archive", where=path) from None
    columns, rows = {}, {}
    with zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            with zf.open(info) as f:
                h = _npy_header(f, f"{path}:{name}")
            if h.dtype.names or not h.shape:
                columns[name] = "record" if h.dtype.names else "0-d " + numpy_type_name(h.dtype)
            else:
                columns[name] = numpy_type_name(h.dtype, h.shape[1:])
                rows[name] = h.shape[0]
    return Source(label, "npz", [path], columns, max(rows.values(), default=0), rows)


def _npy_chunks(
    source: Source, names: list[str], chunk_rows: int, start: int, stop: int | None
) -> Iterator[Chunk]:
    path = source.files[0]
    streams: dict[str, IO[bytes]]
    if source.format == "npy":
        streams = {"": open(path, "rb")}  # noqa: SIM115 (closed below)
        zf = None
    else:
        zf = zipfile.ZipFile(path)
        streams = {n: zf.open(n + ".npy") for n in names}
    try:
        heads = {k: _npy_header(f, path) for k, f in streams.items()}
        total = min(h.shape[0] for h in heads.values())
        stop = total if stop is None else min(stop, total)
        for k, f in streams.items():
            h = heads[k]
            f.seek(h.offset + start * _row_bytes(h))
        row = start
        while row < stop:
            take = min(chunk_rows, stop - row)
            blocks = {k: _read_rows(f, heads[k], take, path, row) for k, f in streams.items()}
            arrays = _npy_split(blocks[""], names) if source.format == "npy" else blocks
            yield Chunk(path, row, take, arrays)
            row += take
    finally:
        for f in streams.values():
            f.close()
        if zf is not None:
            zf.close()


def _row_bytes(h: _Npy) -> int:
    return h.dtype.itemsize * math.prod(h.shape[1:])


def _read_rows(f: IO[bytes], h: _Npy, rows: int, where: str, row0: int) -> np.ndarray:
    size = rows * _row_bytes(h)
    buf = f.read(size)
    if len(buf) != size:
        raise InputError(
            "file ends early (truncated array)",
            row=row0 + len(buf) // max(_row_bytes(h), 1),
            where=where,
        )
    return np.frombuffer(buf, dtype=h.dtype).reshape((rows, *h.shape[1:]))


def _npy_split(block: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    if block.dtype.names:
        return {n: block[n] for n in names}
    if block.ndim == 1:
        return {"0": block}
    return {n: block[:, int(n)] for n in names}

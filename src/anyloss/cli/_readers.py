"""Input files, read a chunk of rows at a time: .npy, .npz, .csv, Parquet (file, directory, glob).

Every source knows its column names and types before reading any data (so a
missing or non-numeric column fails at once) and yields :class:`Chunk` objects
of at most ``chunk_rows`` rows; memory is bounded by the chunk, whatever the
file's size.

Types are settled once for the whole input, so every chunk gives the loss the
same dtypes: Parquet shards that disagree (float32 in one, float64 in another)
are read as the promoted type, and a CSV column that looks integer in the
first block PyArrow reads is parsed chunk by chunk, as int64 where every value
is a whole number and float64 otherwise (so a later ``0.5`` is not an error).
Parquet page checksums are verified where the file has them.
"""

from __future__ import annotations

import glob as globmod
import math
import os
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from ._columns import DUPLICATE, arrow_to_numpy, arrow_type_name, natural_key, numpy_type_name
from ._errors import InputError

__all__ = ["FORMATS", "Chunk", "Source", "open_source"]

FORMATS = ("npy", "npz", "csv", "parquet")
_PARQUET_EXT = (".parquet", ".parq", ".pq")
_CSV_EXT = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")


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
    # Parquet: columns whose shards disagree on the type, read as the promoted dtype.
    casts: dict[str, np.dtype[Any]] = field(default_factory=dict)
    # CSV: columns read as text and parsed per chunk (int64 if whole numbers, else float64).
    text_numbers: frozenset[str] = frozenset()

    def chunks(
        self, names: list[str], chunk_rows: int, start: int = 0, stop: int | None = None
    ) -> Iterator[Chunk]:
        """Chunks of the columns ``names``; ``start``/``stop`` (rows) for .npy/.npz only."""
        if self.format in ("npy", "npz"):
            yield from _npy_chunks(self, names, chunk_rows, start, stop)
        else:
            for path in self.files:
                yield from _arrow_chunks(self, path, names, chunk_rows)


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
            if f.lower().endswith((*_PARQUET_EXT, *_CSV_EXT))
        ]
        if not found:
            raise InputError(
                f"directory holds no {', '.join((*_PARQUET_EXT, *_CSV_EXT))} files", where=path
            )
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
    if name.endswith(_CSV_EXT):
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


def _parquet_file(path: str) -> Any:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    return pq.ParquetFile(
        path, buffer_size=1 << 20, pre_buffer=False, page_checksum_verification=True
    )


def _field_types(schema: Any) -> dict[str, str]:
    """Name -> type of each field, :data:`DUPLICATE` for a name the schema holds twice."""
    types: dict[str, str] = {}
    for fld in schema:
        types[fld.name] = DUPLICATE if fld.name in types else arrow_type_name(fld.type)
    return types


def _promoted(a: str, b: str) -> str | None:
    """The type two shards' types promote to (``float32``, ``float64`` -> ``float64``)."""

    def split(t: str) -> tuple[str, str, str]:
        if t.startswith("list<"):
            close = t.rfind(">")
            return "list<", t[5:close], t[close:]
        return "", t, ""

    (pa_, ia, sa), (pb, ib, sb) = split(a), split(b)
    numeric = ("float", "int", "uint", "bool")
    if pa_ != pb or sa != sb or not (ia.startswith(numeric) and ib.startswith(numeric)):
        return None
    return f"{pa_}{np.result_type(np.dtype(ia), np.dtype(ib)).name}{sa}"


def _parquet_source(label: str, files: list[str]) -> Source:
    rows, columns = 0, dict[str, str]()
    casts: dict[str, np.dtype[Any]] = {}
    for i, f in enumerate(files):
        try:
            meta = _parquet_file(f)
        except Exception as e:  # pyarrow raises ArrowInvalid for a file that is not Parquet
            raise InputError(f"not a readable Parquet file ({e})", where=f) from None
        rows += meta.metadata.num_rows
        types = _field_types(meta.schema_arrow)  # once per file: linear in the columns
        if i == 0:
            columns = types
            continue
        for name, kind in types.items():
            known = columns.get(name)
            if known is None or known == kind or DUPLICATE in (known, kind):
                if kind == DUPLICATE and known is not None:
                    columns[name] = DUPLICATE
                continue
            wider = _promoted(known, kind)
            if wider is not None:
                columns[name] = wider
                inner = wider[5 : wider.rfind(">")] if wider.startswith("list<") else wider
                casts[name] = np.dtype(inner)
    return Source(label, "parquet", files, columns, rows, casts=casts)


def _csv_input(path: str) -> Any:
    """The file as a stream, decompressed by its extension (``.csv.gz``, also ``.CSV.GZ``)."""
    import pyarrow as pa

    codecs = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
    return pa.input_stream(path, compression=codecs.get(os.path.splitext(path.lower())[1]))


def _csv_source(label: str, files: list[str]) -> Source:
    import pyarrow as pa
    import pyarrow.csv as pcsv  # type: ignore[import-untyped]

    try:
        with pcsv.open_csv(_csv_input(files[0])) as reader:
            schema = reader.schema
    except pa.ArrowInvalid as e:
        raise InputError(f"not a readable CSV file ({e})", where=files[0]) from None
    columns = _field_types(schema)
    # CSV has no types: PyArrow guesses them from the first block. A column that
    # looks integer (or empty) there may hold 0.5 further on, so it is read as
    # text and parsed chunk by chunk; a header-only file has rows of no type.
    text = frozenset(
        n
        for n, fld in zip(schema.names, schema, strict=True)
        if columns[n] != DUPLICATE
        and (pa.types.is_integer(fld.type) or pa.types.is_null(fld.type))
    )
    for n in text:
        if columns[n] == "null":
            columns[n] = "float64"
    return Source(label, "csv", files, columns, None, text_numbers=text)


def _arrow_batches(
    source: Source, path: str, names: list[str], chunk_rows: int, part: tuple[int, int] | None
) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if source.format == "parquet":
        pf = _parquet_file(path)
        types = _field_types(pf.schema_arrow)
        missing = [n for n in names if n not in types]
        if missing:
            raise InputError(f"no column {missing[0]!r} in this shard", where=path)
        duplicated = [n for n in names if types[n] == DUPLICATE]
        if duplicated:
            raise InputError(
                f"column {duplicated[0]!r} appears more than once in this shard; rename the "
                "copies so that each column has its own name",
                where=path,
            )
        groups = None if part is None else range(*part)
        yield from pf.iter_batches(batch_size=chunk_rows, columns=names, row_groups=groups)
    else:
        # About 64 bytes a row: blocks of roughly a chunk, never above 64 MiB.
        block = min(max(chunk_rows * 64, 1 << 16), 1 << 26)
        # Types from the first file's first block, for every block of every shard:
        # float columns stay float64 in a shard whose first block holds integers.
        types = {
            n: pa.string() if n in source.text_numbers else pa.float64()
            for n in names
            if n in source.text_numbers or source.columns.get(n) == "float64"
        }
        if path != source.files[0]:
            _check_csv_header(path)
        stream = _csv_input(path) if part is None else _csv_range(path, *part)
        if stream is None:
            return
        with pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=block),
            convert_options=pcsv.ConvertOptions(
                include_columns=names, column_types=types, strings_can_be_null=True
            ),
        ) as reader:
            yield from reader


def _csv_range(path: str, start: int, stop: int) -> Any:
    """The header and the lines that start in bytes ``[start, stop)`` of an uncompressed CSV.

    Ranges that tile the file read each line once (a line belongs to the range
    holding its first byte). As PyArrow's reader by default, no newline may sit
    inside a quoted value. ``None`` when no line starts in the range.
    """
    import pyarrow as pa

    with open(path, "rb") as f:
        header = f.readline()
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # the end of a line that starts in the range before
            begin = max(f.tell(), len(header))
        else:
            header, begin = b"", 0  # the header is the range's own first line
        f.seek(begin)
        body = f.read(stop - begin) if begin < stop else b""
        if not body:
            return None
        if not body.endswith(b"\n"):
            body += f.readline()
    return pa.BufferReader(header + body)


def _check_csv_header(path: str) -> None:
    """A later CSV shard's header may repeat a name, too (the first is checked on opening)."""
    import io

    import pyarrow.csv as pcsv

    header = b""
    with _csv_input(path) as f:
        while b"\n" not in header and len(header) < 1 << 24:
            block = f.read(1 << 16)
            if not block:
                break
            header += block
    header = header.split(b"\n", 1)[0] + b"\n"
    names = pcsv.read_csv(io.BytesIO(header)).schema.names if header.strip() else []
    twice = [n for n, k in Counter(names).items() if k > 1]
    if twice:
        raise InputError(
            f"column {twice[0]!r} appears more than once in the header; rename the "
            "copies so that each column has its own name",
            where=path,
        )


def _arrow_chunks(
    source: Source,
    path: str,
    names: list[str],
    chunk_rows: int,
    part: tuple[int, int] | None = None,
    row0: int = 0,
) -> Iterator[Chunk]:
    """Chunks of one file; ``part``: its row groups ``[a, b)`` (Parquet) or bytes (CSV).

    ``row0`` is the number of the part's first row in the file.
    """
    import pyarrow as pa

    pending: list[Any] = []
    buffered = 0
    batches = _arrow_batches(source, path, names, chunk_rows, part)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as e:
            raise InputError(_read_failure(e), row=None, where=path) from None
        if batch is not None and len(batch):
            pending.append(batch)
            buffered += len(batch)
        while buffered >= chunk_rows or (batch is None and buffered):
            table = pa.Table.from_batches(pending)
            take = min(chunk_rows, buffered)
            yield _to_chunk(
                path, row0, table.slice(0, take), names, source.casts, source.text_numbers
            )
            rest = table.slice(take)
            pending = rest.to_batches() if len(rest) else []
            buffered -= take
            row0 += take
        if batch is None:
            return


def _read_failure(e: BaseException) -> str:
    text = str(e)
    if "checksum" in text.lower():
        return (
            f"corrupt data: a Parquet page fails its checksum ({text}); "
            "restore the file from a good copy"
        )
    return f"cannot read ({text})"


def _to_chunk(
    path: str,
    row0: int,
    table: Any,
    names: list[str],
    casts: dict[str, np.dtype[Any]] | None = None,
    text: frozenset[str] = frozenset(),
) -> Chunk:
    index = {n: i for i, n in enumerate(table.schema.names)}  # one lookup table a chunk
    arrays = {}
    for n in names:
        try:
            col = table.column(index[n])
            if n in text:
                col = _parse_numbers(col, n)
            a = arrow_to_numpy(col, n)
        except InputError as e:
            raise InputError(e.message, None if e.row is None else row0 + e.row, path) from None
        want = None if casts is None else casts.get(n)
        arrays[n] = a if want is None or a.dtype == want else a.astype(want)
    return Chunk(path, row0, len(table), arrays)


def _parse_numbers(col: Any, name: str) -> Any:
    """A CSV column read as text: int64 when every value is a whole number, else float64."""
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    for kind in (pa.int64(), pa.float64()):
        try:
            return pc.cast(col, kind)
        except pa.ArrowInvalid:
            pass
    # An error path: bisect for the first value PyArrow cannot parse (log n casts).
    lo, hi = 0, len(col) - 1  # the prefix ending at hi fails to parse
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            pc.cast(col.slice(0, mid + 1), pa.float64())
            lo = mid + 1
        except pa.ArrowInvalid:
            hi = mid
    raise InputError(f"column {name!r} holds {col[lo].as_py()!r}, not a number", row=lo)


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
    # A field or a column of the block is a strided view: copied C-contiguous (one
    # chunk at a time), as the fused kernels need.
    if block.dtype.names:
        return {n: np.ascontiguousarray(block[n]) for n in names}
    if block.ndim == 1:
        return {"0": block}
    return {n: np.ascontiguousarray(block[:, int(n)]) for n in names}

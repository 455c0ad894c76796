"""Per-row losses to a file, all or nothing: written to a temporary file, renamed on success."""

from __future__ import annotations

import os
import sys
from typing import IO, Any

import numpy as np

from ._errors import InputError

__all__ = ["AtomicOutput", "print_losses"]

_OUT_FORMATS = (".parquet", ".csv", ".npy")


class AtomicOutput:
    """Writes ``path`` through ``.<name>.<pid>.tmp`` beside it; :meth:`commit` renames it.

    Until :meth:`commit`, the destination is untouched; :meth:`abort` removes the
    temporary file (a failed or interrupted run leaves nothing behind).
    """

    def __init__(self, path: str, force: bool) -> None:
        self.path = path
        self.ext = os.path.splitext(path)[1].lower()
        if self.ext not in _OUT_FORMATS:
            raise InputError(f"--out must end in {', '.join(_OUT_FORMATS)}", where=path)
        if os.path.exists(path) and not force:
            raise InputError("output exists; use --force to replace it", where=path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise InputError("output folder does not exist", where=path)
        self.tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        self._file: IO[bytes] = open(self.tmp, "wb")  # noqa: SIM115 (closed in commit/abort)
        self._writer: Any = None
        self._rows = 0
        self._shape: tuple[int, ...] = ()
        self._dtype: np.dtype[Any] | None = None

    def write(self, losses: np.ndarray) -> None:
        if self.ext == ".npy":
            self._write_npy(losses)
            return
        import pyarrow as pa  # type: ignore[import-untyped]

        if losses.ndim == 1:
            table = pa.table({"loss": losses})
        elif self.ext == ".parquet":
            flat = losses.reshape(len(losses), -1)
            table = pa.table(
                {"loss": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])}
            )
        else:
            flat = losses.reshape(len(losses), -1)
            table = pa.table({f"loss_{j}": flat[:, j] for j in range(flat.shape[1])})
        if self._writer is None:
            if self.ext == ".parquet":
                import pyarrow.parquet as pq  # type: ignore[import-untyped]

                self._writer = pq.ParquetWriter(self._file, table.schema)
            else:
                import pyarrow.csv as pcsv  # type: ignore[import-untyped]

                self._writer = pcsv.CSVWriter(self._file, table.schema)
        self._writer.write_table(table)

    # .npy: a fixed 128-byte header, rewritten with the final row count at the end.
    _NPY_HEADER = 128

    def _write_npy(self, losses: np.ndarray) -> None:
        if self._dtype is None:
            self._dtype, self._shape = losses.dtype, losses.shape[1:]
            self._file.write(b"\0" * self._NPY_HEADER)
        self._file.write(np.ascontiguousarray(losses, dtype=self._dtype).tobytes())
        self._rows += len(losses)

    def _finish_npy(self) -> None:
        dtype = self._dtype if self._dtype is not None else np.dtype("float64")
        header = repr(
            {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (self._rows, *self._shape),
            }
        ).encode("latin1")
        room = self._NPY_HEADER - 10
        if self._dtype is None:
            self._file.write(b"\0" * self._NPY_HEADER)
        self._file.seek(0)
        self._file.write(
            b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + header.ljust(room - 1) + b"\n"
        )

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.close()
        elif self.ext == ".npy":
            self._finish_npy()
        elif self.ext == ".parquet":  # no rows: still a valid (empty) file
            self.write(np.zeros(0))
            self._writer.close()  # type: ignore[attr-defined]
        self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:
            pass  # the file is removed anyway
        finally:
            self._file.close()
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def print_losses(losses: np.ndarray, stream: IO[str] | None = None) -> None:
    """Per-row losses on stdout, one row a line (9 digits for float32, 17 for float64)."""
    out = stream or sys.stdout
    fmt = "%.9g" if losses.dtype.itemsize <= 4 else "%.17g"
    np.savetxt(out, losses.reshape(len(losses), -1), fmt=fmt)

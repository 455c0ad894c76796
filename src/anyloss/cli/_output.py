"""Per-row losses to a file, all or nothing: written to a temporary file, renamed on success.

The rules ``--out`` follows:

- Until :meth:`AtomicOutput.commit`, the destination is untouched; a failed or
  interrupted run (an error, Ctrl-C, SIGTERM, SIGHUP) removes its temporary
  file and leaves nothing behind.
- Without ``--force`` an existing file is never replaced, even by two runs
  racing for the same name: the finished file is hard-linked into place, which
  fails if the name exists (or, where hard links are not supported, the name
  is first created exclusively).
- ``--out`` may not be one of the input files (by any spelling or link).
- ``--out`` naming a symbolic link writes the file the link points to; the
  link stays a link.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from ._errors import InputError

__all__ = ["AtomicOutput", "print_losses"]

_OUT_FORMATS = (".parquet", ".csv", ".npy")


def _hangup(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class AtomicOutput:
    """Writes ``path`` through ``.<name>.<pid>.tmp`` beside it; :meth:`commit` moves it there.

    ``inputs`` are the files the run reads; ``path`` may not be one of them.
    """

    def __init__(self, path: str, force: bool, inputs: Sequence[str] = ()) -> None:
        self.path = path
        self.force = force
        if os.path.isdir(path):
            raise InputError("--out names a directory; give a file name in it", where=path)
        self.ext = os.path.splitext(path)[1].lower()
        if self.ext not in _OUT_FORMATS:
            raise InputError(f"--out must end in {', '.join(_OUT_FORMATS)}", where=path)
        # A symbolic link is written through: the file it points to is replaced.
        self.target = os.path.realpath(path) if os.path.islink(path) else path
        if os.path.exists(self.target):
            for f in inputs:
                if os.path.exists(f) and os.path.samefile(f, self.target):
                    raise InputError(
                        f"--out is the input file {f!r}; write the losses to another file",
                        where=path,
                    )
            if not force:
                raise InputError("output exists; use --force to replace it", where=path)
        folder = os.path.dirname(os.path.abspath(self.target))
        if not os.path.isdir(folder):
            raise InputError("output folder does not exist", where=path)
        self.tmp = os.path.join(folder, f".{os.path.basename(self.target)}.{os.getpid()}.tmp")
        self._hangup = self._catch_hangup()
        try:
            self._file: IO[bytes] = open(self.tmp, "wb")  # noqa: SIM115 (closed in commit/abort)
        except OSError as e:
            self._restore_hangup()
            raise InputError(f"cannot write ({e.strerror or e})", where=self.tmp) from None
        self._writer: Any = None
        self._rows = 0
        self._shape: tuple[int, ...] = ()
        self._dtype: np.dtype[Any] | None = None
        self._header = 0  # .npy: the bytes reserved for the header

    # A hang-up (the terminal closed) ends the run like Ctrl-C: the temporary file
    # is removed. Left alone where SIGHUP is ignored (nohup) or handled already.
    def _catch_hangup(self) -> Any:
        sig = getattr(signal, "SIGHUP", None)
        if sig is None or threading.current_thread() is not threading.main_thread():
            return None
        if signal.getsignal(sig) is not signal.SIG_DFL:
            return None
        signal.signal(sig, _hangup)
        return signal.SIG_DFL

    def _restore_hangup(self) -> None:
        if self._hangup is not None:
            signal.signal(signal.SIGHUP, self._hangup)
            self._hangup = None

    def _same_dtype(self, losses: np.ndarray) -> np.ndarray:
        """Every chunk written with the first chunk's dtype (one file, one type)."""
        if self._dtype is None:
            self._dtype, self._shape = losses.dtype, losses.shape[1:]
            return losses
        if losses.dtype != self._dtype:
            if not np.can_cast(losses.dtype, self._dtype, "safe"):
                raise InputError(
                    f"the losses change dtype from {self._dtype} to {losses.dtype} after "
                    f"row {self._rows}; give the input one dtype throughout",
                    where=self.path,
                )
            losses = losses.astype(self._dtype)
        return losses

    def write(self, losses: np.ndarray) -> None:
        losses = self._same_dtype(losses)
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

                self._writer = pq.ParquetWriter(self._file, table.schema, write_page_checksum=True)
            else:
                import pyarrow.csv as pcsv  # type: ignore[import-untyped]

                self._writer = pcsv.CSVWriter(self._file, table.schema)
        self._writer.write_table(table)
        self._rows += len(losses)

    # .npy: room for the header is reserved at the start, as long as the header of
    # the largest row count (19 digits) would be; it is written with the real row
    # count, padded with spaces, when the file is complete.

    def _npy_header(self, rows: int, size: int = 0) -> bytes:
        dtype = self._dtype if self._dtype is not None else np.dtype("float64")
        text = repr(
            {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (rows, *self._shape),
            }
        ).encode("latin1")
        # magic (6) + version (2) + length (2, or 4 from version 2.0) + text + "\n",
        # padded so that the data starts on a multiple of 64 bytes.
        width = 2 if (size or len(text) + 74) - 10 < 65536 else 4
        start = 6 + 2 + width
        total = size or -(-(start + len(text) + 1) // 64) * 64
        pad = total - start - len(text) - 1
        if pad < 0:  # pragma: no cover (the reservation is for the longest shape)
            raise RuntimeError(".npy header does not fit its reservation")
        return (
            b"\x93NUMPY"
            + bytes((width // 2, 0))
            + (total - start).to_bytes(width, "little")
            + text
            + b" " * pad
            + b"\n"
        )

    def _write_npy(self, losses: np.ndarray) -> None:
        if not self._header:
            reserve = self._npy_header(np.iinfo(np.int64).max)
            self._header = len(reserve)
            self._file.write(reserve)
        self._file.write(np.ascontiguousarray(losses).tobytes())
        self._rows += len(losses)

    def _finish_npy(self) -> None:
        if not self._header:  # no rows
            self._write_npy(np.zeros(0))
        self._file.seek(0)
        self._file.write(self._npy_header(self._rows, self._header))

    def commit(self) -> None:
        """Close the file and move it to ``path``; without ``force``, never over another."""
        if self._writer is not None:
            self._writer.close()
        elif self.ext == ".npy":
            self._finish_npy()
        elif self.ext == ".parquet":  # no rows: still a valid (empty) file
            self.write(np.zeros(0))
            self._writer.close()  # type: ignore[attr-defined]  # write() set it
        self._file.close()
        if self.force:
            os.replace(self.tmp, self.target)
        else:
            self._place()
        self._restore_hangup()

    def _place(self) -> None:
        """Move the file to ``target`` unless a file of that name exists (atomically)."""
        exists = InputError(
            "output exists (written meanwhile by another run?); use --force to replace it",
            where=self.path,
        )
        try:
            os.link(self.tmp, self.target)
        except FileExistsError:
            raise exists from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # No hard links here: claim the name exclusively, then move onto it.
            try:
                os.close(os.open(self.target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                raise exists from None
            os.replace(self.tmp, self.target)
        else:
            os.unlink(self.tmp)

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
            self._restore_hangup()


def print_losses(losses: np.ndarray, stream: IO[str] | None = None) -> None:
    """Per-row losses on stdout, one row a line (9 digits for float32, 17 for float64)."""
    out = stream or sys.stdout
    fmt = "%.9g" if losses.dtype.itemsize <= 4 else "%.17g"
    np.savetxt(out, losses.reshape(len(losses), -1), fmt=fmt)

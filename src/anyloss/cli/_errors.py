"""The one exception the CLI turns into ``anyloss: error: ...`` and exit code 2."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(Exception):
    """A problem with what the user asked for or gave us (not a bug in anyloss).

    ``row`` is the row the problem was found at, counted inside ``where``
    (a file) when known; the driver adds the file and row to the message.
    """

    def __init__(self, message: str, row: int | None = None, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row
        self.where = where

    def __reduce__(self) -> tuple[type[InputError], tuple[str, int | None, str | None]]:
        # Travels back from Dask workers intact.
        return (InputError, (self.message, self.row, self.where))

    def __str__(self) -> str:
        parts = [p for p in (self.where, None if self.row is None else f"row {self.row}") if p]
        return ": ".join([*parts, self.message])

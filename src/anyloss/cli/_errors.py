"""The one exception the CLI turns into ``anyloss: error: ...`` and exit code 2.

Every message the CLI prints goes through :func:`printable`, so that a file or
column name holding a newline or an escape sequence cannot split the one-line
message or drive the terminal.
"""

from __future__ import annotations

import unicodedata

__all__ = ["InputError", "printable"]

# Control characters (C0, DEL, C1), format characters (bidi overrides, zero
# widths) and the Unicode line/paragraph separators.
_UNSAFE = frozenset(("Cc", "Cf", "Zl", "Zp"))


def _escape(ch: str) -> str:
    code = ord(ch)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        return named[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with control characters and line breaks written as escapes (``\\n``, ``\\x1b``)."""
    if text.isprintable():  # the common case: nothing to do
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


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
        return printable(": ".join([*parts, self.message]))

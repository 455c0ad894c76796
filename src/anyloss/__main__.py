"""``python -m anyloss``: the ``anyloss`` command (``anyloss eval``, ``anyloss list``).

The same as the ``anyloss`` executable; usage and ``--version`` say ``anyloss``.
"""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

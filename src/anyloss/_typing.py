"""The type aliases of the public signatures.

anyloss takes the arrays of several libraries that share no base class, so
both aliases are :data:`typing.Any` to a type checker; they name what an
argument accepts and what a loss returns, in signatures and in the docs.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = ["Array", "ArrayLike"]

Array: TypeAlias = Any
"""An array of one of the supported libraries: NumPy, PyTorch, JAX, MLX, CuPy,
Dask or any array-API library. A loss returns an array of the library of its
input, on its device."""

ArrayLike: TypeAlias = Any
"""What an array argument accepts: an :data:`Array`, or NumPy/Python data
(numbers, nested lists), which is brought into the library of the call."""

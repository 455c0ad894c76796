"""The README's code blocks run as written (each in a fresh namespace)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
NEEDS = {"torch": "torch", "jax": "jax", "mlx": "mlx.core", "dask": "dask.array"}


def test_readme_has_an_example_per_backend():
    text = "\n".join(BLOCKS)
    for module in ("numpy", "torch", "jax", "mlx.core", "dask.array"):
        assert f"import {module}" in text


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code):
    for word, module in NEEDS.items():
        if f"import {word}" in code:
            pytest.importorskip(module)
    exec(compile(code, str(README), "exec"), {})

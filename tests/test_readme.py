"""The README's Python examples run as scripts and print what the README shows.

Convention: every ```python block of the README is followed by a ```text block
holding exactly what the block prints when run as a script. Each block runs in
a fresh interpreter (as a reader would run it, unaffected by settings other
tests change, such as JAX's x64 mode), and its standard output must equal the
text block.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
EXAMPLES = re.findall(r"```python\n(.*?)```\n\n```text\n(.*?)```", TEXT, re.S)
NEEDS = {"torch": "torch", "jax": "jax", "mlx": "mlx.core", "dask": "dask.array"}


def test_readme_has_an_example_per_backend():
    text = "\n".join(BLOCKS)
    for module in ("numpy", "torch", "jax", "mlx.core", "dask.array"):
        assert f"import {module}" in text


def test_every_python_block_shows_its_output():
    assert len(BLOCKS) >= 6
    assert [code for code, _ in EXAMPLES] == BLOCKS, (
        "each ```python block of the README must be followed (after one blank line) "
        "by a ```text block with what it prints"
    )
    for code, output in EXAMPLES:
        assert "print(" in code, code
        assert output.strip(), code


@pytest.mark.parametrize(
    ("code", "output"), EXAMPLES, ids=[f"block{i}" for i in range(len(EXAMPLES))]
)
def test_readme_block_prints_what_the_readme_shows(code, output, tmp_path):
    for word, module in NEEDS.items():
        if f"import {word}" in code:
            pytest.importorskip(module)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == output, f"the README shows:\n{output}\nthe block prints:\n{run.stdout}"


CLI_EVALS = re.findall(r"^anyloss eval .*$", TEXT, re.M)


def _option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def test_cli_examples_print_one_number_or_write_a_file():
    """A reduction of 'none' prints a line per row: the examples avoid that."""
    import inspect

    import anyloss

    assert len(CLI_EVALS) >= 4
    for line in CLI_EVALS:
        words = shlex.split(line)
        loss = _option(words, "--loss")
        default = inspect.signature(getattr(anyloss, loss)).parameters["reduction"].default
        reduction = _option(words, "--reduction") or default
        if reduction == "none":
            assert "--out" in words, f"{line!r} prints one line per row (reduction 'none')"


def test_cli_cross_entropy_example_runs(tmp_path):
    """The README's shard example on a small shard set: one number, PyTorch's."""
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    torch = pytest.importorskip("torch")
    import numpy as np

    (line,) = [line for line in CLI_EVALS if "--loss cross_entropy" in line]
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(30, 11)) * 3
    labels = rng.integers(0, 11, size=30)
    (tmp_path / "shards").mkdir()
    for i, rows in enumerate((slice(0, 12), slice(12, 30))):
        # columns logit_0 ... logit_10, stacked by the glob in natural order
        columns = {f"logit_{k}": logits[rows, k] for k in rng.permutation(11)}
        pq.write_table(
            pa.table({**columns, "label": labels[rows]}), tmp_path / f"shards/{i}.parquet"
        )
    args = shlex.split(line)[1:]
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from anyloss.cli import main; sys.exit(main())",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    smoothing = float(re.search(r"label_smoothing=([0-9.]+)", line).group(1))
    expected = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(labels), label_smoothing=smoothing
    ).item()
    (printed,) = run.stdout.split()
    assert float(printed) == pytest.approx(expected, rel=1e-12)


def test_readme_states_the_test_suites_time_and_memory():
    command = 'pip install -c constraints/cpu-torch.txt -e ".[test]" && python -m pytest\n```\n\n'
    assert command in TEXT
    after = TEXT.split(command, 1)[1]
    assert re.match(
        r"The suite takes about [\d.]+ minutes and [\d.]+ GB of memory on \d+ cores\.", after
    )

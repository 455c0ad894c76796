"""The training loops of docs/frameworks.rst, run by pytest as the doctest builder runs them.

``sphinx-build -b doctest`` executes the page's ``.. testcode::`` blocks and
compares what they print with the ``.. testoutput::`` blocks; this test does
the same without a Sphinx build, so that ``pytest`` alone catches a loop that
stopped working. Blocks of one group share a namespace, in page order; a
block's ``:skipif:`` is evaluated after the ``doctest_global_setup`` of
docs/conf.py, as Sphinx does.
"""

import ast
import contextlib
import io
import os
import pathlib
import re
import textwrap

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")  # as docs/conf.py sets it

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
PAGE = DOCS / "frameworks.rst"
GROUPS = ["torch", "jax", "keras", "mlx"]

_DIRECTIVE = re.compile(r"^\.\. (testcode|testoutput):: (\S+)\n((?:   :\w+:.*\n)*)\n", re.M)


def _body(text: str, start: int) -> str:
    """The indented block that starts at ``start`` (up to the next unindented line)."""
    lines = []
    for line in text[start:].splitlines():
        if line and not line.startswith("   "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip("\n") + "\n"


def _blocks() -> list[tuple[str, str, str, str | None]]:
    """(kind, group, body, skipif) of every testcode/testoutput block, in page order."""
    text = PAGE.read_text(encoding="utf-8")
    blocks = []
    for m in _DIRECTIVE.finditer(text):
        options = dict(re.findall(r"   :(\w+):\s*(.*)\n", m.group(3)))
        blocks.append((m.group(1), m.group(2), _body(text, m.end()), options.get("skipif")))
    return blocks


def _global_setup() -> str:
    """``doctest_global_setup`` of docs/conf.py, read without running conf.py."""
    tree = ast.parse((DOCS / "conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "doctest_global_setup" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("docs/conf.py has no doctest_global_setup")


def test_page_has_a_loop_per_framework_and_is_in_the_toctree():
    blocks = _blocks()
    assert {group for _, group, _, _ in blocks} == set(GROUPS)
    for group in GROUPS:
        kinds = [kind for kind, g, _, _ in blocks if g == group]
        assert kinds.count("testcode") == kinds.count("testoutput") >= 1, group
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    assert re.search(r"^   frameworks$", index, re.M), "frameworks is not in the toctree"


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("group", GROUPS)
def test_examples_print_what_the_page_shows(group):
    setup = _global_setup()
    namespace: dict[str, object] = {}
    exec(setup, namespace)
    ran = 0
    pending: str | None = None
    for kind, g, body, skipif in _blocks():
        if g != group:
            continue
        if kind == "testcode":
            if skipif is not None:
                context: dict[str, object] = {}
                exec(setup, context)
                if eval(skipif, context):
                    if not ran:
                        pytest.skip(f"skipped by the page's condition: {skipif}")
                    pending = None
                    continue
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, f"{PAGE.name}[{group}]", "exec"), namespace)
            pending = out.getvalue()
            ran += 1
        elif pending is not None:
            assert pending.rstrip() == body.rstrip(), body
            pending = None
    assert ran

"""The Porting page's equivalences hold: each framework's number is anyloss's.

The examples live in ``docs/porting_examples.py`` (the 14 losses of MLX) and
``docs/porting_beyond.py`` (the losses and options beyond MLX); the page shows
their source. Each returns ``(theirs, ours)`` computed from the same float32
NumPy inputs. A framework that is not installed skips its examples.
"""

import ast
import importlib.util
import inspect
import pathlib
import sys
import textwrap

import numpy as np
import pytest

_DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _load(name):
    path = _DOCS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


ex = _load("porting_examples")
bx = _load("porting_beyond")
CASES = sorted(ex.EXAMPLES, key=lambda k: (ex.LOSSES.index(k[0]), list(ex.FRAMEWORKS).index(k[1])))


@pytest.mark.parametrize(("loss", "framework"), CASES, ids=[f"{loss}-{fw}" for loss, fw in CASES])
def test_framework_value_is_reproduced(loss, framework):
    pytest.importorskip(ex.FRAMEWORKS[framework][1])
    theirs, ours = ex.EXAMPLES[(loss, framework)]()
    theirs, ours = ex.np_(theirs), np.asarray(ours)
    assert ours.shape == theirs.shape
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs.astype(np.float32), rtol=2e-6, atol=1e-7)


def test_every_loss_has_facts_and_an_example():
    import anyloss

    public = {n for n in anyloss.losses.__all__ if n.endswith(("_loss", "_entropy"))}
    assert set(ex.LOSSES) == public
    for loss in ex.LOSSES:
        assert set(ex.FACTS[loss]) == set(ex.FRAMEWORKS), loss
        assert (loss, "mlx") in ex.EXAMPLES, loss
        for framework, facts in ex.FACTS[loss].items():
            has_function = not facts["name"].startswith("(none")
            if has_function or len(facts) > 1:
                # a function named (or a stand-in described): full facts, tested
                assert set(facts) == set(ex.FACT_ROWS), (loss, framework)
                assert (loss, framework) in ex.EXAMPLES, (loss, framework)


def test_mlx_defaults_match_the_table():
    """The "Default reduction" row for MLX is what anyloss's signatures say."""
    import inspect

    import anyloss

    for loss in ex.LOSSES:
        default = inspect.signature(getattr(anyloss, loss)).parameters["reduction"].default
        assert ex.FACTS[loss]["mlx"]["reduction"].startswith(f"``'{default}'``"), loss


# --------------------------------------------------------------------------
# Beyond MLX (docs/porting_beyond.py)
# --------------------------------------------------------------------------


def _is_loss(name):
    return name.endswith(("_loss", "_entropy"))


BEYOND_CASES = sorted(
    bx.EXAMPLES, key=lambda k: (bx.ENTRIES.index(k[0]), list(bx.FRAMEWORKS).index(k[1]))
)


@pytest.mark.parametrize(
    ("entry", "framework"), BEYOND_CASES, ids=[f"{e}-{fw}" for e, fw in BEYOND_CASES]
)
def test_beyond_framework_value_is_reproduced(entry, framework):
    pytest.importorskip(bx.FRAMEWORKS[framework][1])
    theirs, ours = bx.EXAMPLES[(entry, framework)]()
    theirs, ours = bx.np_(theirs), np.asarray(ours)
    assert ours.shape == theirs.shape
    assert ours.dtype == np.float32
    rtol, atol = bx.tolerance(entry, framework)
    np.testing.assert_allclose(ours, theirs.astype(np.float32), rtol=rtol, atol=atol)


def test_beyond_looser_tolerances_are_few_and_explained():
    for (entry, framework), (rtol, atol, why) in bx.TOLERANCES.items():
        assert (entry, framework) in bx.EXAMPLES
        assert rtol <= 1e-5 and atol <= 1e-6, (entry, framework)
        assert len(why) > 40, (entry, framework)
    assert len(bx.TOLERANCES) <= 3


def test_every_beyond_name_has_a_row_and_examples():
    import anyloss

    mlx = set(anyloss.losses.__all__)
    beyond = {n for n in anyloss.__all__ if _is_loss(n)} - mlx
    assert beyond, "no losses beyond MLX in anyloss.__all__"
    assert set(bx.LOSSES) == beyond
    assert not beyond & mlx  # anyloss.losses stays the MLX drop-in
    assert len(bx.ENTRIES) == len(set(bx.ENTRIES))
    assert set(bx.ENTRIES) == beyond | set(bx.OPTIONS)
    assert set(bx.NAMES) == set(bx.ENTRIES)
    for entry in bx.ENTRIES:
        assert set(bx.NAMES[entry]) == set(bx.COLUMNS), entry
        assert set(bx.NAMES[entry]["anyloss"]) == set(bx.ROWS), entry
        for framework in bx.FRAMEWORKS:
            facts = bx.NAMES[entry][framework]
            has_function = not facts["name"].startswith("(none")
            if has_function or len(facts) > 1:
                # a counterpart named (or a stand-in described): full facts, tested
                assert set(facts) == set(bx.ROWS), (entry, framework)
                assert (entry, framework) in bx.EXAMPLES, (entry, framework)
            else:
                assert facts["name"].startswith("(none"), (entry, framework)
                assert (entry, framework) not in bx.EXAMPLES, (entry, framework)
    for entry, framework in bx.EXAMPLES:
        assert entry in bx.NAMES and framework in bx.FRAMEWORKS


def test_beyond_options_are_keyword_only_parameters():
    import anyloss

    for option, funcs in bx.OPTIONS.items():
        for func in funcs:
            param = inspect.signature(getattr(anyloss, func)).parameters[option]
            assert param.kind is inspect.Parameter.KEYWORD_ONLY, (func, option)
            assert param.default is None, (func, option)
            assert f"``{func}``" in bx.NAMES[option]["anyloss"]["name"], (func, option)


def test_beyond_anyloss_defaults_match_the_table():
    """The anyloss column's "Default reduction" is what the signatures say."""
    import anyloss

    for loss in bx.LOSSES:
        default = inspect.signature(getattr(anyloss, loss)).parameters["reduction"].default
        assert bx.NAMES[loss]["anyloss"]["reduction"].startswith(f"``'{default}'``"), loss


@pytest.mark.parametrize("module", [ex, bx], ids=["mlx", "beyond"])
def test_page_calls_are_whole(module):
    """Each example assigns ``theirs`` and ``ours`` once, so the one-line calls
    the page's tables quote are the whole of what is compared."""
    for key, func in module.EXAMPLES.items():
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        targets = [
            t.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign | ast.AugAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        ]
        assert targets.count("theirs") == 1, key
        assert targets.count("ours") == 1, key
        body = tree.body[0].body
        assert isinstance(body[-1], ast.Return), key
        assert ast.unparse(body[-1].value) == "(theirs, ours)", key

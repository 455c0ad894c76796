"""The Porting page's equivalences hold: each framework's number is anyloss's.

The examples live in ``docs/porting_examples.py`` (the page shows their source);
each returns ``(theirs, ours)`` computed from the same float32 NumPy inputs.
A framework that is not installed skips its examples.
"""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

_DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _load_examples():
    path = _DOCS / "porting_examples.py"
    spec = importlib.util.spec_from_file_location("porting_examples", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("porting_examples", module)
    spec.loader.exec_module(module)
    return module


ex = _load_examples()
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

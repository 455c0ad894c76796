"""Sphinx configuration of the anyloss documentation.

Build (from the repository root; warnings are errors):

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

Loss plots, the porting sections (from porting_examples.py and
porting_beyond.py) and the accuracy/benchmark includes are written into
docs/_generated/ at build time by the local extension ``anyloss_docs``
(docs/_ext/).
"""

from __future__ import annotations

import os
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS)]
os.environ.setdefault("KERAS_BACKEND", "jax")  # only the porting examples import keras

import anyloss  # noqa: E402

project = "anyloss"
author = "anyloss developers"
copyright = "anyloss developers"
release = anyloss.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # after sphinx.ext.mathjax: sets mathjax_path
    "sphinx.ext.doctest",
    "anyloss_docs",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated/**", "Thumbs.db", ".DS_Store"]
# reST only (MyST is not a dependency).
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
nitpicky = True

# -- autodoc / autosummary / napoleon ----------------------------------------
autosummary_generate = True
autosummary_generate_overwrite = True
# The signatures show the parameters' types, arrays as ArrayLike/Array (aliases
# of Any, documented on the Losses page).
autodoc_typehints = "signature"
autodoc_type_aliases = {
    "Array": "anyloss.Array",
    "ArrayLike": "anyloss.ArrayLike",
    "Reduction": "anyloss.Reduction",
}
# Types of other libraries named in the signatures of anyloss.torch/keras (no
# intersphinx: the build runs offline).
nitpick_ignore = [("py:class", "torch.Tensor"), ("py:class", "collections.abc.Callable")]
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

# -- doctest -------------------------------------------------------------------
# The docstring examples are run by pytest (--doctest-modules over src/anyloss);
# this builder runs the `.. doctest::` blocks of the pages (Backends, ...).
doctest_test_doctest_blocks = ""
doctest_global_setup = """
import importlib.util

def _has(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False

HAS_TORCH = _has("torch")
HAS_JAX = _has("jax")
HAS_MLX = _has("mlx") and _has("mlx.core")
HAS_DASK = _has("dask") and _has("dask.array")
HAS_STRICT = _has("array_api_strict")
"""


# -- HTML ------------------------------------------------------------------------
html_theme = "furo"
html_title = f"anyloss {release}"
html_static_path = ["_static"]
html_css_files = ["anyloss.css"]
html_theme_options = {
    "source_repository": "https://github.com/anyloss/anyloss",
    "source_branch": "main",
    "source_directory": "docs/",
}
html_show_sourcelink = False

# -- math ----------------------------------------------------------------------
# MathJax is served from the site itself, so the formulas render with no network
# (offline, behind a firewall, from file://): the ``sphinx-mathjax-offline``
# extension (in the ``docs`` extra) copies its bundled MathJax 3 into
# _static/mathjax/ and points ``mathjax_path`` there. No page refers to a CDN;
# tests/test_docs_site.py checks both in headless Chromium.

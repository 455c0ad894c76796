"""The package around the losses: licence, changelog, extras, ``python -m
anyloss``, the CPU-torch constraints file, and a suite that works without numba.

Expected values come from the project's metadata (``pyproject.toml``, the
installed distribution's version), not from the code under test.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+
specifiers = pytest.importorskip("packaging.specifiers")
requirements = pytest.importorskip("packaging.requirements")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
VERSION = PYPROJECT["project"]["version"]
HIDDEN = {n.strip() for n in os.environ.get("ANYLOSS_TEST_HIDE", "").split(",") if n.strip()}


def _python(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


# -- licence and changelog -------------------------------------------------------------


def test_license_file_is_the_mit_licence_named_in_pyproject():
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 anyloss developers" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_changelog_has_unreleased_and_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert headings[:2] == ["Unreleased", VERSION]
    for heading in headings:  # every heading has its link
        assert re.search(rf"^\[{re.escape(heading)}\]: https://", text, re.M), heading


# -- python -m anyloss ---------------------------------------------------------------------


def test_python_m_anyloss_is_the_command(capsys):
    from anyloss.cli import main  # the `anyloss` executable's entry point

    version = _python("-m", "anyloss", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"anyloss {importlib.metadata.version('anyloss')}\n"
    assert version.stdout == f"anyloss {VERSION}\n"

    listed = _python("-m", "anyloss", "list")
    assert listed.returncode == 0, listed.stderr
    assert main(["list"]) == 0
    assert listed.stdout == capsys.readouterr().out
    assert "binary_cross_entropy " in listed.stdout

    bare = _python("-m", "anyloss")
    assert bare.returncode == 2
    assert bare.stderr.startswith("usage: anyloss "), bare.stderr  # not "__main__.py"


# -- extras and the constraints file ----------------------------------------------------------


def _names(extra: str) -> dict[str, requirements.Requirement]:
    reqs = [requirements.Requirement(r) for r in EXTRAS[extra]]
    return {r.name: r for r in reqs}


def test_cli_extra_is_pyarrow_and_tqdm_and_dask_has_its_own():
    assert set(_names("cli")) == {"pyarrow", "tqdm"}
    (dask,) = _names("dask").values()
    assert dask.name == "dask" and dask.extras == {"array", "distributed"}
    (own,) = [r for r in _names("test").values() if r.name == "anyloss"]
    assert {"fast", "cli", "dask"} <= own.extras


def test_constraints_file_pins_a_torch_the_test_extra_accepts():
    pins = [
        requirements.Requirement(line)
        for line in (ROOT / "constraints/cpu-torch.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [str(p) for p in pins] == ["torch==2.13.0"]
    wanted = _names("test")["torch"].specifier
    # 2.13.0 (CPU build: 2.13.0+cpu) is allowed; newer releases, CUDA by default, are not
    assert wanted.contains("2.13.0") and wanted.contains("2.13.0+cpu")
    assert not wanted.contains("2.14.0")
    assert specifiers.SpecifierSet("==2.13.0").contains("2.13.0+cpu")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'pip install -c constraints/cpu-torch.txt -e ".[test]"' in readme
    assert "-c constraints/cpu-torch.txt" in (ROOT / ".ci/run").read_text(encoding="utf-8")


def test_scheduler_without_dask_names_the_dask_extra(tmp_path, monkeypatch, capsys):
    from anyloss.cli import main

    csv = tmp_path / "preds.csv"
    csv.write_text("p,y\n0.5,1.0\n", encoding="utf-8")
    args = ["eval", str(csv), "--loss", "mse_loss", "--input", "p", "--target", "y"]
    for missing in ("dask", "distributed"):
        with monkeypatch.context() as patch:
            # None in sys.modules: find_spec gives None, import raises ModuleNotFoundError
            patch.setitem(sys.modules, missing, None)
            before = signal.getsignal(signal.SIGTERM)
            try:
                with pytest.raises(SystemExit) as exit_:
                    main([*args, "--scheduler", "local", "--quiet"])
            finally:
                signal.signal(signal.SIGTERM, before)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err == (
            f"anyloss: error: --scheduler needs {missing}, which is not installed: "
            'pip install "anyloss[dask]"\n'
        )


# -- the suite without numba ---------------------------------------------------------------


@pytest.mark.skipif("numba" not in HIDDEN, reason="runs with ANYLOSS_TEST_HIDE=numba")
def test_hidden_numba_is_absent_to_anyloss():
    from anyloss.kernels import _config

    assert importlib.util.find_spec("numba") is None
    with pytest.raises(ModuleNotFoundError, match="No module named 'numba'"):
        import numba  # noqa: F401
    assert not _config.enabled() and _config.load() is False
    assert "numba" not in sys.modules


def test_suite_collects_without_numba():
    run = _python(
        "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
        env={"ANYLOSS_TEST_HIDE": "numba"}, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "error" not in run.stdout.splitlines()[-1], run.stdout[-3000:]
    assert "src/anyloss/kernels/_numba.py" not in run.stdout
    assert "src/anyloss/_classification.py::" in run.stdout  # the package's doctests
    assert "tests/test_kernels.py:" in run.stdout  # reported as skipped, nothing collected
    assert "tests/test_kernels.py::" not in run.stdout
    assert "tests/test_smoke.py::" in run.stdout


def test_quick_files_pass_without_numba():
    run = _python(
        "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
        # src/anyloss/kernels: imported by --doctest-modules, _numba.py left out
        "tests/test_smoke.py", "tests/test_kernels.py", "src/anyloss/kernels",
        "tests/test_packaging.py::test_hidden_numba_is_absent_to_anyloss",
        env={"ANYLOSS_TEST_HIDE": "numba", "ANYLOSS_BACKENDS": "numpy,torch"}, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = run.stdout.splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary) and "failed" not in summary, summary
    assert "SKIPPED [" in run.stdout and "could not import 'numba'" in run.stdout

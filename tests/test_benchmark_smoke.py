"""Smoke run of the benchmark suite (``benchmarks/run.py``) at its tiny size.

Only checks that the suite runs end to end and writes its JSON (and plot);
the timings themselves are not tested.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    for name in ("run", "peers"):
        sys.modules.pop(name, None)
    import run

    return run


def test_every_loss_numpy(bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "tiny.json"
    result = bench.main(
        ["--size", "tiny", "--libs", "numpy", "--repeat", "1", "--no-backward", "--json", str(out)]
    )
    data = json.loads(out.read_text())
    assert data["meta"]["size"] == "tiny"
    losses = {r["loss"] for r in data["results"]}
    assert {"cross_entropy", "mse_loss", "triplet_loss", "binary_cross_entropy[probs]"} <= losses
    for r in result["results"]:
        assert "anyloss" in r["forward"]
        assert r["forward"]["anyloss"]["median"] > 0
    assert "ours / best peer" in data["table"]


def test_peers_and_backward(bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    libs = [
        lib
        for lib in ("torch", "jax", "mlx")
        if bench.peers.installed({"mlx": "mlx.core"}.get(lib, lib))
    ]
    out, png = tmp_path / "tiny.json", tmp_path / "tiny.png"
    bench.main(
        [
            "--size",
            "tiny",
            "--libs",
            ",".join(["numpy", *libs]),
            "--repeat",
            "1",
            "--losses",
            "cross_entropy",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    data = json.loads(out.read_text())
    (ce,) = data["results"]
    for lib in libs:
        assert lib in ce["forward"]
        assert lib in ce["forward_backward"]
        assert f"anyloss[{lib}]" in ce["forward_backward"]
    assert "memory" in ce
    assert png.stat().st_size > 0


def test_gpu_benchmark_smoke(tmp_path: Path) -> None:
    """``benchmarks/gpu.py --smoke``: CPU tensors through Triton's interpreter
    at tiny sizes, in a process of its own (it sets the Triton switch before
    importing anyloss); the table and the JSON come out."""
    pytest.importorskip("triton")
    pytest.importorskip("torch")
    import subprocess

    md, js = tmp_path / "gpu.md", tmp_path / "gpu.json"
    cases = ["cross_entropy f32", "log_cosh 64M", "cosine_similarity 65536x1024"]
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "gpu.py"),
            "--smoke",
            "--repeat",
            "1",
            "--cases",
            *cases,
            "--md",
            str(md),
            "--json",
            str(js),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(js.read_text())
    assert set(data["cases"]) == set(cases)
    for row in data["cases"].values():
        assert {"anyloss", "torch"} <= set(row["impls"])
        assert all(r["fwd"] > 0 and r["fwd+bwd"] > 0 for r in row["impls"].values())
    assert "| log_cosh 64M | anyloss |" in md.read_text()

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

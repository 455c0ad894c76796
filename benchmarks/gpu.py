"""anyloss on a GPU against the native losses, torch.compile and Liger-Kernel.

One run, same data, every implementation interleaved per round::

    python benchmarks/gpu.py                      # CUDA, full sizes (under 5 minutes)
    python benchmarks/gpu.py --md docs/_generated/gpu.md --json gpu.json
    python benchmarks/gpu.py --smoke              # CPU, tiny sizes (Triton's interpreter)

Per case and implementation: the median time of the forward and of the
forward+backward (CUDA events; L2 flushed before each call by writing a
256 MB buffer), the peak extra memory of one forward+backward
(``torch.cuda.max_memory_allocated`` above what the inputs hold) and the
one-read floor (the inputs' bytes over the copy bandwidth measured in the
same run). Logits are a non-leaf copy made fresh for every call (outside the
timing), as the in-place kernels need. Liger-Kernel (its Triton cross
entropy) runs where ``liger_kernel`` imports, e.g. from a carried wheel;
JAX (``optax`` under ``jax.jit``) and CuPy (a NumPy-style transcription)
where they are installed with a GPU.

``--smoke`` runs tiny shapes on CPU tensors through Triton's interpreter:
the script's own test (``tests/test_benchmark_smoke.py``), not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Impl = Callable[[], Any]


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, interpreter")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds (default 10; smoke 2)")
    ap.add_argument("--cases", nargs="*", help="subset of the cases (default: all)")
    ap.add_argument("--md", type=Path, default=None, help="write the Markdown table here")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    return ap.parse_args()


ARGS = _parse()
if ARGS.smoke:
    os.environ["ANYLOSS_TRITON_ON_CPU"] = "1"  # (sets TRITON_INTERPRET for Triton)

import torch  # noqa: E402

import anyloss  # noqa: E402

DEVICE = "cpu" if ARGS.smoke else "cuda"
F = torch.nn.functional


# -- timing --------------------------------------------------------------------------


class Clock:
    """Elapsed milliseconds of a call: CUDA events on a GPU, else perf_counter."""

    def __init__(self) -> None:
        self.cuda = DEVICE == "cuda"
        self.flush = torch.empty(
            256 * 2**20 if self.cuda else 2**10, dtype=torch.int8, device=DEVICE
        )

    def __call__(self, fn: Impl) -> float:
        self.flush.zero_()  # evict the inputs from L2
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


def peak_extra_bytes(fn: Impl) -> float:
    """Peak memory one call allocates above what was allocated before it."""
    if DEVICE != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return float(torch.cuda.max_memory_allocated() - base)


def copy_bandwidth() -> float:
    """Bytes per second of a device-to-device copy (read + write counted)."""
    n = 2**28 if DEVICE == "cuda" else 2**16
    a = torch.empty(n, dtype=torch.float32, device=DEVICE)
    b = torch.empty_like(a)
    clock = Clock()
    times = [clock(lambda: b.copy_(a)) for _ in range(10)]
    return 2 * a.numel() * a.element_size() / (statistics.median(times[2:]) / 1e3)


# -- the cases -----------------------------------------------------------------------


def _liger_cross_entropy() -> Callable[..., Any] | None:
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy
    except Exception:  # not installed, or no GPU for it
        return None
    return liger_cross_entropy  # type: ignore[no-any-return]


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    if DEVICE != "cuda":
        return None  # (inductor's CPU code: not what this table is about)
    return torch.compile(fn)


def cases() -> dict[str, dict[str, Any]]:
    """name -> {"inputs": () -> (first (the differentiable one), *rest),
    "impls": {name: loss(*arrays)}}; sizes as in the issue's table."""
    smoke = ARGS.smoke
    g = torch.Generator(device=DEVICE).manual_seed(0)

    def normal(*shape: int, dtype: Any = torch.float32) -> Any:
        return torch.randn(*shape, generator=g, device=DEVICE, dtype=torch.float32).to(dtype)

    out: dict[str, dict[str, Any]] = {}
    liger = _liger_cross_entropy()
    for name, (n, v, dtype) in {
        "cross_entropy bf16": (
            (8, 300, torch.bfloat16) if smoke else (8192, 128256, torch.bfloat16)
        ),
        "cross_entropy f32": ((8, 300, torch.float32) if smoke else (8192, 32000, torch.float32)),
    }.items():
        logits = normal(n, v, dtype=dtype)
        targets = torch.randint(0, v, (n,), generator=g, device=DEVICE)
        impls: dict[str, Callable[..., Any]] = {
            "anyloss": lambda x, t: anyloss.cross_entropy(x, t, reduction="mean"),
            "torch": lambda x, t: F.cross_entropy(x, t),
        }
        compiled = _compiled(lambda x, t: F.cross_entropy(x, t))
        if compiled is not None:
            impls["torch.compile"] = compiled
        if liger is not None:
            impls["liger"] = lambda x, t: liger(x, t)
        out[name] = {"inputs": (logits, targets), "impls": impls, "in_place": True}
    size = 4096 if smoke else 64 * 2**20
    x, y = normal(size), normal(size)
    bits = (normal(size) > 0).float()
    out["log_cosh 64M"] = {
        "inputs": (x, y),
        "impls": {
            "anyloss": lambda a, b: anyloss.log_cosh_loss(a, b, reduction="mean"),
            "torch": lambda a, b: torch.log(torch.cosh(a - b)).mean(),
        },
    }
    out["binary_cross_entropy 64M"] = {
        "inputs": (x, bits),
        "impls": {
            "anyloss": lambda a, t: anyloss.binary_cross_entropy(a, t),
            "torch": lambda a, t: F.binary_cross_entropy_with_logits(a, t),
        },
    }
    for name in ("log_cosh 64M", "binary_cross_entropy 64M"):
        compiled = _compiled(out[name]["impls"]["torch"])
        if compiled is not None:
            out[name]["impls"]["torch.compile"] = compiled
    rows, dim = (64, 32) if smoke else (65536, 1024)
    a, p, q = normal(rows, dim), normal(rows, dim), normal(rows, dim)
    out["triplet 65536x1024"] = {
        "inputs": (a, p, q),
        "impls": {
            "anyloss": lambda a, p, q: anyloss.triplet_loss(a, p, q, reduction="mean"),
            "torch": lambda a, p, q: F.triplet_margin_loss(a, p, q),
        },
    }
    out["cosine_similarity 65536x1024"] = {
        "inputs": (a, p),
        "impls": {
            "anyloss": lambda a, b: anyloss.cosine_similarity_loss(a, b, reduction="mean"),
            "torch": lambda a, b: F.cosine_similarity(a, b, dim=1, eps=1e-8).mean(),
        },
    }
    lp = torch.log_softmax(normal(8, 300) if smoke else normal(8192, 8192), -1)
    lq = torch.log_softmax(normal(*lp.shape), -1)
    out["kl_div 64M"] = {
        "inputs": (lp, lq),
        "impls": {
            "anyloss": lambda x, t: anyloss.kl_div_loss(x, t, reduction="sum") / x.shape[0],
            "torch": lambda x, t: F.kl_div(x, t, reduction="batchmean", log_target=True),
        },
    }
    if ARGS.cases:
        out = {k: v for k, v in out.items() if k in ARGS.cases}
    return out


# -- running -------------------------------------------------------------------------


def _call(case: dict[str, Any], impl: Callable[..., Any], backward: bool) -> Impl:
    first, *rest = case["inputs"]

    def fresh() -> Any:
        # a non-leaf copy per call: in-place kernels (Liger) write into it
        leaf = first.detach().requires_grad_(backward)
        return leaf * 1 if backward else leaf

    def run(x: Any) -> None:
        loss = impl(x, *rest)
        if backward:
            loss.backward()

    # the copy is made before the clock starts: the returned call only runs
    state: dict[str, Any] = {}

    def prepare() -> None:
        state["x"] = fresh()

    def timed() -> None:
        run(state["x"])

    timed.prepare = prepare  # type: ignore[attr-defined]
    return timed


def measure(case: dict[str, Any], repeat: int, clock: Clock) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {}
    calls = {
        (name, backward): _call(case, impl, backward)
        for name, impl in case["impls"].items()
        for backward in (False, True)
    }
    for call in calls.values():  # warm-up (compilation, autotuning)
        for _ in range(2):
            call.prepare()  # type: ignore[attr-defined]
            call()
    order = list(calls)
    for r in range(repeat):
        for key in order[r % len(order) :] + order[: r % len(order)]:
            calls[key].prepare()  # type: ignore[attr-defined]
            ms = clock(calls[key])
            results.setdefault(key[0], {}).setdefault("fwd+bwd" if key[1] else "fwd", []).append(
                ms
            )
    summary: dict[str, dict[str, float]] = {}
    for name in case["impls"]:
        call = calls[name, True]
        call.prepare()  # type: ignore[attr-defined]
        summary[name] = {k: statistics.median(v) for k, v in results[name].items()}
        summary[name]["peak_mb"] = peak_extra_bytes(call) / 2**20
    return summary


def _jax_and_cupy(n: int, v: int) -> dict[str, float]:
    """optax on JAX's GPU and a NumPy-style transcription on CuPy, cross
    entropy f32, forward ms (where installed with a GPU)."""
    found: dict[str, float] = {}
    try:
        import jax
        import optax

        if jax.default_backend() == "gpu":
            key = jax.random.PRNGKey(0)
            x = jax.random.normal(key, (n, v), dtype="float32")
            t = jax.random.randint(key, (n,), 0, v)
            for name, fn in {
                "jax optax": lambda x, t: optax.softmax_cross_entropy_with_integer_labels(
                    x, t
                ).mean(),
                "jax anyloss": lambda x, t: anyloss.cross_entropy(x, t, reduction="mean"),
            }.items():
                jitted = jax.jit(fn)
                jitted(x, t).block_until_ready()
                times = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    jitted(x, t).block_until_ready()
                    times.append((time.perf_counter() - t0) * 1e3)
                found[name] = statistics.median(times)
    except Exception as exc:  # reported, not fatal
        print(f"(JAX on the GPU skipped: {exc})", file=sys.stderr)
    try:
        import cupy as cp

        x = cp.random.standard_normal((n, v), dtype=cp.float32)
        t = cp.random.randint(0, v, n)

        def transcription() -> Any:
            m = x.max(axis=1, keepdims=True)
            lse = cp.log(cp.exp(x - m).sum(axis=1)) + m[:, 0]
            return (lse - x[cp.arange(n), t]).mean()

        for name, fn in {
            "cupy transcription": transcription,
            "cupy anyloss": lambda: anyloss.cross_entropy(x, t, reduction="mean"),
        }.items():
            fn()
            times = []
            for _ in range(10):
                start, end = cp.cuda.Event(), cp.cuda.Event()
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, end))
            found[name] = statistics.median(times)
    except Exception as exc:
        print(f"(CuPy skipped: {exc})", file=sys.stderr)
    return found


def _markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['device']} (torch {meta['torch']}), "
        f"copy bandwidth {meta['bandwidth_gbs']:.0f} GB/s; median of {meta['repeat']} "
        "rounds, ms; peak extra memory of one forward+backward.",
        "",
        "| case | implementation | forward | forward+backward | extra memory (MB) | "
        "anyloss / best other (fwd+bwd) |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for case, row in results["cases"].items():
        others = [r["fwd+bwd"] for name, r in row["impls"].items() if name != "anyloss"]
        ratio = row["impls"]["anyloss"]["fwd+bwd"] / min(others) if others else float("nan")
        lines.append(f"| {case} | one-read floor | {row['floor_ms']:.3f} | | | |")
        for name, r in row["impls"].items():
            shown = f"{ratio:.2f}" if name == "anyloss" else ""
            lines.append(
                f"| {case} | {name} | {r['fwd']:.3f} | {r['fwd+bwd']:.3f} | "
                f"{r['peak_mb']:.1f} | {shown} |"
            )
    for name, ms in results.get("other_libraries", {}).items():
        lines.append(f"| cross_entropy f32 | {name} | {ms:.3f} | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py: no CUDA device (use --smoke to test the script)")
    repeat = ARGS.repeat or (2 if ARGS.smoke else 10)
    clock = Clock()
    bandwidth = copy_bandwidth()
    results: dict[str, Any] = {"cases": {}}
    for name, case in cases().items():
        inputs_bytes = sum(a.numel() * a.element_size() for a in case["inputs"])
        summary = measure(case, repeat, clock)
        results["cases"][name] = {"impls": summary, "floor_ms": inputs_bytes / bandwidth * 1e3}
        print(name, json.dumps(summary), flush=True)
    if not ARGS.smoke:
        results["other_libraries"] = _jax_and_cupy(8192, 32000)
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else platform.processor() or "CPU"
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "device": device,
        "torch": torch.__version__,
        "bandwidth_gbs": bandwidth / 1e9,
        "repeat": repeat,
    }
    results["meta"] = meta
    table = _markdown(results, meta)
    print(table)
    if ARGS.md is not None:
        ARGS.md.parent.mkdir(parents=True, exist_ok=True)
        ARGS.md.write_text(table)
    if ARGS.json is not None:
        ARGS.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")  # (the interpreter computes with NumPy)
    main()

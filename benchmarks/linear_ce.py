"""Time and measure ``anyloss.linear_cross_entropy`` against the unfused loss.

    python benchmarks/linear_ce.py                  # full run (a few minutes on 2 cores)
    python benchmarks/linear_ce.py --quick          # smoke run, small shapes, seconds
    python benchmarks/linear_ce.py --only numpy,torch --json out.json

The anchor case: hidden 4096 x 256, vocabulary 32000, float32, random
targets, reduction 'mean' (the logits: 4096 * 32000 * 4 bytes = 524 MB).
MLX runs on the CPU at about 1-2 GFLOP/s, so its rows are cut to
``--mlx-rows`` (default 256; same H and V) to keep the run short.

Time: every implementation of a (library, pass) group is warmed up (JAX
compiled ahead of time), then timed in interleaved rounds, median reported
(``time_interleaved`` of ``benchmarks/run.py``). Forward on NumPy, PyTorch,
JAX (``jax.jit``) and MLX; forward+backward (gradients of hidden and weight)
on the last three. The ratio is anyloss / the other implementation (below 1:
anyloss is faster).

Peak extra memory (bytes allocated beyond the inputs during one call; the
gradients of a forward+backward call count, they are the call's outputs):

- NumPy: ``tracemalloc`` peak (NumPy's allocations are traced) during a call
  made after a first one.
- PyTorch and JAX (their CPU allocations are invisible to tracemalloc, and
  ``jax.devices()[0].memory_stats()`` is None on the CPU): the resident set
  of a fresh process per case (``--child``). The process makes its inputs,
  warms up with a call on the first 64 rows (JAX: then compiles the full-size
  call ahead of time), frees, calls ``malloc_trim``, resets the peak RSS
  (``echo 5 > /proc/self/clear_refs``, Linux) and reads ``VmRSS``; it then
  makes one call and reads ``VmHWM``. Extra = VmHWM - VmRSS. glibc is told to
  serve every block above 128 KiB with mmap and to return freed memory at
  once (``GLIBC_TUNABLES``), so memory freed by the warm-up does not hide a
  later peak. Where the peak cannot be reset, ``ru_maxrss`` after minus before
  is used instead (a lower bound that includes JAX's compilation); the JSON
  says which. With ``--quick`` one process per library serves all its cases.
- MLX: its allocator's own count, ``mx.get_peak_memory()`` after
  ``mx.reset_peak_memory()``, minus ``mx.get_active_memory()`` before the call.

A vocabulary sweep (hidden 2048 x 256, V = 4000 ... 64000) records the peak
extra memory of the fused and the unfused loss on NumPy (forward,
tracemalloc) and PyTorch (forward+backward, RSS), for the memory plot of the
documentation.

Threads: ``--threads`` (default: all CPUs) sets OMP/OpenBLAS/MKL/numba's
thread counts and ``torch.set_num_threads``; JAX and MLX use their own pools.
Prints Markdown tables; writes JSON (``--json``, default
``benchmarks/results/linear_ce-<full|quick>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _threads_from_argv(argv: list[str]) -> int:
    """``--threads N`` read before NumPy is imported (BLAS reads it at import)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.partition("=")[2])
    return os.cpu_count() or 1


THREADS = _threads_from_argv(sys.argv[1:])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/run.py: timing and memory helpers)

import anyloss  # noqa: E402

Thunk = Callable[[], Any]
T0 = time.perf_counter()
ANCHOR = (4096, 256, 32000)
QUICK = (256, 64, 2000)
SWEEP_ROWS, SWEEP_WIDTH = 2048, 256
SWEEP_V = (4000, 8000, 16000, 32000, 64000)
QUICK_SWEEP = (128, 64, (500, 1000, 2000))
WARM_ROWS = 64
LIBS = ("numpy", "torch", "jax", "mlx")
MODULES = {"numpy": "numpy", "torch": "torch", "jax": "jax", "mlx": "mlx.core"}
# glibc: blocks above 128 KiB from mmap, freed memory returned at once
TUNABLES = "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072"


def log(msg: str) -> None:
    """A progress line on stderr, with the seconds since the start."""
    print(f"[{time.perf_counter() - T0:5.0f} s] {msg}", file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------


@dataclass
class Data:
    """One case's inputs (NumPy, float32; targets int64)."""

    hidden: np.ndarray
    weight: np.ndarray
    targets: np.ndarray

    @property
    def logits_bytes(self) -> int:
        return self.hidden.shape[0] * self.weight.shape[0] * 4

    def head(self, rows: int) -> Data:
        """The first ``rows`` rows (a small warm-up call)."""
        return Data(self.hidden[:rows].copy(), self.weight, self.targets[:rows].copy())


def make_data(n: int, h: int, v: int, seed: int = 0) -> Data:
    """Hidden ~ N(0, 1), weight ~ N(0, 1/H) (logits ~ N(0, 1)), random targets."""
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n, h), dtype=np.float32)
    weight = rng.standard_normal((v, h), dtype=np.float32)
    weight *= np.float32(h**-0.5)
    targets = rng.integers(0, v, size=n, dtype=np.int64)
    return Data(hidden, weight, targets)


# -- implementations -------------------------------------------------------------------
# A factory takes the data and ``backward`` and returns a thunk (one call of
# the loss, gradients of hidden and weight with ``backward``), or None where
# the library has no such pass. Thunks keep no state from call to call.

Factory = Callable[[Data, bool], "Thunk | None"]


def _numpy(kind: str) -> Factory:
    def make(d: Data, backward: bool) -> Thunk | None:
        if backward:
            return None
        h, w, t = d.hidden, d.weight, d.targets
        if kind == "anyloss":
            return lambda: anyloss.linear_cross_entropy(h, w, t)
        if kind == "unfused":
            return lambda: anyloss.cross_entropy(h @ w.T, t, reduction="mean")

        def transcription() -> Any:
            x = h @ w.T
            m = x.max(axis=1, keepdims=True)
            lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
            return (lse - x[np.arange(x.shape[0]), t]).mean()

        return transcription

    return make


def _torch(kind: str) -> Factory:
    def make(d: Data, backward: bool) -> Thunk | None:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(THREADS)
        h, w = torch.from_numpy(d.hidden), torch.from_numpy(d.weight)
        t = torch.from_numpy(d.targets)
        if backward:
            h = h.clone().requires_grad_(True)
            w = w.clone().requires_grad_(True)
        if kind == "anyloss":
            fn = lambda: anyloss.linear_cross_entropy(h, w, t)  # noqa: E731
        elif kind == "unfused":
            fn = lambda: F.cross_entropy(h @ w.T, t)  # noqa: E731
        elif kind == "lce":
            fn = lambda: F.linear_cross_entropy(h, w, t)  # noqa: E731
        else:
            options = torch.nn.LinearCrossEntropyOptions()
            fn = lambda: F.linear_cross_entropy(h, w, t, options=options)  # noqa: E731
        if not backward:

            def fwd() -> Any:
                with torch.no_grad():
                    return fn()

            return fwd

        def fwd_bwd() -> Any:
            out = fn()
            out.backward()
            h.grad = w.grad = None  # allocated afresh by the next call
            return out.detach()

        return fwd_bwd

    return make


def _jax(kind: str) -> Factory:
    def make(d: Data, backward: bool) -> Thunk | None:
        import jax
        import jax.numpy as jnp

        h, w, t = (jnp.asarray(a) for a in (d.hidden, d.weight, d.targets))
        if kind == "anyloss":

            def f(h: Any, w: Any, t: Any) -> Any:
                return anyloss.linear_cross_entropy(h, w, t)

        else:
            optax = _optax()

            def f(h: Any, w: Any, t: Any) -> Any:
                x = h @ w.T
                if optax is not None:
                    return optax.softmax_cross_entropy_with_integer_labels(x, t).mean()
                picked = jnp.take_along_axis(x, t[:, None], axis=1)[:, 0]
                return (jax.nn.logsumexp(x, axis=1) - picked).mean()

        g = jax.value_and_grad(f, argnums=(0, 1)) if backward else f
        compiled = jax.jit(g).lower(h, w, t).compile()
        return lambda: jax.block_until_ready(compiled(h, w, t))

    return make


def _optax() -> Any:
    try:
        import optax
    except ImportError:  # a jnp transcription instead
        return None
    return optax


def _mlx(kind: str) -> Factory:
    def make(d: Data, backward: bool) -> Thunk | None:
        import mlx.core as mx
        import mlx.nn.losses as L

        h, w, t = (mx.array(a) for a in (d.hidden, d.weight, d.targets))
        mx.eval(h, w, t)
        if kind == "anyloss":
            f = lambda h, w: anyloss.linear_cross_entropy(h, w, t)  # noqa: E731
        else:
            f = lambda h, w: L.cross_entropy(h @ w.T, t, reduction="mean")  # noqa: E731
        g = mx.value_and_grad(f, argnums=[0, 1]) if backward else f

        def call() -> Any:
            out = g(h, w)
            mx.eval(out)
            return out

        return call

    return make


def _jax_unfused_name() -> str:
    return "optax(h @ w.T)" if _optax() is not None else "jnp logsumexp(h @ w.T)"


def implementations(lib: str) -> list[tuple[str, Factory]]:
    """(name, factory) of each implementation on ``lib``; anyloss first."""
    if lib == "numpy":
        return [
            ("anyloss", _numpy("anyloss")),
            ("anyloss.cross_entropy(h @ w.T)", _numpy("unfused")),
            ("NumPy logsumexp(h @ w.T)", _numpy("transcription")),
        ]
    if lib == "torch":
        return [
            ("anyloss", _torch("anyloss")),
            ("F.cross_entropy(h @ w.T)", _torch("unfused")),
            ("F.linear_cross_entropy", _torch("lce")),
            ("F.linear_cross_entropy[chunked]", _torch("lce_chunked")),
        ]
    if lib == "jax":
        return [("anyloss", _jax("anyloss")), (_jax_unfused_name(), _jax("unfused"))]
    return [("anyloss", _mlx("anyloss")), ("mlx cross_entropy(h @ w.T)", _mlx("unfused"))]


def factory(lib: str, name: str) -> Factory:
    return dict(implementations(lib))[name]


# -- memory ----------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise OSError(f"no {field} in /proc/self/status")
    return int(match.group(1))


def _maxrss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux >= 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _status_kib("VmHWM")
    except OSError:
        return False
    return True


def child_measure(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: the peak extra RSS of one call (see the docstring)."""
    d = make_data(spec["n"], spec["h"], spec["v"])
    make = factory(spec["lib"], spec["impl"])
    warm = make(d.head(min(WARM_ROWS, spec["n"])), spec["backward"])
    if warm is None:
        return {**spec, "error": "no such pass"}
    warm()
    del warm
    thunk = make(d, spec["backward"])  # JAX compiles here
    assert thunk is not None
    _trim()
    if _reset_peak():
        method = "VmHWM after reset - VmRSS"
        before = _status_kib("VmRSS") * 1024
        thunk()
        peak = _status_kib("VmHWM") * 1024
    else:  # pragma: no cover (not Linux)
        method = "ru_maxrss after - before (lower bound)"
        before = _maxrss_bytes()
        thunk()
        peak = _maxrss_bytes()
    return {**spec, "extra_bytes": max(0, peak - before), "method": method}


def rss_extra(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run :func:`child_measure` for ``specs`` in one new process."""
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = ":".join(filter(None, (env.get("GLIBC_TUNABLES"), TUNABLES)))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(THREADS)]
    res = subprocess.run(
        [*cmd, "--child", json.dumps(specs)], env=env, capture_output=True, text=True
    )
    if res.returncode != 0:
        err = (res.stderr.strip().splitlines() or ["?"])[-1][:200]
        return [{**s, "error": f"child failed: {err}"} for s in specs]
    return list(json.loads(res.stdout.strip().splitlines()[-1]))


def mlx_extra(thunk: Thunk) -> int:
    """MLX's allocator: peak active bytes during one call minus before it."""
    import mlx.core as mx

    thunk()
    gc.collect()
    mx.clear_cache()
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    thunk()
    return int(mx.get_peak_memory() - before)


# -- the run ---------------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    repeat: int
    budget: float
    libs: list[str]
    mlx_rows: int


def shape_of_lib(cfg: Config, lib: str) -> tuple[int, int, int]:
    n, h, v = QUICK if cfg.quick else ANCHOR
    if lib == "mlx" and not cfg.quick:
        n = min(n, cfg.mlx_rows)
    return n, h, v


def time_lib(cfg: Config, lib: str, d: Data) -> list[dict[str, Any]]:
    """Timing rows of one library: anyloss vs each other implementation."""
    rows = []
    for backward in (False, True):
        thunks = {}
        for name, make in implementations(lib):
            thunk = make(d, backward)
            if thunk is not None:
                thunks[name] = thunk
        if len(thunks) < 2:
            continue
        label = "forward+backward" if backward else "forward"
        log(f"{lib} {label}: {', '.join(thunks)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            times = bench.time_interleaved(thunks, cfg.repeat, cfg.budget)
        ours = times.get("anyloss")
        for name, t in times.items():
            if name == "anyloss":
                continue
            rows.append(
                {
                    "lib": lib,
                    "pass": label,
                    "shape": list(shape_of_lib(cfg, lib)),
                    "baseline": name,
                    "anyloss_s": ours["median"] if ours else None,
                    "baseline_s": t["median"],
                    "anyloss_min_s": ours["min"] if ours else None,
                    "baseline_min_s": t["min"],
                    "rounds": t["n"],
                    "ratio": ours["median"] / t["median"] if ours else None,
                }
            )
        del thunks
        gc.collect()
    return rows


def memory_lib(cfg: Config, lib: str, d: Data) -> list[dict[str, Any]]:
    """Peak extra memory of every implementation on ``lib`` (both passes)."""
    n, h, v = shape_of_lib(cfg, lib)
    out = []
    passes = (False,) if lib == "numpy" else (False, True)
    if lib == "numpy":
        for name, make in implementations(lib):
            thunk = make(d, False)
            assert thunk is not None
            peak = bench.peak_memory(thunk)
            out.append(_mem_row(lib, name, False, (n, h, v), peak, "tracemalloc peak"))
            del thunk
            gc.collect()
        return out
    if lib == "mlx":
        for backward in passes:
            for name, make in implementations(lib):
                thunk = make(d, backward)
                assert thunk is not None
                peak = mlx_extra(thunk)
                out.append(_mem_row(lib, name, backward, (n, h, v), peak, "mx.get_peak_memory"))
                del thunk
                gc.collect()
        return out
    specs = [
        {"lib": lib, "impl": name, "backward": backward, "n": n, "h": h, "v": v}
        for backward in passes
        for name, _ in implementations(lib)
    ]
    log(f"{lib} memory: {len(specs)} cases (RSS, new processes)")
    results = rss_extra(specs) if cfg.quick else [r for s in specs for r in rss_extra([s])]
    for r in results:
        row = _mem_row(lib, r["impl"], r["backward"], (n, h, v), r.get("extra_bytes"), "")
        row["method"] = r.get("method") or r.get("error", "")
        out.append(row)
    return out


def _mem_row(
    lib: str, name: str, backward: bool, shape: tuple[int, int, int], peak: int | None, method: str
) -> dict[str, Any]:
    n, h, v = shape
    logits = n * v * 4
    grads = (n * h + v * h) * 4 if backward else 0
    return {
        "lib": lib,
        "impl": name,
        "pass": "forward+backward" if backward else "forward",
        "shape": [n, h, v],
        "extra_bytes": peak,
        "logits_bytes": logits,
        "grad_bytes": grads,
        "pct_of_logits": None if peak is None else 100.0 * peak / logits,
        "pct_beyond_grads": None if peak is None else 100.0 * (peak - grads) / logits,
        "method": method,
    }


def sweep(cfg: Config) -> list[dict[str, Any]]:
    """Peak extra memory vs vocabulary: fused vs unfused, NumPy and torch."""
    n, h, vs = QUICK_SWEEP if cfg.quick else (SWEEP_ROWS, SWEEP_WIDTH, SWEEP_V)
    rows: list[dict[str, Any]] = []
    if "numpy" in cfg.libs:
        for v in vs:
            d = make_data(n, h, v)
            for name in ("anyloss", "anyloss.cross_entropy(h @ w.T)"):
                thunk = factory("numpy", name)(d, False)
                assert thunk is not None
                peak = bench.peak_memory(thunk)
                row = _mem_row("numpy", name, False, (n, h, v), peak, "tracemalloc peak")
                rows.append(row)
                del thunk
            del d
            gc.collect()
            log(f"sweep numpy V={v}")
    if "torch" in cfg.libs:
        specs = [
            {"lib": "torch", "impl": name, "backward": True, "n": n, "h": h, "v": v}
            for v in vs
            for name in ("anyloss", "F.cross_entropy(h @ w.T)")
        ]
        log(f"sweep torch: {len(specs)} cases (RSS)")
        results = rss_extra(specs) if cfg.quick else [r for s in specs for r in rss_extra([s])]
        for r in results:
            row = _mem_row("torch", r["impl"], True, (n, h, r["v"]), r.get("extra_bytes"), "")
            row["method"] = r.get("method") or r.get("error", "")
            rows.append(row)
    return rows


# -- printing --------------------------------------------------------------------------


def _mb(b: int | None) -> str:
    return "-" if b is None else f"{b / 1e6:.1f}"


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{p:.1f}%"


def tables(
    timing: list[dict[str, Any]], memory: list[dict[str, Any]], sw: list[dict[str, Any]]
) -> str:
    lines: list[str] = []
    if timing:
        lines += [
            "Time, median ms (ratio = anyloss / baseline; below 1: anyloss faster):",
            "",
            "| library | pass | shape (N, H, V) | anyloss | baseline | baseline ms | ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in timing:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            lines.append(
                f"| {r['lib']} | {r['pass']} | {tuple(r['shape'])} | {bench.ms(r['anyloss_s'])} "
                f"| {r['baseline']} | {bench.ms(r['baseline_s'])} | {ratio} |"
            )
    if memory:
        lines += [
            "",
            "Peak extra memory (beyond the inputs; % of the logits N*V*4 bytes; "
            "'beyond grads': minus the gradients of hidden and weight):",
            "",
            "| library | pass | implementation | extra MB | % of logits | beyond grads | method |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in memory:
            beyond = _pct(r["pct_beyond_grads"]) if r["grad_bytes"] else "-"
            lines.append(
                f"| {r['lib']} | {r['pass']} | {r['impl']} | {_mb(r['extra_bytes'])} "
                f"| {_pct(r['pct_of_logits'])} | {beyond} | {r['method']} |"
            )
    if sw:
        lines += [
            "",
            "Vocabulary sweep, peak extra memory MB (% of the logits); NumPy forward "
            "(tracemalloc), torch forward+backward (RSS):",
            "",
        ]
        keys = sorted({(r["lib"], r["impl"]) for r in sw}, key=lambda k: (k[0] != "numpy", k))
        lines += [
            "| N x H | V | logits MB | "
            + " | ".join(f"{lib}: {name}" for lib, name in keys)
            + " |",
            "|---|---|---|" + "---|" * len(keys),
        ]
        for v in sorted({r["shape"][2] for r in sw}):
            at = {(r["lib"], r["impl"]): r for r in sw if r["shape"][2] == v}
            first = next(iter(at.values()))
            cells = []
            for k in keys:
                r = at.get(k)
                cells.append(
                    "-" if r is None else f"{_mb(r['extra_bytes'])} ({_pct(r['pct_of_logits'])})"
                )
            n, h, _ = first["shape"]
            lines.append(
                f"| {n} x {h} | {v} | {_mb(first['logits_bytes'])} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    out["anyloss"] = getattr(anyloss, "__version__", "?")
    for lib, mod in (("torch", "torch"), ("jax", "jax"), ("mlx", "mlx.core"), ("optax", "optax")):
        if lib in sys.modules or mod in sys.modules:
            m = sys.modules[mod]
            out[lib] = str(getattr(m, "__version__", "?"))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small shapes, one round (smoke test)")
    ap.add_argument("--only", default=",".join(LIBS), help="libraries, e.g. numpy,torch")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds (default 5; quick 1)")
    ap.add_argument("--budget", type=float, default=4.0, help="seconds per implementation")
    ap.add_argument("--threads", type=int, default=THREADS, help="threads (default: all CPUs)")
    ap.add_argument("--mlx-rows", type=int, default=256, help="MLX's rows (default 256)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the vocabulary sweep")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:  # a memory measurement in a fresh process
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = [child_measure(s) for s in json.loads(args.child)]
        print(json.dumps(out))
        return {"child": out}

    wanted = [lib.strip() for lib in args.only.split(",") if lib.strip()]
    unknown = sorted(set(wanted) - set(LIBS))
    if unknown:
        ap.error(f"--only: unknown libraries {unknown}; choose from {','.join(LIBS)}")
    libs = []
    for lib in LIBS:
        if lib not in wanted:
            continue
        if bench.peers.installed(MODULES[lib]):
            libs.append(lib)
        else:
            print(f"{lib}: not installed, skipped")
    cfg = Config(
        args.quick, args.repeat or (1 if args.quick else 5), args.budget, libs, args.mlx_rows
    )
    load = os.getloadavg()
    started = time.perf_counter()
    print(
        f"linear_cross_entropy benchmark: {'quick' if cfg.quick else 'full'}, libs {libs}, "
        f"threads {THREADS}, load average {load[0]:.2f}",
        file=sys.stderr,
        flush=True,
    )
    timing: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    for lib in libs:
        d = make_data(*shape_of_lib(cfg, lib))
        timing += time_lib(cfg, lib, d)
        memory += memory_lib(cfg, lib, d)
        del d
        gc.collect()
    sw = [] if args.no_sweep else sweep(cfg)
    table = tables(timing, memory, sw)
    meta = {
        "mode": "quick" if cfg.quick else "full",
        "anchor": list(QUICK if cfg.quick else ANCHOR),
        "mlx_rows": cfg.mlx_rows,
        "dtype": "float32",
        "reduction": "mean",
        "repeat": cfg.repeat,
        "budget_s": cfg.budget,
        "threads": THREADS,
        "cpus": os.cpu_count(),
        "cpu": bench.machine_name(),
        "platform": platform.platform(),
        "versions": versions(),
        "loadavg_start": load,
        "loadavg_end": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["python benchmarks/linear_ce.py", *(argv or sys.argv[1:])]),
    }
    print(
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cpus']} CPUs, {THREADS} threads; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + f"; load average {load[0]:.2f} at the start, {meta['loadavg_end'][0]:.2f} at the end; "
        f"{meta['wall_s']:.0f} s).\n"
    )
    print(table)
    result = {"meta": meta, "timing": timing, "memory": memory, "sweep": sw, "table": table}
    path = args.json or HERE / "results" / f"linear_ce-{meta['mode']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=float))
    print(f"\nwrote {path}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()

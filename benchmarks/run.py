"""Time anyloss against its peers on the same data, in the same run.

    python benchmarks/run.py                      # every loss, realistic sizes
    python benchmarks/run.py --size tiny          # smoke run, seconds
    python benchmarks/run.py --losses cross_entropy mse_loss --plot bench.png

For each loss: the same float32 data in every library; every implementation
is warmed up (JAX compiled) and then timed in rounds, interleaved (one call of
each per round, in a rotating order), and the median and min of the rounds
are reported. A reference "one pass" time is the time to read every input
once, with as many threads as the kernels use. Forward on NumPy, PyTorch,
JAX (``jax.jit``) and MLX; forward+backward on the autograd libraries, native
loss vs anyloss on that library's arrays. See ``benchmarks/peers.py`` for what
each column runs. Prints tables and writes JSON (``--json``); ``--plot``
draws a bar chart.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's idle threads must not spin
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import peers  # noqa: E402

import anyloss  # noqa: E402
from anyloss import kernels  # noqa: E402

FORWARD = ("one-pass", "kernel", "anyloss", "numpy", "torch", "jax", "mlx")
PEERS = ("numpy", "torch", "jax", "mlx")
AUTOGRAD = ("torch", "jax", "mlx")


# -- one pass over the inputs ------------------------------------------------------


def one_pass(arrays: list[np.ndarray]) -> Callable[[], Any] | None:
    """Read every input once (a float32 sum of each), threads as the kernels.

    float32: a float64 sum converts every element, and was compute-bound here
    (4096x32000 float32: 104 ms on one core against 71 for the float32 sum
    and 64 for ``np.max``, a third slower than memory)."""
    if not arrays or not kernels.available():
        return None
    from numba import njit

    @njit(nogil=True, cache=True, fastmath=True)
    def _sum(x: Any, out: Any, lo: int, hi: int) -> None:
        acc = np.float32(0.0)
        for i in range(lo * 4096, min(hi * 4096, x.size)):
            acc += np.float32(x[i])
        out[lo] = acc

    flats = [a.reshape(-1) for a in arrays]

    def run() -> float:
        total = 0.0
        for f in flats:
            blocks = -(-f.size // 4096)
            out = np.zeros(blocks)
            kernels._cpu.parallel(_sum, (f, out), blocks, 4096 * 0.1)
            total += float(out.sum())
        return total

    return run


# -- timing --------------------------------------------------------------------------


def time_interleaved(
    thunks: dict[str, Callable[[], Any]], repeat: int, budget: float
) -> dict[str, dict[str, float]]:
    """Median and min over rounds; each round calls every thunk once."""
    times: dict[str, list[float]] = {name: [] for name in thunks}
    live = dict(thunks)
    for name, thunk in list(live.items()):  # warm-up (compiles, caches, page faults)
        try:
            t0 = time.perf_counter()
            thunk()
            if time.perf_counter() - t0 < 1.0:
                thunk()
        except Exception as exc:  # a peer that cannot run this case
            print(f"    {name}: skipped ({type(exc).__name__}: {str(exc)[:80]})", file=sys.stderr)
            del live[name]
            del times[name]
    spent = dict.fromkeys(live, 0.0)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeat):
            names = list(live)
            k = r % max(1, len(names))
            for name in names[k:] + names[:k]:
                if len(times[name]) >= 3 and spent[name] > budget:
                    continue
                t0 = time.perf_counter()
                live[name]()
                dt = time.perf_counter() - t0
                times[name].append(dt)
                spent[name] += dt
    finally:
        if gc_was:
            gc.enable()
    return {
        name: {"median": statistics.median(ts), "min": min(ts), "n": len(ts)}
        for name, ts in times.items()
        if ts
    }


def peak_memory(thunk: Callable[[], Any]) -> int:
    """Peak bytes allocated (tracemalloc: Python and NumPy) during one call."""
    thunk()
    gc.collect()
    tracemalloc.start()
    try:
        thunk()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def cold_latency() -> dict[str, float]:
    """First call of a kernel in a new process: compiling (empty cache) and
    loading from the on-disk cache; plus ``import anyloss`` alone."""
    import tempfile

    code = (
        "import time; t0 = time.perf_counter(); import numpy as np, anyloss, sys; "
        "t1 = time.perf_counter(); from anyloss import kernels; "
        "x = np.ones((256, 1000), np.float32); t = np.zeros(256, np.int64); "
        "t2 = time.perf_counter(); "
        "r = kernels.run('cross_entropy', 'mean', logits=x, targets=t, _force=True); "
        "t3 = time.perf_counter(); assert r is not None; "
        "print(t1 - t0, t3 - t2, 'numba' in sys.modules)"
    )
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("compile", "cached"):
            res = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            imp, first, _ = res.stdout.split()
            out[f"first_call_{label}_s"] = float(first)
            out["import_anyloss_s"] = float(imp)
    code_imp = "import sys, anyloss; print('numba' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code_imp], capture_output=True, text=True)
    out["import_pulls_numba"] = float(res.stdout.strip() == "True")
    return out


# -- the run -------------------------------------------------------------------------


def bench_case(
    case: peers.Case,
    libs: set[str],
    repeat: int,
    budget: float,
    backward: bool,
    forward: bool = True,
) -> dict[str, Any]:
    label = peers.case_label(case)
    if not forward:
        result: dict[str, Any] = {"loss": label, "shape": case.shape, "forward": {}}
        return _backward(case, label, libs, repeat, budget, result)
    fwd: dict[str, Callable[[], Any]] = {}
    ref = one_pass([case.arrays[k] for k in case.reads])
    if ref is not None:
        fwd["one-pass"] = ref
    k = peers.kernel_impl(case)
    if k is not None:
        fwd["kernel"] = k
    fwd["anyloss"] = peers.anyloss_impl(case)
    if "numpy" in libs:
        impl = peers.numpy_impl(case)
        if impl is not None:
            fwd["numpy"] = impl
    makers = {"torch": peers.torch_impl, "jax": peers.jax_impl, "mlx": peers.mlx_impl}
    for lib in AUTOGRAD:
        if lib in libs:
            impl = makers[lib](case, backward=False, use_anyloss=False)
            if impl is not None:
                fwd[lib] = impl
    print(f"  {label}: forward", file=sys.stderr, flush=True)
    result = {
        "loss": label,
        "shape": case.shape,
        "forward": time_interleaved(fwd, repeat, budget),
    }
    if backward:
        _backward(case, label, libs, repeat, budget, result)
    if label == "cross_entropy":
        size = case.arrays["logits"].nbytes
        mem = {"logits_bytes": size}
        if k is not None:
            mem["kernel_peak_bytes"] = peak_memory(k)
        mem["anyloss_peak_bytes"] = peak_memory(fwd["anyloss"])
        if "numpy" in fwd:
            mem["numpy_peak_bytes"] = peak_memory(fwd["numpy"])
        result["memory"] = mem
    return result


def _backward(
    case: peers.Case,
    label: str,
    libs: set[str],
    repeat: int,
    budget: float,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Time forward+backward, native loss vs anyloss, on the autograd libraries."""
    makers = {"torch": peers.torch_impl, "jax": peers.jax_impl, "mlx": peers.mlx_impl}
    both: dict[str, Callable[[], Any]] = {}
    for lib in AUTOGRAD:
        if lib not in libs:
            continue
        for use, name in ((False, lib), (True, f"anyloss[{lib}]")):
            impl = makers[lib](case, backward=True, use_anyloss=use)
            if impl is not None:
                both[name] = impl
    print(f"  {label}: forward+backward", file=sys.stderr, flush=True)
    result["forward_backward"] = time_interleaved(both, repeat, budget)
    return result


def fastest(fwd: dict[str, dict[str, float]], names: tuple[str, ...]) -> tuple[str, float] | None:
    have = [(fwd[n]["median"], n) for n in names if n in fwd]
    if not have:
        return None
    t, n = min(have)
    return n, t


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = {}
    for r in results:
        fwd = r["forward"]
        best = fastest(fwd, PEERS)
        ours = "anyloss"
        if best is None or ours not in fwd:
            continue
        ratios[r["loss"]] = fwd[ours]["median"] / best[1]
    geo = math.exp(sum(math.log(v) for v in ratios.values()) / len(ratios)) if ratios else None
    return {
        "ours_over_best_peer": ratios,
        "geomean": geo,
        "worst": max(ratios.values(), default=None),
        "forward_backward_geomean": {
            lib: {"geomean": g, "worst": w} for lib, (g, w) in backward_geomeans(results).items()
        },
    }


def backward_geomeans(results: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per autograd library: the geometric mean and the worst of anyloss[lib] /
    lib's own loss, forward+backward, over the cases that have both."""
    out = {}
    for lib in AUTOGRAD:
        ratios = []
        for r in results:
            fb = r.get("forward_backward", {})
            a, b = fb.get(lib), fb.get(f"anyloss[{lib}]")
            if a and b:
                ratios.append(b["median"] / a["median"])
        if ratios:
            geo = math.exp(sum(math.log(v) for v in ratios) / len(ratios))
            out[lib] = (geo, max(ratios))
    return out


def ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.3g}" if v * 1e3 < 100 else f"{v * 1e3:.0f}"


def print_tables(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines: list[str] = []
    fwd_rows = [r for r in results if r["forward"]]
    head = (
        "| loss | shape | "
        + " | ".join(FORWARD)
        + " | best peer | ours / best peer | ours / one-pass |"
    )
    if fwd_rows:
        lines += [
            "Forward, median ms (ours = the public anyloss function on NumPy arrays; "
            "kernel = the fused kernel it calls, without the argument checks):",
            "",
        ]
        lines += [head, "|" + "---|" * (len(FORWARD) + 5)]
    for r in fwd_rows:
        fwd = r["forward"]
        if not fwd:
            continue
        cells = [ms(fwd[n]["median"]) if n in fwd else "-" for n in FORWARD]
        best = fastest(fwd, PEERS)
        ours = "anyloss"
        ratio = f"{fwd[ours]['median'] / best[1]:.2f}" if best and ours in fwd else "-"
        vs_pass = (
            f"{fwd[ours]['median'] / fwd['one-pass']['median']:.1f}"
            if "one-pass" in fwd and ours in fwd
            else "-"
        )
        lines.append(
            f"| {r['loss']} | {r['shape']} | "
            + " | ".join(cells)
            + f" | {best[0] if best else '-'} | {ratio} | {vs_pass} |"
        )
    if summary.get("geomean"):
        lines += [
            "",
            f"Geometric mean of ours / best peer: {summary['geomean']:.2f}; "
            f"worst: {summary['worst']:.2f}",
        ]
    bwd = [r for r in results if "forward_backward" in r]
    if bwd:
        if lines:
            lines.append("")
        lines += ["Forward+backward, median ms (anyloss[lib] / lib's own loss):", ""]
        lines += [
            "| loss | " + " | ".join(f"{lib} | anyloss[{lib}] | ratio" for lib in AUTOGRAD) + " |"
        ]
        lines += ["|---|" + "---|---|---|" * len(AUTOGRAD)]
        for r in bwd:
            fb = r["forward_backward"]
            cells = []
            for lib in AUTOGRAD:
                a, b = fb.get(lib), fb.get(f"anyloss[{lib}]")
                cells += [ms(a["median"]) if a else "-", ms(b["median"]) if b else "-"]
                cells.append(f"{b['median'] / a['median']:.2f}" if a and b else "-")
            lines.append(f"| {r['loss']} | " + " | ".join(cells) + " |")
        geo = backward_geomeans(bwd)
        if geo:
            lines += [
                "",
                "Geometric mean of anyloss[lib] / lib's own loss (worst): "
                + ", ".join(f"{lib} {g:.2f} ({w:.2f})" for lib, (g, w) in geo.items()),
            ]
    mem = [r for r in results if "memory" in r]
    for r in mem:
        m = r["memory"]
        size = m["logits_bytes"]
        parts = [
            f"{k.replace('_peak_bytes', '')} {m[k] / size * 100:.2f}%"
            for k in m
            if k.endswith("_peak_bytes")
        ]
        lines += [
            "",
            f"Peak extra memory, {r['loss']} (tracemalloc, % of the logits): " + ", ".join(parts),
        ]
    text = "\n".join(lines)
    print(text)
    return text


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in results if r["forward"]]
    names = [n for n in FORWARD if any(n in r["forward"] for r in results)]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(results)), 5))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        xs, ys = [], []
        for j, r in enumerate(results):
            if n in r["forward"]:
                xs.append(j + i * width)
                ys.append(r["forward"][n]["median"] * 1e3)
        ax.bar(xs, ys, width, label=n)
    ax.set_yscale("log")
    ax.set_ylabel("forward, median ms (log scale)")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(results))])
    ax.set_xticklabels([r["loss"] for r in results], rotation=35, ha="right")
    ax.legend(ncol=4, fontsize=8)
    ax.set_title("anyloss vs peers (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--size", choices=list(peers.SIZES), default="full")
    ap.add_argument("--losses", nargs="*", help="subset of losses (default: all)")
    ap.add_argument("--libs", default="numpy,torch,jax,mlx", help="peers to run")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds (default 7; tiny: 3)")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds per implementation")
    ap.add_argument("--no-backward", action="store_true", help="forward only")
    ap.add_argument("--no-forward", action="store_true", help="forward+backward only")
    ap.add_argument("--cold", action="store_true", help="measure cold first-call latency")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument("--plot", type=Path, default=None, help="write a bar chart (PNG)")
    ap.add_argument(
        "--md", type=Path, default=None, help="write the tables as Markdown (with the machine)"
    )
    args = ap.parse_args(argv)

    libs = {lib.strip() for lib in args.libs.split(",") if lib.strip()}
    libs = {
        lib for lib in libs if lib == "numpy" or peers.installed({"mlx": "mlx.core"}.get(lib, lib))
    }
    repeat = args.repeat or (3 if args.size == "tiny" else 7)
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = (float("nan"),) * 3
    print(
        f"anyloss {anyloss.__version__}, size {args.size}, libs {sorted(libs)}, "
        f"kernels {'on' if kernels.available() else 'off'}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, cpus {os.cpu_count()}",
        file=sys.stderr,
    )
    results = []
    for case in peers.make_cases(args.size, args.losses):
        results.append(
            bench_case(case, libs, repeat, args.budget, not args.no_backward, not args.no_forward)
        )
        del case
        gc.collect()
    summary = summarize(results)
    meta = {
        "size": args.size,
        "repeat": repeat,
        "loadavg_start": load,
        "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "kernels": kernels.available(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if args.cold and kernels.available():
        meta["cold"] = cold_latency()
    table = print_tables(results, summary)
    if "cold" in meta:
        c = meta["cold"]
        print(
            f"\nCold first call (cross_entropy kernel, new process): "
            f"{c['first_call_compile_s']:.2f} s compiling, "
            f"{c['first_call_cached_s'] * 1e3:.0f} ms from the disk cache; "
            f"import anyloss {c['import_anyloss_s'] * 1e3:.0f} ms "
            f"(imports numba: {bool(c['import_pulls_numba'])})"
        )
    out = {"meta": meta, "summary": summary, "results": results, "table": table}
    path = args.json or HERE / "results" / f"latest-{args.size}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=float))
    print(f"\nwrote {path}", file=sys.stderr)
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(markdown(meta, table, argv), encoding="utf-8")
        print(f"wrote {args.md}", file=sys.stderr)
    return out


def markdown(meta: dict[str, Any], table: str, argv: list[str] | None) -> str:
    """The tables with the command and the machine they were measured on."""
    command = " ".join(["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    start, end = meta["loadavg_start"], meta.get("loadavg_end") or (float("nan"),)
    lines = [
        f"Measured {meta['date']} with `{command}` on {machine_name()} "
        f"({meta['cpus']} CPUs; Python {meta['python']}, NumPy {meta['numpy']}; "
        f"load average {start[0]:.2f} at the start, {end[0]:.2f} at the end).",
        "",
        table,
    ]
    if "cold" in meta:
        c = meta["cold"]
        lines += [
            "",
            f"Cold first call of a kernel in a new process: {c['first_call_compile_s']:.1f} s "
            f"when numba compiles it, {c['first_call_cached_s'] * 1e3:.0f} ms from the disk "
            f"cache; `import anyloss` {c['import_anyloss_s'] * 1e3:.0f} ms (imports numba: "
            f"{'yes' if c['import_pulls_numba'] else 'no'}).",
        ]
    return "\n".join(lines) + "\n"


def machine_name() -> str:
    """The CPU model (Linux), else the platform's machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    main()

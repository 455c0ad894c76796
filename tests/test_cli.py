"""End-to-end tests of the ``anyloss`` executable (``anyloss eval``, ``anyloss list``).

Every test runs the installed command in a subprocess on files it writes, and
compares with the in-memory call ``anyloss.<loss>(arrays, reduction=...)``.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_helpers import close, executable, fails, result, run

import anyloss

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pcsv = pytest.importorskip("pyarrow.csv")

ROOT = pathlib.Path(__file__).resolve().parents[1]
N = 600  # rows of the shared data set


# -- the data every format carries -------------------------------------------------------


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(N, 5)).astype(np.float32)
    return {
        "logit": rng.normal(size=N).astype(np.float32),
        "clicked": (rng.random(N) < 0.3).astype(np.int64),
        "w": rng.random(N).astype(np.float32),
        "logits": logits,
        "label": rng.integers(0, 5, size=N),
        "probs": np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
        "yhat": rng.normal(size=N),
        "y": rng.normal(size=N),
        "var": rng.random(N) + 0.1,
        "x2": rng.normal(size=N),
        "sign": rng.choice([-1.0, 1.0], size=N),
        "emb": rng.normal(size=(N, 3)).astype(np.float32),
        "pos": rng.normal(size=(N, 3)).astype(np.float32),
        "neg": rng.normal(size=(N, 3)).astype(np.float32),
    }


def _table(data: dict[str, np.ndarray]) -> pa.Table:
    cols = {}
    for k, v in data.items():
        if v.ndim == 1:
            cols[k] = v
        else:
            cols[k] = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])
            if k == "logits":
                cols.update({f"logit_{j}": v[:, j] for j in range(v.shape[1])})
    return pa.table(cols)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, data: dict[str, np.ndarray]) -> dict:
    d = tmp_path_factory.mktemp("cli")
    table = _table(data)
    pq.write_table(table, d / "data.parquet")
    (d / "shards").mkdir()
    for i, (a, b) in enumerate([(0, 250), (250, 260), (260, N)]):
        pq.write_table(table.slice(a, b - a), d / "shards" / f"part-{i}.parquet")
    flat = table.select([f.name for f in table.schema if not pa.types.is_fixed_size_list(f.type)])
    pcsv.write_csv(flat, d / "data.csv")
    np.savez(d / "data.npz", **data)
    fields = [(k, v.dtype, v.shape[1:]) for k, v in data.items()]
    rec = np.empty(N, dtype=fields)
    for k, v in data.items():
        rec[k] = v
    np.save(d / "records.npy", rec)
    np.save(d / "matrix.npy", np.stack([data["yhat"], data["y"]], axis=1))
    return {
        "dir": d,
        **{p.stem + p.suffix: str(p) for p in d.iterdir() if p.is_file()},
        "shards/": str(d / "shards"),
        "shards/*": str(d / "shards" / "part-*.parquet"),
    }


# -- commands --------------------------------------------------------------------------


def test_version_and_list():
    assert run("--version").stdout.strip() == f"anyloss {anyloss.__version__}"
    lines = run("list").stdout.strip().splitlines()
    assert len(lines) == len([n for n in anyloss.__all__ if n[0].islower() and n != "losses"])
    ce = next(line for line in lines if line.startswith("cross_entropy "))
    assert "label_smoothing=0.0" in ce and "reduction=none" in ce and "--input logits" in ce
    assert "reduction=mean" in next(line for line in lines if line.startswith("mse_loss "))


def test_importing_anyloss_imports_no_cli_dependency():
    code = (
        "import sys, anyloss; bad = [m for m in ('anyloss.cli', 'pyarrow', 'dask', 'tqdm',"
        " 'pandas') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_shipped_example_runs():
    proc = run(
        "eval",
        ROOT / "examples" / "clicks.csv",
        "--loss",
        "binary_cross_entropy",
        "--input",
        "logit",
        "--target",
        "clicked",
    )
    assert proc.returncode == 0, proc.stderr
    assert 0 < float(proc.stdout) < 5 and "300 rows" in proc.stderr


# -- every format, every reduction, every loss -------------------------------------------


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("data.parquet", ["--input", "logits"]),
        ("data.parquet", ["--input", "logit_*"]),
        ("shards/", ["--input", "logits"]),
        ("shards/*", ["--input", "logit_0,logit_1,logit_2,logit_3,logit_4"]),
        ("data.csv", ["--input", "logit_*"]),
        ("data.npz", ["--input", "logits"]),
        ("records.npy", ["--input", "logits"]),
    ],
)
def test_formats(files, data, name, args):
    got = result(
        files[name],
        "--loss",
        "cross_entropy",
        *args,
        "--target",
        "label",
        "--param",
        "label_smoothing=0.1",
        "--reduction",
        "mean",
    )
    want = anyloss.cross_entropy(
        data["logits"], data["label"], label_smoothing=0.1, reduction="mean"
    )
    assert got["rows"] == N and got["nonfinite_rows"] == 0
    if name == "data.csv":  # CSV holds decimal text, read back as float64
        table = pcsv.read_csv(files[name])
        logits = np.stack([table.column(f"logit_{j}").to_numpy() for j in range(5)], axis=1)
        want = anyloss.cross_entropy(logits, data["label"], label_smoothing=0.1, reduction="mean")
    close(got["result"], want)


def test_plain_npy_columns_are_numbered(files, data):
    got = result(files["matrix.npy"], "--loss", "mse_loss", "--input", "0", "--target", "1")
    close(got["result"], anyloss.mse_loss(data["yhat"], data["y"]))


# (loss, its columns) for every loss; each is run with its own default reduction.
LOSSES = {
    "binary_cross_entropy": {"inputs": "logit", "targets": "clicked", "weights": "w"},
    "cross_entropy": {"logits": "logits", "targets": "probs"},
    "nll_loss": {"inputs": "logits", "targets": "label"},
    "hinge_loss": {"inputs": "yhat", "targets": "sign"},
    "l1_loss": {"predictions": "yhat", "targets": "y"},
    "mse_loss": {"predictions": "emb", "targets": "pos"},
    "smooth_l1_loss": {"predictions": "yhat", "targets": "y"},
    "huber_loss": {"inputs": "yhat", "targets": "y"},
    "log_cosh_loss": {"inputs": "yhat", "targets": "y"},
    "gaussian_nll_loss": {"inputs": "yhat", "targets": "y", "vars": "var"},
    "kl_div_loss": {"inputs": "logits", "targets": "logits"},
    "cosine_similarity_loss": {"x1": "emb", "x2": "pos"},
    "triplet_loss": {"anchors": "emb", "positives": "pos", "negatives": "neg"},
    "margin_ranking_loss": {"inputs1": "yhat", "inputs2": "x2", "targets": "sign"},
}


def _options(columns: dict[str, str]) -> list[str]:
    out = []
    for i, (param, col) in enumerate(columns.items()):
        if i == 0:
            out += ["--input", col]
        elif param == "targets":
            out += ["--target", col]
        elif param == "weights":
            out += ["--weights", col]
        else:
            out += ["--array", f"{param}={col}"]
    return out


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_with_its_default_reduction(files, data, loss):
    columns = LOSSES[loss]
    arrays = {p: data[c] for p, c in columns.items()}
    want = getattr(anyloss, loss)(**arrays)
    args = ["--loss", loss, *_options(columns)]
    if want.ndim == 0:
        close(result(files["data.npz"], *args)["result"], want)
    else:
        out = files["dir"] / f"{loss}.npy"
        got = result(files["data.npz"], *args, "--out", out, "--force")
        assert got["result"] is None and got["rows"] == N
        np.testing.assert_array_equal(np.load(out), want)


@pytest.mark.parametrize(
    ("reduction", "out"),
    [
        ("mean", None),
        ("sum", None),
        ("none", None),
        ("none", "losses.parquet"),
        ("none", "losses.csv"),
        ("none", "losses.npy"),
    ],
)
def test_every_reduction(files, data, tmp_path, reduction, out):
    args = [
        files["data.parquet"],
        "--loss",
        "binary_cross_entropy",
        "--input",
        "logit",
        "--target",
        "clicked",
        "--weights",
        "w",
        "--reduction",
        reduction,
    ]
    want = anyloss.binary_cross_entropy(
        data["logit"], data["clicked"], data["w"], reduction=reduction
    )
    if reduction != "none":
        close(result(*args)["result"], want)
        proc = run("eval", *args)
        assert np.float32(proc.stdout) == want.astype(np.float32)
        assert f"{N} rows" in proc.stderr
    elif out is None:  # per-row losses on stdout, one a line
        proc = run("eval", *args, "--quiet")
        assert proc.returncode == 0 and proc.stderr == ""
        np.testing.assert_array_equal(np.array(proc.stdout.split(), dtype=np.float32), want)
    else:
        path = tmp_path / out
        run("eval", *args, "--out", path, check=True)
        if out.endswith(".npy"):
            got = np.load(path)
        elif out.endswith(".csv"):
            got = pcsv.read_csv(path).column("loss").to_numpy().astype(np.float32)
        else:
            got = pq.read_table(path).column("loss").to_numpy()
        np.testing.assert_array_equal(got, want)
        assert os.listdir(tmp_path) == [out]


def test_list_column_losses_are_written_per_row(files, data, tmp_path):
    """mse_loss over a width-3 column: 'none' is (rows, 3); 'mean' is over every element."""
    args = [files["data.parquet"], "--loss", "mse_loss", "--input", "emb", "--target", "pos"]
    close(result(*args)["result"], anyloss.mse_loss(data["emb"], data["pos"]))
    run("eval", *args, "--reduction", "none", "--out", tmp_path / "l.parquet", check=True)
    got = pq.read_table(tmp_path / "l.parquet").column("loss").combine_chunks()
    want = anyloss.mse_loss(data["emb"], data["pos"], reduction="none")
    np.testing.assert_array_equal(got.flatten().to_numpy().reshape(N, 3), want)


# -- streaming: many chunks give the in-memory result ------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv", "npy"])
def test_a_file_larger_than_the_chunk_size(tmp_path, fmt):
    rows = 20_011
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=4, size=(rows, 7)).astype(np.float32)
    label = rng.integers(0, 7, size=rows)
    path = tmp_path / f"big.{fmt}"
    cols = {**{f"c{j}": logits[:, j] for j in range(7)}, "label": label}
    if fmt == "parquet":
        pq.write_table(pa.table(cols), path, row_group_size=3000)
    elif fmt == "csv":
        pcsv.write_csv(pa.table(cols), path)
        back = pcsv.read_csv(path)  # the values as the CSV text holds them
        logits = np.column_stack([back.column(f"c{j}").to_numpy() for j in range(7)])
    else:
        rec = np.empty(rows, dtype=[("logits", np.float32, (7,)), ("label", np.int64)])
        rec["logits"], rec["label"] = logits, label
        np.save(path, rec)
    inputs = "logits" if fmt == "npy" else "c*"
    for reduction in ("mean", "sum"):
        got = result(
            path,
            "--loss",
            "cross_entropy",
            "--input",
            inputs,
            "--target",
            "label",
            "--reduction",
            reduction,
            "--chunk-size",
            997,
        )
        close(got["result"], anyloss.cross_entropy(logits, label, reduction=reduction))
    out = tmp_path / "rows.npy"
    result(
        path,
        "--loss",
        "cross_entropy",
        "--input",
        inputs,
        "--target",
        "label",
        "--chunk-size",
        997,
        "--out",
        out,
    )
    # chunks of 997 rows take the generic path, the whole array the fused kernel
    # (above its size threshold): both within a few ulp of the exact value
    np.testing.assert_array_max_ulp(np.load(out), anyloss.cross_entropy(logits, label), maxulp=4)


# -- NaN and inf -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_nan(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    p = rng.normal(size=1000)
    y = rng.normal(size=1000)
    p[[417, 803]] = np.nan
    y[900] = np.inf
    path = tmp_path_factory.mktemp("nan") / "nan.parquet"
    pq.write_table(pa.table({"p": p, "y": y}), path, row_group_size=256)
    return str(path), p, y


def test_nan_is_an_error_naming_the_first_row(with_nan):
    path, _, _ = with_nan
    line = fails(
        "eval", path, "--loss", "mse_loss", "--input", "p", "--target", "y", "--chunk-size", 100
    )
    assert "row 417" in line and "'p'" in line and "nan.parquet" in line


def test_nan_propagate_and_skip(with_nan):
    path, p, y = with_nan
    args = [path, "--loss", "mse_loss", "--input", "p", "--target", "y", "--chunk-size", 100]
    proc = run("eval", *args, "--nan", "propagate", "--json")  # a NaN mean: exit code 1
    got = json.loads(proc.stdout)
    assert proc.returncode == 1 and got["result"] is None and got["nonfinite_rows"] == 3
    got = result(*args, "--nan", "skip")
    ok = np.isfinite(p) & np.isfinite(y)
    assert got["nonfinite_rows"] == 3 and got["elements"] == 997
    close(got["result"], anyloss.mse_loss(p[ok], y[ok]))


# -- bad input: exit code 2 and one line naming the problem ------------------------------


def test_bad_input(files, tmp_path):
    pqf = files["data.parquet"]
    bce = ["--loss", "binary_cross_entropy", "--input", "logit", "--target", "clicked"]
    assert "no such file" in fails("eval", tmp_path / "nope.parquet", *bce)
    assert "no column 'nope'" in fails(
        "eval", pqf, "--loss", "mse_loss", "--input", "nope", "--target", "y"
    )
    assert "no column matches 'z_*'" in fails(
        "eval", pqf, "--loss", "cross_entropy", "--input", "z_*", "--target", "label"
    )
    pq.write_table(pa.table({"p": ["a", "b"], "y": [0, 1]}), tmp_path / "s.parquet")
    line = fails(
        "eval", tmp_path / "s.parquet", "--loss", "mse_loss", "--input", "p", "--target", "y"
    )
    assert "'p' has type string" in line and "s.parquet" in line
    np.savez(tmp_path / "short.npz", p=np.zeros(10), y=np.zeros(9))
    assert "different lengths" in fails(
        "eval", tmp_path / "short.npz", "--loss", "mse_loss", "--input", "p", "--target", "y"
    )
    assert "unknown loss 'mse'" in fails("eval", pqf, "--loss", "mse", "--input", "y")
    assert "no parameter 'smoothing'" in fails("eval", pqf, *bce, "--param", "smoothing=1")
    assert "expected true or false" in fails("eval", pqf, *bce, "--param", "with_logits=maybe")
    assert "needs --target" in fails("eval", pqf, "--loss", "mse_loss", "--input", "y")
    assert "--loss" in fails("eval", pqf, "--input", "y")  # a usage error is one line too
    assert "unknown file type '.md'" in fails("eval", ROOT / "README.md", *bce)
    ce = ["--loss", "cross_entropy", "--input", "logit", "--target", "clicked"]
    for option in ("ignore_index=-100", "class_weights=1"):
        line = fails("eval", pqf, *ce, "--param", option)
        assert f"--param {option.partition('=')[0]} is not supported by anyloss eval" in line


def test_pos_weight_is_a_number(files, data):
    args = [files["data.parquet"], "--loss", "binary_cross_entropy", "--input", "logit"]
    got = result(*args, "--target", "clicked", "--param", "pos_weight=2.5")
    close(
        got["result"], anyloss.binary_cross_entropy(data["logit"], data["clicked"], pos_weight=2.5)
    )


def test_class_indices_are_checked(tmp_path):
    logits = np.zeros((50, 4), dtype=np.float32)
    label = np.arange(50) % 4
    label[37] = 7
    np.savez(tmp_path / "c.npz", logits=logits, label=label, flabel=label.astype(float))
    args = [tmp_path / "c.npz", "--loss", "cross_entropy", "--input", "logits"]
    line = fails("eval", *args, "--target", "label", "--chunk-size", 10)
    assert "row 37" in line and "class index 7" in line and "4 classes" in line
    assert "must be integer" in fails("eval", *args, "--target", "flabel")


# -- --out: all or nothing ---------------------------------------------------------------


def test_out_is_never_overwritten_without_force(files, tmp_path):
    out = tmp_path / "l.parquet"
    out.write_bytes(b"precious")
    args = [
        "eval",
        files["data.parquet"],
        "--loss",
        "mse_loss",
        "--input",
        "yhat",
        "--target",
        "y",
        "--reduction",
        "none",
        "--out",
        out,
    ]
    assert "use --force" in fails(*args)
    assert out.read_bytes() == b"precious"
    mean = [a if a != "none" else "mean" for a in args]
    assert "--reduction none" in fails(*mean, "--force")
    run(*args, "--force", check=True)
    assert len(pq.read_table(out)) == N


def test_a_failed_run_leaves_the_old_output(with_nan, tmp_path):
    path, _, _ = with_nan
    out = tmp_path / "l.npy"
    np.save(out, np.arange(3))
    line = fails(
        "eval",
        path,
        "--loss",
        "mse_loss",
        "--input",
        "p",
        "--target",
        "y",
        "--reduction",
        "none",
        "--out",
        out,
        "--force",
        "--chunk-size",
        50,
    )
    assert "row 417" in line
    np.testing.assert_array_equal(np.load(out), np.arange(3))
    assert os.listdir(tmp_path) == ["l.npy"]


def test_an_interrupted_run_leaves_no_output(tmp_path):
    rows = 2_000_000
    rec = np.zeros(rows, dtype=[("p", np.float64), ("y", np.float64)])
    np.save(tmp_path / "in.npy", rec)
    out = tmp_path / "l.parquet"
    args = [
        "eval",
        tmp_path / "in.npy",
        "--loss",
        "mse_loss",
        "--input",
        "p",
        "--target",
        "y",
        "--reduction",
        "none",
        "--out",
        out,
        "--chunk-size",
        500,
    ]
    proc = subprocess.Popen(
        [*executable(), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not any(f.name.endswith(".tmp") for f in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["in.npy"]


# -- progress bar ------------------------------------------------------------------------


def test_progress_bar_only_on_a_terminal(files):
    pty = pytest.importorskip("pty")
    args = [
        "eval",
        files["data.parquet"],
        "--loss",
        "mse_loss",
        "--input",
        "yhat",
        "--target",
        "y",
        "--chunk-size",
        100,
    ]
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [*executable(), *map(str, args)], stdout=subprocess.PIPE, stderr=slave, timeout=60
        )
        os.close(slave)
        seen = b""
        while True:
            try:
                block = os.read(master, 65536)
            except OSError:
                break
            if not block:
                break
            seen += block
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"rows/s" in seen and b"600" in seen
    assert "rows/s" not in run(*args).stderr.split("anyloss:")[0]  # a pipe: summary only
    quiet = run(*args, "--quiet")
    assert quiet.stderr == "" and quiet.stdout.strip()


# -- Dask --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # distributed/tornado internals
def test_a_dask_cluster_gives_the_local_result(files, data, with_nan, tmp_path):
    """A real dask.distributed cluster on loopback; the CLI connects to it over TCP."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address
        for name in ("data.parquet", "data.npz"):  # row groups / row ranges
            args = [
                files[name],
                "--loss",
                "cross_entropy",
                "--input",
                "logits",
                "--target",
                "label",
                "--reduction",
                "sum",
                "--chunk-size",
                128,
            ]
            remote = result(*args, "--scheduler", address)
            assert remote["rows"] == N and remote["scheduler"] == address
            close(
                remote["result"],
                anyloss.cross_entropy(data["logits"], data["label"], reduction="sum"),
            )
        out = tmp_path / "l.npy"
        result(
            files["data.parquet"],
            "--loss",
            "mse_loss",
            "--input",
            "yhat",
            "--target",
            "y",
            "--reduction",
            "none",
            "--out",
            out,
            "--scheduler",
            address,
        )
        np.testing.assert_array_equal(np.load(out), (data["yhat"] - data["y"]) ** 2)
        line = fails(
            "eval",
            with_nan[0],
            "--loss",
            "mse_loss",
            "--input",
            "p",
            "--target",
            "y",
            "--chunk-size",
            100,
            "--scheduler",
            address,
        )
        assert "row 417" in line  # counted across partitions, as locally


# -- memory: bounded by the chunk, not the file ------------------------------------------


def _peak_rss_mib(args: list[object]) -> float:
    proc = subprocess.Popen(
        [*executable(), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    proc.stderr.close()
    return usage.ru_maxrss / 1024  # KiB on Linux


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ by platform")
def test_peak_memory_is_bounded_by_the_chunk(tmp_path):
    chunk, width = 20_000, 16
    rng = np.random.default_rng(11)
    sizes = {"small": chunk, "big": 50 * chunk}
    for name, rows in sizes.items():
        logits = rng.normal(size=(rows, width)).astype(np.float32)
        table = pa.table(
            {
                "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), width),
                "label": rng.integers(0, width, size=rows),
            }
        )
        pq.write_table(table, tmp_path / f"{name}.parquet")
    file_mib = (tmp_path / "big.parquet").stat().st_size / 2**20
    peak = {
        name: _peak_rss_mib(
            [
                "eval",
                tmp_path / f"{name}.parquet",
                "--loss",
                "cross_entropy",
                "--input",
                "logits",
                "--target",
                "label",
                "--reduction",
                "mean",
                "--chunk-size",
                chunk,
            ]
        )
        for name in sizes
    }
    assert file_mib > 60
    # 50 times the rows; the peak grows by far less than the file (a few chunks at most).
    assert peak["big"] - peak["small"] < 0.3 * file_mib, (peak, file_mib)

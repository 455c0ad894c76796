"""``anyloss eval``'s run layer: the losses it serves, non-finite results, parameters,
Dask schedulers that do not answer, and messages that stay one line.

Like ``test_cli.py``, every test runs the installed command in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from cli_helpers import close, fails, result, run

import anyloss

pytest.importorskip("pyarrow")


N = 300


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(N, 5))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return {
        "logit": rng.normal(size=N),
        "clicked": (rng.random(N) < 0.3).astype(np.float64),
        "w": rng.random(N),
        "logits": logits,
        "label": rng.integers(0, 5, size=N),
        "probs": probs,
        "mask": (rng.random((N, 5)) < 0.4).astype(np.float64),
        "counts": rng.poisson(3.0, size=N).astype(np.float64),
        "yhat": rng.normal(size=N),
        "sign": rng.choice([-1.0, 1.0], size=N),
        "emb": rng.normal(size=(N, 3)),
        "pos": rng.normal(size=(N, 3)),
        "neg": rng.normal(size=(N, 3)),
    }


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory, data: dict[str, np.ndarray]) -> str:
    path = tmp_path_factory.mktemp("run") / "data.npz"
    np.savez(path, **data)
    return str(path)


# -- every loss defined per row is served ------------------------------------------------

# loss -> (its arrays -> column, --param options, the same options in Python)
SERVED = {
    "sigmoid_focal_loss": (
        {"inputs": "logit", "targets": "clicked", "weights": "w"},
        ["alpha=0.4", "gamma=1.5"],
        {"alpha": 0.4, "gamma": 1.5},
    ),
    "softmax_focal_loss": (
        {"logits": "logits", "targets": "label", "weights": "w"},
        ["alpha=0.5", "gamma=2"],
        {"alpha": 0.5, "gamma": 2.0},
    ),
    "dice_loss": ({"inputs": "probs", "targets": "mask"}, ["smooth=0.5"], {"smooth": 0.5}),
    "poisson_nll_loss": (
        {"inputs": "yhat", "targets": "counts"},
        ["full=true"],
        {"full": True},
    ),
    "squared_hinge_loss": ({"inputs": "yhat", "targets": "sign"}, [], {}),
    "multiclass_hinge_loss": (
        {"logits": "logits", "targets": "label"},
        ["margin=0.5"],
        {"margin": 0.5},
    ),
    "cosine_embedding_loss": (
        {"x1": "emb", "x2": "pos", "targets": "sign"},
        ["margin=0.2"],
        {"margin": 0.2},
    ),
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


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", sorted(SERVED))
def test_every_per_row_loss_is_served(npz, data, loss, reduction):
    columns, options, params = SERVED[loss]
    args = ["--loss", loss, *_options(columns), "--reduction", reduction, "--chunk-size", 70]
    for option in options:
        args += ["--param", option]
    got = result(npz, *args)
    arrays = {p: data[c] for p, c in columns.items()}
    want = getattr(anyloss, loss)(**arrays, **params, reduction=reduction)
    assert got["rows"] == N and got["nonfinite_losses"] == 0
    close(got["result"], want)


def test_list_shows_every_loss_and_why_some_are_not_served():
    lines = run("list").stdout.strip().splitlines()
    names = [line.split()[0] for line in lines]
    functions = sorted(
        n for n in anyloss.__all__ if n[0].islower() and callable(getattr(anyloss, n))
    )
    assert names == functions
    for name in ("info_nce_loss", "nt_xent_loss", "ctc_loss"):
        line = next(line for line in lines if line.startswith(f"{name} "))
        assert "not served by anyloss eval" in line
    assert "alpha=none" in next(line for line in lines if line.startswith("softmax_focal"))


@pytest.mark.parametrize(
    ("loss", "why"),
    [
        ("info_nce_loss", "cannot be streamed row by row"),
        ("nt_xent_loss", "cannot be streamed row by row"),
        ("ctc_loss", "per-sequence"),
    ],
)
def test_batch_coupled_losses_are_refused_with_the_reason(npz, loss, why):
    line = fails("eval", npz, "--loss", loss, "--input", "emb")
    assert f"does not serve {loss}" in line and why in line and f"anyloss.{loss}(" in line


# -- parameters typed from the signature -------------------------------------------------


def test_triplet_p_takes_a_real_number(npz, data):
    args = ["--loss", "triplet_loss", "--input", "emb", "--array", "positives=pos"]
    args += ["--array", "negatives=neg", "--reduction", "mean", "--param", "p=1.5"]
    want = anyloss.triplet_loss(data["emb"], data["pos"], data["neg"], p=1.5, reduction="mean")
    close(result(npz, *args)["result"], want)
    # and independently of the code under test, one row by hand: d(u, v) = (sum|u-v|^p + eps)^(1/p)
    a, p, n = data["emb"][0], data["pos"][0], data["neg"][0]
    dp = (np.sum(np.abs(a - p) ** 1.5) + 1e-6) ** (1 / 1.5)
    dn = (np.sum(np.abs(a - n) ** 1.5) + 1e-6) ** (1 / 1.5)
    proc = run("eval", npz, *args[:-4], "--reduction", "none", "--param", "p=1.5", "-q")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(float(proc.stdout.split()[0]), max(dp - dn + 1.0, 0.0), rtol=1e-12)


def test_nan_parameters_are_refused(npz):
    bce = ["--loss", "binary_cross_entropy", "--input", "logit", "--target", "clicked"]
    line = fails("eval", npz, *bce, "--param", "pos_weight=nan")
    assert "--param pos_weight=nan: expected a number, not NaN" in line
    huber = ["--loss", "huber_loss", "--input", "yhat", "--target", "logit"]
    line = fails("eval", npz, *huber, "--param", "delta=NaN")
    assert "not NaN" in line


def test_optional_numbers_take_none(npz, data):
    args = ["--loss", "sigmoid_focal_loss", "--input", "logit", "--target", "clicked"]
    got = result(npz, *args, "--param", "alpha=none", "--reduction", "sum")
    want = anyloss.sigmoid_focal_loss(data["logit"], data["clicked"], alpha=None, reduction="sum")
    close(got["result"], want)


def test_a_value_error_of_the_loss_exits_2(npz):
    args = ["--loss", "sigmoid_focal_loss", "--input", "logit", "--target", "clicked"]
    line = fails("eval", npz, *args, "--param", "alpha=2")
    assert "alpha" in line


# -- non-finite results: exit code 1, the reason, JSON null ------------------------------


@pytest.fixture(scope="module")
def overflow(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Finite inputs whose squared error overflows float64 in rows 3 and 5."""
    p = np.zeros(8)
    p[3], p[5] = 1e200, -1e200
    path = tmp_path_factory.mktemp("ovf") / "ovf.npz"
    np.savez(path, p=p, y=np.ones(8))
    return str(path)


def test_a_non_finite_mean_exits_1_naming_the_rows(overflow):
    args = ["eval", overflow, "--loss", "mse_loss", "--input", "p", "--target", "y"]
    proc = run(*args, "--chunk-size", 4)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip() == "inf"
    summary, error = proc.stderr.strip().splitlines()
    assert "0 with NaN/inf inputs, 2 NaN/inf losses" in summary
    assert error.startswith("anyloss: error: the mean is inf: 2 rows with finite inputs")
    assert "the first at row 3 of" in error and "ovf.npz" in error

    proc = run(*args, "--json")
    got = json.loads(proc.stdout)  # strict JSON: no NaN or Infinity
    assert proc.returncode == 1 and got["result"] is None and got["nonfinite_losses"] == 2
    assert "row 3" in got["error"] and "Infinity" not in proc.stdout

    proc = run(*args, "--json", "--reduction", "none")
    got = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert got["result"] == [1.0, 1.0, 1.0, None, 1.0, None, 1.0, 1.0]

    proc = run(*args, "--reduction", "sum", "-q")
    assert proc.returncode == 1 and proc.stdout.strip() == "inf"
    assert "the sum is inf" in proc.stderr


def test_a_sum_that_overflows_float32_is_not_a_number(tmp_path):
    p = np.full(4, 1.5e19, dtype=np.float32)  # each loss 2.25e38 < FLT_MAX; their sum is not
    np.savez(tmp_path / "f.npz", p=p, y=np.zeros(4, dtype=np.float32))
    args = ["eval", tmp_path / "f.npz", "--loss", "mse_loss", "--input", "p", "--target", "y"]
    proc = run(*args, "--reduction", "sum", "-q")
    assert proc.returncode == 1 and "every loss is finite" in proc.stderr
    assert "overflows float32" in proc.stderr


def test_logits_given_as_probabilities_never_exit_0(tmp_path):
    np.savez(tmp_path / "l.npz", logit=np.array([2.0, -1.5, 0.3]), y=np.array([1.0, 0.0, 1.0]))
    args = ["eval", tmp_path / "l.npz", "--loss", "binary_cross_entropy", "--input", "logit"]
    proc = run(*args, "--target", "y", "--param", "with_logits=false")
    # exit 2 where the library refuses them, 1 where it returns NaN; never 0
    assert proc.returncode in (1, 2), proc.stderr
    assert "with_logits" in proc.stderr.strip().splitlines()[-1]


def test_nan_inputs_kept_by_propagate_make_the_mean_exit_1(tmp_path):
    p = np.arange(6, dtype=np.float64)
    p[4] = np.nan
    np.savez(tmp_path / "n.npz", p=p, y=np.zeros(6))
    args = ["eval", tmp_path / "n.npz", "--loss", "mse_loss", "--input", "p", "--target", "y"]
    proc = run(*args, "--nan", "propagate", "--json")
    got = json.loads(proc.stdout)
    assert proc.returncode == 1 and got["result"] is None and got["nonfinite_rows"] == 1
    assert "--nan skip" in proc.stderr
    # per-row losses with the NaN kept as asked: not an error
    proc = run(*args, "--nan", "propagate", "--reduction", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"] == [0.0, 1.0, 4.0, 9.0, None, 25.0]


# -- usage and messages ------------------------------------------------------------------


def test_no_command_is_a_usage_error():
    proc = run()
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("usage: anyloss")
    assert "anyloss: error: a command is required" in proc.stderr


def test_control_characters_are_escaped_in_messages(npz, tmp_path):
    mse = ["--loss", "mse_loss", "--input", "p", "--target", "y"]
    line = fails("eval", tmp_path / "a\nb\x1b[2J.npz", *mse)
    assert "a\\nb\\x1b[2J.npz" in line and "\x1b" not in line
    bce = ["--loss", "binary_cross_entropy", "--input", "logit", "--target", "clicked"]
    line = fails("eval", npz, *bce, "--param", "with_logits=\x1b]0;pwned\x07\u202e")
    assert "with_logits=\\x1b]0;pwned\\x07\\u202e: expected true or false" in line


# -- Dask: every wait bounded, clear errors ----------------------------------------------


@contextlib.contextmanager
def _server(reply: bytes = b"") -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts, sends ``reply`` and then never speaks."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if reply:
                conn.sendall(reply)
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()
        for conn in held:
            conn.close()


EVAL = ["--loss", "mse_loss", "--input", "yhat", "--target", "logit"]


def test_a_port_that_never_speaks_dask_is_an_error_not_a_hang(npz):
    pytest.importorskip("distributed")
    with _server() as address:
        start = time.monotonic()
        line = fails("eval", npz, *EVAL, "--scheduler", address, "--timeout", 1, timeout=40)
        assert time.monotonic() - start < 30
        assert "no Dask handshake within 1 s" in line and address in line
    with _server(b"SSH-2.0-OpenSSH_9.6\r\n") as address:
        line = fails("eval", npz, *EVAL, "--scheduler", address, "--timeout", 5, timeout=40)
        assert "not Dask's protocol" in line and "out of memory" not in line


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("tcp://host:notaport", "not a scheduler address"),
        ("foo:bar:baz", "not a scheduler address"),
        ("tcp://:8786", "not a scheduler address"),
        ("", "--scheduler is empty"),
        ("  ", "--scheduler is empty"),
    ],
)
def test_a_bad_scheduler_address_is_a_usage_error(npz, address, message):
    pytest.importorskip("distributed")
    line = fails("eval", npz, *EVAL, "--scheduler", address, "--timeout", 2)
    assert message in line and "unexpected" not in line


def test_a_closed_port_is_an_error(npz):
    pytest.importorskip("distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    line = fails("eval", npz, *EVAL, "--scheduler", f"tcp://127.0.0.1:{port}", "--timeout", 2)
    assert "cannot reach the Dask scheduler" in line


@pytest.fixture
def cluster_in(tmp_path):
    """A factory of in-process Dask clusters (workers in this process, cwd elsewhere)."""
    distributed = pytest.importorskip("distributed")
    clusters = []

    def make(n_workers: int) -> str:
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        )
        clusters.append(cluster)
        return cluster.scheduler_address

    yield make
    for c in clusters:
        c.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # distributed/tornado internals
def test_a_scheduler_without_workers_is_an_error_not_a_hang(npz, cluster_in):
    address = cluster_in(0)
    start = time.monotonic()
    line = fails("eval", npz, *EVAL, "--scheduler", address, "--timeout", 1, timeout=40)
    assert time.monotonic() - start < 30
    assert "has no workers (waited 1 s" in line and f"dask worker {address}" in line


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_relative_path_reaches_workers_elsewhere(npz, data, cluster_in, tmp_path):
    address = cluster_in(1)  # its workers run in this process, whose cwd is not npz's folder
    folder, name = os.path.split(npz)
    assert os.getcwd() != folder
    proc = run("eval", name, *EVAL, "--scheduler", address, "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    close(json.loads(proc.stdout)["result"], anyloss.mse_loss(data["yhat"], data["logit"]))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_many_small_shards_are_batched_into_few_tasks(tmp_path, cluster_in):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from anyloss.cli._columns import select
    from anyloss.cli._compute import Plan
    from anyloss.cli._distributed import _tasks
    from anyloss.cli._readers import open_source

    rng = np.random.default_rng(5)
    p, y = rng.normal(size=(60, 20)), rng.normal(size=(60, 20))
    (tmp_path / "s").mkdir()
    for i in range(60):
        pq.write_table(pa.table({"p": p[i], "y": y[i]}), tmp_path / "s" / f"part-{i}.parquet")
    p[37, 4] = np.nan  # a NaN in one shard: the error names that shard and its row
    pq.write_table(pa.table({"p": p[37], "y": y[37]}), tmp_path / "s" / "part-37.parquet")
    source = open_source(str(tmp_path / "s"))
    sels = {
        "predictions": select("p", source.columns, ""),
        "targets": select("y", source.columns, ""),
    }
    tasks = _tasks(source, Plan("mse_loss", sels, {}, "mean", "error"), 100, threads=2)
    assert len(tasks) <= 8  # not 60

    address = cluster_in(2)
    args = [tmp_path / "s", "--loss", "mse_loss", "--input", "p", "--target", "y"]
    got = result(*args, "--nan", "skip", "--scheduler", address)
    ok = np.isfinite(p)
    assert got["rows"] == 1200 and got["nonfinite_rows"] == 1
    close(got["result"], np.mean((p[ok] - y[ok]) ** 2))
    line = fails("eval", *args, "--scheduler", address)
    assert f"{tmp_path / 's' / 'part-37.parquet'}: row 4: NaN or inf in column 'p'" in line


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_local_cluster_quiet_prints_nothing_on_stderr(npz, data):
    pytest.importorskip("distributed")
    with contextlib.ExitStack() as stack:
        busy = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # Dask's dashboard port taken: it would warn
            busy.bind(("0.0.0.0", 8787))
            busy.listen(1)
        proc = run("eval", npz, *EVAL, "--scheduler", "local", "--workers", 1, "-q", timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    close(float(proc.stdout), anyloss.mse_loss(data["yhat"], data["logit"]))


# -- the kernels only where they repay numba's start ---------------------------------------


def test_a_small_run_does_not_start_numba(tmp_path):
    pytest.importorskip("numba")
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "k.npz", p=rng.normal(size=100_000), y=rng.random(100_000))
    code = (
        "import sys; from anyloss.cli import main; "
        f"rc = main(['eval', {str(tmp_path / 'k.npz')!r}, '--loss', 'binary_cross_entropy', "
        "'--input', 'p', '--target', 'y', '-q']); "
        "assert rc == 0; assert 'numba' not in sys.modules, 'numba imported'"
    )
    env = {k: v for k, v in os.environ.items() if k != "ANYLOSS_KERNELS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


def test_the_kernel_choice_depends_on_the_size_only(monkeypatch):
    from anyloss.cli._columns import Selection
    from anyloss.cli._compute import use_kernels

    monkeypatch.delenv("ANYLOSS_KERNELS", raising=False)
    one = Selection("p", ("p",), False)
    wide = Selection("l", ("l",), False)
    cols = {"p": "float32", "l": "list<float32>[100]"}
    assert not use_kernels("binary_cross_entropy", one, cols, 100_000)
    assert use_kernels("binary_cross_entropy", one, cols, 100_000_000)
    assert use_kernels("cross_entropy", wide, cols, 1_000_000)  # 1e8 elements
    assert not use_kernels("mse_loss", one, cols, 10**9)  # numpy is as fast: never
    assert use_kernels("huber_loss", one, cols, None)  # CSV: size unknown
    monkeypatch.setenv("ANYLOSS_KERNELS", "on")
    assert use_kernels("mse_loss", one, cols, 10)  # the user's choice stands


def test_kernels_generic_switches_the_kernels_off_in_its_thread():
    from anyloss import kernels

    x = np.linspace(-1, 1, 64)
    with kernels.generic():
        assert kernels.run("mse_loss", "none", predictions=x, targets=x, _force=True) is None

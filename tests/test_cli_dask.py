"""``anyloss eval --scheduler``: a few files read on a Dask cluster as on one machine.

A few input files are split into tasks by row group (Parquet) or byte range
(CSV), each read on a worker by the local readers: the same column types, the
same page checksums, the same CSV parsing as without ``--scheduler``. Every
test compares a run on one shared in-process cluster (TCP on loopback) with the
local run, and the numbers with NumPy on arrays the test builds itself.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import numpy as np
import pytest
from cli_helpers import fails, result

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
distributed = pytest.importorskip("distributed")

from anyloss.cli._columns import select  # noqa: E402
from anyloss.cli._compute import Plan  # noqa: E402
from anyloss.cli._distributed import _tasks  # noqa: E402
from anyloss.cli._readers import open_source  # noqa: E402

# distributed and tornado internals warn in the workers' threads (this process)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MSE = ("--loss", "mse_loss", "--input", "p", "--target", "y")


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """One cluster for the module: two single-thread workers in this process."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


def _both(address: str, *args: object) -> tuple[dict, dict]:
    """The same run locally and on the cluster."""
    return result(*args), result(*args, "--scheduler", address)


def _mse_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (np.asarray(p, np.float64) - np.asarray(y, np.float64)) ** 2


def _plan(source, chunk_rows: int = 100) -> tuple[Plan, int]:
    sels = {
        "predictions": select("p", source.columns, ""),
        "targets": select("y", source.columns, ""),
    }
    return Plan("mse_loss", sels, {}, "sum", "error"), chunk_rows


# -- the findings: the Dask path reads a few files as the local path does -----------------


def test_mixed_float32_and_float64_shards_on_a_cluster(tmp_path, address):
    rng = np.random.default_rng(21)
    p, y = rng.normal(size=50), rng.normal(size=50)
    p32, y32 = p[:20].astype(np.float32), y[:20].astype(np.float32)
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"p": p32, "y": y32}), tmp_path / "in" / "a-1.parquet")
    pq.write_table(pa.table({"p": p[20:], "y": y[20:]}), tmp_path / "in" / "a-2.parquet")
    want = _mse_rows(np.concatenate([p32, p[20:]]), np.concatenate([y32, y[20:]]))

    tables = []
    for name, extra in (("local", []), ("dask", ["--scheduler", address])):
        out = tmp_path / f"{name}.parquet"
        got = result(tmp_path / "in", *MSE, "--reduction", "none", "--out", out, *extra)
        assert got["dtype"] == "float64" and got["rows"] == 50
        tables.append(pq.read_table(out))
    assert tables[1].schema.field("loss").type == pa.float64()
    np.testing.assert_array_equal(tables[1].column("loss").to_numpy(), want)
    assert tables[1].equals(tables[0])
    for reduction in ("mean", "sum"):
        local, dask = _both(address, tmp_path / "in", *MSE, "--reduction", reduction)
        assert dask["dtype"] == local["dtype"] == "float64"
        assert dask["result"] == local["result"]
        np.testing.assert_allclose(dask["result"], getattr(np, reduction)(want), rtol=1e-14)


def test_a_corrupted_parquet_page_is_an_error_on_a_cluster(tmp_path, address):
    p = np.arange(1000, dtype=np.float64)
    table = pa.table({"p": p, "y": np.zeros(1000)})
    pq.write_table(
        table,
        tmp_path / "ok.parquet",
        write_page_checksum=True,
        compression="none",
        row_group_size=250,
    )
    data = bytearray((tmp_path / "ok.parquet").read_bytes())
    at = data.find(np.float64(600).tobytes())  # in the third row group
    data[at + 7] ^= 0x42  # 600.0 becomes about 1e22: a plausible float, a wrong sum
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    local, dask = _both(address, tmp_path / "ok.parquet", *MSE, "--reduction", "sum")
    assert dask["result"] == local["result"] == float(np.sum(p * p))
    for extra in ([], ["--chunk-size", 10]):  # one task, or a task per row group
        line = fails("eval", tmp_path / "bad.parquet", *MSE, "--scheduler", address, *extra)
        assert "bad.parquet" in line and "checksum" in line and "corrupt" in line


def test_a_csv_column_integer_in_its_first_block_may_hold_fractions_on_a_cluster(
    tmp_path, address
):
    # PyArrow infers types from the first block: `y` looks int64 there and holds
    # 0.5 in the last row.
    rows = 300_001
    y = np.ones(rows)
    y[-1] = 0.5
    with open(tmp_path / "late.csv", "w") as f:
        f.write("p,y\n")
        f.write("2.0,1\n" * (rows - 1))
        f.write("2.0,0.5\n")
    want = float(np.sum(_mse_rows(np.full(rows, 2.0), y)))  # 300,000 + 2.25: exact
    for extra in ([], ["--chunk-size", 5_000]):  # one task, or several byte ranges
        args = [tmp_path / "late.csv", *MSE, "--reduction", "sum", *extra]
        local, dask = _both(address, *args)
        assert dask["rows"] == local["rows"] == rows
        assert dask["result"] == local["result"] == want
        assert dask["dtype"] == local["dtype"] == "float64"


# -- one file is spread over the workers, as dask.dataframe did ---------------------------


def test_a_parquet_file_is_split_by_row_groups(tmp_path, address):
    rng = np.random.default_rng(22)
    p, y = rng.normal(size=2000), rng.normal(size=2000)
    pq.write_table(pa.table({"p": p, "y": y}), tmp_path / "g.parquet", row_group_size=300)
    source = open_source(str(tmp_path / "g.parquet"))
    assert len(_tasks(source, *_plan(source, 10), threads=2)) == 7  # 2000 rows, 300 a group
    assert len(_tasks(source, *_plan(source, 1 << 18), threads=2)) == 1

    outs = []
    for name, extra in (("local", []), ("dask", ["--scheduler", address])):
        out = tmp_path / f"{name}.npy"
        args = [tmp_path / "g.parquet", *MSE, "--reduction", "none", "--chunk-size", 10]
        assert result(*args, "--out", out, *extra)["rows"] == 2000
        outs.append(np.load(out))
    np.testing.assert_array_equal(outs[1], _mse_rows(p, y))
    np.testing.assert_array_equal(outs[1], outs[0])

    p[1234] = np.nan  # in the fifth row group: named with its row in the file
    pq.write_table(pa.table({"p": p, "y": y}), tmp_path / "g.parquet", row_group_size=300)
    args = [tmp_path / "g.parquet", *MSE, "--chunk-size", 10]
    want = f"{tmp_path / 'g.parquet'}: row 1234: NaN or inf in column 'p'"
    assert want in fails("eval", *args)
    assert want in fails("eval", *args, "--scheduler", address)


def _write_csv(path: pathlib.Path, p: np.ndarray, y: np.ndarray, newline: str = "\n") -> None:
    with open(path, "w", newline="") as f:
        f.write(f'"p",y{newline}')
        for a, b in zip(p, y, strict=True):
            f.write(f"{float(a)!r},{float(b)!r}{newline}")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_csv_file_is_split_by_byte_ranges(tmp_path, address, newline):
    rng = np.random.default_rng(23)
    p, y = rng.normal(size=3000), rng.normal(size=3000)
    path = tmp_path / "b.csv"
    _write_csv(path, p, y, newline)
    source = open_source(str(path))
    assert len(_tasks(source, *_plan(source, 10), threads=2)) > 5
    assert len(_tasks(source, *_plan(source, 1 << 18), threads=2)) == 1

    outs = []
    for name, extra in (("local", []), ("dask", ["--scheduler", address])):
        out = tmp_path / f"{name}.npy"
        args = [path, *MSE, "--reduction", "none", "--chunk-size", 10]
        assert result(*args, "--out", out, *extra)["rows"] == 3000
        outs.append(np.load(out))
    np.testing.assert_array_equal(outs[1], _mse_rows(p, y))
    np.testing.assert_array_equal(outs[1], outs[0])


def test_csv_byte_ranges_name_the_file_and_row_of_an_error(tmp_path, address):
    rng = np.random.default_rng(24)
    p, y = rng.normal(size=(2, 1500)), rng.normal(size=(2, 1500))
    (tmp_path / "s").mkdir()
    _write_csv(tmp_path / "s" / "a-1.csv", p[0], y[0])
    p[1, 1111] = np.nan  # far into the second file: many byte ranges before it
    _write_csv(tmp_path / "s" / "a-2.csv", p[1], y[1])
    args = [tmp_path / "s", *MSE, "--chunk-size", 10]
    want = f"{tmp_path / 's' / 'a-2.csv'}: row 1111: NaN or inf in column 'p'"
    assert want in fails("eval", *args)
    assert want in fails("eval", *args, "--scheduler", address)
    local, dask = _both(address, *args, "--nan", "skip", "--reduction", "sum")
    assert dask["rows"] == local["rows"] == 3000 and dask["nonfinite_rows"] == 1
    ok = np.isfinite(p)
    np.testing.assert_allclose(dask["result"], np.sum(_mse_rows(p[ok], y[ok])), rtol=1e-13)
    np.testing.assert_allclose(dask["result"], local["result"], rtol=1e-13)


def test_a_compressed_csv_is_one_task(tmp_path, address):
    import gzip

    rng = np.random.default_rng(25)
    p, y = rng.normal(size=500), rng.normal(size=500)
    with gzip.open(tmp_path / "c.csv.gz", "wt") as f:
        f.write(
            "p,y\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(p, y, strict=True))
        )
    source = open_source(str(tmp_path / "c.csv.gz"))
    assert len(_tasks(source, *_plan(source, 10), threads=2)) == 1
    local, dask = _both(address, tmp_path / "c.csv.gz", *MSE, "--chunk-size", 10)
    assert dask["rows"] == 500
    np.testing.assert_allclose(dask["result"], np.mean(_mse_rows(p, y)), rtol=1e-13)
    np.testing.assert_allclose(dask["result"], local["result"], rtol=1e-13)


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
def test_csv_byte_ranges_of_any_size_read_each_row_once(tmp_path, ending):
    from anyloss.cli._readers import _arrow_chunks

    p = np.arange(7, dtype=np.float64) * 1.5
    y = np.arange(7, dtype=np.float64) ** 2
    text = "p,a_long_column_name_y\r\n" + "\n".join(f"{a},{b}" for a, b in zip(p, y, strict=True))
    path = tmp_path / "r.csv"
    path.write_bytes((text + ending).encode())
    source = open_source(str(path))
    names = ["p", "a_long_column_name_y"]
    size = path.stat().st_size
    for step in range(1, size + 2):  # ranges shorter than a row, than the header, ...
        got = [
            chunk.arrays
            for s in range(0, size, step)
            for chunk in _arrow_chunks(source, str(path), names, 3, (s, min(s + step, size)))
        ]
        np.testing.assert_array_equal(np.concatenate([g["p"] for g in got]), p, err_msg=step)
        np.testing.assert_array_equal(np.concatenate([g[names[1]] for g in got]), y)

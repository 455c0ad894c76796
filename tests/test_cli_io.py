"""The input and output layer of ``anyloss eval``: readers, column types, ``--out``.

End-to-end tests run the installed command in a subprocess; the others call the
readers (``open_source``) and the writer (``AtomicOutput``) in this process.
Expected values come from NumPy on arrays the test builds itself.
"""

from __future__ import annotations

import bz2
import gzip
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_helpers import executable, fails, result, run

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pcsv = pytest.importorskip("pyarrow.csv")

from anyloss.cli._columns import select  # noqa: E402
from anyloss.cli._errors import InputError  # noqa: E402
from anyloss.cli._output import AtomicOutput  # noqa: E402
from anyloss.cli._readers import open_source  # noqa: E402

MSE = ("--loss", "mse_loss", "--input", "p", "--target", "y")


def _mse_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (np.asarray(p, np.float64) - np.asarray(y, np.float64)) ** 2


# -- reading ------------------------------------------------------------------------------


def test_a_wide_parquet_file_reads_its_schema_once(tmp_path, monkeypatch):
    # Rebuilding the Arrow schema for every selected column made a glob over a
    # wide file quadratic (2,000 columns: 17 s). It is read once per file now.
    width, rows = 400, 7
    values = np.arange(rows * width, dtype=np.float64).reshape(rows, width)
    pq.write_table(
        pa.table({**{f"c_{j}": values[:, j] for j in range(width)}, "y": np.zeros(rows)}),
        tmp_path / "wide.parquet",
    )
    reads = []
    schema = pq.ParquetFile.schema_arrow

    def counted(self):
        reads.append(1)
        return schema.fget(self)

    monkeypatch.setattr(pq.ParquetFile, "schema_arrow", property(counted))
    source = open_source(str(tmp_path / "wide.parquet"))
    sel = select("c_*", source.columns, source.label)
    chunks = list(source.chunks([*sel.names, "y"], 3))
    assert len(reads) <= 4, f"{len(reads)} schema reads for one file"
    got = np.concatenate([np.stack([c.arrays[n] for n in sel.names], axis=1) for c in chunks])
    np.testing.assert_array_equal(got, values)  # natural order: c_2 before c_10


def test_a_csv_column_integer_in_its_first_block_may_hold_fractions(tmp_path):
    # PyArrow infers column types from the first block (1 MiB by default): here
    # `y` looks int64 there and holds 0.5 at row 300,000.
    rows = 300_001
    p = np.full(rows, 2.0)
    y = np.ones(rows)
    y[-1] = 0.5
    with open(tmp_path / "late.csv", "w") as f:
        f.write("p,y\n")
        f.write("2.0,1\n" * (rows - 1))
        f.write("2.0,0.5\n")
    got = result(tmp_path / "late.csv", *MSE, "--reduction", "sum", "--chunk-size", 10_000)
    assert got["rows"] == rows
    assert got["result"] == float(np.sum(_mse_rows(p, y)))  # 300,000 + 2.25: exact
    assert got["dtype"] == "float64"


def test_a_csv_integer_column_stays_integer(tmp_path):
    # Class indices read as text still reach cross_entropy as integers.
    logits = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    label = np.array([2, 0, 1])
    pcsv.write_csv(
        pa.table({**{f"x_{j}": logits[:, j] for j in range(3)}, "label": label}),
        tmp_path / "ce.csv",
    )
    got = result(
        tmp_path / "ce.csv", "--loss", "cross_entropy", "--input", "x_*", "--target", "label"
    )
    shifted = logits - logits.max(1, keepdims=True)
    want = np.log(np.exp(shifted).sum(1)) - shifted[np.arange(3), label]
    np.testing.assert_allclose(got["result"], want, rtol=1e-12)  # default: per row


def test_a_csv_value_that_is_not_a_number_is_named_with_its_row(tmp_path):
    with open(tmp_path / "bad.csv", "w") as f:
        f.write("p,y\n" + "1.0,1\n" * 200_000 + "1.0,oops\n")
    line = fails("eval", tmp_path / "bad.csv", *MSE, "--chunk-size", 60_000)
    assert "row 200000" in line and "'oops'" in line and "'y'" in line


def test_csv_shards_keep_the_first_files_types(tmp_path):
    # The second shard's `p` holds whole numbers only: still float64, as in the first.
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a-1.csv").write_text("p,y\n1.5,1\n")
    (tmp_path / "s" / "a-2.csv").write_text("p,y\n2,1\n3,0.5\n")
    chunks = list(open_source(str(tmp_path / "s")).chunks(["p", "y"], 10))
    assert [c.arrays["p"].dtype for c in chunks] == [np.float64, np.float64]
    assert [c.arrays["y"].dtype for c in chunks] == [np.int64, np.float64]
    np.testing.assert_array_equal(chunks[1].arrays["y"], [1.0, 0.5])


def test_a_header_only_csv_is_like_an_empty_parquet_file(tmp_path):
    (tmp_path / "h.csv").write_text("p,y\n")
    pq.write_table(pa.table({"p": np.zeros(0), "y": np.zeros(0)}), tmp_path / "e.parquet")
    for name in ("h.csv", "e.parquet"):
        assert fails("eval", tmp_path / name, *MSE).endswith(f"{name}: no rows to evaluate")


def test_mixed_float32_and_float64_shards_read_as_float64(tmp_path):
    rng = np.random.default_rng(3)
    p, y = rng.normal(size=50), rng.normal(size=50)
    (tmp_path / "in").mkdir()
    pq.write_table(
        pa.table({"p": p[:20].astype(np.float32), "y": y[:20].astype(np.float32)}),
        tmp_path / "in" / "a-1.parquet",
    )
    pq.write_table(pa.table({"p": p[20:], "y": y[20:]}), tmp_path / "in" / "a-2.parquet")
    out = tmp_path / "l.parquet"
    got = result(tmp_path / "in", *MSE, "--reduction", "none", "--out", out)
    assert got["dtype"] == "float64" and got["rows"] == 50
    table = pq.read_table(out)
    assert table.schema.field("loss").type == pa.float64()
    want = _mse_rows(np.concatenate([p[:20].astype(np.float32), p[20:]]),
                     np.concatenate([y[:20].astype(np.float32), y[20:]]))  # fmt: skip
    np.testing.assert_array_equal(table.column("loss").to_numpy(), want)


def test_a_directory_includes_compressed_csv_shards(tmp_path):
    rng = np.random.default_rng(4)
    p, y = rng.normal(size=40), rng.normal(size=40)
    (tmp_path / "in").mkdir()
    parts = {"s-1.csv": open, "s-2.csv.gz": gzip.open, "s-3.csv.bz2": bz2.open}
    for i, (name, opener) in enumerate(parts.items()):
        with opener(tmp_path / "in" / name, "wt") as f:
            f.write("p,y\n")
            for a, b in zip(p[10 * i : 10 * i + 10], y[10 * i : 10 * i + 10], strict=True):
                f.write(f"{float(a)!r},{float(b)!r}\n")
    with pa.CompressedOutputStream(str(tmp_path / "in" / "s-4.CSV.ZST"), "zstd") as f:
        f.write(
            b"p,y\n"
            + b"".join(
                f"{float(a)!r},{float(b)!r}\n".encode()
                for a, b in zip(p[30:], y[30:], strict=True)
            )
        )
    got = result(tmp_path / "in", *MSE, "--reduction", "sum")
    assert got["rows"] == 40
    np.testing.assert_allclose(got["result"], np.sum(_mse_rows(p, y)), rtol=1e-14)


def test_a_corrupted_parquet_page_is_an_error(tmp_path):
    p = np.arange(1000, dtype=np.float64)
    table = pa.table({"p": p, "y": np.zeros(1000)})
    pq.write_table(table, tmp_path / "ok.parquet", write_page_checksum=True, compression="none")
    data = bytearray((tmp_path / "ok.parquet").read_bytes())
    at = data.find(np.float64(500).tobytes())
    data[at + 7] ^= 0x42  # 500.0 becomes about 1e22: a plausible float, a wrong sum
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    assert result(tmp_path / "ok.parquet", *MSE, "--reduction", "sum")["result"] == float(
        np.sum(p * p)
    )
    line = fails("eval", tmp_path / "bad.parquet", *MSE)
    assert "bad.parquet" in line and "checksum" in line and "corrupt" in line


def test_our_parquet_output_carries_page_checksums(tmp_path):
    path = tmp_path / "l.parquet"
    out = AtomicOutput(str(path), force=False)
    out.write(np.arange(100, dtype=np.float64))
    out.commit()
    col = pq.ParquetFile(path).metadata.row_group(0).column(0)
    end = (col.dictionary_page_offset or col.data_page_offset) + col.total_compressed_size
    data = bytearray(path.read_bytes())
    data[end - 1] ^= 0x42  # the last byte of the last page's (compressed) data
    path.write_bytes(bytes(data))
    with pytest.raises(OSError, match="checksum"):
        pq.ParquetFile(path, page_checksum_verification=True).read()


def test_a_missing_value_in_a_list_column_names_its_row(tmp_path):
    x = [[1, 2, 3]] * 9 + [[4, 5, None]] + [[0, 0, 0]] * 2
    y = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(36)), 3)
    pq.write_table(pa.table({"p": pa.array(x, pa.list_(pa.int64())), "y": y}), tmp_path / "l.pq")
    line = fails("eval", tmp_path / "l.pq", *MSE)
    assert "row 9:" in line and "missing value" in line and "item 2" in line
    line = fails("eval", tmp_path / "l.pq", *MSE, "--chunk-size", 4)  # row 1 of the 3rd chunk
    assert "row 9:" in line


def test_duplicate_column_names_are_an_error(tmp_path):
    both = pa.Table.from_arrays([pa.array([1.0, 2.0])] * 3, names=["p", "p", "y"])
    pq.write_table(both, tmp_path / "d.parquet")
    (tmp_path / "d.csv").write_text("p,p,y\n1,2,0\n3,4,0\n")
    for name in ("d.parquet", "d.csv"):
        line = fails("eval", tmp_path / name, *MSE)
        assert "column 'p' appears more than once" in line, line
    # A duplicate the loss does not use is harmless.
    got = result(tmp_path / "d.parquet", "--loss", "mse_loss", "--input", "y", "--target", "y")
    assert got["result"] == 0.0
    # A second shard with the duplicate.
    (tmp_path / "s").mkdir()
    pq.write_table(pa.table({"p": [1.0], "y": [0.0]}), tmp_path / "s" / "a-1.parquet")
    pq.write_table(both, tmp_path / "s" / "a-2.parquet")
    assert "column 'p' appears more than once" in fails("eval", tmp_path / "s", *MSE)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a-1.csv").write_text("p,y\n1,0\n")
    with gzip.open(tmp_path / "c" / "a-2.csv.gz", "wt") as f:
        f.write("p,y,p\n1,0,5\n")
    line = fails("eval", tmp_path / "c", *MSE)
    assert "a-2.csv.gz: column 'p' appears more than once" in line, line


def test_npy_columns_reach_the_loss_contiguous(tmp_path):
    # Columns of a 2-D array and fields of a record array are strided views of
    # the block read; the fused kernels need C-contiguous arrays.
    m = np.arange(40.0).reshape(10, 4)
    np.save(tmp_path / "m.npy", m)
    rec = np.zeros(10, dtype=[("p", np.float64), ("y", np.float32, (3,))])
    np.save(tmp_path / "r.npy", rec)
    for name, cols in (("m.npy", ["0", "2"]), ("r.npy", ["p", "y"])):
        for chunk in open_source(str(tmp_path / name)).chunks(cols, 4):
            assert all(a.flags.c_contiguous for a in chunk.arrays.values()), name
    got = [c.arrays["2"] for c in open_source(str(tmp_path / "m.npy")).chunks(["2"], 4)]
    np.testing.assert_array_equal(np.concatenate(got), m[:, 2])


def test_control_characters_in_names_are_escaped(tmp_path):
    pq.write_table(pa.table({"p\nq": [1.0], "y": [0.0]}), tmp_path / "c.parquet")
    line = fails("eval", tmp_path / "c.parquet", *MSE)  # one line, although a name has \n
    assert "p\\nq" in line
    line = fails("eval", tmp_path / "c.parquet", "--loss", "mse_loss", "--input", "a\x1b[2Jb")
    assert "\x1b" not in line


# -- writing -----------------------------------------------------------------------------


def test_npy_output_with_a_long_header(tmp_path):
    # Many dimensions: the header is longer than the 128 bytes once reserved.
    shape = (5, *[1] * 40, 2)
    losses = np.arange(10.0).reshape(shape)
    path = tmp_path / "l.npy"
    out = AtomicOutput(str(path), force=False)
    out.write(losses[:2])
    out.write(losses[2:])
    out.commit()
    np.testing.assert_array_equal(np.load(path), losses)
    with open(path, "rb") as f:  # the data start on a multiple of 64 bytes
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        assert f.tell() % 64 == 0
    # End to end: a 40-d array column of an .npz file.
    p = np.linspace(-1, 1, 30).reshape(3, *[1] * 40, 10)
    np.savez(tmp_path / "in.npz", p=p, y=np.zeros_like(p))
    result(tmp_path / "in.npz", *MSE, "--reduction", "none", "--out", tmp_path / "e2e.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "e2e.npy"), p * p)


def test_npy_output_with_no_rows_and_many_rows(tmp_path):
    out = AtomicOutput(str(tmp_path / "e.npy"), force=False)
    out.commit()
    assert np.load(tmp_path / "e.npy").shape == (0,)
    out = AtomicOutput(str(tmp_path / "big.npy"), force=False)
    for _ in range(3):
        out.write(np.ones((40_000, 3), np.float32))
    out.commit()
    got = np.load(tmp_path / "big.npy")
    assert got.shape == (120_000, 3) and got.dtype == np.float32 and got.all()


def test_a_chunk_of_another_dtype_is_never_narrowed(tmp_path):
    out = AtomicOutput(str(tmp_path / "l.npy"), force=False)
    out.write(np.ones(3, np.float32))
    with pytest.raises(InputError, match="change dtype from float32 to float64 after row 3"):
        out.write(np.ones(3, np.float64))
    out.abort()
    assert os.listdir(tmp_path) == []


def test_two_runs_racing_for_the_same_out(tmp_path, monkeypatch):
    # Both start before either has written: each sees no file. The second to
    # finish must not replace the first's output.
    path = str(tmp_path / "l.npy")
    pid = iter([1001, 1002])
    monkeypatch.setattr(os, "getpid", lambda: next(pid))
    first, second = AtomicOutput(path, force=False), AtomicOutput(path, force=False)
    first.write(np.zeros(4))
    second.write(np.ones(4))
    first.commit()
    with pytest.raises(InputError, match="output exists"):
        second.commit()
    second.abort()
    np.testing.assert_array_equal(np.load(path), np.zeros(4))
    assert os.listdir(tmp_path) == ["l.npy"]


def test_out_may_not_be_the_input(tmp_path):
    pq.write_table(pa.table({"p": [1.0, 2.0], "y": [0.0, 0.0]}), tmp_path / "in.parquet")
    before = (tmp_path / "in.parquet").read_bytes()
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "in.parquet", tmp_path / "link.parquet")
    for out in ("in.parquet", "sub/../in.parquet", "link.parquet"):
        line = fails(
            "eval", tmp_path / "in.parquet", *MSE, "--reduction", "none",
            "--out", tmp_path / out, "--force",
        )  # fmt: skip
        assert "--out is the input file" in line, line
    assert (tmp_path / "in.parquet").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["in.parquet", "link.parquet", "sub"]


def test_out_naming_a_symlink_writes_its_target(tmp_path):
    pq.write_table(pa.table({"p": [1.0, 3.0], "y": [0.0, 0.0]}), tmp_path / "in.parquet")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "l.csv").write_text("old\n")
    os.symlink(tmp_path / "real" / "l.csv", tmp_path / "link.csv")
    args = ["eval", tmp_path / "in.parquet", *MSE, "--reduction", "none"]
    assert "use --force" in fails(*args, "--out", tmp_path / "link.csv")
    assert run(*args, "--out", tmp_path / "link.csv", "--force").returncode == 0
    assert os.path.islink(tmp_path / "link.csv")
    assert (tmp_path / "real" / "l.csv").read_text() == '"loss"\n1\n9\n'
    assert sorted(os.listdir(tmp_path / "real")) == ["l.csv"]


def test_out_naming_a_directory(tmp_path):
    pq.write_table(pa.table({"p": [1.0], "y": [0.0]}), tmp_path / "in.parquet")
    (tmp_path / "o.parquet").mkdir()
    for out in ("o.parquet", "."):
        line = fails(
            "eval", tmp_path / "in.parquet", *MSE, "--reduction", "none",
            "--out", tmp_path / out, "--force",
        )  # fmt: skip
        assert "--out names a directory" in line, line


def test_a_hang_up_leaves_no_temporary_file(tmp_path):
    rec = np.zeros(2_000_000, dtype=[("p", np.float64), ("y", np.float64)])
    np.save(tmp_path / "in.npy", rec)
    out = tmp_path / "l.parquet"
    args = ["eval", tmp_path / "in.npy", *MSE, "--reduction", "none", "--out", out]
    command = [*executable(), *map(str, args), "--chunk-size", "500"]
    # SIGHUP handled by default, as from a terminal, even if this test runs
    # under nohup: set in a small launcher that execs the command (a
    # preexec_fn would fork this process, which JAX warns about once loaded)
    launcher = (
        "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not any(f.name.endswith(".tmp") for f in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["in.npy"]

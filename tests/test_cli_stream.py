"""`gpunn train --npy/--parquet`: the file is streamed (never loaded whole) through fit's
streaming path, with the target a column of the file or a separate --targets file; bad files
and options are refused naming the option before any training."""

import os
import re

import numpy as np
import pytest

import gpunn
from gpunn import datasets, tabular_read
from gpunn.cli import main

N = 200


@pytest.fixture()
def files(tmp_path, monkeypatch):
    """Shuffled three-class data on features of different scales, as .npy files."""
    X, y = datasets.synthetic(n_samples=N, n_features=5, n_classes=3, seed=2)
    X = X * [1.0, 100.0, 0.01, 1.0, 1000.0] + [0.0, 50.0, -3.0, 0.0, 1e4]

    def refuse(*args, **kwargs):
        raise AssertionError("the data file was loaded whole")

    monkeypatch.setattr(tabular_read, "read_table", refuse)
    monkeypatch.setattr(np, "load", refuse)
    np.save(tmp_path / "Xy.npy", np.column_stack([X, y]).astype(np.float32))
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    return tmp_path, X.astype(np.float32), y


def run(capsys, *argv):
    code = main(["train", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def epoch_lines(out):
    return [line.split("time")[0] for line in out.splitlines() if line.startswith("epoch")]


def test_target_column_or_targets_file_train_alike(files, capsys):
    """The same rows as one file with the target column, as two files, or as Parquet: the
    same epochs and scores; the last rows are held out (test, then validation)."""
    path, X, y = files
    common = ["--epochs", 4, "--test-size", 0.2, "--val-split", 0.25, "--batch-size", 16]
    code, out, err = run(capsys, "--npy", path / "Xy.npy", *common)
    assert code == 0, err
    assert "160 train / 40 test rows, 5 features, 3 classes" in out
    code, two, err = run(capsys, "--npy", path / "X.npy", "--targets", path / "y.npy", *common)
    assert code == 0, err
    assert epoch_lines(two) == epoch_lines(out) and len(epoch_lines(out)) == 4
    score = re.search(r"train accuracy .*test accuracy \S+", out).group(0)
    assert score in two
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"label": y, **{f"f{j}": X[:, j] for j in range(5)}}),
                   path / "d.parquet", row_group_size=37)
    code, parquet, err = run(capsys, "--parquet", path / "d.parquet", "--target", "label",
                             *common)
    assert code == 0, err
    assert epoch_lines(parquet) == epoch_lines(out) and score in parquet


def test_saved_model_predicts_raw_rows(files, capsys):
    path, X, y = files
    code, out, err = run(capsys, "--npy", path / "Xy.npy", "--epochs", 30, "--test-size", 0,
                         "--save", path / "m.safetensors")
    assert code == 0, err
    model = gpunn.load(path / "m.safetensors")
    accuracy = float(re.search(r"train accuracy (\S+)", out).group(1))
    assert np.mean(model.predict(X) == y) == pytest.approx(accuracy, abs=1e-4)
    assert accuracy > 0.8


def test_regression_target_is_standardized_and_scored(files, capsys):
    path, X, _ = files
    target = X[:, 1] * 0.5 + 3.0 * X[:, 3]
    np.save(path / "t.npy", target)
    code, out, err = run(capsys, "--npy", path / "X.npy", "--targets", path / "t.npy",
                         "--task", "regression", "--epochs", 30, "--lr", 0.01,
                         "--save", path / "r.safetensors")
    assert code == 0, err
    r2 = float(re.search(r"test R2 (\S+)", out).group(1))
    predicted = gpunn.load(path / "r.safetensors").predict(X[160:]).ravel()
    t = target[160:]
    assert r2 == pytest.approx(1 - np.sum((t - predicted) ** 2) / np.sum((t - t.mean()) ** 2),
                               abs=1e-3)
    assert r2 > 0.8


def refused(capsys, match, *argv):
    code, out, err = run(capsys, *argv, "--epochs", 1)
    assert code == 1 and "epoch" not in out, out
    assert re.search(match, err), err


def test_bad_files_and_options_are_refused_before_training(files, capsys):
    path, X, y = files
    np.save(path / "short.npy", y[:-3])
    refused(capsys, r"--targets: expected 200 rows, as --npy has, got 197", "--npy",
            path / "X.npy", "--targets", path / "short.npy")
    np.save(path / "wide.npy", np.ones((N, 2)))
    refused(capsys, r"--targets: expected one target per row .* shape \(200, 2\)", "--npy",
            path / "X.npy", "--targets", path / "wide.npy")
    refused(capsys, r"--target: expected no column with --targets", "--npy", path / "X.npy",
            "--targets", path / "y.npy", "--target", "0")
    refused(capsys, r"--target: expected a column index in \[-6, 6\)", "--npy",
            path / "Xy.npy", "--target", "6")
    refused(capsys, r"--target: expected a column index for a \.npy file, got 'label'",
            "--npy", path / "Xy.npy", "--target", "label")
    os.mkfifo(path / "fifo.npy")
    refused(capsys, r"--npy: expected a regular file or a folder, got a named pipe", "--npy",
            path / "fifo.npy")
    refused(capsys, r"--targets: expected a regular file or a folder, got a named pipe",
            "--npy", path / "X.npy", "--targets", path / "fifo.npy")
    refused(capsys, r"--npy: expected a data file or folder, got no such file", "--npy",
            path / "none.npy")
    refused(capsys, r"--test-size: expected a fraction leaving rows on both sides, got 0.001",
            "--npy", path / "Xy.npy", "--test-size", 0.001)
    refused(capsys, r"--val-split: expected a fraction leaving rows on both sides", "--npy",
            path / "Xy.npy", "--val-split", 0.001)
    refused(capsys, r"--targets: expected with --npy or --parquet", "--dataset", "digits",
            "--targets", path / "y.npy")
    bad = np.column_stack([X, y]).astype(np.float32)
    bad[150, 2] = np.inf
    np.save(path / "bad.npy", bad)
    refused(capsys, r"--npy: expected finite values, got 1 NaN/inf in rows 0 to 199, first "
            r"in row 150", "--npy", path / "bad.npy")
    np.save(path / "nan.npy", np.where(np.arange(N) == 7, np.nan, y))
    refused(capsys, r"--targets: expected finite targets, got nan in row 7", "--npy",
            path / "X.npy", "--targets", path / "nan.npy")
    bad = np.column_stack([X, y]).astype(np.float32)
    bad[9, -1] = -np.inf
    np.save(path / "bad.npy", bad)
    refused(capsys, r"--target: expected finite targets, got -inf in row 9", "--npy",
            path / "bad.npy")
    np.save(path / "one.npy", X[:, :1])
    refused(capsys, r"--npy: expected a 2-D array with the target in a column and at least "
            r"one feature column", "--npy", path / "one.npy")


def test_bad_parquet_options_are_refused(files, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path, X, y = files
    pq.write_table(pa.table({"a": X[:, 0], "label": y}), path / "d.parquet")
    refused(capsys, r"--target: expected a column of .* \['a', 'label'\], got 'b'",
            "--parquet", path / "d.parquet", "--target", "b")
    pq.write_table(pa.table({"label": y}), path / "only.parquet")
    refused(capsys, r"--parquet: expected feature columns besides the target 'label'",
            "--parquet", path / "only.parquet")
    pq.write_table(pa.table({"a": X[:, 0], "label": [str(v) for v in y]}), path / "s.parquet")
    refused(capsys, r"--parquet: expected numeric Parquet columns, got 'label' of type string",
            "--parquet", path / "s.parquet")

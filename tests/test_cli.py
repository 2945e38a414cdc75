"""`gpunn train` and the datasets behind it."""

import re

import numpy as np
import pytest

import gpunn
from gpunn import datasets
from gpunn.cli import main


def run(capsys, *argv):
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("dataset", ["digits", "breast_cancer"])
def test_defaults_reach_95_percent_test_accuracy(backend, capsys, dataset):
    code, out, _ = run(capsys, "--dataset", dataset)
    assert code == 0
    assert f"backend: {backend.name}" in out
    assert len(re.findall(r"^epoch +\d+/20  cost [\d.]+  test_acc [\d.]+", out, re.MULTILINE)) == 20
    train_acc, test_acc = map(float, re.search(
        r"train accuracy ([\d.]+)  test accuracy ([\d.]+)", out).groups())
    assert test_acc >= 0.95 and train_acc >= 0.95


def test_options_plot_and_save(backend, capsys, tmp_path):
    code, out, _ = run(capsys, "--dataset", "synthetic", "--hidden", "16,8", "--activation",
                       "tanh", "--optimizer", "sgd", "--lr", "0.1", "--batch-size", "full",
                       "--epochs", "3", "--schedule", "exponential,rate=0.9", "--dtype",
                       "float64", "--seed", "2", "--test-size", "0.2", "--plot",
                       str(tmp_path / "cost.png"), "--save", str(tmp_path / "model.npz"))
    assert code == 0, out
    assert "synthetic, 799 train / 201 test rows, 20 features, 3 classes" in out
    assert (tmp_path / "cost.png").read_bytes()[:4] == b"\x89PNG"
    restored = gpunn.load(tmp_path / "model.npz")
    assert [layer.n_out for layer in restored.layers] == [16, 8, 3]
    assert restored.output == "softmax" and restored.dtype == np.float64
    _, X_test, _, y_test = datasets.train_test_split(*datasets.synthetic(seed=2), 0.2, 2)
    accuracy = np.mean(restored.predict(X_test) == y_test)  # raw rows: the scaling is saved
    assert f"test accuracy {accuracy:.4f}" in out and accuracy > 0.5


@pytest.mark.parametrize("argv, match", [
    (["--hidden", "64,x"], "--hidden: expected comma-separated layer sizes"),
    (["--batch-size", "0"], r"--batch-size: expected a positive integer or 'full', got '0'"),
    (["--batch-size", "5000"], r"--batch-size: expected an integer in \[1, 1347\], got 5000"),
    (["--lr", "1e-320"], r"--lr: expected a finite number in \[1.175\d*e-38, 3.40\d*e\+38\]"),
    (["--schedule", "exponential,rate=2"], r"--schedule: rate: expected"),
    (["--schedule", ""], r"--schedule: schedule: expected one of"),
    (["--test-size", "1e-300"], r"--test-size: expected a split leaving rows on both sides, got "
                                r"1e-300 of 1797 rows \(stratified: each of the 10 classes "
                                r"holds out round\(1e-300 x its rows\), and they have 174 to "
                                r"183 rows\)"),
    (["--hidden", "16,0"], r"--hidden: expected comma-separated layer sizes from 1 to 2147483647"),
    (["--hidden", "2147483648"], r"--hidden: expected comma-separated layer sizes from 1 to "),
    (["--batch-size", "many"], "--batch-size: expected a positive integer or 'full'"),
    (["--optimizer", "nadam"], "optimizer: expected one of"),
    (["--optimizer", "sgd"], r"optimizer 'sgd': expected a value for \['lr'\]"),
    (["--schedule", "exponential"], r"schedule 'exponential': expected a value for \['rate'\]"),
    (["--schedule", "exponential,0.9"], "--schedule: expected name,key=value"),
    (["--activation", "swish"], "activation: expected one of"),
    (["--epochs", "0"], r"--epochs: expected an integer in \[1, 10000000\], got 0"),
    (["--epochs", str(2 ** 53 + 1)], r"--epochs: expected an integer in \[1, 10000000\]"),
    (["--lr", "-1"], r"--lr: expected a finite number in \[1.175\d*e-38, .*\], got -1.0"),
    (["--lr", "nan"], r"--lr: expected a finite number"),
    (["--seed", "-1"], r"--seed: expected an integer in \[0, inf\], got -1"),
    (["--test-size", "1.5"], r"--test-size: expected a finite number in \[0.0, 1.0\)"),
    (["--val-split", "0"], r"--val-split: expected a finite number in \(0.0, 1.0\)"),
    (["--early-stopping", "-2"], r"--early-stopping: expected an integer in \[0, inf\]"),
    (["--comm-timeout", "0"], r"--comm-timeout: expected a finite number in \(0.0, inf\]"),
    (["--schedule", "exponential,rate=0.9,rate=0.5"],
     r"--schedule: expected name,key=value,... with each key once"),
    (["--plot", "curves.pgf"], r"--plot: expected a file name ending in an image format "),
    (["--plot", "curves.txt"], r"--plot: expected a file name ending in an image format "
                               r"matplotlib writes \(.*pdf.*png.*svg.*\), got 'curves.txt'"),
    (["--class-weight", "3=x"], "--class-weight: expected 'balanced' or LABEL=WEIGHT"),
    (["--class-weight", "3=1,3=2"], "--class-weight: expected .* each label once"),
    (["--class-weight", "10=2"], r"--class-weight: expected labels among the classes \['0', "),
    (["--class-weight", "3=-1"], "--class-weight: expected non-negative weights"),
    (["--clip-value", "1e39"], r"--clip-value: expected 0 or a value in \[1.175e-38, "),
    (["--norm", "bogus"], r"--norm: expected one of \['layer'\], got 'bogus'"),
    (["--residual", "--hidden", "8,16"], r"--residual: expected equal hidden widths"),
    (["--schedule", "inverse_sqrt,k=1e300"],
     r"--lr or --schedule \(a learning rate the schedule gives\): expected 0 or a value"),
])
def test_bad_options_exit_with_a_named_error(backend, capsys, argv, match):
    code, out, err = run(capsys, "--epochs", "1", *argv)
    assert code == 1 and "epoch " not in out
    if argv[0] not in ("--class-weight", "--residual") and argv[1] != "5000" \
            and "k=1e300" not in argv[1] or argv[1] in ("3=x", "3=1,3=2"):
        assert "data:" not in out  # refused before the data is read
    assert re.search(f"^gpunn train: error: .*{match}", err, re.MULTILINE), err


@pytest.mark.parametrize("name, magic", [("curves.pdf", b"%PDF"), ("curves.svg", b"<?xml"),
                                         ("curves", b"\x89PNG"), ("CURVES.PNG", b"\x89PNG")])
def test_the_plot_is_written_in_the_format_its_name_asks_for(capsys, tmp_path, name, magic):
    code, out, err = run(capsys, "--dataset", "synthetic", "--epochs", "2", "--test-size", "0",
                         "--plot", str(tmp_path / name))
    assert code == 0, err
    assert (tmp_path / name).read_bytes().startswith(magic)
    assert "test accuracy" not in out and "train accuracy" in out  # --test-size 0: no test


def test_fit_bounds_epochs():
    from gpunn.train import MAX_EPOCHS

    model = gpunn.MLP([2, 2], seed=0)
    with pytest.raises(ValueError, match=rf"epochs: expected an integer in \[1, {MAX_EPOCHS}\]"):
        gpunn.fit(model, np.ones((4, 2)), np.ones((4, 2)), epochs=MAX_EPOCHS + 1)


def test_synthetic_is_seeded_and_balanced(backend):
    X, y = datasets.synthetic(n_samples=90, n_features=4, n_classes=3, seed=5)
    assert X.shape == (90, 4) and np.bincount(y).tolist() == [30, 30, 30]
    again, _ = datasets.synthetic(n_samples=90, n_features=4, n_classes=3, seed=5)
    np.testing.assert_array_equal(X, again)
    assert not np.array_equal(X, datasets.synthetic(90, 4, 3, seed=6)[0])


def test_split_is_stratified_and_seeded(backend):
    X, y = np.arange(40).reshape(20, 2), np.array([0] * 12 + [1] * 8)
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, 0.25, seed=1)
    assert np.bincount(y_test).tolist() == [3, 2] and np.bincount(y_train).tolist() == [9, 6]
    assert sorted(np.concatenate([X_train[:, 0], X_test[:, 0]]).tolist()) == X[:, 0].tolist()
    assert datasets.train_test_split(X, y, 0.25, seed=1)[1].tolist() == X_test.tolist()
    with pytest.raises(ValueError, match="test_size: expected a split leaving rows"):
        datasets.train_test_split(X, y, 0.01)


def test_standardize_uses_the_training_statistics(backend):
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    scaled_train, scaled_test = datasets.standardize(train, np.array([[5.0, 6.0]]))
    np.testing.assert_array_equal(scaled_train, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(scaled_test, [[3.0, 1.0]])


def test_missing_scikit_learn_names_the_data_extra(backend, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[data\]'"):
        datasets.digits()
    code, _, err = run(capsys, "--dataset", "breast_cancer")
    assert code == 1 and "scikit-learn" in err


def test_class_weight_reaches_fit_by_class_index(backend, capsys, monkeypatch):
    import gpunn.train

    seen, real_fit = [], gpunn.train.fit

    def spy(*args, **kwargs):
        seen.append(kwargs["class_weight"])
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(gpunn.train, "fit", spy)
    for option, expected in (("balanced", "balanced"), ("2=3,0=0.5", {2: 3.0, 0: 0.5})):
        code, out, err = run(capsys, "--dataset", "synthetic", "--epochs", "1",
                             "--class-weight", option)
        assert code == 0, err
        assert seen[-1] == expected


def test_a_model_too_big_for_memory_is_an_error_not_a_traceback(capsys):
    """A width that passes --hidden's bound but not this machine's memory: one line naming
    the size numpy could not allocate."""
    code, out, err = run(capsys, "--dataset", "breast_cancer", "--epochs", "1", "--hidden",
                         "2147483647")  # 30 x 2**31 float32 weights: 257 GB
    assert code == 1 and "epoch " not in out
    assert re.search(r"^gpunn train: error: out of memory: Unable to allocate .*GiB", err), err


def test_plot_without_matplotlib_is_refused_before_training(capsys, monkeypatch):
    """Whatever the name (PNG without a suffix): no matplotlib, no training."""
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for name in ("curves", "curves.png"):
        code, out, err = run(capsys, "--dataset", "breast_cancer", "--epochs", "1", "--plot",
                             name)
        assert code == 1 and "data:" not in out
        assert "--plot: needs matplotlib (install the 'plot' extra" in err


def test_ctrl_c_is_one_line_and_status_130(capsys, monkeypatch):
    """Ctrl-C during training: 'interrupted' and the shell's status for SIGINT, no
    traceback."""
    import gpunn.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gpunn.train, "fit", interrupted)
    code, out, err = run(capsys, "--dataset", "breast_cancer", "--epochs", "1")
    assert code == 130 and err == "gpunn train: interrupted\n"

"""`gpunn train` on your own CSV / .npz / .npy data and `gpunn predict` with the saved model."""

import csv
import re

import numpy as np
import pytest

import gpunn
from gpunn import datasets, tabular
from gpunn.cli import main


def write_csv(path, X, y, names=None, target="label"):
    names = names or [f"f{i}" for i in range(X.shape[1])]
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*names, target])
        for row, label in zip(X, y):
            writer.writerow([*(repr(float(v)) for v in row), label])
    return str(path)


def raw_blobs(n=240):
    """Three classes on features of very different scales, sorted by class, string labels."""
    X, y = datasets.synthetic(n_samples=n, n_features=6, n_classes=3, seed=3)
    order = np.argsort(y, kind="stable")
    X = X[order] * [1.0, 100.0, 0.01, 1000.0, 1.0, 1.0] + [0.0, 5000.0, -3.0, 1e5, 0.0, 0.0]
    return X, np.array(["ant", "bee", "cat"])[y[order]]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_csv_train_then_predict_on_raw_rows(tmp_path, capsys):
    X, y = raw_blobs()
    data = write_csv(tmp_path / "train.csv", X, y)
    model_path, preds = tmp_path / "m.npz", tmp_path / "preds.csv"
    code, out, err = run(capsys, "train", "--csv", data, "--target", "label", "--epochs", "30",
                         "--val-split", "0.2", "--early-stopping", "3", "--save",
                         str(model_path))
    assert code == 0, err
    assert "180 train / 60 test rows, 6 features, 3 classes" in out
    assert re.search(r"^epoch +1/30  cost [\d.]+  val_acc [\d.]+", out, re.MULTILINE)
    test_acc = float(re.search(r"test accuracy ([\d.]+)", out).group(1))
    assert test_acc > 0.9
    code, out, err = run(capsys, "predict", "--model", str(model_path), "--csv", data,
                         "--out", str(preds))
    assert code == 0, err
    rows = read_rows(preds)
    assert list(rows[0]) == ["label", "proba_ant", "proba_bee", "proba_cat"]
    labels = np.array([r["label"] for r in rows])
    assert np.mean(labels == y) > 0.9
    assert f"accuracy {np.mean(labels == y):.4f} against column 'label'" in out
    # gpunn.load gives the same model: raw rows in, class indices out, classes in extra.
    saved = gpunn.load_checkpoint(model_path)
    classes = saved.extra["gpunn_cli"]["classes"]
    assert classes == ["ant", "bee", "cat"]
    np.testing.assert_array_equal(np.array(classes)[gpunn.load(model_path).predict(X)], labels)


def test_folding_the_scaling_gives_the_same_outputs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)) * [1.0, 50.0, 0.1] + [3.0, -400.0, 7.0]
    mean, std = X.mean(axis=0), X.std(axis=0)
    t_mean, t_std = np.array([120.0]), np.array([35.0])
    model = gpunn.MLP([3, 6, 1], activation="tanh", dtype="float64", seed=1)
    folded = tabular.fold_scaling(model, mean, std, t_mean, t_std)
    expected = model.predict((X - mean) / std) * t_std + t_mean
    np.testing.assert_allclose(folded.predict(X), expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(model.predict(X[:2]), model.predict(X[:2]))  # not modified


def test_regression_csv_is_inferred_and_predicts_in_target_units(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3)) * [1.0, 10.0, 100.0]
    y = 500.0 + 30.0 * X[:, 0] + 2.0 * X[:, 1] + 0.1 * X[:, 2]
    data = write_csv(tmp_path / "r.csv", X, y, target="price")
    code, out, err = run(capsys, "train", "--csv", data, "--epochs", "40", "--lr", "0.02",
                         "--activation",
                         "identity", "--hidden", "8", "--save", str(tmp_path / "r.npz"))
    assert code == 0, err
    assert "regression of 'price'" in out  # the last column is the default target
    assert float(re.search(r"test R2 ([-\d.]+)", out).group(1)) > 0.95
    code, out, _ = run(capsys, "predict", "--model", str(tmp_path / "r.npz"), "--csv", data)
    predicted = np.array([float(line) for line in out.splitlines()[1:]])
    assert out.splitlines()[0] == "price"
    assert np.sqrt(np.mean((predicted - y) ** 2)) < 0.1 * y.std()


def test_npz_and_npy_data(tmp_path, capsys):
    X, y = datasets.synthetic(n_samples=150, n_features=3, n_classes=2, seed=4)
    np.savez(tmp_path / "d.npz", X=X, y=y + 1)  # labels 1 and 2
    np.save(tmp_path / "d.npy", np.column_stack([y, X]))
    for argv in (["--npz", str(tmp_path / "d.npz")],
                 ["--npy", str(tmp_path / "d.npy"), "--target", "0"]):
        code, out, err = run(capsys, "train", *argv, "--epochs", "10", "--lr", "0.01",
                             "--save", str(tmp_path / "m.npz"))
        assert code == 0, err
        assert "3 features, 2 classes" in out
    np.save(tmp_path / "X.npy", X)
    code, out, err = run(capsys, "predict", "--model", str(tmp_path / "m.npz"), "--npy",
                         str(tmp_path / "X.npy"), "--out", str(tmp_path / "p.csv"))
    assert code == 0, err
    predicted = np.array([float(r["0"]) for r in read_rows(tmp_path / "p.csv")])
    np.testing.assert_array_equal(predicted, gpunn.load(tmp_path / "m.npz").predict(X))
    assert np.mean(predicted == y) > 0.8


def test_saved_bundled_model_scores_on_raw_rows(tmp_path, capsys):
    """The issue's case: breast cancer saved by the CLI used to score 0.37 on raw rows."""
    code, out, _ = run(capsys, "train", "--dataset", "breast_cancer", "--epochs", "5",
                       "--save", str(tmp_path / "bc.npz"))
    assert code == 0
    _, X_test, _, y_test = datasets.train_test_split(*datasets.breast_cancer(), 0.25, 0)
    accuracy = np.mean(gpunn.load(tmp_path / "bc.npz").predict(X_test) == y_test)
    assert f"test accuracy {accuracy:.4f}" in out and accuracy > 0.9


@pytest.mark.parametrize("argv, match", [
    (["--data", "x.csv"], None),
    (["--csv", "{bad}", "--target", "label"],
     r"expected numbers in feature column 'f1', got 'oops' on line 3"),
    (["--csv", "{good}", "--target", "nope"], r"--target: expected a column of .*'nope'"),
    (["--csv", "{good}", "--save", "{missing}/m.npz"], "--save: no such folder"),
    (["--csv", "{good}", "--plot", "{tmp}"], "--plot: expected a regular file .* directory"),
    (["--csv", "{good}", "--task", "regression"], "--task regression: expected numeric"),
    (["--csv", "{good}", "--val-split", "1.5"],
     r"--val-split: expected a finite number in \(0.0, 1.0\)"),
    (["--csv", "{missing}/x.csv"], "data: expected an existing file"),
], ids=["no-abbreviation", "text-feature", "unknown-target", "save-folder", "plot-dir",
        "string-regression", "val-split", "missing-file"])
def test_bad_data_options_fail_before_training(tmp_path, capsys, argv, match):
    X, y = raw_blobs(30)
    good = write_csv(tmp_path / "good.csv", X, y)
    bad = tmp_path / "bad.csv"
    bad.write_text("f0,f1,label\n1,2,a\n3,oops,b\n")
    argv = [a.format(good=good, bad=bad, tmp=tmp_path, missing=tmp_path / "missing")
            for a in argv]
    if match is None:  # argparse: an unknown option is not expanded to --dataset
        with pytest.raises(SystemExit):
            main(["train", *argv])
        assert "unrecognized arguments: --data" in capsys.readouterr().err
        return
    code, out, err = run(capsys, "train", "--epochs", "1", *argv)
    assert code == 1 and "epoch" not in out
    assert re.search(match, err), err


def test_task_inference():
    assert tabular.infer_task(np.array(["a", "b"])) == "classification"
    assert tabular.infer_task(np.array([1.0, 2.0, 10.0])) == "classification"
    assert tabular.infer_task(np.array([0.5, 2.0, 10.0])) == "regression"
    assert tabular.infer_task(np.arange(100.0)) == "regression"
    assert tabular.infer_task(np.arange(100.0), "classification") == "classification"
    with pytest.raises(ValueError, match="target: expected at least 2 classes, got 1"):
        tabular.encode_labels(np.array(["a", "a"]))


def test_predict_picks_the_model_columns_by_name(tmp_path, capsys):
    X, y = raw_blobs(60)
    data = write_csv(tmp_path / "d.csv", X, y)
    assert run(capsys, "train", "--csv", data, "--epochs", "2", "--save",
               str(tmp_path / "m.npz"))[0] == 0
    reordered = write_csv(tmp_path / "r.csv", X[:, ::-1], y,
                          names=[f"f{i}" for i in range(5, -1, -1)])
    code, out, _ = run(capsys, "predict", "--model", str(tmp_path / "m.npz"), "--csv", reordered)
    assert code == 0
    same = run(capsys, "predict", "--model", str(tmp_path / "m.npz"), "--csv", data)[1]
    assert out == same
    partial = write_csv(tmp_path / "p.csv", X[:, :5], y)
    code, _, err = run(capsys, "predict", "--model", str(tmp_path / "m.npz"), "--csv", partial)
    assert code == 1 and "expected the model's 6 feature columns, missing 1: 'f5'" in err


@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta.update(classes=meta["classes"][:1]),
     r"gpunn_cli\['classes'\]: expected None or 3 labels \(the model's outputs\)"),
    (lambda meta: meta.clear(), r"gpunn_cli\['task'\]: expected a value, got 'nothing'"),
    (lambda meta: meta.update(features=meta["features"][:-1]),
     r"gpunn_cli\['features'\]: expected 6 column names"),
    (lambda meta: meta.update(target=7), r"gpunn_cli\['target'\]: expected a column name"),
    (lambda meta: meta.update(task="clustering"),
     r"gpunn_cli\['task'\]: expected 'classification' or 'regression'"),
])
def test_predict_refuses_a_damaged_train_record_by_its_field(tmp_path, capsys, edit, message):
    """The record `gpunn train` stores beside the model, crafted but otherwise valid (a
    correct checksum): a CheckpointError naming the field, not a traceback."""
    from gpunn.checkpoint import load_checkpoint, save_checkpoint

    X, y = raw_blobs(60)
    data = write_csv(tmp_path / "d.csv", X, y)
    model_path = str(tmp_path / "m.safetensors")
    assert run(capsys, "train", "--csv", data, "--epochs", "1", "--save", model_path)[0] == 0
    saved = load_checkpoint(model_path)
    meta = dict(saved.extra["gpunn_cli"])
    edit(meta)
    save_checkpoint(model_path, saved.model, gpunn_cli=meta)
    code, out, err = run(capsys, "predict", "--model", model_path, "--csv", data)
    assert code == 1 and re.search(message, err) and "Traceback" not in err, err


def test_predictions_csv_neutralizes_spreadsheet_formulas(tmp_path, capsys):
    # Labels and a target name a spreadsheet would run as formulas (OWASP "CSV injection").
    X, y = raw_blobs(n=120)
    hostile = {"ant": "=HYPERLINK(\"http://x\",\"y\")", "bee": "@SUM(1+1)", "cat": "-2+3"}
    y = np.array([hostile[label] for label in y])
    data = write_csv(tmp_path / "train.csv", X, y, target="+t")
    model_path, preds = tmp_path / "m.npz", tmp_path / "preds.csv"
    code, _, err = run(capsys, "train", "--csv", data, "--target", "+t", "--epochs", "30",
                       "--save", str(model_path))
    assert code == 0, err
    code, out, err = run(capsys, "predict", "--model", str(model_path), "--csv", data,
                         "--out", str(preds))
    assert code == 0, err
    with open(preds, newline="") as file:
        header, *rows = list(csv.reader(file))
    assert header[0] == "'+t"
    labels = np.array([row[0] for row in rows])
    assert set(labels) <= {"'" + label for label in hostile.values()}
    assert np.mean(labels == np.char.add("'", y)) > 0.9
    # The accuracy is computed on the labels themselves, not their written form.
    assert re.search(r"accuracy 0\.9\d+|accuracy 1\.0000", out)
    assert all(float(cell) >= 0 for row in rows for cell in row[1:])  # numbers stay numbers


@pytest.mark.parametrize("cell, written", [
    ("=1+1", "'=1+1"), ("+1", "+1"), ("-1", "-1"), ("-1.5e3", "-1.5e3"), ("-.5", "-.5"),
    ("-1+1", "'-1+1"), ("+1e", "'+1e"), ("-1 ", "'-1 "), ("-", "'-"), ("-x", "'-x"),
    ("@A1", "'@A1"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("a=b", "a=b"), ("", ""), (-1, -1),
    ("-\u0661\u0662", "'-\u0661\u0662"), ("+\uff11", "'+\uff11"),  # non-ASCII digits: quoted
    (np.int64(-3), -3)])
def test_formula_neutralization_touches_only_text_that_starts_a_formula(cell, written):
    assert tabular.neutralize_formula(cell) == written
    assert type(tabular.neutralize_formula(cell)) is type(cell)


def test_numeric_labels_stay_numbers_in_predictions(tmp_path, capsys):
    X, y = raw_blobs(n=120)
    y = np.select([y == "ant", y == "bee"], [-1, 0], 1)
    data = write_csv(tmp_path / "train.csv", X, y)
    model_path, preds = tmp_path / "m.npz", tmp_path / "preds.csv"
    assert run(capsys, "train", "--csv", data, "--target", "label", "--epochs", "30",
               "--save", str(model_path))[0] == 0
    assert run(capsys, "predict", "--model", str(model_path), "--csv", data,
               "--out", str(preds))[0] == 0
    labels = [row["label"] for row in read_rows(preds)]
    assert "-1" in labels and not any(label.startswith("'") for label in labels)


def test_labels_that_read_as_one_number_stay_two_classes(tmp_path, capsys):
    """``007`` and ``7`` are two classes as written; predictions write them back as written,
    and the accuracy against the file compares the text."""
    X, y = raw_blobs(n=120)
    y = np.select([y == "ant", y == "bee"], ["007", "7"], "1e1")
    data = write_csv(tmp_path / "train.csv", X, y)
    model_path, preds = tmp_path / "m.npz", tmp_path / "preds.csv"
    code, out, err = run(capsys, "train", "--csv", data, "--target", "label", "--epochs", "40",
                         "--test-size", "0", "--save", str(model_path))
    assert code == 0, err
    assert "3 classes" in out
    assert gpunn.load_checkpoint(model_path).extra["gpunn_cli"]["classes"] == ["007", "1e1", "7"]
    # A file holding only "7" and "1e1" reads as the numbers 7 and 10 alone; predict compares
    # the model's text labels with the cells' text.
    keep = y != "007"
    part = write_csv(tmp_path / "part.csv", X[keep], y[keep])
    code, out, err = run(capsys, "predict", "--model", str(model_path), "--csv", part,
                         "--out", str(preds))
    assert code == 0, err
    labels = np.array([row["label"] for row in read_rows(preds)])
    assert set(labels) <= {"007", "7", "1e1"}
    accuracy = np.mean(labels == y[keep])
    assert accuracy > 0.8
    assert f"accuracy {accuracy:.4f} against column 'label'" in out


def test_a_regression_target_written_both_ways_stays_a_regression(tmp_path, capsys):
    """``3`` and ``3.0`` in one column: text labels by themselves, numbers for the task."""
    X, _ = raw_blobs(n=120)
    target = np.round(X[:, 0] * 4) / 4
    cells = [f"{v:g}" if i % 2 else f"{v:.2f}" for i, v in enumerate(target)]
    data = write_csv(tmp_path / "train.csv", X[:, 1:], cells)
    code, out, err = run(capsys, "train", "--csv", data, "--target", "label", "--epochs", "2")
    assert code == 0, err
    assert "regression of 'label'" in out
    code, out, err = run(capsys, "train", "--csv", data, "--target", "label", "--epochs", "2",
                         "--task", "regression")
    assert code == 0, err


def test_a_record_too_big_for_the_model_file_is_refused_before_training(tmp_path, capsys,
                                                                       monkeypatch):
    """Class labels (or feature names) that would outgrow the checkpoint's header: refused
    naming --save and the cause before the first epoch, no file written."""
    from gpunn.checkpoint import container

    monkeypatch.setattr(container, "MAX_HEADER_BYTES", 64 << 10)
    X, _ = raw_blobs(n=900)
    y = np.array([f"{i:03d}" + "x" * 97 for i in range(300)] * 3)  # 300 labels, 30 kB
    data = write_csv(tmp_path / "train.csv", X, y)
    save = tmp_path / "m.safetensors"
    code, out, err = run(capsys, "train", "--csv", data, "--epochs", "1", "--hidden", "4",
                         "--test-size", "0", "--save", str(save))
    assert code == 0, err  # fits: 30 kB of labels in a 64 kB header
    monkeypatch.setattr(container, "MAX_HEADER_BYTES", 32 << 10)
    save.unlink()
    code, out, err = run(capsys, "train", "--csv", data, "--epochs", "1", "--hidden", "4",
                         "--test-size", "0", "--save", str(save))
    assert code == 1 and "epoch" not in out and not save.exists()
    assert re.search(r"--save: expected the data's record \(6 feature names, 300 class "
                     r"labels\) to fit a model file's header, got header: expected at most "
                     r"32768 bytes", err), err


@pytest.mark.parametrize("size", [20_000, 24_000, 28_000, 31_000, 32_500, 40_000])
def test_check_saveable_refuses_what_saving_would(tmp_path, monkeypatch, size):
    """The check before the work is sound: whatever it passes saves; whatever saving
    refuses, it refuses too (it may refuse up to its allowance for the index earlier)."""
    from gpunn.checkpoint import check_saveable, container, save_checkpoint

    monkeypatch.setattr(container, "MAX_HEADER_BYTES", 32 << 10)
    model = gpunn.MLP([3, 4, 2], seed=0)
    note = "y" * size
    try:
        check_saveable(model, note=note)
        checked = True
    except ValueError:
        checked = False
    try:
        save_checkpoint(tmp_path / "m.safetensors", model, note=note)
        saved = True
    except ValueError:
        saved = False
    assert saved or not checked
    if size <= 24_000:  # the header's other entries and the index allowance leave room
        assert checked
    if size >= 32_500:
        assert not saved and not checked


def test_padded_text_labels_are_compared_as_training_read_them(tmp_path, capsys):
    """Training strips " ant " to "ant" (no two labels merge); predict's accuracy against a
    file written the same way compares the stripped cells, and reports what it wrote."""
    X, y = raw_blobs(n=120)
    padded = np.char.add(np.char.add(" ", y), " ")
    data = write_csv(tmp_path / "train.csv", X, padded)
    model_path, preds = tmp_path / "m.npz", tmp_path / "preds.csv"
    assert run(capsys, "train", "--csv", data, "--target", "label", "--epochs", "30",
               "--test-size", "0", "--save", str(model_path))[0] == 0
    assert gpunn.load_checkpoint(model_path).extra["gpunn_cli"]["classes"] == \
        ["ant", "bee", "cat"]
    code, out, err = run(capsys, "predict", "--model", str(model_path), "--csv", data,
                         "--out", str(preds))
    assert code == 0, err
    labels = np.array([row["label"] for row in read_rows(preds)])
    accuracy = np.mean(labels == y)
    assert accuracy > 0.9 and f"accuracy {accuracy:.4f} against column 'label'" in out


@pytest.mark.parametrize("labels, cells, classes, expected", [
    ([2 ** 53, 2 ** 53 + 1], ["9007199254740993.0", "9007199254740992"], [2 ** 53, 2 ** 53 + 1],
     0.0),  # each cell is the other class, exactly; float64 would call both right
    ([2 ** 53, 2 ** 53 + 1], np.array([2 ** 53, 2 ** 53 + 1]), [2 ** 53, 2 ** 53 + 1], 1.0),
    ([0.1, 2], ["0.1", "2.0"], [0.1, 2], 1.0),
    ([0.1, 2], np.array([0.1, 2.0]), [0.1, 2], 1.0),
    ([7, 8], ["007", " 8 "], [7, 8], 1.0),
    (["b", " a", "a"], ["b ", " a", " a"], [" a", "a", "b"], 2 / 3),  # " a" is a class as is
    (["007", "7"], ["007", "7.0"], ["007", "7"], 0.5),  # text classes: compared as text
    ([2 ** 53 + 1, 0], ["9007199254740993.0", "0"], [0, 2 ** 53 + 1], 1.0),
    ([1e23, 0], ["1e23", "0.0"], [0, 1e23], 1.0),  # float classes (a float64 column's)
    ([0, 0], ["1e-999999999", "0"], [0, 1], 0.5),  # not zero, and no 10**999999999 built
    ([7], ["0" * 5000 + "7"], [0, 7], 1.0),  # past int()'s 4300-digit limit
], ids=["past-2**53-text", "past-2**53-ints", "float-text", "floats", "padded-ints",
        "padded-text", "text-classes", "exact-decimal", "float-class", "tiny-exponent",
        "long-digits"])
def test_predict_accuracy_compares_labels_exactly(labels, cells, classes, expected):
    from gpunn.cli_data import _accuracy

    y = cells if isinstance(cells, np.ndarray) else np.array(cells, dtype=object)
    assert _accuracy(labels, y, classes) == pytest.approx(expected, abs=0)


def test_check_saveable_counts_the_containers_saving_adds(tmp_path):
    """The checksum entry save adds is one more JSON container: at the largest note save
    accepts and one list past it, the check before the work says what save says."""
    from gpunn.checkpoint import check_saveable, container, save_checkpoint

    model = gpunn.MLP([3, 4, 2], seed=0)

    def saves(n):
        try:
            save_checkpoint(tmp_path / "m.safetensors", model, note=[[]] * n)
            return True
        except ValueError:
            return False

    def checks(n):
        try:
            check_saveable(model, note=[[]] * n)
            return True
        except ValueError:
            return False

    low, high = 0, container.MAX_CONTAINERS  # saves(low), not saves(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if saves(middle) else (low, middle)
    assert checks(low) and not checks(high)


def test_missing_feature_columns_are_named_briefly():
    """A model of many long column names: the message names how many are missing and the
    first five, cut, not every name (16 MB of stderr in the review)."""
    from gpunn.cli_data import _select

    want = [f"{i:06d}" + "x" * 1000 for i in range(5000)]
    with pytest.raises(ValueError) as caught:
        _select("p.csv", np.ones((2, 1)), [want[0]], want)
    message = str(caught.value)
    assert len(message) < 500
    assert message.startswith("p.csv: expected the model's 5000 feature columns, missing "
                              f"4999: {want[1][:60]!r}, ")
    assert message.endswith(", ...")


def test_predict_reads_only_the_models_columns(tmp_path, capsys):
    """A predict file with an id column of text and a notes column with empty cells: only the
    model's features (and its target) are parsed, in any order."""
    X, y = raw_blobs(n=60)
    data = write_csv(tmp_path / "train.csv", X, y)
    model = tmp_path / "m.safetensors"
    assert run(capsys, "train", "--csv", data, "--epochs", "3", "--save", str(model))[0] == 0
    names = [f"f{i}" for i in range(X.shape[1])]
    with open(tmp_path / "p.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", *names[::-1], "notes", "label"])
        for k, (row, label) in enumerate(zip(X, y)):
            writer.writerow([f"row-{k}", *(repr(float(v)) for v in row[::-1]),
                             "" if k % 2 else "checked", label])
    code, out, err = run(capsys, "predict", "--model", str(model), "--csv",
                         str(tmp_path / "p.csv"), "--out", str(tmp_path / "o.csv"))
    assert code == 0, err
    expected = np.array(gpunn.load_checkpoint(model).extra["gpunn_cli"]["classes"])[
        gpunn.load(model).predict(X)]
    assert [row["label"] for row in read_rows(tmp_path / "o.csv")] == expected.tolist()


def test_brackets_inside_names_are_no_json_containers(tmp_path):
    """70,000 feature names such as f[123]: their brackets are text; the header holds one list
    of them, and the model saves and loads."""
    from gpunn.checkpoint import check_saveable, container, save_checkpoint

    names = [f"f[{i}]" for i in range(container.MAX_CONTAINERS + 5000)]
    model = gpunn.MLP([3, 4, 2], seed=0)
    check_saveable(model, gpunn_cli={"features": names})
    path = save_checkpoint(tmp_path / "m.safetensors", model, gpunn_cli={"features": names})
    assert gpunn.load_checkpoint(path).extra["gpunn_cli"]["features"] == names


def test_a_feature_too_large_to_standardize_is_named(tmp_path, capsys):
    """Finite values near float64's largest: their mean overflows; named, not called NaN/inf."""
    X, y = raw_blobs(n=30)
    X[:, 2] = 1.7e308
    data = write_csv(tmp_path / "big.csv", X, y)
    code, out, err = run(capsys, "train", "--csv", data, "--epochs", "1")
    assert code == 1 and "epoch" not in out
    assert "data: expected feature column 'f2' to have a finite mean and spread in float64, " \
        "got values up to 1.7e+308; scale it down" in err

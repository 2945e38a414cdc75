"""`gpunn train`: output paths checked before training, the model saved before the plot, OS
errors as one-line errors, and an empty --hidden refused."""

import errno
import os

import numpy as np
import pytest

import gpunn
from gpunn import tabular
from gpunn.cli import main
from gpunn.history import History

FAST = ["--dataset", "synthetic", "--epochs", "1", "--hidden", "4"]


def run(capsys, *argv):
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("option", ["--plot", "--save"])
def test_a_bad_output_path_fails_before_training(capsys, tmp_path, option):
    code, out, err = run(capsys, *FAST, option, str(tmp_path / "nodir" / "out"))
    assert code == 1 and "epoch" not in out
    assert err.startswith(f"gpunn train: error: {option}: no such folder: ")
    assert "[Errno" not in err


def test_a_directory_as_output_fails_before_training(capsys, tmp_path):
    code, out, err = run(capsys, *FAST, "--save", str(tmp_path))
    assert code == 1 and "epoch" not in out and "got a directory" in err


def test_a_failing_plot_keeps_the_saved_model(capsys, tmp_path, monkeypatch):
    def failing_plot(self, path, image_format=None):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(History, "plot", failing_plot)
    saved = tmp_path / "model.safetensors"
    code, out, err = run(capsys, *FAST, "--plot", str(tmp_path / "p.png"), "--save", str(saved))
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert gpunn.load(saved).n_in == 20


@pytest.mark.parametrize("hidden", ["", " ", "64,,64", "64,"])
def test_an_empty_hidden_size_is_refused(capsys, hidden):
    code, out, err = run(capsys, *FAST[:-2], "--hidden", hidden)
    assert code == 1 and "--hidden: expected comma-separated layer sizes" in err
    assert "epoch" not in out


def test_hidden_none_trains_without_hidden_layers(capsys, tmp_path):
    saved = tmp_path / "model.safetensors"
    code, out, err = run(capsys, *FAST[:-2], "--hidden", "none", "--save", str(saved))
    assert code == 0, err
    assert len(gpunn.load(saved).layers) == 1


def small_csv(path, rows=80):
    rng = np.random.default_rng(0)
    lines = ["a,b,label"] + [f"{x:.3f},{z:.3f},{int(x > 0)}"
                             for x, z in rng.normal(size=(rows, 2))]
    path.write_text("\n".join(lines) + "\n")
    return path.read_bytes()


CSV_FAST = ["--epochs", "1", "--hidden", "4"]


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_saving_onto_the_input_data_is_refused_before_training(capsys, tmp_path, alias):
    data = tmp_path / "data.csv"
    before = small_csv(data)
    out = data
    if alias != "same":
        out = tmp_path / "other.csv"
        (out.symlink_to if alias == "symlink" else out.hardlink_to)(data)
    code, out_text, err = run(capsys, "--csv", str(data), *CSV_FAST, "--save", str(out))
    assert code == 1 and "epoch" not in out_text
    assert "--save: expected a file apart from the input --csv" in err
    assert data.read_bytes() == before


@pytest.mark.parametrize("name", ["part1.npy", "new.safetensors", "sub/model.safetensors"])
def test_saving_inside_the_input_folder_is_refused_before_training(capsys, tmp_path, name):
    """A folder of shards is read whole: a file written into it (at any depth) replaces a
    shard or becomes one the next run reads."""
    shards = tmp_path / "shards"
    (shards / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        x = rng.normal(size=(40, 3))
        np.save(shards / f"part{i}.npy", np.column_stack([x, x[:, 0] > 0]).astype(np.float32))
    before = {p.name: p.read_bytes() for p in shards.glob("*.npy")}
    code, out, err = run(capsys, "--npy", str(shards), *CSV_FAST, "--test-size", "0",
                         "--save", str(shards / name))
    assert code == 1 and "epoch" not in out
    assert "--save: expected a file outside the input folder --npy" in err
    assert {p.name: p.read_bytes() for p in shards.glob("*.npy")} == before
    assert not (shards / name).exists() or name == "part1.npy"


def test_save_and_plot_on_one_file_are_refused_before_training(capsys, tmp_path):
    path = tmp_path / "out.png"
    code, out, err = run(capsys, *FAST, "--save", str(path), "--plot", str(path))
    assert code == 1 and "epoch" not in out
    assert "--plot: expected a file apart from --save's" in err and not path.exists()


def trained_model(capsys, tmp_path):
    data = tmp_path / "data.csv"
    small_csv(data)
    model = tmp_path / "model.safetensors"
    code, _, err = run(capsys, "--csv", str(data), *CSV_FAST, "--save", str(model))
    assert code == 0, err
    return data, model


@pytest.mark.parametrize("onto", ["input", "model"])
def test_predict_out_onto_its_input_or_model_is_refused(capsys, tmp_path, onto):
    data, model = trained_model(capsys, tmp_path)
    before = {p: p.read_bytes() for p in (data, model)}
    out = data if onto == "input" else model
    code = main(["predict", "--model", str(model), "--csv", str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    option = "--csv" if onto == "input" else "--model"
    assert f"--out: expected a file apart from the input {option}" in err
    assert {p: p.read_bytes() for p in (data, model)} == before


def test_predict_out_on_a_full_disk_keeps_the_previous_file(capsys, tmp_path, monkeypatch):
    data, model = trained_model(capsys, tmp_path)
    out = tmp_path / "pred.csv"
    out.write_text("previous predictions\n")

    def full_disk(file, names, rows):
        file.write("prediction\n" * 100)
        file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tabular, "_write_rows", full_disk)
    code = main(["predict", "--model", str(model), "--csv", str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and str(out) in err
    assert out.read_text() == "previous predictions\n"
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "model.safetensors", "pred.csv"]


def test_a_csv_that_is_not_utf8_names_the_file(capsys, tmp_path):
    data = tmp_path / "latin1.csv"
    data.write_bytes(b"a,b,label\n1,2,caf\xe9\n3,4,x\n")
    code, out, err = run(capsys, "--csv", str(data), *CSV_FAST)
    assert code == 1 and str(data) in err and "expected UTF-8 text" in err

"""`gpunn train`: output paths checked before training, the model saved before the plot, OS
errors as one-line errors, and an empty --hidden refused."""

import pytest

import gpunn
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
    assert err.startswith("gpunn train: error: ") and option in err and "no such folder" in err


def test_a_directory_as_output_fails_before_training(capsys, tmp_path):
    code, out, err = run(capsys, *FAST, "--save", str(tmp_path))
    assert code == 1 and "epoch" not in out and "got a directory" in err


def test_a_failing_plot_keeps_the_saved_model(capsys, tmp_path, monkeypatch):
    def failing_plot(self, path):
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

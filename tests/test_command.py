"""The ``gpunn`` command's own environment: set before NumPy loads, a user's value kept."""

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpunn._environment import COMMAND_ENV

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "gpunn_command.py"


def _run(code, env):
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True).stdout


def _info(env):
    """``gpunn info --json`` run as the console script runs it, in a fresh process."""
    code = (f"import runpy, sys; sys.argv = ['gpunn', 'info', '--json']; "
            f"runpy.run_path({str(ENTRY)!r}, run_name='__main__')")
    return json.loads(_run(code, env))


@pytest.fixture
def clean_env():
    env = {k: v for k, v in os.environ.items() if k not in COMMAND_ENV}
    return {**env, "GPUNN_BACKEND": "cpu"}


def test_command_sets_openblas_timeout(clean_env):
    report = _info(clean_env)
    assert report["threading"]["OPENBLAS_THREAD_TIMEOUT"] == "4"
    assert report["script_environment"] == {"OPENBLAS_THREAD_TIMEOUT": "4"}
    assert not any("OPENBLAS_THREAD_TIMEOUT" in line for line in report["advice"])


def test_command_keeps_a_user_value(clean_env):
    report = _info({**clean_env, "OPENBLAS_THREAD_TIMEOUT": "7"})
    assert report["threading"]["OPENBLAS_THREAD_TIMEOUT"] == "7"


def test_entry_module_sets_the_variable_before_numpy_loads(clean_env):
    """OpenBLAS reads the variable when NumPy loads: the entry module must come first."""
    code = (f"import runpy, sys; m = runpy.run_path({str(ENTRY)!r}); "
            "print('numpy' in sys.modules, m['_command_env']())")
    assert _run(code, clean_env).strip() == f"False {COMMAND_ENV}"


def test_console_script_runs_the_entry_module():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["options.entry_points"]["console_scripts"].split() == [
        "gpunn", "=", "gpunn_command:main"]
    assert config["options"]["py_modules"].strip() == "gpunn_command"


def test_predict_into_a_closed_pipe_ends_quietly(tmp_path, clean_env):
    """``gpunn predict ... | head -1``: the reader stops; the command ends with a filter's
    SIGPIPE status (141) and no error message, instead of "error: [Errno 32] Broken pipe"."""
    import numpy as np

    model = tmp_path / "m.safetensors"
    rows = tmp_path / "rows.npy"
    code = (f"import gpunn, numpy as np; m = gpunn.MLP([3, 4, 2], output='softmax', seed=0); "
            f"m.save({str(model)!r}); np.save({str(rows)!r}, np.ones((200000, 3)))")
    _run(code, clean_env)
    command = (f"import runpy, sys; sys.argv = ['gpunn', 'predict', '--model', {str(model)!r}, "
               f"'--npy', {str(rows)!r}]; runpy.run_path({str(ENTRY)!r}, run_name='__main__')")
    predict = subprocess.Popen([sys.executable, "-c", command], env=clean_env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = predict.stdout.readline()
    predict.stdout.close()  # as head does after its lines
    status = predict.wait(timeout=120)
    assert first.startswith(b"prediction,")
    assert predict.stderr.read() == b"" and status == 141
    assert np.load(rows).shape == (200000, 3)


def _command(*argv):
    return (f"import runpy, sys; sys.argv = ['gpunn', *{list(argv)!r}]; "
            f"runpy.run_path({str(ENTRY)!r}, run_name='__main__')")


def test_train_into_a_closed_pipe_still_saves_the_model(tmp_path, clean_env):
    """``gpunn train ... --save m | head -1``: the reader stops after a line; the progress
    lines are dropped, training goes on and saves, one line on stderr says so."""
    model = tmp_path / "m.safetensors"
    train = subprocess.Popen(
        [sys.executable, "-c", _command("train", "--dataset", "breast_cancer", "--epochs", "30",
                                        "--save", str(model))],
        env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = train.stdout.readline()
    train.stdout.close()
    status = train.wait(timeout=300)
    err = train.stderr.read().decode()
    assert first.startswith(b"backend:") and status == 0, err
    assert "gpunn train: stdout: Broken pipe; the lines after it were dropped, the work went on" \
        in err
    assert "Traceback" not in err and "Exception ignored" not in err
    import gpunn

    assert gpunn.load(model).n_in == 30


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_train_onto_a_full_stdout_still_saves_and_predict_onto_a_closed_one_refuses(
        tmp_path, clean_env):
    model = tmp_path / "m.safetensors"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", _command(
            "train", "--dataset", "breast_cancer", "--epochs", "2", "--save", str(model))],
            env=clean_env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0 and "No space left on device" in done.stderr and model.exists()
    rows = tmp_path / "rows.npy"
    import numpy as np

    np.save(rows, np.ones((3, 30)))
    done = subprocess.run([sys.executable, "-c", _command(
        "predict", "--model", str(model), "--npy", str(rows))],
        env=clean_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        timeout=300, pass_fds=(), close_fds=True,
        preexec_fn=lambda: os.close(1))
    assert done.returncode == 1
    assert "--out: expected a file, or an open stdout" in done.stderr


class _Failing:
    """A stream whose writes fail as a closed pipe or a full disk does."""

    def __init__(self, errno_name):
        import errno

        self.code, self.lines = getattr(errno, errno_name), []

    def write(self, text):
        raise OSError(self.code, os.strerror(self.code))

    def flush(self):
        pass

    def isatty(self):
        return False


@pytest.mark.parametrize("broken", ["stdout", "stderr", "both"])
def test_train_goes_on_when_its_progress_streams_fail(tmp_path, monkeypatch, broken):
    """stderr carries progress too (the first run's compile notice): a broken stderr, or both
    streams, must not stop training or lose the model."""
    import io

    from gpunn.cli import main

    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", _Failing("EPIPE") if broken != "stderr" else io.StringIO())
    monkeypatch.setattr(sys, "stderr", _Failing("ENOSPC") if broken != "stdout" else err)
    # a compile report on stderr, as a cold cache gives (each call says more seconds)
    calls = iter(range(10 ** 6))
    monkeypatch.setattr("gpunn.backends.compile_watch.compile_seconds",
                        lambda: float(next(calls)))
    model = tmp_path / "m.safetensors"
    assert main(["train", "--dataset", "breast_cancer", "--epochs", "2", "--save",
                 str(model)]) == 0
    import gpunn

    assert gpunn.load(model).n_in == 30
    if broken == "stdout":
        assert "gpunn train: stdout: Broken pipe; the lines after it were dropped" in \
            err.getvalue()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_predict_to_a_file_with_a_full_stdout_says_the_file_is_complete(tmp_path, clean_env):
    import numpy as np

    model, rows, out = tmp_path / "m.safetensors", tmp_path / "rows.npy", tmp_path / "o.csv"
    _run(f"import gpunn; gpunn.MLP([3, 4, 2], output='softmax', seed=0).save({str(model)!r})",
         clean_env)
    np.save(rows, np.ones((50, 3)))
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", _command(
            "predict", "--model", str(model), "--npy", str(rows), "--out", str(out))],
            env=clean_env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "gpunn predict: stdout: No space left on device" in done.stderr
    assert out.read_text().count("\n") == 51

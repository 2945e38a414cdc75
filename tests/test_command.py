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

"""The ``gpunn`` command's own environment: set before NumPy loads, a user's value kept."""

import json
import os
import subprocess
import sys

import pytest

from gpunn_command import COMMAND_ENV


def _info(env):
    """``gpunn info --json`` run as the console script runs it, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", "import sys, gpunn_command; "
                          "sys.exit(gpunn_command.main(['info', '--json']))"],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


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


def test_entry_module_loads_no_numpy(clean_env):
    """OpenBLAS reads the variable when NumPy loads: the entry module must come first."""
    code = "import sys, gpunn_command; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=clean_env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_console_script_runs_the_entry_module():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "gpunn"]
    assert script.value == "gpunn_command:main"

"""What a GPU install needs (the extras), and what gpunn says when CUDA cannot be used."""

import configparser
import contextvars
import json
import logging
from pathlib import Path

import pytest

import gpunn
import gpunn._compat
import gpunn.backends as backends
from gpunn.cli import main

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"


def extras():
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    section = config["options.extras_require"]
    return {name: section[name].split() for name in section}, config["options"]


def test_gpu_extras_bring_the_cuda_libraries_with_cupy():
    """CuPy's [ctk] extra pulls cuda-toolkit[cudart,nvrtc,cublas,...] wheels: a machine with
    only the driver works. One CuPy per extra, never two in one environment."""
    extra, _ = extras()
    for name, cupy in (("cuda12", "cupy-cuda12x[ctk]>=14"), ("cuda13", "cupy-cuda13x[ctk]>=14")):
        assert cupy in extra[name]
        assert [req for req in extra[name] if req.startswith("cupy")] == [cupy]


def test_scikit_learn_is_an_optional_extra():
    extra, options = extras()
    assert any(req.startswith("scikit-learn") for req in extra["sklearn"])
    assert "scikit-learn" not in options["install_requires"]


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(backends, "_cuda_status", (None, "no CUDA device (test)"))
    monkeypatch.setenv("GPUNN_BACKEND", "cuda")


def test_info_reports_instead_of_raising_when_cuda_is_asked_for(no_cuda, capsys):
    """Run in an empty context: a backend chosen by use_backend elsewhere must not answer."""
    fresh = contextvars.Context().run
    report = fresh(gpunn.info)
    assert report["backend"] == "unavailable" and report["device"] is None
    assert "backend 'cuda' was requested but cannot be used" in report["backend_error"]
    assert report["cuda_unavailable_reason"] == "no CUDA device (test)"
    assert fresh(main, ["info", "--json"]) == 1  # the report, and a failing exit status
    assert json.loads(capsys.readouterr().out)["backend"] == "unavailable"
    with pytest.raises(RuntimeError, match="no CUDA device \\(test\\)"):
        fresh(gpunn.get_backend)


@pytest.mark.parametrize("cupy, reason, level", [
    (object(), "CUDA smoke test failed (CompileException: nvrtc missing)", logging.WARNING),
    (object(), "no CUDA device (CUDARuntimeError: no driver)", logging.INFO),
    (None, "cupy is not importable (ImportError)", None),
], ids=["gpu-but-broken", "no-device", "no-cupy"])
def test_fallback_is_explained_once(monkeypatch, caplog, cupy, reason, level):
    monkeypatch.setattr(backends, "_cuda_status", None)
    monkeypatch.setattr(backends, "_probe_cuda", lambda: (None, reason))
    monkeypatch.setattr(gpunn._compat, "import_cupy", lambda: (cupy, None))
    with caplog.at_level(logging.DEBUG, logger="gpunn"):
        for _ in range(3):
            assert backends.cuda_status() == (None, reason)
    records = [r for r in caplog.records if r.name == "gpunn"]
    if level is None:
        assert records == []
    else:
        assert [r.levelno for r in records] == [level]
        assert reason in records[0].getMessage() and "runs on the CPU" in records[0].getMessage()

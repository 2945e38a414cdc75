"""``gpunn bench --smoke``: every section runs and writes a well-formed JSON; speed is not checked.

The run is a subprocess, so the benchmark's thread settings cannot leak into other tests. It
uses the backend the suite runs with (``GPUNN_BACKEND``, cpu by default), and checks the
contenders that backend should have.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import pytest

from gpunn.bench import harness, processes, report, sections
from gpunn.bench.command import add_arguments

BACKEND = "cuda" if os.environ.get("GPUNN_BACKEND") == "cuda" else "cpu"
SECTIONS = list(sections.SECTIONS)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run the smoke benchmark once; its stdout, JSON and output folder."""
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "gpunn.bench", "--smoke",
               "--backend", BACKEND, "--sections", ",".join(SECTIONS), "--json",
               str(out / "bench.json"), "--plots", str(out / "plots"), "--markdown",
               str(out / "tables.md")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    def no_constants(name):
        raise AssertionError(f"JSON holds {name}")

    results = json.loads((out / "bench.json").read_text(), parse_constant=no_constants)
    return done.stdout, results, out


def _walk(value, path=""):
    """Every (path, value) of a JSON document, containers included."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
        value, list) else ()
    for key, item in items:
        yield from _walk(item, f"{path}.{key}")


def test_json_has_every_section_and_the_machine(smoke):
    _, results, _ = smoke
    assert results["mode"] == "smoke" and results["backend"] == BACKEND
    assert list(results["sections"]) == SECTIONS
    machine = results["machine"]
    assert machine["cpu"]["brand_raw"] and machine["usable_cpus"] >= 1
    assert machine["blas"] and all(p["num_threads"] >= 1 and "architecture" in p
                                   for p in machine["blas"])
    assert machine["threads"]["numba"] >= 1 and machine["threads"]["requested"] >= 1
    assert all(machine["versions"][k] for k in ("python", "gpunn", "numpy", "numba"))
    assert len(machine["commit"]["id"]) == 40 and "dirty" in machine["commit"]


def test_every_number_is_finite_and_every_ratio_positive(smoke):
    _, results, _ = smoke
    leaves = [(p, v) for p, v in _walk(results) if isinstance(v, (int, float))
              and not isinstance(v, bool)]
    assert leaves and all(math.isfinite(v) for _, v in leaves)
    ratios = [v for p, v in leaves if ".ratios." in p]
    assert ratios and all(v > 0 for v in ratios)
    timings = [v for _, v in _walk(results) if isinstance(v, dict) and "median" in v]
    assert timings and all(0 < t["min"] <= t["median"] <= t["max"] for t in timings)


def test_sections_hold_their_comparisons(smoke):
    _, results, _ = smoke
    sections = results["sections"]
    host = BACKEND == "cpu"
    torch = results["machine"]["versions"]["torch"] is not None
    for c in sections["updates"]["comparisons"]:
        assert c["contenders"]["axpy (bandwidth probe)"]["of_axpy"] == 1
        assert ("numpy in-place" in c["contenders"]) == host
        assert ("torch default" in c["contenders"]) == (torch and (host or _torch_cuda()))
        assert ("torch default (own process)" in c["contenders"]) == (torch and host)
    for c in sections["step"]["comparisons"]:
        assert {"gpunn", "GEMM floor"} <= set(c["contenders"])
        assert ("torch eager" in c["contenders"]) == (torch and host)
        assert ("torch eager, fused Adam (own process)" in c["contenders"]) == (torch and host)
    assert [c["batch"] for c in sections["gpu"]["comparisons"]] == [32]
    assert [c["model"] for c in sections["vectorization"]["comparisons"]] == [
        "logistic regression", "MLP"]
    for sweep in sections["batch"]["sweeps"]:
        assert sweep["fastest_to_target"] in [r["batch"] for r in sweep["runs"]]
        assert all(r["samples_per_s"] > 0 and r["curve"][0]["samples"] == 0
                   for r in sweep["runs"])
    mnist = sections["mnist"]
    if "runs" not in mnist:  # no network here: skipped, saying so
        assert "could not be fetched" in mnist["skipped"]
    else:
        assert not mnist["errors"], mnist["errors"]
        runs = {(r["contender"], r["precision"]): r for r in mnist["runs"]}
        assert {("gpunn", "fp32"), ("gpunn", "bf16")} <= set(runs)
        assert ("pytorch", "fp32") in runs or "pytorch fp32" in mnist["skipped"]
        # 10 Adam steps on 1000 real digits: well above chance (0.1) on the 10000 test digits
        assert all(r["accuracy"] > 0.4 and r["samples_per_s"] > 0 for r in runs.values())
    imports = sections["imports"]
    assert not imports["errors"]
    assert {r["order"] for r in imports["rows"]} == set(processes.IMPORT_ORDERS)


def _torch_cuda():
    torch = harness.import_optional("torch")
    return torch is not None and torch.cuda.is_available()


def test_stdout_tables_plots_and_page(smoke):
    stdout, results, out = smoke
    for name, found in results["sections"].items():
        titles = [t[0] for t in sections.SECTIONS[name].tables(found)]
        assert titles and all(title in stdout for title in titles), name
    assert "not measured" not in stdout and "H100" not in stdout and "MODEL" not in stdout
    assert set(results["plots"]) == {"cost_vs_epoch", "cost_vs_seconds", "throughput_vs_batch",
                                     "update_bandwidth"}
    for path in results["plots"].values():
        data = open(path, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000
    assert "| target | value | needed | verdict |" in (out / "tables.md").read_text()


def test_gpu_peers_run_in_their_own_processes_or_say_why(smoke):
    """On a machine without CUDA the smoke run runs the GPU peers' scripts on the CPU."""
    _, results, _ = smoke
    found = results["sections"]["gpu"]
    assert found["device"] == BACKEND and not found["errors"], found["errors"]
    contenders = set(found["comparisons"][0]["contenders"])
    assert {"gpunn", "GEMM floor"} <= contenders
    torch = harness.import_optional("torch")
    assert ("torch eager, fused Adam" in contenders) == (torch is not None)
    if torch is not None and not torch.cuda.is_available():
        assert found["skipped"]["torch cuda graph"].startswith("needs CUDA")
    if harness.import_optional("jax") is None:
        assert found["skipped"]["jax jit"] == "JAX is not installed"
    assert len(found["skipped"]) + len(contenders) == len(processes.PEERS) + 1


def test_interleaved_rotates_and_reports_min_median_max():
    calls = []
    timings = harness.interleaved({"a": lambda: calls.append("a"),
                                   "b": lambda: calls.append("b")}, rounds=4,
                                  min_sample_s=0.0)
    for t in timings.values():
        assert t["rounds"] == 4 and 0 <= t["min"] <= t["median"] <= t["max"]
    assert calls.count("a") == calls.count("b")
    assert calls[-2:] == ["b", "a"] and calls[-4:-2] == ["a", "b"]  # the order rotates


def test_targets_list_only_what_was_measured():
    def comparison(ratios):
        return {"sizes": [784, 1024, 1024, 10], "batch": 128, "contenders": {},
                "ratios": ratios}

    results = {"mode": "full", "backend": "cpu", "sections": {"step": {"comparisons": [
        comparison({"GEMM floor / gpunn": 0.8, "torch eager / gpunn": 0.9,
                    "torch eager, fused Adam / gpunn": 1.2, "numpy / gpunn": 3.0})]}}}
    found = {t["name"]: t for t in report.targets(results)}
    assert len(found) == 2
    floor = found["MLP 784-1024-1024-10 batch 128: step / GEMM floor"]
    assert floor["value"] == pytest.approx(1.25) and floor["met"]
    peer = found["MLP 784-1024-1024-10 batch 128: best PyTorch eager time / gpunn's"]
    assert peer["value"] == 0.9 and not peer["met"]
    results["sections"]["step"]["comparisons"][0]["ratios"] = {"numpy / gpunn": 3.0}
    assert report.targets(results) == []


def test_help_lists_every_registered_section(capsys):
    from gpunn.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--help"])
    text = capsys.readouterr().out
    assert all(f"\n  {name} " in text for name in sections.SECTIONS)
    assert sections.defaults("cpu") == [n for n, s in sections.SECTIONS.items()
                                        if "cpu" in s.backends] != []


def test_backend_defaults_to_gpunn_backend(monkeypatch):
    monkeypatch.setenv("GPUNN_BACKEND", "cpu")
    assert add_arguments(argparse.ArgumentParser()).parse_args([]).backend == "cpu"
    parsed = add_arguments(argparse.ArgumentParser()).parse_args(["--backend", "auto"])
    assert parsed.backend == "auto"


def test_a_peer_that_did_not_run_is_named_with_its_reason():
    timing = {"min": 1.0, "median": 1.0, "max": 1.0}
    row = {"sizes": [4, 2], "batch": 8, "ratios": {},
           "contenders": {"gpunn": {**timing, "samples_per_s": 8.0, "gflop_per_s": 1.0}}}
    gpu = {"device": "cuda", "comparisons": [row], "skipped": {"jax jit": "JAX is not installed"},
           "errors": {"torch cuda graph": "exit status 1: Traceback\nRuntimeError: no graph\n"}}
    step = {"comparisons": [row], "own_process": {"skipped": "PyTorch is not installed"}}
    titles = [t[0] for t in sections.tables({"sections": {"gpu": gpu, "step": step}})]
    assert "jax jit: JAX is not installed" in titles[0]
    assert "torch cuda graph: RuntimeError: no graph" in titles[0]
    assert titles[1].endswith("did not run: PyTorch is not installed")


def test_a_variant_a_peer_version_lacks_is_named_not_fatal(monkeypatch):
    """PyTorch 2.11 has no fused RMSprop: the contender is reported, the benchmark goes on."""
    torch = pytest.importorskip("torch")
    from gpunn.backends import use_backend
    from gpunn.bench import updates

    class OldAdam(torch.optim.Adam):  # an Adam from before ``fused`` existed
        def __init__(self, params, fused=None, **options):
            if fused is not None:
                raise TypeError("Adam.__init__() got an unexpected keyword argument 'fused'")
            super().__init__(params, **options)

    monkeypatch.setattr(torch.optim, "Adam", OldAdam)
    with use_backend("cpu") as backend:
        [row] = updates.run([1000], backend, torch, rounds=1, min_sample_s=0.0)[:1]
    assert row["kind"] == "adam" and "torch fused" not in row["contenders"]
    assert row["not_available"] == {"torch fused": "not available: TypeError: Adam.__init__() "
                                    "got an unexpected keyword argument 'fused'"}
    assert {"gpunn", "torch default", "torch foreach, 100 tensors"} <= set(row["contenders"])
    [title] = [t[0] for t in sections.tables({"sections": {"updates": {"comparisons": [row]}}})]
    assert title.endswith("; torch fused (adam): not available: TypeError: Adam.__init__() got "
                          "an unexpected keyword argument 'fused'")


def test_calibration_waits_for_an_asynchronous_device():
    """A device call returns at once and runs at the next sync: calibration must time the
    work, not the launches (unsynchronized, it chose thousands of 26 ms GPU steps a sample)."""
    queued = []

    def sync():  # runs what was queued: about 1 ms each
        while queued:
            queued.pop()
            end = time.perf_counter() + 1e-3
            while time.perf_counter() < end:
                pass

    timings = harness.interleaved({"launch": lambda: queued.append(1)}, rounds=2,
                                  min_sample_s=0.01, sync=sync)
    assert 1 <= timings["launch"]["calls_per_round"] <= 40
    assert timings["launch"]["median"] >= 1e-3


def test_a_peer_cut_by_its_time_limit_keeps_its_rows_and_says_where(tmp_path, monkeypatch):
    (tmp_path / "fake_peer.py").write_text(
        "import json, sys, threading\n"
        "def main(argv):\n"
        "    print(json.dumps({'row': [1], 'timings': {}, 'not_available': {}}), flush=True)\n"
        "    print('[gpunn bench] fake: row 2: compiling', file=sys.stderr, flush=True)\n"
        "    threading.Event().wait()  # never answers: the parent's limit must end it\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    relayed = []
    answer = processes.measure({}, timeout=4, relay=relayed.append, entry="fake_peer")
    assert answer["rows"] == [{"row": [1], "timings": {}, "not_available": {}}]
    assert answer["error"] == ("timed out after 4 s, during: [gpunn bench] fake: row 2: "
                               "compiling")
    assert relayed == ["fake: row 2: compiling"]


@pytest.mark.parametrize("option, make, error", [
    ("--json", "folder", "--json: expected a regular file or a new file name, got a directory"),
    ("--json", "fifo", "--json: expected a regular file .* named pipe"),
    ("--markdown", "missing", "--markdown: no such folder"),
    ("--plots", "file", "--plots: expected a folder, got a file"),
    ("--markdown", "same", "--markdown: expected a file apart from --json's")])
def test_outputs_are_checked_before_anything_is_measured(tmp_path, monkeypatch, option, make,
                                                         error):
    from gpunn.bench import command, runner

    def measured(*args):
        raise AssertionError("the benchmark started before its outputs were checked")

    monkeypatch.setattr(runner, "run_all", measured)
    path = {"folder": tmp_path, "fifo": tmp_path / "pipe", "missing": tmp_path / "no" / "t.md",
            "file": tmp_path / "plots", "same": tmp_path / "out.json"}[make]
    if make == "fifo":
        os.mkfifo(path)
    if make == "file":
        path.write_text("not a folder")
    argv = ["--backend", "cpu", "--sections", "step", option, str(path)]
    if make == "same":
        argv += ["--json", str(path)]
    args = add_arguments(argparse.ArgumentParser()).parse_args(argv)
    with pytest.raises((ValueError, OSError), match=error):
        command.run(args)


def test_json_folder_and_plots_folder_are_made_before_measuring(tmp_path):
    from gpunn.bench.command import check_files

    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--json", str(tmp_path / "a" / "b.json"), "--plots", str(tmp_path / "p" / "q")])
    check_files(args)
    assert (tmp_path / "a").is_dir() and (tmp_path / "p" / "q").is_dir()
    assert not (tmp_path / "a" / "b.json").exists()

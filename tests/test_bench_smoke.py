"""``gpunn bench --smoke``: every section runs and writes a well-formed JSON; speed is not checked.

The run is a subprocess, so the benchmark's thread settings cannot leak into other tests.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from gpunn.bench import harness, report, targets
from gpunn.bench.runner import _finite

SECTIONS = ("kernels", "peers", "vectorization", "training", "gpu")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run the smoke benchmark once; its stdout, JSON and output folder."""
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "gpunn.bench", "--smoke", "--keep-blas-env",
               "--json", str(out / "bench.json"), "--plots", str(out / "plots"),
               "--markdown", str(out / "RESULTS.md")]
    env = dict(os.environ, GPUNN_BACKEND="cpu")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    def no_constants(name):
        raise AssertionError(f"JSON holds {name}")

    results = json.loads((out / "bench.json").read_text(), parse_constant=no_constants)
    return done.stdout, results, out


def _walk(value, path=""):
    """Every (path, leaf) of a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    else:
        yield path, value


def test_json_has_every_section_and_the_machine(smoke):
    _, results, _ = smoke
    assert results["schema"] == 1 and results["mode"] == "smoke"
    assert set(results["sections"]) == set(SECTIONS)
    machine = results["machine"]
    assert machine["cpu"] and machine["usable_cpus"] >= 1 and machine["logical_cpus"] >= 1
    assert machine["blas"], "threadpoolctl found no BLAS"
    for pool in machine["blas"]:
        assert pool["internal_api"] and pool["num_threads"] >= 1 and "architecture" in pool
    assert machine["threads"]["numba"] >= 1 and machine["threads"]["requested"] >= 1
    for library in ("python", "gpunn", "numpy", "numba"):
        assert machine["versions"][library]
    assert "commit" in machine["git"] and "dirty" in machine["git"]
    assert results["runtime_s"] > 0


def test_every_number_is_finite_and_every_ratio_positive(smoke):
    _, results, _ = smoke
    leaves = list(_walk(results))
    numbers = [(p, v) for p, v in leaves if isinstance(v, (int, float))
               and not isinstance(v, bool)]
    assert numbers and all(math.isfinite(v) for _, v in numbers)
    ratios = [(p, v) for p, v in leaves if ".ratios." in p]
    assert ratios and all(v > 0 for _, v in ratios), ratios
    timings = [t for p, t in _dicts(results) if "median_s" in t]
    assert timings and all(0 < t["min_s"] <= t["median_s"] <= t["max_s"] for t in timings)


def _dicts(value, path=""):
    if isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from _dicts(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _dicts(item, f"{path}[{i}]")


def test_sections_hold_their_comparisons(smoke):
    _, results, _ = smoke
    sections = results["sections"]
    kernels = sections["kernels"]
    assert kernels["ceiling"]["ceiling_gb_per_s"] > 0
    assert {c["kind"] for c in kernels["comparisons"]} == {"adam", "rmsprop", "sgd_momentum"}
    for c in kernels["comparisons"]:
        assert {"gpunn", "numpy textbook", "numpy in-place"} <= set(c["contenders"])
    peer = sections["peers"]["comparisons"][0]
    assert {"gpunn", "numpy", "GEMM floor"} <= set(peer["contenders"])
    if results["machine"]["versions"]["torch"]:
        assert "torch fused (own process)" in peer["contenders"]
        assert "gpunn vs torch fused (1 tensor) (own process)" in kernels["comparisons"][0][
            "ratios"]
    assert peer["step_over_gemm_floor"] > 0
    assert [c["model"] for c in sections["vectorization"]["comparisons"]] == [
        "logistic regression", "MLP"]
    for sweep in sections["training"]["sweeps"]:
        assert sweep["runs"] and sweep["target_cost"] > 0
        assert sweep["fastest_to_target"] in [r["batch"] for r in sweep["runs"]]
        for run in sweep["runs"]:
            assert run["samples_per_s"] > 0 and run["curve"][0]["samples"] == 0
    assert sections["gpu"]["kernels"] and sections["gpu"]["steps"]
    assert all(t["met"] in (True, False, None) for t in results["targets"])


def test_stdout_table_plots_and_page(smoke):
    stdout, results, out = smoke
    for heading in ("Optimizer updates", "training step", "Vectorization", "Batch size sweep",
                    "MODEL, not a measurement", "Targets"):
        assert heading in stdout
    assert set(results["plots"]) == {"cost_vs_epoch", "cost_vs_seconds", "throughput_vs_batch",
                                     "kernel_bandwidth"}
    for path in results["plots"].values():
        data = open(path, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000
    page = (out / "RESULTS.md").read_text()
    assert "](plots/throughput_vs_batch.png)" in page and "| batch |" in page


def test_interleaved_rotates_and_reports_min_median_max():
    calls = []
    timings = harness.interleaved({"a": lambda: calls.append("a"),
                                   "b": lambda: calls.append("b")}, rounds=4,
                                  min_sample_s=0.0)
    assert set(timings) == {"a", "b"}
    for t in timings.values():
        assert t.rounds == 4 and 0 <= t.min <= t.median <= t.max
    assert calls.count("a") == calls.count("b")


def test_targets_judge_against_the_faster_peer():
    comparison = {"kind": "adam", "n": 10_000_000,
                  "contenders": {"gpunn": {"gb_per_s": 45.0}},
                  "ratios": {"gpunn vs torch fused (1 tensor)": 1.2,
                             "gpunn vs torch default (100 tensors)": 3.0,
                             "gpunn vs torch foreach (100 tensors)": 1.5}}
    results = {"mode": "full", "sections": {"kernels": {
        "ceiling": {"ceiling_gb_per_s": 50.0}, "comparisons": [comparison]}}}
    found = {t["name"]: t for t in targets.evaluate(results)}
    assert found["fused Adam N=1e+07 vs PyTorch fused (here or in its own process)"]["met"] is True
    hundred = found["fused Adam N=1e+07 vs PyTorch over 100 tensors (best of default, foreach)"]
    assert hundred["value"] == 1.5 and hundred["met"] is False
    fraction = found["fused Adam N=1e+07 fraction of the in-place bandwidth ceiling"]
    assert fraction["value"] == pytest.approx(0.9) and fraction["met"] is True
    assert found["fused Adam N=1e+05 vs PyTorch fused (here or in its own process)"]["met"] is None


def test_json_cleaning_and_number_format():
    assert _finite({"a": [1.0, float("nan")], "b": float("inf")}) == {"a": [1.0, None],
                                                                      "b": None}
    assert report._f(None) == "-" and report._f(np.float64(1234.5)) == "1.23e+03"

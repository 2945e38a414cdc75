#!/usr/bin/env bash
# The GPU check: one command for whoever has an NVIDIA GPU, offline, within 7 minutes.
#
#   benchmarks/gpu_check.sh OUTDIR [WHEELS_DIR]
#
# Parts, in order, each under its own time limit, each logged to OUTDIR/<part>.log:
#   env        nvidia-smi, Python, the versions of what the check uses
#   wheels     WHEELS_DIR/*.whl (benchmarks/gpu_wheels.sh fetches them), offline, no deps
#   install    this checkout, editable, offline, no build isolation (setuptools + wheel of
#              the environment; nothing from the network)
#   info       `gpunn info` with GPUNN_BACKEND=cuda: FAILS when cuda cannot be used
#   smoke      benchmarks/gpu_smoke.py: capture happens, graph == eager to the bit, cuda vs
#              cpu on digits
#   tests      the suite on the cuda backend alone (GPUNN_TEST_BACKENDS=cuda), junit XML in
#              OUTDIR/tests.xml even when the part runs out of time
#   bench      `gpunn bench --quick --sections gpu,updates` (gpunn vs PyTorch and JAX)
#   precision  `python -m gpunn.bench.precision` (the step and GEMM floor per precision)
# then a summary (OUTDIR/summary.txt, also printed). A part that fails does not stop the next.
# A part that runs out of time gets SIGINT (Python prints where it was; pytest writes its
# junit XML), then SIGABRT 20 s later (PYTHONFAULTHANDLER=1: every thread's stack), then
# SIGKILL. Exit status 0 only if every part passed.
#
# Environment:
#   PYTHON               the interpreter (default: python3): an environment with numpy, numba,
#                        cupy, pytest, pytest-benchmark, threadpoolctl, setuptools, wheel (and
#                        torch / jax / scikit-learn for the peers and the smoke)
#   GPUNN_CHECK_SECONDS  the whole run's budget (default 450); each part gets its own limit
#                        or what is left
#   GPUNN_CHECK_DRY_RUN  1: no GPU here; every part runs on the cpu backend instead (no
#                        nvidia-smi, smoke --dry-run, the bench at --smoke size, the precision
#                        bench's --help only), to check the script itself
#                        (tests/test_gpu_check.py does, from a copy of the checkout)
#   GPUNN_CHECK_TESTS    what pytest runs (default: tests)
#   GPUNN_CHECK_NO_INSTALL  1: skip the install part (the checkout is importable already)
set -u
OUT="${1:?usage: benchmarks/gpu_check.sh OUTDIR [WHEELS_DIR]}"
WHEELS="${2:-${GPUNN_WHEELS:-}}"
PY="${PYTHON:-python3}"
DRY="${GPUNN_CHECK_DRY_RUN:-0}"
TESTS="${GPUNN_CHECK_TESTS:-tests}"
# Paths as given, from the caller's directory; then the checkout is the working directory.
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
if [[ -n "$WHEELS" ]]; then
    WHEELS="$(cd "$WHEELS" && pwd)" || { echo "WHEELS_DIR $2: no such folder"; exit 2; }
fi
cd "$(dirname "$0")/.."
START=$(date +%s)
DEADLINE=$(( START + ${GPUNN_CHECK_SECONDS:-450} ))
: > "$OUT/status.txt"
status=0

export PYTHONFAULTHANDLER=1 PYTHONUNBUFFERED=1 GPUNN_CHECK_RUNNING=1
# Open MPI refuses root without these (the GPU image runs as root; test_distributed).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"
if [[ "$DRY" == 1 ]]; then
    export GPUNN_BACKEND=cpu GPUNN_TEST_BACKENDS=cpu
    BACKEND=cpu
    echo "DRY RUN: no GPU; the cpu backend stands in for cuda in every part" \
        | tee -a "$OUT/status.txt"
else
    export GPUNN_BACKEND=cuda GPUNN_TEST_BACKENDS=cuda
    BACKEND=cuda
fi

DEFAULT_SIGINT='import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])'

limited() {  # limited SECONDS LOG COMMAND...: run in its own process group, stop it in time
    local limit="$1" log="$2" pid waited=0 rc
    shift 2
    : > "$log"  # then opened for appending, so the notes below land after what it wrote
    if declare -F "$1" > /dev/null; then  # a function of this script: a subshell
        "$@" >> "$log" 2>&1 < /dev/null &
    else  # its own process group, so the signals reach its children too; SIGINT restored
        # (bash starts background commands with SIGINT ignored, and Python keeps it so)
        setsid "$PY" -c "$DEFAULT_SIGINT" "$@" >> "$log" 2>&1 < /dev/null &
    fi
    pid=$!
    while kill -0 "$pid" 2> /dev/null && (( waited < limit )); do
        sleep 1
        waited=$(( waited + 1 ))
    done
    if kill -0 "$pid" 2> /dev/null; then
        echo "[gpu_check] out of time after $limit s: SIGINT" >> "$log"
        kill -INT -- "-$pid" 2> /dev/null || kill -INT "$pid" 2> /dev/null
        for signal in ABRT KILL; do
            waited=0
            while kill -0 "$pid" 2> /dev/null && (( waited < 20 )); do
                sleep 1
                waited=$(( waited + 1 ))
            done
            kill -0 "$pid" 2> /dev/null || break
            echo "[gpu_check] still running: SIG$signal" >> "$log"
            kill "-$signal" -- "-$pid" 2> /dev/null || kill "-$signal" "$pid" 2> /dev/null
        done
        wait "$pid"
        return 124
    fi
    wait "$pid"
    rc=$?
    return $rc
}

part() {  # part NAME LIMIT_SECONDS COMMAND...
    local name="$1" limit="$2" start left rc note=""
    shift 2
    start=$(date +%s)
    left=$(( DEADLINE - start - 45 ))  # room for the signals and the summary
    if (( left < 5 )); then
        echo "$name: not run (out of time)" | tee -a "$OUT/status.txt"
        status=1
        return 1
    fi
    (( left < limit )) && limit=$left
    limited "$limit" "$OUT/$name.log" "$@"
    rc=$?
    (( rc == 124 )) && note=", TIMED OUT after $limit s (stacks in $name.log)"
    echo "$name: exit $rc, $(( $(date +%s) - start )) s$note" | tee -a "$OUT/status.txt"
    (( rc == 0 )) || status=1
    return $rc
}

skip() {  # skip NAME WHY
    echo "$1: skipped ($2)" | tee -a "$OUT/status.txt"
}

versions() {
    if [[ "$DRY" == 1 ]]; then
        echo "nvidia-smi: not run (dry run)"
    else
        nvidia-smi || echo "nvidia-smi failed: $?"
    fi
    git log -1 --format="commit %H %s" 2> /dev/null || echo "commit: unknown (no git here)"
    "$PY" - << 'EOF'
import importlib.metadata as md, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("numpy", "numba", "cupy-cuda13x", "cupy-cuda12x", "nvmath-python", "cuda-bindings",
             "torch", "jax", "scikit-learn", "pytest", "pytest-timeout", "pytest-benchmark",
             "setuptools", "wheel", "mpi4py", "tbb", "safetensors", "tqdm", "hypothesis"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} -")
EOF
}

part env 30 versions

if [[ -n "$WHEELS" ]]; then
    part wheels 60 "$PY" -m pip install --no-deps --no-index --no-build-isolation \
        "$WHEELS"/*.whl
else
    skip wheels "no WHEELS_DIR given"
fi
if [[ "${GPUNN_CHECK_NO_INSTALL:-0}" == 1 ]]; then
    skip install "GPUNN_CHECK_NO_INSTALL=1"
else
    part install 90 "$PY" -m pip install --no-deps --no-index --no-build-isolation -e .
fi
part info 40 "$PY" -m gpunn.cli info
# Without a usable backend the rest only repeats the same error: stop here.
if ! grep -q "^info: exit 0" "$OUT/status.txt"; then
    echo "info failed: gpunn cannot use the $BACKEND backend (see info.log); parts after" \
        "it not run" | tee -a "$OUT/status.txt"
    status=1
else
    smoke_args=()
    [[ "$DRY" == 1 ]] && smoke_args=(--dry-run)
    part smoke 60 "$PY" benchmarks/gpu_smoke.py "${smoke_args[@]}"

    pytest_args=(-q -p no:cacheprovider -o faulthandler_timeout=90 -rfE
                 --junitxml="$OUT/tests.xml")
    if "$PY" -c "import pytest_timeout" 2> /dev/null; then
        pytest_args+=(--timeout=150)  # one hung test cannot eat the part
    fi
    # shellcheck disable=SC2086  # GPUNN_CHECK_TESTS may name several paths
    part tests 230 "$PY" -m pytest "${pytest_args[@]}" $TESTS
    [[ -s "$OUT/tests.xml" ]] || echo "tests: no junit XML written" | tee -a "$OUT/status.txt"

    if [[ "$DRY" == 1 ]]; then
        size=--smoke sections=updates
    else
        size=--quick sections=gpu,updates
    fi
    part bench 90 "$PY" -m gpunn.bench "$size" --backend "$BACKEND" --sections "$sections" \
        --json "$OUT/bench.json" --markdown "$OUT/bench.md"
    if [[ "$DRY" == 1 ]]; then  # minutes on a CPU, and it has no smoke size: its CLI only
        part precision 30 "$PY" -m gpunn.bench.precision --help
    else
        part precision 60 "$PY" -m gpunn.bench.precision --backend "$BACKEND" \
            --json "$OUT/precision.json"
    fi
fi

{
    echo "== gpu_check summary ($(( $(date +%s) - START )) s, backend $BACKEND)"
    cat "$OUT/status.txt"
    if [[ -f "$OUT/smoke.log" ]]; then
        grep -E "^(PASS|FAIL|NOT CHECKED)" "$OUT/smoke.log" | sed 's/^/smoke: /'
    fi
    if [[ -f "$OUT/tests.log" ]]; then
        grep -E "^(FAILED|ERROR) " "$OUT/tests.log" | head -40
        grep -E "^=+ .*(passed|failed|error).* =+$|^[0-9]+ (passed|failed|error)" "$OUT/tests.log" \
            | tail -1
    fi
    (( status == 0 )) && echo "ALL PARTS PASSED" || echo "SOME PARTS FAILED"
} > "$OUT/summary.txt"
cat "$OUT/summary.txt"
exit $status

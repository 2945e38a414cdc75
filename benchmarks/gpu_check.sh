#!/usr/bin/env bash
# The GPU check, for whoever has an NVIDIA GPU: install this checkout offline, run the test
# suite on the cuda backend, then the GPU benchmark (gpunn's step vs PyTorch eager, PyTorch
# CUDA graph, JAX jit and the GEMM floor; the optimizer updates vs PyTorch's) and the step and
# GEMM floor per precision (fp32, tf32, bf16; PyTorch autocast bf16 beside them).
#
#   benchmarks/gpu_check.sh OUTDIR [WHEELS_DIR]
#
# WHEELS_DIR (or $GPUNN_WHEELS): wheels installed first, offline, without dependencies (e.g.
# nvmath-python and what it needs). Needs an environment that already has numpy, numba, cupy,
# pytest, pytest-benchmark, threadpoolctl (and torch / jax for the peers); $PYTHON picks it.
# Every part writes OUTDIR/<part>.log; OUTDIR/status.txt gets one line per part (exit code,
# seconds). A failing part does not stop the next. The whole run stays within
# $GPUNN_CHECK_SECONDS (default 480): each part is cut by `timeout` at its own limit or at
# what is left. Exit status 0 only if every part passed.
set -u
OUT="${1:?usage: benchmarks/gpu_check.sh OUTDIR [WHEELS_DIR]}"
WHEELS="${2:-${GPUNN_WHEELS:-}}"
PY="${PYTHON:-python}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
DEADLINE=$(( $(date +%s) + ${GPUNN_CHECK_SECONDS:-480} ))
: > "$OUT/status.txt"
status=0

part() {  # part NAME LIMIT_SECONDS COMMAND...
    local name="$1" limit="$2" start left rc
    shift 2
    start=$(date +%s)
    left=$(( DEADLINE - start ))
    (( left < limit )) && limit=$left
    if (( limit < 10 )); then
        echo "$name: not run (out of time)" | tee -a "$OUT/status.txt"
        status=1
        return
    fi
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc, $(( $(date +%s) - start )) s$( (( rc == 124 )) && echo \
        ", timed out after $limit s")" | tee -a "$OUT/status.txt"
    (( rc == 0 )) || status=1
}

part nvidia-smi 20 nvidia-smi
if [[ -n "$WHEELS" ]]; then
    part wheels 60 "$PY" -m pip install --no-deps --no-index "$WHEELS"/*.whl
fi
part install 60 "$PY" -m pip install --no-deps --no-build-isolation --no-index -e .
part info 30 env GPUNN_BACKEND=cuda "$PY" -m gpunn.cli info
part tests 220 env GPUNN_BACKEND=cuda "$PY" -m pytest -q -p no:cacheprovider \
    --junitxml="$OUT/tests.xml"
part bench 120 env GPUNN_BACKEND=cuda "$PY" -m gpunn.bench --quick \
    --sections gpu,updates --json "$OUT/bench.json" --plots "$OUT/plots"
part precision 80 env GPUNN_BACKEND=cuda "$PY" -m gpunn.bench.precision --backend cuda \
    --json "$OUT/precision.json"
exit $status

#!/usr/bin/env bash
# The host build of the CUDA kernels under AddressSanitizer: every kernel launched directly
# with odd grid/block shapes (tests/test_host_build.py), through the CUDA backend's own launch
# code (the cuda-emulated tests), and the proof that ASan catches an off-by-one (test_asan.py).
# Exits non-zero on any failure and on any ASan report, even one that did not abort.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
LIBASAN="$(g++ -print-file-name=libasan.so)"
if [[ "$LIBASAN" != /* || ! -e "$LIBASAN" ]]; then
    echo "asan.sh: libasan.so not found for $(command -v g++)" >&2
    exit 1
fi
REPORTS="$(mktemp -d)"
trap 'rm -rf "$REPORTS"' EXIT

status=0
GPUNN_HOST_ASAN=1 LD_PRELOAD="$LIBASAN" \
    ASAN_OPTIONS="detect_leaks=0:log_path=$REPORTS/asan" \
    "$PYTHON" -m pytest -q -p no:cacheprovider \
    tests/test_host_build.py tests/test_kernels.py tests/test_asan.py \
    -k "not test_kernels.py or cuda-emulated" || status=$?

if compgen -G "$REPORTS/asan*" > /dev/null; then
    cat "$REPORTS"/asan* >&2
    echo "asan.sh: AddressSanitizer reported errors (above)" >&2
    exit 1
fi
exit "$status"

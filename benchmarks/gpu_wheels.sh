#!/usr/bin/env bash
# Wheels that benchmarks/gpu_check.sh installs offline on a GPU machine whose image has CuPy,
# numpy, numba, scipy, PyTorch, JAX and pytest but not the rest of gpunn's dependencies (as on
# the reference H200 image). Run where PyPI is reachable; carry DIR to the GPU machine.
#
#   benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION]   (default 3.12; about 40 MB)
set -euo pipefail
DIR="${1:?usage: benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION]}"
VERSION="${2:-3.12}"
# nvmath-python: the capturable cuBLAS binding (CUDA graphs); safetensors: checkpoints; tbb:
# the CPU threading layer; ml_dtypes, scikit-learn, pytest-benchmark: the test extra. The
# image's own CuPy keeps its cuda-pathfinder.
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$VERSION" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DIR" \
    nvmath-python cuda-bindings cuda-core safetensors tbb tcmlib ml_dtypes scikit-learn joblib \
    threadpoolctl pytest-benchmark py-cpuinfo2
ls "$DIR"

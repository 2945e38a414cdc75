#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh installs offline on the GPU machine: only what its image
# lacks. The reference H200 image (/work/.library/device/KINDS.md: Python 3.12, CuPy 14.2
# cupy-cuda13x, torch 2.11, JAX 0.11, cuda-bindings, cuda-core, scikit-learn, safetensors, tqdm,
# hypothesis, pytest-timeout, setuptools, wheel) lacks nvmath-python (the capturable cuBLAS
# binding: CUDA graphs), tbb and tcmlib (Numba's TBB threading layer). Installing other
# versions of what the image has (cuda-bindings, cuda-core, scikit-learn) over it would risk
# breaking its CuPy and PyTorch: they are not fetched. Run where PyPI is reachable; carry DIR.
#
#   benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION]   (default 3.12)
set -euo pipefail
DIR="${1:?usage: benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION]}"
VERSION="${2:-3.12}"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$VERSION" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DIR" \
    "nvmath-python>=0.5" "tbb>=2021.6" tcmlib
ls "$DIR"

"""GEMMs per precision on every backend against float64 products of the rounded operands, and
the column-major cublasGemmEx mapping through its host emulation."""

import itertools

import numpy as np
import pytest
import reference_precision as rp
from host_gemm import HostGemmEx

from gpunn.backends.cuda import gemm_arguments
from gpunn.backends.gemm_precision import GEMM_EX_TYPES

SHAPES = [(1, 1, 1), (5, 7, 3), (33, 17, 9), (64, 40, 70)]  # (rows, inner, cols)
TRANSPOSES = list(itertools.product([False, True], repeat=2))


def _operands(rng, rows, inner, cols, trans_a, trans_b):
    a = rng.standard_normal((inner, rows) if trans_a else (rows, inner)).astype(np.float32)
    b = rng.standard_normal((cols, inner) if trans_b else (inner, cols)).astype(np.float32)
    return a * 3, b


def _bf16_bits(x):
    """bfloat16 bits of the float32 ``x`` from the value reference."""
    return (rp.round_to_mantissa(x, 7).astype(np.float32).view(np.uint32) >> 16).astype(
        np.uint16).reshape(x.shape)


def _as_read(x, precision):
    """The float64 values the GEMM of ``precision`` multiplies, and its device operand."""
    if precision == "bf16":
        bits = _bf16_bits(x)
        return rp.bf16_value(bits), bits
    if precision == "tf32":
        return rp.round_to_mantissa(x, 10).reshape(x.shape), x
    return x.astype(np.float64), x


def _check_product(actual, a, b, trans_a, trans_b):
    """Within float32 accumulation of exact products: k * 2^-24 * (|A| @ |B|), factor 2."""
    a, b = (a.T if trans_a else a), (b.T if trans_b else b)
    bound = 2 * a.shape[1] * 2.0 ** -24 * (np.abs(a) @ np.abs(b)) + 1e-30
    error = np.abs(actual.astype(np.float64) - a @ b)
    assert (error <= bound).all(), f"max error / bound: {(error / bound).max()}"


def _check_tf32(actual, a, b, trans_a, trans_b):
    """What any TF32 GEMM keeps, however it rounds: cuBLAS leaves the TF32 rounding of the
    operands unspecified (truncation is allowed) and may not use tensor cores at all for some
    shapes (then nothing is rounded). Each float32 operand loses less than one unit of its
    10th mantissa bit, 2^-10 relative, so each product is within (2 u + u^2) |a||b| of the
    exact one, plus float32 accumulation as in :func:`_check_product`."""
    a, b = (a.T if trans_a else a).astype(np.float64), (b.T if trans_b else b).astype(np.float64)
    u = 2.0 ** -10
    magnitude = np.abs(a) @ np.abs(b)
    bound = (2 * u + u * u + 2 * a.shape[1] * 2.0 ** -24) * magnitude + 1e-30
    error = np.abs(actual.astype(np.float64) - a @ b)
    assert (error <= bound).all(), f"max error / bound: {(error / bound).max()}"


def _matmul_on(backend, a, b, trans_a, trans_b, precision):
    out = backend.zeros((a.shape[1] if trans_a else a.shape[0],
                         b.shape[0] if trans_b else b.shape[1]), np.float32)
    backend.matmul(backend.asarray(a), backend.asarray(b), out=out, trans_a=trans_a,
                   trans_b=trans_b, precision=precision)
    return backend.to_numpy(out)


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_matmul_multiplies_the_rounded_operands(backend, precision, trans_a, trans_b):
    """fp32 and bf16 (operands given as bfloat16 bits: nothing left to round) on every
    backend, and tf32 where gpunn itself rounds (round to nearest even, the CPU and the
    emulation): within float32 accumulation of the products of what the GEMM reads. tf32 on
    CUDA (cuBLAS decides how, or whether, it rounds): the bound of :func:`_check_tf32`."""
    rng = np.random.default_rng(11)
    for rows, inner, cols in SHAPES:
        a, b = _operands(rng, rows, inner, cols, trans_a, trans_b)
        (a64, a_dev), (b64, b_dev) = _as_read(a, precision), _as_read(b, precision)
        actual = _matmul_on(backend, a_dev, b_dev, trans_a, trans_b, precision)
        if precision == "tf32":
            _check_tf32(actual, a, b, trans_a, trans_b)
        if precision != "tf32" or backend.name != "cuda":
            _check_product(actual, a64, b64, trans_a, trans_b)


def _tf32_bits(x, keep):
    """``x`` with mantissa bits below the 10th dropped (``keep="truncate"``), or kept."""
    if keep == "all":
        return x
    return (x.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)


@pytest.mark.parametrize("rounding", ["truncate", "all", "nearest-even"])
def test_the_tf32_bound_holds_however_cublas_rounds(rounding):
    """The bound accepts GEMMs of truncated, unrounded and nearest-even operands (the 1x1x1
    product seen on an H200, 0.1026001 * 1.359375, among them), and rejects operands rounded
    to 8 bits: it can fail."""
    rng = np.random.default_rng(14)
    cases = [(np.float32([[0.1026001]]), np.float32([[1.359375]]))]
    cases += [_operands(rng, *shape, False, False) for shape in SHAPES]
    for a, b in cases:
        if rounding == "nearest-even":
            read_a, read_b = (rp.round_to_mantissa(x, 10).reshape(x.shape) for x in (a, b))
        else:
            read_a, read_b = _tf32_bits(a, rounding), _tf32_bits(b, rounding)
        product = np.matmul(read_a.astype(np.float32), read_b.astype(np.float32))
        _check_tf32(product, a, b, False, False)
    a, b = cases[-1]
    coarse = [rp.round_to_mantissa(x, 4).reshape(x.shape).astype(np.float32) for x in (a, b)]
    with pytest.raises(AssertionError, match="max error / bound"):
        _check_tf32(coarse[0] @ coarse[1], a, b, False, False)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_matmul_precision_changes_the_result(backend, precision):
    """The check above fails when the operands are not rounded: fp32 values differ by more."""
    rng = np.random.default_rng(12)
    a, b = _operands(rng, 33, 17, 9, False, False)
    a64, b64 = _as_read(a, precision)[0], _as_read(b, precision)[0]
    exact = backend.to_numpy(backend.matmul(backend.asarray(a), backend.asarray(b)))
    with pytest.raises(AssertionError, match="max error / bound"):
        _check_product(exact, a64, b64, False, False)


def test_cuda_emulated_goes_through_gemm_ex():
    from host_build import emulated_backend

    backend = emulated_backend()
    a = np.ones((4, 3), np.float32)
    before = backend._blas.gemm_ex_calls, backend._blas.calls
    backend.matmul(a, a, trans_b=True, precision="tf32")
    backend.matmul(a, a, trans_b=True)  # fp32: the plain gemm
    assert (backend._blas.gemm_ex_calls, backend._blas.calls) == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=["NN", "NT", "TN", "TT"])
def test_column_major_mapping_on_the_host_emulation(trans_a, trans_b):
    rng = np.random.default_rng(13)
    a, b = _operands(rng, 6, 5, 4, trans_a, trans_b)
    out = np.full((6, 4), np.nan, np.float32)
    op_b, op_a, m, n, k, B, ldb, A, lda, C, ldc = gemm_arguments(a, b, out, trans_a, trans_b)
    operand, output, compute = GEMM_EX_TYPES["fp32"]
    HostGemmEx().gemm_ex(op_b, op_a, m, n, k, B, operand, ldb, A, operand, lda, C, output, ldc,
                         compute)
    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_host_emulation_rejects_a_wrong_mapping():
    """A row-major reading (operands in C's order, ld = column count) is refused or wrong."""
    a, b = np.ones((6, 5), np.float32), np.ones((5, 4), np.float32)
    operand, output, compute = GEMM_EX_TYPES["fp32"]
    with pytest.raises(ValueError, match="leading dimension"):
        HostGemmEx().gemm_ex(0, 0, 6, 4, 5, a, operand, 5, b, operand, 4,
                             np.zeros((6, 4), np.float32), output, 6, compute)


@pytest.mark.parametrize("precision, a_dtype, words", [
    ("bf16", np.float32, "a: expected dtype uint16 (bfloat16 bits) for precision 'bf16'"),
    ("tf32", np.uint16, "a: expected dtype float32 (float32) for precision 'tf32'"),
])
def test_matmul_operand_dtype_errors(backend, precision, a_dtype, words):
    a = backend.asarray(np.ones((2, 2), a_dtype))
    b = backend.asarray(np.ones((2, 2), np.uint16 if precision == "bf16" else np.float32))
    with pytest.raises(TypeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        backend.matmul(a, b, precision=precision)


def test_matmul_unknown_precision(backend):
    a = backend.asarray(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"precision: expected one of \['fp32', 'tf32', "
                                         r"'bf16'\], got 'fp16'"):
        backend.matmul(a, a, precision="fp16")


def _stand_in_cublas(log):
    """nvmath's cublas binding as far as Cublas calls it, logging each call (no GPU here)."""
    import itertools
    from types import SimpleNamespace

    handles = itertools.count(7)
    return SimpleNamespace(
        create=lambda: (log.append(("create",)), next(handles))[1],
        set_stream=lambda handle, ptr: log.append(("set_stream", handle, ptr)),
        set_workspace=lambda handle, ptr, size: log.append(("set_workspace", handle, ptr)),
        sgemm=None, dgemm=None, gemm_ex=lambda *args: log.append(("gemm_ex", *args)))


def _device(ptr):
    from types import SimpleNamespace

    return SimpleNamespace(data=SimpleNamespace(ptr=ptr))


def test_cublas_gemm_ex_passes_cublas_argument_order():
    """gpunn.backends.cublas.Cublas.gemm_ex on a stand-in binding: the handle, every argument
    in cublasGemmEx's order, host scalars 1 and 0 in float32, the default algorithm."""
    import ctypes
    from types import SimpleNamespace

    from gpunn.backends.cublas import Cublas
    from gpunn.backends.gemm_precision import CUBLAS_GEMM_DEFAULT

    log = []
    cupy = SimpleNamespace(empty=lambda size, dtype: _device(1))
    blas = Cublas(_stand_in_cublas(log), cupy)
    operand, output, compute = GEMM_EX_TYPES["bf16"]
    blas.gemm_ex(1, 0, 3, 4, 5, _device(100), operand, 8, _device(200), operand, 9,
                 _device(300), output, 3, compute, SimpleNamespace(ptr=5))
    (args,) = [call[1:] for call in log if call[0] == "gemm_ex"]
    assert args[:6] == (7, 1, 0, 3, 4, 5)
    assert args[7:13] == (100, operand, 8, 200, operand, 9)
    assert args[14:] == (300, output, 3, compute, CUBLAS_GEMM_DEFAULT)
    assert ctypes.c_float.from_address(args[6]).value == 1.0
    assert ctypes.c_float.from_address(args[13]).value == 0.0


def test_cublas_has_a_handle_per_thread_bound_to_the_stream_of_each_call():
    """Review item 1: a handle shared by threads that capture records one thread's GEMMs
    into the other's graph. Each thread gets its own handle and workspace; a call on another
    stream rebinds the handle and sets the workspace again (cublasSetStream resets it)."""
    import threading
    from types import SimpleNamespace

    from gpunn.backends.cublas import Cublas

    log, workspaces = [], iter(range(1000, 2000))
    cupy = SimpleNamespace(empty=lambda size, dtype: _device(next(workspaces)))
    blas = Cublas(_stand_in_cublas(log), cupy)
    operand, output, compute = GEMM_EX_TYPES["tf32"]

    def gemm(stream):
        blas.gemm_ex(0, 0, 1, 1, 1, _device(1), operand, 1, _device(2), operand, 1, _device(3),
                     output, 1, compute, SimpleNamespace(ptr=stream))

    gemm(50)
    gemm(50)
    thread = threading.Thread(target=gemm, args=(60,))
    thread.start()
    thread.join()
    gemm(70)
    binds = [call[:3] for call in log if call[0] in ("set_stream", "set_workspace")]
    assert [call[0] for call in log].count("create") == 2
    assert binds == [("set_stream", 7, 50), ("set_workspace", 7, 1000),
                     ("set_stream", 8, 60), ("set_workspace", 8, 1001),
                     ("set_stream", 7, 70), ("set_workspace", 7, 1000)]
    assert [call[1] for call in log if call[0] == "gemm_ex"] == [7, 7, 8, 7]

"""bfloat16 GEMM operands in the backend's layout (``Backend.bf16_zeros``): uint16 bits, or on
the CPU float32 storage whose upper halves are the bits. The kernels that produce an operand
write it there directly, and the CPU's GEMMs read the storage without widening it first: the
same bits and the same products as with uint16 arrays, only fewer passes (issue 18 item 3)."""

import gc

import numpy as np
import pytest
from gpunn.kernels import kernel_specs
from kernel_cases import CASES, Inputs, in_bf16_storage, writes_bf16

import gpunn
from gpunn.backends.cpu import CpuBackend

# Every kernel that writes bfloat16 bits: its first row, the rows about its bfloat16 output,
# and every activation of bias_act_fwd_bf16 (its twin has a loop per activation).
_FIRST = {case.kernel: case for case in reversed(CASES)}
BF16_CASES = [case for case in CASES if writes_bf16(case.kernel) and (
    case is _FIRST[case.kernel] or "bf16" in case.variant or case.kernel == "bias_act_fwd_bf16")]
F32 = np.float32


def _widened(bits):
    """The float32 values of bfloat16 bits, by shifting: independent of the kernels."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(F32)


@pytest.mark.parametrize("case", BF16_CASES, ids=[case.id for case in BF16_CASES])
def test_kernels_write_the_same_bits_into_the_backends_bf16_layout(backend, case):
    args = case.args(Inputs(np.random.default_rng(5), F32), 17, 13)
    plain = [backend.asarray(a) if hasattr(a, "dtype") else a for a in args]
    stored = in_bf16_storage(backend, case.kernel, plain)
    plain = [a.copy() if hasattr(a, "dtype") else a for a in plain]
    backend.kernel(case.kernel, *plain)
    backend.kernel(case.kernel, *stored)
    for param, a, b in zip(kernel_specs()[case.kernel].params, plain, stored):
        if param.is_array:
            np.testing.assert_array_equal(backend.to_numpy(b), backend.to_numpy(a),
                                          err_msg=param.name)
        if param.kind == "out_u16" and backend._bf16_values(b) is not None:
            values = backend.to_numpy(backend._bf16_values(b))  # zeros below the bits
            np.testing.assert_array_equal(values.view(np.uint32),
                                          _widened(backend.to_numpy(a)).view(np.uint32))


def test_cpu_storage_holds_the_bits_in_float32_upper_halves():
    be = CpuBackend()
    bits = be.bf16_zeros((3, 5))
    assert bits.dtype == np.uint16 and bits.shape == (3, 5) and not bits.any()
    bits[...] = np.arange(15, dtype=np.uint16).reshape(3, 5) * 4099
    values = be._bf16_values(bits[1:])
    assert values.dtype == F32 and np.shares_memory(values, bits)
    np.testing.assert_array_equal(values.view(np.uint32), _widened(bits[1:]).view(np.uint32))
    # Views that are not the upper halves, and uint16 arrays the backend did not make, are
    # plain bits: never read as values.
    storage = bits.base
    assert be._bf16_values(storage.view(np.uint16)) is None
    assert be._bf16_values(storage.view(np.uint16)[..., 0::2]) is None
    assert be._bf16_values(np.zeros((3, 10), np.uint16)[:, 1::2]) is None
    assert be._bf16_values(CpuBackend().bf16_zeros(4)) is None  # another backend's storage


def test_cpu_storage_is_forgotten_with_its_arrays():
    be = CpuBackend()
    kept = be.bf16_zeros(4)
    for _ in range(50):
        be.bf16_zeros(1000)
    gc.collect()
    assert list(be._bf16_storage.values()) == [kept.base]


def test_kernels_refuse_strided_bits_that_are_not_the_backends_layout():
    be = CpuBackend()
    x = np.ones(4, F32)
    with pytest.raises(ValueError, match="round_bf16 argument 'out': expected a C-contiguous"):
        be.kernel("round_bf16", x, np.zeros(8, np.uint16)[::2])
    with pytest.raises(TypeError, match="argument 'out': expected dtype uint16, got float32"):
        be.kernel("round_bf16", x, be._bf16_values(be.bf16_zeros(4)))


@pytest.mark.parametrize("layout", ["both", "a", "b"])
def test_bf16_gemm_reads_the_storage_as_it_is(backend, layout):
    """Same product from the backend's layout as from uint16 bits; on the CPU no operand of
    the backend's layout is widened into a scratch array first."""
    rng = np.random.default_rng(1)
    a_bits, b_bits = (Inputs(rng, F32).bf16(shape) for shape in ((9, 7), (7, 5)))
    a_bits[~np.isfinite(_widened(a_bits))] = 0x3F80  # finite products: comparable
    b_bits[~np.isfinite(_widened(b_bits))] = 0x3F80
    a_bits[np.abs(_widened(a_bits)) > 1e18] = 0x3F80
    b_bits[np.abs(_widened(b_bits)) > 1e18] = 0x3F80
    expected = _widened(a_bits).astype(np.float64) @ _widened(b_bits).astype(np.float64)
    plain = backend.matmul(backend.asarray(a_bits), backend.asarray(b_bits), precision="bf16")
    operands = []
    for name, bits in (("a", a_bits), ("b", b_bits)):
        if layout in ("both", name):
            stored = backend.bf16_zeros(bits.shape)
            stored[...] = backend.asarray(bits)
            operands.append(stored)
        else:
            operands.append(backend.asarray(bits))
    backend.__dict__.pop("_scratch", None)
    got = backend.matmul(*operands, precision="bf16")
    np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(plain))
    np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=1e-5, atol=1e-30)
    if isinstance(backend, CpuBackend):
        widened = {key[1] for key in backend.__dict__.get("_scratch", {})}
        assert widened == {"both": set(), "a": {"b"}, "b": {"a"}}[layout]


def test_cpu_bf16_training_widens_no_operand(backend):
    """Every GEMM operand of a bf16 fit (inputs, activations, deltas, weights) is written in
    the backend's layout by the kernel that produces it: on the CPU no GEMM widens one."""
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((64, 12)).astype(F32), rng.integers(0, 3, 64)
    model = gpunn.MLP([12, 16, 16, 3], activation="relu", output="softmax", precision="bf16")
    backend.__dict__.pop("_scratch", None)
    gpunn.fit(model, X, y, epochs=2, batch_size=16, progress=False)
    model.predict(X)
    if isinstance(backend, CpuBackend):
        assert backend.__dict__.get("_scratch", {}) == {}
        assert model.flat_work.base.dtype == F32  # the working copy's bits: a view

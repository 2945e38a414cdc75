"""bfloat16 and TF32 rounding kernels on every backend: edge cases bit for bit against the
float64 value reference, ml_dtypes (the implementation JAX uses) and PyTorch's
``to(torch.bfloat16)``; the fused bf16 copies agree with ``round_bf16`` exactly."""

import numpy as np
import pytest
import reference_precision as rp
from gpunn.kernels import activation_codes

F32 = np.float32
TINY = float(np.finfo(F32).smallest_subnormal)
BF16_MAX = (2.0 - 2.0 ** -7) * 2.0 ** 127
F32_MAX = float(np.finfo(F32).max)

# Edge cases for bfloat16 (7 mantissa bits, ulp 2^-7 at 1): ties to even both ways, just off
# the ties, subnormal float32 and bfloat16, the largest finite values, overflow, specials.
BF16_EDGES = [
    1.0, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -8 + 2.0 ** -20,
    1.0 + 2.0 ** -8 - 2.0 ** -20, 2.0 - 2.0 ** -9, -(1.0 + 2.0 ** -8), 0.0, -0.0,
    TINY, -TINY, 2.0 ** -133, 3 * 2.0 ** -134, 2.0 ** -126 - TINY, float(np.finfo(F32).tiny),
    BF16_MAX, BF16_MAX + 2.0 ** 119, (2.0 - 2.0 ** -8) * 2.0 ** 127 - 2.0 ** 104, F32_MAX,
    -F32_MAX, np.inf, -np.inf, np.nan, 65504.0, 1e-3, 3.14159265,
]
# TF32 (10 mantissa bits, ulp 2^-10 at 1): the same kinds of points.
TF32_EDGES = [
    1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -11 + 2.0 ** -23, -(1.0 + 2.0 ** -11),
    TINY, 2.0 ** -136, 3 * 2.0 ** -137, (2.0 - 2.0 ** -11) * 2.0 ** 127, F32_MAX, np.inf,
    -np.inf, np.nan, 0.0, -0.0,
]


def _signalling_nans():
    """float32 NaNs whose quiet bit is clear, one with its payload only in the low 16 bits."""
    return np.array([0x7F800001, 0xFF800100, 0x7FA00000], np.uint32).view(F32)


def _edges():
    return np.concatenate([np.array(BF16_EDGES, F32), _signalling_nans()])


def _round_bf16(backend, x):
    out = backend.xp.zeros(x.size, np.uint16)
    backend.kernel("round_bf16", backend.asarray(x), out)
    return backend.to_numpy(out)


def test_round_bf16_edge_cases_bit_exact(backend):
    x = _edges()
    with np.errstate(invalid="ignore"):
        rp.assert_bf16_equal(_round_bf16(backend, x), rp.round_to_mantissa(x, 7))


def test_round_bf16_nan_stays_quiet_nan(backend):
    nans = np.concatenate([_signalling_nans(), np.array([np.nan, -np.nan], F32)])
    bits = _round_bf16(backend, nans)
    assert ((bits & 0x7F80) == 0x7F80).all() and ((bits & 0x0040) == 0x0040).all(), bits


def test_round_bf16_agrees_with_ml_dtypes(backend):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.concatenate([_edges(), _random_floats(20000)])
    with np.errstate(invalid="ignore"):  # ml_dtypes warns on the signalling NaNs
        expected = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    actual = _round_bf16(backend, x)
    nan = np.isnan(x)
    np.testing.assert_array_equal(actual[~nan], expected[~nan])
    assert np.isnan(rp.bf16_value(actual[nan])).all()


def test_round_bf16_agrees_with_torch(backend):
    torch = pytest.importorskip("torch")
    x = np.concatenate([_edges(), _random_floats(20000)])
    expected = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    actual = _round_bf16(backend, x)
    nan = np.isnan(x)
    np.testing.assert_array_equal(actual[~nan], expected[~nan])


def _random_floats(n):
    """Random float32 bit patterns (every exponent), finite or not."""
    rng = np.random.default_rng(3)
    return rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32).view(F32)


def test_round_tf32_edge_cases_exact(backend):
    x = np.array(TF32_EDGES, F32)
    device = backend.asarray(x.copy())
    backend.kernel("round_tf32", device)
    actual = backend.to_numpy(device).astype(np.float64)
    expected = rp.round_to_mantissa(x, 10)
    np.testing.assert_array_equal(actual, expected)
    assert np.array_equal(np.signbit(actual), np.signbit(expected))


def test_round_tf32_random_bits_match_reference(backend):
    x = _random_floats(20000)
    device = backend.asarray(x.copy())
    backend.kernel("round_tf32", device)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(backend.to_numpy(device).astype(np.float64),
                                      rp.round_to_mantissa(x, 10))


def test_bf16_to_f32_round_trip_is_identity_on_bfloat16_values(backend):
    bits = np.arange(1 << 16, dtype=np.uint16)
    bits = bits[~np.isnan(rp.bf16_value(bits)) | ((bits & 0x40) != 0)]  # quiet NaNs only
    out = backend.empty(bits.size, np.float32)
    backend.kernel("bf16_to_f32", backend.asarray(bits), out)
    back = _round_bf16(backend, backend.to_numpy(out))
    np.testing.assert_array_equal(back, bits)


@pytest.mark.parametrize("act", list(activation_codes().values()), ids=list(activation_codes()))
def test_fused_bf16_copies_equal_round_bf16_of_the_fp32_output(backend, act):
    rng = np.random.default_rng(act)
    z = (rng.standard_normal((37, 11)) * 3).astype(F32)
    b = rng.standard_normal(11).astype(F32)
    Z = backend.asarray(z)
    Zh = backend.xp.zeros(z.shape, np.uint16)
    backend.kernel("bias_act_fwd_bf16", backend.asarray(b), 11, act, Z, Zh)
    np.testing.assert_array_equal(backend.to_numpy(Zh).ravel(),
                                  _round_bf16(backend, backend.to_numpy(Z).ravel()))
    dZ = backend.asarray(rng.standard_normal(z.shape).astype(F32))
    dZh = backend.xp.zeros(z.shape, np.uint16)
    backend.kernel("act_bwd_bf16", Z, act, dZ, dZh)
    np.testing.assert_array_equal(backend.to_numpy(dZh).ravel(),
                                  _round_bf16(backend, backend.to_numpy(dZ).ravel()))


def test_bfloat16_kernels_refuse_float64_and_name_the_argument(backend):
    x = backend.asarray(np.ones(4))
    out = backend.xp.zeros(4, np.uint16)
    with pytest.raises(TypeError, match="round_bf16 argument 'x': expected dtype float32"):
        backend.kernel("round_bf16", x, out)
    with pytest.raises(TypeError, match="bf16_to_f32 argument 'out'.*float32"):
        backend.kernel("bf16_to_f32", out, x)
    with pytest.raises(TypeError, match="argument 'out': expected dtype uint16, got float32"):
        backend.kernel("round_bf16", backend.asarray(np.ones(4, F32)), backend.zeros(4, F32))


def test_value_reference_can_fail():
    """The reference rounds ties to even: a truncating or round-half-up rounding differs."""
    x = np.array([1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8], F32)
    assert list(rp.round_to_mantissa(x, 7)) == [1.0, 1.0 + 2.0 ** -6]


def test_bf16_close_allows_one_ulp_and_no_more():
    """assert_bf16_close's bound is one bfloat16 ulp at the expected value, in every binade
    (ulp 2^-7 in [1, 2), 2^-8 in [0.5, 1), 2^-133 for subnormals and zero)."""
    bits = np.array([0x3F81, 0x3F01, 0x0001], np.uint16)  # 1 + 2^-7, 0.5 + 2^-8, 2^-133
    ulp = np.array([2.0 ** -7, 2.0 ** -8, 2.0 ** -133])
    np.testing.assert_array_equal(rp.bf16_ulp(rp.bf16_value(bits) - ulp), ulp)
    rp.assert_bf16_close(bits, rp.bf16_value(bits) - ulp)
    rp.assert_bf16_close(bits, [1.0 + 1.5 * 2.0 ** -7, 0.5, 0.0])
    for i in range(3):
        expected = rp.bf16_value(bits) - ulp
        expected[i] -= ulp[i] / 64
        with pytest.raises(AssertionError, match="1 of 3 bfloat16 values more than one ulp"):
            rp.assert_bf16_close(bits, expected)
    with pytest.raises(AssertionError):
        rp.assert_bf16_close(np.array([0x7F80], np.uint16), [3e38])  # inf for a finite value


def test_gathered_bf16_copy_equals_round_bf16_of_the_gathered_rows(backend):
    """gather_rows_bf16 writes the batch and its bfloat16 bits in one pass: bit for bit what
    gather_rows then round_bf16 give, edge values (ties, subnormals, overflow, NaN) included."""
    rng = np.random.default_rng(0)
    edges = _edges()
    src = np.concatenate([edges, rng.standard_normal(9 * 13 - edges.size).astype(F32) * 1e3])
    src = src.reshape(9, 13)
    order = rng.permutation(9).astype(np.int64)
    from gpunn.kernels.step import CTRL_K

    ctrl = np.zeros(8, np.int64)
    ctrl[CTRL_K] = 1  # step k = 1 of batches of 4: positions 4..7
    out = backend.xp.zeros((4, 13), F32)
    half = backend.xp.zeros((4, 13), np.uint16)
    args = (backend.asarray(src), backend.asarray(order), backend.asarray(ctrl), src.size, 9,
            9, 4, 0, 13)
    backend.kernel("gather_rows_bf16", *args, out, half)
    expected = backend.xp.zeros((4, 13), F32)
    backend.kernel("gather_rows", *args, expected)
    np.testing.assert_array_equal(backend.to_numpy(out), backend.to_numpy(expected))
    np.testing.assert_array_equal(src[order[4:8]], backend.to_numpy(out))
    np.testing.assert_array_equal(backend.to_numpy(half).ravel(),
                                  _round_bf16(backend, backend.to_numpy(out).ravel()))


def test_bf16_fit_with_the_fused_gather_gives_the_bits_of_the_separate_rounding(
        backend, monkeypatch):
    """A bf16 fit in batches gathers each batch with its bfloat16 copy (gather_rows_bf16);
    the same fit through gather_rows then round_bf16 (as before the fusion) ends with the
    same parameters and losses, bit for bit: the fusion moves the rounding, not its result."""
    import gpunn
    from gpunn import step as step_module

    rng = np.random.default_rng(3)
    X = rng.standard_normal((96, 12)).astype(F32)
    y = rng.integers(0, 3, 96)
    kernels = []

    def run():
        model = gpunn.MLP([12, 16, 3], output="softmax", precision="bf16", seed=1,
                          dropout=0.1)
        history = gpunn.fit(model, X, y, optimizer="adam", epochs=2, batch_size=16,
                            verbose=0, record_steps=True)
        return model.params.host(), np.array(history.step_loss)

    launch = backend.kernel

    def counted(name, *args, **kwargs):
        kernels.append(name)
        return launch(name, *args, **kwargs)

    monkeypatch.setattr(backend, "kernel", counted)
    fused = run()
    assert "gather_rows_bf16" in kernels
    fused_rounds = kernels.count("round_bf16")  # the recorded step's launches (and the weights')
    fused_shard_rows = step_module.TrainStep._shard_rows
    monkeypatch.setattr(step_module.TrainStep, "_shard_rows",
                        lambda self, lo, hi, X_half=None: fused_shard_rows(self, lo, hi))
    kernels.clear()
    separate = run()
    assert "gather_rows_bf16" not in kernels and kernels.count("round_bf16") > fused_rounds
    np.testing.assert_array_equal(fused[0], separate[0])
    np.testing.assert_array_equal(fused[1], separate[1])


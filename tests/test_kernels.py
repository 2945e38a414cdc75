"""Every kernel on every backend against its float64 reference, plus argument errors.

The table (one row per kernel variant) lives in kernel_cases.py; test_kernel_coverage.py fails if
a kernel of the ``.cu`` files has no row in ``CASES`` as imported here.
"""

import numpy as np
import pytest
import reference
from gpunn.kernels import kernel_specs
from kernel_cases import (
    CASE_DTYPE_IDS,
    CASE_DTYPES,
    CASES,
    EXTREME_KERNELS,
    SHAPES,
    Inputs,
    check_case,
    extreme_values,
    run_on_backend,
)

EXTREME_CASES = [case for case in CASES if case.kernel in EXTREME_KERNELS]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_kernel_matches_reference(backend, dtype, case):
    rng = np.random.default_rng(1234)
    if dtype not in case.dtypes:  # bfloat16 kernels: float32 only, float64 is refused
        with pytest.raises(TypeError, match="expected dtype float32 .*bfloat16.*got float64"):
            run_on_backend(backend, case, case.args(Inputs(rng, dtype), 3, 4))
        return
    for rows, cols in SHAPES:
        check_case(backend, case, Inputs(rng, dtype), rows, cols)


@pytest.mark.parametrize("case", EXTREME_CASES, ids=lambda case: case.id)
def test_kernel_extreme_inputs_stay_finite(backend, dtype, case):
    rng = np.random.default_rng(99)
    inputs = Inputs(rng, dtype, extreme=True)
    args = case.args(inputs, 37, 7)
    assert any(np.isin(a, extreme_values(dtype)).any() for a in args
               if isinstance(a, np.ndarray) and a.dtype == dtype)
    actual = run_on_backend(backend, case, args)
    for name, value in actual.items():
        assert np.isfinite(value).all(), f"{case.id} {name}: non-finite for finite inputs"
    check_case(backend, case, Inputs(np.random.default_rng(99), dtype, extreme=True), 37, 7)


@pytest.mark.parametrize("act", list(reference.ACTIVATION_CODES))
def test_forward_then_backward_gives_the_derivative(backend, dtype, act):
    """act_bwd on bias_act_fwd's output (bias_act_fwd_keep's kept z for the activations that
    read it) is f'(z), checked against the derivative from z."""
    rng = np.random.default_rng(5)
    z = rng.normal(0.0, 3.0, (23, 9)).astype(dtype)
    b = np.zeros(9, dtype)
    A = backend.asarray(z.copy())
    if act in reference.FROM_Z:  # the backward reads the pre-activation the forward keeps
        out = backend.asarray(np.zeros_like(z))
        backend.kernel("bias_act_fwd_keep", backend.asarray(b), 9,
                       reference.ACTIVATION_CODES[act], A, out)
    else:
        backend.kernel("bias_act_fwd", backend.asarray(b), 9, reference.ACTIVATION_CODES[act],
                       A)
    dZ = backend.asarray(np.ones_like(z))
    backend.kernel("act_bwd", A, reference.ACTIVATION_CODES[act], dZ)
    expected = reference.activation_derivative(act, z)
    reference.assert_close(backend.to_numpy(dZ), expected, dtype)


def test_softmax_xent_matches_logsumexp_at_extremes(backend, dtype):
    """The row kernel's loss and gradient from the logits alone, with huge and tiny rows; row k
    of the first 11 peaks at 1e4 in column k, so a row maximum that skips any column (the last
    one included) overflows exp."""
    rng = np.random.default_rng(8)
    z = rng.normal(0.0, 5.0, (29, 11)).astype(dtype)
    z[np.arange(11), np.arange(11)] = 1e4
    z[13, 4], z[17] = -1e4, -88.7
    labels = rng.integers(0, 11, 29)
    loss, dZ = backend.empty(29, dtype), backend.empty(z.shape, dtype)
    backend.kernel("softmax_xent", backend.asarray(z), backend.asarray(labels.astype(dtype)),
                   backend.asarray(np.ones(29, dtype)), 11, 1.0, loss, dZ)
    row_loss, grad = reference.softmax_cross_entropy(z, labels)
    reference.assert_close(backend.to_numpy(loss), row_loss, dtype, scale=2)
    reference.assert_close(backend.to_numpy(dZ), grad, dtype, scale=2)


def _mse_args(backend, dtype, n=10):
    return [backend.asarray(np.ones(n, dtype)), backend.asarray(np.zeros(n, dtype)),
            backend.asarray(np.ones(n, dtype)), 1, 0.5, backend.empty(n, dtype),
            backend.empty(n, dtype)]


def _replace(args, index, value):
    return [value if i == index else a for i, a in enumerate(args)]


BAD_ARGUMENTS = [
    # (description, position, make the bad value, error type, words the message must contain)
    ("int array", 0, lambda be, dt: be.asarray(np.ones(10, np.int32)), TypeError,
     ["'Z'", "int32"]),
    ("int output", 6, lambda be, dt: be.asarray(np.ones(10, np.int64)), TypeError,
     ["'dZ'", "int64"]),
    ("mixed dtypes", 1, lambda be, dt: be.asarray(np.ones(10, _other(dt))), TypeError,
     ["'Y'", "expected dtype {dtype}, got {other}"]),
    ("non-contiguous", 0, lambda be, dt: be.asarray(np.ones(20, dt))[::2], ValueError,
     ["'Z'", "contiguous"]),
    ("list input", 0, lambda be, dt: [1.0] * 10, TypeError, ["'Z'", "list"]),
    ("list middle", 1, lambda be, dt: [1.0] * 10, TypeError, ["'Y'", "list"]),
    ("list last", 6, lambda be, dt: [1.0] * 10, TypeError, ["'dZ'", "list"]),
    ("short output", 5, lambda be, dt: be.empty(9, dt), ValueError, ["'loss'", "10", "9"]),
    ("short input", 1, lambda be, dt: be.zeros(9, dt), ValueError, ["'Y'", "10", "9"]),
    ("long input", 0, lambda be, dt: be.zeros(11, dt), ValueError, ["'Z'", "10", "11"]),
    ("short weights", 2, lambda be, dt: be.zeros(9, dt), ValueError,
     ["'W'", "10 elements (n / n_cols), got 9"]),
    ("array as scalar", 4, lambda be, dt: be.asarray(np.ones(1, dt)), TypeError, ["'scale'"]),
    ("None as array", 1, lambda be, dt: None, TypeError, ["'Y'", "NoneType"]),
]


def _other(dtype):
    return np.float32 if np.dtype(dtype) == np.float64 else np.float64


@pytest.mark.parametrize("bad", BAD_ARGUMENTS, ids=lambda bad: bad[0])
def test_kernel_argument_errors_name_the_argument(backend, dtype, bad):
    _, position, make, error, words = bad
    args = _replace(_mse_args(backend, dtype), position, make(backend, dtype))
    with pytest.raises(error) as raised:
        backend.kernel("mse", *args)
    for word in words:
        word = word.format(dtype=dtype, other=np.dtype(_other(dtype)))
        assert word in str(raised.value), (word, str(raised.value))


def test_kernel_wrong_argument_count_names_the_signature(backend):
    args = _mse_args(backend, np.float64)
    with pytest.raises(TypeError,
                       match=r"mse\(Z, Y, W, n_cols, scale, loss, dZ\): expected 7 .* got 6"):
        backend.kernel("mse", *args[:6])


def _softmax_args(backend, dtype, rows=3, cols=4):
    z = backend.zeros(rows * cols, dtype)
    return [z, backend.zeros(rows, dtype), backend.zeros(rows, dtype), cols, 1.0,
            backend.empty(rows, dtype), backend.empty(rows * cols, dtype)]


@pytest.mark.parametrize("position, value, words", [
    (1, lambda be, dt: be.zeros(2, dt), ["'labels'", "3 elements (n / n_cols), got 2"]),
    (2, lambda be, dt: be.zeros(4, dt), ["'W'", "3 elements (n / n_cols), got 4"]),
    (5, lambda be, dt: be.zeros(4, dt), ["'loss'", "got 4"]),
    (3, lambda be, dt: 5, ["'n_cols'", "positive divisor of n=12, got 5"]),
    (3, lambda be, dt: 0, ["'n_cols'", "got 0"]),
])
def test_kernel_checks_declared_row_sizes(backend, dtype, position, value, words):
    args = _replace(_softmax_args(backend, dtype), position, value(backend, dtype))
    with pytest.raises(ValueError) as raised:
        backend.kernel("softmax_xent", *args)
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))


def test_control_array_and_tables_are_size_checked(backend, dtype):
    g, p = backend.zeros(6, dtype), backend.zeros(6, dtype)
    ctrl = backend.xp.zeros(8, dtype=np.int64)
    no_w = backend.xp.zeros(0, dtype=np.uint16)
    with pytest.raises(ValueError, match=r"'ctrl': expected 8 elements \(8\), got 7"):
        backend.kernel("sgd_step", g, backend.zeros(3, dtype), 3, 0.0, 0.0, 0.0, 0, 0,
                       ctrl[:7], p, p, no_w)
    with pytest.raises(ValueError, match=r"'lrs': expected 4 elements \(n_lrs\), got 3"):
        backend.kernel("sgd_step", g, backend.zeros(3, dtype), 4, 0.0, 0.0, 0.0, 0, 0, ctrl, p,
                       p, no_w)
    with pytest.raises(TypeError, match=r"'ctrl': expected dtype int64, got"):
        backend.kernel("sgd_step", g, backend.zeros(3, dtype), 3, 0.0, 0.0, 0.0, 0, 0,
                       backend.zeros(8, dtype), p, p, no_w)
    with pytest.raises(ValueError, match=r"'w': expected 6 elements \(n \* working\), got 0"):
        backend.kernel("sgd_step", g, backend.zeros(3, dtype), 3, 0.0, 0.0, 0.0, 0, 1, ctrl, p,
                       p, no_w)
    with pytest.raises(ValueError, match=r"'record': expected 10 elements \(n_steps \* 2\)"):
        backend.kernel("step_end", backend.zeros(1, dtype), 5, 1, ctrl, backend.zeros(9, dtype))


def test_bias_must_have_n_cols_elements(backend, dtype):
    Z = backend.zeros(12, dtype)
    with pytest.raises(ValueError, match=r"'b': expected 4 elements \(n_cols\), got 3"):
        backend.kernel("bias_act_fwd", backend.zeros(3, dtype), 4, 1, Z)


def test_unknown_kernel_lists_the_choices(backend):
    with pytest.raises(ValueError, match=r"kernel: expected one of \[.*'adam_step'.*got 'nope'"):
        backend.kernel("nope", backend.asarray(np.ones(3)))


def test_kernel_accepts_numpy_scalars_and_leaves_inputs_alone(backend, dtype):
    args = _mse_args(backend, dtype)
    args[4] = np.float64(0.5)
    backend.kernel("mse", *args)
    assert (backend.to_numpy(args[0]) == 1).all() and (backend.to_numpy(args[1]) == 0).all()
    reference.assert_close(backend.to_numpy(args[6]), np.ones(10), dtype)


def test_kernel_scalar_errors_name_the_argument(backend):
    A, dZ = backend.asarray(np.ones(4)), backend.asarray(np.ones(4))
    with pytest.raises(TypeError, match="act_bwd argument 'act': expected an integer, got float"):
        backend.kernel("act_bwd", A, 1.5, dZ)
    args = _mse_args(backend, np.float64)
    with pytest.raises(TypeError, match="mse argument 'scale': expected a real number, got str"):
        backend.kernel("mse", *_replace(args, 4, "0.5"))


def test_bce_soft_labels_near_saturation(backend, dtype):
    """max(z, 0) - z y must not cancel when y is near 1 and z is large (or the reverse)."""
    z = np.array([1e4, 88.7, -88.7, 20.0, -1e4], dtype)
    y = np.array([0.9999, 0.99999, 1e-5, 0.999, 1e-4], dtype)
    w = np.ones(5, dtype)
    args = [backend.asarray(z), backend.asarray(y), backend.asarray(w), 1, 1.0,
            backend.empty(5, dtype), backend.empty(5, dtype)]
    backend.kernel("bce_logits", *args)
    expected = reference.bce_logits(z, y, w, 1, 1.0)
    reference.assert_close(backend.to_numpy(args[5]), expected["loss"], dtype)
    reference.assert_close(backend.to_numpy(args[6]), expected["dZ"], dtype)


@pytest.mark.parametrize("case, dtype", CASE_DTYPES, ids=CASE_DTYPE_IDS)
def test_twins_give_identical_bits_on_any_thread_count(case, dtype):
    """The CPU backend may run a kernel on one thread or all (and two Python threads train
    side by side): every twin must give the same bits either way, on sizes that span several
    SIMD remainders and prange blocks."""
    import numba
    from forced_threads import ForcedThreads

    from gpunn.backends.cpu import set_numba_threads

    backend = ForcedThreads(True)  # all threads at any size
    # 9192 elements: two chunks and a bit; split in two halves, 4596 is no multiple of the
    # SIMD width, so without fixed chunks the halves' remainders fall on other elements.
    args = case.args(Inputs(np.random.default_rng(3), dtype), 24, 383)
    results = []
    previous = set_numba_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        for threads in (numba.config.NUMBA_NUM_THREADS, 1):
            numba.set_num_threads(threads)
            copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            spec = kernel_specs()[case.kernel]
            backend._launch(spec, backend._convert_args(spec, copies))
            results.append([a for a in copies if isinstance(a, np.ndarray)])
    finally:
        numba.set_num_threads(previous)
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second, err_msg=case.id)

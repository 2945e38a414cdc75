"""The Numba twins at the edges the kernel table's shapes do not reach.

Written for the mutants of kernels/*.py that survived tests/test_kernels.py (mutmut with
NUMBA_DISABLE_JIT=1, benchmarks/MUTATION.md): inputs over several of a twin's fixed blocks
(the table stays inside one, where a block loop over ``range(hi)`` gives the same numbers), the
first step of an epoch, a NaN rounded to TF32, and the dropout generator's spans and its
threshold, each against its reference or its scalar definition.

Then for the survivors of the whole twins set (benchmarks/MUTATION.md, "twins"): the update
kernels' learning rate at table entry 0 and past the table; a held element in an early block
with a clean last block (BAD_UPDATE counts every block); optimizer state flushed to exactly 0
below the smallest normal number and kept at it; SGD's first momentum step and eps inside the
square root on the bfloat16 working-copy paths; RMSprop holding an overflowing update; NaN and
inf rounded to bfloat16 (bits and the CPU backend's float32 storage); gather_rows at the edges
of its order (empty, one row, wrapping at its end, rows outside src); softmax_xent's
out-of-range label; sum_partials over several blocks of partials; LayerNorm rows of every
length mod the 8 lanes and parameter gradients over several column blocks; dropout's kept
element at the threshold in either half of an output; ``activate`` for every code.

Each test that launches a kernel takes the ``backend`` fixture: the same edges hold the CUDA
kernels (cuda-emulated, the host build; a GPU where there is one) to the same references.
"""

import importlib
import inspect

import numpy as np
import pytest
import reference
from gpunn.kernels import MODULES
from gpunn.kernels.activations import activate
from gpunn.kernels.clip import PARTIALS_PER_BLOCK
from gpunn.kernels.config import BLOCK
from gpunn.kernels.counter_rng import apply_dropout, apply_dropout_into, dropout_factor, mix64
from gpunn.kernels.norm import PARAM_COLUMNS
from kernel_cases import (
    CASES,
    Inputs,
    KernelCase,
    _adam,
    _ctrl,
    _layernorm_bwd,
    _layernorm_bwd_params,
    _layernorm_fwd,
    _lrs,
    _momentum,
    _rmsprop,
    _sgd,
    _subnormal_state,
    _working_copy,
    at_the_largest,
    check_case,
    run_on_backend,
)
from reference_precision import round_to_mantissa

from gpunn.optim import get_optimizer

ROWS, COLS = 3, (2 * BLOCK + 517) // 3 + 1  # two blocks and part of a third


def _is_blocked(kernel):
    """Whether the twin loops over fixed blocks (kernels/config.py n_blocks), read from it."""
    for module in MODULES:
        twin = getattr(importlib.import_module(f"gpunn.kernels.{module}"), kernel, None)
        if twin is not None:
            return "n_blocks(" in inspect.getsource(getattr(twin, "py_func", twin))
    raise LookupError(kernel)


# The weighted loss rows are left out: their reference's atol is not scaled by the row weight
# (250), which near-saturated elements exceed once there are thousands; the unweighted rows
# run the same block loop.
BLOCKED = [case for case in CASES if _is_blocked(case.kernel) and "weighted" not in case.variant]


@pytest.mark.parametrize("case", BLOCKED, ids=lambda case: case.id)
def test_a_blocked_twin_over_several_blocks_matches_its_reference(backend, case):
    assert ROWS * COLS > 2 * BLOCK
    check_case(backend, case, Inputs(np.random.default_rng(7), case.dtypes[0]), ROWS, COLS)


def test_the_first_step_of_an_epoch_is_recorded(backend):
    def first_step(inp, rows, cols):
        return (np.array([2.5], inp.dtype), 4, 1, _ctrl(t=5, k=0), inp.normal(8))

    case = KernelCase("step_end", "first step", first_step)
    check_case(backend, case, Inputs(np.random.default_rng(3), np.dtype(np.float32)), 1, 1)


def test_a_signaling_nan_rounds_to_tf32_as_the_quiet_nan_of_the_same_payload(backend):
    bits = np.array([0x7F800001, 0xFF800003, 0x7FC00000], np.uint32)
    x = backend.asarray(bits.view(np.float32).copy())
    backend.kernel("round_tf32", x)
    np.testing.assert_array_equal(backend.to_numpy(x).view(np.uint32), bits | 0x00400000)


def _factors(key, first, n, below, scale):
    """The scalar definition: each element's factor by itself."""
    return np.array([dropout_factor(key, first + j, below, scale) for j in range(n)],
                    np.float32)


@pytest.mark.parametrize("first", range(4))
@pytest.mark.parametrize("n", [*range(6), 511, 512, 513, 1024, 1025])
def test_dropout_spans_of_any_start_and_length_match_the_scalar_definition(first, n):
    """Pairs in the middle, a lone element at either end, empty spans (nothing touched), and
    spans as long as a row or a block of a kernel (odd and even lengths)."""
    key, below, scale = np.uint64(12345), 2**31, np.float32(2.0)
    x = np.arange(1, n + 1, dtype=np.float32)
    expected = x * _factors(key, first, n, below, scale)
    y = np.full(n, -7.0, np.float32)
    apply_dropout_into(key, first, below, scale, x, y)
    np.testing.assert_array_equal(y, expected)
    apply_dropout(key, first, below, scale, x)
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("p", [1 - 2.0**-34, 1 - 2.0**-32])
def test_a_threshold_at_or_past_32_bits_drops_every_element(p):
    """p within 2^-33 of 1 rounds the threshold to 2^32, above every 32-bit value: all dropped
    (a compare in 32 bits would wrap it to 0 and keep all)."""
    key, below, scale = np.uint64(7), int(round(p * 2**32)), np.float32(1 / (1 - p))
    x = np.arange(1, 1030, dtype=np.float32)
    expected = x * _factors(key, 3, x.size, below, scale)
    assert not expected.any() or below < 2**32
    y = np.full_like(x, -7.0)
    apply_dropout_into(key, 3, below, scale, x, y)
    np.testing.assert_array_equal(y, expected)
    apply_dropout(key, 3, below, scale, x)
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("element", [0, 1], ids=["low_half", "high_half"])
def test_an_element_whose_bits_equal_the_threshold_is_kept(element):
    """Kept means its 32 bits >= the threshold: at equality too, in the paired loop, for the
    element of either half of an output."""
    key = np.uint64(99)
    state = key + np.uint64(0x9E3779B97F4A7C15)  # the first output's state (element 0 and 1)
    bits = int(mix64(state) >> np.uint64(32 * element) & np.uint64(0xFFFFFFFF))
    x = np.ones(4, np.float32)
    apply_dropout(key, 0, bits, np.float32(3.0), x)
    assert x[element] == 3.0
    np.testing.assert_array_equal(x, _factors(key, 0, 4, bits, np.float32(3.0)))


# --- the second run's survivors (the whole twins set) -----------------------------------------

def _optimizer_at(name, hyperparameters, t=3, k=2, working=0):
    """kernel_cases' ``_optimizer`` row with the learning rate at table entry ``k``: the
    others visibly wrong (7.0), and ``k`` = 5 (the table's size) past its end (lr 0)."""
    optimizer = get_optimizer(name, **hyperparameters)

    def make(inp, rows, cols):
        n = rows * cols
        states = [np.abs(inp.normal(n, 0.1)) for _ in optimizer.kernel_states()]
        return (inp.normal(n), _lrs(inp, hyperparameters["lr"], k=min(k, 4)), 5,
                *optimizer.scalars(), working, _ctrl(t=t, k=k), inp.normal(n), *states,
                _working_copy(inp, n, working))

    return KernelCase(optimizer.kernel, f"{name}-t{t}-k{k}-working{working}", make,
                      bool(working))


UPDATES = [("sgd", {"lr": 0.05, "momentum": 0.9}), ("sgd", {"lr": 0.05}),
           ("momentum", {"lr": 0.1}), ("rmsprop", {"lr": 0.01}), ("adam", {"lr": 0.01})]
UPDATE_IDS = ["sgd_momentum", "sgd", "momentum", "rmsprop", "adam"]


@pytest.mark.parametrize("k", [0, 5], ids=["first_entry", "past_the_table"])
@pytest.mark.parametrize("name, hyperparameters", UPDATES, ids=UPDATE_IDS)
def test_the_learning_rate_is_the_tables_entry_k_or_zero_past_it(backend, name, hyperparameters, k):
    """lr = lrs[k] for 0 <= k < n_lrs, entry 0 included; 0 past the table's end (a step after
    the planned ones moves nothing, and its state still updates)."""
    case = _optimizer_at(name, hyperparameters, k=k)
    for dtype in case.dtypes:
        check_case(backend, case, Inputs(np.random.default_rng(5), dtype), 3, 7)


def _nonfinite_in_the_first_block(case):
    """``case``'s inputs with gradient 0 at the float's largest value and lr 16: element 0's
    update (or squared gradient) overflows, every other element's stays finite."""
    def make(inp, rows, cols):
        args = list(case.make(inp, rows, cols))
        args[0][0] = np.finfo(inp.dtype).max
        args[1] = _lrs(inp, 16.0)
        return tuple(args)

    return KernelCase(case.kernel, f"{case.variant}-bad_first", make, case.float32_only)


@pytest.mark.parametrize("working", [0, 1])
@pytest.mark.parametrize("name, hyperparameters", UPDATES, ids=UPDATE_IDS)
def test_a_held_element_in_an_early_block_sets_bad_update(backend, name, hyperparameters, working):
    """BAD_UPDATE counts the held elements of every block: one in the first of three blocks,
    none in the last, still sets it (and that element keeps its values)."""
    case = _nonfinite_in_the_first_block(_optimizer_at(name, hyperparameters, working=working))
    assert ROWS * COLS > 2 * BLOCK
    check_case(backend, case, Inputs(np.random.default_rng(11), np.float32), ROWS, COLS)


# (kernel, its row, the indices of its state arrays): states decaying by 0.9 (or 0.999).
SUBNORMAL_STATE = [("sgd_step", _sgd(0.9, 0.0, 0.0, 0, 3), (10,)),
                   ("momentum_step", _momentum(0.9, 1, 2), (8,)),
                   ("rmsprop_step", _rmsprop(0.0, 0), (10,)),
                   ("adam_step", _adam(40, 0.0, 0.0, 0), (12, 13))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, make, states", SUBNORMAL_STATE,
                         ids=[k for k, _, _ in SUBNORMAL_STATE])
def test_no_optimizer_state_is_stored_subnormal(backend, kernel, make, states, dtype):
    """State that decays below the dtype's smallest normal number is stored as 0, exactly (the
    reference's tolerance cannot tell a subnormal from 0)."""
    tiny = np.finfo(dtype).tiny
    case = KernelCase(kernel, "subnormal", _subnormal_state(make, states))
    args = case.args(Inputs(np.random.default_rng(2), dtype), 4, 9)
    decayed = [np.abs(args[i]) * 0.9 for i in states]
    assert all(((0 < d) & (d < tiny)).any() for d in decayed)  # would be subnormal
    actual = run_on_backend(backend, case, args)
    for name, value in actual.items():
        if name not in ("p", "ctrl", "w"):
            subnormal = (value != 0) & (np.abs(value) < tiny)
            assert not subnormal.any(), f"{kernel} {name}: {value[subnormal][:4]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_at_the_smallest_normal_is_kept_and_below_it_is_zero(backend, dtype):
    """SGD's first momentum step stores buf = g exactly: g at the smallest normal (either
    sign) stays, subnormal g becomes 0 (the flush compares with <, not <=)."""
    tiny = np.finfo(dtype).tiny
    g = np.array([tiny, -tiny, tiny / 2, -tiny * 0.75, 1.0], dtype)
    p, buf = np.ones(5, dtype), np.full(5, 3.0, dtype)
    p_dev, buf_dev, ctrl = backend.asarray(p), backend.asarray(buf), backend.asarray(_ctrl())
    backend.kernel("sgd_step", backend.asarray(g), backend.asarray(np.array([0.5], dtype)), 1,
                   0.9, 0.0, 0.0, 0, 0, ctrl, p_dev, buf_dev, np.zeros(0, np.uint16))
    np.testing.assert_array_equal(backend.to_numpy(buf_dev), np.array([tiny, -tiny, 0, 0, 1]))
    np.testing.assert_array_equal(backend.to_numpy(p_dev), np.array([1, 1, 1, 1, 0.5]))


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_sgds_first_momentum_step_with_a_working_copy_takes_the_gradient(backend, dampening):
    """At t = 0, buf = d (PyTorch ignores dampening and the old buffer then), on the bfloat16
    working-copy path too."""
    case = _optimizer_at("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": dampening}, t=0,
                         working=1)
    check_case(backend, case, Inputs(np.random.default_rng(4), np.float32), 3, 7)


def _eps_matters(make, i_state):
    """The first step from zero state with gradients of 1e-6: v_hat is 1e-12, far below eps
    (1e-8), so sqrt(v + eps) and sqrt(v) + eps give updates 100 times apart."""
    def small(inp, rows, cols):
        args = list(make(inp, rows, cols))
        args[0][:] = np.where(inp.rng.random(rows * cols) < 0.5, -1e-6, 1e-6)
        args[1] = _lrs(inp, 0.1)
        for i in i_state:
            args[i][:] = 0
        return tuple(args)

    return small


EPS_IN_SQRT = [("rmsprop_step", lambda w: _eps_matters(_rmsprop(0.0, 1, working=w), (10,))),
               ("adam_step", lambda w: _eps_matters(_adam(1, 0.0, 0.0, 1, working=w), (12, 13)))]


@pytest.mark.parametrize("working", [0, 1])
@pytest.mark.parametrize("kernel, make", EPS_IN_SQRT, ids=[k for k, _ in EPS_IN_SQRT])
def test_eps_inside_the_square_root_on_every_path(backend, kernel, make, working):
    case = KernelCase(kernel, f"eps_in_sqrt-working{working}", make(working), bool(working))
    check_case(backend, case, Inputs(np.random.default_rng(6), np.float32), 3, 7)


def _overflowing_rmsprop_update(working):
    """RMSprop's step beyond the dtype's range for every third element (v stays finite): p
    there at the largest finite value (bfloat16's with a working copy), the gradient -1 from
    v = 0, so the step lr / sqrt(1 - alpha) pushes outward; the others move far but stay
    finite. Those elements keep their parameter, v and working copy; BAD_UPDATE is set."""
    def make(inp, rows, cols):
        args = list(_rmsprop(0.0, 0, working=working)(inp, rows, cols))
        g, p, v = args[0], args[9], args[10]
        g[::3], v[::3] = -1.0, 0.0
        args[1] = _lrs(inp, at_the_largest(inp, p, working))
        return tuple(args)

    return make


@pytest.mark.parametrize("working", [0, 1])
def test_rmsprop_holds_an_overflowing_update(backend, working):
    case = KernelCase("rmsprop_step", "holds_an_overflowing_update",
                      _overflowing_rmsprop_update(working), bool(working))
    for dtype in case.dtypes:
        check_case(backend, case, Inputs(np.random.default_rng(8), dtype), 3, 7)


def _float32(bits):
    return np.array(bits, np.uint32).view(np.float32)


# NaNs (signalling and quiet, either sign, payloads high and low), infinities, the largest
# finite float32 (rounds up to inf) and one below bfloat16's largest (stays finite).
SPECIAL_BITS = [0x7F800001, 0xFF800003, 0x7FA00000, 0x7FC00001, 0xFFFFFFFF, 0x7F800000,
                0xFF800000, 0x7F7FFFFF, 0x7F7F0000, 0x00000001]


def _bf16_definition(bits):
    """The bfloat16 bits of float32 bits: a NaN keeps its upper half with the quiet bit set
    (0x40); any other value rounds to nearest even (reference_precision, on values)."""
    u = np.array(bits, np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    finite_or_inf = _float32(np.where(nan, 0, u))  # NaN never reaches the value reference
    rounded = round_to_mantissa(finite_or_inf, 7).astype(np.float32).view(np.uint32) >> 16
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


@pytest.mark.parametrize("storage", ["bits", "float32_values"])
def test_nan_and_inf_round_to_bf16_as_defined(backend, storage):
    """round_bf16 into uint16 bits and into the CPU backend's float32 storage of them
    (bf16_zeros): NaN stays NaN with the quiet bit, inf stays inf, the largest float32
    becomes inf."""
    x = backend.asarray(_float32(SPECIAL_BITS).copy())
    shape = (len(SPECIAL_BITS),)
    out = backend.bf16_zeros(shape) if storage == "float32_values" else np.zeros(shape, np.uint16)
    backend.kernel("round_bf16", x, out)
    np.testing.assert_array_equal(backend.to_numpy(out), _bf16_definition(SPECIAL_BITS))


def _gather_case(variant, order, n_pos, first, src_rows=5, rows=4, cols=3):
    """gather_rows over ``src_rows`` source rows with ``order``, positions first .. first +
    rows - 1 (k = 1, stride = first, offset 0); rows it does not fill keep their values."""
    def make(inp, r, c):
        return (inp.normal((src_rows, cols)), np.array(order, np.int64), _ctrl(k=1),
                src_rows * cols, len(order), n_pos, first, 0, cols, inp.normal((rows, cols)))

    return KernelCase("gather_rows", variant, make)


GATHERS = [
    _gather_case("empty_order", [], 10, 0),  # nothing to read: out untouched
    _gather_case("one_row_order", [3], 10, 2),  # every position wraps to order[0]
    _gather_case("at_the_orders_end", [4, 0, 2], 10, 2),  # positions 2..5: 3 wraps to 0
    _gather_case("rows_outside_src", [1, -1, 5, 6, 2], 10, 1),  # -1, 5, 6 not copied
]


@pytest.mark.parametrize("case", GATHERS, ids=lambda case: case.variant)
def test_gather_rows_at_the_orders_edges(backend, case):
    check_case(backend, case, Inputs(np.random.default_rng(9), np.float64), 1, 1)


def test_an_out_of_range_label_adds_no_label_term(backend):
    """softmax_xent of a row whose label is outside 0 .. n_cols - 1 (a padded row): loss =
    log(sum(exp(z - max z))), dZ = softmax(z), from the row alone (not its neighbours')."""
    rng = np.random.default_rng(10)
    n_cols, labels = 5, np.array([-1.0, 5.0, 2.0, 5.0])
    Z = rng.standard_normal((4, n_cols)) * 3
    loss, dZ = backend.empty(4, np.float64), backend.empty(Z.shape, np.float64)
    backend.kernel("softmax_xent", backend.asarray(Z.copy()), backend.asarray(labels),
                   backend.asarray(np.ones(4)), n_cols, 1.0, loss, dZ)
    shifted = Z - Z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1))
    softmax = np.exp(shifted - lse[:, None])
    expected_loss = lse - np.where(labels == 2, shifted[:, 2], 0.0)
    expected_dZ = softmax - np.where(np.arange(n_cols) == labels[:, None], 1.0, 0.0)
    reference.assert_close(backend.to_numpy(loss), expected_loss, np.float64)
    reference.assert_close(backend.to_numpy(dZ), expected_dZ, np.float64)


@pytest.mark.parametrize("square", [1, 0], ids=["squares", "sums"])
@pytest.mark.parametrize("n", [1023, 2500], ids=lambda n: f"{n}_partials")
def test_sum_partials_over_several_blocks_of_partials(backend, n, square):
    """More partial sums than one prange block holds (PARTIALS_PER_BLOCK), and a count one
    short of a block's multiple."""
    assert 1023 % PARTIALS_PER_BLOCK == PARTIALS_PER_BLOCK - 1 and 2500 > 2 * PARTIALS_PER_BLOCK
    case = KernelCase("sum_partials", f"{n}", lambda inp, rows, cols: (
        inp.normal(rows * cols + 17), rows * cols + 17, square, inp.unset(cols)))
    check_case(backend, case, Inputs(np.random.default_rng(12), np.float32), 3, n)


LAYERNORM = [KernelCase("layernorm_fwd", "rows", _layernorm_fwd(False)),
             KernelCase("layernorm_bwd", "plain", _layernorm_bwd(0))]


@pytest.mark.parametrize("cols", range(8, 24))
@pytest.mark.parametrize("case", LAYERNORM, ids=lambda case: case.kernel)
def test_layernorm_rows_of_every_length_mod_the_lane_count(backend, case, cols):
    """Row sums run in 8 lanes and add the last cols % 8 terms one per lane: every remainder,
    after a whole pass of the lanes."""
    check_case(backend, case, Inputs(np.random.default_rng(cols), np.float32), 3, cols)


def test_layernorm_parameter_gradients_over_several_column_blocks(backend):
    cols = 2 * PARAM_COLUMNS + 7
    case = KernelCase("layernorm_bwd_params", "columns", _layernorm_bwd_params)
    for dtype in (np.float32, np.float64):
        check_case(backend, case, Inputs(np.random.default_rng(13), dtype), 5, cols)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(reference.ACTIVATION_CODES))
def test_activate_is_each_activation(name, dtype):
    """The per-element f of the generic loops, for every code: its sigmoid and tanh branches
    are reached by no kernel today (those rows call sigmoid and tanh directly)."""
    x = np.array([-7.5, -1.25, -0.0, 0.5, 3.0], dtype)
    actual = [activate(v, reference.ACTIVATION_CODES[name]) for v in x]
    reference.assert_close(actual, reference.activation(name, x), dtype)

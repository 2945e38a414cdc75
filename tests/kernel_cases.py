"""The kernel test table: one row per kernel variant, its random inputs and its reference.

Shared by test_kernels.py (fixed shapes through every backend), test_host_build.py (the ``.cu``
source launched directly), test_fuzz_kernels.py (hypothesis) and test_kernel_coverage.py
(every kernel in the ``.cu`` files has a row). A row's ``make(inputs, rows, cols)`` returns the
kernel's arguments in the twin's order as NumPy arrays and Python scalars; its reference is the
function of the same name in reference.py.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import reference
import reference_precision
from gpunn.kernels import U16_KINDS, kernel_specs

from gpunn import control
from gpunn.optim import get_optimizer

ACT = reference.ACTIVATION_CODES

# Shapes (rows, cols): size 1, odd sizes, sizes that are not multiples of the emulated block
# (32) and sizes above block * max_blocks (5 * 32 = 160), so grid-stride loops iterate.
SHAPES = [(1, 1), (1, 33), (5, 7), (3, 64), (17, 13), (41, 9)]


def extreme_values(dtype):
    """Inputs at the edge of the useful range: +-1e4, +-88.7 (exp overflow), zeros, subnormals."""
    sub = np.finfo(dtype).smallest_subnormal
    return [1e4, -1e4, 88.7, -88.7, 0.0, -0.0, float(sub), -float(sub), 3 * float(sub)]


class Inputs:
    """Random kernel inputs of one dtype; ``extreme`` sprinkles :func:`extreme_values` in."""

    def __init__(self, rng, dtype, extreme=False, special=None):
        self.rng = rng
        self.dtype = np.dtype(dtype)
        self.extreme = extreme
        self.special = extreme_values(self.dtype) if special is None else list(special)

    def normal(self, shape, scale=1.0):
        """Standard normal times ``scale``; with ``extreme``, about a third are special values."""
        x = self.rng.standard_normal(shape) * scale
        if self.extreme and self.special:
            hit = self.rng.random(shape) < 1 / 3
            x[hit] = self.rng.choice(self.special, size=int(hit.sum()))
        return x.astype(self.dtype)

    def uniform(self, shape, low=0.0, high=1.0):
        return self.rng.uniform(low, high, shape).astype(self.dtype)

    def unset(self, shape):
        """An output buffer filled with NaN: any element the kernel skips fails the test."""
        return np.full(shape, np.nan, dtype=self.dtype)

    def unset_bf16(self, shape):
        """A bfloat16 output filled with a NaN pattern, for the same reason."""
        return np.full(shape, 0xFFFF, dtype=np.uint16)

    def bf16(self, shape):
        """Random bfloat16 bit patterns: every sign, exponent (inf, NaN, subnormals) and digit.

        NaNs get the quiet bit: a signalling NaN raises NumPy's "invalid" warning when the
        comparison casts it to float64.
        """
        bits = self.rng.integers(0, 1 << 16, shape)
        nan = (bits & 0x7FFF) > 0x7F80
        return (bits | np.where(nan, 0x40, 0)).astype(np.uint16)

    def targets(self, shape):
        """BCE targets: soft labels in [0, 1]; with ``extreme``, a third are 0, 1 or near them."""
        y = self.rng.uniform(0.0, 1.0, shape)
        if self.extreme:
            hit = self.rng.random(shape) < 1 / 3
            y[hit] = self.rng.choice([0.0, 1.0, 0.9999, 1e-4], size=int(hit.sum()))
        return y.astype(self.dtype)


def assert_output(param, actual, expected, dtype, err_msg=""):
    """An output against its float64 reference: bfloat16 bits within a bfloat16 ulp, real
    arrays within the dtype's tolerance."""
    if param.kind == "out_u16":
        reference_precision.assert_bf16_close(actual, expected, err_msg=err_msg)
    else:
        reference.assert_close(actual, expected, dtype, err_msg=err_msg)


@dataclass(frozen=True)
class KernelCase:
    """One row: the kernel's name, a variant id and ``make(inputs, rows, cols) -> args``."""

    kernel: str
    variant: str
    make: Callable
    float32_only: bool = False  # it writes bfloat16 bits (kernels taking n of them always do)

    @property
    def id(self):
        return f"{self.kernel}-{self.variant}"

    @property
    def reference(self):
        return getattr(reference, self.kernel)

    @property
    def dtypes(self):
        """The dtypes the row runs in: float32 only if it passes bfloat16 bits (n of them)."""
        params = kernel_specs()[self.kernel].params
        if self.float32_only or any(p.kind in U16_KINDS and p.size == ("n", None, None)
                                    for p in params):
            return (np.dtype(np.float32),)
        return (np.dtype(np.float32), np.dtype(np.float64))

    def outputs(self):
        """Names of the arguments the kernel writes."""
        return [p.name for p in kernel_specs()[self.kernel].params if p.writes]

    def args(self, inputs, rows, cols):
        """The kernel's arguments, real scalars rounded to the dtype as the backend passes them.

        The reference then sees the same scalars as the kernel: in float32, beta2 = 0.999
        arrives as 0.99899995 and 1 - beta2 is 5e-5 larger (relative) than 0.001.
        """
        params = kernel_specs()[self.kernel].params
        return tuple(float(inputs.dtype.type(a)) if p.kind == "real" else a
                     for p, a in zip(params, self.make(inputs, rows, cols)))


def writes_bf16(kernel):
    """Whether ``kernel`` writes bfloat16 bits (an ``unsigned short*`` output)."""
    return any(p.kind == "out_u16" for p in kernel_specs()[kernel].params)


def in_bf16_storage(backend, kernel, args):
    """``args`` with each bfloat16 output moved into ``backend.bf16_zeros`` (same bits): on
    the CPU the upper halves of float32 storage, which the twin writes as values."""
    moved = []
    for param, value in zip(kernel_specs()[kernel].params, args):
        if param.kind == "out_u16":
            bits = backend.bf16_zeros(value.shape)
            bits[...] = backend.asarray(value)
            value = bits
        moved.append(value)
    return tuple(moved)


def _bias_act(act):
    def make(inp, rows, cols):
        return inp.normal(cols), cols, ACT[act], inp.normal((rows, cols), 3.0)

    return make


def _act_bwd(act):
    def make(inp, rows, cols):
        z = inp.normal((rows, cols), 3.0)
        # The layer output, or z itself for the activations whose backward reads it.
        A = z if act in reference.FROM_Z else reference.activation(act, z).astype(inp.dtype)
        return A, ACT[act], inp.normal((rows, cols))

    return make


def _bias_act_bf16(act):
    def make(inp, rows, cols):
        return (inp.normal(cols), cols, ACT[act], inp.normal((rows, cols), 3.0),
                inp.unset_bf16((rows, cols)))

    return make


def _act_bwd_bf16(act):
    def make(inp, rows, cols):
        A, act_code, dZ = _act_bwd(act)(inp, rows, cols)
        return A, act_code, dZ, inp.unset_bf16((rows, cols))

    return make


def _bias_act_keep(act):
    def make(inp, rows, cols):
        return (inp.normal(cols), cols, ACT[act], inp.normal((rows, cols), 3.0),
                inp.unset((rows, cols)))

    return make


def _bias_act_keep_bf16(act):
    def make(inp, rows, cols):
        return _bias_act_keep(act)(inp, rows, cols) + (inp.unset_bf16((rows, cols)),)

    return make


# LayerNorm's eps (PyTorch's default), as the layers pass it.
LN_EPS = 1e-5


def _layernorm_input(inp, rows, cols):
    """Rows with an offset and a spread of their own, so mean and variance both matter."""
    return (inp.normal((rows, cols), 2.0) + inp.normal((rows, 1), 3.0)).astype(inp.dtype)


def _layernorm_fwd(half):
    def make(inp, rows, cols):
        Y = inp.unset_bf16((rows, cols)) if half else inp.unset((rows, cols))
        return (_layernorm_input(inp, rows, cols), inp.normal(cols), inp.normal(cols), cols,
                LN_EPS, inp.unset(rows), inp.unset(rows), Y)

    return make


def _layernorm_bwd(residual):
    def make(inp, rows, cols):
        X = _layernorm_input(inp, rows, cols)
        out = reference.layernorm_fwd(X, np.ones(cols), np.zeros(cols), cols, LN_EPS,
                                      np.empty(rows), np.empty(rows))
        # gamma and dY never extreme: dX sums to zero over a row, so its entries are
        # differences of terms of size rstd |gamma dY|, and a huge one would cancel to noise.
        return (X, inp.uniform(cols, -2.0, 2.0), out["mean"].astype(inp.dtype),
                out["rstd"].astype(inp.dtype), inp.uniform((rows, cols), -2.0, 2.0),
                inp.normal((rows, cols)), cols, residual, inp.unset((rows, cols)))

    return make


def _layernorm_bwd_params(inp, rows, cols):
    X = _layernorm_input(inp, rows, cols)
    out = reference.layernorm_fwd(X, np.ones(cols), np.zeros(cols), cols, LN_EPS,
                                  np.empty(rows), np.empty(rows))
    return (X, out["mean"].astype(inp.dtype), out["rstd"].astype(inp.dtype),
            inp.normal((rows, cols)), rows, inp.unset(cols), inp.unset(cols))


def _bias_act_residual(act, half=False):
    def make(inp, rows, cols):
        extra = (inp.unset_bf16((rows, cols)),) if half else ()
        # R uniform, never extreme: R + f(z) of opposite huge values cancels in any float
        # format, and the float64 reference would hold the kernel to digits it cannot have.
        return (inp.normal(cols), inp.uniform((rows, cols), -3.0, 3.0), cols, ACT[act],
                inp.normal((rows, cols), 3.0), inp.unset((rows, cols))) + extra

    return make


def _residual_act_bwd(act, half=False):
    def make(inp, rows, cols):
        S, act_code, dA = _act_bwd(act)(inp, rows, cols)
        extra = (inp.unset_bf16((rows, cols)),) if half else ()
        return (S, dA, act_code, inp.unset((rows, cols))) + extra

    return make


def _residual_add(inp, rows, cols):
    """B uniform, never extreme (as bias_act_residual's R)."""
    return inp.normal((rows, cols)), inp.uniform((rows, cols), -3.0, 3.0), inp.unset((rows, cols))


# Dropout variants: (p, seed, layer, t, offset). A seed past 2^63 arrives as its 64 bits
# (negative int64); offset is where a rank's shard starts in the batch.
DROPOUT_VARIANTS = {"half": (0.5, 7, 1, 3, 0), "none": (0.0, 7, 1, 3, 0),
                    "most": (0.9, 2**64 - 5, 0, 10**12, 0), "shard": (0.25, 0, 3, 0, 1001)}


def _drop_scalars(inp, variant):
    p, seed, layer, t, offset = DROPOUT_VARIANTS[variant]
    seed = seed - 2**64 if seed >= 2**63 else seed
    return (_ctrl(t=t, k=1), seed, layer, offset, reference.drop_below(p), 1.0 / (1.0 - p))


def _bias_act_drop(act, variant="half", bf16=False):
    def make(inp, rows, cols):
        head = (inp.normal(cols), cols, ACT[act], *_drop_scalars(inp, variant),
                inp.normal((rows, cols), 3.0), inp.unset((rows, cols)))
        return head + (inp.unset_bf16((rows, cols)),) if bf16 else head

    return make


def _act_bwd_drop(act, variant="half", bf16=False):
    def make(inp, rows, cols):
        S, act_code, dZ = _act_bwd(act)(inp, rows, cols)
        head = (S, act_code, *_drop_scalars(inp, variant), dZ)
        return head + (inp.unset_bf16((rows, cols)),) if bf16 else head

    return make


def _residual_drop(act, variant="half", bf16=False):
    def make(inp, rows, cols):
        b, R, n_cols, code, Z, A, *half = _bias_act_residual(act, bf16)(inp, rows, cols)
        return (b, R, n_cols, code, *_drop_scalars(inp, variant), Z, A, *half)

    return make


def _residual_bwd_drop(act, variant="half", bf16=False):
    def make(inp, rows, cols):
        S, dA, code, dZ, *half = _residual_act_bwd(act, bf16)(inp, rows, cols)
        return (S, dA, code, *_drop_scalars(inp, variant), dZ, *half)

    return make


def _dropout_cases():
    rows = []
    for kernel, make in (("bias_act_fwd_drop", _bias_act_drop), ("act_bwd_drop", _act_bwd_drop),
                         ("bias_act_residual_drop", _residual_drop),
                         ("residual_act_bwd_drop", _residual_bwd_drop)):
        rows += [KernelCase(kernel, act, make(act)) for act in ACT]
        rows += [KernelCase(kernel, f"relu-{v}", make("relu", v)) for v in DROPOUT_VARIANTS
                 if v != "half"]
        rows += [KernelCase(f"{kernel}_bf16", act, make(act, bf16=True))
                 for act in ("sigmoid", "relu", "gelu")]
    return rows


def _round_bf16(inp, rows, cols):
    return inp.normal((rows, cols), 3.0), inp.unset_bf16((rows, cols))


def _bf16_to_f32(inp, rows, cols):
    return inp.bf16((rows, cols)), inp.unset((rows, cols))


def _round_tf32(inp, rows, cols):
    return (inp.normal((rows, cols), 3.0),)


def _row_weights(inp, rows, weighted):
    """Per-row loss weights: ones, or non-negative weights with a zero and a large one."""
    if not weighted:
        return np.ones(rows, inp.dtype)
    w = inp.uniform(rows, 0.0, 3.0)
    w[:: 3] = 0.0
    w[1:: 5] = 250.0
    return w


def _bce(weighted):
    def make(inp, rows, cols):
        return (inp.normal((rows, cols), 4.0), inp.targets((rows, cols)),
                _row_weights(inp, rows, weighted), cols, 1.0 / rows,
                inp.unset((rows, cols)), inp.unset((rows, cols)))

    return make


def _xent(weighted):
    def make(inp, rows, cols):
        Z = inp.normal((rows, cols), 4.0)
        labels = inp.rng.integers(0, cols, rows).astype(inp.dtype)
        return (Z, labels, _row_weights(inp, rows, weighted), cols, 1.0 / rows,
                inp.unset(rows), inp.unset((rows, cols)))

    return make


def _mse(weighted):
    def make(inp, rows, cols):
        return (inp.normal((rows, cols), 2.0), inp.normal((rows, cols), 2.0),
                _row_weights(inp, rows, weighted), cols, 1.0 / (rows * cols),
                inp.unset((rows, cols)), inp.unset((rows, cols)))

    return make


def _ctrl(t=0, k=0, bad=0, bad_update=0, halt=0):
    ctrl = np.zeros(control.CTRL_SIZE, np.int64)
    ctrl[[control.CTRL_T, control.CTRL_K, control.CTRL_BAD, control.CTRL_BAD_UPDATE,
          control.CTRL_HALT]] = t, k, bad, bad_update, halt
    return ctrl


def _lrs(inp, lr, k=2):
    """A learning-rate table whose entry k is lr and whose others would be visibly wrong."""
    table = np.full(5, 7.0, dtype=inp.dtype)
    table[k] = lr
    return table


def _working_copy(inp, n, working):
    """The bfloat16 working copy an update writes (working = 1) or an empty one."""
    return inp.unset_bf16(n) if working else np.zeros(0, np.uint16)


def _sgd(momentum, dampening, weight_decay, nesterov, t, working=0, **flags):
    def make(inp, rows, cols):
        n = rows * cols
        return (inp.normal(n), _lrs(inp, 0.05), 5, momentum, dampening, weight_decay, nesterov,
                working, _ctrl(t=t, k=2, **flags), inp.normal(n), inp.normal(n),
                _working_copy(inp, n, working))

    return make


def _momentum(beta, bias_correction, t, working=0):
    def make(inp, rows, cols):
        n = rows * cols
        return (inp.normal(n), _lrs(inp, 0.1), 5, beta, bias_correction, working,
                _ctrl(t=t, k=2), inp.normal(n), inp.normal(n, 0.1),
                _working_copy(inp, n, working))

    return make


def _rmsprop(weight_decay, eps_in_sqrt, working=0):
    def make(inp, rows, cols):
        n = rows * cols
        v = np.abs(inp.normal(n, 0.5))
        return (inp.normal(n), _lrs(inp, 0.01), 5, 0.9, 1e-8, weight_decay, eps_in_sqrt,
                working, _ctrl(t=4, k=2), inp.normal(n), v, _working_copy(inp, n, working))

    return make


def _adam(t, weight_decay, decoupled, eps_in_sqrt, k=2, working=0, **flags):
    def make(inp, rows, cols):
        n = rows * cols
        m, v = inp.normal(n, 0.1), np.abs(inp.normal(n, 0.1))
        return (inp.normal(n), _lrs(inp, 1e-3), 5, 0.9, 0.999, 1e-8, weight_decay, decoupled,
                eps_in_sqrt, working, _ctrl(t=t - 1, k=k, **flags), inp.normal(n), m, v,
                _working_copy(inp, n, working))

    return make


def _overflowing_update(momentum, working=0):
    """Every other gradient times a finite lr beyond the dtype's range (the others finite):
    those elements keep their parameter, momentum buffer and working copy, the others update,
    and BAD_UPDATE is set."""
    def make(inp, rows, cols):
        n = rows * cols
        g = inp.normal(n)
        g[::2] = np.finfo(inp.dtype).max / 4
        return (g, _lrs(inp, 16.0), 5, momentum, 0.0, 0.0, 0, working, _ctrl(t=3, k=2),
                inp.normal(n), inp.normal(n), _working_copy(inp, n, working))

    return make


def _overflowing_adam_update(working=0):
    """Adam's step beyond the dtype's range for every third element: p there at the largest
    finite value (of bfloat16 with a working copy, whose copy of a held p must stay finite) and
    its step, about 6 lr, pushing outward past the dtype's largest value; lr so large that the
    others move far but stay finite, with no product on the way overflowing. Those elements
    keep their parameter, moments and working copy, the others update, BAD_UPDATE is set."""
    def make(inp, rows, cols):
        args = list(_adam(3, 0.0, 0.0, 0, working=working)(inp, rows, cols))
        g, p, m, v = args[0], args[11], args[12], args[13]
        m[:] = np.copysign(m, g)  # no cancellation in m's average: lr scales its rounding
        g[::3], m[::3], v[::3] = -1.0, -1.0, 1e-4  # m_hat -3.7, sqrt(v_hat) 0.6: p grows
        args[1] = _lrs(inp, at_the_largest(inp, p, working))
        return tuple(args)

    return make


def at_the_largest(inp, p, working):
    """Every third ``p`` at the largest finite value (bfloat16's with a working copy, so the
    copy of a held ``p`` is finite), and the rate to push them past it: with a working copy
    lr = max / 100 (a step of about 1e37 reaches past float32's 3.4e38), else a step of a few
    ulps of the largest value; the other elements move far but stay finite."""
    big = np.finfo(inp.dtype)
    if working:
        p[::3] = np.array(0x7F7F0000, np.uint32).view(np.float32)  # bfloat16's largest
        return float(big.max) / 100
    p[::3] = big.max
    return float(big.max * big.eps * 8)


def _overflowing_average(inp, rows, cols):
    """Momentum's step lr v beyond the dtype's range for every other element (v itself, an
    average of finite values, stays finite): those are held, the others update."""
    args = list(_momentum(0.5, 0, 2)(inp, rows, cols))
    args[0][::2] = np.finfo(inp.dtype).max / 4
    args[1] = _lrs(inp, 16.0)
    return tuple(args)


def _overflowing_state(make, every=3):
    """Every ``every``-th gradient so large that its square overflows the dtype while the
    gradient and the new parameter stay finite (Adam's and RMSprop's v): those elements keep
    their previous parameter and state, the others update, and BAD_UPDATE is set."""
    def overflowing(inp, rows, cols):
        args = list(make(inp, rows, cols))
        args[0][::every] = np.finfo(inp.dtype).max ** 0.75
        return tuple(args)

    return overflowing


def _subnormal_state(make, i_state):
    """Every other gradient 0 and the state there between 0 and three times the smallest normal
    number: state that decays below it is stored as 0 (subnormal state slows CPU arithmetic)."""
    def subnormal(inp, rows, cols):
        args = list(make(inp, rows, cols))
        args[0][::2] = 0
        tiny = float(np.finfo(inp.dtype).tiny)
        for i in i_state:
            args[i][::2] = (tiny * inp.rng.uniform(0.0, 3.0, args[i][::2].shape)).astype(
                inp.dtype)
        return tuple(args)

    return subnormal


def _gather(inp, rows, cols):
    src_rows = 2 * rows + 1
    order = inp.rng.permutation(src_rows).astype(np.int64)
    return (inp.normal((src_rows, cols)), order, _ctrl(k=1), src_rows * cols, src_rows,
            src_rows, rows, 1, cols, inp.unset((rows, cols)))


def _gather_past_the_end(inp, rows, cols):
    """The last batch's positions from n_pos on leave their rows untouched."""
    src_rows = rows + 2
    order = inp.rng.permutation(src_rows).astype(np.int64)
    return (inp.normal((src_rows, cols)), order, _ctrl(k=1), src_rows * cols, src_rows,
            src_rows, rows, 0, cols, inp.normal((rows, cols)))


def _gather_wrapping(inp, rows, cols):
    """A streamed epoch's ring: positions past the order's end wrap to its start (p % n_order),
    those from n_pos on (the epoch's end) leave their rows untouched."""
    ring = rows + 1
    order = inp.rng.permutation(ring).astype(np.int64)
    return (inp.normal((ring, cols)), order, _ctrl(k=2), ring * cols, ring, 3 * rows - 1,
            rows, 0, cols, inp.normal((rows, cols)))


def _gather_bf16(make):
    """A gather_rows case with the bfloat16 copy of the batch as well (the rows it leaves
    alone keep their bits there too)."""
    def gather_bf16(inp, rows, cols):
        args = make(inp, rows, cols)
        return args + (inp.bf16((rows, cols)),)

    return gather_bf16


def _check(bad_at=None, total=1.5):
    def make(inp, rows, cols):
        g = inp.normal(rows * cols)
        if bad_at is not None:
            g[min(bad_at, g.size - 1)] = np.nan if bad_at % 2 else np.inf
        return np.array([total], inp.dtype), g, _ctrl(t=3, k=1)

    return make


def _step_end(halt_on_nonfinite, past_the_table=False, **flags):
    def make(inp, rows, cols):
        n_steps = rows + 2
        k = n_steps if past_the_table else rows
        return (np.array([2.5], inp.dtype), n_steps, halt_on_nonfinite,
                _ctrl(t=5, k=k, **flags), inp.normal(2 * n_steps))

    return make


def _optimizer(name, hyperparameters, t, working=0, **flags):
    """The update kernel of optimizer ``name`` as its class launches it: the scalars from
    ``scalars()``, the state arrays in ``kernel_states()`` order (nonnegative, as ``v`` is)."""
    optimizer = get_optimizer(name, **hyperparameters)

    def make(inp, rows, cols):
        n = rows * cols
        states = [np.abs(inp.normal(n, 0.1)) for _ in optimizer.kernel_states()]
        return (inp.normal(n), _lrs(inp, hyperparameters["lr"]), 5, *optimizer.scalars(),
                working, _ctrl(t=t, k=2, **flags), inp.normal(n), *states,
                _working_copy(inp, n, working))

    return make


# Every row of reference.OPTIMIZER_CASES in these situations: a new optimizer's kernel is
# covered by its row there.
_SITUATIONS = {"first_step": {"t": 0}, "later_step": {"t": 3},
               "skipped_when_bad": {"t": 3, "bad": 1}, "skipped_when_halted": {"t": 3, "halt": 1}}


def _optimizer_cases():
    return [KernelCase(get_optimizer(name, **kw).kernel,
                       f"{name}-{'-'.join(kw)}-{situation}", _optimizer(name, kw, **args),
                       bool(args.get("working")))
            for name, kw in reference.OPTIMIZER_CASES for situation, args in _SITUATIONS.items()]


def _axpy(inp, rows, cols):
    n = rows * cols
    return inp.normal(n), -0.05, inp.normal(n)


def _sum_partials(square, extra_partials=0):
    def make(inp, rows, cols):
        x = inp.normal(rows * cols)
        return x, x.size, square, inp.unset(cols + extra_partials)

    return make


def _clip_by_norm(ratio=None, sumsq=None):
    """g and the sum of its squares (or ``sumsq``), max_norm = ``ratio`` times its norm."""
    def make(inp, rows, cols):
        g = inp.normal(rows * cols)
        total = float(np.sum(g.astype(np.float64) ** 2)) if sumsq is None else sumsq
        max_norm = 1.0 if ratio is None else ratio * np.sqrt(total)
        return np.array([total], inp.dtype), max_norm, _ctrl(t=3, k=1), g

    return make


def _clip_by_value(nan=False):
    def make(inp, rows, cols):
        g = inp.normal(rows * cols, 3.0)
        if nan:
            g[::3] = np.nan
        return 1.25, g

    return make


CASES = (
    [KernelCase("bias_act_fwd", act, _bias_act(act)) for act in ACT]
    + [KernelCase("act_bwd", act, _act_bwd(act)) for act in ACT]
    + [KernelCase("bias_act_fwd_bf16", act, _bias_act_bf16(act)) for act in ACT]
    + [KernelCase("act_bwd_bf16", act, _act_bwd_bf16(act)) for act in ACT]
    + [KernelCase("bias_act_fwd_keep", act, _bias_act_keep(act)) for act in reference.FROM_Z]
    + [KernelCase("bias_act_fwd_keep_bf16", act, _bias_act_keep_bf16(act))
       for act in reference.FROM_Z]
    + _dropout_cases()
    + _optimizer_cases()
    + [
        KernelCase("bce_logits", "mean", _bce(False)),
        KernelCase("bce_logits", "weighted", _bce(True)),
        KernelCase("softmax_xent", "mean", _xent(False)),
        KernelCase("softmax_xent", "weighted", _xent(True)),
        KernelCase("mse", "mean", _mse(False)),
        KernelCase("mse", "weighted", _mse(True)),
        KernelCase("sgd_step", "plain", _sgd(0.0, 0.0, 0.0, 0, 3)),
        KernelCase("sgd_step", "weight_decay", _sgd(0.0, 0.0, 0.01, 0, 3)),
        KernelCase("sgd_step", "momentum_first", _sgd(0.9, 0.0, 0.0, 0, 0)),
        KernelCase("sgd_step", "momentum_dampening", _sgd(0.9, 0.3, 0.01, 0, 3)),
        KernelCase("sgd_step", "nesterov", _sgd(0.9, 0.0, 0.01, 1, 3)),
        KernelCase("sgd_step", "skipped_when_bad", _sgd(0.9, 0.0, 0.0, 0, 3, bad=1)),
        KernelCase("sgd_step", "skipped_when_halted", _sgd(0.0, 0.0, 0.0, 0, 3, halt=1)),
        KernelCase("sgd_step", "holds_an_overflowing_update", _overflowing_update(0.0)),
        KernelCase("sgd_step", "holds_an_overflowing_momentum_update", _overflowing_update(0.9)),
        KernelCase("sgd_step", "holds_an_overflowing_update_bf16",
                   _overflowing_update(0.9, working=1), True),
        KernelCase("momentum_step", "holds_an_overflowing_update", _overflowing_average),
        KernelCase("momentum_step", "plain", _momentum(0.9, 0, 0)),
        KernelCase("momentum_step", "bias_corrected", _momentum(0.9, 1, 2)),
        KernelCase("rmsprop_step", "torch", _rmsprop(0.0, 0)),
        KernelCase("rmsprop_step", "eps_in_sqrt_weight_decay", _rmsprop(0.01, 1)),
        KernelCase("adam_step", "first_step", _adam(1, 0.0, 0.0, 0)),
        KernelCase("adam_step", "eps_in_sqrt", _adam(7, 0.0, 0.0, 1)),
        KernelCase("adam_step", "l2", _adam(20, 0.01, 0.0, 0)),
        KernelCase("adam_step", "adamw", _adam(1000, 0.0, 0.01, 0)),
        KernelCase("adam_step", "lr_past_the_table", _adam(3, 0.0, 0.01, 0, k=5)),
        KernelCase("adam_step", "skipped_when_bad", _adam(3, 0.0, 0.0, 0, bad=1)),
        KernelCase("adam_step", "bf16_working_copy", _adam(3, 0.0, 0.01, 0, working=1), True),
        KernelCase("adam_step", "bf16_copy_skipped_when_bad",
                   _adam(3, 0.0, 0.0, 0, working=1, bad=1), True),
        KernelCase("sgd_step", "bf16_working_copy", _sgd(0.9, 0.0, 0.01, 1, 3, working=1), True),
        KernelCase("momentum_step", "bf16_working_copy", _momentum(0.9, 1, 2, working=1), True),
        KernelCase("rmsprop_step", "bf16_working_copy", _rmsprop(0.01, 0, working=1), True),
        KernelCase("adam_step", "holds_an_overflowing_update", _overflowing_adam_update()),
        KernelCase("adam_step", "holds_an_overflowing_update_bf16",
                   _overflowing_adam_update(working=1), True),
        KernelCase("adam_step", "holds_overflowing_state",
                   _overflowing_state(_adam(3, 0.0, 0.0, 0))),
        KernelCase("adam_step", "holds_overflowing_state_bf16",
                   _overflowing_state(_adam(3, 0.0, 0.0, 0, working=1)), True),
        KernelCase("rmsprop_step", "holds_overflowing_state", _overflowing_state(_rmsprop(0.0, 0))),
        KernelCase("adam_step", "flushes_subnormal_state",
                   _subnormal_state(_adam(40, 0.0, 0.0, 0), (12, 13))),
        KernelCase("adam_step", "flushes_subnormal_state_bf16",
                   _subnormal_state(_adam(40, 0.0, 0.0, 1, working=1), (12, 13)), True),
        KernelCase("rmsprop_step", "flushes_subnormal_state", _subnormal_state(
            _rmsprop(0.0, 0), (10,))),
        KernelCase("momentum_step", "flushes_subnormal_state", _subnormal_state(
            _momentum(0.9, 1, 2), (8,))),
        KernelCase("sgd_step", "flushes_subnormal_momentum", _subnormal_state(
            _sgd(0.9, 0.0, 0.0, 0, 3), (10,))),
        KernelCase("axpy", "step", _axpy),
        KernelCase("gather_rows", "batch", _gather),
        KernelCase("gather_rows", "past_the_end", _gather_past_the_end),
        KernelCase("gather_rows", "wrapping", _gather_wrapping),
        KernelCase("gather_rows_bf16", "batch", _gather_bf16(_gather), True),
        KernelCase("gather_rows_bf16", "past_the_end", _gather_bf16(_gather_past_the_end), True),
        KernelCase("gather_rows_bf16", "wrapping", _gather_bf16(_gather_wrapping), True),
        KernelCase("nonfinite_check", "finite", _check()),
        KernelCase("nonfinite_check", "nan_or_inf_gradient", _check(bad_at=4)),
        KernelCase("nonfinite_check", "last_gradient", _check(bad_at=10**9)),
        KernelCase("nonfinite_check", "inf_loss", _check(total=np.inf)),
        KernelCase("step_end", "applied", _step_end(1)),
        KernelCase("step_end", "nonfinite_halts", _step_end(1, bad=1)),
        KernelCase("step_end", "nonfinite_skipped", _step_end(0, bad=1)),
        KernelCase("step_end", "bad_update_halts", _step_end(0, bad_update=1)),
        KernelCase("step_end", "halted", _step_end(1, halt=1, bad=1)),
        KernelCase("step_end", "past_the_table", _step_end(1, past_the_table=True)),
        KernelCase("round_bf16", "normal", _round_bf16),
        KernelCase("bf16_to_f32", "all_bits", _bf16_to_f32),
        KernelCase("round_tf32", "normal", _round_tf32),
        KernelCase("layernorm_fwd", "rows", _layernorm_fwd(False)),
        KernelCase("layernorm_fwd_bf16", "rows", _layernorm_fwd(True)),
        KernelCase("layernorm_bwd", "plain", _layernorm_bwd(0)),
        KernelCase("layernorm_bwd", "residual", _layernorm_bwd(1)),
        KernelCase("layernorm_bwd_params", "columns", _layernorm_bwd_params),
        KernelCase("sum_partials", "squares", _sum_partials(1)),
        KernelCase("sum_partials", "sums", _sum_partials(0)),
        KernelCase("sum_partials", "more_partials_than_values", _sum_partials(1, 40)),
        KernelCase("clip_by_norm", "clips", _clip_by_norm(0.3)),
        KernelCase("clip_by_norm", "within_the_norm", _clip_by_norm(1.5)),
        KernelCase("clip_by_norm", "inf_norm_flags", _clip_by_norm(sumsq=np.inf)),
        KernelCase("clip_by_norm", "nan_norm_flags", _clip_by_norm(sumsq=np.nan)),
        KernelCase("clip_by_value", "clamps", _clip_by_value()),
        KernelCase("clip_by_value", "keeps_nan", _clip_by_value(nan=True)),
        KernelCase("residual_add", "sum", _residual_add),
    ]
    + [KernelCase("bias_act_residual", act, _bias_act_residual(act)) for act in ACT]
    + [KernelCase("bias_act_residual_bf16", act, _bias_act_residual(act, True)) for act in ACT]
    + [KernelCase("residual_act_bwd", act, _residual_act_bwd(act)) for act in ACT]
    + [KernelCase("residual_act_bwd_bf16", act, _residual_act_bwd(act, True)) for act in ACT]
)

# Every (case, dtype) the kernel runs in: bfloat16 kernels in float32 only (the backend refuses
# float64 for them, and never launches their float64 build).
CASE_DTYPES = [(case, dtype) for case in CASES for dtype in case.dtypes]
CASE_DTYPE_IDS = [f"{case.id}-{dtype.name}" for case, dtype in CASE_DTYPES]

# Kernels whose inputs are activations or losses, where extreme values are meaningful.
EXTREME_KERNELS = ("bias_act_fwd", "act_bwd", "bce_logits", "softmax_xent", "mse")


def expected_outputs(case, args):
    """The reference's outputs for ``args`` (computed before the kernel overwrites them)."""
    expected = case.reference(*args)
    assert sorted(expected) == sorted(case.outputs()), case.id
    return expected


def run_on_backend(backend, case, args):
    """Run ``case.kernel`` on ``backend`` with copies of ``args``; its outputs as NumPy."""
    device = [backend.asarray(a.copy()) if isinstance(a, np.ndarray) else a for a in args]
    backend.kernel(case.kernel, *device)
    params = kernel_specs()[case.kernel].params
    return {p.name: backend.to_numpy(a) for p, a in zip(params, device) if p.writes}


def check_case(backend, case, inputs, rows, cols):
    """Build inputs, run the kernel on ``backend``, compare every output with the reference."""
    args = case.args(inputs, rows, cols)
    expected = expected_outputs(case, args)
    actual = run_on_backend(backend, case, args)
    params = {p.name: p for p in kernel_specs()[case.kernel].params}
    for name, value in expected.items():
        assert_output(params[name], actual[name], value, inputs.dtype,
                      err_msg=f"{case.id} {name} ({rows}x{cols}, {backend.name})")

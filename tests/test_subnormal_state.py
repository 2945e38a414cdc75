"""Optimizer state is never stored subnormal (issue 18 item 1; kernels/optimizers.cu).

Adam's m and v of a parameter whose gradient stays 0 (a dead relu unit, a pixel that is always
0) decay below the dtype's smallest normal number, and CPU arithmetic on subnormals is many
times slower (benchmarks/subnormal_state.py measures it). The update kernels store such state
as 0 by one select on every backend, so an update can never read subnormal state, and the
backends' state still agrees bit for bit (the GPU build keeps subnormals, -ftz=false, as the
CPU does). Parameters are compared to dtype tolerances only: the twins may divide by
multiplying with a reciprocal (``arcp`` in kernels/config.py) and compute the bias corrections
in another order than the C code, so new parameters can differ in their last bit.
"""

import numpy as np
import pytest
from conftest import BACKEND_NAMES, _make
from kernel_cases import CASES, Inputs, run_on_backend

FLUSH_CASES = [case for case in CASES if "subnormal" in case.variant]
STATE = ("m", "v", "buf")


def subnormal(x):
    return (x != 0) & (np.abs(x) < np.finfo(x.dtype).tiny)


@pytest.mark.parametrize("case", FLUSH_CASES, ids=lambda case: case.id)
def test_updates_store_no_subnormal_state(case):
    """Inputs whose state decays below the smallest normal number: no backend stores a
    subnormal, the reference's zeros are the kernels' zeros, and every backend writes the same
    state bits as the CPU twin."""
    for dtype in case.dtypes:
        args = case.args(Inputs(np.random.default_rng(3), dtype), 37, 301)
        names = [name for name in case.outputs() if name in STATE]
        expected = case.reference(*args)
        decayed = {name: expected[name] == 0 for name in names}
        assert all(mask.sum() > 100 for mask in decayed.values())  # the case does reach them
        outputs = {name: run_on_backend(_make(name), case, args) for name in BACKEND_NAMES}
        for backend_name, out in outputs.items():
            for name in names:
                assert not subnormal(out[name]).any(), f"{backend_name} {name}: subnormal"
                np.testing.assert_array_equal(out[name] == 0, decayed[name],
                                              err_msg=f"{backend_name} {name}: other zeros")
            for name in names:
                np.testing.assert_array_equal(out[name], outputs["cpu"][name],
                                              err_msg=f"{backend_name} {name} vs cpu")


def adam_args(dtype, n, seed=0):
    """Adam at step 1 with a third of the gradients 0 and their state just above the smallest
    normal number, as a dead unit's state is after enough steps."""
    rng = np.random.default_rng(seed)
    tiny = np.finfo(dtype).tiny
    g = (rng.standard_normal(n) * 1e-3).astype(dtype)
    m = (rng.standard_normal(n) * 1e-4).astype(dtype)
    v = (rng.random(n) * 1e-8).astype(dtype)
    g[::3] = 0
    m[::3] = (tiny * rng.uniform(1.0, 1.5, m[::3].size)).astype(dtype)
    v[::3] = (tiny * rng.uniform(1.0, 1.03, v[::3].size)).astype(dtype)  # 0.999^40 < 1 / 1.03
    p = (rng.standard_normal(n) * 0.05).astype(dtype)
    return [g, np.array([1e-3], dtype), 1, 0.9, 0.999, 1e-8, 0.0, 0.0, 0, 0,
            np.zeros(8, np.int64), p, m, v, np.zeros(0, np.uint16)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_decaying_state_never_reads_a_subnormal(dtype):
    """Forty updates of dead state, on every backend from the same start: no update ever
    stores a subnormal for the next one to read (unflushed, 0.9 m and 0.999 v stay subnormal
    for hundreds of steps), the dead state ends at 0, and the backends' state agrees bit for
    bit at every step."""
    start = adam_args(dtype, 9001)
    runs = {}
    for name in BACKEND_NAMES:
        backend = _make(name)
        device = [backend.asarray(a.copy()) if isinstance(a, np.ndarray) else a
                  for a in start]
        trajectory = []
        for step in range(40):
            device[10][0] = step  # ctrl[T]: the updates applied so far
            backend.kernel("adam_step", *device)
            state = [np.array(backend.to_numpy(device[i])) for i in (11, 12, 13)]
            for array in state[1:]:
                assert not subnormal(array).any(), f"{name}: subnormal state at step {step}"
            trajectory.append(state)
        assert (trajectory[-1][1][::3] == 0).all() and (trajectory[-1][2][::3] == 0).all()
        runs[name] = trajectory
    for name, trajectory in runs.items():
        for step, (ours, cpu) in enumerate(zip(trajectory, runs["cpu"])):
            eps = np.finfo(dtype).eps  # a few ulps of parameters of size up to ~0.2
            np.testing.assert_allclose(ours[0], cpu[0], rtol=8 * eps, atol=eps,
                                       err_msg=f"{name} p step {step}")
            for label, a, b in zip("mv", ours[1:], cpu[1:]):
                np.testing.assert_array_equal(a, b, err_msg=f"{name} {label} step {step}")

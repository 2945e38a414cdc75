"""Optimizers and schedules at edges the other tests did not reach: an optimizer that steps
models of another dtype or backend, holds its model weakly, names a state that is not a dict,
points a deprecation at the caller; schedules registered by subclassing, a warm-up handing over
to a schedule that does not start at the base rate.

Written for the mutants of gpunn/optim/ and gpunn/schedules.py that survived the other tests in
the whole-set run of 2026-12-06 (benchmarks/MUTATION.md, "optim, whole set").
"""

import gc
import warnings
import weakref

import numpy as np
import pytest
from test_optim import FlatModel

import gpunn
from gpunn.optim import SGD, Adam
from gpunn.schedules import SCHEDULES, OneCycle, Schedule, Warmup, get_schedule


def test_one_optimizer_steps_models_of_each_dtype_and_backend(backend):
    """Plain SGD keeps no state, so it may step any model: each step uses a rate table of that
    model's dtype on that model's backend (p - lr g, exact in binary fractions)."""
    from gpunn.backends.cpu import CpuBackend

    optimizer = SGD(lr=0.5)
    # another dtype on the same backend, then another backend of the same dtype, and back
    for model_backend, dtype in ((backend, np.float32), (backend, np.float64),
                                 (CpuBackend(), np.float64), (CpuBackend(), np.float32)):
        model = FlatModel(model_backend, np.ones(4, dtype))
        model.set_grad(np.array([1.0, -2.0, 0.5, 0.0]))
        optimizer.step(model)
        np.testing.assert_array_equal(model.params(), [0.5, 2.0, 0.75, 1.0])
        assert model.backend.to_numpy(model.flat_params).dtype == dtype


def test_an_optimizer_holds_its_model_weakly(backend):
    model = FlatModel(backend, np.ones(3))
    optimizer = Adam(lr=0.1)
    optimizer.step(model)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None  # the optimizer did not keep it
    with pytest.raises(ValueError, match="model: expected the model this optimizer's state was "
                                         "built on, got another one"):
        optimizer.step(FlatModel(backend, np.ones(3)))


class _SlottedModel:
    """A model that cannot be weakly referenced (``__slots__`` without ``__weakref__``)."""

    __slots__ = ("backend", "flat_params", "flat_grads")

    def __init__(self, backend, params):
        self.backend = backend
        self.flat_params = backend.asarray(params)
        self.flat_grads = backend.asarray(np.full(params.shape, 0.25))


def test_a_model_without_weak_references_keeps_its_optimizer(backend):
    model, optimizer = _SlottedModel(backend, np.ones(3)), Adam(lr=0.1)
    for _ in range(3):
        optimizer.step(model)  # held strongly: still its owner at every step
    assert optimizer.t == 3
    with pytest.raises(ValueError, match="model: expected the model this optimizer's state"):
        optimizer.step(_SlottedModel(backend, np.ones(3)))


def test_a_state_that_is_not_a_dict_is_named_by_its_type(backend):
    optimizer = Adam(lr=0.1)
    optimizer.step(FlatModel(backend, np.ones(3)))
    saved = dict(optimizer.state_dict(), state=[np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match=r"^state_dict\['state'\]: expected arrays \['m', 'v'\], "
                                         r"got list$"):
        Adam(lr=0.1).load_state_dict(saved)


def test_setting_an_owned_scalar_warns_at_the_callers_line():
    """The DeprecationWarning points at the assignment, not inside gpunn (under mutmut the
    trampoline adds a frame, so benchmarks/mutation.py deselects this test; see MUTATION.md)."""
    optimizer = gpunn.Adam()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer.base_lr = 0.5
    assert [w.category for w in caught] == [DeprecationWarning]
    assert caught[0].filename == __file__


def test_a_named_schedule_subclass_joins_the_registry():
    class Halving(Schedule):
        name = "test_halving"

        def _rate(self, base_lr, t):
            return base_lr / 2.0 ** t

    class Unnamed(Schedule):
        def _rate(self, base_lr, t):
            return base_lr

    try:
        assert SCHEDULES["test_halving"] is Halving and Unnamed not in SCHEDULES.values()
        schedule = get_schedule("test_halving")
        assert isinstance(schedule, Halving) and schedule(1.0, 3) == 0.125
    finally:
        SCHEDULES.pop("test_halving", None)


def test_warm_up_hands_over_to_the_wrapped_schedule_at_its_step_zero():
    """At t = warmup the wrapped schedule starts from its own step 0: a one-cycle schedule's
    initial rate (base / div_factor), not the base rate the warm-up ramps to."""
    after = OneCycle(total=10)
    warm = Warmup(warmup=2, after=after)
    assert warm(1.0, 2) == after(1.0, 0) == pytest.approx(1.0 / after.div_factor)
    assert [warm(1.0, t) for t in (3, 4)] == [after(1.0, 1), after(1.0, 2)]


def test_one_cycle_peaks_at_exactly_the_base_rate_as_pytorch_does():
    """The step that ends the warm phase belongs to it (PyTorch's OneCycleLR: ``step <=
    end_step``): the rate there is the base rate itself, where the second phase's formula
    would round (0.9 + 1 ulp for these numbers)."""
    torch = pytest.importorskip("torch")
    schedule = OneCycle(total=10, pct_start=0.3, div_factor=3.0, final_div_factor=1.0)
    assert schedule(0.9, 2) == 0.9
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.9)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.9, total_steps=10, pct_start=0.3, div_factor=3.0,
        final_div_factor=1.0, anneal_strategy="cos", cycle_momentum=False)
    rates = []
    for _ in range(3):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        torch_schedule.step()
    assert rates[2] == 0.9

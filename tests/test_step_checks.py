"""TrainStep.restore_order: only a permutation of the rows is taken, whole message.

Written for the step's surviving mutants (benchmarks/MUTATION.md): fit's resume checks the
saved order first, so only a direct caller of restore_order reaches its own check.
"""

import numpy as np
import pytest

import gpunn
from gpunn.step import TrainStep


def step_of_ten_rows():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), rng.integers(0, 2, size=10)
    model = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)
    Xd, T, loss = model.prepare(X, y)
    return TrainStep(model, loss, gpunn.SGD(lr=0.1), Xd, T, global_batch=4)


@pytest.mark.parametrize("order, shown", [
    (None, "None"),
    (np.arange(9), "(9,)"),
    (np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 8]), "(10,)"),
    (np.arange(1, 11), "(10,)"),
], ids=["none", "too short", "a repeated row", "a row past the end"])
def test_restore_order_takes_only_a_permutation_of_the_rows(order, shown):
    step = step_of_ten_rows()
    before = step.order.copy()
    with pytest.raises(ValueError) as caught:
        step.restore_order(order)
    assert str(caught.value) == f"order: expected a permutation of the 10 rows of X, got {shown}"
    np.testing.assert_array_equal(step.order, before)


def test_restore_order_takes_a_permutation():
    step = step_of_ten_rows()
    order = np.random.default_rng(1).permutation(10)
    step.restore_order(order)
    np.testing.assert_array_equal(step.order, order)

"""TrainStep checks written for the step's surviving mutants: restore_order, prepare_epoch, a
rank's shard and its sums, the step records.

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


def test_prepare_epoch_shuffles_unless_it_resumes_mid_epoch():
    """A direct caller's prepare_epoch(epoch, rng, shuffle) starts the epoch at its first
    step (a new order); a resumed epoch (first_step > 0) keeps the restored order."""
    step = step_of_ten_rows()
    step.prepare_epoch(0, np.random.default_rng(3), True)
    shuffled = step.order.copy()
    assert sorted(shuffled) == list(range(10)) and list(shuffled) != list(range(10))
    step.prepare_epoch(1, np.random.default_rng(4), True, first_step=1)
    np.testing.assert_array_equal(step.order, shuffled)


def test_restore_order_takes_a_permutation():
    step = step_of_ten_rows()
    order = np.random.default_rng(1).permutation(10)
    step.restore_order(order)
    np.testing.assert_array_equal(step.order, order)


def test_step_records_mean_only_the_applied_steps():
    """Three steps of 4, 4 and 2 rows; the second was not applied (non-finite)."""
    from gpunn.control import STEP_APPLIED, STEP_BAD_UPDATE, STEP_NONFINITE
    from gpunn.step import StepRecords

    records = StepRecords(totals=np.array([8.0, np.nan, 3.0]),
                          status=np.array([STEP_APPLIED, STEP_NONFINITE, STEP_BAD_UPDATE]),
                          rows=np.array([4, 4, 2]), scale=lambda rows: 1.0 / rows)
    assert records.mean(0) == 2.0 and records.mean(2) == 1.5
    np.testing.assert_array_equal(records.means, [2.0, np.nan, 1.5])
    assert records.applied_mean() == (8.0 + 3.0) / 6  # the rows of the applied steps
    assert records.last_finite() == 0 and records.first([STEP_NONFINITE]) == 1
    none_applied = StepRecords(totals=np.array([np.nan]), status=np.array([STEP_NONFINITE]),
                               rows=np.array([4]), scale=lambda rows: 1.0 / rows)
    assert np.isnan(none_applied.applied_mean()) and none_applied.last_finite() is None


class FirstOfTwoRanks(gpunn.comm.SingleProcess):
    """Rank 0 of 2 whose partner holds the same numbers: the sum doubles each array."""

    rank, size = 0, 2

    def allreduce_sum(self, array):
        array *= 2
        return array


def test_a_rank_without_rows_in_the_last_batch_adds_nothing():
    """10 rows in global batches of 3: the last batch has 1 row, which rank 1 takes; rank 0's
    step adds a zero loss and a zero gradient (doubled: still zero; SGD then leaves the
    parameters as they are)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), rng.integers(0, 2, size=10)
    model = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)
    Xd, T, loss = model.prepare(X, y)
    step = TrainStep(model, loss, gpunn.SGD(lr=0.1), Xd, T, global_batch=3,
                     comm=FirstOfTwoRanks())
    step.begin_epoch([0.1] * step.n_steps)
    for k in range(3):
        step.run(k)
    before = model.params.host()
    step.run(3)
    records = step.read()
    assert records.totals[3] == 0 and np.all(records.totals[:3] > 0)
    np.testing.assert_array_equal(model.params.host(), before)
    # applied, its zero gradient finite (not a non-finite step held back): statuses as ints
    from gpunn.control import STEP_APPLIED
    assert records.status.dtype == np.int64 and records.totals.dtype == np.float64
    assert list(records.status) == [STEP_APPLIED] * 4


class OneOfTwoRanksAlone(gpunn.comm.SingleProcess):
    """Rank ``rank`` of 2 whose sum is its own gradient: each rank's update shows its shard."""

    size = 2

    def __init__(self, rank):
        self.rank, self.sums = rank, 0

    def allreduce_sum(self, array):
        self.sums += 1
        return array


@pytest.mark.parametrize("dropout, global_batch", [(0.0, 4), (0.5, 4), (0.0, 5)])
def test_the_shards_of_two_ranks_add_up_to_the_batch(dropout, global_batch):
    """Rank 0 takes rows 0 and 1 of a global batch of 4, rank 1 rows 2 and 3 (of 5: 3 rows and
    2), each with its own workspace rows and its rows' dropout masks (keyed by their place in
    the batch): their gradients (read from an SGD step each, the sum left out) add up to one
    process's."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 3)), rng.integers(0, 2, size=8)
    updates = []
    for comm in (None, OneOfTwoRanksAlone(0), OneOfTwoRanksAlone(1)):
        model = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0,
                          dropout=dropout)
        Xd, T, loss = model.prepare(X, y)
        step = TrainStep(model, loss, gpunn.SGD(lr=1.0), Xd, T, global_batch=global_batch,
                         comm=comm)
        step.begin_epoch([1.0] * step.n_steps)
        before = model.params.host().copy()
        step.run(0)
        updates.append(before - model.params.host())
        assert comm is None or comm.sums == 2  # the gradient and the loss summed over ranks
    assert np.any(updates[1] != 0) and np.any(updates[2] != 0)  # each shard moved some
    np.testing.assert_allclose(updates[1] + updates[2], updates[0], rtol=1e-12, atol=1e-15)


def _old_batch_size_step():
    """``(model, loss, Xd, T)`` of a six-row problem for TrainStep."""
    rng = np.random.default_rng(0)
    model = gpunn.MLP([3, 2], output="softmax", dtype="float64", seed=0)
    Xd, T, loss = model.prepare(rng.normal(size=(6, 3)), rng.integers(0, 2, size=6))
    return model, loss, Xd, T


def test_the_old_batch_size_keyword_warns_and_still_works():
    model, loss, Xd, T = _old_batch_size_step()
    with pytest.warns(DeprecationWarning) as caught:
        step = TrainStep(model, loss, gpunn.SGD(lr=0.1), Xd, T, batch_size=4)
    (warning,) = caught
    assert warning.category is DeprecationWarning
    assert str(warning.message) == ("TrainStep(batch_size=) is deprecated: it is the global "
                                    "batch, TrainStep(global_batch=)")
    assert step.global_batch == 4 and step.n_steps == 2


def test_the_old_batch_size_warning_points_at_the_caller():
    """Deselected under mutmut, whose trampoline adds a frame (benchmarks/mutation.py)."""
    model, loss, Xd, T = _old_batch_size_step()
    with pytest.warns(DeprecationWarning) as caught:
        TrainStep(model, loss, gpunn.SGD(lr=0.1), Xd, T, batch_size=4)
    assert caught[0].filename == __file__


def test_a_step_halts_after_a_nonfinite_step_unless_told_otherwise():
    """The documented default (fit passes its on_nonfinite explicitly; direct users rely on
    it): no update after a non-finite step until the host has read it."""
    assert step_of_ten_rows().halt_on_nonfinite is True


def test_a_shard_past_row_0_gathers_its_rows_of_the_batch():
    """Rank 1 of 2 takes rows 2 and 3 of a global batch of 4: the gathered inputs and targets
    are those rows of the step's order (mpiexec runs this for real; in-process here, where
    mutation testing sees it)."""
    step = step_of_ten_rows()
    step.shuffle(np.random.default_rng(2))
    step.begin_epoch([0.1] * step.n_steps)
    to_numpy = step.model.backend.to_numpy
    X, T, W, _ = step._shard_rows(2, 4)
    rows = step.order[2:4]
    assert W is None
    np.testing.assert_array_equal(to_numpy(X), to_numpy(step.X)[rows])
    np.testing.assert_array_equal(to_numpy(T), to_numpy(step.T)[rows])


def test_an_epoch_of_two_steps_trains_each_batch_in_turn():
    """Two batches of 4 rows, unshuffled, with SGD (no state): as two fits of one batch each
    (a step gathers its batch; only an epoch of one batch uses the data as it lies)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 3)), rng.integers(0, 2, size=8)

    def model():
        return gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)

    whole, parts = model(), model()
    gpunn.fit(whole, X, y, optimizer=gpunn.SGD(lr=0.5), epochs=1, batch_size=4,
              shuffle=False, progress=False)
    for rows in (slice(0, 4), slice(4, 8)):
        gpunn.fit(parts, X[rows], y[rows], optimizer=gpunn.SGD(lr=0.5), epochs=1,
                  batch_size=4, shuffle=False, progress=False)
    np.testing.assert_array_equal(whole.params.host(), parts.params.host())


def test_a_first_step_that_diverges_reports_no_finite_loss_before_it():
    """mse of inputs near float32's top overflows at the first step: no earlier finite loss,
    said as None."""
    X = np.full((4, 2), 3e19, np.float32)
    model = gpunn.MLP([2, 1], output=None, dtype="float32", seed=0)
    with pytest.raises(gpunn.TrainingDiverged) as caught:
        gpunn.fit(model, X, np.ones((4, 1), np.float32), loss="mse", epochs=1, batch_size=4,
                  progress=False)
    assert caught.value.last_finite_loss is None
    assert "last finite loss None" in str(caught.value)


def test_an_epoch_records_one_step_per_batch_shape():
    """Ten rows in batches of 4: two shapes (4 rows, 2 rows), each recorded once and then
    replayed, however many steps and epochs run."""
    step = step_of_ten_rows()
    for _ in range(2):
        step.begin_epoch([0.1] * step.n_steps)
        for k in range(step.n_steps):
            step.run(k)
    assert sorted(m for m, _ in step._tapes) == [2, 4]  # recorded once each
    assert sorted(m for m, _ in step._replays) == [2, 4]

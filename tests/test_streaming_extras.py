"""Streamed data with what in-memory training offers besides rows: ``validation_split`` (the
tail before shuffling, a row-range view of the source), validation data as sources,
``sample_weight`` and ``class_weight`` staged with the chunks; each gives the in-memory run's
bits for the same batches, resumes mid-epoch exactly, and refuses bad input before training."""

import numpy as np
import pytest

import gpunn
from gpunn.row_views import RangeRows, split_columns
from gpunn.sources import open_rows

N, D, K = 300, 6, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N, D)).astype(np.float32)
    return X, rng.integers(0, K, N), rng.uniform(0.1, 3.0, N)


def train(X, y, epochs=2, **kw):
    model = gpunn.MLP([D, 8, K], output="softmax", seed=1)
    history = gpunn.fit(model, X, y, epochs=epochs, batch_size=32, progress=False, **kw)
    return model.params.host(), history


@pytest.fixture()
def npy(tmp_path, data):
    np.save(tmp_path / "X.npy", data[0])
    return tmp_path / "X.npy"


def test_validation_split_is_the_tail_as_in_memory(backend, data, npy):
    """Unshuffled, the streamed run trains on the same first rows and validates on the same
    last rows: parameters, losses and validation scores are the in-memory run's bits."""
    X, y, _ = data
    expected, history = train(X, y, shuffle=False, validation_split=0.2)
    got, streamed = train(npy, y, shuffle=False, validation_split=0.2, chunk_rows=190)
    np.testing.assert_array_equal(got, expected)
    assert streamed.n_samples == history.n_samples == 240
    assert streamed.val_loss == history.val_loss
    assert streamed.val_accuracy == history.val_accuracy


def test_validation_split_never_trains_on_the_tail(data, npy, tmp_path):
    """Shuffled: the held-out rows stay out of training: other values there leave the trained
    parameters' bits as they were and move only the validation scores."""
    X, y, _ = data
    expected, history = train(npy, y, validation_split=0.2, chunk_rows=190)
    other = X.copy()
    other[240:] *= -3
    np.save(tmp_path / "other.npy", other)
    got, changed = train(tmp_path / "other.npy", y, validation_split=0.2, chunk_rows=190)
    np.testing.assert_array_equal(got, expected)
    assert changed.val_loss != history.val_loss


class Started(gpunn.callbacks.Callback):
    def __init__(self):
        self.started = False

    def on_train_begin(self, logs=None):
        self.started = True


@pytest.mark.parametrize("held_out", ["validation_split", "validation_data"])
def test_nan_in_streamed_validation_rows_is_refused_before_training(data, npy, tmp_path,
                                                                    held_out):
    """Streamed validation rows are read and checked once before training starts (a NaN was
    found at the first evaluation, after a whole epoch had trained)."""
    X, y, _ = data
    bad = X.copy()
    bad[250] = np.nan
    np.save(npy, bad)
    model = gpunn.MLP([D, 8, K], output="softmax", seed=1)
    before, started = model.params.host().copy(), Started()
    kw = ({"validation_split": 0.2} if held_out == "validation_split" else
          {"validation_data": (RangeRows(open_rows(npy), 240, N), y[240:])})
    with pytest.raises(ValueError, match=rf"{held_out}: X: expected finite values.*"
                                         r"rows 240 to 299"):
        gpunn.fit(model, npy if held_out == "validation_split" else X[:240],
                  y if held_out == "validation_split" else y[:240], epochs=1, batch_size=32,
                  chunk_rows=190, progress=False, callbacks=[started], **kw)
    assert not started.started
    np.testing.assert_array_equal(model.params.host(), before)


def test_validation_data_as_sources(data, npy, tmp_path):
    X, y, w = data
    np.save(tmp_path / "yv.npy", y[200:])
    expected, history = train(X[:200], y[:200], validation_data=(X[200:], y[200:], w[200:]))
    got, streamed = train(X[:200], y[:200], validation_data=(
        RangeRows(open_rows(npy), 200, N), tmp_path / "yv.npy", w[200:]))
    np.testing.assert_array_equal(got, expected)
    assert streamed.val_loss == history.val_loss
    with pytest.raises(ValueError, match=r"validation_data: y: expected 100 rows, as X has"):
        train(X, y, validation_data=(RangeRows(open_rows(npy), 200, N), y))


@pytest.mark.parametrize("weighting", ["sample", "class", "both"])
def test_weights_follow_the_rows(backend, data, npy, weighting):
    """Weights staged with their chunk's rows, rescaled per batch of the epoch's order: a
    shuffled streamed epoch equals in-memory training on the rows of the recipe's order."""
    X, y, w = data
    kw = {"sample_weight": w if weighting != "class" else None,
          "class_weight": {0: 3.0, 2: 0.5} if weighting != "sample" else None}
    # 190 rows held: 3 chunks of 100 on the CPU, 4 of 75 where copies overlap the steps
    bounds = gpunn.staging.plan_chunks(N, 190, 32, not gpunn.staging.direct_staging(backend),
                                       4 * (D + 2))  # inputs, a class index, a weight
    chunks, perms = gpunn.staging.epoch_plan(bounds, 3, 1)
    order = np.concatenate([bounds[j][0] + p for j, p in zip(chunks, perms)])
    in_memory = {k: (v[order] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    expected, history = train(X[order], y[order], epochs=1, shuffle=False, **in_memory)
    got, streamed = train(npy, y, epochs=1, chunk_rows=190, seed=3, **kw)
    np.testing.assert_array_equal(got, expected)
    assert streamed.loss == history.loss
    unweighted, _ = train(npy, y, epochs=1, chunk_rows=190, seed=3)
    assert not np.array_equal(unweighted, got)


def test_weights_from_a_source_and_split_with_validation(data, npy, tmp_path):
    X, y, w = data
    np.save(tmp_path / "w.npy", w)
    expected, history = train(X, y, shuffle=False, validation_split=0.25, sample_weight=w,
                              class_weight="balanced")
    got, streamed = train(npy, y, shuffle=False, validation_split=0.25, chunk_rows=190,
                          sample_weight=tmp_path / "w.npy", class_weight="balanced")
    np.testing.assert_array_equal(got, expected)
    assert streamed.val_loss == history.val_loss and streamed.loss == history.loss


def test_weighted_resume_mid_epoch_gives_the_uninterrupted_bits(data, npy, tmp_path):
    from test_streaming import Interrupt

    X, y, w = data
    kw = {"chunk_rows": 190, "sample_weight": w, "validation_split": 0.1, "record_steps": True}
    path = tmp_path / "run.safetensors"
    expected, history = train(npy, y, epochs=3, **kw)
    with pytest.raises(KeyboardInterrupt):
        train(npy, y, epochs=3, checkpoint_steps=3, checkpoint_path=path,
              callbacks=[Interrupt(2, 5)], **kw)
    got, resumed = train(npy, y, epochs=3, resume_from=path, **kw)
    np.testing.assert_array_equal(got, expected)
    assert resumed.step_loss == history.step_loss and resumed.val_loss == history.val_loss


def test_bad_weights_and_splits_are_refused_before_training(data, npy, tmp_path):
    from test_streaming import refused

    X, y, w = data
    bad = w.copy()
    bad[17] = np.nan
    refused(npy, y, ValueError, r"sample_weight: expected finite weights, got 1 NaN/inf, "
            r"first at index 17", sample_weight=bad)
    refused(npy, y, ValueError, r"sample_weight: expected 300 weights", sample_weight=w[:-1])
    np.save(tmp_path / "w2.npy", np.ones((N, 2)))
    refused(npy, y, ValueError, r"sample_weight: expected a 1-D array",
            sample_weight=tmp_path / "w2.npy")
    refused(npy, y, ValueError, r"sample_weight: .* no such file",
            sample_weight=tmp_path / "none.npy")
    refused(npy, y, ValueError, r"sample_weight: expected non-negative", sample_weight=-w)
    refused(npy, y, ValueError, r"validation_split: expected a finite number in \(0.0, 1.0\)",
            validation_split=1.0)
    refused(npy, y, ValueError, r"validation_split: expected None when validation_data",
            validation_split=0.5, validation_data=(X, y))
    refused(npy, y, ValueError, r"class_weight: expected keys among the classes 0..2",
            class_weight={5: 1.0})
    tail = np.where(np.arange(N) >= 240, 1.0, 0.0)
    for X_given in (npy, X):  # streamed and in memory alike
        refused(X_given, y, ValueError, r"sample_weight: expected a positive weight among the "
                r"240 training rows \(validation_split holds out the last 60\)",
                sample_weight=tail, validation_split=0.2)


def test_split_columns_reads_the_file_once_per_chunk(data, tmp_path):
    X, y, _ = data
    np.save(tmp_path / "Xy.npy", np.column_stack([X, y]).astype(np.float32))
    source = open_rows(tmp_path / "Xy.npy")
    calls = []
    read = source.read
    source.read = lambda a, b: calls.append((a, b)) or read(a, b)
    Xs, ys = split_columns(source, -1)
    assert Xs.shape == (N, D) and ys.shape == (N,)
    np.testing.assert_array_equal(Xs.read(10, 20), X[10:20])
    np.testing.assert_array_equal(ys.read(10, 20), y[10:20])
    assert calls == [(10, 20)]
    with pytest.raises(ValueError, match=r"y: expected a column index in \[-7, 7\)"):
        split_columns(source, 7)

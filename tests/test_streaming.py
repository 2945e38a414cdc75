"""Streaming training (gpunn.sources, gpunn.staging): the same bits as in-memory training for
the same batches, a shuffle that follows its documented recipe, sources of every kind, and
bad sources refused before training."""

import os
import threading

import numpy as np
import pytest

import gpunn
from gpunn.sources import is_streamed, open_rows
from gpunn.staging import chunk_bounds, direct_staging, epoch_plan, held_rows, plan_chunks

N, D, K = 300, 6, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    return rng.normal(size=(N, D)).astype(np.float32), rng.integers(0, K, N)


def train(X, y, epochs=2, batch_size=32, **kw):
    model = gpunn.MLP([D, 8, K], output="softmax", seed=1)
    history = gpunn.fit(model, X, y, epochs=epochs, batch_size=batch_size, progress=False,
                        **kw)
    return model.params.host(), history


def save_shards(folder, X, y, kind, cuts=(0, 70, 200, N)):
    os.makedirs(folder)
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        if kind == "npz":
            np.savez(folder / f"part{i}.npz", X=X[a:b], y=y[a:b])
        else:
            np.save(folder / f"part{i}.npy", X[a:b])


def sources(kind, tmp_path, X, y):
    """``(X source, y source)`` of one kind, holding ``X`` and ``y``."""
    if kind == "memmap":
        np.save(tmp_path / "X.npy", X)
        return np.load(tmp_path / "X.npy", mmap_mode="r"), y
    if kind == "npy":
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "y.npy", y)
        return str(tmp_path / "X.npy"), tmp_path / "y.npy"
    if kind in ("npy shards", "npz shards"):
        short = kind.split()[0]
        save_shards(tmp_path / "d", X, y, short)
        if short == "npz":
            return open_rows(tmp_path / "d"), open_rows(tmp_path / "d", argument="y")
        return tmp_path / "d", y
    if kind == "parquet":
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        table = pa.table({**{f"f{j}": X[:, j] for j in range(D)}, "label": y})
        pq.write_table(table, tmp_path / "t.parquet", row_group_size=45)
        path = tmp_path / "t.parquet"
        return (open_rows(path, columns=[f"f{j}" for j in range(D)]),
                open_rows(path, columns=["label"], argument="y"))
    if kind == "h5py":
        h5py = pytest.importorskip("h5py")
        handle = h5py.File(tmp_path / "d.h5", "w")
        return handle.create_dataset("X", data=X), handle.create_dataset("y", data=y)
    if kind == "zarr":
        zarr = pytest.importorskip("zarr")
        return zarr.array(X, chunks=(50, D)), zarr.array(y, chunks=(50,))
    return X, y  # in memory, streamed by chunk_rows


KINDS = ["memory", "memmap", "npy", "npy shards", "npz shards", "parquet", "h5py", "zarr"]


@pytest.mark.parametrize("kind", KINDS)
def test_unshuffled_stream_equals_in_memory(backend, data, tmp_path, kind):
    """Without shuffling the batches are the same rows in the same order, so every source
    gives the in-memory run's bits, with batches straddling chunks (180 rows held: 3 chunks of
    100 on the CPU, batch 32)."""
    X, y = data
    expected, history = train(X, y, shuffle=False)
    Xs, ys = sources(kind, tmp_path, X, y)
    got, streamed = train(Xs, ys, shuffle=False, chunk_rows=180)
    np.testing.assert_array_equal(got, expected)
    assert streamed.loss == history.loss


def chunks_held(backend, chunk_rows, batch=32):
    """The chunks of N rows streamed by ``backend`` holding ``chunk_rows`` rows (float32
    inputs and a class index a row)."""
    return plan_chunks(N, chunk_rows, batch, not direct_staging(backend), 4 * (D + 1))


def recipe_order(n, k, seed, epoch):
    """The documented shuffle, written out: ``k`` chunks of near-equal sizes in a random
    order, then the rows within each chunk."""
    edges = [n * j // k for j in range(k + 1)]
    rng = np.random.default_rng([seed, epoch])
    order = []
    for j in rng.permutation(k):
        order.extend(edges[j] + rng.permutation(edges[j + 1] - edges[j]))
    return np.array(order)


def test_shuffled_epoch_follows_the_recipe(backend, data):
    """One shuffled streamed epoch trains exactly as in-memory training on the rows in the
    recipe's order; another seed gives another order, the same seed the same bits."""
    X, y = data
    order = recipe_order(N, len(chunks_held(backend, 190)), 4, 1)
    assert sorted(order) == list(range(N))
    expected, _ = train(X[order], y[order], epochs=1, shuffle=False)
    got, _ = train(X, y, epochs=1, chunk_rows=190, seed=4)
    np.testing.assert_array_equal(got, expected)
    again, _ = train(X, y, epochs=1, chunk_rows=190, seed=4)
    other, _ = train(X, y, epochs=1, chunk_rows=190, seed=5)
    np.testing.assert_array_equal(again, got)
    assert not np.array_equal(other, got)


def test_plan_permutes_chunks_and_rows():
    bounds = chunk_bounds(1003, 100)
    sizes = [b - a for a, b in bounds]
    assert len(bounds) == 11 and max(sizes) <= 100 and max(sizes) - min(sizes) <= 1
    assert chunk_bounds(1000, 100) == [(100 * j, 100 * j + 100) for j in range(10)]
    chunks, perms = epoch_plan(bounds, 0, 3)
    assert sorted(chunks) == list(range(11)) and list(chunks) != list(range(11))
    for j, perm in zip(chunks, perms):
        assert sorted(perm) == list(range(sizes[j]))
    again = epoch_plan(bounds, 0, 3)
    assert all(np.array_equal(a, b) for a, b in zip(perms, again[1]))
    assert not np.array_equal(chunks, epoch_plan(bounds, 0, 4)[0])


def test_per_row_memory_is_the_order_alone(tmp_path):
    """What a streamed fit allocates for an epoch of many rows: the ring (bounded by the
    chunk) and the epoch's row order, 4 bytes a row. The ring's index, the chunks'
    permutations and the set-up's temporaries once took 28 bytes a row more at the peak (32
    in all: 129 MiB for these 4M rows of one feature, eight times the file)."""
    import tracemalloc

    from gpunn.optim import get_optimizer
    from gpunn.staging import StreamStep, stream_sources

    n, chunk, batch = 1 << 22, 1 << 14, 1024
    np.save(tmp_path / "X.npy", np.zeros((n, 1), np.float32))
    np.save(tmp_path / "y.npy", np.zeros((n, 1), np.float32))
    model = gpunn.MLP([1, 2, 1], seed=0)
    X, y, loss, T_shape, _ = stream_sources(model, tmp_path / "X.npy", tmp_path / "y.npy",
                                            "mse")
    tracemalloc.start()
    try:
        step = StreamStep(model, loss, get_optimizer("adam", 1e-3), X, y, T_shape, batch,
                          chunk_rows=chunk, seed=0)
        try:
            for epoch in (1, 2):
                step.prepare_epoch(epoch, None, True)
            step.stager.need(0)
            ring = step.stager.ring_rows
        finally:
            step.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the ring's rows (inputs, targets, index: 16 bytes) and a read block: 1.6 MiB here
    assert peak < 4 * n + 16 * ring + (4 << 20), f"{peak / n:.1f} bytes a row"
    assert step.order.dtype == np.int32 and step._order.size == ring < 2 * chunk


def test_copies_go_through_pinned_buffers_on_the_emulated_device(data):
    """The CUDA backend's staging path (pinned buffers, a copy stream, events) runs in the
    emulation, which refuses a copy from pageable memory or a wait on an unrecorded event."""
    from host_build import emulated_backend

    backend = emulated_backend()
    X, y = data
    with gpunn.use_backend(backend):
        train(X, y, epochs=2, chunk_rows=190, seed=2)
    # 190 rows held: 4 chunks of 75 rows in a ring of 2 * 75 + 32 - 1 = 181 rows and a block
    # of 75 // 8 = 9, the ring at stream offsets 0, 75,
    # 150, 225: the third wraps past the ring's end (two copies), each epoch, for X and T.
    assert backend._streams.copies == 2 * 2 * (4 + 1)


def test_no_staging_thread_outlives_fit(data):
    X, y = data
    train(X, y, chunk_rows=190)
    assert not [t for t in threading.enumerate() if t.name.startswith("gpunn-stage")]


def test_what_streams():
    assert is_streamed("x.npy") and not is_streamed(np.zeros(3)) and not is_streamed([1])


# --- hostile sources: refused before training, naming the argument --------------------------

def refused(X, y, error, match, untouched=True, **kw):
    """``fit`` raises ``error`` matching ``match``; before any update when ``untouched``."""
    model = gpunn.MLP([D, 8, K], output="softmax", seed=1)
    before = model.params.host().copy()
    with pytest.raises(error, match=match):
        gpunn.fit(model, X, y, epochs=1, batch_size=32, progress=False, **kw)
    assert np.array_equal(model.params.host(), before) == untouched


def test_shards_that_disagree_are_refused(data, tmp_path):
    X, y = data
    os.makedirs(tmp_path / "dtype")
    np.save(tmp_path / "dtype" / "a.npy", X[:100])
    np.save(tmp_path / "dtype" / "b.npy", X[100:].astype(np.float64))
    refused(tmp_path / "dtype", y, ValueError, r"X: expected every shard to hold float32")
    os.makedirs(tmp_path / "cols")
    np.save(tmp_path / "cols" / "a.npy", X[:100])
    np.save(tmp_path / "cols" / "b.npy", X[100:, :4])
    refused(tmp_path / "cols", y, ValueError, r"X: expected every shard .* shape \(6,\)")
    os.makedirs(tmp_path / "empty")
    np.save(tmp_path / "empty" / "a.npy", X)
    np.save(tmp_path / "empty" / "b.npy", X[:0])
    refused(tmp_path / "empty", y, ValueError, r"X: expected a non-empty .* in .*b\.npy")
    os.makedirs(tmp_path / "rows")
    np.save(tmp_path / "rows" / "a.npy", X[:100])
    refused(tmp_path / "rows", y, ValueError, rf"y: expected 100 rows, as X has, got {N}")
    os.makedirs(tmp_path / "mixed")
    np.save(tmp_path / "mixed" / "a.npy", X)
    np.savez(tmp_path / "mixed" / "b.npz", X=X)
    refused(tmp_path / "mixed", y, ValueError, r"X: expected a folder .*\(one kind\)")


def test_special_paths_are_refused_without_opening(data, tmp_path):
    X, y = data
    os.mkfifo(tmp_path / "fifo.npy")
    refused(tmp_path / "fifo.npy", y, ValueError,
            r"X: expected a regular file or a folder, got a named pipe")
    os.symlink(tmp_path / "gone.npy", tmp_path / "link.npy")
    refused(tmp_path / "link.npy", y, ValueError, r"X: .* a dangling link")
    refused(tmp_path / "missing.npy", y, ValueError, r"X: .* no such file")
    (tmp_path / "t.csv").write_text("1,2\n")
    refused(tmp_path / "t.csv", y, ValueError, r"X: expected a \.npy or \.parquet file")


def test_forged_and_fortran_npy_are_refused(data, tmp_path):
    X, y = data
    np.save(tmp_path / "X.npy", X)
    raw = (tmp_path / "X.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:-100])
    refused(tmp_path / "cut.npy", y, ValueError, r"X: the header .* claims .* truncated")
    np.save(tmp_path / "F.npy", np.asfortranarray(X))
    refused(tmp_path / "F.npy", y, ValueError, r"X: expected rows stored in C order")
    np.save(tmp_path / "S.npy", X.astype("U3"))
    refused(tmp_path / "S.npy", y, TypeError, r"X: expected numeric data, got dtype <U3")


def test_non_numeric_parquet_column_is_refused(data, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, y = data
    pq.write_table(pa.table({"a": X[:, 0], "name": ["x"] * N}), tmp_path / "t.parquet")
    refused(tmp_path / "t.parquet", y, TypeError, r"X: expected numeric Parquet columns, got "
                                                  r"'name' of type string")


def test_bad_targets_and_shapes_are_refused_before_training(data, tmp_path):
    X, y = data
    np.save(tmp_path / "X.npy", X)
    bad = y.copy()
    bad[250] = 7
    refused(tmp_path / "X.npy", bad, ValueError, r"y: expected labels in \[0, 3\)")
    np.save(tmp_path / "wide.npy", np.zeros((N, D + 1), np.float32))
    refused(tmp_path / "wide.npy", y, ValueError, r"X: expected rows of 6 features")
    refused(tmp_path / "X.npy", y, ValueError, r"validation_split: expected a fraction "
            r"leaving rows on both sides, got 0.001 of 300", validation_split=0.001)


@pytest.mark.parametrize("kind", ["npy", "memmap"])
def test_nan_in_a_chunk_is_named_before_that_chunk_trains(data, tmp_path, kind):
    """Read into a block (a path) or scattered from the map's own pages (a memory map)."""
    X, y = data
    bad = X.copy()
    bad[240, 2] = np.nan
    np.save(tmp_path / "X.npy", bad)
    source = np.load(tmp_path / "X.npy", mmap_mode="r") if kind == "memmap" \
        else tmp_path / "X.npy"
    refused(source, y, ValueError, r"X: expected finite values.*rows 236 to 247",
            untouched=False, chunk_rows=190, shuffle=False)


@pytest.mark.parametrize("kind", ["npy", "memmap"])
def test_a_file_that_changes_size_while_training_is_refused(data, tmp_path, kind):
    """Rewritten between epochs (a callback stands in for another process): the next read
    raises ValueError naming X, instead of reading other rows (or SIGBUS on a map)."""
    X, y = data
    np.save(tmp_path / "X.npy", X)
    Xs = np.load(tmp_path / "X.npy", mmap_mode="r") if kind == "memmap" else tmp_path / "X.npy"

    def grow(epoch, history, model):
        with open(tmp_path / "X.npy", "ab") as file:
            file.write(b"\0" * 64)

    with pytest.raises(ValueError, match=r"X: .*changed"):
        gpunn.fit(gpunn.MLP([D, 8, K], output="softmax"), Xs, y, epochs=2, batch_size=32,
                  chunk_rows=190, progress=False, callbacks=[grow])


# --- mid-epoch checkpoints and resume ---------------------------------------------------------

class Interrupt(gpunn.callbacks.Callback):
    """Ctrl-C after step ``batch`` (from 0) of ``epoch``."""

    def __init__(self, epoch, batch):
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("streamed", [False, True], ids=["in memory", "streamed"])
def test_resume_mid_epoch_gives_the_uninterrupted_bits(backend, data, tmp_path, streamed):
    """Interrupted in epoch 2 (10 steps an epoch; checkpoints after steps 4 and 8), resumed
    from the step-4 checkpoint: parameters, optimizer state and every epoch's loss equal the
    uninterrupted run's."""
    X, y = data
    kw = {"chunk_rows": 190} if streamed else {}
    path = tmp_path / "run.safetensors"
    expected, history = train(X, y, epochs=3, record_steps=True, **kw)
    with pytest.raises(KeyboardInterrupt):
        train(X, y, epochs=3, record_steps=True, checkpoint_steps=4, checkpoint_path=path,
              callbacks=[Interrupt(2, 6)], **kw)
    saved = gpunn.load_checkpoint(path)
    assert saved.epoch == 1 and len(saved.steps[0]) == 4
    got, resumed = train(X, y, epochs=3, record_steps=True, resume_from=path, **kw)
    np.testing.assert_array_equal(got, expected)
    assert resumed.loss == history.loss and resumed.step_loss == history.step_loss


def test_resume_mid_epoch_refuses_another_seed_or_other_chunks(data, tmp_path):
    X, y = data
    path = tmp_path / "run.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train(X, y, epochs=2, chunk_rows=190, checkpoint_steps=4, checkpoint_path=path,
              callbacks=[Interrupt(1, 6)])
    with pytest.raises(ValueError, match=r"^seed, chunk_rows: expected those of the "
                                         r"checkpoint's run .*, got seed=9, chunk_rows=190$"):
        train(X, y, epochs=2, chunk_rows=190, resume_from=path, seed=9)
    with pytest.raises(ValueError, match=r", got seed=0, chunk_rows=340$"):  # one chunk
        train(X, y, epochs=2, chunk_rows=340, resume_from=path, seed=0)
    with pytest.raises(ValueError, match=r"checkpoint_steps: expected checkpoint_path too"):
        train(X, y, epochs=2, checkpoint_steps=4)


def test_mid_epoch_parts_are_checked(tmp_path):
    model = gpunn.MLP([D, 8, K], output="softmax")
    path = tmp_path / "c.safetensors"
    gpunn.save_checkpoint(path, model, steps=([1.5, np.nan], [0, 1]))
    totals, status = gpunn.load_checkpoint(path).steps
    assert np.array_equal(totals, [1.5, np.nan], equal_nan=True) and list(status) == [0, 1]
    gpunn.save_checkpoint(path, model, steps=([1.5], [7]))
    with pytest.raises(gpunn.CheckpointError, match=r"fit.step_status: expected step statuses"):
        gpunn.load_checkpoint(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_rows_places_rows_and_counts_what_is_not_finite(dtype):
    """The staging thread's one pass (gpunn.backends.host_rows) against NumPy's two: the
    rows land where NumPy's scatter puts them, bit for bit (NaN payloads too), and the count
    is NumPy's count of NaN/inf, from a read-only source (a memory map's rows) as well."""
    from gpunn.backends.cpu import CpuBackend

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(37, 11)).astype(dtype)
    rows.reshape(-1)[rng.choice(rows.size, 9, replace=False)] = [np.nan, np.inf, -np.inf] * 3
    rows.flags.writeable = False
    at = rng.permutation(50)[:37]
    out, expected = np.zeros((50, 11), dtype), np.zeros((50, 11), dtype)
    expected[at] = rows
    assert CpuBackend().scatter_rows(rows, at, out) == 9 == int((~np.isfinite(rows)).sum())
    assert out.tobytes() == expected.tobytes()
    assert CpuBackend().scatter_rows(rows[:0], at[:0], out) == 0
    for bad_at in (at - 1, at + 14):  # -1 and 50: outside out's rows, refused before writing
        with pytest.raises(ValueError, match=r"scatter_rows: expected row indices in \[0, 50\)"):
            CpuBackend().scatter_rows(rows, bad_at, out)
    with pytest.raises(ValueError, match=r"expected rows \(m, d\), at \(m,\)"):
        CpuBackend().scatter_rows(rows, at[:-1], out)
    assert out.tobytes() == expected.tobytes()


def test_a_value_beyond_float32_in_float64_rows_is_refused(data, tmp_path):
    """Rows converted to the model's float32 as they are read: 1e39 becomes inf there, and is
    refused with the rows of its block, as NaN is."""
    X, y = data
    wide = X.astype(np.float64)
    wide[100, 0] = 1e39
    np.save(tmp_path / "X.npy", wide)
    refused(np.load(tmp_path / "X.npy", mmap_mode="r"), y, ValueError,
            r"X: expected finite values, got 1 NaN/inf entries \(rows 100 to 111\)",
            untouched=False, chunk_rows=190, shuffle=False)


def test_finiteness_is_checked_in_blocks_past_the_first():
    """A large chunk is checked a block at a time (no mask of its size): NaN/inf anywhere,
    the last element included, is still found and counted."""
    from gpunn._checks import _FINITE_BLOCK, check_finite

    X = np.zeros(3 * _FINITE_BLOCK + 5, np.float32).reshape(-1, 1)
    check_finite("X", X)
    for at, value in ((0, np.nan), (2 * _FINITE_BLOCK + 1, np.inf), (X.size - 1, -np.inf)):
        bad = X.copy()
        bad[at] = value
        with pytest.raises(ValueError, match=r"X: expected finite values, got 1 NaN/inf"):
            check_finite("X", bad)


@pytest.mark.parametrize("batch_size,chunk_rows", [(1, 70), (32, 340), (None, 340), (50, 261)],
                         ids=["sgd", "one chunk", "full batch", "batch divides chunk"])
def test_ring_edge_cases_train_like_in_memory(backend, data, batch_size, chunk_rows):
    """The ring of one chunk plus a batch (the CPU) or two chunks plus a batch: batches of one
    row, one chunk (340 rows hold the 300 and a block), one batch of all rows, batches that
    never straddle (261 rows held: 3 chunks of 100, batch 50); unshuffled, the
    in-memory bits."""
    X, y = data
    expected, _ = train(X, y, shuffle=False, batch_size=batch_size)
    got, _ = train(X, y, shuffle=False, batch_size=batch_size, chunk_rows=chunk_rows)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("chunk_rows", [135, 167, 190, 299, 336, 337, 1000])
def test_streaming_holds_at_most_chunk_rows(data, chunk_rows):
    """The ring (a chunk, the rows a batch straddling two chunks needs, the read-ahead: a batch
    or an eighth of a chunk on the CPU, a chunk where copies overlap) and the block being read
    hold at most ``chunk_rows`` rows, with chunks as large as that allows; all 300 rows in one
    chunk from 337 on (the rows and a block of 37)."""
    from host_build import emulated_backend

    from gpunn.staging import StreamStep, stream_sources

    X, y = data
    for backend in ("cpu", emulated_backend()):
        with gpunn.use_backend(backend):
            model = gpunn.MLP([D, 8, K], output="softmax")
        Xs, ys, loss, T_shape, _ = stream_sources(model, X, y, None)
        if chunk_rows == 135 and backend != "cpu":  # chunks of 64, 31 rows, 64 ahead, 8: 167
            with pytest.raises(ValueError, match=r"^chunk_rows: expected at least 167 "):
                StreamStep(model, loss, gpunn.optim.get_optimizer("adam"), Xs, ys, T_shape, 32,
                           chunk_rows=chunk_rows)
            continue
        step = StreamStep(model, loss, gpunn.optim.get_optimizer("adam"), Xs, ys, T_shape, 32,
                          chunk_rows=chunk_rows)
        try:
            overlap = backend != "cpu"
            most = max(b - a for a, b in step.chunks)
            ahead = most if overlap else max(32, most // 8)
            block = len(step.stager._blocks["X"])
            assert step.stager.ring_rows == min(N, most + 31 + ahead)
            assert step.stager.device["X"].shape == (step.stager.ring_rows, D)
            assert block == max(1, most // 8)
            assert step.stager.ring_rows + block <= chunk_rows
            assert min(b - a for a, b in step.chunks) >= 32
            if len(step.chunks) > 1:  # one chunk fewer would not fit
                larger = -(-N // (len(step.chunks) - 1))
                assert held_rows(larger, 32, overlap, 4 * (D + 1)) > chunk_rows
            assert (len(step.chunks) == 1) == (chunk_rows >= 337)
        finally:
            step.close()


@pytest.mark.parametrize("chunk_rows, batch, least", [(134, 32, 135), (1, 1, 4), (336, None, 337)])
def test_too_few_rows_held_are_refused_naming_the_least(data, chunk_rows, batch, least):
    """Below two batches' chunks with the straddling rows, the read-ahead and a block (or the
    whole data and a block, when that is less), a ValueError naming the least that works,
    before any step: the model is untouched."""
    X, y = data
    model = gpunn.MLP([D, 8, K], output="softmax", seed=1)
    before = model.params.host().copy()
    with pytest.raises(ValueError, match=rf"^chunk_rows: expected at least {least} .*, got "
                                         rf"{chunk_rows}$"):
        gpunn.fit(model, X, y, epochs=1, batch_size=batch, chunk_rows=chunk_rows,
                  progress=False)
    np.testing.assert_array_equal(model.params.host(), before)

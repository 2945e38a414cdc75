"""Every public entry point checks its inputs through gpunn._checks: the same bad input
gives the same error everywhere, and lists, Fortran-ordered and strided arrays work like C ones."""

import re

import numpy as np
import pytest

import gpunn

Y = np.array([0, 1, 0, 1])


def net():
    return gpunn.MLP([3, 4, 2], activation="tanh", output="softmax", dtype="float64", seed=0)


# Every public entry point that takes X, as a call on a fresh model.
X_ENTRIES = {
    "forward": lambda X: net().forward(X),
    "predict": lambda X: net().predict(X),
    "predict_proba": lambda X: net().predict_proba(X),
    "loss_and_grad": lambda X: net().loss_and_grad(X, Y),
    "evaluate": lambda X: net().evaluate(X, Y),
    "fit": lambda X: gpunn.fit(net(), X, Y, epochs=1),
    "fit validation_data": lambda X: gpunn.fit(net(), np.ones((4, 3)), Y, epochs=1,
                                               validation_data=(X, Y)),
    "gradcheck": lambda X: gpunn.gradcheck(net(), X, Y),
}
# The prefix an entry point adds to say which of its arguments held the bad X.
PREFIX = {"fit validation_data": "validation_data: "}

BAD_X = [
    ("NaN", np.full((4, 3), np.nan), ValueError, "X: expected finite values, got 12 NaN/inf"),
    ("inf", np.where(np.eye(4, 3) > 0, np.inf, 1.0), ValueError,
     "X: expected finite values, got 3 NaN/inf"),
    ("wrong columns", np.ones((4, 2)), ValueError,
     r"X: expected 3 features \(columns\), got shape \(4, 2\)"),
    ("empty", np.ones((0, 3)), ValueError, r"X: expected a non-empty array, got shape \(0, 3\)"),
    ("strings", np.full((4, 3), "a"), TypeError, "X: expected numeric data, got dtype <U1"),
    ("objects", np.full((4, 3), None), TypeError, "X: expected numeric data, got dtype object"),
    ("3-D", np.ones((4, 3, 1)), ValueError, r"X: expected a 2-D array, got shape \(4, 3, 1\)"),
    ("1-D", np.ones(3), ValueError, r"X: expected a 2-D array, got shape \(3,\)"),
    ("ragged", [[1.0, 2.0, 3.0], [1.0]], ValueError, "X: expected a rectangular array"),
]


@pytest.mark.parametrize("X, error, match", [row[1:] for row in BAD_X],
                         ids=[row[0] for row in BAD_X])
def test_the_same_bad_X_gives_the_same_error_at_every_entry(backend, X, error, match):
    messages = {}
    for entry, call in X_ENTRIES.items():
        with pytest.raises(error, match=match) as caught:
            call(X)
        message = str(caught.value)
        assert message.startswith(PREFIX.get(entry, "X: ")), (entry, message)
        messages[entry] = message[len(PREFIX.get(entry, "")):]
    assert len(set(messages.values())) == 1, messages


BAD_ARGUMENTS = [
    ("Dense n_in", lambda: gpunn.Dense(0, 3), ValueError, r"n_in: expected an integer in \[1"),
    ("Dense activation", lambda: gpunn.Dense(2, 3, "swish"), ValueError, "activation: expected"),
    ("MLP sizes", lambda: gpunn.MLP([3]), ValueError, "sizes: expected a list"),
    ("MLP size type", lambda: gpunn.MLP([3, 2.5]), TypeError, r"sizes\[1\]: expected an int"),
    ("MLP dtype", lambda: gpunn.MLP([3, 2], dtype="int32"), TypeError, "dtype: expected float32"),
    ("Sequential layers", lambda: gpunn.Sequential([]), ValueError, "layers: expected a non-empty"),
    ("Sequential output", lambda: gpunn.Sequential([gpunn.Dense(2, 2, "identity")],
                                                   output="relu"), ValueError, "output: expected"),
    ("predict batch_size", lambda: net().predict(np.ones((4, 3)), batch_size=0), ValueError,
     r"batch_size: expected an integer in \[1"),
    ("loss_and_grad y", lambda: net().loss_and_grad(np.ones((4, 3)), [0, 1, 2, 3]), ValueError,
     r"y: expected labels in \[0, 2\)"),
    ("Adam lr", lambda: gpunn.Adam(lr=-1.0), ValueError, "lr: expected a finite number"),
    ("Adam betas", lambda: gpunn.Adam(betas=(0.9, 1.0)), ValueError, r"betas\[1\]: expected"),
    ("SGD lr type", lambda: gpunn.SGD(lr="0.1"), TypeError, "lr: expected a real number"),
    ("schedule rate", lambda: gpunn.Exponential(0.0), ValueError, "rate: expected"),
    ("schedule per", lambda: gpunn.Staircase(2, 0.5, per="batch"), ValueError, "per: expected"),
    ("gradcheck eps", lambda: gpunn.gradcheck(net(), np.ones((4, 3)), Y, eps=0), ValueError,
     "eps: expected a finite number"),
    ("use_backend", lambda: gpunn.use_backend("tpu"), ValueError, "backend: expected one of"),
    ("use_backend type", lambda: gpunn.use_backend(3), TypeError, "backend: expected a name"),
    ("save model", lambda: gpunn.save_checkpoint("x.npz", "net"), TypeError,
     "model: expected a Sequential"),
    ("load into", lambda: gpunn.load_checkpoint(__file__), gpunn.CheckpointError,
     "not a readable gpunn checkpoint"),
    ("load path type", lambda: gpunn.load(3), TypeError, "path: expected a file path, got int"),
    ("load into a non-model", lambda: gpunn.load_checkpoint(__file__, model="net"), TypeError,
     "model: expected a Sequential or MLP, got str"),
]


@pytest.mark.parametrize("call, error, match", [row[1:] for row in BAD_ARGUMENTS],
                         ids=[row[0] for row in BAD_ARGUMENTS])
def test_bad_arguments_at_every_entry_name_the_argument(backend, call, error, match):
    with pytest.raises(error, match=match):
        call()


def layouts(X):
    """The same values as a list, Fortran-ordered, and a strided view of a larger array."""
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3))
    wide[::2, ::3] = X
    strided = wide[::2, ::3]
    assert not strided.flags.c_contiguous and not np.asfortranarray(X).flags.c_contiguous
    return {"list": X.tolist(), "fortran": np.asfortranarray(X), "strided": strided}


def results(X, backend):
    model = net()
    loss = model.loss_and_grad(X, Y)
    grads = np.array(backend.to_numpy(model.flat_grads))
    return {"forward": backend.to_numpy(model.forward(X)), "proba": model.predict_proba(X),
            "predict": model.predict(X), "loss": loss, "grads": grads,
            "evaluate": model.evaluate(X, Y), "gradcheck": gpunn.gradcheck(net(), X, Y),
            "fit": gpunn.fit(net(), X, Y, epochs=2, batch_size=3).loss}


def test_lists_fortran_and_strided_inputs_give_the_same_results(backend):
    X = np.random.default_rng(0).normal(size=(4, 3))
    expected = results(X, backend)
    for name, variant in layouts(X).items():
        got = results(variant, backend)
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"{name}: {key}")


# Every public entry point that takes y, as a call on a fresh model.
Y_ENTRIES = {
    "fit": lambda y: gpunn.fit(net(), np.ones((4, 3)), y, epochs=1),
    "evaluate": lambda y: net().evaluate(np.ones((4, 3)), y),
    "loss_and_grad": lambda y: net().loss_and_grad(np.ones((4, 3)), y),
    "gradcheck": lambda y: gpunn.gradcheck(net(), np.ones((4, 3)), y),
}

BAD_Y = [
    ("None", None, TypeError, "y: expected an array of numbers, got None"),
    ("uint64 too large", np.array([0, 1, 2**64 - 1, 0], dtype=np.uint64), ValueError,
     r"y: expected labels in \[0, 2\) for 2 output units, got values in "
     r"\[0, 18446744073709551615\]"),
    ("masked", np.ma.masked_array(Y, mask=[0, 1, 0, 0]), TypeError,
     "y: expected a plain array, got a masked array"),
]


@pytest.mark.parametrize("y, error, match", [row[1:] for row in BAD_Y],
                         ids=[row[0] for row in BAD_Y])
def test_the_same_bad_y_gives_the_same_error_at_every_entry(backend, y, error, match):
    for call in Y_ENTRIES.values():
        with pytest.raises(error, match=match):
            call(y)


def test_uint64_labels_in_range_work(backend):
    model = net()
    assert model.loss_and_grad(np.ones((4, 3)), Y.astype(np.uint64)) == net().loss_and_grad(
        np.ones((4, 3)), Y)


def test_sparse_and_masked_X_are_refused_with_what_to_do(backend):
    sparse = pytest.importorskip("scipy.sparse")
    for call in X_ENTRIES.values():
        with pytest.raises(TypeError, match=r"X: expected a dense array; convert with "
                                            r"\.toarray\(\), got the sparse matrix scipy"):
            call(sparse.csr_matrix(np.ones((4, 3))))
        with pytest.raises(TypeError, match=r"X: expected a plain array, got a masked array"):
            call(np.ma.masked_array(np.ones((4, 3)), mask=np.eye(4, 3)))


def test_nothing_named_by_the_input_is_imported(backend):
    import sys

    class Crafted:
        """Looks enough like a device array to reach the finiteness check."""

        __cuda_array_interface__ = {}
        dtype, ndim, shape, size = np.dtype(np.float64), 2, (4, 3), 12

        def astype(self, *args, **kwargs):
            return self

    Crafted.__module__ = "this"  # a module with a side effect on import (it prints)
    sys.modules.pop("this", None)
    with pytest.raises(TypeError, match="X: expected a NumPy or CuPy array, got the device "
                                        "array this.Crafted"):
        net().predict(Crafted())
    assert "this" not in sys.modules


@pytest.mark.parametrize("call, match", [
    (lambda: gpunn.gradcheck(None, np.ones((4, 3)), Y), "model: expected a Sequential or MLP, "
                                                         "got NoneType"),
    (lambda: gpunn.fit(None, np.ones((4, 3)), Y), "model: expected a Sequential or MLP"),
    (lambda: gpunn.fit(net(), np.ones((4, 3)), Y, callbacks=3), "callbacks: expected a "
                                                                "callable, a list"),
], ids=["gradcheck None", "fit None", "callbacks int"])
def test_bad_models_and_callbacks_are_type_errors(backend, call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_callbacks_none_means_no_callbacks(backend):
    history = gpunn.fit(net(), np.ones((4, 3)), Y, epochs=2, callbacks=None)
    assert history.epoch == [1, 2]


@pytest.mark.parametrize("entry", ["predict", "evaluate", "fit X", "fit y", "regressor y"])
def test_a_finite_value_past_float32s_range_is_named_as_such(entry):
    """``1e39`` is finite as given; a float32 model cannot hold it. The error says so, not
    "NaN/inf" (which the cast would make of it)."""
    model = gpunn.MLP([3, 4, 1], dtype="float32", seed=0)
    X, y = np.ones((4, 3)), np.ones(4)
    big = np.where(np.eye(4, 3) > 0, -1e39, 1.0)
    calls = {"predict": lambda: model.predict(big), "evaluate": lambda: model.evaluate(big, y),
             "fit X": lambda: gpunn.fit(model, big, y, epochs=1),
             "fit y": lambda: gpunn.fit(model, X, np.array([1, 2, 1e39, 3]), epochs=1)}
    if entry == "regressor y":
        from gpunn.sklearn import GpunnRegressor

        calls[entry] = lambda: GpunnRegressor(hidden_layer_sizes=(4,), max_iter=1).fit(
            X, np.array([1, 2, 1e39, 3]))
    name = "y" if entry.endswith("y") else "X"
    count, shown = (1, "1e+39") if name == "y" else (3, "-1e+39")
    with pytest.raises(ValueError, match=rf"^{name}: expected values within float32's range "
                                         rf"\(magnitude at most 3.40282e\+38\), got {count} "
                                         rf"beyond it, such as {re.escape(shown)}; scale"):
        calls[entry]()
    with pytest.raises(ValueError, match=rf"^{name}: expected finite values, got 1 NaN/inf"):
        if name == "X":
            model.predict(np.where(np.eye(4, 3) > 0, np.where(np.eye(4, 3)[:, :1] > 0,
                                                               np.nan, 1.0), 1.0))
        else:
            gpunn.fit(model, X, np.array([1, 2, np.nan, 3]), epochs=1)


def test_a_longdouble_past_float64s_range_is_shown_as_given():
    model = gpunn.MLP([3, 4, 1], dtype="float64", seed=0)
    X = np.ones((4, 3), dtype=np.longdouble)
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("longdouble is float64 on this platform")
    X[1, 1] = np.longdouble("1e4000")
    with pytest.raises(ValueError, match=r"^X: expected values within float64's range .* got 1 "
                                         r"beyond it, such as 1e\+4000; scale"):
        model.predict(X)

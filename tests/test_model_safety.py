"""Copies that train like the original, one model per thread, and silent oddities refused:
softmax of one unit, optimizer state reused on another model, hyperparameters the model's
precision cannot hold."""

import copy
import pickle
import re
import threading

import numpy as np
import pytest

import gpunn


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    return rng.normal(size=(n, 4)) + y[:, None], y


def net(dtype="float32"):
    return gpunn.MLP([4, 6, 3], activation="tanh", output="softmax", dtype=dtype, seed=2)


def params(model):
    return np.array(model.backend.to_numpy(model.flat_params))


COPIES = {"deepcopy": copy.deepcopy, "copy": copy.copy,
          "pickle": lambda m: pickle.loads(pickle.dumps(m))}


@pytest.mark.parametrize("make_copy", COPIES.values(), ids=COPIES.keys())
def test_a_copy_trains_exactly_like_the_original(backend, make_copy):
    X, y = data()
    original = net()
    original.note = {"run": 1}
    clone = make_copy(original)
    assert clone.backend is backend and clone.note == {"run": 1}
    np.testing.assert_array_equal(params(clone), params(original))
    for layer in clone.layers:  # W and b are views of the copy's own buffer
        assert backend.xp.shares_memory(layer.W, clone.flat_params)
    expected = gpunn.fit(original, X, y, epochs=3, batch_size=8).loss
    got = gpunn.fit(clone, X, y, epochs=3, batch_size=8).loss
    assert got == expected and got[-1] < got[0]
    np.testing.assert_array_equal(params(clone), params(original))


def test_deepcopy_keeps_the_models_backend(backend):
    model = net()
    with gpunn.use_backend("cpu"):
        clone = copy.deepcopy(model)
    assert clone.backend is backend


def test_a_second_thread_using_a_model_in_fit_gets_a_clear_error(backend):
    X, y = data()
    model, inside, release, errors = net(), threading.Event(), threading.Event(), []

    def hold(epoch, history, model_):
        model_.predict(X)  # the thread in fit may use its model
        inside.set()
        release.wait(60)

    def train():
        try:
            gpunn.fit(model, X, y, epochs=1, callbacks=[hold])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=train)
    thread.start()
    try:
        assert inside.wait(60)
        with pytest.raises(RuntimeError, match="fit: this model is in use by another thread"):
            gpunn.fit(model, X, y, epochs=1)
        with pytest.raises(RuntimeError, match="predict: this model is in use"):
            model.predict(X)
    finally:
        release.set()
        thread.join()
    assert errors == []
    gpunn.fit(model, X, y, epochs=1)  # free again


def test_softmax_with_one_unit_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="expected at least 2 units with output='softmax'.*"
                                         "output='sigmoid' with 1 unit"):
        gpunn.MLP([4, 1], output="softmax")


CLAIMED = ("model: expected the model this optimizer's state was built on, got another one; use "
           "a new optimizer for each model (or move state on purpose with state_dict / "
           "load_state_dict(model=...))")


def test_optimizer_state_is_not_reused_on_another_model(backend):
    X, y = data()
    optimizer = gpunn.Adam(lr=0.01)
    first = net()
    gpunn.fit(first, X, y, optimizer=optimizer, epochs=1)
    gpunn.fit(first, X, y, optimizer=optimizer, epochs=1)  # the same model continues
    other = net()
    before = params(other)
    with pytest.raises(ValueError) as info:
        gpunn.fit(other, X, y, optimizer=optimizer, epochs=1)
    assert str(info.value) == CLAIMED
    np.testing.assert_array_equal(params(other), before)
    moved = gpunn.Adam(lr=0.01)
    moved.load_state_dict(optimizer.state_dict(), model=other)  # on purpose: allowed
    with pytest.raises(ValueError, match=re.escape(CLAIMED)):  # moved: it belongs to other now
        gpunn.fit(first, X, y, optimizer=moved, epochs=1)
    gpunn.fit(other, X, y, optimizer=moved, epochs=1)


def _torch_adam_step(p, g, state, lr):
    """One torch.optim.Adam step from gpunn's saved state (m, v, t): the trusted reference."""
    torch = pytest.importorskip("torch")
    param = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([param], lr=lr)
    adam.state[param] = {"step": torch.tensor(float(state["t"])),
                         "exp_avg": torch.tensor(state["state"]["m"], dtype=torch.float64),
                         "exp_avg_sq": torch.tensor(state["state"]["v"], dtype=torch.float64)}
    param.grad = torch.tensor(g, dtype=torch.float64)
    adam.step()
    return param.detach().numpy()


# copy.copy of a tuple is the tuple itself: the shallow copy copies each object.
PAIR_COPIES = {"deepcopy": copy.deepcopy, "pickle": COPIES["pickle"],
               "copy": lambda pair: tuple(copy.copy(x) for x in pair)}


@pytest.mark.parametrize("make_copy", PAIR_COPIES.values(), ids=PAIR_COPIES.keys())
def test_optimizers_still_pickle_and_copy_with_their_model(backend, make_copy):
    """A copied optimizer carries its state (m, v, t): its next update is torch's Adam step
    from the original's state, and the copy trains on exactly as the original does."""
    X, y = data()
    model, optimizer = net("float64"), gpunn.Adam(lr=0.01)
    gpunn.fit(model, X, y, optimizer=optimizer, epochs=1)
    saved = optimizer.state_dict()
    assert saved["t"] > 0
    clone_model, clone_optimizer = make_copy((model, optimizer))
    assert clone_model is not model and clone_optimizer is not optimizer
    got = clone_optimizer.state_dict()
    assert got["t"] == saved["t"] and got["lr"] == saved["lr"]
    for key in ("m", "v"):
        np.testing.assert_array_equal(got["state"][key], saved["state"][key])

    g = np.random.default_rng(3).normal(size=saved["state"]["m"].shape)
    expected = _torch_adam_step(params(clone_model), g, saved, saved["lr"])
    clone_model.flat_grads[...] = backend.asarray(g, clone_model.flat_grads.dtype)
    clone_optimizer.step(clone_model)
    np.testing.assert_allclose(params(clone_model), expected, rtol=1e-12, atol=1e-15)

    # Trains on as the original (not a copy made the same way) does.
    clone_model, clone_optimizer = make_copy((model, optimizer))
    start = params(model)
    gpunn.fit(model, X, y, optimizer=optimizer, epochs=1)
    gpunn.fit(clone_model, X, y, optimizer=clone_optimizer, epochs=1)
    assert not np.array_equal(params(model), start)
    np.testing.assert_array_equal(params(clone_model), params(model))


@pytest.mark.parametrize("make, dtype, match", [
    (lambda: gpunn.SGD(lr=1e39), "float32", r"lr: expected 0 or a value in \[1.175e-38, "),
    (lambda: gpunn.Adam(eps=1e-320), "float64", "eps: expected 0 or a value in"),
    (lambda: gpunn.Adam(eps=1e-40), "float32", "eps: expected 0 or a value in"),
    (lambda: gpunn.AdamW(weight_decay=1e39), "float32", "weight_decay: expected 0 or"),
    (lambda: gpunn.RMSprop(lr=1e-39), "float32", "lr: expected 0 or a value"),
], ids=["sgd lr 1e39", "adam eps 1e-320", "adam eps 1e-40 f32", "adamw wd", "lr 1e-39 f32"])
def test_hyperparameters_the_precision_cannot_hold_are_refused(backend, make, dtype, match):
    X, y = data()
    model = net(dtype)
    before = params(model)
    with pytest.raises(ValueError, match=match):
        gpunn.fit(model, X, y, optimizer=make(), epochs=1)
    np.testing.assert_array_equal(params(model), before)


F32 = np.finfo(np.float32)
EDGES = (float(F32.tiny), float(F32.max))  # the smallest normal, the largest finite
OUTSIDE = (float(np.nextafter(F32.tiny, 0, dtype=np.float64)),  # a hair below, a hair above
           float(F32.max) * (1 + 2.0**-40))


@pytest.mark.parametrize("name", ["lr", "eps", "weight_decay", "clip_norm", "clip_value"])
def test_the_normal_range_includes_both_ends(name):
    """float32's smallest normal number and its largest finite one are held; the float64
    values just outside them are refused (compared as Python floats, uncast)."""
    for value in EDGES:
        gpunn.Adam(**{name: value}).check_dtype(np.float32)
    for value in OUTSIDE:
        with pytest.raises(ValueError) as caught:
            gpunn.Adam(**{name: value}).check_dtype(np.float32)
        assert str(caught.value) == (
            f"{name}: expected 0 or a value in [1.175e-38, 3.403e+38] (normal float32 numbers, "
            f"the precision of the model), got {value!r}")


def test_the_same_values_are_fine_in_float64(backend):
    X, y = data()
    gpunn.fit(net("float64"), X, y, optimizer=gpunn.Adam(lr=1e-39, eps=1e-40), epochs=1)


def test_an_optimizer_pickled_before_t_and_base_lr_were_properties_loads():
    """Older pickles carry 't' and 'base_lr' in the instance dict; they become the step count
    and base rate the properties read."""
    legacy = gpunn.Adam(lr=0.01).__getstate__()
    legacy["t"], legacy["base_lr"] = legacy.pop("_t") + 7, legacy.pop("_base_lr") * 2
    optimizer = gpunn.Adam.__new__(gpunn.Adam)
    optimizer.__setstate__(legacy)
    assert (optimizer.t, optimizer.base_lr) == (7, 0.02)
    assert "t" not in vars(optimizer) and "base_lr" not in vars(optimizer)

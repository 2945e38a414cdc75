"""Optimizer checkpoints: state_dict / load_state_dict round trips and their errors."""

import numpy as np
import pytest
from test_optim import CASE_IDS, CASES, FlatModel, problem, run

from gpunn.optim import SGD, Adam, AdamW, Momentum, RMSprop, get_optimizer


def trained(backend, steps=4, dtype=np.float64):
    """An Adam optimizer after ``steps`` steps on a 5-parameter model, and the model."""
    model, optimizer = FlatModel(backend, np.ones(5, dtype)), Adam(0.01, betas=(0.8, 0.9))
    for _ in range(steps):
        model.set_grad(np.linspace(-1, 1, 5))
        optimizer.step(model)
    return optimizer, model


@pytest.mark.parametrize("name, hyperparameters", CASES, ids=CASE_IDS)
def test_resuming_from_a_state_dict_changes_nothing(backend, dtype, name, hyperparameters):
    p0, grads, factors = problem(steps=20)
    grads, lrs = grads.astype(dtype), hyperparameters["lr"] * factors
    straight = run(get_optimizer(name, **hyperparameters), FlatModel(backend, p0.astype(dtype)),
                   grads, lrs)
    first, model = get_optimizer(name, **hyperparameters), FlatModel(backend, p0.astype(dtype))
    run(first, model, grads[:10], lrs[:10])
    saved = first.state_dict()
    resumed = get_optimizer(saved["name"], lr=saved["base_lr"], **saved["hyperparameters"])
    resumed.load_state_dict(saved)
    assert (resumed.t, resumed.lr) == (10, lrs[9])
    moved = FlatModel(backend, model.params().astype(dtype))
    np.testing.assert_array_equal(run(resumed, moved, grads[10:], lrs[10:]), straight[10:])


def test_state_dict_holds_host_copies(backend):
    optimizer, _ = trained(backend)
    saved = optimizer.state_dict()
    assert {k: saved[k] for k in ("name", "lr", "base_lr", "t")} == {
        "name": "adam", "lr": 0.01, "base_lr": 0.01, "t": 4}
    assert saved["hyperparameters"] == {"betas": (0.8, 0.9), "eps": 1e-8, "weight_decay": 0.0,
                                        "eps_in_sqrt": False, "decay_biases": False,
                                        "clip_norm": None, "clip_value": None}
    assert all(type(a) is np.ndarray and a.shape == (5,) for a in saved["state"].values())
    saved["state"]["m"][:] = 7.0
    assert not np.any(backend.to_numpy(optimizer.state["m"]) == 7.0)
    assert Adam().state_dict()["state"] == {}


def test_loading_restores_hyperparameters_and_copies(backend):
    saved = trained(backend)[0].state_dict()
    optimizer = Adam(0.5, betas=(0.1, 0.2))
    optimizer.load_state_dict(saved)
    saved["state"]["v"][:] = 7.0
    assert (optimizer.betas, optimizer.base_lr, optimizer.t) == ((0.8, 0.9), 0.01, 4)
    assert not np.any(optimizer.state["v"] == 7.0)


def test_loading_with_a_model_moves_the_state_now(backend):
    saved = trained(backend, dtype=np.float32)[0].state_dict()
    optimizer = Adam()
    optimizer.load_state_dict(saved, model=FlatModel(backend, np.zeros(5, np.float32)))
    assert all(isinstance(a, backend.xp.ndarray) for a in optimizer.state.values())
    with pytest.raises(ValueError, match=r"optimizer state 'm': expected shape \(6,\) and "
                                         r"dtype float32 .* got \(5,\) and float32"):
        optimizer.load_state_dict(Adam(0.2).state_dict() | {"t": 4, "state": saved["state"]},
                                  model=FlatModel(backend, np.zeros(6, np.float32)))
    assert optimizer.base_lr == 0.01, "a failed load must leave the optimizer as it was"


def test_a_state_of_the_wrong_dtype_is_refused_at_the_next_step(backend):
    optimizer = Adam()
    optimizer.load_state_dict(trained(backend, dtype=np.float64)[0].state_dict())
    with pytest.raises(ValueError, match=r"optimizer state 'm': expected shape \(5,\) and "
                                         r"dtype float32 .* got \(5,\) and float64"):
        optimizer.step(FlatModel(backend, np.ones(5, np.float32)))


def _edit(saved, **changes):
    return {**saved, **changes}


BAD_STATE_DICTS = [
    (lambda s: [s], TypeError, "state_dict: expected a dict, got list"),
    (lambda s: {k: v for k, v in s.items() if k != "t"}, ValueError,
     "state_dict: expected keys ['name', 'lr', 'base_lr', 't', 'hyperparameters', 'state'], "
     + "got none for ['t']"),
    (lambda s: _edit(s, name="sgd"), ValueError, "state_dict['name']: expected 'adam', got 'sgd'"),
    (lambda s: _edit(s, t=-1), ValueError,
     "state_dict['t']: expected an integer in [0, 9007199254740992]"),
    (lambda s: _edit(s, lr=-1.0), ValueError, "lr: expected a finite number in [0.0, inf]"),
    (lambda s: _edit(s, hyperparameters={"betas": (0.9, 1.5)}), ValueError, "betas[1]"),
    (lambda s: _edit(s, hyperparameters=[("eps", 1e-8)]), TypeError,
     "state_dict['hyperparameters']: expected a dict, got list"),
    (lambda s: _edit(s, hyperparameters={"beta": 0.9}), TypeError,
     "state_dict['hyperparameters']: expected keywords among"),
    (lambda s: _edit(s, state={}), ValueError,
     "state_dict['state']: expected arrays ['m', 'v'], got []"),
    (lambda s: _edit(s, state={"m": s["state"]["m"]}), ValueError,
     "state_dict['state']: expected arrays ['m', 'v'], got ['m']"),
    (lambda s: _edit(s, state={"m": np.ones((5, 1)), "v": np.ones((5, 1))}), ValueError,
     "state_dict['state']['m']: expected a 1-D float32/float64 array, got shape (5, 1)"),
    (lambda s: _edit(s, state={"m": np.ones(5), "v": np.ones(4)}), ValueError,
     "state_dict['state']['v']: expected shape (5,) and dtype float64 like the others, got (4,)"),
]


@pytest.mark.parametrize("edit, error, message", BAD_STATE_DICTS,
                         ids=[str(i) for i in range(len(BAD_STATE_DICTS))])
def test_bad_state_dicts_are_named(backend, edit, error, message):
    saved = trained(backend)[0].state_dict()
    optimizer = Adam(0.5)
    with pytest.raises(error) as info:
        optimizer.load_state_dict(edit(saved))
    assert message in str(info.value)
    assert (optimizer.base_lr, optimizer.t, optimizer.state) == (0.5, 0, {})


@pytest.mark.parametrize("make", [lambda: SGD(0.1, momentum=0.5), lambda: Momentum(0.1),
                                  RMSprop], ids=["sgd", "momentum", "rmsprop"])
def test_every_optimizer_round_trips(backend, make):
    model, optimizer = FlatModel(backend, np.ones(3)), make()
    optimizer.step(model)
    saved = optimizer.state_dict()
    fresh = get_optimizer(saved["name"], lr=1.0, **saved["hyperparameters"])
    fresh.load_state_dict(saved)
    assert fresh.state_dict()["hyperparameters"] == saved["hyperparameters"]
    assert sorted(fresh.state) == sorted(saved["state"]) == sorted(optimizer.state_names)


@pytest.mark.parametrize("decay_biases", [False, True])
@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw"])
def test_weight_decay_reaches_the_weights_only_unless_decay_biases(backend, name, decay_biases):
    """A zero gradient: only decay moves a parameter, so W moves and b stays (or both move
    with decay_biases), every element as its own float64 update computes it."""
    import pickle

    import gpunn

    with gpunn.use_backend(backend):
        model = gpunn.MLP([3, 4, 2], activation="relu", dtype="float64", seed=0)
    before = backend.to_numpy(model.flat_params).copy()
    before[model.params.decay_end:] = 0.5  # biases start at 0, which no decay would move
    backend.copy_from_host(model.flat_params, before)
    model.flat_grads[...] = 0
    optimizer = get_optimizer(name, lr=0.1, weight_decay=0.5, decay_biases=decay_biases)
    optimizer.step(model)
    after, end = backend.to_numpy(model.flat_params), model.params.decay_end
    assert 0 < end < after.size
    weights, rest = slice(0, end), slice(end, None)
    if name == "sgd":  # p -= lr * (g + wd * p)
        np.testing.assert_allclose(after[weights], before[weights] - 0.1 * (0.5 * before[weights]),
                                   rtol=1e-15)
    else:
        moved = before[weights] != 0
        assert np.all(after[weights][moved] != before[weights][moved])
    if decay_biases:
        assert np.all((after[rest] != before[rest]) == (before[rest] != 0))
    else:
        np.testing.assert_array_equal(after[rest], before[rest])
    assert pickle.loads(pickle.dumps(optimizer)).decay_biases is decay_biases


def test_state_saved_before_decay_biases_keeps_decaying_every_parameter():
    """A state dict, checkpoint or pickle from before the option decayed biases too: a resumed
    run continues doing so; a new optimizer decays the weights only."""
    import pickle

    saved = Adam(0.01, weight_decay=0.1).state_dict()
    del saved["hyperparameters"]["decay_biases"]
    restored = Adam()
    restored.load_state_dict(saved)
    assert restored.decay_biases is True and Adam(weight_decay=0.1).decay_biases is False
    old = Adam(0.01, weight_decay=0.1)
    del old.__dict__["decay_biases"]  # an instance pickled before the option existed
    assert pickle.loads(pickle.dumps(old)).decay_biases is True
    assert pickle.loads(pickle.dumps(Momentum(0.1))).decay_biases is False


def test_state_without_weight_decay_takes_the_defaults():
    """Only a saved weight_decay without decay_biases means "from before the option": a state
    dict holding neither (keys left out take the constructor's defaults) gets AdamW's default
    decay of 0.01 on the weights only."""
    saved = AdamW(0.01).state_dict()
    del saved["hyperparameters"]["decay_biases"], saved["hyperparameters"]["weight_decay"]
    restored = AdamW(weight_decay=0.5, decay_biases=True)
    restored.load_state_dict(saved)
    assert (restored.weight_decay, restored.decay_biases) == (0.01, False)


def test_load_state_dict_bounds_the_update_count():
    """A crafted t of 10**30 raised a bare OverflowError at the first step; past 2**53 the
    count stops being exact: refused by name."""
    import gpunn
    from gpunn.optim.base import MAX_UPDATES

    model = gpunn.MLP([3, 4, 2], output="softmax", seed=0)
    optimizer = gpunn.optim.get_optimizer("adam", 0.01)
    gpunn.fit(model, np.ones((4, 3)), np.array([0, 1, 0, 1]), optimizer=optimizer, epochs=1,
              verbose=0)
    state = optimizer.state_dict()
    state["t"] = MAX_UPDATES + 1
    with pytest.raises(ValueError, match=r"state_dict\['t'\]: expected an integer in \[0, "
                                         r"9007199254740992\], got 9007199254740993"):
        gpunn.optim.get_optimizer("adam", 0.01).load_state_dict(state)

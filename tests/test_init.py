"""init=: the distributions of each weight initialization, PyTorch's default, and the config."""

import numpy as np
import pytest

import gpunn
from gpunn.layers import INITS, Dense

N_IN, N_OUT = 400, 300


def _host(model):
    """The model's parameters on the host (they live on the device on cuda)."""
    return model.backend.to_numpy(model.flat_params)


def _draw(init, activation="relu"):
    layer = Dense(N_IN, N_OUT, activation, init=init)
    rng = np.random.default_rng(0)
    return layer.initial_weights(rng), layer.initial_bias(rng)


@pytest.mark.parametrize("init, bound, std", [
    ("glorot_uniform", np.sqrt(6 / (N_IN + N_OUT)), np.sqrt(2 / (N_IN + N_OUT))),
    ("he_uniform", np.sqrt(6 / N_IN), np.sqrt(2 / N_IN)),
    ("he_normal", None, np.sqrt(2 / N_IN)),
    ("torch", 1 / np.sqrt(N_IN), 1 / np.sqrt(3 * N_IN)),
], ids=["glorot_uniform", "he_uniform", "he_normal", "torch"])
def test_weight_distributions(init, bound, std):
    W, b = _draw(init)
    assert W.shape == (N_IN, N_OUT)
    if bound is not None:
        assert np.abs(W).max() <= bound and np.abs(W).max() > 0.99 * bound
    assert abs(W.std() / std - 1) < 0.01 and abs(W.mean()) < 0.01 * std
    assert (b == 0).all() if init != "torch" else np.abs(b).max() <= 1 / np.sqrt(N_IN)


def test_torch_init_matches_nn_linear_bounds():
    torch = pytest.importorskip("torch")
    """PyTorch's nn.Linear default (kaiming_uniform, a=sqrt(5), and its bias rule)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(N_IN, N_OUT)
    W, b = _draw("torch")
    bound = 1 / np.sqrt(N_IN)
    for ours, theirs in ((W, linear.weight), (b, linear.bias)):
        theirs = theirs.detach().double().numpy()
        for values in (ours, theirs):
            assert 0.98 * bound < np.abs(values).max() <= bound
        assert abs(ours.std() / theirs.std() - 1) < 0.1


def test_auto_is_he_for_relu_and_glorot_otherwise():
    for activation, same_as in (("relu", "he_normal"), ("tanh", "glorot_uniform"),
                                ("identity", "glorot_uniform")):
        auto = _draw("auto", activation)[0]
        np.testing.assert_array_equal(auto, _draw(same_as, activation)[0])


@pytest.mark.parametrize("init", INITS)
def test_init_is_in_the_config_and_survives_a_checkpoint(tmp_path, init):
    model = gpunn.MLP([3, 5, 2], activation="relu", output="softmax", init=init, seed=4)
    assert {layer["init"] for layer in model.config()["layers"]} == {init}
    rebuilt = gpunn.Sequential.from_config(model.config())
    np.testing.assert_array_equal(_host(rebuilt), _host(model))
    model.save(tmp_path / "m.npz")
    assert gpunn.load(tmp_path / "m.npz").config() == model.config()


def test_unknown_init_is_named():
    with pytest.raises(ValueError, match=r"init: expected one of \['auto', 'glorot_uniform'"):
        gpunn.MLP([3, 2], init="xavier")


def test_default_is_glorot_uniform_for_every_activation():
    """Chosen by benchmarks/init_choice.py (README, "Weight initialization")."""
    for activation in ("relu", "tanh"):
        model = gpunn.MLP([3, 5, 2], activation=activation, seed=1)
        explicit = gpunn.MLP([3, 5, 2], activation=activation, seed=1, init="glorot_uniform")
        np.testing.assert_array_equal(_host(model), _host(explicit))

"""Training with dropout: PyTorch fed gpunn's masks (through the reference generator) trains
to the same parameters; a resumed run continues the same masks, bit for bit."""

import numpy as np
import pytest
import reference as ref

import gpunn
from gpunn.checkpoint import CheckpointError

SIZES, ROWS, BATCH, EPOCHS, P, SEED = [6, 16, 12, 3], 70, 16, 4, 0.3, 3  # 5 steps an epoch


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(ROWS, SIZES[0])).astype(np.float32), rng.integers(0, 3, size=ROWS)


def torch_training(torch, model, activation, X, y):
    """PyTorch's Adam on the same batches (in order), each hidden output multiplied by the
    mask the reference generator gives for (seed, layer, update count, element), scaled."""
    params = []
    for layer in model.layers:
        W = torch.tensor(model.backend.to_numpy(layer.W), requires_grad=True)
        b = torch.tensor(model.backend.to_numpy(layer.b), requires_grad=True)
        params += [W, b]
    optimizer = torch.optim.Adam(params, lr=0.01)
    scale = np.float32(1.0 / (1.0 - P))
    t = 0
    for _ in range(EPOCHS):
        for start in range(0, ROWS, BATCH):
            rows = slice(start, min(start + BATCH, ROWS))
            h = torch.from_numpy(X[rows])
            for i in range(len(SIZES) - 1):
                h = h @ params[2 * i] + params[2 * i + 1]
                if i < len(SIZES) - 2:
                    keep = ref.dropout_keep(SEED, i, t, np.arange(h.numel()), P)
                    mask = np.where(keep, scale, np.float32(0)).reshape(h.shape)
                    h = activation(h) * torch.from_numpy(mask)
            loss = torch.nn.functional.cross_entropy(h, torch.from_numpy(y[rows]).long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            t += 1
    return [p.detach().numpy() for p in params]


@pytest.mark.parametrize("activation, torch_name", [("relu", "relu"), ("tanh", "tanh"),
                                                    ("gelu", "gelu")],
                         ids=["relu", "tanh", "gelu"])
def test_twenty_steps_match_torch_fed_the_same_masks(backend, activation, torch_name):
    torch = pytest.importorskip("torch")
    X, y = data()
    model = gpunn.MLP(SIZES, activation=activation, output="softmax", dropout=P, seed=SEED)
    expected = torch_training(torch, model, getattr(torch.nn.functional, torch_name), X, y)
    history = gpunn.fit(model, X, y, optimizer="adam", lr=0.01, epochs=EPOCHS,
                        batch_size=BATCH, shuffle=False, progress=False)
    assert history.epoch == [1, 2, 3, 4]
    for actual, wanted in zip(model.parameters(), expected):
        ref.assert_close(backend.to_numpy(actual), wanted, np.float32, scale=10.0)
    # The masks matter: without them PyTorch ends elsewhere.
    plain = gpunn.MLP(SIZES, activation=activation, output="softmax", seed=SEED)
    gpunn.fit(plain, X, y, optimizer="adam", lr=0.01, epochs=EPOCHS, batch_size=BATCH,
              shuffle=False, progress=False)
    assert not np.allclose(backend.to_numpy(plain.flat_params),
                           backend.to_numpy(model.flat_params), rtol=1e-3, atol=1e-3)


def run(model, epochs, **kwargs):
    X, y = data()
    return gpunn.fit(model, X, y, optimizer="adam", lr=0.01, epochs=epochs, batch_size=BATCH,
                     seed=5, progress=False, **kwargs)


def classifier(seed=SEED):
    return gpunn.MLP(SIZES, activation="tanh", output="softmax", dropout=[0.5, 0.2], seed=seed)


def test_resume_continues_the_same_masks_bit_for_bit(backend, tmp_path):
    straight = classifier()
    expected = run(straight, 4)
    path = tmp_path / "run.npz"
    run(classifier(), 2, checkpoint_path=path)
    resumed = classifier()
    history = run(resumed, 4, resume_from=path)
    np.testing.assert_array_equal(backend.to_numpy(resumed.flat_params),
                                  backend.to_numpy(straight.flat_params))
    assert history.loss == expected.loss


def test_resume_into_a_model_of_another_seed_is_refused(backend, tmp_path):
    path = tmp_path / "run.npz"
    run(classifier(), 1, checkpoint_path=path)
    with pytest.raises(CheckpointError, match="model.seed: expected 3 as saved .*dropout.*got 9"):
        run(classifier(seed=9), 2, resume_from=path)


RES_SIZES = [6, 16, 16, 16, 3]  # a first layer, two pre-norm residual blocks, the output


def torch_residual_training(torch, model, activation, X, y):
    """PyTorch's Adam over the same batches through ``x + f(Linear(LN(x))) * m`` blocks (the
    branch dropped before the add), masks from the reference generator."""
    params, layers = [], []
    for layer in model.layers:
        host = [model.backend.to_numpy(a) for a in (layer.W, layer.b)]
        if layer.ln is not None:
            host += [model.backend.to_numpy(a) for a in (layer.ln.gamma, layer.ln.beta)]
        tensors = [torch.tensor(a, requires_grad=True) for a in host]
        params += tensors
        layers.append((layer, tensors))
    optimizer = torch.optim.Adam(params, lr=0.01)
    scale = np.float32(1.0 / (1.0 - P))
    t = 0
    for _ in range(EPOCHS):
        for start in range(0, ROWS, BATCH):
            rows = slice(start, min(start + BATCH, ROWS))
            h = torch.from_numpy(X[rows])
            for i, (layer, tensors) in enumerate(layers):
                stream = x = h
                if layer.ln is not None:
                    x = torch.nn.functional.layer_norm(x, (layer.n_in,), tensors[2],
                                                       tensors[3], eps=layer.ln.eps)
                h = x @ tensors[0] + tensors[1]
                if i < len(layers) - 1:
                    keep = ref.dropout_keep(SEED, i, t, np.arange(h.numel()), P)
                    mask = np.where(keep, scale, np.float32(0)).reshape(h.shape)
                    branch = activation(h) * torch.from_numpy(mask)
                    h = stream + branch if layer.residual else branch
            loss = torch.nn.functional.cross_entropy(h, torch.from_numpy(y[rows]).long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            t += 1
    return [p.detach().numpy() for p in params]


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_residual_blocks_drop_their_branch_as_torch_fed_the_same_masks(backend, activation):
    torch = pytest.importorskip("torch")
    X, y = data()
    model = gpunn.MLP(RES_SIZES, activation=activation, output="softmax", dropout=P, seed=SEED,
                      norm="layer", residual=True)
    assert [layer.residual for layer in model.layers] == [False, True, True, False]
    expected = torch_residual_training(torch, model, getattr(torch.nn.functional, activation),
                                       X, y)
    gpunn.fit(model, X, y, optimizer="adam", lr=0.01, epochs=EPOCHS, batch_size=BATCH,
              shuffle=False, progress=False)
    actual = []
    for layer in model.layers:
        actual += [layer.W, layer.b] + ([] if layer.ln is None else [layer.ln.gamma,
                                                                    layer.ln.beta])
    assert len(actual) == len(expected)
    for ours, wanted in zip(actual, expected):
        ref.assert_close(backend.to_numpy(ours), wanted, np.float32, scale=10.0)

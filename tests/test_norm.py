"""LayerNorm and residual blocks in models: PyTorch parity over 20 training steps, gradients,
bf16 statistics, checkpoints, resume, copies and argument checks."""

import re

import numpy as np
import pytest
import reference as ref
from reference_norm import layernorm_stats

import gpunn

SIZES, ROWS, BATCH, EPOCHS = [6, 16, 16, 16, 4], 32, 8, 5  # 20 steps
# (id, MLP keywords): pre-norm residual blocks, norm alone, residual alone.
VARIANTS = [
    ("norm_residual", {"norm": "layer", "residual": True}),
    ("norm", {"norm": "layer"}),
    ("residual", {"residual": True}),
]
VARIANT_IDS = [v[0] for v in VARIANTS]


def data(seed=0, rows=ROWS):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, SIZES[-1], rows)
    X = (rng.normal(size=(rows, SIZES[0])) + y[:, None]).astype(np.float32)
    return X, y


def model(backend, activation="gelu", precision="fp32", seed=3, **kwargs):
    with gpunn.use_backend(backend):
        built = gpunn.MLP(SIZES, activation=activation, output="softmax", seed=seed,
                          precision=precision, **kwargs)
    # gamma and beta away from 1 and 0, so a mix-up of the two (or with W, b) shows.
    host = built.params.host()
    for name, start, stop in built.param_ranges:
        if name.startswith(("gamma", "beta")):
            host[start:stop] += np.linspace(-0.3, 0.3, stop - start)
    built.params.load_host(host)
    return built


class TorchBlock:
    """Builds, independently of gpunn.export, the torch module of one gpunn layer:
    ``[x +] f(Linear(LN(x)))``."""

    @staticmethod
    def make(torch, layer, activation):
        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.norm = torch.nn.LayerNorm(layer.n_in) if layer.norm else None
                self.linear = torch.nn.Linear(layer.n_in, layer.n_out)
                self.act = activation

            def forward(self, x):
                h = self.act(self.linear(x if self.norm is None else self.norm(x)))
                return x + h if layer.residual else h

        return Block()


def torch_twin(torch, built):
    to_torch = torch.from_numpy
    blocks = []
    for i, layer in enumerate(built.layers):
        act = torch.nn.GELU() if i < len(built.layers) - 1 else torch.nn.Identity()
        block = TorchBlock.make(torch, layer, act)
        W, b = (built.backend.to_numpy(a) for a in (layer.W, layer.b))
        with torch.no_grad():
            block.linear.weight.copy_(to_torch(W.T.copy()))
            block.linear.bias.copy_(to_torch(b.copy()))
            if layer.ln is not None:
                block.norm.weight.copy_(to_torch(built.backend.to_numpy(layer.ln.gamma)))
                block.norm.bias.copy_(to_torch(built.backend.to_numpy(layer.ln.beta)))
        blocks.append(block)
    return torch.nn.Sequential(*blocks)


@pytest.mark.parametrize("variant", [v[1] for v in VARIANTS], ids=VARIANT_IDS)
def test_twenty_recorded_steps_match_torch(backend, variant):
    """fit's recorded step (Adam, 20 batches in order) against the same training in PyTorch:
    the losses of every step and every parameter, gamma and beta included."""
    torch = pytest.importorskip("torch")
    X, y = data()
    built = model(backend, **variant)
    net = torch_twin(torch, built)
    history = gpunn.fit(built, X, y, optimizer="adam", lr=0.01, epochs=EPOCHS,
                        batch_size=BATCH, shuffle=False, record_steps=True, progress=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for step in range(EPOCHS * ROWS // BATCH):
        rows = slice(step * BATCH % ROWS, step * BATCH % ROWS + BATCH)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(X[rows])),
                                                 torch.from_numpy(y[rows]).long())
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    steps = np.ravel(history.step_loss)
    ref.assert_close(steps, losses, np.float32, scale=10.0, err_msg="losses")
    for layer, block in zip(built.layers, net):
        pairs = [(layer.W, block.linear.weight.T), (layer.b, block.linear.bias)]
        if layer.ln is not None:
            pairs += [(layer.ln.gamma, block.norm.weight), (layer.ln.beta, block.norm.bias)]
        for ours, theirs in pairs:
            ref.assert_close(built.backend.to_numpy(ours), theirs.detach().numpy(), np.float32,
                             scale=10.0, err_msg=repr(layer))


@pytest.mark.parametrize("variant", [v[1] for v in VARIANTS], ids=VARIANT_IDS)
@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_gradients_match_central_differences(backend, variant, activation):
    X, y = data(rows=7)
    with gpunn.use_backend(backend):
        built = gpunn.MLP([6, 5, 5, 5, 4], activation=activation, output="softmax", **variant)
        # Zero biases and betas put relu exactly at its kink (z = 0) on a row that a dead
        # relu layer before a LayerNorm leaves constant; central differences cannot take that.
        noise = np.random.default_rng(1).normal(0.0, 0.05, built.params.size)
        built.params.load_host(built.params.host() + noise)
        assert gpunn.gradcheck(built, X, y) < 1e-6


def test_a_first_layer_with_a_norm_gets_its_gamma_and_beta_gradients(backend):
    X, y = data(rows=5)
    with gpunn.use_backend(backend):
        built = gpunn.Sequential([gpunn.Dense(6, 6, "silu", norm="layer", residual=True),
                                  gpunn.Dense(6, 4, "identity", norm="layer")],
                                 output="softmax")
        assert gpunn.gradcheck(built, X, y) < 1e-6


def test_bf16_keeps_float32_statistics(backend):
    """Under bf16 the row statistics come from the float32 activations: equal to float64 ones
    of the float32 input to float32 tolerance, and far from those of its bfloat16 rounding."""
    X, y = data()
    built = model(backend, precision="bf16", norm="layer", residual=True)
    views = built.new_workspace(ROWS, None).rows(ROWS)
    built.forward_pass(built.backend.asarray(X), views)
    A = built.backend.to_numpy(views["A1"])  # the input of layer 2 (a normalized block)
    mean, rstd = (built.backend.to_numpy(views[name]).ravel() for name in ("M2", "R2"))
    exact_mean, exact_rstd = layernorm_stats(A, A.shape[1], 1e-5)
    assert views["M2"].dtype == np.float32 and "N2" not in views  # bf16 bits only: Nh2
    ref.assert_close(mean, exact_mean, np.float32, scale=4)
    ref.assert_close(rstd, exact_rstd, np.float32, scale=4)
    rounded = ref.round_bf16(A)["out"]
    half_mean, _ = layernorm_stats(rounded, A.shape[1], 1e-5)
    assert np.max(np.abs(half_mean - exact_mean)) > 100 * np.max(np.abs(mean - exact_mean))


def test_bf16_training_follows_fp32(backend):
    X, y = data()
    losses = {}
    for precision in ("fp32", "bf16"):
        built = model(backend, precision=precision, norm="layer", residual=True)
        history = gpunn.fit(built, X, y, lr=0.01, epochs=EPOCHS, batch_size=BATCH,
                            shuffle=False, progress=False)
        losses[precision] = history.loss
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.05)
    assert losses["bf16"][-1] < 0.8 * losses["bf16"][0]


def test_checkpoint_round_trip_and_copy(backend, tmp_path):
    X, _ = data()
    built = model(backend, norm="layer", residual=True)
    path = built.save(tmp_path / "m.safetensors")
    loaded = gpunn.load(path)
    assert [repr(layer) for layer in loaded.layers] == [repr(layer) for layer in built.layers]
    np.testing.assert_array_equal(loaded.params.host(), built.params.host())
    np.testing.assert_array_equal(loaded.predict_proba(X), built.predict_proba(X))
    for clone in (built.copy(), built.copy(dtype="float64"), built.copy(precision="bf16")):
        assert clone.config()["layers"] == built.config()["layers"]
        np.testing.assert_allclose(clone.predict_proba(X), built.predict_proba(X),
                                   atol=2e-2 if clone.precision == "bf16" else 1e-6)


def test_resume_continues_bit_for_bit(backend, tmp_path):
    X, y = data()
    settings = dict(optimizer="adam", lr=0.01, batch_size=BATCH, seed=3, progress=False)
    straight = model(backend, norm="layer", residual=True)
    gpunn.fit(straight, X, y, epochs=4, **settings)
    gpunn.fit(model(backend, norm="layer", residual=True), X, y, epochs=2,
              checkpoint_path=tmp_path / "run.npz", **settings)
    resumed = model(backend, seed=9, norm="layer", residual=True)
    gpunn.fit(resumed, X, y, epochs=4, resume_from=tmp_path / "run.npz", **settings)
    np.testing.assert_array_equal(resumed.params.host(), straight.params.host())


def test_gamma_and_beta_start_at_ones_and_zeros_and_are_listed():
    built = gpunn.MLP([3, 4, 4, 4, 2], activation="relu", norm="layer", residual=True)
    names = [name for name, _, _ in built.param_ranges]
    # decayed weights first, then biases and norm parameters (one weight-decay boundary)
    assert names[:7] == ["W0", "W1", "W2", "W3", "b0", "b1", "gamma1"]
    assert built.params.decay_end == built.params.start("b0")
    layer = built.layers[1]
    np.testing.assert_array_equal(layer.ln.gamma, np.ones(4))
    np.testing.assert_array_equal(layer.ln.beta, np.zeros(4))
    assert built.parameters()[4] is layer.ln.gamma or np.shares_memory(
        built.parameters()[4], built.flat_params)
    assert built.n_params == sum(p.size for p in built.parameters())
    assert [layer.residual for layer in built.layers] == [False, True, True, False]
    assert [layer.norm for layer in built.layers] == [None, "layer", "layer", "layer"]


def test_plain_models_keep_their_config_and_layout():
    built = gpunn.MLP([3, 4, 2], activation="relu")
    assert built.config()["layers"][0] == {"n_in": 3, "n_out": 4, "activation": "relu",
                                           "init": "glorot_uniform"}
    # weights first (files of the earlier W0, b0, ... layout load converted:
    # tests/test_param_layout.py)
    assert [name for name, _, _ in built.param_ranges] == ["W0", "W1", "b0", "b1"]


@pytest.mark.parametrize("call, error, words", [
    (lambda: gpunn.Dense(3, 4, residual=True), ValueError, ["residual", "n_in=3", "n_out=4"]),
    (lambda: gpunn.Dense(3, 3, norm="batch"), ValueError, ["norm", "'layer'", "'batch'"]),
    (lambda: gpunn.Dense(3, 3, residual=1), TypeError, ["residual", "True or False"]),
    (lambda: gpunn.MLP([3, 8, 6, 2], residual=True), ValueError,
     ["residual", "equal hidden widths", "[8, 6]"]),
    (lambda: gpunn.MLP([3, 8, 2], residual=True), ValueError,
     ["residual", "at least 2 hidden layers"]),
    (lambda: gpunn.MLP([3, 8, 8, 2], norm="batch"), ValueError, ["norm", "'batch'"]),
], ids=["dense_widths", "dense_norm", "dense_residual_type", "mlp_widths", "mlp_one_hidden",
        "mlp_norm"])
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error) as caught:
        call()
    for word in words:
        assert word in str(caught.value)


def test_cli_trains_and_saves_a_residual_layernorm_model(capsys, tmp_path):
    from gpunn.cli import main

    code = main(["train", "--dataset", "digits", "--hidden", "32,32,32", "--activation",
                 "gelu", "--norm", "layer", "--residual", "--epochs", "3", "--save",
                 str(tmp_path / "m.safetensors")])
    out, err = capsys.readouterr()
    assert code == 0, err
    accuracy = float(out.rsplit("test accuracy ", 1)[1].split()[0])
    assert accuracy > 0.85  # 3 epochs; the default 20 reach the 0.95 of plain models
    restored = gpunn.load(tmp_path / "m.safetensors")
    assert [(layer.norm, layer.residual) for layer in restored.layers] == [
        (None, False), ("layer", True), ("layer", True), ("layer", False)]


@pytest.mark.parametrize("argv, match", [
    (["--norm", "batch"], "norm: expected one of \\['layer'\\], got 'batch'"),
    (["--hidden", "32,16", "--residual"], "residual: expected equal hidden widths.*\\[32, 16\\]"),
], ids=["norm", "widths"])
def test_cli_refuses_bad_norm_and_residual(capsys, argv, match):
    from gpunn.cli import main

    code = main(["train", "--dataset", "digits", "--epochs", "1", *argv])
    _, err = capsys.readouterr()
    assert code == 1 and re.search(match, err), err


def test_estimators_take_norm_and_residual():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.datasets import load_digits

    from gpunn.sklearn import GpunnClassifier

    X, y = load_digits(return_X_y=True)
    estimator = GpunnClassifier(hidden_layer_sizes=(32, 32, 32), activation="gelu",
                                norm="layer", residual=True, max_iter=10, random_state=0)
    estimator.fit(X / 16.0, y)
    assert [layer.residual for layer in estimator.model_.layers] == [False, True, True, False]
    assert estimator.score(X / 16.0, y) > 0.8
    assert clone(estimator).get_params()["norm"] == "layer"
    for bad, error in ((dict(norm="batch"), ValueError), (dict(residual="yes"), TypeError)):
        with pytest.raises(error, match=next(iter(bad))):
            GpunnClassifier(**bad).fit(X, y)
    with pytest.raises(ValueError, match=r"residual: expected equal hidden widths.*\[32, 16\]"):
        GpunnClassifier(hidden_layer_sizes=(32, 16), residual=True).fit(X, y)


# Kernels whose arithmetic is +, -, *, / and sqrt only (correctly rounded everywhere), with
# activations that need no transcendental (the twins' exp is vecmath's, the host build's the C
# library's): these must agree bit for bit between the Numba twins and the host-built .cu.
SAME_BITS = {"layernorm_fwd", "layernorm_fwd_bf16", "layernorm_bwd", "layernorm_bwd_params",
             "residual_add", "bias_act_residual", "bias_act_residual_bf16", "residual_act_bwd",
             "residual_act_bwd_bf16"}


def _same_bits_cases():
    from kernel_cases import CASES

    return [case for case in CASES if case.kernel in SAME_BITS
            and case.variant in ("rows", "plain", "residual", "columns", "sum", "identity",
                                 "relu", "leaky_relu")]


@pytest.mark.parametrize("case", _same_bits_cases(), ids=lambda case: case.id)
def test_cpu_and_cuda_emulated_give_the_same_bits(case):
    from host_build import emulated_backend
    from kernel_cases import SHAPES, Inputs, run_on_backend

    from gpunn.backends.cpu import CpuBackend

    cpu, emulated = CpuBackend(), emulated_backend()
    for dtype in case.dtypes:
        rng = np.random.default_rng(7)
        for rows, cols in SHAPES + [(9, 512)]:
            args = case.args(Inputs(rng, dtype), rows, cols)
            ours, theirs = run_on_backend(cpu, case, args), run_on_backend(emulated, case, args)
            for name in ours:
                np.testing.assert_array_equal(ours[name], theirs[name],
                                              err_msg=f"{case.id} {name} {rows}x{cols}")

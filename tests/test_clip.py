"""Gradient clipping by global norm and by value (gpunn.optim.clip), in the recorded step:
against PyTorch's clip_grad_norm_ / clip_grad_value_ over 20 steps of fit, the clipped
gradient itself, the same bits on cpu and cuda-emulated, exact resume, hostile arguments."""

import math

import numpy as np
import pytest
import reference as ref
import reference_clip
from test_resume import rewrite_header
from test_torch_parity import torch_twin

import gpunn
from gpunn.backends.cpu import CpuBackend
from gpunn.control import Control
from gpunn.optim import get_optimizer
from gpunn.optim.clip import Clip, partials

SIZES, ROWS, BATCH, EPOCHS = [5, 8, 6, 3], 32, 8, 5  # 4 steps an epoch: 20 steps

# (name, torch class, optimizer keywords, clip keywords): clip_norm low enough that almost
# every step is clipped, clip_value below most entries; SGD with coupled decay checks that
# the clip comes before the decay term, as in PyTorch.
CASES = [
    ("adam", "Adam", {"lr": 0.01}, {"clip_norm": 0.1}),
    ("sgd", "SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, {"clip_norm": 0.1}),
    ("adamw", "AdamW", {"lr": 0.01, "weight_decay": 0.05}, {"clip_value": 0.01}),
    ("rmsprop", "RMSprop", {"lr": 0.01}, {"clip_norm": 0.2, "clip_value": 0.02}),
]


def data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(ROWS, SIZES[0])).astype(np.float32),
            rng.integers(0, SIZES[-1], size=ROWS))


def model_of(backend=None, seed=3, **kwargs):
    with gpunn.use_backend(backend or gpunn.get_backend()):
        return gpunn.MLP(SIZES, activation="relu", output="softmax", dtype="float32",
                         seed=seed, **kwargs)


def params(model):
    return np.array(model.backend.to_numpy(model.flat_params))


def grads(model):
    return np.array(model.backend.to_numpy(model.flat_grads), dtype=np.float64)


@pytest.mark.parametrize("name, torch_class, hyper, clip", CASES,
                         ids=[f"{c[0]}-{'-'.join(c[3])}" for c in CASES])
def test_fit_matches_torch_clip_grad(backend, name, torch_class, hyper, clip):
    """20 steps of fit (recorded, replayed) against PyTorch clipping .grad before step()."""
    torch = pytest.importorskip("torch")
    X, y = data()
    model = model_of(backend)
    net = torch_twin(torch, model, torch.nn.ReLU)
    groups = [{"params": [linear.weight for linear in net[::2]]},
              {"params": [linear.bias for linear in net[::2]], "weight_decay": 0.0}]
    reference = getattr(torch.optim, torch_class)(groups, **hyper)
    norms, largest = [], []
    for _ in range(EPOCHS):
        for start in range(0, ROWS, BATCH):
            rows = slice(start, start + BATCH)
            reference.zero_grad()
            torch.nn.functional.cross_entropy(net(torch.from_numpy(X[rows])),
                                              torch.from_numpy(y[rows]).long()).backward()
            if "clip_norm" in clip:
                norms.append(float(torch.nn.utils.clip_grad_norm_(net.parameters(),
                                                                  clip["clip_norm"])))
            if "clip_value" in clip:
                largest.append(max(float(p.grad.abs().max()) for p in net.parameters()))
                torch.nn.utils.clip_grad_value_(net.parameters(), clip["clip_value"])
            reference.step()
    optimizer = get_optimizer(name, **hyper, **clip)
    gpunn.fit(model, X, y, optimizer=optimizer, epochs=EPOCHS, batch_size=BATCH, shuffle=False)
    # The clip was in effect: a run that skipped it would follow another trajectory.
    assert sum(n > clip.get("clip_norm", math.inf) for n in norms) >= 0.75 * len(norms)
    assert sum(v > clip.get("clip_value", math.inf) for v in largest) >= 0.75 * len(largest)
    for layer, linear in zip(model.layers, net[::2]):
        ref.assert_close(backend.to_numpy(layer.W), linear.weight.detach().numpy().T,
                         np.float32, scale=10.0, err_msg="W")
        ref.assert_close(backend.to_numpy(layer.b), linear.bias.detach().numpy(),
                         np.float32, scale=10.0, err_msg="b")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_step_leaves_the_clipped_gradient(backend, precision):
    """After a step, flat_grads is the gradient the update used: its norm is clip_norm (the
    float32 master gradient of a bf16 model too), its entries within clip_value; unclipped,
    the same step's gradient is larger, so a skipped clip fails here."""
    X, y = data()
    one_step = {"epochs": 1, "batch_size": ROWS, "shuffle": False}
    plain = model_of(backend, precision=precision)
    gpunn.fit(plain, X, y, optimizer="sgd", lr=0.1, **one_step)
    norm = math.sqrt(np.sum(grads(plain) ** 2))
    assert norm > 0.2
    clipped = model_of(backend, precision=precision)
    gpunn.fit(clipped, X, y, optimizer=get_optimizer("sgd", lr=0.1, clip_norm=0.1), **one_step)
    np.testing.assert_allclose(math.sqrt(np.sum(grads(clipped) ** 2)), 0.1, rtol=1e-5)
    np.testing.assert_allclose(grads(clipped), grads(plain) * (0.1 / (norm + 1e-6)),
                               rtol=1e-5, atol=1e-7)
    small = float(np.abs(grads(plain)).max()) / 3
    valued = model_of(backend, precision=precision)
    gpunn.fit(valued, X, y, optimizer=get_optimizer("sgd", lr=0.1, clip_value=small),
              **one_step)
    np.testing.assert_array_equal(grads(valued), np.clip(grads(plain), -np.float32(small),
                                                         np.float32(small)))


@pytest.mark.parametrize("n", [1, 31, 33, 4099, 100_003])
def test_the_norm_has_the_same_bits_on_cpu_and_cuda_emulated(n):
    """The fixed-shape reduction: the same partial sums in the same order on both backends,
    close to the exactly rounded norm; the scaled gradients bit for bit equal. (Whole trainings
    differ in the last bits between the two with or without clipping: their GEMMs do.)"""
    emulated = pytest.importorskip("host_build").emulated_backend()
    cpu = CpuBackend()
    g = (np.random.default_rng(n).standard_normal(n) * 3).astype(np.float32)
    results = []
    for be in (cpu, emulated):
        device = be.asarray(g.copy())
        clip = Clip(clip_norm=1.0)
        clip.launch(be, device, Control(be, np.float32, 1).ctrl)
        results.append((be.to_numpy(clip._scratch), be.to_numpy(device)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    total = results[0][0][-1]
    np.testing.assert_allclose(math.sqrt(float(total)), reference_clip.global_norm(g), rtol=1e-6)


def test_resume_restores_the_clipping_and_continues_bit_for_bit(backend, tmp_path):
    X, y = data()
    kwargs = {"batch_size": BATCH, "seed": 4}
    straight = model_of(backend)
    gpunn.fit(straight, X, y, optimizer=get_optimizer("adam", clip_norm=0.1), epochs=4,
              **kwargs)
    path = tmp_path / "run.safetensors"
    gpunn.fit(model_of(backend), X, y, optimizer=get_optimizer("adam", clip_norm=0.1),
              epochs=2, checkpoint_path=path, **kwargs)
    assert gpunn.load_checkpoint(path).optimizer.clip_norm == 0.1
    resumed = model_of(backend, seed=8)
    # Named without clipping: the checkpoint's hyperparameters, clipping included, are restored.
    gpunn.fit(resumed, X, y, optimizer="adam", epochs=4, resume_from=path, **kwargs)
    np.testing.assert_array_equal(params(resumed), params(straight))


def test_a_nonfinite_norm_skips_the_update(backend):
    """Finite float32 entries whose squares overflow: the norm is inf, the step non-finite."""
    model = model_of(backend)
    optimizer = get_optimizer("sgd", lr=0.1, clip_norm=1.0)
    before = params(model)
    model.backend.copy_from_host(model.flat_grads, np.full(model.flat_grads.size, 1e20, np.float32))
    optimizer.step(model)
    np.testing.assert_array_equal(params(model), before)
    unclipped = get_optimizer("sgd", lr=0.1)
    unclipped.step(model)
    assert not np.array_equal(params(model), before)


def test_an_overflowing_norm_stops_fit_before_the_update(backend):
    """A finite loss and gradient whose squares overflow float32: with clip_norm the step is
    non-finite (not applied), as a NaN gradient is, and the model keeps its parameters."""
    X, y = data()
    X[:, 1] = 1e30  # the logits and the loss stay finite
    model = model_of(backend)
    before = params(model)
    with pytest.raises(gpunn.TrainingDiverged) as caught:
        gpunn.fit(model, X, y, optimizer=get_optimizer("sgd", lr=0.1, clip_norm=1.0),
                  epochs=1, batch_size=ROWS)
    assert math.isfinite(caught.value.loss) and not caught.value.bad_update
    np.testing.assert_array_equal(params(model), before)


IN_RANGE = "expected a finite number in (0.0, inf], got"
BAD = [(0, ValueError, f"{IN_RANGE} 0.0"), (-1.0, ValueError, f"{IN_RANGE} -1.0"),
       (math.nan, ValueError, f"{IN_RANGE} nan"), (math.inf, ValueError, f"{IN_RANGE} inf"),
       ("1", TypeError, "expected a real number, got str"),
       (True, TypeError, "expected a real number, got bool"),
       ([1.0], TypeError, "expected a real number, got list")]


@pytest.mark.parametrize("keyword", ["clip_norm", "clip_value"])
@pytest.mark.parametrize("value, error, message", BAD, ids=[repr(v) for v, _, _ in BAD])
def test_bad_clip_arguments_name_the_argument(keyword, value, error, message):
    """The whole message: the keyword, what it takes, what it got (constructor and setter)."""
    for name in ("sgd", "momentum", "rmsprop", "adam", "adamw"):
        with pytest.raises(error) as caught:
            get_optimizer(name, lr=0.1, **{keyword: value})
        assert str(caught.value) == f"{keyword}: {message}"
    optimizer = get_optimizer("adam")
    with pytest.raises(error) as caught:
        setattr(optimizer, keyword, value)
    assert str(caught.value) == f"{keyword}: {message}"
    assert getattr(optimizer, keyword) is None


# (gradient entries, first and second reduction's partial sums): ceil(n / 32) sums of at most
# 32 entries each, at most 2**18 of them, then at most 512; worked out by hand.
SHAPES = [(1, (1, 1)), (32, (1, 1)), (33, (2, 2)), (16_384, (512, 512)),
          (16_385, (513, 512)), (100_003, (3_126, 512)), (2**23, (2**18, 512)),
          (2**23 + 1, (2**18, 512))]


@pytest.mark.parametrize("n, expected", SHAPES, ids=[str(n) for n, _ in SHAPES])
def test_the_reduction_shape_depends_on_the_size_alone(n, expected):
    """The shape every backend reduces the norm in (the bits depend on it): a sequential sum
    (one partial) or an empty partial would pass the norm tests, not this one."""
    assert partials(n) == expected


def test_the_scratch_is_made_once_per_backend_dtype_and_size(backend):
    """A launch reuses the scratch while the gradient's dtype and size stay (a recorded step
    holds it), and makes another when either changes; every launch clips to the norm of its
    own gradient (float64 reference)."""
    clip = Clip(clip_norm=1.0)
    rng = np.random.default_rng(5)
    scratch = None
    for n, dtype, same in [(33, np.float32, False), (33, np.float32, True),
                           (33, np.float64, False), (100_003, np.float64, False),
                           (100_003, np.float64, True), (100_003, np.float32, False)]:
        g = rng.standard_normal(n).astype(dtype)
        device = backend.asarray(g.copy())
        clip.launch(backend, device, Control(backend, dtype, 1).ctrl)
        p1, p2 = partials(n)
        assert (clip._scratch is scratch) == same
        assert (clip._scratch.dtype, clip._scratch.size) == (dtype, p1 + p2 + 1)
        scratch = clip._scratch
        norm = reference_clip.global_norm(g)
        np.testing.assert_allclose(math.sqrt(float(backend.to_numpy(scratch)[-1])), norm,
                                   rtol=1e-6)
        np.testing.assert_allclose(backend.to_numpy(device),
                                   g * reference_clip.clip_factor(norm, 1.0), rtol=1e-6)


@pytest.mark.parametrize("clip_norm, clip_value, clips", [
    (None, None, False), (1.0, None, True), (None, 0.5, True), (1.0, 0.5, True)],
    ids=["neither", "norm", "value", "both"])
def test_a_clip_is_true_when_it_clips(clip_norm, clip_value, clips):
    assert bool(Clip(clip_norm, clip_value)) is clips


def test_a_threshold_outside_float32_is_refused_before_training():
    X, y = data()
    model = model_of()
    before = params(model)
    with pytest.raises(ValueError, match="clip_value"):
        gpunn.fit(model, X, y, optimizer=get_optimizer("adam", clip_value=1e-60), epochs=1)
    np.testing.assert_array_equal(params(model), before)


@pytest.mark.parametrize("value, error", [(-1.0, ValueError), ("big", TypeError)])
def test_a_crafted_checkpoint_clip_is_refused(tmp_path, value, error):
    X, y = data()
    path = tmp_path / "a.safetensors"
    gpunn.fit(model_of(), X, y, optimizer=get_optimizer("adam", clip_norm=0.1), epochs=1,
              batch_size=BATCH, checkpoint_path=path)
    header = rewrite_header(path)
    optimizer = dict(header["optimizer"])
    optimizer["hyperparameters"] = dict(optimizer["hyperparameters"], clip_norm=value)
    rewrite_header(path, optimizer=optimizer)
    with pytest.raises((error, gpunn.CheckpointError), match="clip_norm"):
        gpunn.load_checkpoint(path)


def test_copies_and_pickles_keep_the_clipping_apart():
    import copy
    import pickle

    optimizer = get_optimizer("adam", clip_norm=0.5, clip_value=0.1)
    for twin in (copy.copy(optimizer), copy.deepcopy(optimizer),
                 pickle.loads(pickle.dumps(optimizer))):
        assert (twin.clip_norm, twin.clip_value) == (0.5, 0.1)
        twin.clip_norm = 2.0
        assert optimizer.clip_norm == 0.5
    state = optimizer.state_dict()
    assert state["hyperparameters"]["clip_norm"] == 0.5
    fresh = get_optimizer("adam")
    fresh.load_state_dict(state)
    assert (fresh.clip_norm, fresh.clip_value) == (0.5, 0.1)


def test_the_cli_clips(capsys, monkeypatch):
    """gpunn train --clip-norm / --clip-value reach the optimizer fit uses; bad values exit 1
    naming the flag before any data is read."""
    from gpunn import cli, train

    used = []
    real_fit = train.fit
    monkeypatch.setattr(train, "fit", lambda *a, **k: used.append(k) or real_fit(*a, **k))
    argv = ["train", "--dataset", "synthetic", "--hidden", "8", "--epochs", "1"]
    assert cli.main([*argv, "--clip-norm", "0.5", "--clip-value", "0.1", "--lr", "0.01"]) == 0
    optimizer = used[-1]["optimizer"]
    assert (optimizer.name, optimizer.lr, optimizer.clip_norm, optimizer.clip_value) == (
        "adam", 0.01, 0.5, 0.1)
    assert cli.main(argv) == 0 and used[-1]["optimizer"] == "adam"
    capsys.readouterr()
    for flag, value in (("--clip-norm", "0"), ("--clip-value", "nan"), ("--clip-norm", "-2")):
        assert cli.main([*argv, flag, value]) == 1
        assert flag in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.*max_iter=")
def test_the_estimators_clip():
    pytest.importorskip("sklearn")
    from gpunn.sklearn import GpunnClassifier, GpunnRegressor

    X, y = data()
    clf = GpunnClassifier(hidden_layer_sizes=(8,), max_iter=2, clip_norm=0.1, clip_value=0.01,
                          random_state=0).fit(X, y)
    assert (clf._optimizer.clip_norm, clf._optimizer.clip_value) == (0.1, 0.01)
    assert clf.get_params()["clip_norm"] == 0.1
    reg = GpunnRegressor(hidden_layer_sizes=(8,), max_iter=1, clip_value=0.5, random_state=0)
    assert reg.fit(X, y.astype(float))._optimizer.clip_value == 0.5
    for keyword, value, error in (("clip_norm", -1.0, ValueError),
                                  ("clip_value", "x", TypeError)):
        with pytest.raises(error, match=keyword):
            GpunnClassifier(max_iter=1, **{keyword: value}).fit(X, y)


def test_optimizers_saved_before_clipping_load_without_it():
    """A pickle or state dict from before the option (no clip keys) means no clipping."""
    from gpunn.optim import Adam

    old = get_optimizer("adam", clip_norm=0.5).__getstate__()
    del old["_clip"]
    unpickled = Adam.__new__(Adam)
    unpickled.__setstate__(old)
    assert (unpickled.clip_norm, unpickled.clip_value) == (None, None)
    state = get_optimizer("adam").state_dict()
    for key in ("clip_norm", "clip_value"):
        del state["hyperparameters"][key]
    loaded = get_optimizer("adam", clip_norm=2.0, clip_value=1.0)
    loaded.load_state_dict(state)
    assert (loaded.clip_norm, loaded.clip_value) == (None, None)


def test_a_streamed_fit_clips_as_in_memory(backend):
    """Streamed chunks run the same recorded step: unshuffled, the same bits as in memory."""
    X, y = data()
    results = []
    for chunk_rows in (None, 36):
        model = model_of(backend)
        gpunn.fit(model, X, y, optimizer=get_optimizer("adam", clip_norm=0.1, clip_value=0.05),
                  epochs=2, batch_size=BATCH, shuffle=False, chunk_rows=chunk_rows)
        results.append(params(model))
    np.testing.assert_array_equal(*results)
    plain = model_of(backend)
    gpunn.fit(plain, X, y, optimizer="adam", epochs=2, batch_size=BATCH, shuffle=False,
              chunk_rows=36)
    assert not np.allclose(params(plain), results[1], rtol=1e-3)

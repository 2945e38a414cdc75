"""Optimizers against float64 references and torch.optim, on every backend and dtype."""

import numpy as np
import pytest
import reference as ref
from reference_precision import assert_bf16_equal, round_to_mantissa

from gpunn.optim import OPTIMIZERS, SGD, Adam, AdamW, Momentum, RMSprop, get_optimizer

N, STEPS = 37, 60

# One row per optimizer variant (optax-style), kept beside the references: a new optimizer
# is its references and one more row there.
CASES = ref.OPTIMIZER_CASES
CASE_IDS = [f"{name}-{'-'.join(map(str, kw))}" for name, kw in CASES]

# torch.optim classes take the same keyword names as gpunn's.
TORCH_CASES = [
    ("sgd", "SGD", {"lr": 0.1, "weight_decay": 0.01}),
    ("sgd", "SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.2,
                              "weight_decay": 0.01}),
    ("sgd", "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                              "weight_decay": 0.01}),
    ("rmsprop", "RMSprop", {"lr": 0.01}),
    ("rmsprop", "RMSprop", {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.05}),
    ("adam", "Adam", {"lr": 0.01}),
    ("adam", "Adam", {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.05}),
    ("adamw", "AdamW", {"lr": 0.01}),
    ("adamw", "AdamW", {"lr": 0.01, "weight_decay": 0.1}),
]


class FlatModel:
    """Just what an optimizer reads from a model: the flat buffers and their backend."""

    def __init__(self, backend, params):
        self.backend = backend
        self.flat_params = backend.asarray(params)
        self.flat_grads = backend.zeros(params.shape, params.dtype)

    def set_grad(self, g):
        self.flat_grads[...] = self.backend.asarray(g, self.flat_grads.dtype)

    def params(self):
        return np.array(self.backend.to_numpy(self.flat_params), dtype=np.float64)


class Bf16Model(FlatModel):
    """A bf16 model as an optimizer sees it: float32 parameters, their bfloat16 working copy
    (``flat_work``) and, optionally, the end of the weights that decay (``params.decay_end``,
    read as a model's layout: it replaces the ``params()`` method)."""

    def __init__(self, backend, params, decay_end=None):
        super().__init__(backend, params.astype(np.float32))
        self.flat_work = backend.bf16_zeros(params.shape)
        if decay_end is not None:
            self.params = type("Layout", (), {"decay_end": decay_end})()


def problem(seed=0, n=N, steps=STEPS):
    """Initial parameters, a gradient sequence and a decaying learning-rate factor per step."""
    rng = np.random.default_rng(seed)
    factors = 1.0 / (1.0 + 0.05 * np.arange(steps))
    return rng.normal(size=n), rng.normal(size=(steps, n)), factors


def run(optimizer, model, grads, lrs):
    """Step ``optimizer`` over ``grads`` with ``lr`` set per step, as a schedule would."""
    trajectory = []
    for g, lr in zip(grads, lrs):
        optimizer.lr = lr
        model.set_grad(g)
        optimizer.step(model)
        trajectory.append(model.params())
    return np.array(trajectory)


@pytest.mark.parametrize("name, hyperparameters", CASES, ids=CASE_IDS)
def test_matches_float64_reference(backend, dtype, name, hyperparameters):
    p0, grads, factors = problem()
    lrs = hyperparameters["lr"] * factors
    model = FlatModel(backend, p0.astype(dtype))
    optimizer = get_optimizer(name, **hyperparameters)
    got = run(optimizer, model, grads.astype(dtype), lrs)
    rest = {k: v for k, v in hyperparameters.items() if k != "lr"}
    expected = getattr(ref, f"run_{name}")(p0.astype(dtype), grads.astype(dtype), lrs, **rest)
    ref.assert_close(got, expected, dtype, err_msg=f"{name} {hyperparameters}")
    assert optimizer.t == STEPS


@pytest.mark.parametrize("name, torch_class, hyperparameters", TORCH_CASES,
                         ids=[f"{c[0]}-{'-'.join(c[2])}" for c in TORCH_CASES])
def test_matches_torch_optim(backend, name, torch_class, hyperparameters):
    torch = pytest.importorskip("torch")
    torch_class = getattr(torch.optim, torch_class)
    p0, grads, factors = problem(seed=1)
    lrs = hyperparameters["lr"] * factors
    model = FlatModel(backend, p0.astype(np.float32))
    got = run(get_optimizer(name, **hyperparameters), model, grads, lrs)
    param = torch.tensor(p0, dtype=torch.float32, requires_grad=True)
    reference = torch_class([param], **hyperparameters)
    expected = []
    for g, lr in zip(grads, lrs):
        reference.param_groups[0]["lr"] = lr
        param.grad = torch.tensor(g, dtype=torch.float32)
        reference.step()
        expected.append(param.detach().numpy().astype(np.float64))
    # Two float32 implementations, each within TOL of the exact result: twice TOL apart.
    ref.assert_close(got, np.array(expected), np.float32, scale=2.0, err_msg=name)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_one_kernel_launch_per_step(backend, monkeypatch, name):
    """One launch without weight decay, also for a layout whose weights end before the biases
    (only a decay of the weights alone splits the update in two)."""
    launches = []
    monkeypatch.setattr(backend, "kernel", lambda kernel, *args: launches.append(kernel))
    no_decay = {"weight_decay": 0.0} if "weight_decay" in OPTIMIZERS[name].hyperparameters else {}
    cases = [(FlatModel(backend, np.ones(5)), {})]  # defaults (AdamW's decay) and no layout
    cases += [(Bf16Model(backend, np.ones(5), end), no_decay) for end in (None, 3)]
    for model, keywords in cases:
        optimizer = get_optimizer(name, lr=0.1, **keywords)
        launches.clear()
        for _ in range(3):
            optimizer.step(model)
        assert launches == [f"{name.replace('adamw', 'adam')}_step"] * 3


def test_a_model_is_any_object_with_the_flat_buffers(backend):
    """backend, flat_params and flat_grads are all a step reads (no layout, no working copy):
    SGD with weight decay, p -= lr (g + wd p) on every element."""
    from types import SimpleNamespace

    p, g = np.linspace(-1.0, 1.0, 6), np.arange(6.0)
    model = SimpleNamespace(backend=backend, flat_params=backend.asarray(p.copy()),
                            flat_grads=backend.asarray(g))
    SGD(0.1, weight_decay=0.5).step(model)
    np.testing.assert_allclose(backend.to_numpy(model.flat_params), p - 0.1 * (g + 0.5 * p),
                               rtol=1e-15)


def test_sgd_without_momentum_keeps_no_state(backend):
    model = FlatModel(backend, np.ones(4))
    optimizer = SGD(0.5)
    model.set_grad(np.arange(4.0))
    optimizer.step(model)
    assert optimizer.state == {} and optimizer.state_dict()["state"] == {}
    np.testing.assert_array_equal(model.params(), 1.0 - 0.5 * np.arange(4.0))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_is_allocated_on_the_first_step(backend, dtype, name):
    optimizer = get_optimizer(name, lr=0.1, **({"momentum": 0.9} if name == "sgd" else {}))
    assert optimizer.state == {} and optimizer.t == 0
    model = FlatModel(backend, np.ones(6, dtype))
    optimizer.step(model)
    assert sorted(optimizer.state) == sorted(optimizer.state_names)
    for array in optimizer.state.values():
        assert isinstance(array, backend.xp.ndarray)
        assert array.shape == (6,) and array.dtype == dtype
    arrays = dict(optimizer.state)
    optimizer.step(model)  # updated in place: a recorded step holds these arrays
    assert all(optimizer.state[k] is a for k, a in arrays.items())


@pytest.mark.parametrize("n, decay_end", [(1, None), (37, 20)], ids=["one-element", "decay-split"])
def test_a_step_writes_the_bf16_working_copy_of_the_new_parameters(backend, n, decay_end):
    """Every element of flat_work is the new parameter rounded to bfloat16, in both launches of
    a weights-only decay (SGD: p -= lr (g + wd p) on the weights, p -= lr g past decay_end)."""
    p0, grads, _ = problem(n=n, steps=1)
    model = Bf16Model(backend, p0, decay_end)
    model.set_grad(grads[0])
    SGD(0.1, weight_decay=0.5).step(model)
    p, g = p0.astype(np.float32).astype(np.float64), grads[0].astype(np.float32)
    decay = np.where(np.arange(n) < (n if decay_end is None else decay_end), 0.5, 0.0)
    got = np.array(backend.to_numpy(model.flat_params), dtype=np.float64)
    np.testing.assert_allclose(got, p - 0.1 * (g + decay * p), rtol=1e-6)
    assert_bf16_equal(backend.to_numpy(model.flat_work), round_to_mantissa(got, 7))


def test_a_step_refuses_hyperparameters_the_models_precision_cannot_hold(backend):
    model = FlatModel(backend, np.ones(5, np.float32))
    model.set_grad(np.ones(5))
    with pytest.raises(ValueError) as info:
        Adam(eps=1e-60).step(model)
    assert str(info.value) == ("eps: expected 0 or a value in [1.175e-38, 3.403e+38] (normal "
                               "float32 numbers, the precision of the model), got 1e-60")
    np.testing.assert_array_equal(model.params(), np.ones(5))
    Adam(eps=1e-60).step(FlatModel(backend, np.ones(5)))  # a normal float64


# PyTorch's defaults (torch.optim) where it has the optimizer; weight decay of the weights
# only (decay_biases=False) and no clipping everywhere.
DEFAULTS = {
    "sgd": (lambda: SGD(0.1), 0.1, {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
                                     "nesterov": False, "decay_biases": False}),
    "momentum": (lambda: Momentum(0.1), 0.1, {"beta": 0.9, "bias_correction": False}),
    "rmsprop": (RMSprop, 0.01, {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0,
                                "eps_in_sqrt": False, "decay_biases": False}),
    "adam": (Adam, 0.001, {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                           "eps_in_sqrt": False, "decay_biases": False}),
    "adamw": (AdamW, 0.001, {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01,
                             "eps_in_sqrt": False, "decay_biases": False}),
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_defaults(name):
    make, lr, hyperparameters = DEFAULTS[name]
    saved = make().state_dict()
    assert (saved["lr"], saved["base_lr"]) == (lr, lr)
    assert saved["hyperparameters"] == {**hyperparameters, "clip_norm": None, "clip_value": None}


BAD_HYPERPARAMETERS = [
    (lambda: SGD(0), ValueError, "lr: expected a finite number in (0.0, inf], got 0.0"),
    (lambda: SGD(-0.1), ValueError, "lr: expected a finite number in (0.0, inf], got -0.1"),
    (lambda: SGD(float("nan")), ValueError, "lr: expected a finite number"),
    (lambda: SGD("0.1"), TypeError, "lr: expected a real number, got str"),
    (lambda: SGD(0.1, momentum=1.0), ValueError,
     "momentum: expected a finite number in [0.0, 1.0), got 1.0"),
    (lambda: SGD(0.1, momentum=-0.5), ValueError, "momentum: expected"),
    (lambda: SGD(0.1, dampening=1.5), ValueError,
     "dampening: expected a finite number in [0.0, 1.0], got 1.5"),
    (lambda: SGD(0.1, weight_decay=-1), ValueError,
     "weight_decay: expected a finite number in [0.0, inf], got -1.0"),
    (lambda: SGD(0.1, nesterov=True), ValueError,
     "nesterov: expected momentum > 0 and dampening == 0, got momentum=0.0"),
    (lambda: SGD(0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "nesterov: expected momentum > 0 and dampening == 0, got momentum=0.9, dampening=0.1"),
    (lambda: SGD(0.1, nesterov=1), TypeError, "nesterov: expected True or False, got 1"),
    (lambda: SGD(0.1, decay_biases=1), TypeError, "decay_biases: expected True or False, got 1"),
    (lambda: Momentum(0.1, beta=1.0), ValueError,
     "beta: expected a finite number in [0.0, 1.0), got 1.0"),
    (lambda: Momentum(0.1, bias_correction="yes"), TypeError,
     "bias_correction: expected True or False, got 'yes'"),
    (lambda: RMSprop(alpha=1.2), ValueError, "alpha: expected a finite number in [0.0, 1.0)"),
    (lambda: RMSprop(eps=0.0), ValueError, "eps: expected a finite number in (0.0, inf]"),
    (lambda: RMSprop(eps_in_sqrt=None), TypeError, "eps_in_sqrt: expected True or False"),
    (lambda: RMSprop(weight_decay=-0.5), ValueError,
     "weight_decay: expected a finite number in [0.0, inf], got -0.5"),
    (lambda: RMSprop(decay_biases="no"), TypeError,
     "decay_biases: expected True or False, got 'no'"),
    (lambda: Adam(betas=(0.9, 1.0)), ValueError,
     "betas[1]: expected a finite number in [0.0, 1.0), got 1.0"),
    (lambda: Adam(betas=(-0.1, 0.9)), ValueError, "betas[0]: expected"),
    (lambda: Adam(betas=0.9), TypeError, "betas: expected a pair (beta1, beta2), got 0.9"),
    (lambda: Adam(betas=(0.9,)), TypeError, "betas: expected a pair (beta1, beta2)"),
    (lambda: Adam(eps=-1e-8), ValueError, "eps: expected a finite number in (0.0, inf]"),
    (lambda: Adam(eps_in_sqrt=0), TypeError, "eps_in_sqrt: expected True or False, got 0"),
    (lambda: Adam(decay_biases=None), TypeError,
     "decay_biases: expected True or False, got None"),
    (lambda: AdamW(weight_decay=-0.01), ValueError, "weight_decay: expected a finite number"),
]


@pytest.mark.parametrize("make, error, message", BAD_HYPERPARAMETERS,
                         ids=[str(i) for i in range(len(BAD_HYPERPARAMETERS))])
def test_bad_hyperparameters_are_named(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert message in str(info.value)


def test_lr_can_be_scheduled_to_zero_but_not_below():
    optimizer = Adam(0.1)
    optimizer.lr = 0.0
    assert (optimizer.lr, optimizer.base_lr) == (0.0, 0.1)
    with pytest.raises(ValueError, match=r"lr: expected a finite number in \[0.0, inf\]"):
        optimizer.lr = -1e-3


def test_get_optimizer_by_name_or_instance():
    assert {name: type(get_optimizer(name, lr=0.1)) for name in OPTIMIZERS} == {
        "sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}
    adam = get_optimizer(" Adam ", betas=(0.8, 0.9))
    assert (adam.lr, adam.betas, AdamW().weight_decay) == (0.001, (0.8, 0.9), 0.01)
    assert get_optimizer(adam) is adam


CHOICES = "['adam', 'adamw', 'momentum', 'rmsprop', 'sgd']"


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("adagrad",), {}, ValueError, f"optimizer: expected one of {CHOICES}, got 'adagrad'"),
    ((3,), {}, TypeError, f"optimizer: expected a name in {CHOICES} or an Optimizer, got int"),
    (("sgd",), {}, TypeError, "optimizer 'sgd': expected a value for ['lr'], got none"),
    (("adam",), {"beta1": 0.9}, TypeError,
     "optimizer 'adam': expected keywords among ['betas', 'clip_norm', 'clip_value', "
     + "'decay_biases', 'eps', 'eps_in_sqrt', 'lr', 'weight_decay'], got ['beta1']"),
    ((Adam(),), {"lr": 0.1}, ValueError,
     "optimizer: expected a name when lr or keywords are given, got an instance of Adam"),
])
def test_get_optimizer_errors(args, kwargs, error, message):
    with pytest.raises(error) as info:
        get_optimizer(*args, **kwargs)
    assert message in str(info.value)


def test_step_checks_the_model(backend):
    with pytest.raises(TypeError, match="model: expected an object with backend, flat_params "
                                        "and flat_grads, got object"):
        Adam().step(object())
    model = FlatModel(backend, np.ones(5, np.float32))
    model.flat_grads = backend.zeros((4,), np.float32)
    with pytest.raises(ValueError, match=r"model.flat_grads: expected shape \(5,\) and dtype "
                                         r"float32 \(those of flat_params\), got \(4,\)"):
        Adam().step(model)


def test_state_belongs_to_one_model(backend):
    optimizer = RMSprop()
    optimizer.step(FlatModel(backend, np.ones(5)))
    with pytest.raises(ValueError, match=r"optimizer state 'v': expected shape \(6,\) and "
                                         r"dtype float64 .* got \(5,\) and float64"):
        optimizer.step(FlatModel(backend, np.ones(6)))

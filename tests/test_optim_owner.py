"""The optimizer owns its learning rates and update count: each is written by one of its
methods, fit and the callbacks go through them, and a subclass declares only what differs."""

import re

import numpy as np
import pytest
from test_optim import FlatModel, problem

import gpunn
from gpunn.callbacks import ReduceLROnPlateau
from gpunn.optim import OPTIMIZERS, Momentum, Optimizer, get_optimizer
from gpunn.schedules import get_schedule


def test_epoch_rates_follow_the_schedule_from_base_lr():
    optimizer = gpunn.Adam(lr=0.1)
    assert optimizer.epoch_rates(None, 1, 3) == [0.1] * 3
    schedule = get_schedule("inverse_time", decay=1.0, per="step")
    rates = optimizer.epoch_rates(schedule, 2, 3)  # steps 3, 4, 5 of the run
    np.testing.assert_allclose(rates, [0.1 / (1 + k) for k in (3, 4, 5)])
    assert optimizer.lr == rates[-1] and optimizer.base_lr == 0.1
    schedule = get_schedule("exponential", rate=0.5)
    assert optimizer.epoch_rates(schedule, 3, 2) == [0.1 * 0.25] * 2


def test_scale_lr_scales_base_and_current_rate_together():
    optimizer = gpunn.SGD(lr=0.4)
    optimizer.lr = 0.2
    assert optimizer.scale_lr(0.5)
    assert (optimizer.base_lr, optimizer.lr) == (0.2, 0.1)
    assert optimizer.scale_lr(0.1, min_lr=0.05)  # floored at min_lr
    assert (optimizer.base_lr, optimizer.lr) == (0.05, 0.025)
    assert not optimizer.scale_lr(0.1, min_lr=0.05)  # at the floor: nothing changes
    assert (optimizer.base_lr, optimizer.lr) == (0.05, 0.025)


def test_scale_lr_keeps_base_lr_positive_and_refuses_negative_factors():
    optimizer = gpunn.SGD(lr=0.4)
    optimizer.lr = 0.2
    assert not optimizer.scale_lr(0.0)  # base_lr 0: no schedule starts from it; nothing changes
    assert (optimizer.base_lr, optimizer.lr) == (0.4, 0.2)
    with pytest.raises(ValueError) as info:
        optimizer.scale_lr(-0.5)
    assert str(info.value) == "factor: expected a finite number in [0.0, inf], got -0.5"
    assert (optimizer.base_lr, optimizer.lr) == (0.4, 0.2)


def test_count_updates_never_goes_back():
    optimizer = gpunn.Adam()
    optimizer.count_updates(4)
    assert optimizer.t == 4
    with pytest.raises(ValueError, match=r"t: expected an integer in \[4, inf\], got 3"):
        optimizer.count_updates(3)


@pytest.mark.parametrize("name, value", [("t", 3), ("base_lr", 0.5)])
def test_setting_owned_scalars_is_deprecated(name, value):
    optimizer = gpunn.Adam()
    with pytest.warns(DeprecationWarning, match=f"optimizer.{name} is deprecated"):
        setattr(optimizer, name, value)
    assert getattr(optimizer, name) == value


def test_reduce_lr_on_plateau_goes_through_scale_lr(backend):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 4)), rng.integers(0, 2, 32)
    optimizer = gpunn.SGD(lr=0.1)
    model = gpunn.MLP([4, 3, 1], output="sigmoid")
    # mode "max" on a falling loss: no epoch improves on the first, so it reduces every epoch
    reducer = ReduceLROnPlateau("loss", mode="max", factor=0.5, patience=0)
    history = gpunn.fit(model, X, y, optimizer=optimizer, epochs=3, callbacks=[reducer])
    assert history.lr == [0.1, 0.1, 0.05]
    assert (optimizer.base_lr, optimizer.lr) == (0.025, 0.025)


def test_fit_counts_updates_in_the_optimizer(backend):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 4)), rng.integers(0, 2, 30)
    optimizer = gpunn.Adam(lr=0.01)
    gpunn.fit(gpunn.MLP([4, 3, 1], output="sigmoid"), X, y, optimizer=optimizer, epochs=2,
              batch_size=8)
    assert optimizer.t == 2 * 4


class _HalfMomentum(Optimizer):
    """Only what differs: kernel, state, scalars (no name: not registered)."""

    kernel = "momentum_step"
    state_names = ("v",)

    def scalars(self):
        return 0.5, False


def test_a_subclass_declares_only_what_differs(backend):
    p0, grads, _ = problem(steps=5)
    mine, theirs = FlatModel(backend, p0.copy()), FlatModel(backend, p0.copy())
    declared, builtin = _HalfMomentum(lr=0.1), Momentum(lr=0.1, beta=0.5)
    for g in grads:
        for model, optimizer in ((mine, declared), (theirs, builtin)):
            model.set_grad(g)
            optimizer.step(model)
    np.testing.assert_array_equal(mine.params(), theirs.params())
    assert not np.array_equal(mine.params(), p0)
    assert _HalfMomentum not in OPTIMIZERS.values()


def test_subclasses_join_the_registry_by_name_and_take_the_clip_keywords(monkeypatch):
    """Classes made in the test (one made at import escapes a mutation tool's mutant): a named
    subclass joins the registry get_optimizer reads, a nameless one does not; each takes
    clip_norm and clip_value after its own hyperparameters, once, a subclass's subclass too."""
    from gpunn.optim import base

    monkeypatch.setattr(base, "OPTIMIZERS", dict(OPTIMIZERS))

    class Plain(Optimizer):
        """No name, no hyperparameters of its own."""

    class Child(Plain):
        """Inherits exactly the clip keywords."""

    class Named(Optimizer):
        name = "half_momentum"
        kernel = "momentum_step"
        state_names = ("v",)
        hyperparameters = ("beta",)

        def __init__(self, lr, beta=0.5, clip_norm=None, clip_value=None):
            super().__init__(lr, clip_norm, clip_value)
            self.beta = beta

        def scalars(self):
            return self.beta, False

    assert Plain.hyperparameters == Child.hyperparameters == ("clip_norm", "clip_value")
    assert Named.hyperparameters == ("beta", "clip_norm", "clip_value")
    assert base.OPTIMIZERS == {**OPTIMIZERS, "half_momentum": Named}
    made = get_optimizer("half_momentum", lr=0.1, beta=0.25, clip_norm=2.0)
    assert (type(made), made.beta, made.clip_norm, made.clip_value) == (Named, 0.25, 2.0, None)
    assert made.state_dict()["hyperparameters"] == {"beta": 0.25, "clip_norm": 2.0,
                                                    "clip_value": None}


def test_cli_help_lists_the_registered_optimizers(capsys):
    from gpunn.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = re.search(r"--optimizer NAME ([a-z, ]+) \(default adam\)", text)
    assert listed, text
    assert sorted(listed.group(1).replace(" or ", ", ").split(", ")) == sorted(OPTIMIZERS)
    assert list(OPTIMIZERS) == ["sgd", "momentum", "rmsprop", "adam", "adamw"]


def test_read_before_any_step_leaves_the_count(backend):
    from gpunn.step import TrainStep

    rng = np.random.default_rng(0)
    model = gpunn.MLP([4, 3, 1], output="sigmoid")
    Xd, T, loss = model.prepare(rng.standard_normal((12, 4)), rng.integers(0, 2, 12))
    optimizer = gpunn.Adam()
    trainer = TrainStep(model, loss, optimizer, Xd, T, 4)
    optimizer.count_updates(5)  # as a resume does after the step object exists
    assert trainer.read().rows.size == 0 and optimizer.t == 5
    trainer.begin_epoch([0.01] * 3)
    trainer.run(0)
    trainer.read()
    assert optimizer.t == 6


def test_train_step_batch_size_is_a_deprecated_name(backend):
    from gpunn.step import TrainStep

    rng = np.random.default_rng(0)
    model = gpunn.MLP([4, 3, 1], output="sigmoid")
    Xd, T, loss = model.prepare(rng.standard_normal((12, 4)), rng.integers(0, 2, 12))
    with pytest.warns(DeprecationWarning, match="global_batch"):
        trainer = TrainStep(model, loss, gpunn.Adam(), Xd, T, batch_size=4)
    assert trainer.global_batch == trainer.batch_size == 4 and trainer.n_steps == 3

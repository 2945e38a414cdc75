"""Schedules in use: the rate each update applied (read from its effect on the parameters),
resumed runs and the CLI."""

import numpy as np
import pytest
from test_checkpoint_fuzz import crafted, header_of  # a header with a consistent checksum

import gpunn
from gpunn.callbacks import Callback
from gpunn.schedules import Cosine, OneCycle, Warmup, get_schedule

LR0 = 0.2


def data(n=12, n_in=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, 3, size=n)


def model():
    return gpunn.MLP([4, 6, 3], activation="tanh", output="softmax", dtype="float64", seed=1)


class UpdateEffect(Callback):
    """The rate of each SGD update from its effect: ``(before - after) . g / (g . g)``."""

    def __init__(self):
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.before = self.model.backend.to_numpy(self.model.flat_params).copy()

    def on_train_batch_end(self, batch, logs=None):
        be = self.model.backend
        after, grads = be.to_numpy(self.model.flat_params), be.to_numpy(self.model.flat_grads)
        self.rates.append(float((self.before - after) @ grads / (grads @ grads)))


def train(schedule, epochs, **kwargs):
    effect = UpdateEffect()
    X, y = data()
    net = model()
    history = gpunn.fit(net, X, y, optimizer="sgd", lr=LR0, epochs=epochs, batch_size=4,
                        schedule=schedule, callbacks=[effect], **kwargs)
    return net, history, effect.rates


@pytest.mark.parametrize("schedule, per_step", [
    (Warmup(2, Cosine(4, min_factor=0.1, per="step"), start_factor=0.25, per="step"), True),
    (get_schedule("cosine", period=2, restarts=True, mult=2, warmup=1), False),
    (OneCycle(3, pct_start=0.7, anneal="linear"), False),
], ids=["warmup_cosine_per_step", "warmup_sgdr_per_epoch", "one_cycle_per_epoch"])
def test_each_update_applies_the_scheduled_rate(backend, schedule, per_step):
    _, history, used = train(schedule, epochs=4)
    steps = 3  # 12 rows in batches of 4
    expected = [schedule(LR0, t if per_step else t // steps) for t in range(4 * steps)]
    np.testing.assert_allclose(used, expected, rtol=1e-9, atol=1e-12)
    assert history.lr == [expected[steps * e + steps - 1] for e in range(4)]


def test_a_resumed_run_continues_the_same_rates(backend, tmp_path):
    schedule = get_schedule("one_cycle", total=12, pct_start=0.4, per="step", warmup=2)
    path = tmp_path / "run.safetensors"
    whole, whole_history, whole_rates = train(schedule, epochs=4)
    train(schedule, epochs=2, checkpoint_path=path)
    loaded = gpunn.load_checkpoint(path)
    assert loaded.schedule.config() == schedule.config()
    for given in (None, schedule):
        resumed, history, rates = train(given, epochs=4, resume_from=path)
        np.testing.assert_allclose(rates, [schedule(LR0, t) for t in range(6, 12)],
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rates, whole_rates[6:], rtol=1e-9, atol=1e-12)
        assert history.lr == whole_history.lr
        np.testing.assert_array_equal(backend.to_numpy(resumed.flat_params),
                                      backend.to_numpy(whole.flat_params))


def test_a_resumed_run_refuses_another_schedule(tmp_path):
    path = tmp_path / "run.safetensors"
    train(get_schedule("cosine", period=4, warmup=1), epochs=1, checkpoint_path=path)
    with pytest.raises(gpunn.CheckpointError, match="schedule: expected"):
        train(get_schedule("cosine", period=4, warmup=2), epochs=2, resume_from=path)


def test_the_cli_builds_warmup_and_cosine(backend, capsys, monkeypatch):
    from gpunn import train as train_module
    from gpunn.cli import main

    seen = {}

    def recording_fit(*args, **kwargs):
        seen["schedule"] = kwargs["schedule"]
        seen["history"] = fit(*args, **kwargs)
        return seen["history"]

    fit = train_module.fit
    monkeypatch.setattr(train_module, "fit", recording_fit)
    code = main(["train", "--dataset", "synthetic", "--hidden", "8", "--epochs", "4",
                 "--batch-size", "full", "--lr", "0.01", "--schedule",
                 "cosine,period=2,restarts=true,min_factor=0.5,warmup=1,warmup_start_factor=0.5"])
    assert code == 0, capsys.readouterr()
    schedule = seen["schedule"]
    assert schedule.config() == {
        "name": "warmup", "warmup": 1, "start_factor": 0.5, "per": "epoch",
        "after": {"name": "cosine", "period": 2, "min_factor": 0.5, "restarts": True,
                  "mult": 1, "per": "epoch"}}
    np.testing.assert_allclose(seen["history"].lr, [0.005, 0.01, 0.0075, 0.01], rtol=1e-15)
    code = main(["train", "--dataset", "synthetic", "--epochs", "1",
                 "--schedule", "one_cycle,total=1"])
    assert code == 1
    assert "total: expected an integer in [2, inf], got 1" in capsys.readouterr().err


@pytest.mark.parametrize("config, match", [
    ({"name": "cosine", "period": 0}, r"schedule: period: expected an integer in \[1, inf\]"),
    ({"name": "warmup", "warmup": 2, "after": {"name": "warmup", "warmup": 1}},
     "schedule: after: expected a schedule other than a warm-up"),
    ({"name": "warmup", "warmup": 2, "after": {"name": "cosine", "period": 3, "per": "step"}},
     "schedule: after: expected a schedule per 'epoch', got per 'step'"),
])
def test_a_bad_saved_schedule_is_a_checkpoint_error(tmp_path, config, match):
    net = model()
    arrays = {"params": net.backend.to_numpy(net.flat_params)}
    path = tmp_path / "edited.ckpt"
    crafted(path, {**header_of(net), "schedule": config}, arrays)
    with pytest.raises(gpunn.CheckpointError, match=match):
        gpunn.load_checkpoint(path)


def test_a_schedule_rate_past_the_dtype_is_refused_before_the_table(recwarn):
    """A schedule whose rate overflows float32 (inverse_sqrt with k=1e300): refused naming the
    step, before the rate is cast into the device table (no overflow warning, no update)."""
    model = gpunn.MLP([3, 4, 2], output="softmax", seed=0)
    before = model.params.host()
    with pytest.raises(ValueError, match=r"^lr: expected 0 or a value in \[1.175e-38, "
                                         r"3.403e\+38\] \(normal float32 numbers\), got "
                                         r"1e\+297 from the schedule at step 1 of epoch 1$"):
        gpunn.fit(model, np.ones((8, 3)), np.zeros(8, int), lr=1e-3, epochs=1,
                  schedule=gpunn.schedules.get_schedule("inverse_sqrt", k=1e300), verbose=0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    np.testing.assert_array_equal(model.params.host(), before)

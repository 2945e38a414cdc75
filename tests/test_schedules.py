"""Learning-rate schedules: values against their formulas, configs, named errors."""

import math

import pytest

from gpunn.optim import Adam
from gpunn.schedules import (
    SCHEDULES,
    Constant,
    Exponential,
    InverseSqrt,
    InverseTime,
    Schedule,
    Staircase,
    get_schedule,
)

LR0 = 0.3

# One row per schedule: its constructor keywords and the formula it must follow.
FORMULAS = [
    ("constant", {}, lambda t: LR0),
    ("inverse_time", {"decay": 0.5}, lambda t: LR0 / (1 + 0.5 * t)),
    ("exponential", {"rate": 0.9}, lambda t: LR0 * 0.9 ** t),
    ("inverse_sqrt", {"k": 2.0}, lambda t: 2.0 * LR0 / math.sqrt(t + 1)),
    ("staircase", {"step": 3, "factor": 0.5}, lambda t: LR0 * 0.5 ** (t // 3)),
]


@pytest.mark.parametrize("name, kwargs, formula", FORMULAS, ids=[row[0] for row in FORMULAS])
def test_values_follow_the_formula(name, kwargs, formula):
    schedule = get_schedule(name, **kwargs)
    for t in range(25):
        value = schedule(LR0, t)
        assert type(value) is float
        assert value == pytest.approx(formula(t), rel=1e-15, abs=0.0), f"t={t}"


def test_hand_computed_values():
    assert InverseTime(0.5)(1.0, 2) == 0.5
    assert Exponential(0.5)(2.0, 3) == 0.25
    assert InverseSqrt()(0.5, 3) == 0.25
    assert InverseSqrt(k=3.0)(1.0, 8) == 1.0
    assert [Staircase(2, 0.5)(4.0, t) for t in range(6)] == [4.0, 4.0, 2.0, 2.0, 1.0, 1.0]
    assert Constant()(0.7, 10**6) == 0.7
    assert InverseTime(0.0)(0.7, 100) == 0.7


def test_the_fit_loop_usage():
    optimizer, schedule = Adam(0.1), InverseTime(1.0, per="step")
    for t in range(4):
        optimizer.lr = schedule(optimizer.base_lr, t)
    assert (optimizer.lr, optimizer.base_lr) == (pytest.approx(0.1 / 4), 0.1)


def test_per_defaults_to_epoch_and_is_case_insensitive():
    assert Constant().per == "epoch"
    assert Exponential(0.5, per=" Step ").per == "step"


@pytest.mark.parametrize("make, error, message", [
    (lambda: InverseTime(-0.1), ValueError, "decay: expected a finite number in [0.0, inf]"),
    (lambda: InverseTime("fast"), TypeError, "decay: expected a real number, got str"),
    (lambda: Exponential(0.0), ValueError, "rate: expected a finite number in (0.0, 1.0]"),
    (lambda: Exponential(1.5), ValueError, "rate: expected a finite number in (0.0, 1.0], "
                                           + "got 1.5"),
    (lambda: InverseSqrt(0.0), ValueError, "k: expected a finite number in (0.0, inf]"),
    (lambda: Staircase(0, 0.5), ValueError, "step: expected an integer in [1, inf], got 0"),
    (lambda: Staircase(2.5, 0.5), TypeError, "step: expected an integer, got float"),
    (lambda: Staircase(2, 0.0), ValueError, "factor: expected a finite number in (0.0, 1.0]"),
    (lambda: Staircase(2, 1.1), ValueError, "factor: expected a finite number in (0.0, 1.0]"),
    (lambda: Constant(per="batch"), ValueError,
     "per: expected one of ['epoch', 'step'], got 'batch'"),
    (lambda: Constant()(0.1, -1), ValueError, "t: expected an integer in [0, inf], got -1"),
    (lambda: Constant()(0.1, 1.0), TypeError, "t: expected an integer, got float"),
    (lambda: Constant()(0.0, 1), ValueError, "base_lr: expected a finite number in (0.0, inf]"),
])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize("name, kwargs", [(row[0], row[1]) for row in FORMULAS],
                         ids=[row[0] for row in FORMULAS])
def test_config_round_trips(name, kwargs):
    schedule = get_schedule(name, per="step", **kwargs)
    config = schedule.config()
    assert config == {"name": name, **kwargs, "per": "step"}
    for rebuilt in (Schedule.from_config(config), type(schedule).from_config(config),
                    get_schedule(config)):
        assert type(rebuilt) is type(schedule) and rebuilt.config() == config
    assert repr(schedule).startswith(type(schedule).__name__ + "(")


def test_get_schedule_passes_none_and_instances_through():
    schedule = Exponential(0.5)
    assert get_schedule(None) is None
    assert get_schedule(schedule) is schedule
    assert type(get_schedule(" Inverse_Sqrt ")) is InverseSqrt
    assert sorted(SCHEDULES) == ["constant", "exponential", "inverse_sqrt", "inverse_time",
                                 "staircase"]


CHOICES = "['constant', 'exponential', 'inverse_sqrt', 'inverse_time', 'staircase']"


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("cosine",), {}, ValueError, f"schedule: expected one of {CHOICES}, got 'cosine'"),
    (("staircase",), {"step": 2}, TypeError,
     "schedule 'staircase': expected a value for ['factor'], got none"),
    (("exponential",), {"rate": 0.5, "decay": 0.1}, TypeError,
     "schedule 'exponential': expected keywords among ['per', 'rate'], got ['decay']"),
    ((Constant(),), {"per": "step"}, ValueError,
     "schedule: expected a name when keywords are given, got Constant(per='epoch')"),
    ((0.5,), {}, TypeError, f"schedule: expected a name in {CHOICES}, a config dict, a "
                            + "Schedule or None, got float"),
    (({"rate": 0.5},), {}, TypeError, "config: expected a dict with a 'name', got"),
])
def test_get_schedule_errors(args, kwargs, error, message):
    with pytest.raises(error) as info:
        get_schedule(*args, **kwargs)
    assert message in str(info.value)


def test_a_subclass_builds_only_its_own_config():
    message = r"config\['name'\]: expected 'staircase', got 'constant'"
    with pytest.raises(ValueError, match=message):
        Staircase.from_config({"name": "constant", "per": "epoch"})

"""Learning-rate schedules: values against their formulas, configs, named errors."""

import math

import pytest

from gpunn.optim import Adam
from gpunn.schedules import (
    SCHEDULES,
    Constant,
    Cosine,
    Exponential,
    InverseSqrt,
    InverseTime,
    OneCycle,
    Schedule,
    Staircase,
    Warmup,
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
    ("cosine", {"period": 8, "min_factor": 0.1, "restarts": False, "mult": 1},
     lambda t: LR0 * (0.1 + 0.9 * (1 + math.cos(math.pi * min(t, 8) / 8)) / 2)),
    ("one_cycle", {"total": 20, "pct_start": 0.25, "div_factor": 10.0,
                   "final_div_factor": 100.0, "anneal": "linear"},
     lambda t: LR0 * (0.1 + 0.9 * t / 4 if t <= 4 else 1 - (1 - 1e-3) * (min(t, 19) - 4) / 15)),
    ("warmup", {"warmup": 4, "after": "constant", "start_factor": 0.25},
     lambda t: LR0 * min(1.0, 0.25 + 0.75 * t / 4)),
]


@pytest.mark.parametrize("name, kwargs, formula", FORMULAS, ids=[row[0] for row in FORMULAS])
def test_values_follow_the_formula(name, kwargs, formula):
    schedule = get_schedule(name, **kwargs)
    for t in range(25):
        value = schedule(LR0, t)
        assert type(value) is float
        assert value == pytest.approx(formula(t), rel=1e-13, abs=0.0), f"t={t}"


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
    (lambda: InverseTime(-0.1), ValueError,
     "decay: expected a finite number in [0.0, inf], got -0.1"),
    (lambda: InverseTime("fast"), TypeError, "decay: expected a real number, got str"),
    (lambda: Exponential(0.0), ValueError,
     "rate: expected a finite number in (0.0, 1.0], got 0.0"),
    (lambda: Exponential(1.5), ValueError, "rate: expected a finite number in (0.0, 1.0], "
                                           + "got 1.5"),
    (lambda: InverseSqrt(0.0), ValueError, "k: expected a finite number in (0.0, inf], got 0.0"),
    (lambda: Staircase(0, 0.5), ValueError, "step: expected an integer in [1, inf], got 0"),
    (lambda: Staircase(2.5, 0.5), TypeError, "step: expected an integer, got float"),
    (lambda: Staircase(2, 0.0), ValueError,
     "factor: expected a finite number in (0.0, 1.0], got 0.0"),
    (lambda: Staircase(2, 1.1), ValueError,
     "factor: expected a finite number in (0.0, 1.0], got 1.1"),
    (lambda: Constant(per="batch"), ValueError,
     "per: expected one of ['epoch', 'step'], got 'batch'"),
    (lambda: Constant()(0.1, -1), ValueError, "t: expected an integer in [0, inf], got -1"),
    (lambda: Constant()(0.1, 1.0), TypeError, "t: expected an integer, got float"),
    (lambda: Constant()(0.0, 1), ValueError,
     "base_lr: expected a finite number in (0.0, inf], got 0.0"),
    (lambda: Cosine(0), ValueError, "period: expected an integer in [1, inf], got 0"),
    (lambda: Cosine(5, min_factor=1.5), ValueError,
     "min_factor: expected a finite number in [0.0, 1.0], got 1.5"),
    (lambda: Cosine(5, restarts="yes"), TypeError, "restarts: expected True or False, got str"),
    (lambda: Cosine(5, mult=2), ValueError, "mult: expected 1 without restarts, got 2"),
    (lambda: Cosine(5, restarts=True, mult=0), ValueError,
     "mult: expected an integer in [1, inf], got 0"),
    (lambda: OneCycle(1), ValueError, "total: expected an integer in [2, inf], got 1"),
    (lambda: OneCycle(10, pct_start=1.0), ValueError,
     "pct_start: expected a finite number in (0.0, 1.0), got 1.0"),
    (lambda: OneCycle(10, pct_start=0.1), ValueError,
     "pct_start: expected 1 < pct_start * total < total (total=10), got 0.1"),
    (lambda: OneCycle(10, div_factor=0.5), ValueError,
     "div_factor: expected a finite number in [1.0, inf], got 0.5"),
    (lambda: OneCycle(10, final_div_factor=0.0), ValueError,
     "final_div_factor: expected a finite number in [1.0, inf], got 0.0"),
    (lambda: OneCycle(10, anneal="cubic"), ValueError,
     "anneal: expected one of ['cos', 'linear'], got 'cubic'"),
    (lambda: Warmup(0), ValueError, "warmup: expected an integer in [1, inf], got 0"),
    (lambda: Warmup(2, start_factor=-0.1), ValueError,
     "start_factor: expected a finite number in [0.0, 1.0], got -0.1"),
    (lambda: Warmup(2, after=Cosine(5, per="step")), ValueError,
     "after: expected a schedule per 'epoch', got per 'step'"),
    (lambda: Warmup(2, after=Warmup(1)), TypeError,
     "after: expected a schedule other than a warm-up, got Warmup(warmup=1, after={'name': "
     + "'constant', 'per': 'epoch'}, start_factor=0.3333333333333333, per='epoch')"),
    (lambda: Warmup(2, after="cosine"), TypeError,
     "schedule 'cosine': expected a value for ['period'], got none"),
    (lambda: get_schedule("cosine", period=5, warmup=0), ValueError,
     "warmup: expected an integer in [1, inf], got 0"),
    (lambda: get_schedule("cosine", period=5, warmup_start_factor=0.5), TypeError,
     "warmup: expected a value with warmup_start_factor, got none"),
])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message


@pytest.mark.parametrize("name, kwargs", [(row[0], row[1]) for row in FORMULAS],
                         ids=[row[0] for row in FORMULAS])
def test_config_round_trips(name, kwargs):
    schedule = get_schedule(name, per="step", **kwargs)
    config = schedule.config()
    expected = {"name": name, **kwargs, "per": "step"}
    if name == "warmup":
        expected["after"] = {"name": kwargs["after"], "per": "step"}
    assert config == expected
    for rebuilt in (Schedule.from_config(config), type(schedule).from_config(config),
                    get_schedule(config)):
        assert type(rebuilt) is type(schedule) and rebuilt.config() == config
    assert repr(schedule).startswith(type(schedule).__name__ + "(")


def test_repr_is_the_constructor_call():
    schedule = Cosine(8, min_factor=0.1)
    assert repr(schedule) == "Cosine(period=8, min_factor=0.1, restarts=False, mult=1, per='epoch')"
    assert eval(repr(schedule), {"Cosine": Cosine}).config() == schedule.config()


def test_get_schedule_passes_none_and_instances_through():
    schedule = Exponential(0.5)
    assert get_schedule(None) is None
    assert get_schedule(schedule) is schedule
    assert type(get_schedule(" Inverse_Sqrt ")) is InverseSqrt
    assert sorted(SCHEDULES) == sorted(row[0] for row in FORMULAS)


CHOICES = str(sorted(SCHEDULES))


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("polynomial",), {}, ValueError,
     f"schedule: expected one of {CHOICES}, got 'polynomial'"),
    (("staircase",), {"step": 2}, TypeError,
     "schedule 'staircase': expected a value for ['factor'], got none"),
    (("exponential",), {"rate": 0.5, "decay": 0.1}, TypeError,
     "schedule 'exponential': expected keywords among ['per', 'rate'], got ['decay']"),
    ((Constant(),), {"per": "step"}, ValueError,
     "schedule: expected a name when keywords are given, got Constant(per='epoch')"),
    (("cosine",), {"warmup": 2, "perod": 8}, TypeError,
     "schedule 'cosine': expected keywords among ['min_factor', 'mult', 'per', 'period', "
     + "'restarts'], got ['perod']"),
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


def test_hand_computed_values_of_the_newer_schedules():
    assert [Cosine(2)(4.0, t) for t in range(4)] == [4.0, 2.0, 0.0, 0.0]
    restarts = Cosine(2, restarts=True, mult=2)
    assert [restarts(4.0, t) for t in range(7)] == [4.0, 2.0, 4.0, pytest.approx(2 + 2 ** 0.5),
                                                    pytest.approx(2.0), pytest.approx(2 - 2 ** 0.5),
                                                    4.0]
    assert [Warmup(2, start_factor=0.0)(4.0, t) for t in range(4)] == [0.0, 2.0, 4.0, 4.0]
    cycle = OneCycle(4, pct_start=0.5, div_factor=4.0, final_div_factor=2.0)
    assert [cycle(4.0, t) for t in range(5)] == [1.0, 4.0, 2.25, 0.5, 0.5]
    # the peak as late as it goes (u = 0.95 * 10 - 1 = 8.5): one step down to the end
    late = OneCycle(10, pct_start=0.95, div_factor=4.0, final_div_factor=2.0, anneal="linear")
    assert [late(4.0, t) for t in (0, 8, 9)] == [1.0, pytest.approx(1 + 3 * 8 / 8.5), 0.5]


def test_warmup_wraps_any_named_schedule():
    wrapped = get_schedule("exponential", rate=0.5, per="step", warmup=2, warmup_start_factor=0.5)
    assert type(wrapped) is Warmup and wrapped.per == "step"
    assert wrapped.config() == {"name": "warmup", "warmup": 2, "start_factor": 0.5,
                                "per": "step",
                                "after": {"name": "exponential", "rate": 0.5, "per": "step"}}
    assert [wrapped(8.0, t) for t in range(5)] == [4.0, 6.0, 8.0, 4.0, 2.0]
    default = get_schedule("constant", warmup=2)  # PyTorch's LinearLR: start_factor 1/3
    assert [default(3.0, t) for t in range(3)] == [1.0, 2.0, 3.0]
    assert get_schedule(wrapped.config()).config() == wrapped.config()
    assert Warmup.from_config(wrapped.config()).config() == wrapped.config()


def _torch_rates(make, steps):
    """The rate each of ``steps`` PyTorch optimizer steps uses under the scheduler ``make``."""
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR0)
    scheduler = make(torch.optim.lr_scheduler, optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


# (id, our schedule, steps, PyTorch's scheduler): ours is made in the test, as a schedule built
# at import would escape mutation testing (mutmut's mutants are chosen at each call).
TORCH_CASES = [
    ("cosine", lambda: Cosine(10, min_factor=0.1), 11,
     lambda s, o: s.CosineAnnealingLR(o, T_max=10, eta_min=0.1 * LR0)),
    ("cosine_zero", lambda: Cosine(7), 8, lambda s, o: s.CosineAnnealingLR(o, T_max=7)),
    ("sgdr", lambda: Cosine(3, min_factor=0.05, restarts=True), 20,
     lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=3, eta_min=0.05 * LR0)),
    ("sgdr_mult", lambda: Cosine(3, restarts=True, mult=2), 50,
     lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2)),
    ("one_cycle_cos", lambda: OneCycle(30), 30,
     lambda s, o: s.OneCycleLR(o, max_lr=LR0, total_steps=30, cycle_momentum=False)),
    ("one_cycle_late_peak", lambda: OneCycle(10, pct_start=0.95), 10,
     lambda s, o: s.OneCycleLR(o, max_lr=LR0, total_steps=10, pct_start=0.95,
                               cycle_momentum=False)),
    ("one_cycle_linear", lambda: OneCycle(17, 0.4, 5.0, 50.0, anneal="linear"), 17,
     lambda s, o: s.OneCycleLR(o, max_lr=LR0, total_steps=17, pct_start=0.4, div_factor=5.0,
                               final_div_factor=50.0, anneal_strategy="linear",
                               cycle_momentum=False)),
    ("warmup_cosine", lambda: Warmup(4, Cosine(10), start_factor=0.25), 15,
     lambda s, o: s.SequentialLR(o, [s.LinearLR(o, start_factor=0.25, total_iters=4),
                                     s.CosineAnnealingLR(o, T_max=10)], milestones=[4])),
    ("warmup_sgdr", lambda: Warmup(3, Cosine(4, restarts=True, mult=2)), 30,
     lambda s, o: s.SequentialLR(o, [s.LinearLR(o, total_iters=3),
                                     s.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2)],
                                 milestones=[3])),
    ("warmup_exponential", lambda: get_schedule("exponential", rate=0.8, warmup=5), 15,
     lambda s, o: s.SequentialLR(o, [s.LinearLR(o, total_iters=5), s.ExponentialLR(o, 0.8)],
                                 milestones=[5])),
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # SequentialLR's epoch-argument notice
@pytest.mark.parametrize("ours, steps, make", [row[1:] for row in TORCH_CASES],
                         ids=[row[0] for row in TORCH_CASES])
def test_rates_match_pytorch_schedulers(ours, steps, make):
    expected = _torch_rates(make, steps)
    schedule = ours()
    got = [schedule(LR0, t) for t in range(steps)]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_past_the_horizon_the_rate_holds():
    cosine, cycle = Cosine(5, min_factor=0.2), OneCycle(10)
    assert [cosine(LR0, t) for t in (5, 6, 100)] == [pytest.approx(0.2 * LR0)] * 3
    assert cycle(LR0, 9) == cycle(LR0, 10) == cycle(LR0, 10**6) == pytest.approx(LR0 / 25e4)


def test_late_restart_rates_take_no_walk_over_the_cycles():
    schedule = Cosine(1, restarts=True)
    assert schedule(LR0, 10**15) == LR0  # t % period: no 10**15 iterations
    doubling = Cosine(3, restarts=True, mult=2)
    assert doubling(LR0, 3 * (2**40 - 1)) == LR0  # the start of cycle 40

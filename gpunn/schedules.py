"""Learning-rate schedules from the course, applied per epoch or per optimizer step.

A schedule maps ``(base_lr, t) -> lr`` with ``t`` counting from 0 (epochs, or global steps when
``per == "step"``); the fit loop takes each epoch's rates from
``optimizer.epoch_rates(schedule, ...)``, i.e. ``schedule(optimizer.base_lr, t)``. Plain host
arithmetic: nothing here touches a device. A subclass with a ``name`` registers itself for
:func:`get_schedule`; its constructor arguments are its attributes, so :meth:`Schedule.config`
needs nothing more.
"""

import inspect
import math

from gpunn._checks import (
    check_choice,
    check_int,
    check_keywords,
    check_number,
    check_positive,
)

SCHEDULES = {}
PER = ("epoch", "step")


class Schedule:
    """Base class: ``per`` says whether ``t`` counts epochs or steps."""

    name = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name is not None:
            SCHEDULES[cls.name] = cls

    def __init__(self, per="epoch"):
        self.per = check_choice("per", per, PER)

    def __call__(self, base_lr, t):
        """The learning rate at ``t`` (0-based epoch or global step) as a Python float."""
        return float(self._rate(check_positive("base_lr", base_lr), check_int("t", t, low=0)))

    def _rate(self, base_lr, t):
        raise NotImplementedError

    def config(self):
        """``{"name": ..., <constructor argument>: value, ...}`` in Python scalars (JSON-able)."""
        params = inspect.signature(type(self)).parameters
        return {"name": self.name, **{k: getattr(self, k) for k in params}}

    @classmethod
    def from_config(cls, config):
        """The schedule :meth:`config` described (a subclass accepts only its own name)."""
        if not isinstance(config, dict) or "name" not in config:
            raise TypeError(f"config: expected a dict with a 'name', got {config!r}")
        kwargs = {k: v for k, v in config.items() if k != "name"}
        built = get_schedule(config["name"], **kwargs)
        if cls.name is not None and built.name != cls.name:
            raise ValueError(f"config['name']: expected {cls.name!r}, got {config['name']!r}")
        return built

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """``lr = lr0``."""

    name = "constant"

    def _rate(self, base_lr, t):
        return base_lr


class InverseTime(Schedule):
    """Inverse-time decay: ``lr = lr0 / (1 + decay * t)``."""

    name = "inverse_time"

    def __init__(self, decay, per="epoch"):
        super().__init__(per)
        self.decay = check_number("decay", decay, low=0.0)

    def _rate(self, base_lr, t):
        return base_lr / (1.0 + self.decay * t)


class Exponential(Schedule):
    """Exponential decay: ``lr = lr0 * rate^t``, ``0 < rate <= 1``."""

    name = "exponential"

    def __init__(self, rate, per="epoch"):
        super().__init__(per)
        self.rate = check_number("rate", rate, low=0.0, high=1.0, low_open=True)

    def _rate(self, base_lr, t):
        return base_lr * self.rate ** t


class InverseSqrt(Schedule):
    """Inverse square root: ``lr = k * lr0 / sqrt(t + 1)``.

    The course writes ``k / sqrt(epoch_num)`` with ``epoch_num`` counting from 1; ``t`` counts
    from 0, hence ``t + 1``, and ``k`` scales ``lr0`` so the optimizer's rate stays the unit.
    """

    name = "inverse_sqrt"

    def __init__(self, k=1.0, per="epoch"):
        super().__init__(per)
        self.k = check_positive("k", k)

    def _rate(self, base_lr, t):
        return self.k * base_lr / math.sqrt(t + 1)


class Staircase(Schedule):
    """Step decay: ``lr = lr0 * factor^(t // step)``, i.e. times ``factor`` every ``step``."""

    name = "staircase"

    def __init__(self, step, factor, per="epoch"):
        super().__init__(per)
        self.step = check_int("step", step, low=1)
        self.factor = check_number("factor", factor, low=0.0, high=1.0, low_open=True)

    def _rate(self, base_lr, t):
        return base_lr * self.factor ** (t // self.step)


def get_schedule(schedule, **kwargs):
    """A schedule by name (case-insensitive, see ``SCHEDULES``), config dict, or instance.

    Args:
        schedule: a name such as ``"exponential"`` (with its keywords), a :meth:`config` dict, a
            :class:`Schedule` (returned as is), or ``None`` (returned as is: no schedule, the
            optimizer's ``lr`` is left alone).
        **kwargs: the schedule's constructor keywords, with a name only.
    """
    if isinstance(schedule, str):
        cls = SCHEDULES[check_choice("schedule", schedule, SCHEDULES)]
        return cls(**check_keywords(f"schedule {cls.name!r}", cls, kwargs))
    if kwargs:
        raise ValueError(f"schedule: expected a name when keywords are given, got {schedule!r}")
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, dict):
        return Schedule.from_config(schedule)
    raise TypeError(f"schedule: expected a name in {sorted(SCHEDULES)}, a config dict, a "
                    f"Schedule or None, got {type(schedule).__name__}")

"""Learning-rate schedules, applied per epoch or per optimizer step.

A schedule maps ``(base_lr, t) -> lr`` with ``t`` counting from 0 (epochs, or global steps when
``per == "step"``); the fit loop takes each epoch's rates from
``optimizer.epoch_rates(schedule, ...)``, i.e. ``schedule(optimizer.base_lr, t)``. Plain host
arithmetic: nothing here touches a device. A subclass with a ``name`` registers itself for
:func:`get_schedule`; its constructor arguments are its attributes, so :meth:`Schedule.config`
needs nothing more. Every rate is proportional to ``lr0`` (``base_lr``), so
``ReduceLROnPlateau`` composes with each. The course's schedules (constant, inverse-time,
exponential, inverse square root, staircase) sit beside cosine decay (SGDR restarts optional),
one-cycle and a linear warm-up that wraps any of them; the last three follow PyTorch's
``CosineAnnealingLR`` / ``CosineAnnealingWarmRestarts``, ``OneCycleLR`` and ``LinearLR`` +
``SequentialLR`` (``tests/test_schedules.py`` compares them).
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


class Cosine(Schedule):
    """Cosine decay from ``lr0`` to ``min_factor * lr0`` over ``period`` (epochs or steps).

    ``lr = m + (lr0 - m) * (1 + cos(pi * c / P)) / 2`` with ``m = min_factor * lr0``. Without
    ``restarts``, ``c = min(t, period)`` and ``P = period`` (PyTorch's ``CosineAnnealingLR`` with
    ``T_max=period``, ``eta_min=m``, except that the rate stays at ``m`` after ``period``
    instead of rising again). With ``restarts`` (SGDR, PyTorch's
    ``CosineAnnealingWarmRestarts(T_0=period, T_mult=mult)``), cycle ``i`` lasts
    ``P = period * mult^i`` and ``c`` counts from its start.
    """

    name = "cosine"

    def __init__(self, period, min_factor=0.0, restarts=False, mult=1, per="epoch"):
        super().__init__(per)
        self.period = check_int("period", period, low=1)
        self.min_factor = check_number("min_factor", min_factor, low=0.0, high=1.0)
        if not isinstance(restarts, bool):
            raise TypeError(f"restarts: expected True or False, got {type(restarts).__name__}")
        self.restarts = restarts
        self.mult = check_int("mult", mult, low=1)
        if self.mult != 1 and not restarts:
            raise ValueError(f"mult: expected 1 without restarts, got {mult!r}")

    def _rate(self, base_lr, t):
        cycle = self.period
        if not self.restarts:
            t = min(t, cycle)
        elif self.mult == 1:
            t %= cycle
        else:  # O(log t) cycles, in exact integers
            while t >= cycle:
                t, cycle = t - cycle, cycle * self.mult
        low = self.min_factor * base_lr
        return low + (base_lr - low) * (1.0 + math.cos(math.pi * t / cycle)) / 2.0


ANNEAL = ("cos", "linear")


class OneCycle(Schedule):
    """One-cycle (Smith & Topin), PyTorch's ``OneCycleLR`` with ``max_lr=lr0``,
    ``three_phase=False`` (the learning rate only: momentum is not cycled).

    From ``lr0 / div_factor`` up to ``lr0`` at ``u = pct_start * total - 1``, then down to
    ``lr0 / (div_factor * final_div_factor)`` at ``total - 1``, where it stays: each phase
    anneals ``a -> b`` as ``b + (a - b) * (1 + cos(pi * p)) / 2`` (``anneal="cos"``) or
    ``a + (b - a) * p`` (``"linear"``), ``p = t / u`` in the first phase and
    ``(t - u) / (total - 1 - u)`` in the second.
    """

    name = "one_cycle"

    def __init__(self, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4,
                 anneal="cos", per="epoch"):
        super().__init__(per)
        self.total = check_int("total", total, low=2)
        self.pct_start = check_number("pct_start", pct_start, low=0.0, high=1.0,
                                      low_open=True, high_open=True)
        if not 0 < self.pct_start * self.total - 1 < self.total - 1:
            raise ValueError(f"pct_start: expected 1 < pct_start * total < total "
                             f"(total={self.total}), got {pct_start!r}")
        self.div_factor = check_number("div_factor", div_factor, low=1.0)
        self.final_div_factor = check_number("final_div_factor", final_div_factor, low=1.0)
        self.anneal = check_choice("anneal", anneal, ANNEAL)

    def _rate(self, base_lr, t):
        start = base_lr / self.div_factor
        phases = ((0.0, self.pct_start * self.total - 1, start, base_lr),
                  (self.pct_start * self.total - 1, self.total - 1,
                   base_lr, start / self.final_div_factor))
        t = min(t, self.total - 1)
        first, last, a, b = phases[0] if t <= phases[0][1] else phases[1]
        p = (t - first) / (last - first)
        if self.anneal == "cos":
            return b + (a - b) * (1.0 + math.cos(math.pi * p)) / 2.0
        return a + (b - a) * p


class Warmup(Schedule):
    """Linear warm-up for ``warmup`` epochs or steps, then the schedule ``after``.

    ``lr = lr0 * (start_factor + (1 - start_factor) * t / warmup)`` for ``t < warmup``, then
    ``after(lr0, t - warmup)``: PyTorch's ``SequentialLR([LinearLR(start_factor,
    total_iters=warmup), after], milestones=[warmup])``. ``after`` is anything
    :func:`get_schedule` takes (a name, a config dict, a Schedule; default constant) and counts
    in the same unit: its ``per`` must be this one's. ``get_schedule(name, warmup=w, ...)``
    wraps a named schedule in one.
    """

    name = "warmup"

    def __init__(self, warmup, after="constant", start_factor=1.0 / 3.0, per="epoch"):
        super().__init__(per)
        self.warmup = check_int("warmup", warmup, low=1)
        self.start_factor = check_number("start_factor", start_factor, low=0.0, high=1.0)
        if isinstance(after, str):
            after = get_schedule(after, per=self.per)
        after = get_schedule(after)
        if not isinstance(after, Schedule) or isinstance(after, Warmup):
            raise TypeError(f"after: expected a schedule other than a warm-up, got {after!r}")
        if after.per != self.per:
            raise ValueError(f"after: expected a schedule per {self.per!r}, "
                             f"got per {after.per!r}")
        self.after = after

    def _rate(self, base_lr, t):
        if t < self.warmup:
            return base_lr * (self.start_factor + (1.0 - self.start_factor) * t / self.warmup)
        return self.after(base_lr, t - self.warmup)

    def config(self):
        return {**super().config(), "after": self.after.config()}


def get_schedule(schedule, **kwargs):
    """A schedule by name (case-insensitive, see ``SCHEDULES``), config dict, or instance.

    Args:
        schedule: a name such as ``"exponential"`` (with its keywords), a :meth:`config` dict, a
            :class:`Schedule` (returned as is), or ``None`` (returned as is: no schedule, the
            optimizer's ``lr`` is left alone).
        **kwargs: the schedule's constructor keywords, with a name only; with a name other
            than ``"warmup"``, ``warmup=`` (epochs or steps) and ``warmup_start_factor=`` wrap
            it in a :class:`Warmup`.
    """
    if isinstance(schedule, str):
        cls = SCHEDULES[check_choice("schedule", schedule, SCHEDULES)]
        wrap = {k: kwargs.pop(k) for k in ("warmup", "warmup_start_factor") if k in kwargs}
        if wrap and cls is not Warmup:
            after = cls(**check_keywords(f"schedule {cls.name!r}", cls, kwargs))
            start = wrap.get("warmup_start_factor", 1.0 / 3.0)
            if "warmup" not in wrap:
                raise TypeError("warmup: expected a value with warmup_start_factor, got none")
            return Warmup(wrap["warmup"], after, start, per=after.per)
        kwargs.update(wrap)
        return cls(**check_keywords(f"schedule {cls.name!r}", cls, kwargs))
    if kwargs:
        raise ValueError(f"schedule: expected a name when keywords are given, got {schedule!r}")
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, dict):
        return Schedule.from_config(schedule)
    raise TypeError(f"schedule: expected a name in {sorted(SCHEDULES)}, a config dict, a "
                    f"Schedule or None, got {type(schedule).__name__}")

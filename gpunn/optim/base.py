"""The optimizer base class: learning rate, step count, flat state, state dicts, the launch.

See :mod:`gpunn.optim` for what an update is; a subclass (:mod:`gpunn.optim.optimizers`)
declares only what differs. ``OPTIMIZERS`` is the registry of names, filled by subclasses
that set ``name``; :func:`get_optimizer` reads it.
"""

import warnings
import weakref

import numpy as np

from gpunn._checks import (
    check_choice,
    check_finite,
    check_int,
    check_keywords,
    check_number,
    check_positive,
)
from gpunn.control import Control
from gpunn.optim.clip import Clip, check_clip

OPTIMIZERS = {}
# Updates an optimizer may have counted: past 2**53 the bias corrections' float exponent and
# the device's step count stop being exact (a crafted t of 10**30 overflowed a C long).
MAX_UPDATES = 2 ** 53
_STATE_DICT_KEYS = ("name", "lr", "base_lr", "t", "hyperparameters", "state")
# Keywords of every optimizer, after its own hyperparameters (gpunn.optim.clip).
CLIP_KEYWORDS = ("clip_norm", "clip_value")


def _deprecated(name, instead):
    warnings.warn(f"setting optimizer.{name} is deprecated: the optimizer owns it; use "
                  f"optimizer.{instead}", DeprecationWarning, stacklevel=3)


def check_rate(name, value):
    """A decay rate (momentum, beta, alpha) in [0, 1)."""
    return check_number(name, value, low=0.0, high=1.0, high_open=True)


def _unpack(model):
    """``(backend, flat_params, flat_grads)`` of ``model``; the gradient must match the params."""
    try:
        be, p, g = model.backend, model.flat_params, model.flat_grads
    except AttributeError:
        raise TypeError("model: expected an object with backend, flat_params and flat_grads, "
                        f"got {type(model).__name__}") from None
    if g.shape != p.shape or g.dtype != p.dtype:
        raise ValueError(f"model.flat_grads: expected shape {p.shape} and dtype {p.dtype} "
                         f"(those of flat_params), got {g.shape} and {g.dtype}")
    return be, p, g


def _weak(model):
    """A weak reference to ``model`` (a strong one for objects that cannot have weak ones)."""
    try:
        return weakref.ref(model)
    except TypeError:
        return lambda: model


def _check_like(key, array, p):
    if array.shape != p.shape or array.dtype != p.dtype:
        raise ValueError(f"optimizer state {key!r}: expected shape {p.shape} and dtype "
                         f"{p.dtype} (those of model.flat_params), got {array.shape} and "
                         f"{array.dtype}; state belongs to one model")


class Optimizer:
    """Base class: learning rate, step count, flat state, state dicts, the fused launch.

    Subclasses set ``name``, ``kernel`` (the update kernel of ``kernels/optimizers.cu``),
    ``state_names`` (their flat state arrays, in the kernel's order), ``hyperparameters``
    (constructor keywords besides ``lr``; the base adds ``clip_norm`` and ``clip_value``,
    which every constructor takes and passes on) and :meth:`scalars`.

    Args:
        lr: the learning rate (> 0).
        clip_norm: clip the gradient to this global 2-norm before each update (PyTorch's
            ``clip_grad_norm_``), or None; see :mod:`gpunn.optim.clip`.
        clip_value: clamp each gradient entry to ``[-clip_value, clip_value]`` before each
            update (PyTorch's ``clip_grad_value_``), or None.
    """

    name = None
    kernel = None
    state_names = ()
    nonnegative_state = ()  # state that holds squares: a negative value is not a saved state
    hyperparameters = ()
    decay_biases = False  # optimizers with weight_decay take it as a keyword

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name is not None:
            OPTIMIZERS[cls.name] = cls
        if not set(CLIP_KEYWORDS) <= set(cls.hyperparameters):
            cls.hyperparameters = (*cls.hyperparameters, *CLIP_KEYWORDS)

    def __init__(self, lr, clip_norm=None, clip_value=None):
        self._base_lr = check_positive("lr", lr)
        self._clip = Clip(clip_norm, clip_value)
        self.lr = self._base_lr
        self._t = 0
        self.state = {}
        self._backend = None
        self._eager = None  # the Control of step()
        self._owner = None  # weak reference to the model the state belongs to
        self._no_work = None  # the empty working copy of models without one

    @property
    def lr(self):
        """The current learning rate (the last step's, after a scheduled epoch)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        # >= 0, not > 0 as in the constructor: a schedule may decay the rate to zero.
        self._lr = check_number("lr", value, low=0.0)

    @property
    def clip_norm(self):
        """The largest global gradient norm before an update, or None (no norm clipping)."""
        return self._clip.clip_norm

    @clip_norm.setter
    def clip_norm(self, value):
        self._clip.clip_norm = check_clip("clip_norm", value)

    @property
    def clip_value(self):
        """The largest absolute gradient entry before an update, or None (no clamping)."""
        return self._clip.clip_value

    @clip_value.setter
    def clip_value(self, value):
        self._clip.clip_value = check_clip("clip_value", value)

    @property
    def base_lr(self):
        """The rate schedules start from: the constructor's, as :meth:`scale_lr` left it."""
        return self._base_lr

    @base_lr.setter
    def base_lr(self, value):
        _deprecated("base_lr", "scale_lr(factor)")
        self._base_lr = check_positive("base_lr", value)

    @property
    def t(self):
        """Updates applied so far (the bias corrections' step count)."""
        return self._t

    @t.setter
    def t(self, value):
        _deprecated("t", "count_updates(t)")
        self._t = check_int("t", value, low=0)

    def scale_lr(self, factor, min_lr=0.0):
        """Multiply ``base_lr`` (at least ``min_lr``) and the current ``lr`` by the same
        factor, so a reduction composes with any schedule (each is proportional to
        ``base_lr``). Returns whether the rate changed (not when ``base_lr`` is at
        ``min_lr`` already)."""
        new = max(self._base_lr * check_number("factor", factor, low=0.0), min_lr)
        if not 0 < new < self._base_lr:
            return False
        self.lr = self._lr * (new / self._base_lr)
        self._base_lr = new
        return True

    def epoch_rates(self, schedule, epoch, steps, dtype=None):
        """The learning rate of each of the ``steps`` steps of ``epoch`` (from 1): ``lr``
        without a ``schedule``, else the schedule's from ``base_lr`` (per epoch or per step).
        ``lr`` becomes the last of them. ``dtype``: each rate is checked to be 0 or a normal
        number of it (the device table's precision) before any reaches the table."""
        if schedule is None:
            rates = [self._lr] * steps
        elif schedule.per == "epoch":
            rates = [schedule(self._base_lr, epoch - 1)] * steps
        else:
            first = (epoch - 1) * steps
            rates = [schedule(self._base_lr, first + k) for k in range(steps)]
        if dtype is not None:
            info = np.finfo(dtype)
            low, high = float(info.tiny), float(info.max)  # compared as Python floats
            for k, rate in enumerate(rates):
                if rate != 0 and not low <= rate <= high:
                    raise ValueError(f"lr: expected 0 or a value in [{low:.4g}, {high:.4g}] "
                                     f"(normal {info.dtype} numbers), got "
                                     f"{rate!r} from the schedule at step {k + 1} of epoch "
                                     f"{epoch}")
        self.lr = rates[-1]
        return rates

    def count_updates(self, t):
        """Set the update count to ``t``, as the device counted it (``gpunn.step`` reads it
        back with each step's record)."""
        self._t = check_int("t", t, low=self._t)

    def launch_key(self):
        """The hyperparameters a launch bakes in: a recorded step is valid while it is equal."""
        return tuple(getattr(self, k) for k in self.hyperparameters)

    def check_dtype(self, dtype):
        """Raise ValueError if ``lr``, ``eps`` or ``weight_decay`` is not 0 and not a normal
        number of ``dtype`` (the precision the update runs in): such a value rounds to inf or
        to 0 / a subnormal there, and the update becomes inf or NaN."""
        info = np.finfo(dtype)
        low, high = float(info.tiny), float(info.max)  # compared as Python floats: no cast
        for name in ("lr", "eps", "weight_decay", *CLIP_KEYWORDS):
            value = getattr(self, name, None) or 0.0
            if value != 0 and not low <= value <= high:
                raise ValueError(f"{name}: expected 0 or a value in [{low:.4g}, {high:.4g}] "
                                 f"(normal {info.dtype} numbers, the precision of the model), "
                                 f"got {value!r}")

    def __setstate__(self, state):
        state = dict(state)
        for key in ("t", "base_lr"):  # pickled before these became properties
            if key in state:
                state[f"_{key}"] = state.pop(key)
        if "weight_decay" in state:  # pickled before decay_biases: every parameter decayed
            state.setdefault("decay_biases", True)
        state.setdefault("_clip", Clip())  # pickled before clipping existed
        self.__dict__.update(state)

    def __getstate__(self):
        """Pickle / copy: scalars and host copies of the state. A copy binds to the next
        model it steps and moves its state there (backends and device caches do not copy)."""
        host = self._backend.to_numpy if self._backend is not None else np.asarray
        state = {k: np.array(host(a), copy=True) for k, a in self.state.items()}
        return dict(self.__dict__, state=state, _owner=None, _backend=None, _eager=None,
                    _no_work=None, _clip=Clip(self.clip_norm, self.clip_value))

    def _claim(self, model):
        """Refuse to apply state built on another model (or on one that is gone) to ``model``."""
        owner = None if self._owner is None else self._owner()
        if self.state and self._owner is not None and owner is not model:
            raise ValueError("model: expected the model this optimizer's state was built on, "
                             "got another one; use a new optimizer for each model (or move "
                             "state on purpose with state_dict / load_state_dict(model=...))")
        self._owner = _weak(model)

    def step(self, model):
        """Update ``model.flat_params`` in place from ``model.flat_grads``: one kernel launch.

        Uses ``lr`` and ``t + 1`` as the update count, then increments ``t``.
        """
        be, p, _ = _unpack(model)
        eager = self._eager
        if eager is None or eager.backend is not be or eager.lrs.dtype != p.dtype:
            eager = self._eager = Control(be, p.dtype, 1)
        eager.start([self._lr], self._t)
        self.update(model, eager.lrs, eager.ctrl)
        self._t += 1

    def update(self, model, lrs, ctrl):
        """One fused launch: the update of the step whose index and count ``ctrl`` holds (see
        :mod:`gpunn.step`), with learning rate ``lrs[ctrl[K]]``. Does not change ``t``."""
        be, p, g = _unpack(model)
        self.check_dtype(p.dtype)
        for key in self.state_names:
            array = self.state.get(key)
            if array is None:
                self.state[key] = be.zeros(p.shape, p.dtype)
            elif not isinstance(array, be.xp.ndarray):  # loaded host arrays, first step here
                _check_like(key, array, p)
                self.state[key] = be.asarray(array)
            else:
                _check_like(key, array, p)
        self._claim(model)
        self._backend = be
        work = getattr(model, "flat_work", None)
        if work is None:  # no working copy (precision fp32, tf32): an empty one, not written
            if self._no_work is None or not isinstance(self._no_work, be.xp.ndarray):
                self._no_work = be.xp.zeros(0, dtype=np.uint16)
            work = self._no_work
        states = [self.state.get(key, p) for key in self.kernel_states()]
        self._clip.launch(be, g, ctrl)
        for a, b, decay in self._spans(model, p.size):
            be.kernel(self.kernel, g[a:b], lrs, lrs.size, *self._scalars(decay),
                      int(work.size > 0), ctrl, p[a:b], *(s[a:b] for s in states),
                      work[a:b] if work.size else work)

    def _spans(self, model, n):
        """``[(start, stop, weight_decay)]``: the launches of one update. Two when only the
        weights decay: ``[0, decay_end)`` with it, the rest without (the same kernel on two
        slices of the flat buffers, so each element gets the bits one launch would give it)."""
        decay = getattr(self, "weight_decay", 0.0)
        end = getattr(getattr(model, "params", None), "decay_end", n)
        if decay == 0 or self.decay_biases or end >= n:
            return [(0, n, decay)]
        return [(0, end, decay), (end, n, 0.0)]

    def _scalars(self, weight_decay):
        """:meth:`scalars` as they are with ``weight_decay`` in place of the optimizer's (the
        undecayed slice): read from a shallow twin, so the optimizer itself never changes."""
        if weight_decay == getattr(self, "weight_decay", weight_decay):
            return self.scalars()
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__, weight_decay=weight_decay)
        return twin.scalars()

    def scalars(self):
        """The kernel's hyperparameter arguments, between the rate table and ``working``."""
        raise NotImplementedError

    def kernel_states(self):
        """Names of the state arrays the kernel takes after ``p`` (an absent one is passed
        as ``p``, which the kernel then never touches): ``state_names``."""
        return self.state_names

    def state_dict(self):
        """A copy to checkpoint: Python scalars and host NumPy arrays.

        Returns:
            ``{"name", "lr", "base_lr", "t", "hyperparameters": {keyword: value},
            "state": {name: 1-D array}}``; ``state`` is empty before the first step. Rebuild
            with ``get_optimizer(d["name"], lr=d["base_lr"], **d["hyperparameters"])`` and
            :meth:`load_state_dict`.
        """
        to_host = self._backend.to_numpy if self._backend is not None else np.asarray
        return {"name": self.name, "lr": self.lr, "base_lr": self.base_lr, "t": self.t,
                "hyperparameters": {k: getattr(self, k) for k in self.hyperparameters},
                "state": {k: np.array(to_host(a), copy=True) for k, a in self.state.items()}}

    def load_state_dict(self, state_dict, model=None, copy=True):
        """Restore a :meth:`state_dict` (copied), hyperparameters included.

        Args:
            state_dict: as returned by :meth:`state_dict` of an optimizer of the same kind.
            model: if given, the state is checked against and moved onto ``model.backend``
                now; otherwise that happens at the next :meth:`step`.
            copy: False to take the state's host arrays as they are, without a copy (a
                checkpoint reader that owns them; they must not be used elsewhere).
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        missing = [k for k in _STATE_DICT_KEYS if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict: expected keys {list(_STATE_DICT_KEYS)}, "
                             f"got none for {missing}")
        if state_dict["name"] != self.name:
            raise ValueError(f"state_dict['name']: expected {self.name!r}, "
                             f"got {state_dict['name']!r}")
        hyper = state_dict["hyperparameters"]
        if not isinstance(hyper, dict):
            raise TypeError("state_dict['hyperparameters']: expected a dict, "
                            f"got {type(hyper).__name__}")
        hyper = saved_hyperparameters(type(self), hyper)
        check_keywords("state_dict['hyperparameters']", type(self), {"lr": 0, **hyper})
        fresh = type(self)(lr=state_dict["base_lr"], **hyper)
        fresh.lr = state_dict["lr"]
        fresh.count_updates(check_int("state_dict['t']", state_dict["t"], low=0,
                                      high=MAX_UPDATES))
        fresh.state = _host_state(state_dict["state"], fresh.state_names if fresh.t else (),
                                  copy)
        for key, array in fresh.state.items():
            check_finite(f"state_dict['state'][{key!r}]", array)
        for key in set(fresh.nonnegative_state) & set(fresh.state):
            negative = np.count_nonzero(fresh.state[key] < 0)
            if negative:
                raise ValueError(f"state_dict['state'][{key!r}]: expected values >= 0 (a "
                                 f"running mean of squared gradients), got {negative} negative")
        if model is not None:
            be, p, _ = _unpack(model)
            for key, array in fresh.state.items():
                _check_like(key, array, p)
                fresh.state[key] = be.asarray(array)
            fresh._backend = be
            fresh._owner = _weak(model)
        self.__dict__.update(fresh.__dict__)


def saved_hyperparameters(cls, hyper):
    """``hyper`` as saved by a state dict or checkpoint; one written before ``decay_biases``
    existed decayed every parameter, so it resumes doing so."""
    if "weight_decay" in hyper and "decay_biases" in cls.hyperparameters:
        return {"decay_biases": True, **hyper}
    return hyper


def _host_state(state, names, copy=True):
    """The state arrays ``names`` (exactly those; copies unless ``copy`` is False): 1-D, one
    float dtype and length."""
    if not isinstance(state, dict) or sorted(state) != sorted(names):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"state_dict['state']: expected arrays {sorted(names)}, got {got}")
    copies = {k: np.array(v, copy=True) if copy else np.asarray(v) for k, v in state.items()}
    first = next(iter(copies.values()), None)
    for key, array in copies.items():
        if array.ndim != 1 or array.dtype not in (np.float32, np.float64):
            raise ValueError(f"state_dict['state'][{key!r}]: expected a 1-D float32/float64 "
                             f"array, got shape {array.shape} and dtype {array.dtype}")
        if array.shape != first.shape or array.dtype != first.dtype:
            raise ValueError(f"state_dict['state'][{key!r}]: expected shape {first.shape} and "
                             f"dtype {first.dtype} like the others, got {array.shape} and "
                             f"{array.dtype}")
    return copies


def get_optimizer(optimizer, lr=None, **kwargs):
    """An optimizer by name (case-insensitive, see ``OPTIMIZERS``), or the instance given.

    Args:
        optimizer: a name such as ``"adam"``, or an :class:`Optimizer` (returned as is).
        lr: learning rate; ``None`` takes the optimizer's default (SGD and Momentum have none).
        **kwargs: the optimizer's other constructor keywords.
    """
    if isinstance(optimizer, Optimizer):
        if lr is not None or kwargs:
            raise ValueError("optimizer: expected a name when lr or keywords are given, got an "
                             f"instance of {type(optimizer).__name__}; set them on it instead")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer: expected a name in {sorted(OPTIMIZERS)} or an Optimizer, "
                        f"got {type(optimizer).__name__}")
    cls = OPTIMIZERS[check_choice("optimizer", optimizer, OPTIMIZERS)]
    if lr is not None:
        kwargs["lr"] = lr
    return cls(**check_keywords(f"optimizer {cls.name!r}", cls, kwargs))

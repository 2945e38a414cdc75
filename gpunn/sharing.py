"""How a model is shared: one thread at a time, and copies (deepcopy, pickle) that own their
parameters, so ``W``/``b`` stay views of the copy's ``flat_params`` and it trains like the
original. :class:`~gpunn.Sequential` inherits these; nothing here knows about layers."""

import contextlib
import copy
import functools
import threading

from gpunn.backends import use_backend


def check_model(name, value):
    """``value`` if it is a model (:class:`~gpunn.Sequential`, an MLP), else TypeError.

    Every model is a :class:`Shareable`, so the check needs no import of the model module
    (which imports this one)."""
    if not isinstance(value, Shareable):
        raise TypeError(f"{name}: expected a Sequential or MLP, got {type(value).__name__}")
    return value


def holding_model(what):
    """Decorator: ``func(model, ...)`` checks ``model`` and holds it (:meth:`Shareable.exclusive`)
    while it runs, so two threads cannot use one model at once."""
    def decorate(func):
        @functools.wraps(func)
        def held(model, *args, **kwargs):
            with check_model("model", model).exclusive(what):
                return func(model, *args, **kwargs)

        return held

    return decorate


class Shareable:
    """Thread ownership and copying for a model with ``config()``, ``from_config``,
    ``backend`` and ``params`` (:class:`~gpunn.params.FlatParams`); ``_OWN`` names the
    attributes a fresh model rebuilds."""

    _OWN = ()

    @staticmethod
    def new_lock():
        """The lock :meth:`exclusive` takes (re-entrant: the holding thread may use the model)."""
        return threading.RLock()

    @contextlib.contextmanager
    def exclusive(self, what):
        """Hold the model for ``what`` (``"fit"``, ``"predict"``...) in this thread.

        Training and inference share the model's work buffers, so a second thread using the
        model at the same time would silently corrupt both: it gets RuntimeError instead. The
        thread holding the model may use it again (a fit callback may call ``predict``).
        """
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"{what}: this model is in use by another thread (fit, predict "
                               "and evaluate share its work buffers); use one model per "
                               "thread, e.g. model.copy()")
        try:
            yield self
        finally:
            self._lock.release()

    def __getstate__(self):
        """Architecture, host parameters and any attributes added by the user (pickle, copy).

        Unpickled and copied models are built afresh on the current backend (``deepcopy``
        keeps the model's backend), with ``W``/``b`` views of their own ``flat_params``.
        """
        state = {k: v for k, v in self.__dict__.items() if k not in self._OWN}
        state["_config"] = self.config()
        state["_params"] = self.params.host()
        return state

    def __setstate__(self, state):
        state = dict(state)
        built = self.from_config(state.pop("_config"))
        built.params.load_host(state.pop("_params"))
        self.__dict__.update(built.__dict__)
        self.__dict__.update(state)

    def __deepcopy__(self, memo):
        state = self.__getstate__()
        own = {k: state.pop(k) for k in ("_config", "_params")}
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        with use_backend(self.backend):
            clone.__setstate__({**copy.deepcopy(state, memo), **own})
        return clone

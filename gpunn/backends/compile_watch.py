"""How long Numba spent compiling and loading kernels in this process, and a word when a
compile starts.

Numba compiles each twin on its first call unless its cache holds it (the first run after an
install, or after a kernel file changed): seconds inside the first training step. ``fit``
announces it once and leaves it out of the epoch times. :func:`compile_seconds` counts Numba's
``"numba:compile"`` event, which a load from the cache does not send; a compile nested in
another (a twin calling a helper) counts once, in the outer one. Even from the cache, the
first call of each twin in a process costs about a second in all (Numba builds its CPU target
and links the cached code under its compiler lock): :func:`load_seconds` counts the time the
lock's ``"numba:compiler_lock"`` event spans (compiles included), which ``fit`` also leaves out.
"""

import threading
import time

_lock = threading.Lock()
_state = {"installed": False, "depth": 0, "started": 0.0, "seconds": 0.0, "announce": None}
_locked = {"depth": 0, "started": 0.0, "seconds": 0.0}  # the compiler lock: loads and compiles


def compile_seconds():
    """Seconds this process has spent compiling Numba kernels since :func:`watch_compiles`."""
    with _lock:
        return _state["seconds"]


def load_seconds():
    """Seconds this process has spent loading or compiling Numba kernels (under Numba's compiler
    lock) since :func:`watch_compiles`; at least :func:`compile_seconds`."""
    with _lock:
        return _locked["seconds"]


def watch_compiles(announce=None):
    """Start counting compile time (once per process); ``announce()`` runs at the start of the
    next compile, once (None: leave the pending announcement as it is)."""
    with _lock:
        if announce is not None:
            _state["announce"] = announce
        if _state["installed"]:
            return
        _state["installed"] = True
    from numba.core import event

    event.register("numba:compile", _listener())
    event.register("numba:compiler_lock", _lock_listener())


def forget_announcement():
    """Drop the pending announcement: no compile is to be announced any more."""
    with _lock:
        _state["announce"] = None


def _started():
    with _lock:
        _state["depth"] += 1
        if _state["depth"] > 1:
            return None
        _state["started"] = time.perf_counter()
        announce, _state["announce"] = _state["announce"], None
    return announce


def _ended():
    with _lock:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            _state["seconds"] += time.perf_counter() - _state["started"]


def _listener():
    """A Numba event listener (built here: Numba is imported only when watching starts)."""
    from numba.core import event

    class Listener(event.Listener):
        """Times the outermost compile; runs the pending announcement at its start."""

        def on_start(self, event):
            announce = _started()
            if announce is not None:
                announce()

        def on_end(self, event):
            _ended()

    return Listener()


def _lock_listener():
    """Times the outermost hold of Numba's compiler lock (a load from the cache or a compile)."""
    from numba.core import event

    class Listener(event.Listener):
        def on_start(self, event):
            with _lock:
                _locked["depth"] += 1
                if _locked["depth"] == 1:
                    _locked["started"] = time.perf_counter()

        def on_end(self, event):
            with _lock:
                _locked["depth"] -= 1
                if _locked["depth"] == 0:
                    _locked["seconds"] += time.perf_counter() - _locked["started"]

    return Listener()

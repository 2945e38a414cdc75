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
_state = {"installed": False, "announce": None}
# Per watched event: nesting depth, start of the outermost one, seconds summed over those.
_timed = {kind: {"depth": 0, "started": 0.0, "seconds": 0.0}
          for kind in ("numba:compile", "numba:compiler_lock")}


def compile_seconds():
    """Seconds this process has spent compiling Numba kernels since :func:`watch_compiles`."""
    with _lock:
        return _timed["numba:compile"]["seconds"]


def load_seconds():
    """Seconds this process has spent loading or compiling Numba kernels (under Numba's compiler
    lock) since :func:`watch_compiles`; at least :func:`compile_seconds`."""
    with _lock:
        return _timed["numba:compiler_lock"]["seconds"]


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

    for kind in _timed:
        event.register(kind, _listener(kind))


def forget_announcement():
    """Drop the pending announcement: no compile is to be announced any more."""
    with _lock:
        _state["announce"] = None


def _started(kind):
    """Count the start of event ``kind``; the pending announcement if it is the outermost
    compile (taken: it runs once)."""
    with _lock:
        timed = _timed[kind]
        timed["depth"] += 1
        if timed["depth"] > 1:
            return None
        timed["started"] = time.perf_counter()
        if kind != "numba:compile":
            return None
        announce, _state["announce"] = _state["announce"], None
    return announce


def _ended(kind):
    with _lock:
        timed = _timed[kind]
        timed["depth"] -= 1
        if timed["depth"] == 0:
            timed["seconds"] += time.perf_counter() - timed["started"]


def _listener(kind):
    """A Numba event listener timing the outermost event ``kind`` (built here: Numba is
    imported only when watching starts); a compile's start runs the pending announcement."""
    from numba.core import event

    class Listener(event.Listener):
        def on_start(self, event):
            announce = _started(kind)
            if announce is not None:
                announce()

        def on_end(self, event):
            _ended(kind)

    return Listener()

"""CUDA streams and graph capture, as far as gpunn relies on them, for the cuda-emulated backend.

What it states (from the CUDA programming guide; the one-command GPU check settles it on
hardware):

- work goes to a stream; each thread has a current stream, the legacy default stream unless
  a stream is entered (``with stream:``), as in CuPy;
- while a stream captures, work submitted to it is recorded into its graph, not run; a graph
  launch runs the recorded work on the stream it is launched on;
- the legacy stream synchronizes with every blocking stream, so work submitted to it while a
  blocking stream captures fails (``cudaErrorStreamCaptureImplicit``) and invalidates that
  capture; a non-blocking stream has no such tie.

- staging (gpunn.staging): an asynchronous host-to-device copy needs page-locked host memory
  (from pageable memory CUDA copies synchronously: no overlap); waiting on an event that was
  never recorded is no wait at all (so the emulation refuses it: it would be a race on a GPU).

Work here runs at once, in the submitting thread (the host has no queues); so the emulation
checks what lands where, not timing.
"""

import threading

CAPTURE_IMPLICIT = ("cudaErrorStreamCaptureImplicit: operation would make the legacy stream "
                    "depend on a capturing blocking stream")


class HostGraph:
    """Recorded work; :meth:`launch` runs it on a stream."""

    def __init__(self, streams, work):
        self._streams = streams
        self.work = work

    def launch(self, stream):
        self._streams.submit(stream, self._run)

    def _run(self):
        for work in self.work:
            work()


class HostStream:
    """A stream: entering it makes it the thread's current stream."""

    def __init__(self, streams, non_blocking, legacy=False):
        self._streams = streams
        self.non_blocking = non_blocking
        self.legacy = legacy
        self.capture = None  # the work recorded while capturing
        self.broken = None  # why the capture in progress is invalid
        self.ptr = id(self)

    def __enter__(self):
        self._streams._stack().append(self)
        return self

    def __exit__(self, *exc):
        self._streams._stack().pop()
        return False

    def begin_capture(self):
        if self.legacy:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: the legacy stream")
        if self._streams.fail_capture:
            raise RuntimeError(self._streams.fail_capture)
        with self._streams.lock:
            self.capture, self.broken = [], None
        for hook in self._streams.while_capturing:
            hook()

    def end_capture(self):
        with self._streams.lock:
            work, broken, self.capture, self.broken = self.capture, self.broken, None, None
        if broken:
            raise RuntimeError(f"cudaErrorStreamCaptureInvalidated: {broken}")
        return HostGraph(self._streams, work)

    def synchronize(self):
        pass


class HostEvent:
    """An event: recorded on a stream, waited for by another or by the host."""

    def __init__(self):
        self.recorded = False

    def synchronize(self):
        if not self.recorded:
            raise RuntimeError("an event waited for before it was recorded")


class HostStreams:
    """The streams of one emulated device: ``current()``, ``capture_stream()`` (per thread,
    non-blocking), ``run(function, args)`` and ``submit(stream, work)``.

    Args:
        capture_blocking: give threads blocking capture streams (what gpunn once did) to show
            that the emulation catches it.
        fail_capture: every capture fails with this message (a driver that cannot capture).

    Attributes:
        while_capturing: callables run inside every ``begin_capture`` (tests use it to run
            another thread's work in the middle of a capture).
    """

    def __init__(self, capture_blocking=False, fail_capture=None):
        self.lock = threading.Lock()
        self.legacy = HostStream(self, non_blocking=False, legacy=True)
        self._local = threading.local()
        self._capture_blocking = capture_blocking
        self.fail_capture = fail_capture
        self.while_capturing = []
        self._streams = []
        self.pinned = []  # the arrays from pinned_empty
        self.copies = 0  # asynchronous copies made

    def _stack(self):
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def current(self):
        stack = self._stack()
        return stack[-1] if stack else self.legacy

    def capture_stream(self):
        if not hasattr(self._local, "capture"):
            self._local.capture = HostStream(self, non_blocking=not self._capture_blocking)
            with self.lock:
                self._streams.append(self._local.capture)
        return self._local.capture

    def submit(self, stream, work):
        """Record ``work`` if ``stream`` captures, else run it (or fail as CUDA would)."""
        with self.lock:
            if stream.capture is not None:
                stream.capture.append(work)
                return
            if stream.legacy:
                blocking = [s for s in self._streams
                            if s.capture is not None and not s.non_blocking]
                for captured in blocking:
                    captured.broken = CAPTURE_IMPLICIT
                if blocking:
                    raise RuntimeError(CAPTURE_IMPLICIT)
        work()

    def run(self, function, args):
        self.submit(self.current(), lambda: function(*args))

    def synchronize(self):
        pass

    def pinned_empty(self, shape, dtype):
        import numpy

        array = numpy.empty(shape, dtype)
        self.pinned.append(array)
        return array

    def record(self, stream):
        event = HostEvent()
        self.submit(stream, lambda: setattr(event, "recorded", True))
        return event

    def copy_async(self, dst, src, after):
        import numpy

        if not any(numpy.shares_memory(src, p) and src.size for p in self.pinned):
            raise RuntimeError("an asynchronous copy from pageable host memory (it would run "
                               "synchronously on a GPU)")
        if after is not None:
            after.synchronize()  # refuses an event never recorded
        dst[...] = src
        self.copies += 1
        event = HostEvent()
        event.recorded = True
        return event

    def wait(self, stream, event):
        event.synchronize()


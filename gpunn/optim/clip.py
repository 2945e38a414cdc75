"""Gradient clipping, on the device, just before an optimizer's fused update.

``clip_norm``: the whole flat gradient is scaled by ``min(1, clip_norm / (norm + 1e-6))``,
``norm`` its global 2-norm: PyTorch's ``clip_grad_norm_(model.parameters(), clip_norm)``
(optax's ``clip_by_global_norm`` scales by ``clip_norm / norm`` without the 1e-6).
``clip_value``: every entry is clamped to ``[-clip_value, clip_value]``: PyTorch's
``clip_grad_value_``, optax's ``clip``. With both, the norm clip comes first.

Clipping sees the gradient as the update would: after the data-parallel all-reduce (the
global batch's mean gradient, the same on every rank) and before coupled weight decay adds
``weight_decay * p`` (PyTorch clips ``.grad`` before ``optimizer.step()``); for a bf16 model it
is the float32 master gradient. The norm is reduced in a fixed shape that depends on the
gradient's size only (:func:`partials`, ``kernels/clip.cu``), so every backend sums the same
numbers in the same order; it needs no host value, so a recorded step (a CUDA graph) stays
valid. A norm that is not finite (a NaN/inf gradient, or one so large that the sum of its
squares overflows the dtype) makes the step non-finite: its update is skipped as for a NaN
gradient (``fit``'s ``on_nonfinite``).
"""

from gpunn._checks import check_number

# The first reduction's partial sums: about this many gradient entries each, at most this
# many sums (enough threads to stream the gradient on a GPU), then at most SECOND of them.
PER_PARTIAL = 32
MAX_PARTIALS = 1 << 18
SECOND = 512


def check_clip(name, value):
    """``value`` (a clip threshold) as a finite float > 0, or None (no clipping)."""
    if value is None:
        return None
    return check_number(name, value, low=0.0, low_open=True)


def partials(n):
    """``(p1, p2)``: the partial sums of the norm's first and second reduction of ``n``
    gradient entries (a function of ``n`` alone: the same on every backend)."""
    p1 = max(1, min(MAX_PARTIALS, -(-n // PER_PARTIAL)))
    return p1, min(p1, SECOND)


class Clip:
    """The clipping of one optimizer: its thresholds, its scratch buffer, its launches.

    Args:
        clip_norm: the largest global norm, or None.
        clip_value: the largest absolute entry, or None.
    """

    def __init__(self, clip_norm=None, clip_value=None):
        self.clip_norm = check_clip("clip_norm", clip_norm)
        self.clip_value = check_clip("clip_value", clip_value)
        self._scratch = None

    def __getstate__(self):  # a device buffer does not pickle or copy: made again on use
        return dict(self.__dict__, _scratch=None)

    def __bool__(self):
        return self.clip_norm is not None or self.clip_value is not None

    def launch(self, backend, g, ctrl):
        """Clip ``g`` (the flat gradient) in place on ``backend``: four launches for the
        norm (three reductions, then the scale), one for the value; none without clipping."""
        if self.clip_norm is not None:
            p1, p2 = partials(g.size)
            scratch = self._buffer(backend, g, p1 + p2 + 1)
            first, second, total = scratch[:p1], scratch[p1:p1 + p2], scratch[p1 + p2:]
            backend.kernel("sum_partials", g, g.size, 1, first)
            backend.kernel("sum_partials", first, p1, 0, second)
            backend.kernel("sum_partials", second, p2, 0, total)
            backend.kernel("clip_by_norm", total, self.clip_norm, ctrl, g)
        if self.clip_value is not None:
            backend.kernel("clip_by_value", self.clip_value, g)

    def _buffer(self, backend, g, size):
        """The scratch of the partial sums, allocated once per backend, dtype and size."""
        scratch = self._scratch
        if (scratch is None or not isinstance(scratch, backend.xp.ndarray)
                or scratch.dtype != g.dtype or scratch.size != size):
            scratch = self._scratch = backend.zeros(size, g.dtype)
        return scratch

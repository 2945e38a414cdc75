"""The owner of a model's parameters: layout, fp32 master, gradient, bfloat16 working copy.

Layout: every block that weight decay applies to (the layers' weight matrices) comes first,
then every other block (biases, normalization scales and shifts), each group in the order the
layers give them; so the fused optimizer kernels decay ``[0, decay_end)`` and nothing past it,
with one boundary index and no per-element mask. A layer declares each of its parameter blocks
with a ``decayed`` flag (:func:`gpunn.layers.param_entries`); :func:`layout` places them.

All parameters live in one flat array (``master``, the model's ``flat_params``), gradients in a
second of the same layout (``grads``), and, for precision "bf16", the bfloat16 bits the GEMMs
read in a third (``work``). The device writes ``master`` and ``work`` together in the fused
optimizer update. Everything else that changes parameters goes through :meth:`load_host`
(or :meth:`broadcast`), which refresh the working copy in the same call: a model cannot hold
a working copy that disagrees with its master.
"""

import numpy as np

# Offsets of W and b in the flat buffers are multiples of this many elements (>= 128 bytes), so
# every view starts aligned for vectorized BLAS / cuBLAS kernels. Gaps stay zero.
ALIGN = 32


def pack(entries, align=ALIGN):
    """``[(name, start, stop), ...]`` of the blocks ``(name, size)`` placed in the order given;
    each start is a multiple of ``align`` elements."""
    ranges, offset = [], 0
    for name, size in entries:
        ranges.append((name, offset, offset + size))
        offset = -(-(offset + size) // align) * align
    return ranges


def layout(entries, align=ALIGN):
    """``[(name, start, stop), ...]`` of the blocks ``(name, size, decayed)`` in a flat buffer:
    the decayed blocks first, then the others, each group in the order given (:func:`pack`)."""
    ordered = [e for e in entries if e[2]] + [e for e in entries if not e[2]]
    return pack([(name, size) for name, size, _ in ordered], align)


def decay_end(entries, ranges):
    """The start of the first block of ``ranges`` that ``entries`` does not decay (the
    buffer's end when all are): weight decay applies to ``[0, decay_end)``."""
    kept = {name for name, _, decayed in entries if not decayed}
    return next((start for name, start, _ in ranges if name in kept),
                ranges[-1][2] if ranges else 0)


def relayout(values, source, target):
    """``values`` (1-D, laid out as ``source`` ranges) moved into the ``target`` ranges of the
    same blocks: a new array, alignment gaps zero."""
    out = np.zeros(target[-1][2] if target else 0, dtype=values.dtype)
    starts = {name: start for name, start, _ in source}
    for name, start, stop in target:
        out[start:stop] = values[starts[name]:starts[name] + stop - start]
    return out


class FlatParams:
    """One model's flat parameter buffers and the only host write path into them.

    Args:
        backend: the backend the buffers live on.
        entries: ``[(name, size, decayed), ...]`` of the parameter blocks (:func:`layout`
            places them).
        dtype: the master's dtype (float32 or float64).
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"``; "bf16" adds the working copy.

    Attributes:
        ranges: ``[(name, start, stop), ...]`` (:func:`layout`).
        decay_end: weight decay applies to ``[0, decay_end)`` (:func:`decay_end`).
        size: elements of each flat buffer (alignment gaps included).
        master: the parameters (float, zeros until loaded).
        grads: the gradient, same layout and dtype.
        work: the bfloat16 bits (uint16) of ``master`` the GEMMs read, or None.
    """

    def __init__(self, backend, entries, dtype, precision="fp32"):
        self.backend = backend
        self.ranges = layout(entries)
        self.size = self.ranges[-1][2] if self.ranges else 0
        self.decay_end = decay_end(entries, self.ranges)
        self._starts = {name: start for name, start, _ in self.ranges}
        self.dtype = np.dtype(dtype)
        self.master = backend.zeros(self.size, self.dtype)
        self.grads = backend.zeros(self.size, self.dtype)
        self.work = backend.bf16_zeros(self.size) if precision == "bf16" else None

    def count_nonfinite(self):
        """How many parameters are NaN or inf (one reduction on the device)."""
        xp = self.backend.xp
        return int(xp.count_nonzero(~xp.isfinite(self.master)))

    def start(self, name):
        """Offset of the block ``name`` in the flat buffers."""
        return self._starts[name]

    def host(self):
        """A float NumPy copy of the master, in the buffer's dtype."""
        return np.array(self.backend.to_numpy(self.master), copy=True)

    def load_host(self, values):
        """Overwrite every parameter with host ``values`` (cast to the dtype), then refresh the
        working copy.

        Args:
            values: a 1-D array-like of ``size`` real numbers, in this layout.
        """
        values = np.asarray(values)
        if values.shape != (self.size,) or values.dtype.kind not in "fiu":
            raise ValueError(f"values: expected a 1-D array of {self.size} real numbers (the "
                             f"flat parameter layout), got shape {values.shape} and dtype "
                             f"{values.dtype}")
        self.backend.copy_from_host(self.master, values)
        self.refresh_work()

    def broadcast(self, comm, root=0):
        """Overwrite the parameters with rank ``root``'s through ``comm`` (data-parallel
        start), then refresh the working copy."""
        comm.bcast_array(self.master, root=root)
        self.refresh_work()

    def refresh_work(self):
        """Round the master into the bfloat16 working copy (a no-op without one)."""
        if self.work is not None:
            self.backend.kernel("round_bf16", self.master, self.work)

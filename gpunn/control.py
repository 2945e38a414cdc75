"""The per-step state the device reads: the control array and the learning-rate table.

Every update kernel and the step's own kernels (``kernels/step.cu``) read and write one small
int64 control array; its slots and the step statuses are defined once, in
``kernels/step.cuh``, and read from there (the Numba twins read the same lines). The learning
rate of each step comes from a device table indexed by the step slot ``CTRL_K``, so a recorded
step needs no host value. :class:`Control` holds both arrays for one runner of updates (a
:class:`~gpunn.step.TrainStep`, or an optimizer's eager ``step``) and is their only host
writer.
"""

import numpy as np

from gpunn.kernels import header_codes

SLOTS = header_codes("step.cuh", "GPUNN_CTRL_")
STATUSES = header_codes("step.cuh", "GPUNN_STEP_")
# The slots of the control array: update count, step index, flags; and its length.
CTRL_T, CTRL_K, CTRL_BAD, CTRL_BAD_UPDATE, CTRL_HALT, CTRL_SIZE = (
    SLOTS["t"], SLOTS["k"], SLOTS["bad"], SLOTS["bad_update"], SLOTS["halt"], SLOTS["size"])
# Step statuses in a step's record.
STEP_APPLIED, STEP_NONFINITE, STEP_BAD_UPDATE, STEP_HALTED = (
    STATUSES["applied"], STATUSES["nonfinite"], STATUSES["bad_update"], STATUSES["halted"])


class Control:
    """The control array and learning-rate table of one runner of updates.

    Args:
        backend: where the arrays live.
        dtype: the dtype of the rates (the model's).
        steps: entries of the table (the steps of one epoch; 1 for an eager step).

    Attributes:
        ctrl: the int64 control array (slots ``CTRL_*``).
        lrs: the learning rate of each step, read at ``ctrl[CTRL_K]``.
        rates: the host float64 copy of what :meth:`start` wrote to ``lrs``.
    """

    def __init__(self, backend, dtype, steps):
        self.backend = backend
        self.ctrl = backend.xp.zeros(CTRL_SIZE, dtype=np.int64)
        self.lrs = backend.zeros(steps, dtype)
        self.rates = np.zeros(steps)

    def start(self, rates, t, k=0):
        """Start a run of steps: the table holds ``rates`` (one per step, host floats), the
        update count is ``t`` (updates applied before), the step index ``k`` (steps done
        before, when an epoch resumes); flags restart. Two host-to-device copies."""
        rates = np.asarray(rates, dtype=np.float64)
        if rates.shape != self.rates.shape:
            raise ValueError(f"lrs: expected {self.rates.size} learning rates, "
                             f"got {rates.shape}")
        self.rates = rates
        self.backend.copy_from_host(self.lrs, rates)
        ctrl = np.zeros(CTRL_SIZE, dtype=np.int64)
        ctrl[CTRL_T], ctrl[CTRL_K] = t, k
        self.backend.copy_from_host(self.ctrl, ctrl)

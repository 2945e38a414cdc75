"""Optimizers, sorted in order of increasing complexity: SGD, Momentum, RMSprop, Adam, AdamW.

``update(model, lrs, ctrl)`` is ONE kernel launch over ``model.flat_params``,
``model.flat_grads`` and the optimizer's flat state (``kernels/optimizers.cu`` and its Numba
twin) on ``model.backend``; the learning rate comes from the device table ``lrs`` at the step
index in the control array ``ctrl`` and the update count from ``ctrl`` too (:mod:`gpunn.control`),
so a recorded training step stays valid; bias corrections are computed from it in the kernel, in
double. ``step(model)`` is the eager form: it fills a one-entry table and a control array from
``lr`` and ``t`` and launches the same kernel. For a model in precision "bf16" the same
launch also writes the bfloat16 working copy of the new parameters (``model.flat_work``).

Adding an optimizer is one kernel pair and one small class in :mod:`gpunn.optim.optimizers`
(the base, :mod:`gpunn.optim.base`, owns the plumbing) that declares what differs: its
``name`` (which registers it in ``OPTIMIZERS``, read by :func:`get_optimizer` and the CLI), its
``kernel``, ``state_names``, ``hyperparameters`` and :meth:`Optimizer.scalars`; the base class
builds the launch ``kernel(g, lrs, n_lrs, *scalars, working, ctrl, p, *state, w)``.

With ``clip_norm`` or ``clip_value`` (every optimizer's keywords), ``update`` first clips
``model.flat_grads`` in place on the device (:mod:`gpunn.optim.clip`: four launches for the
norm, one for the value), so the fused launch and a recorded step see the clipped gradient.

The optimizer owns its scalars, each written by one of its methods: ``lr`` (the current rate:
its setter, or :meth:`Optimizer.epoch_rates` when ``fit`` plans an epoch), ``base_lr`` (the
rate schedules start from: the constructor, or :meth:`Optimizer.scale_lr`), ``t`` (updates
applied: counted by :meth:`Optimizer.step`, or told by the training step with
:meth:`Optimizer.count_updates`). State arrays are allocated on the first step, shaped like the
parameters.
"""

from gpunn.optim.base import OPTIMIZERS, Optimizer, get_optimizer
from gpunn.optim.optimizers import SGD, Adam, AdamW, Momentum, RMSprop

__all__ = ["OPTIMIZERS", "Optimizer", "get_optimizer", "SGD", "Momentum", "RMSprop", "Adam",
           "AdamW"]

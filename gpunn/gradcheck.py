"""Gradient check: backpropagation against central differences, in float64."""

import numpy as np

from gpunn._checks import check_positive
from gpunn.sharing import check_model


def gradcheck(model, X, y, loss=None, eps=1e-6, dropout_update=None):
    """Largest relative error between backprop and numerical gradients over the parameters.

    The model is copied to float64 on the current backend (``model`` is left untouched). Each
    parameter ``p`` is perturbed in turn, ``g_num = (L(p + eps) - L(p - eps)) / (2 eps)``, and
    for every tensor ``T`` (``W0, b0, W1, ...``) the relative error
    ``||g_T - g_num_T|| / (||g_T|| + ||g_num_T||)`` (Euclidean norms, as in the course's
    gradient check) is formed; a tensor whose gradients are both zero has error 0. Use tiny
    models: it costs two forward passes per parameter.

    Args:
        model: a :class:`~gpunn.Sequential`.
        X: ``(n, n_in)`` inputs.
        y: targets for ``loss``.
        loss: loss name or object; None is the model's default.
        eps: perturbation (> 0).
        dropout_update: None: no dropout; an update count ``t``: the training loss with the
            dropout masks of the step after ``t`` updates (fixed masks, so the loss is a
            smooth function of the parameters), as :meth:`~gpunn.Sequential.loss_and_grad`.

    Returns:
        The largest per-tensor relative error (below ~1e-7 means the gradients agree).
    """
    eps = check_positive("eps", eps)
    checked = check_model("model", model).copy(dtype="float64")
    Xd, T, loss = checked.prepare(X, y, loss)
    scale = loss.scale(Xd.shape[0], checked.n_out)
    views = checked.new_workspace(Xd.shape[0], loss).rows(Xd.shape[0])
    masks = checked.eager_masks(dropout_update)
    checked.loss_pass(Xd, T, loss, views, scale, masks=masks)
    checked.backward_pass(Xd, views, masks)
    analytic = np.array(checked.backend.to_numpy(checked.flat_grads), dtype=np.float64)
    params = checked.params.host()
    worst = 0.0
    for _, start, stop in checked.param_ranges:
        numeric = np.empty(stop - start)
        for i in range(start, stop):
            original = float(params[i])
            losses = []
            for value in (original + eps, original - eps):
                params[i] = value
                checked.params.load_host(params)
                total = checked.loss_pass(Xd, T, loss, views, scale, masks=masks)
                losses.append(float(checked.backend.to_numpy(total)[0]) * scale)
            params[i] = original
            numeric[i - start] = (losses[0] - losses[1]) / (2.0 * eps)
        worst = max(worst, _relative_error(analytic[start:stop], numeric))
    return worst


def _relative_error(analytic, numeric):
    denominator = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    if denominator == 0.0:
        return 0.0
    return float(np.linalg.norm(analytic - numeric) / denominator)

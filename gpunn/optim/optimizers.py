"""The optimizers, sorted in order of increasing complexity: SGD, Momentum, RMSprop, Adam,
AdamW. Each declares its kernel, state, hyperparameters and scalars; a ``name`` registers it.

``weight_decay`` applies to the weight matrices only (scikit-learn's ``alpha``, Keras' kernel
regularizers, the usual PyTorch parameter groups): biases and LayerNorm's gamma and beta lie
past the flat layout's ``decay_end`` and are not decayed. ``decay_biases=True`` decays every
parameter (PyTorch's optimizers given all of ``model.parameters()``; gpunn before this option).

Every optimizer also takes ``clip_norm`` and ``clip_value`` (:mod:`gpunn.optim.clip`): the
gradient is clipped on the device just before the update, as Keras' optimizers take
``global_clipnorm`` and ``clipvalue`` and optax chains ``clip_by_global_norm`` before them.
"""

from gpunn._checks import check_bool, check_number, check_positive
from gpunn.optim.base import Optimizer, check_rate


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's momentum, dampening, Nesterov and L2 decay.

    ``d = g + weight_decay * p``; with ``momentum != 0``:
    ``buf = d`` on the first step, else ``momentum * buf + (1 - dampening) * d``, then
    ``d = d + momentum * buf`` (Nesterov, Sutskever et al. 2013) or ``d = buf``;
    finally ``p -= lr * d``. optax.sgd is the same with ``dampening=0``; Keras keeps ``lr``
    inside the buffer (``v = momentum v - lr g``), which differs only when ``lr`` changes.
    With ``momentum == 0`` no buffer is allocated and the kernel gets ``p`` in its place
    (it never reads or writes ``buf`` then).
    """

    name = "sgd"
    kernel = "sgd_step"
    hyperparameters = ("momentum", "dampening", "weight_decay", "nesterov", "decay_biases")

    def __init__(self, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 decay_biases=False, clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm, clip_value)
        self.decay_biases = check_bool("decay_biases", decay_biases)
        self.momentum = check_rate("momentum", momentum)
        self.dampening = check_number("dampening", dampening, low=0.0, high=1.0)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0.0)
        self.nesterov = check_bool("nesterov", nesterov)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov: expected momentum > 0 and dampening == 0, got "
                             f"momentum={self.momentum}, dampening={self.dampening}")

    @property
    def state_names(self):
        return ("buf",) if self.momentum else ()

    def kernel_states(self):
        return ("buf",)

    def scalars(self):
        return self.momentum, self.dampening, self.weight_decay, self.nesterov


class Momentum(Optimizer):
    """Gradient descent with momentum as an exponentially weighted average (the course's form).

    ``v = beta * v + (1 - beta) * g``; ``p -= lr * v``, or ``lr * v / (1 - beta^t)`` with
    ``bias_correction``. This is PyTorch's ``SGD(momentum=beta, dampening=beta)`` except on
    the first step (PyTorch starts ``buf = g``, this starts from ``v = 0``); Keras and optax
    sum gradients undamped (``v = beta v + g``), so their ``lr`` is ``1 - beta`` times this one.
    """

    name = "momentum"
    kernel = "momentum_step"
    state_names = ("v",)
    hyperparameters = ("beta", "bias_correction")

    def __init__(self, lr, beta=0.9, bias_correction=False, clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm, clip_value)
        self.beta = check_rate("beta", beta)
        self.bias_correction = check_bool("bias_correction", bias_correction)

    def scalars(self):
        return self.beta, self.bias_correction


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012, lecture 6e), as in PyTorch.

    ``d = g + weight_decay * p``; ``v = alpha * v + (1 - alpha) * d^2``;
    ``p -= lr * d / (sqrt(v) + eps)``. ``eps_in_sqrt=True`` gives ``lr * d / sqrt(v + eps)``:
    the Keras, optax (its default) and course form. PyTorch puts eps outside the root.
    """

    name = "rmsprop"
    kernel = "rmsprop_step"
    state_names = ("v",)
    nonnegative_state = ("v",)
    hyperparameters = ("alpha", "eps", "weight_decay", "eps_in_sqrt", "decay_biases")

    def __init__(self, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, eps_in_sqrt=False,
                 decay_biases=False, clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm, clip_value)
        self.decay_biases = check_bool("decay_biases", decay_biases)
        self.alpha = check_rate("alpha", alpha)
        self.eps = check_positive("eps", eps)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0.0)
        self.eps_in_sqrt = check_bool("eps_in_sqrt", eps_in_sqrt)

    def scalars(self):
        return self.alpha, self.eps, self.weight_decay, self.eps_in_sqrt


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, arXiv:1412.6980, Algorithm 1), as in PyTorch and optax.

    ``d = g + weight_decay * p`` (L2, coupled); ``m = b1 m + (1 - b1) d``;
    ``v = b2 v + (1 - b2) d^2``; ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with
    ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``. ``eps_in_sqrt=True`` gives the
    course's ``sqrt(v_hat + eps)``. Keras adds eps to the uncorrected ``sqrt(v)`` (the
    paper's "epsilon hat"), a larger effective eps early in training.
    """

    name = "adam"
    kernel = "adam_step"
    state_names = ("m", "v")
    nonnegative_state = ("v",)
    hyperparameters = ("betas", "eps", "weight_decay", "eps_in_sqrt", "decay_biases")
    decoupled = False

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 eps_in_sqrt=False, decay_biases=False, clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm, clip_value)
        self.decay_biases = check_bool("decay_biases", decay_biases)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.betas = (check_rate("betas[0]", betas[0]), check_rate("betas[1]", betas[1]))
        self.eps = check_positive("eps", eps)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0.0)
        self.eps_in_sqrt = check_bool("eps_in_sqrt", eps_in_sqrt)

    def scalars(self):
        wd = self.weight_decay
        l2, decoupled = (0.0, wd) if self.decoupled else (wd, 0.0)
        return (*self.betas, self.eps, l2, decoupled, self.eps_in_sqrt)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101): Adam with decoupled weight decay.

    ``p *= 1 - lr * weight_decay`` before the Adam step, which sees the plain gradient; the
    decay follows the scheduled ``lr`` as in PyTorch, optax and Keras (the paper scales it by
    the schedule multiplier only).
    """

    name = "adamw"
    decoupled = True

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 eps_in_sqrt=False, decay_biases=False, clip_norm=None, clip_value=None):
        super().__init__(lr, betas, eps, weight_decay, eps_in_sqrt, decay_biases, clip_norm,
                         clip_value)

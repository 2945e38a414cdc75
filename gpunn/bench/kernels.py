"""Optimizer updates at the memory limit: gpunn's fused kernels against NumPy and PyTorch.

Every contender updates its own float32 parameters of size N from a fixed gradient, through
what a user calls (``gpunn.Adam().step(model)``, ``torch.optim.Adam(...).step()``), Python
overhead included. GB/s counts the bytes that must move per parameter: Adam reads g, p, m, v
and writes p, m, v (28 B); RMSprop and SGD with momentum read g, p, one state array and write
p and the state (20 B).
"""

import types

import numpy as np

from gpunn.bench.harness import interleaved
from gpunn.optim import SGD, Adam, RMSprop

BYTES_PER_PARAM = {"adam": 28, "rmsprop": 20, "sgd_momentum": 20}
LR, BETAS, EPS, ALPHA, MOMENTUM = 1e-3, (0.9, 0.999), 1e-8, 0.99, 0.9
TORCH_SPLIT = 100


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(n, dtype=np.float32), (rng.random(n, dtype=np.float32) - 0.5) * 1e-2


def gpunn_step(kind, backend, n):
    """``optimizer.step(holder)`` on ``backend``; the holder is any object with flat buffers."""
    p, g = _data(n)
    holder = types.SimpleNamespace(backend=backend, flat_params=backend.asarray(p),
                                   flat_grads=backend.asarray(g))
    optimizer = {"adam": lambda: Adam(lr=LR, betas=BETAS, eps=EPS),
                 "rmsprop": lambda: RMSprop(lr=LR, alpha=ALPHA, eps=EPS),
                 "sgd_momentum": lambda: SGD(lr=LR, momentum=MOMENTUM)}[kind]()
    return lambda: optimizer.step(holder)


def numpy_textbook(kind, n):
    """One NumPy expression per state array, temporaries allocated every step."""
    p, g = _data(n)
    state = {"m": np.zeros_like(p), "v": np.zeros_like(p), "t": 0}
    b1, b2 = BETAS

    def adam():
        state["t"] += 1
        state["m"] = b1 * state["m"] + (1 - b1) * g
        state["v"] = b2 * state["v"] + (1 - b2) * g * g
        m_hat = state["m"] / (1 - b1 ** state["t"])
        v_hat = state["v"] / (1 - b2 ** state["t"])
        p[...] -= LR * m_hat / (np.sqrt(v_hat) + EPS)

    def rmsprop():
        state["v"] = ALPHA * state["v"] + (1 - ALPHA) * g * g
        p[...] -= LR * g / (np.sqrt(state["v"]) + EPS)

    def sgd_momentum():
        state["m"] = MOMENTUM * state["m"] + g
        p[...] -= LR * state["m"]

    return {"adam": adam, "rmsprop": rmsprop, "sgd_momentum": sgd_momentum}[kind]


def numpy_inplace(kind, n):
    """The same updates with ``out=`` and one preallocated scratch array: no allocation."""
    p, g = _data(n)
    m, v, tmp = np.zeros_like(p), np.zeros_like(p), np.empty_like(p)
    b1, b2 = BETAS
    t = [0]

    def adam():
        t[0] += 1
        np.multiply(m, b1, out=m)
        m[...] += np.multiply(g, 1 - b1, out=tmp)
        np.multiply(v, b2, out=v)
        np.multiply(g, g, out=tmp)
        tmp[...] *= 1 - b2
        v[...] += tmp
        np.sqrt(v, out=tmp)
        tmp[...] *= 1 / np.sqrt(1 - b2 ** t[0])
        tmp[...] += EPS
        np.divide(m, tmp, out=tmp)
        tmp[...] *= LR / (1 - b1 ** t[0])
        p[...] -= tmp

    def rmsprop():
        np.multiply(v, ALPHA, out=v)
        np.multiply(g, g, out=tmp)
        tmp[...] *= 1 - ALPHA
        v[...] += tmp
        np.sqrt(v, out=tmp)
        tmp[...] += EPS
        np.divide(g, tmp, out=tmp)
        tmp[...] *= LR
        p[...] -= tmp

    def sgd_momentum():
        np.multiply(m, MOMENTUM, out=m)
        m[...] += g
        p[...] -= np.multiply(m, LR, out=tmp)

    return {"adam": adam, "rmsprop": rmsprop, "sgd_momentum": sgd_momentum}[kind]


def torch_step(torch, kind, n, pieces=1, **options):
    """``torch.optim`` over the N parameters as ``pieces`` tensors (grads set once)."""
    p, g = _data(n)
    params = []
    for p_piece, g_piece in zip(np.array_split(p, pieces), np.array_split(g, pieces)):
        param = torch.nn.Parameter(torch.from_numpy(p_piece.copy()))
        param.grad = torch.from_numpy(g_piece.copy())
        params.append(param)
    optimizer = {"adam": lambda: torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS,
                                                  **options),
                 "rmsprop": lambda: torch.optim.RMSprop(params, lr=LR, alpha=ALPHA, eps=EPS,
                                                        **options),
                 "sgd_momentum": lambda: torch.optim.SGD(params, lr=LR, momentum=MOMENTUM,
                                                         **options)}[kind]()
    return optimizer.step


def contenders(kind, n, backend, torch):
    """``{name: callable}`` for one optimizer and size; torch ones only if torch is given."""
    found = {"gpunn": gpunn_step(kind, backend, n)}
    if backend.name != "cpu":
        return found
    found["numpy textbook"] = numpy_textbook(kind, n)
    found["numpy in-place"] = numpy_inplace(kind, n)
    if torch is not None:
        if kind == "adam":
            found["torch fused (1 tensor)"] = torch_step(torch, kind, n, fused=True)
        else:  # PyTorch has no fused RMSprop or SGD on the CPU
            found["torch default (1 tensor)"] = torch_step(torch, kind, n)
        found[f"torch default ({TORCH_SPLIT} tensors)"] = torch_step(torch, kind, n, TORCH_SPLIT)
        found[f"torch foreach ({TORCH_SPLIT} tensors)"] = torch_step(torch, kind, n, TORCH_SPLIT,
                                                                     foreach=True)
    return found


def run(sizes, backend, torch=None, rounds=7, min_sample_s=0.02, kinds=tuple(BYTES_PER_PARAM)):
    """Time every contender for every optimizer kind and size, interleaved per (kind, N).

    Returns:
        A list of comparisons ``{"kind", "n", "bytes_per_param", "contenders": {name: timing
        + gb_per_s}, "ratios": {"gpunn vs <name>": median(name) / median(gpunn)}}``.
    """
    results = []
    for kind in kinds:
        for n in sizes:
            timings = interleaved(contenders(kind, int(n), backend, torch), rounds,
                                  min_sample_s, sync=backend.synchronize)
            nbytes = BYTES_PER_PARAM[kind] * int(n)
            results.append({
                "kind": kind, "n": int(n), "bytes_per_param": BYTES_PER_PARAM[kind],
                "backend": backend.name,
                "contenders": {name: {**t.as_dict(), "gb_per_s": nbytes / t.median / 1e9}
                               for name, t in timings.items()},
                "ratios": {f"gpunn vs {name}": t.median / timings["gpunn"].median
                           for name, t in timings.items() if name != "gpunn"}})
    return results

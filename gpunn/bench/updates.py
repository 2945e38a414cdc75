"""Optimizer updates at the memory limit: gpunn's fused kernels, PyTorch, NumPy, and the
stream bandwidth at the same size.

Every contender updates its own float32 parameters of size N from a fixed gradient through
what a user calls (``Adam().step(model)``, ``torch.optim.Adam(...).step()``), Python included.
GB/s counts the bytes that must move per parameter: Adam reads g, p, m, v and writes p, m, v
(28 B); RMSprop and SGD with momentum read g, p, one state and write p and the state (20 B).
The bandwidth probe is the backend's ``axpy`` kernel (``a += s * b``, 12 B per element, the
same read-modify-write pattern) on N elements, interleaved with the contenders: in cache at
small N, a memory stream at large N.
"""

import types

import numpy as np

from gpunn.bench.harness import build_peers, interleaved

BYTES_PER_PARAM = {"adam": 28, "rmsprop": 20, "sgd_momentum": 20}
LR, BETAS, EPS, ALPHA, MOMENTUM = 1e-3, (0.9, 0.999), 1e-8, 0.99, 0.9
PIECES = 100  # a model's parameters as many tensors, as torch.optim sees them
AXPY = "axpy (bandwidth probe)"


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(n, dtype=np.float32), (rng.random(n, dtype=np.float32) - 0.5) * 1e-2


def gpunn_update(kind, backend, n):
    """``optimizer.step(holder)`` on ``backend``; the holder is any object with flat buffers."""
    from gpunn.optim import SGD, Adam, RMSprop

    p, g = _data(n)
    holder = types.SimpleNamespace(backend=backend, flat_params=backend.asarray(p),
                                   flat_grads=backend.asarray(g))
    optimizer = {"adam": lambda: Adam(lr=LR, betas=BETAS, eps=EPS),
                 "rmsprop": lambda: RMSprop(lr=LR, alpha=ALPHA, eps=EPS),
                 "sgd_momentum": lambda: SGD(lr=LR, momentum=MOMENTUM)}[kind]()
    return lambda: optimizer.step(holder)


def numpy_update(kind, n):
    """The update with ``out=`` and one preallocated scratch array: NumPy at its best."""
    p, g = _data(n)
    m, v, tmp, t = np.zeros_like(p), np.zeros_like(p), np.empty_like(p), [0]
    b1, b2 = BETAS

    def adam():
        t[0] += 1
        np.multiply(m, b1, out=m)
        m[...] += np.multiply(g, 1 - b1, out=tmp)
        np.multiply(v, b2, out=v)
        v[...] += np.multiply(np.square(g, out=tmp), 1 - b2, out=tmp)
        np.sqrt(np.multiply(v, 1 / (1 - b2 ** t[0]), out=tmp), out=tmp)
        np.divide(m, np.add(tmp, EPS, out=tmp), out=tmp)
        p[...] -= np.multiply(tmp, LR / (1 - b1 ** t[0]), out=tmp)

    def rmsprop():
        np.multiply(v, ALPHA, out=v)
        v[...] += np.multiply(np.square(g, out=tmp), 1 - ALPHA, out=tmp)
        np.divide(g, np.add(np.sqrt(v, out=tmp), EPS, out=tmp), out=tmp)
        p[...] -= np.multiply(tmp, LR, out=tmp)

    def sgd_momentum():
        np.multiply(m, MOMENTUM, out=m)
        m[...] += g
        p[...] -= np.multiply(m, LR, out=tmp)

    return {"adam": adam, "rmsprop": rmsprop, "sgd_momentum": sgd_momentum}[kind]


def torch_update(torch, kind, n, device="cpu", pieces=1, **options):
    """``torch.optim`` over the N parameters as ``pieces`` tensors (gradients set once)."""
    p, g = _data(n)
    params = []
    for p_piece, g_piece in zip(np.array_split(p, pieces), np.array_split(g, pieces)):
        param = torch.nn.Parameter(torch.from_numpy(p_piece.copy()).to(device))
        param.grad = torch.from_numpy(g_piece.copy()).to(device)
        params.append(param)
    make = {"adam": lambda: torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS, **options),
            "rmsprop": lambda: torch.optim.RMSprop(params, lr=LR, alpha=ALPHA, eps=EPS,
                                                   **options),
            "sgd_momentum": lambda: torch.optim.SGD(params, lr=LR, momentum=MOMENTUM,
                                                    **options)}
    return make[kind]().step


def contenders(kind, n, backend, torch):
    """``({name: callable}, {name: why not})`` for one optimizer and size (PyTorch's only when
    it is given)."""
    found = {"gpunn": gpunn_update(kind, backend, n)}
    device = "cpu" if backend.xp is np else "cuda"
    if device == "cpu":
        found["numpy in-place"] = numpy_update(kind, n)
    if torch is None or (device == "cuda" and not torch.cuda.is_available()):
        return found, {}
    peers, missing = torch_contenders(torch, kind, n, device)
    return found | peers, missing


def torch_contenders(torch, kind, n, device):
    """PyTorch's fused, default and foreach-over-100-tensors updates, each tried once:
    ``(contenders, {name: "not available: <reason>"})`` (a version may lack a fused kernel)."""
    return build_peers({
        "torch fused": lambda: torch_update(torch, kind, n, device, fused=True),
        "torch default": lambda: torch_update(torch, kind, n, device),
        f"torch foreach, {PIECES} tensors": lambda: torch_update(torch, kind, n, device, PIECES,
                                                                 foreach=True)})


def axpy(backend, n):
    """The backend's in-place ``a += s * b`` over ``n`` float32 pairs: the bandwidth probe."""
    rng = np.random.default_rng(0)
    a, b = (backend.asarray(rng.random(n, dtype=np.float32)) for _ in range(2))
    return lambda: backend.kernel("axpy", b, 1e-7, a)


def run(sizes, backend, torch=None, rounds=7, min_sample_s=0.02, progress=None):
    """Every contender per (optimizer, N), interleaved with the axpy probe at the same N.

    Returns:
        ``[{"kind", "n", "contenders": {name: stats + gb_per_s + of_axpy}, "ratios":
        {"<name> / gpunn": median ratio}, "not_available": {name: reason}}]``; ``of_axpy`` is
        GB/s over the probe's.
    """
    progress = progress or (lambda text: None)
    found = []
    for kind, n in ((k, int(n)) for k in BYTES_PER_PARAM for n in sizes):
        progress(f" {kind} N={n:.0e}")
        timed, missing = contenders(kind, n, backend, torch)
        timings = interleaved({**timed, AXPY: axpy(backend, n)}, rounds, min_sample_s,
                              sync=_sync(backend, torch), progress=progress)
        found.append(comparison(kind, n, timings, missing))
    return found


def comparison(kind, n, timings, not_available=None):
    """One (optimizer, N) row: stats with GB/s and the fraction of the axpy stream's, each
    contender's median over gpunn's, and the contenders that could not run, with why."""
    rate = {name: (12 if name == AXPY else BYTES_PER_PARAM[kind]) * n / t["median"] / 1e9
            for name, t in timings.items()}
    return {"kind": kind, "n": n, "contenders": {
        name: {**t, "gb_per_s": rate[name], "of_axpy": rate[name] / rate[AXPY]}
        for name, t in timings.items()}, "ratios": {
        f"{name} / gpunn": t["median"] / timings["gpunn"]["median"]
        for name, t in timings.items() if name != "gpunn"},
        "not_available": dict(not_available or {})}


def _sync(backend, torch):
    if backend.xp is np or torch is None or not torch.cuda.is_available():
        return backend.synchronize
    return lambda: (backend.synchronize(), torch.cuda.synchronize())

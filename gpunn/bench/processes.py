"""Training steps measured in fresh processes: the GPU peers, and the CPU step under three
import orders.

Each peer runs in its own process, so one cannot poison the CUDA context (or the OpenMP
runtime) of another: ``gpunn`` (its step interleaved with its GEMM floor), ``torch eager``
(with fused Adam), ``torch cuda graph`` (the same step captured once with ``torch.cuda.CUDAGraph``
and replayed) and ``jax jit`` (the whole step one jitted function, Adam written out). A peer
that cannot run here (no CUDA, JAX not installed) reports why; it is never dropped silently.
Ratios across processes are ratios of medians that were not interleaved.

On the CPU PyTorch's contenders run here too (``torch eager``, ``torch updates``), where
its OpenMP runtime keeps its own settings (in gpunn's process it shares gpunn's).

Child usage: ``python -c "from gpunn.bench.processes import main; main()" SPEC`` prints a
JSON line per finished row (so a child cut by a timeout keeps what it measured) and its
progress on stderr, which the parent relays as it comes; SPEC is JSON ``{"peer", "device":
"cpu"|"cuda", "rows": [[sizes, batch] or [kind, n], ...], "rounds", "min_sample_s", "threads",
"imports": an IMPORT_ORDERS key}``.
"""

import collections
import json
import subprocess
import sys
import threading
import time

import numpy as np

from gpunn.bench import harness, step
from gpunn.bench.numpy_mlp import init_params

PEERS = ("gpunn", "torch eager", "torch cuda graph", "jax jit")
IMPORT_ORDERS = {"no torch": "", "torch first": "import torch; ", "gpunn first": ""}
B1, B2, EPS = 0.9, 0.999, 1e-8


class Skip(Exception):
    """This peer cannot run here; the message says why."""


def _gpunn(spec, sizes, batch):
    from gpunn.backends import use_backend
    from gpunn.backends.cpu import start_numba_threads

    with use_backend(spec["device"]):
        gpunn_step, backend = step.gpunn_step(sizes, *_data(sizes, batch), batch)
        if spec.get("imports") == "gpunn first":
            start_numba_threads()
            import torch  # noqa: F401 - loaded after gpunn's threads, as a user would
        harness.set_threads(spec["threads"])
        return ({"gpunn": gpunn_step, "GEMM floor": step.gemm_floor(sizes, batch, backend)},
                backend.synchronize)


def _data(sizes, batch):
    return step.synthetic(2 * batch, sizes[0], sizes[-1])  # more rows than a batch: a gather


def _import_torch(spec, cuda):
    torch = harness.import_optional("torch")
    if torch is None:
        raise Skip("PyTorch is not installed")
    if cuda and not torch.cuda.is_available():
        raise Skip("needs CUDA: torch.cuda.is_available() is False")
    torch.set_num_threads(spec["threads"])
    return torch


def _torch_updates(spec, kind, n):
    from gpunn.bench import updates

    torch = _import_torch(spec, spec["device"] == "cuda")
    found, missing = updates.torch_contenders(torch, kind, n, spec["device"])
    return found, torch.cuda.synchronize if spec["device"] == "cuda" else None, missing


def _torch(spec, sizes, batch, graph=False):
    cuda = spec["device"] == "cuda"
    torch = _import_torch(spec, cuda or graph)
    run = step.torch_step(torch, sizes, *_data(sizes, batch), batch, True,
                          "cuda" if cuda else "cpu", graph)
    sync = torch.cuda.synchronize if cuda or graph else None
    if graph:  # warm up on a side stream, then capture one step (PyTorch's recipe)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                run()
        torch.cuda.current_stream().wait_stream(side)
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            run()
        run = captured.replay
    return {"torch cuda graph" if graph else "torch eager, fused Adam": run}, sync


def _jax(spec, sizes, batch):
    jax = harness.import_optional("jax")
    if jax is None:
        raise Skip("JAX is not installed")
    if spec["device"] == "cuda" and jax.default_backend() == "cpu":
        raise Skip(f"needs CUDA: JAX's backend is {jax.default_backend()}")
    jax.config.update("jax_default_matmul_precision", "highest")  # fp32 GEMMs, as the others
    jnp, tree = jax.numpy, jax.tree_util.tree_map

    def loss(params, xb, yb):
        for i, (W, b) in enumerate(params):
            xb = xb @ W + b if i == len(params) - 1 else jax.nn.sigmoid(xb @ W + b)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(xb), yb[:, None], axis=1))

    @jax.jit
    def train(params, m, v, t, Xd, yd, idx):
        value, g = jax.value_and_grad(loss)(params, Xd[idx], yd[idx])
        t = t + 1
        m = tree(lambda m, g: B1 * m + (1 - B1) * g, m, g)
        v = tree(lambda v, g: B2 * v + (1 - B2) * g * g, v, g)
        params = tree(lambda p, m, v: p - step.LR * (m / (1 - B1 ** t))
                      / (jnp.sqrt(v / (1 - B2 ** t)) + EPS), params, m, v)
        return params, m, v, t, value

    flat = [jnp.asarray(a) for a in init_params(sizes)]
    params = list(zip(flat[0::2], flat[1::2]))
    zeros = tree(jnp.zeros_like, params)
    X, y = _data(sizes, batch)
    state = [params, zeros, zeros, jnp.float32(0)]
    data = (jnp.asarray(X), jnp.asarray(y.astype(np.int32)),
            jnp.asarray(np.random.default_rng(0).permutation(X.shape[0])[:batch]))

    def run():
        state[:] = train(*state, *data)[:4]

    return {spec["peer"]: run}, lambda: jax.block_until_ready(state)


BUILDERS = {"gpunn": _gpunn, "torch eager": _torch, "jax jit": _jax,
            "torch cuda graph": lambda *a: _torch(*a, graph=True),
            "torch updates": _torch_updates}


def main(argv=None):
    """Child process: time ``spec["peer"]`` row by row, one JSON line per row as it finishes
    (``{"row", "timings", "not_available", "seconds"}``), then ``{"versions"}``; or one
    ``{"skipped"}`` line. Progress goes to stderr."""
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    say = lambda text: harness.say(f"{spec['peer']}:{text}")  # noqa: E731
    try:
        for row in spec["rows"]:
            begun = time.perf_counter()
            say(f" row {row[0]} {row[1]}: setting up")
            contenders, sync, *missing = BUILDERS[spec["peer"]](spec, *row)
            timings = harness.interleaved(contenders, spec["rounds"], spec["min_sample_s"], sync,
                                          progress=say)
            print(json.dumps({"row": row, "timings": timings,
                              "not_available": missing[0] if missing else {},
                              "seconds": time.perf_counter() - begun}), flush=True)
    except Skip as why:
        print(json.dumps({"skipped": str(why)}), flush=True)
        return 0
    print(json.dumps({"versions": harness.versions()}), flush=True)
    return 0


def measure(spec, timeout=600, relay=harness.say, entry="gpunn.bench.processes"):
    """Run ``spec`` in a fresh process (``entry``'s ``main``), its progress relayed to
    ``relay`` as it comes.

    Returns:
        ``{"rows": [finished rows], "seconds"}``, plus ``"skipped"`` (the peer cannot run here)
        or ``"error"`` (its exit status and stderr's tail, or the timeout and the last progress
        line: the rows finished before it are kept).
    """
    code = (f"{IMPORT_ORDERS.get(spec.get('imports'), '')}import sys; "
            f"from {entry} import main; sys.exit(main(sys.argv[1:]))")
    begun, lines, tail = time.perf_counter(), [], collections.deque(maxlen=60)
    with subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        readers = [threading.Thread(target=_collect, args=(child.stdout, lines.append)),
                   threading.Thread(target=_collect, args=(child.stderr, lambda line: (
                       tail.append(line), relay(line.removeprefix("[gpunn bench] ")))))]
        for reader in readers:
            reader.start()
        try:
            child.wait(timeout=timeout)
            error = None
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            error = f"timed out after {timeout:.0f} s, during: {tail[-1] if tail else '-'}"
        for reader in readers:
            reader.join()
    answers = [json.loads(line) for line in lines if line.startswith("{")]
    found = {"rows": [a for a in answers if "row" in a],
             "seconds": time.perf_counter() - begun}
    for answer in answers:
        found.update({k: v for k, v in answer.items() if k in ("skipped", "versions")})
    if error is None and child.returncode:
        error = f"exit status {child.returncode}: {''.join(tail)[-2000:]}"
    elif error is None and "skipped" not in found and "versions" not in found:
        error = f"no answer: {''.join(tail)[-2000:]}"
    return found | ({"error": error} if error else {})


def _collect(stream, keep):
    for line in stream:
        keep(line.rstrip("\n"))


def peers(rows, device, rounds, min_sample_s, threads, names=PEERS, timeout=600):
    """Every peer in its own process on ``rows`` (``[[sizes, batch], ...]``), each cut at
    ``timeout`` seconds (the rows it finished are kept).

    Returns:
        ``{"device", "comparisons": [step.comparison rows], "skipped": {peer: why},
        "errors": {peer: stderr or timeout}, "process_seconds": {peer: its process's wall
        seconds}}``; ratios are each contender's median over gpunn's.
    """
    merged = {(tuple(sizes), batch): ({}, {}) for sizes, batch in rows}
    skipped, errors, seconds = {}, {}, {}
    for name in names:
        harness.say(f" {name}: a fresh process")
        answer = measure({"peer": name, "device": device, "rows": rows, "rounds": rounds,
                          "min_sample_s": min_sample_s, "threads": threads}, timeout)
        seconds[name] = answer["seconds"]
        if "skipped" in answer:
            skipped[name] = answer["skipped"]
        if "error" in answer:
            errors[name] = answer["error"]
        for row in answer["rows"]:
            timings, missing = merged[(tuple(row["row"][0]), row["row"][1])]
            timings.update(row["timings"])
            missing.update(row["not_available"])
    return {"device": device, "skipped": skipped, "errors": errors, "process_seconds": seconds,
            "comparisons": [step.comparison(sizes, batch, timings, missing)
                            for (sizes, batch), (timings, missing) in merged.items()
                            if timings]}


def own_process(comparisons, peer, keys, build, rounds, sample_s, threads):
    """``{"comparisons"}`` with PyTorch's ``peer`` measured again in its own process (on the
    CPU in-process PyTorch shares gpunn's OpenMP runtime); its error, if any, as a note."""
    answer = measure({"peer": peer, "device": "cpu", "rounds": rounds,
                                "min_sample_s": sample_s, "threads": threads,
                                "rows": [[c[k] for k in keys] for c in comparisons]})
    found = {json.dumps(row["row"]): row for row in answer["rows"]}
    note = {k: answer[k] for k in ("skipped", "error") if k in answer}
    joined = []
    for c in comparisons:
        row = found.get(json.dumps([c[k] for k in keys]), {"timings": {}, "not_available": {}})
        own = {f"{name} (own process)": t for name, t in row["timings"].items()}
        missing = {f"{name} (own process)": why for name, why in row["not_available"].items()}
        joined.append(build(*[c[k] for k in keys], {**c["contenders"], **own},
                            {**c["not_available"], **missing}))
    return {"comparisons": joined} | ({"own_process": note} if note else {})


def import_orders(sizes, batches, repeats, rounds, min_sample_s, threads):
    """gpunn's CPU step over its GEMM floor in fresh processes per import order (no torch,
    torch first, gpunn first), ``repeats`` processes each, the orders alternating.

    Returns:
        ``{"sizes", "rows": [{"order", "batch", "step_over_floor": median over processes,
        "runs": [each process's ratio], "step_s": median step seconds}], "errors"}``.
    """
    found, errors = {}, []
    for _ in range(repeats):
        for order in IMPORT_ORDERS:
            answer = measure({"peer": "gpunn", "device": "cpu", "imports": order,
                              "rows": [[sizes, b] for b in batches], "rounds": rounds,
                              "min_sample_s": min_sample_s, "threads": threads})
            if "error" in answer:
                errors.append(f"{order}: {answer['error']}")
            for row in answer.get("rows", []):
                t = row["timings"]
                found.setdefault((order, row["row"][1]), []).append(
                    (t["gpunn"]["median"] / t["GEMM floor"]["median"], t["gpunn"]["median"]))
    return {"sizes": list(sizes), "errors": errors, "rows": [
        {"order": order, "batch": batch, "runs": [r for r, _ in runs],
         "step_over_floor": float(np.median([r for r, _ in runs])),
         "step_s": float(np.median([s for _, s in runs]))}
        for (order, batch), runs in found.items()]}

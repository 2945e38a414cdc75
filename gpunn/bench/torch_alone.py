"""PyTorch's contenders again, in a child process where gpunn never runs.

In one process PyTorch and Numba's OpenMP layer share a single GNU OpenMP runtime. gpunn starts
it with passive workers (its training steps need the cores free for OpenBLAS), which costs
PyTorch a worker wake-up per parallel region. Here PyTorch keeps its own runtime with its
defaults, so the targets can be judged against the faster of the two PyTorch figures. These
rows are labelled "(own process)": they are interleaved with each other, not with gpunn.

Usage: ``python -m gpunn.bench.torch_alone JSON`` with ``{"kernels": {...}, "peers": {...}}``
arguments; prints ``{"kernels": [...], "peers": [...]}`` timings as JSON.
"""

import json
import sys

from gpunn.bench import harness

SUFFIX = " (own process)"


def _kernels(torch, spec):
    from gpunn.bench import kernels

    found = []
    for kind in spec["kinds"]:
        for n in spec["sizes"]:
            n = int(n)
            first = ("torch fused (1 tensor)", {"fused": True}) if kind == "adam" else (
                "torch default (1 tensor)", {})
            contenders = {first[0]: kernels.torch_step(torch, kind, n, **first[1])}
            timings = harness.interleaved(contenders, spec["rounds"], spec["sample_s"])
            found += [{"kind": kind, "n": n, "name": name + SUFFIX, "timing": t.as_dict()}
                      for name, t in timings.items()]
    return found


def _peers(torch, spec):
    from gpunn.bench import peers

    found = []
    for batch in spec["batches"]:
        X, y = peers.synthetic(max(spec["batches"]), spec["sizes"][0], spec["sizes"][-1])
        contenders = {name: peers.torch_step(torch, spec["sizes"], X, y, batch, fused=fused)
                      for name, fused in (("torch default", False), ("torch fused", True))}
        timings = harness.interleaved(contenders, spec["rounds"], spec["sample_s"])
        found += [{"batch": batch, "name": name + SUFFIX, "timing": t.as_dict()}
                  for name, t in timings.items()]
    return found


def main(argv=None):
    """Measure what the JSON argument asks for; print the timings as JSON."""
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    torch = harness.import_torch()
    torch.set_num_threads(spec["threads"])
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=spec["threads"], user_api="blas"):
        result = {"kernels": _kernels(torch, spec["kernels"]) if "kernels" in spec else [],
                  "peers": _peers(torch, spec["peers"]) if "peers" in spec else []}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

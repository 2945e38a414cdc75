"""Mixed precision: the training step and its GEMM floor per precision, beside PyTorch autocast.

``python -m gpunn.bench.precision [--backend cpu|cuda] [--json PATH]``. Per model and batch,
interleaved in one process:

- ``step <precision>``: :class:`gpunn.step.TrainStep` of ``MLP(..., precision=...)`` (gather,
  forward, loss, backward, Adam; in bf16 the fused update also writes the working copy);
- ``floor <precision>``: the step's 8 GEMMs alone (3 forward, 3 weight gradients, 2 input
  gradients) through ``backend.matmul(..., precision=...)`` on preallocated operands of the
  dtype that precision reads (bf16: bfloat16 bits) with float32 outputs;
- ``torch autocast bf16``: PyTorch eager under ``torch.autocast(<device>, torch.bfloat16)``,
  fused Adam on CUDA, the same model (when PyTorch is installed).

On a GPU the ratios answer the targets (bf16 step <= 1.25 x its floor, faster than autocast;
tf32 step <= 1.2 x its floor). On the CPU tf32/bf16 are emulated (operands rounded or widened
into float32 copies before a float32 GEMM): ``emulation cost`` is step(precision) / step(fp32)
and floor(precision) / floor(fp32).
"""

import argparse
import itertools
import json
import sys

import numpy as np

from gpunn._files import atomic_write, check_target
from gpunn.backends import BACKENDS
from gpunn.bench.harness import interleaved, machine_info, usable_cpus
from gpunn.bench.step import gemm_floor, gpunn_step, synthetic

PRECISIONS = ("fp32", "tf32", "bf16")
LR = 1e-3
GPU_CASES = [([784, 4096, 4096, 4096, 10], 8192), ([784, 1024, 1024, 10], 8192),
             ([784, 1024, 1024, 10], 1024)]
CPU_CASES = [([784, 1024, 1024, 10], 256), ([64, 256, 256, 10], 128)]
# Per backend: cases, rounds, seconds per sample. The GPU's fit the GPU check's 80 s on an
# H200 (7 contenders per case; PyTorch's and CuPy's start-up included).
SETTINGS = {"cpu": (CPU_CASES, 9, 0.2), "cuda": (GPU_CASES, 5, 0.05)}


def torch_autocast_step(torch, sizes, X, y, batch, device):
    """PyTorch eager under bf16 autocast on ``device``: gather, forward, loss, backward, Adam."""
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*layers).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR, fused=device == "cuda" or None)
    Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    idx = torch.from_numpy(np.random.default_rng(0).permutation(X.shape[0])[:batch]).to(device)

    def step():
        xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast(device, dtype=torch.bfloat16):
            logits = net(xb)
        loss = torch.nn.functional.cross_entropy(logits.float(), yb)
        loss.backward()
        optimizer.step()

    return step


def measure(backend, sizes, batch, torch=None, rounds=9, min_sample_s=0.2, progress=None):
    """One model and batch: every contender interleaved; medians (s) and the ratios."""
    progress = progress or (lambda text: None)
    progress(f"precision: {'-'.join(map(str, sizes))} batch {batch}: setting up")
    X, y = synthetic(max(batch, 2048), sizes[0], sizes[-1])
    contenders = {}
    for precision in PRECISIONS:
        contenders[f"step {precision}"] = gpunn_step(sizes, X, y, batch, lr=LR,
                                                     precision=precision)[0]
        contenders[f"floor {precision}"] = gemm_floor(sizes, batch, backend, precision)
    sync = backend.synchronize
    if torch is not None:
        device = "cuda" if backend.name == "cuda" else "cpu"
        contenders["torch autocast bf16"] = torch_autocast_step(torch, sizes, X, y, batch,
                                                                device)
        if device == "cuda":
            sync = lambda: (backend.synchronize(), torch.cuda.synchronize())  # noqa: E731
    timings = interleaved(contenders, rounds=rounds, min_sample_s=min_sample_s, sync=sync,
                          progress=progress)
    median = {name: t["median"] for name, t in timings.items()}
    ratios = {f"step/floor {p}": median[f"step {p}"] / median[f"floor {p}"]
              for p in PRECISIONS}
    for p in PRECISIONS[1:]:
        ratios[f"step {p} / step fp32"] = median[f"step {p}"] / median["step fp32"]
        ratios[f"floor {p} / floor fp32"] = median[f"floor {p}"] / median["floor fp32"]
    if torch is not None:
        ratios["torch autocast / step bf16"] = median["torch autocast bf16"] / median[
            "step bf16"]
    return {"sizes": sizes, "batch": batch, "median_s": median, "ratios": ratios}


def report(rows):
    """Markdown: one table of medians (ms) and one of ratios, a row per model and batch."""
    names = list(rows[0]["median_s"])
    lines = ["| model | batch | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for row in rows:
        cells = " | ".join(f"{row['median_s'][n] * 1e3:.3f}" for n in names)
        lines.append(f"| {'-'.join(map(str, row['sizes']))} | {row['batch']} | {cells} |")
    ratio_names = list(rows[0]["ratios"])
    lines += ["", "| model | batch | " + " | ".join(ratio_names) + " |",
              "|---|---|" + "---|" * len(ratio_names)]
    for row in rows:
        cells = " | ".join(f"{row['ratios'][n]:.2f}" for n in ratio_names)
        lines.append(f"| {'-'.join(map(str, row['sizes']))} | {row['batch']} | {cells} |")
    return "\n".join(lines)


def main(argv=None):
    """Measure the cases of the chosen backend; print the tables, optionally write JSON."""
    import gpunn
    from gpunn.bench.harness import import_optional, say

    parser = argparse.ArgumentParser(prog="python -m gpunn.bench.precision",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="cpu")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch autocast")
    args = parser.parse_args(argv)
    out = None if args.json is None else check_target("--json", args.json)  # before measuring
    with gpunn.use_backend(args.backend) as backend:
        if backend.name == "cpu":  # before PyTorch loads OpenMP (see gpunn.bench.runner)
            from gpunn.backends.cpu import start_numba_threads

            start_numba_threads()
        torch = None if args.no_torch else import_optional("torch")
        cases, rounds, sample_s = SETTINGS[backend.name]
        rows = [measure(backend, sizes, batch, torch, rounds, sample_s, progress=say)
                for sizes, batch in cases]
    print(report(rows))
    if out is not None:
        text = json.dumps({"machine": machine_info(usable_cpus()), "backend": backend.name,
                           "rows": rows}, indent=1)
        atomic_write(out, lambda file: file.write(text.encode("utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``gather_rows`` (the Numba twin) as a row copy against the per-element loop it replaced.

    python benchmarks/gather_rows.py [--rounds 5] [--batches 128,2048]

Gathers a batch of MNIST-shaped rows (60000 x 784 float32, a shuffled order) as a training
step does. Each round runs one fresh process per variant, alternating which goes first; each
process times both batch sizes (median of 15 repeats of 20 calls, all of Numba's threads) and
checks that the variants gather the same bits. Prints the medians over rounds and their ratio.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from numba import njit, prange


@njit(parallel=True, cache=False, fastmath={"nsz", "arcp"})
def per_element(src, order, ctrl, n_src, n_order, n_pos, stride, offset, n_cols, out):
    """The twin before the row copy (ctrl[1] is K; without the wrap: n_pos == n_order)."""
    first = ctrl[1] * stride + offset
    for r in prange(out.size // n_cols):
        pos = first + r
        if pos < n_pos:
            row = order[pos]
            if row >= 0 and (row + 1) * n_cols <= n_src:
                for j in range(n_cols):
                    out[r * n_cols + j] = src[row * n_cols + j]


def child(variant, batches):
    import numpy as np
    from gpunn.kernels.step import gather_rows

    kernel = gather_rows if variant == "row_copy" else per_element
    n, d = 60000, 784
    rng = np.random.default_rng(0)
    src = rng.standard_normal(n * d).astype(np.float32)
    order = rng.permutation(n).astype(np.int64)
    ctrl = np.zeros(8, np.int64)
    result = {}
    for b in batches:
        out, other = np.empty(b * d, np.float32), np.empty(b * d, np.float32)
        args = (src, order, ctrl, src.size, n, n, b, 0, d)
        kernel(*args, out)
        (per_element if variant == "row_copy" else gather_rows)(*args, other)
        assert np.array_equal(out.view(np.int32), other.view(np.int32))
        times = []
        for _ in range(15):
            started = time.perf_counter()
            for _ in range(20):
                kernel(*args, out)
            times.append((time.perf_counter() - started) / 20)
        result[b] = statistics.median(times)
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", default="128,2048")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.child:
        child(args.child, batches)
        return
    runs = {"per_element": [], "row_copy": []}
    for k in range(args.rounds):
        for variant in (("per_element", "row_copy") if k % 2 == 0 else ("row_copy", "per_element")):
            out = subprocess.run([sys.executable, __file__, "--child", variant, "--batches",
                                  args.batches], capture_output=True, text=True, check=True)
            runs[variant].append(json.loads(out.stdout))
    for b in batches:
        before = statistics.median(r[str(b)] for r in runs["per_element"])
        after = statistics.median(r[str(b)] for r in runs["row_copy"])
        print(f"batch {b:>5}: per-element {before * 1e6:8.0f} us  row copy {after * 1e6:8.0f} us"
              f"  ratio {after / before:.2f}")


if __name__ == "__main__":
    main()

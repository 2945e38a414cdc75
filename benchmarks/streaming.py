"""Streaming training on the CPU (issue 21 item 1): samples/s from a memory-mapped .npy (page
cache warm) against the same rows in memory, and peak memory while training from a .npy larger
than the address-space limit left to the process.

Two ways, both printed, because the shared machine's load swings by several times within
seconds: (1) fresh processes, each training ``--epochs`` epochs and reporting the median
samples/s of the epochs after the first, in the order memory, mmap, mmap, memory, ... (ABBA:
a load trend favours neither); (2) one process that trains one model on both, alternating
epochs (memory, mmap, mmap, memory, ...), so both see the same warm state and load, and the
ratio of each adjacent pair is reported.
Run from the repository root: ``python benchmarks/streaming.py [--rows 40000] [--rounds 3]``.

``--many-rows N`` (alone: ``--rounds 0``) adds what streaming holds per row of the source: a
fresh process trains one epoch from the paths of an ``N`` x 4 float32 ``.npy`` (read with
``pread``, nothing mapped) with chunks of ``--chunk-rows``, and reports its peak RSS over the
RSS before, per row.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

SIZES = [784, 256, 10]


def alternate(folder, chunk_rows, pairs):
    """One process, one model: epochs on the array in memory and on the memory map in the
    order memory, mmap, mmap, memory, ...; samples/s of each and the ratio of each pair."""
    import time

    import gpunn
    from gpunn.staging import Stager

    staged = [0.0]  # seconds the helper thread spent reading, converting and checking chunks
    fill = Stager._fill

    def timed_fill(self, *args):
        started = time.perf_counter()
        fill(self, *args)
        staged[0] += time.perf_counter() - started

    Stager._fill = timed_fill
    X, y = os.path.join(folder, "X.npy"), np.load(os.path.join(folder, "y.npy"))
    model = gpunn.MLP(SIZES, output="softmax", seed=0)
    data = {"memory": (np.load(X), {}),
            "mmap": (np.load(X, mmap_mode="r"), {"chunk_rows": chunk_rows})}
    for kind in data:  # kernels loaded, pages touched
        gpunn.fit(model, data[kind][0], y, epochs=1, batch_size=256, progress=False,
                  **data[kind][1])
    speeds, staging = {"memory": [], "mmap": []}, []
    for k in range(pairs):
        for kind in (("memory", "mmap") if k % 2 == 0 else ("mmap", "memory")):
            staged[0] = 0.0
            history = gpunn.fit(model, data[kind][0], y, epochs=1, batch_size=256,
                                progress=False, **data[kind][1])
            speeds[kind].append(history.samples_per_second[-1])
            if kind == "mmap":
                staging.append(staged[0] / history.seconds[-1])
    ratios = [m / r for m, r in zip(speeds["mmap"], speeds["memory"])]
    print(json.dumps({"kind": "alternate", "speeds": speeds, "mmap_over_memory": ratios,
                      "median_ratio": float(np.median(ratios)),
                      "ratio_of_best": max(speeds["mmap"]) / max(speeds["memory"]),
                      "staging_thread_over_epoch": staging}))


def child(kind, folder, rows, chunk_rows, headroom, epochs=2):
    import resource

    import gpunn

    X = os.path.join(folder, "X.npy")
    y = np.load(os.path.join(folder, "y.npy"))
    model = gpunn.MLP(SIZES, output="softmax", seed=0)
    if kind == "memory":
        data, extra = np.load(X), {}
    elif kind == "mmap":
        data, extra = np.load(X, mmap_mode="r"), {"chunk_rows": chunk_rows}
    else:  # "limit": the path under an address-space limit of what is in use + headroom
        gpunn.fit(model, np.zeros((512, SIZES[0]), np.float32), y[:512], epochs=1,
                  batch_size=256, progress=False)  # kernels loaded, pools started
        used = _status("VmSize")
        resource.setrlimit(resource.RLIMIT_AS, (used + headroom, used + headroom))
        try:
            np.load(X, mmap_mode="r")
            mapped = "mapped"
        except (OSError, ValueError, MemoryError) as exc:
            mapped = f"refused ({type(exc).__name__})"
        before = _status("VmRSS")
        data, extra = X, {"chunk_rows": chunk_rows}
    chunk_sizes = []
    if kind == "limit":  # the chunks the fit below plans: float32 inputs and a class index
        from gpunn.staging import plan_chunks
        chunk_sizes = [b - a for a, b in plan_chunks(rows, chunk_rows, 256, False,
                                                     4 * (SIZES[0] + 1))]
    history = gpunn.fit(model, data, y, epochs=epochs, batch_size=256, progress=False, **extra)
    result = {"kind": kind, "samples_per_second": float(np.median(
        history.samples_per_second[1:])), "epochs": history.samples_per_second}
    if kind == "limit":
        # "one chunk": chunk_rows rows of the file (inputs and label); "the model": its
        # parameters, and their gradients and Adam's two moments (what training it holds)
        result.update(limit_headroom=headroom, mmap_whole_file=mapped, rss_before=before,
                      peak_rss=_status("VmHWM"), file_bytes=os.path.getsize(X),
                      chunk_rows=chunk_rows, chunks=len(chunk_sizes),
                      largest_chunk=max(chunk_sizes),
                      chunk_bytes=chunk_rows * (os.path.getsize(X) + y.nbytes) // rows,
                      params=model.flat_params.nbytes,
                      model_training_bytes=4 * model.flat_params.nbytes)
    print(json.dumps(result))


def many_rows(folder, rows, chunk_rows):
    """Peak RSS growth per row while training one epoch from the paths of ``rows`` narrow
    rows: the per-row arrays dominate it (the chunk holds 16 bytes a row here)."""
    import gpunn

    X, y = os.path.join(folder, "X4.npy"), os.path.join(folder, "y4.npy")  # from main()
    model = gpunn.MLP([4, 8, 1], seed=0)
    gpunn.fit(model, np.zeros((512, 4), np.float32), np.zeros((512, 1), np.float32), epochs=1,
              batch_size=256, progress=False, loss="mse")  # kernels loaded, pools started
    before = _status("VmRSS")
    history = gpunn.fit(model, X, y, epochs=1, batch_size=4096, progress=False, loss="mse",
                        chunk_rows=chunk_rows)
    peak = _status("VmHWM")
    print(json.dumps({"kind": "many_rows", "rows": rows, "chunk_rows": chunk_rows,
                      "file_bytes": os.path.getsize(X), "rss_before": before,
                      "peak_rss": peak, "bytes_per_row": (peak - before) / rows,
                      "loss": history.loss[-1]}))


def _status(key):
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def run(kind, folder, args):
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--folder", folder,
                          "--rows", str(args.rows), "--chunk-rows", str(args.chunk_rows),
                          "--headroom", str(args.headroom), "--epochs", str(args.epochs),
                          "--many-rows", str(args.many_rows),
                          "--rounds", str(args.rounds)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=40000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--headroom", type=int, default=48 << 20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--many-rows", type=int, default=0)
    parser.add_argument("--child")
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.child == "many_rows":
        return many_rows(args.folder, args.many_rows, args.chunk_rows)
    if args.child == "alternate":
        return alternate(args.folder, args.chunk_rows, 2 * args.rounds)
    if args.child:
        return child(args.child, args.folder, args.rows, args.chunk_rows, args.headroom,
                     2 if args.child == "limit" else args.epochs)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        rng = np.random.default_rng(0)
        np.save(os.path.join(folder, "X.npy"),
                rng.normal(size=(args.rows, SIZES[0])).astype(np.float32))
        np.save(os.path.join(folder, "y.npy"), rng.integers(0, SIZES[-1], args.rows))
        speeds, epochs = {"memory": [], "mmap": []}, {"memory": [], "mmap": []}
        for k in range(args.rounds):
            for kind in (("memory", "mmap") if k % 2 == 0 else ("mmap", "memory")):
                result = run(kind, folder, args)
                speeds[kind].append(result["samples_per_second"])
                epochs[kind].append(result["epochs"])
        ratios = [m / r for m, r in zip(speeds["mmap"], speeds["memory"])]
        if args.rounds:
            print(json.dumps({"kind": "processes", "speeds": speeds,
                              "mmap_over_memory": ratios,
                              "median_ratio": float(np.median(ratios)), "epochs": epochs}))
            print(json.dumps(run("alternate", folder, args)))
            print(json.dumps(run("limit", folder, args)))
        if args.many_rows:  # written here: VmHWM would count the child writing them
            np.save(os.path.join(folder, "X4.npy"),
                    rng.normal(size=(args.many_rows, 4)).astype(np.float32))
            np.save(os.path.join(folder, "y4.npy"),
                    rng.normal(size=(args.many_rows, 1)).astype(np.float32))
            print(json.dumps(run("many_rows", folder, args)))


if __name__ == "__main__":
    main()

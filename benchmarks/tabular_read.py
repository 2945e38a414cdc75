"""The tabular reader before and after issue 19 item 6: seconds and peak RSS of reading one
generated CSV (MNIST-shaped, 20000 x 785 integers, 80% zeros), each read in a fresh process,
old and new interleaved; and the peak RSS of refusing a compressed .npz bomb.

    python benchmarks/tabular_read.py [--old COMMIT] [--rounds 2]

The old reader is ``gpunn/tabular.py`` at COMMIT (default 290dd84, the last before the change),
taken from git into a temporary folder.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

CHILD = """
import sys, time
sys.path.insert(0, sys.argv[4])


def hwm():  # VmHWM, MB: per address space (ru_maxrss would carry the parent's peak over exec)
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) / 1024


which, path, target = sys.argv[1:4]
import numpy
if which == "old":
    import old_tabular as mod
else:
    import pandas
    from gpunn import tabular_read as mod
base = hwm()
start = time.perf_counter()
try:
    X = mod.read_table(path, target)[0]
    shape = X.shape
except ValueError as exc:
    shape = "refused: " + str(exc)[-60:]
seconds = time.perf_counter() - start
peak = hwm()
print(f"{which}: {seconds:.2f} s, peak RSS {peak:.0f} MB (+{peak - base:.0f} MB over imports),",
      shape)
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", default="290dd84")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    old = subprocess.run(["git", "show", f"{args.old}:gpunn/tabular.py"], check=True,
                         capture_output=True, text=True).stdout
    with open(os.path.join(folder, "old_tabular.py"), "w") as file:
        file.write(old)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (20000, 785)) * (rng.random((20000, 785)) < 0.2)
    X[:, 0] = rng.integers(0, 10, 20000)
    csv = os.path.join(folder, "mnistlike.csv")
    np.savetxt(csv, X, fmt="%d", delimiter=",", comments="",
               header=",".join(["label"] + [f"p{i}" for i in range(784)]))
    bomb = os.path.join(folder, "bomb.npz")
    np.savez_compressed(bomb, X=np.zeros((12_500, 10_000)), y=np.zeros(12_500))  # 1 GB of zeros
    print(f"CSV {os.path.getsize(csv) / 1e6:.1f} MB; bomb.npz {os.path.getsize(bomb) / 1e6:.1f} MB")
    for _ in range(args.rounds):
        for which in ("new", "old"):
            subprocess.run([sys.executable, "-c", CHILD, which, csv, "label", folder], check=True)
    for which in ("new", "old"):
        subprocess.run([sys.executable, "-c", CHILD, which, bomb, "y", folder], check=True)


if __name__ == "__main__":
    main()

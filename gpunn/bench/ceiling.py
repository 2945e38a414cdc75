"""The memory-bandwidth ceiling of this machine: an in-place ``a += s * b`` stream.

12 bytes move per element (read ``a`` and ``b``, write ``a``), the same read-modify-write
pattern as the optimizer updates, so their GB/s divided by this one is the fraction of the
attainable bandwidth they reach. The backend's own ``axpy`` kernel (all threads on the CPU,
the whole device on a GPU) and, on the CPU, NumPy in L2-sized chunks (one thread, no
temporary out of cache); the faster counts.
"""

import numpy as np

from gpunn.bench.harness import interleaved

BYTES_PER_ELEMENT = 12
CHUNK = 1 << 16


def _numpy_stream(s, b, a, tmp):
    for start in range(0, a.size, CHUNK):
        stop = min(start + CHUNK, a.size)
        np.multiply(b[start:stop], s, out=tmp[:stop - start])
        a[start:stop] += tmp[:stop - start]


def measure(backend, total_bytes=400e6, rounds=7, min_sample_s=0.05):
    """Stream ``total_bytes`` of two float32 arrays in place; GB/s of each implementation.

    Returns:
        ``{"bytes_footprint", "elements", "contenders": {name: timing + gb_per_s},
        "ceiling_gb_per_s", "ceiling_by"}``.
    """
    n = int(total_bytes // 8)
    rng = np.random.default_rng(0)
    a = rng.random(n, dtype=np.float32)
    b = rng.random(n, dtype=np.float32)
    a_dev, b_dev = backend.asarray(a), backend.asarray(b)
    contenders = {f"gpunn axpy ({backend.name})": lambda: backend.kernel("axpy", b_dev, 1e-7,
                                                                          a_dev)}
    if backend.xp is np:
        tmp = np.empty(CHUNK, np.float32)
        contenders["numpy chunked"] = lambda: _numpy_stream(np.float32(1e-7), b, a, tmp)
    timings = interleaved(contenders, rounds=rounds, min_sample_s=min_sample_s,
                          sync=backend.synchronize)
    contenders = {name: {**t.as_dict(), "gb_per_s": BYTES_PER_ELEMENT * n / t.median / 1e9}
                  for name, t in timings.items()}
    best = max(contenders, key=lambda k: contenders[k]["gb_per_s"])
    return {"bytes_footprint": 8 * n, "elements": n, "bytes_per_element": BYTES_PER_ELEMENT,
            "contenders": contenders, "ceiling_gb_per_s": contenders[best]["gb_per_s"],
            "ceiling_by": best}

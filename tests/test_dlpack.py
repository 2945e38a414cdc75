"""Arrays from any framework (gpunn.dlpack): DLPack producers are read without a copy on a
backend of their device, give the numbers NumPy inputs give, and a device mismatch is a clear
TypeError naming the argument."""

from types import SimpleNamespace

import numpy as np
import pytest

import gpunn
from gpunn.dlpack import from_dlpack


class Producer:
    """A DLPack-only view of an array (no __array__): what a foreign framework offers."""

    def __init__(self, array, device=(1, 0)):
        self.array, self.device = array, device

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.device


def data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(24, 5)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


def address(array):
    return array.__array_interface__["data"][0]


def test_host_producer_is_viewed_not_copied():
    X, _ = data()
    view = from_dlpack("X", Producer(X), np)
    assert isinstance(view, np.ndarray) and address(view) == address(X)
    assert from_dlpack("X", X, np) is X and from_dlpack("X", [[1.0]], np) == [[1.0]]


def test_model_reads_a_producer_in_place(backend):
    """The array the model moves to its device is the producer's memory (the cpu backend)."""
    if backend.name != "cpu":
        pytest.skip("device memory is apart from the host's (cuda, and cuda-emulated as a GPU "
                    "is): host inputs are copied to the device")
    X, y = data()
    model = gpunn.MLP([5, 4, 3], output="softmax")
    assert address(model.prepare(Producer(X), y)[0]) == address(X)


def test_torch_tensors_train_and_predict_as_numpy(backend):
    torch = pytest.importorskip("torch")
    X, y = data()
    results = []
    for inputs, labels in ((X, y), (torch.from_numpy(X), torch.from_numpy(y))):
        model = gpunn.MLP([5, 6, 3], activation="tanh", output="softmax", seed=1)
        history = gpunn.fit(model, inputs, labels, epochs=3, batch_size=8, lr=0.05,
                            validation_data=(inputs, labels), progress=False)
        results.append((history.loss, history.val_loss, model.predict_proba(inputs)))
    for numpy_result, torch_result in zip(*results):
        np.testing.assert_array_equal(torch_result, numpy_result)


def test_jax_arrays(backend):
    jnp = pytest.importorskip("jax.numpy")
    X, y = data()
    model, jax_X = gpunn.MLP([5, 4, 3], output="softmax"), jnp.asarray(X)
    np.testing.assert_array_equal(model.predict(jax_X), model.predict(X))
    costs = [gpunn.fit(gpunn.MLP([5, 4, 3], output="softmax"), inputs, labels, epochs=2,
                       batch_size=8, progress=False).loss
             for inputs, labels in ((X, y), (jax_X, jnp.asarray(y)))]
    assert costs[0] == costs[1]
    if backend.name == "cpu":  # read in place (JAX's buffers are read-only; gpunn only reads)
        assert address(model.prepare(jax_X, y)[0]) == jax_X.unsafe_buffer_pointer()


def test_cuda_memory_on_a_host_backend_is_refused(backend):
    if backend.xp is not np:
        pytest.skip("the CUDA backend takes CUDA memory")
    X, y = data()
    model = gpunn.MLP([5, 4, 3], output="softmax")
    cuda = Producer(X, device=(2, 1))
    with pytest.raises(TypeError, match=r"X: expected an array in host memory for this backend"
                                        r" .* in CUDA memory \(device 1\); move it to the host"):
        model.predict(cuda)
    with pytest.raises(TypeError, match=r"^y: expected an array in host memory"):
        gpunn.fit(model, X, Producer(y, device=(13, 0)), epochs=1, progress=False)
    with pytest.raises(TypeError, match="validation_data: X: expected an array in host"):
        gpunn.fit(model, X, y, validation_data=(cuda, y), epochs=1, progress=False)


def test_other_devices_and_refusals_are_named():
    X, _ = data()
    with pytest.raises(TypeError, match=r"X: expected an array in host or CUDA memory, got "
                                        r"the test_dlpack.Producer on DLPack device type 14"):
        from_dlpack("X", Producer(X, device=(14, 0)), np)

    class Broken(Producer):
        def __dlpack_device__(self):
            raise RuntimeError("no device")

    with pytest.raises(TypeError, match=r"X: expected an array whose __dlpack_device__\(\) "
                                        r"works, got the test_dlpack.Broken \(RuntimeError"):
        from_dlpack("X", Broken(X), np)


def test_tensor_requiring_grad_is_named():
    torch = pytest.importorskip("torch")
    X, _ = data()
    tensor = torch.from_numpy(X).requires_grad_()
    with pytest.raises(TypeError, match=r"X: expected an array that can be shared through "
                                        r"DLPack, got the torch.Tensor, which refused"):
        gpunn.MLP([5, 2]).predict(tensor)
    np.testing.assert_array_equal(gpunn.MLP([5, 2]).predict(tensor.detach()),
                                  gpunn.MLP([5, 2]).predict(X))


def test_cuda_producer_stays_on_the_gpu(backend):
    """On a GPU: a CUDA DLPack producer is read in place, and the model computes on it."""
    if backend.xp is np:
        pytest.skip("needs the CUDA backend (a GPU)")
    cupy = backend.xp
    X, y = data()
    Xd = cupy.asarray(X)
    model = gpunn.MLP([5, 4, 3], output="softmax")
    prepared = model.prepare(Producer(Xd, device=(2, Xd.device.id)), y)[0]
    assert prepared.data.ptr == Xd.data.ptr
    np.testing.assert_array_equal(model.predict(Producer(Xd, device=(2, Xd.device.id))),
                                  model.predict(X))


def test_bfloat16_tensor_is_named_with_the_way_out():
    torch = pytest.importorskip("torch")
    X, _ = data()
    with pytest.raises(TypeError, match=r"X: .* torch.Tensor, which refused .*; pass it as "
                                        r"float32 or float64"):
        gpunn.MLP([5, 2]).predict(torch.from_numpy(X).to(torch.bfloat16))


def test_cuda_memory_of_another_gpu_is_refused():
    """A CUDA backend reads CUDA memory of its own device only (a stub of CuPy's device API
    stands in for the GPU this machine may lack; nothing reaches from_dlpack)."""
    stub_cupy = SimpleNamespace(cuda=SimpleNamespace(Device=lambda: SimpleNamespace(id=0)),
                                from_dlpack=lambda value: "taken")

    X, _ = data()
    with pytest.raises(TypeError, match=r"X: expected an array on the model's GPU \(device 0\), "
                                        r"got the test_dlpack.Producer on device 1; move it"):
        from_dlpack("X", Producer(X, device=(2, 1)), stub_cupy)
    assert from_dlpack("X", Producer(X, device=(2, 0)), stub_cupy) == "taken"
    assert from_dlpack("X", Producer(X, device=(13, 1)), stub_cupy) == "taken"  # managed

"""gpunn.export refuses what it cannot represent, with errors naming the culprit, and writes
nothing on a refusal: modules gpunn has no layer for, non-finite models, bad paths."""

import os

import numpy as np
import pytest

from gpunn import MLP, export


def nonfinite_model():
    model = MLP([4, 6, 3], activation="relu", output="softmax")
    model.layers[1].b[1] = np.nan
    return model


@pytest.mark.parametrize("name", ["to_torch", "state_dict", "save_state_dict", "to_onnx"])
def test_nonfinite_model_refused_and_nothing_written(tmp_path, name):
    pytest.importorskip({"to_torch": "torch", "to_onnx": "onnx"}.get(name, "numpy"))
    path = tmp_path / "out"
    path.write_bytes(b"old")
    args = (str(path),) if name in ("save_state_dict", "to_onnx") else ()
    with pytest.raises(ValueError, match=r"model\.layers\[1\]\.b: expected finite values, "
                                         r"got 1 NaN/inf"):
        getattr(export, name)(nonfinite_model(), *args)
    assert path.read_bytes() == b"old"


@pytest.mark.parametrize("name", ["to_torch", "state_dict", "save_state_dict", "to_onnx"])
def test_not_a_model(tmp_path, name):
    pytest.importorskip({"to_torch": "torch", "to_onnx": "onnx"}.get(name, "numpy"))
    args = (str(tmp_path / "out"),) if name in ("save_state_dict", "to_onnx") else ()
    with pytest.raises(TypeError, match="model: expected a Sequential or MLP, got dict"):
        getattr(export, name)({"W": 1}, *args)


@pytest.mark.parametrize("name", ["save_state_dict", "to_onnx"])
def test_bad_paths(tmp_path, name):
    pytest.importorskip("onnx" if name == "to_onnx" else "numpy")
    write, model = getattr(export, name), MLP([4, 3])
    with pytest.raises(ValueError, match="path: expected a regular file .* got a directory"):
        write(model, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="path: no such folder"):
        write(model, str(tmp_path / "missing" / "m.bin"))
    with pytest.raises(TypeError, match="path: expected a file path, got int"):
        write(model, 3)
    if os.path.exists("/dev/null"):
        with pytest.raises(ValueError, match="character device"):
            write(model, "/dev/null")
    assert os.listdir(tmp_path) == []


def test_probabilities_checked():
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="probabilities: expected False for a model with "
                                         "output=None"):
        export.to_torch(MLP([4, 3]), probabilities=True)
    with pytest.raises(TypeError, match="probabilities: expected True or False"):
        export.to_torch(MLP([4, 3], output="softmax"), probabilities="yes")


# (case id, the module built from torch.nn, output, error type, message pattern)
REFUSED = [
    ("not-sequential", lambda nn: nn.Linear(4, 3), None, TypeError,
     r"module: expected a torch.nn.Sequential, got Linear"),
    ("empty", lambda nn: nn.Sequential(), None, TypeError,
     r"expected at least one torch.nn.Linear"),
    ("leaky-relu-slope", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(0.2),
                                                  nn.Linear(5, 2)),
     None, TypeError,
     r"module\[1\]: gpunn cannot represent LeakyReLU\(negative_slope=0.2\): expected "
     r"negative_slope=0.01"),
    ("conv", lambda nn: nn.Sequential(nn.Conv1d(1, 2, 3)), None, TypeError,
     r"module\[0\]: gpunn cannot represent Conv1d"),
    # Dropout after a Linear (and its activation) is the layer's dropout; before the
    # activation, twice, or as another class it is not.
    ("dropout-before-activation", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.Dropout(),
                                                           nn.ReLU(), nn.Linear(5, 2)), None,
     TypeError, r"module\[2\]: gpunn cannot represent ReLU here"),
    ("two-dropouts", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.Dropout(), nn.Dropout(),
                                              nn.Linear(5, 2)), None,
     TypeError, r"module\[2\]: gpunn cannot represent Dropout here"),
    ("dropout1d", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.Dropout1d(), nn.Linear(5, 2)),
     None, TypeError, r"module\[1\]: gpunn cannot represent Dropout1d"),
    ("activation-first", lambda nn: nn.Sequential(nn.ReLU(), nn.Linear(4, 2)), None, TypeError,
     r"module\[0\]: gpunn cannot represent ReLU here"),
    ("two-activations", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Tanh()), None,
     TypeError, r"module\[2\]: gpunn cannot represent Tanh here"),
    ("softmax-inside", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.Softmax(-1),
                                                nn.Linear(5, 2)),
     "softmax", TypeError, r"module\[1\]: gpunn cannot represent Softmax"),
    ("softmax-without-output", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.Softmax(-1)), None,
     TypeError, r"module\[1\]: gpunn cannot represent Softmax"),
    ("softmax-dim0", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.Softmax(dim=0)), "softmax",
     TypeError, r"module\[1\]: expected nn.Softmax over the last dimension"),
    ("no-bias", lambda nn: nn.Sequential(nn.Linear(4, 5, bias=False)), None, TypeError,
     r"module\[0\]: gpunn cannot represent Linear\(bias=False\)"),
    ("float16", lambda nn: nn.Sequential(nn.Linear(4, 5).half()), None, TypeError,
     r"module\[0\].weight: expected float32 or float64 parameters, got torch.float16"),
    ("mixed-dtypes", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2).double()), None,
     TypeError, r"module: expected one parameter dtype"),
    ("sizes", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.Linear(6, 2)), None, ValueError,
     r"layers\[1\].n_in: expected 5"),
    ("bad-output", lambda nn: nn.Sequential(nn.Linear(4, 5)), "tanh", ValueError,
     r"output: expected None, 'sigmoid' or 'softmax'"),
]


@pytest.mark.parametrize("build,output,error,pattern", [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_from_torch_refuses(build, output, error, pattern):
    torch = pytest.importorskip("torch")
    with pytest.raises(error, match=pattern):
        export.from_torch(build(torch.nn), output=output)


def test_from_torch_refuses_subclasses_with_their_own_forward():
    torch = pytest.importorskip("torch")

    class Scaled(torch.nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    class Skip(torch.nn.Sequential):
        def forward(self, x):
            return x + super().forward(x)

    with pytest.raises(TypeError, match=r"module\[1\]: gpunn cannot represent Scaled: a "
                                        r"Linear subclass with its own forward"):
        export.from_torch(torch.nn.Sequential(torch.nn.Linear(4, 4), Scaled(4, 2)))
    with pytest.raises(TypeError, match=r"module: gpunn cannot represent Skip: a Sequential "
                                        r"subclass"):
        export.from_torch(Skip(torch.nn.Linear(4, 4)))
    # A Linear subclass that keeps Linear's forward (PyTorch has some) is taken.
    kept = type("Kept", (torch.nn.Linear,), {})
    assert export.from_torch(torch.nn.Sequential(kept(4, 2))).n_out == 2


def test_from_torch_refuses_nonfinite_weights():
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    with torch.no_grad():
        module[1].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"module\[1\].weight: expected finite values, got 1"):
        export.from_torch(module)


def test_from_torch_refuses_mixed_rounding():
    torch = pytest.importorskip("torch")
    RoundedLinear = export.RoundedLinear
    module = torch.nn.Sequential(RoundedLinear(4, 5, "tf32"), RoundedLinear(5, 2, "bf16"))
    with pytest.raises(TypeError, match=r"Linear layers of one precision .* got "
                                        r"\['bf16', 'tf32'\]"):
        export.from_torch(module)
    module[1] = torch.nn.Linear(5, 2)
    with pytest.raises(TypeError, match=r"got \['fp32', 'tf32'\]"):
        export.from_torch(module)
    assert export.from_torch(module, precision="bf16").precision == "bf16"
    with pytest.raises(ValueError, match="precision: expected 'tf32' or 'bf16'"):
        RoundedLinear(4, 5, "fp16")


def test_onnx_size_limit_is_named(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from gpunn.export import onnx_graph

    monkeypatch.setattr(onnx_graph, "PROTOBUF_LIMIT", 100)
    with pytest.raises(ValueError, match=r"model: expected parameters under 2 GiB for one ONNX "
                                         r"file \(protobuf's limit\), got 204 bytes"):
        export.to_onnx(MLP([4, 6, 3]), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()


def test_every_activation_has_an_export():
    """A new activation in the registry fails here until PyTorch and ONNX names are given."""
    from gpunn.export.layout import TORCH_ACTIVATIONS
    from gpunn.export.onnx_graph import ONNX_ACTIVATIONS
    from gpunn.layers import ACTIVATIONS

    assert sorted(ACTIVATIONS) == sorted(TORCH_ACTIVATIONS) == sorted(ONNX_ACTIVATIONS)


def test_unknown_activation_is_named(monkeypatch):
    from gpunn.export import layout

    monkeypatch.delitem(layout.TORCH_ACTIVATIONS, "tanh")
    with pytest.raises(TypeError, match=r"model.layers\[0\].activation: expected one of .*, "
                                        r"got 'tanh'"):
        export.state_dict(MLP([4, 6, 3], activation="tanh"))

"""gpunn.export: PyTorch modules, state_dict safetensors files and ONNX graphs with the numbers
of ``model.predict``, at every activation, output, dtype and precision; and the hostile inputs.

fp32 and float64 exports are compared with ``predict`` / ``predict_proba`` to float32 / float64
tolerance and with an independent float64 forward (tests/reference.py). tf32 and bf16 exports
round each GEMM input as gpunn does, so they agree with ``predict`` to float32 tolerance too,
except on the few rows where an intermediate value lies within float32 accumulation error of a
TF32 / bfloat16 rounding boundary: another runtime's summation order rounds it to the
neighbouring value (one ulp of the precision), as gpunn's own CPU and GPU do. So those exports
must match ``predict`` to float32 tolerance on all but ``FLIPPED_ROWS`` of the rows, and on
every row to one ulp of the precision; a plain float32 export misses on nearly every row.
"""

import numpy as np
import pytest
import reference as ref
from reference_precision import BF16_BITS, TF32_BITS, round_to_mantissa

import gpunn
from gpunn import Dense, Sequential, export

# (output, output units): regression, binary, multi-label, softmax.
OUTPUTS = [(None, 3), ("sigmoid", 1), ("sigmoid", 3), ("softmax", 4)]
# (dtype, precision)
PRECISIONS = [("float32", "fp32"), ("float32", "tf32"), ("float32", "bf16"), ("float64", "fp32")]
MANTISSA = {"tf32": TF32_BITS, "bf16": BF16_BITS}
ROWS, N_IN = 200, 6
# One ulp at 1 of the GEMM inputs' format: the most a rounding flip moves an output, relatively.
ULP = {"tf32": 2.0 ** -10, "bf16": 2.0 ** -7}
# The fraction of rows that may differ from predict by more than float32 tolerance (flips).
FLIPPED_ROWS = 0.05


def make_model(output, n_out, dtype="float32", precision="fp32", last="identity", seed=3):
    """Every activation gpunn has, one per hidden layer, and the output head."""
    layers = [Dense(N_IN, 9, "sigmoid"), Dense(9, 7, "relu", init="he_normal"),
              Dense(7, 5, "tanh"), Dense(5, n_out, last)]
    return Sequential(layers, output=output, dtype=dtype, seed=seed, precision=precision)


def inputs(dtype="float32", seed=0):
    return np.random.default_rng(seed).normal(size=(ROWS, N_IN)).astype(dtype)


def expected(model, X):
    """What an export must return: probabilities for classifiers, outputs for regression."""
    return model.predict_proba(X) if model.output else model.predict(X)


def reference_outputs(model, X):
    """Independent float64 forward of the model's parameters, GEMM inputs rounded by value."""
    bits = MANTISSA.get(model.precision)
    A = np.asarray(X, np.float64)
    for layer in model.layers:
        W, b = (model.backend.to_numpy(p).astype(np.float64) for p in (layer.W, layer.b))
        if bits is not None:
            A, W = round_to_mantissa(A, bits), round_to_mantissa(W, bits)
        A = ref.activation(layer.activation, A @ W + b)
        if bits is not None:
            A = A.astype(np.float32)  # gpunn keeps layer outputs in float32
    if model.output == "sigmoid":
        return ref.sigmoid(A)
    if model.output == "softmax":
        return np.exp(A - np.logaddexp.reduce(A, axis=1, keepdims=True))
    return A


def check_numbers(model, X, got):
    """``got`` equals predict's numbers and the float64 reference (see the module docstring)."""
    want, reference = expected(model, X), reference_outputs(model, X)
    if model.precision == "fp32":
        ref.assert_close(got, want, model.dtype, err_msg="export vs predict")
        ref.assert_close(got, reference, model.dtype, err_msg="export vs float64 reference")
        return
    ulp = ULP[model.precision]
    if model.precision == "tf32" and model.backend.name == "cuda":
        # cuBLAS leaves TF32 rounding unspecified (truncation, or none for some shapes); the
        # export rounds to nearest even as gpunn's CPU does, so only a TF32 bound holds here:
        # 2^-10 per operand, a few layers deep.
        np.testing.assert_allclose(got, want, rtol=8 * ulp, atol=8 * ulp, err_msg="vs cuBLAS")
        return
    np.testing.assert_allclose(got, want, rtol=ulp, atol=ulp, err_msg="export vs predict")
    np.testing.assert_allclose(got, reference, rtol=ulp, atol=ulp, err_msg="vs reference")
    off = ~np.isclose(got, want, **ref.TOL[np.dtype(np.float32)])
    flipped = off.reshape(len(X), -1).any(axis=1).mean()
    assert flipped <= FLIPPED_ROWS, f"{flipped:.0%} of the rows differ from predict"


def ids(cases):
    return ["-".join(str(part) for part in case) for case in cases]


@pytest.mark.parametrize("output,n_out", OUTPUTS, ids=ids(OUTPUTS))
@pytest.mark.parametrize("dtype,precision", PRECISIONS, ids=ids(PRECISIONS))
def test_to_torch_same_numbers(backend, output, n_out, dtype, precision):
    torch = pytest.importorskip("torch")
    model, X = make_model(output, n_out, dtype, precision), inputs(dtype)
    module = export.to_torch(model, probabilities=output is not None)
    with torch.no_grad():
        got = module(torch.from_numpy(X)).numpy()
    assert got.dtype == model.dtype
    check_numbers(model, X, got)
    with torch.no_grad():
        logits = export.to_torch(model)(torch.from_numpy(X)).numpy()
    forward = model.backend.to_numpy(model.forward(X))
    if model.precision == "tf32" and model.backend.name == "cuda":
        ulp = ULP["tf32"]  # cuBLAS's TF32 rounding is unspecified: see check_numbers
        np.testing.assert_allclose(logits, forward, rtol=8 * ulp, atol=8 * ulp)
    else:
        ref.assert_close(logits, forward, model.dtype)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_rounding_is_what_makes_them_agree(precision):
    """The same weights in plain float32 Linear layers miss predict: the check above can fail."""
    torch = pytest.importorskip("torch")
    model, X = make_model(None, 3, precision=precision), inputs()
    if precision == "tf32" and model.backend.name == "cuda":
        pytest.skip("on an H200, cuBLAS computed these small tf32 GEMMs as plain float32 "
                    "products, so plain float32 layers agree: the contrast holds where the "
                    "operands are rounded (gpunn's CPU and cuda-emulated backends)")
    plain = export.from_torch(export.to_torch(model), precision="fp32")
    assert plain.precision == "fp32"
    with torch.no_grad():
        got = export.to_torch(plain)(torch.from_numpy(X)).numpy()
    with pytest.raises(AssertionError, match="of the rows differ from predict"):
        check_numbers(model, X, got)


@pytest.mark.parametrize("output,n_out", OUTPUTS, ids=ids(OUTPUTS))
@pytest.mark.parametrize("dtype,precision", PRECISIONS, ids=ids(PRECISIONS))
def test_onnx_same_numbers(backend, tmp_path, output, n_out, dtype, precision):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, X = make_model(output, n_out, dtype, precision), inputs(dtype)
    path = export.to_onnx(model, str(tmp_path / "model.onnx"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    results = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"X": X})))
    if output is None:
        assert set(results) == {"output"}
        check_numbers(model, X, results["output"])
    else:
        assert set(results) == {"label", "probabilities"}
        check_numbers(model, X, results["probabilities"])
        np.testing.assert_array_equal(results["label"], model.predict(X))


def test_regression_with_an_activated_last_layer(backend):
    torch = pytest.importorskip("torch")
    model, X = make_model(None, 2, last="sigmoid"), inputs()
    module = export.to_torch(model)
    assert isinstance(module[-1], torch.nn.Sigmoid)
    with torch.no_grad():
        check_numbers(model, X, module(torch.from_numpy(X)).numpy())
    back = export.from_torch(module)
    assert back.output is None
    assert [layer.activation for layer in back.layers] == ["sigmoid", "relu", "tanh", "sigmoid"]


@pytest.mark.parametrize("output,n_out", OUTPUTS, ids=ids(OUTPUTS))
@pytest.mark.parametrize("dtype,precision", PRECISIONS, ids=ids(PRECISIONS))
def test_round_trip_through_torch(output, n_out, dtype, precision):
    """to_torch then from_torch: the same architecture, precision and parameters, bit for bit."""
    pytest.importorskip("torch")
    model = make_model(output, n_out, dtype, precision)
    for probabilities in ([False, True] if output else [False]):
        back = export.from_torch(export.to_torch(model, probabilities), output=output)
        assert [(d.n_in, d.n_out, d.activation) for d in back.layers] == \
            [(d.n_in, d.n_out, d.activation) for d in model.layers]
        assert (back.output, back.dtype, back.precision) == \
            (model.output, model.dtype, model.precision)
        for mine, theirs in zip(model.parameters(), back.parameters()):
            np.testing.assert_array_equal(back.backend.to_numpy(theirs),
                                          model.backend.to_numpy(mine))


def test_from_torch_module_built_by_torch():
    """A module PyTorch initialized: gpunn predicts what it computes, and can train it."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(N_IN, 8), torch.nn.ReLU(), torch.nn.Identity(),
                                 torch.nn.Linear(8, 3), torch.nn.Softmax(dim=1))
    model = export.from_torch(module, output="softmax")
    X = inputs()
    with torch.no_grad():
        want = module(torch.from_numpy(X)).numpy()
    ref.assert_close(model.predict_proba(X), want, np.float32)
    gpunn.fit(model, X, np.arange(ROWS) % 3, epochs=2, batch_size=8, progress=False)


def test_state_dict_safetensors_loads_into_torch(tmp_path):
    """The file holds PyTorch's names; a hand-written nn.Sequential loads it strictly."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model, X = make_model("softmax", 4), inputs()
    path = export.save_state_dict(model, str(tmp_path / "model.safetensors"))
    nn = torch.nn
    module = nn.Sequential(nn.Linear(N_IN, 9), nn.Sigmoid(), nn.Linear(9, 7), nn.ReLU(),
                           nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 4))
    loaded = safetensors_torch.load_file(path)
    assert sorted(loaded) == sorted(module.state_dict())
    module.load_state_dict(loaded)  # strict: every name and shape must match
    with torch.no_grad():
        logits = module(torch.from_numpy(X)).numpy()
    ref.assert_close(logits, model.backend.to_numpy(model.forward(X)), np.float32)


def test_state_dict_of_bf16_loads_into_rounded_and_plain_modules(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model, X = make_model(None, 3, precision="bf16"), inputs()
    path = export.save_state_dict(model, str(tmp_path / "model.safetensors"))
    module = export.to_torch(make_model(None, 3, precision="bf16", seed=7))
    module.load_state_dict(safetensors_torch.load_file(path))
    with torch.no_grad():
        check_numbers(model, X, module(torch.from_numpy(X)).numpy())


def test_rounded_linear_pickles(tmp_path):
    torch = pytest.importorskip("torch")
    model, X = make_model("sigmoid", 1, precision="tf32"), inputs()
    torch.save(export.to_torch(model, probabilities=True), tmp_path / "m.pt")
    module = torch.load(tmp_path / "m.pt", weights_only=False)
    assert type(module[0]) is export.RoundedLinear
    with torch.no_grad():
        check_numbers(model, X, module(torch.from_numpy(X)).numpy())

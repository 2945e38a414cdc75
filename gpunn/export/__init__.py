"""Models other tools read: a PyTorch ``nn.Sequential``, a ``state_dict`` safetensors file, ONNX.

- :func:`to_torch` / :func:`from_torch`: a ``torch.nn.Sequential`` of ``Linear`` layers and
  activation modules, and back.
- :func:`state_dict` / :func:`save_state_dict`: the parameters under PyTorch's ``state_dict``
  names (``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ... by position in that Sequential), as
  NumPy arrays or a safetensors file that ``load_state_dict(safetensors.torch.load_file(path))``
  accepts; no torch needed to write it.
- :func:`to_onnx`: an ONNX graph (needs the ``onnx`` extra).

Precision: an fp32 or float64 model exports plain ``Linear`` layers (``MatMul`` in ONNX). A
``"tf32"`` or ``"bf16"`` model exports :class:`RoundedLinear` layers, which compute what gpunn's
GEMMs compute: the layer input and the weight rounded to nearest even to TF32 or bfloat16,
their products accumulated in float32, the bias added in float32; activations, outputs and the
stored parameters stay float32 (the fp32 master values, so training can go on). The ONNX graph
rounds the same way (``Cast`` to bfloat16 and back; ``BitCast`` arithmetic for TF32). So every
export agrees with :meth:`~gpunn.Sequential.predict` to float32 tolerance at every precision,
with one exception that no export can remove: where a layer's float32 output lies within
accumulation error of a TF32 / bfloat16 rounding boundary, another runtime's summation order
may round it to the neighbouring value, and that row's outputs then differ by about one ulp of
the precision (gpunn's own CPU and GPU differ the same way). Such rows are rare; a plain
float32 export instead differs on nearly every row. TF32 rounds to nearest even, as gpunn's
CPU does; cuBLAS leaves its TF32 rounding unspecified (it may truncate), so a tf32 model
predicting on a GPU matches its export only to about one TF32 ulp per GEMM operand.
``RoundedLinear`` keeps ``Linear``'s ``state_dict`` names: the same file loads into either (a
plain ``Linear`` then computes in float32, without the rounding).

A model whose parameters are not finite is refused (ValueError naming the layer); so is a
torch module gpunn cannot represent (TypeError naming the module).
"""

from gpunn.export.layout import save_state_dict, state_dict
from gpunn.export.onnx_graph import to_onnx
from gpunn.export.pytorch import (
    from_torch,
    pre_norm_block_class,
    rounded_linear_class,
    to_torch,
)

__all__ = ["PreNormBlock", "RoundedLinear", "from_torch", "save_state_dict", "state_dict",
           "to_onnx", "to_torch"]


def __getattr__(name):
    # gpunn.export.RoundedLinear and PreNormBlock, built on first use (so importing gpunn
    # imports no torch); pickle finds the classes this way too.
    if name == "RoundedLinear":
        return rounded_linear_class()
    if name == "PreNormBlock":  # a Dense layer with norm= / residual=
        return pre_norm_block_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

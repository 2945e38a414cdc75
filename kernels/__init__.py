"""gpunn's compute kernels: CUDA C sources (``*.cu``, ``*.cuh``) and their Numba twins (``*.py``).

Each ``extern "C"`` kernel is written once against the type ``real`` and compiled once per dtype;
its CUDA name is ``gpunn_<name>_f32`` / ``gpunn_<name>_f64`` and its Numba twin is ``<name>`` in
the module of the same stem. The parameter list parsed from the ``.cu`` file is the single source
of truth for argument order and scalar types: the CUDA backend converts arguments by it and the
tests enumerate kernels by it. A CUDA kernel takes one trailing ``long long n`` (the size of its
last array argument) that the twin does not.
"""

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
MODULES = ("activations", "losses", "optimizers", "step", "precision", "norm", "clip")
DTYPE_SUFFIX = {"float32": ("float", "f32"), "float64": ("double", "f64")}

_KERNEL_RE = re.compile(
    r'(?://\s*sizes:([^\n]*)\n)?'
    r'extern\s+"C"\s+__global__\s+void\s+GPUNN_NAME\((\w+)\)\s*\(([^)]*)\)', re.S)
_SIZE_RE = re.compile(r"(\w+)\[\s*(\w+)\s*(?:([/*])\s*(\w+)\s*)?\]")
_INCLUDE_RE = re.compile(r'^#include\s+"([\w.]+)"\s*$', re.M)

# C parameter type -> kind: "in"/"out" arrays of real, "in_int64"/"out_int64" arrays of int64,
# "real"/"double"/"int"/"int64" scalars.
_PARAM_KINDS = {
    "const real*": "in", "real*": "out", "const long long*": "in_int64",
    "long long*": "out_int64", "real": "real", "double": "double", "int": "int",
    "long long": "int64",
    # bfloat16 bits (float32 kernels only; see precision.cu).
    "const unsigned short*": "in_u16", "unsigned short*": "out_u16",
}
U16_KINDS = ("in_u16", "out_u16")
ARRAY_KINDS = ("in", "out", "in_int64", "out_int64", *U16_KINDS)


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its C name, kind (see ``_PARAM_KINDS``) and, for arrays, its
    element count as ``(left, op, right)``: names of scalar parameters, ``n`` or integer
    literals, ``op`` one of ``"/"``, ``"*"`` or None (then ``right`` is None). It is
    ``("n", None, None)`` unless declared otherwise in a ``// sizes: b[n_cols]
    rowmax[n / n_cols] flags[4]`` line above the kernel.

    ``n`` (the kernel's trailing ``long long n``) is the size of the LAST array parameter whose
    size is not declared."""

    name: str
    kind: str
    size: tuple = ("n", None, None)

    @property
    def is_array(self):
        return self.kind in ARRAY_KINDS

    @property
    def is_int64_array(self):
        return self.kind in ("in_int64", "out_int64")

    @property
    def writes(self):
        """Whether the kernel writes this array."""
        return self.kind in ("out", "out_int64", "out_u16")


@dataclass(frozen=True)
class KernelSpec:
    """A kernel's module, name and parameters as declared in its ``.cu`` file (``n`` excluded)."""

    module: str
    name: str
    params: tuple

    @property
    def n_index(self):
        """Index of the parameter whose size is ``n``: the last undeclared array."""
        return max(i for i, p in enumerate(self.params)
                   if p.is_array and p.size == ("n", None, None))

    def cuda_name(self, dtype):
        return f"gpunn_{self.name}_{DTYPE_SUFFIX[str(dtype)][1]}"


def _parse_param(text, declared):
    text = " ".join(text.replace("*", "* ").split())
    ctype, name = text.rsplit(" ", 1)
    ctype = ctype.replace(" *", "*")
    if ctype not in _PARAM_KINDS:
        raise ValueError(f"kernel parameter {text!r}: unsupported C type {ctype!r}")
    return Param(name, _PARAM_KINDS[ctype], declared.get(name, ("n", None, None)))


@lru_cache(maxsize=None)
def kernel_specs():
    """All kernels of all ``.cu`` files, by name, parsed from their sources."""
    specs = {}
    for module in MODULES:
        source = (KERNEL_DIR / f"{module}.cu").read_text()
        for sizes, name, params in _KERNEL_RE.findall(source):
            declared = {a: (b, op or None, c or None) for a, b, op, c in _SIZE_RE.findall(sizes)}
            parsed = tuple(_parse_param(p, declared) for p in params.split(","))
            if parsed[-1] != Param("n", "int64"):
                raise ValueError(f"kernel {name}: last parameter must be 'long long n'")
            unknown = set(declared) - {p.name for p in parsed if p.is_array}
            if unknown:
                raise ValueError(f"kernel {name}: sizes declared for unknown arrays {unknown}")
            spec = specs[name] = KernelSpec(module, name, parsed[:-1])
            if not any(p.is_array and p.size == ("n", None, None) for p in spec.params):
                raise ValueError(f"kernel {name}: no array of size n")
    return specs


def _inline_includes(text, seen):
    def replace(match):
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        return _inline_includes((KERNEL_DIR / name).read_text(), seen)

    return _INCLUDE_RE.sub(replace, text).replace("#pragma once\n", "")


@lru_cache(maxsize=None)
def cuda_source(module, dtype):
    """The exact source the CUDA backend hands to ``cupy.RawModule`` for ``module`` and ``dtype``.

    Local includes are inlined (so NVRTC needs no include path) and the dtype is fixed by two
    defines in front.
    """
    ctype, suffix = DTYPE_SUFFIX[str(dtype)]
    header = f"#define GPUNN_REAL {ctype}\n#define GPUNN_NAME(base) gpunn_##base##_{suffix}\n"
    body = _inline_includes((KERNEL_DIR / f"{module}.cu").read_text(), set())
    return header + body


@lru_cache(maxsize=None)
def header_codes(header, prefix="GPUNN_"):
    """``{name: code}`` of the ``#define <prefix><NAME> <int>`` lines of ``kernels/<header>``,
    names lowercased, in file order: the one definition of codes the kernels switch on and the
    host passes (activation codes from ``activations.cuh``, control slots from ``step.cuh``).

    Args:
        header: a file name in the kernels folder, e.g. ``"activations.cuh"``.
        prefix: what the macro names start with; the rest, lowercased, is the name.
    """
    text = (KERNEL_DIR / header).read_text()
    pattern = rf"^#define\s+{re.escape(prefix)}(\w+)\s+(-?\d+)\b"
    return {name.lower(): int(code) for name, code in re.findall(pattern, text, re.M)}


def activation_codes():
    """``{activation name: kernel code}`` from ``activations.cuh`` (its ``GPUNN_<NAME>``
    defines): the activations gpunn has. A new activation is a define there, its two
    ``switch`` cases, its Numba twin and a reference row; nothing on the host lists them."""
    return dict(header_codes("activations.cuh"))


def from_z_activations():
    """Names of the activations whose backward reads the pre-activation z instead of the
    output (codes from ``ACT_FROM_Z_BEGIN`` on in ``activations.cuh``): a layer of one keeps z.
    """
    begin = header_codes("activations.cuh", prefix="ACT_")["from_z_begin"]
    return frozenset(name for name, code in activation_codes().items() if code >= begin)

"""The import arrows of gpunn point one way (DESIGN.md, "Host side"): no circles, and nothing
imports a module of a higher layer, function-level imports included.

Every ``import`` statement of every module under ``gpunn/`` and ``kernels/`` (installed as
``gpunn.kernels``) is read with ``ast``, wherever it sits (module level, in a function, under
``if TYPE_CHECKING``). The implicit import of a parent package (``gpunn.comm.mpi`` runs
``gpunn/comm/__init__.py`` first) is not an arrow: Python's packages always do that. A package
named in ``from PACKAGE import submodule`` is one.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# DESIGN.md's order, top (faces) to bottom (kernels). A module may import its own layer or
# lower ones. A new module gets a row here (the longest matching prefix wins), and with it a
# place in the order. The leading underscore modules are leaf utilities everyone may use.
LAYERS = [
    ("face", ["gpunn", "gpunn.__main__", "gpunn.cli", "gpunn.cli_data", "gpunn.cli_stream",
              "gpunn.sklearn",
              "gpunn.bench", "gpunn.gradcheck", "gpunn.datasets", "gpunn.tabular",
              "gpunn.tabular_read",
              "gpunn.export", "gpunn.validation", "gpunn.comm_nccl", "gpunn.fileio",
              "gpunn.checkpoint_write", "gpunn.checkpoint_content", "gpunn.resume"]),
    ("train", ["gpunn.train"]),
    ("hooks/callbacks", ["gpunn.hooks", "gpunn.callbacks", "gpunn.progress", "gpunn.progressbar",
                         "gpunn.tensorboard"]),
    ("checkpoint", ["gpunn.checkpoint", "gpunn.history"]),
    ("step", ["gpunn.staging", "gpunn.step"]),
    ("model", ["gpunn.model", "gpunn.sharing"]),
    ("layers/losses/optim/comm", ["gpunn.layers", "gpunn.blocks", "gpunn.layernorm",
                                  "gpunn.losses", "gpunn.optim",
                                  "gpunn.schedules", "gpunn.comm", "gpunn.weights"]),
    ("params/control", ["gpunn.params", "gpunn.control", "gpunn.workspace"]),
    ("backends", ["gpunn.backends"]),
    ("utilities", ["gpunn._checks", "gpunn._compat", "gpunn._environment", "gpunn._files",
                   "gpunn.dlpack", "gpunn.sources", "gpunn.row_views"]),
    ("kernels", ["gpunn.kernels"]),
]

# Arrows that break the order today, each owned by the helper rewriting those modules.
KNOWN_UPWARD = set()


def module_files():
    """``{dotted name: path}`` of every gpunn module, kernels included."""
    found = {}
    for top, prefix in ((ROOT / "gpunn", ["gpunn"]), (ROOT / "kernels", ["gpunn", "kernels"])):
        for path in sorted(top.rglob("*.py")):
            parts = prefix + list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = module_files()


def owner(name):
    """The gpunn module that ``name`` (a module or a name inside one) resolves to, or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_in(source, name, is_package=False):
    """The gpunn modules that the source of module ``name`` imports, anywhere in it."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(owner(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            # "from gpunn.bench import harness" imports the module gpunn.bench.harness, and
            # the package gpunn.bench too: its __init__ runs and binds the name, so what that
            # __init__ imports counts (a registry there closed circles with its sections).
            # The root package gpunn is the public face every gpunn module runs first.
            if base != "gpunn":
                found.add(owner(base))
            found.update(owner(f"{base}.{alias.name}") for alias in node.names
                         if f"{base}.{alias.name}" in MODULES)
    found.discard(None)
    found.discard(name)
    return found


def imports_of(name):
    """The gpunn modules the module ``name`` imports."""
    path = MODULES[name]
    return imports_in(path.read_text(), name, path.name == "__init__.py")


GRAPH = {name: imports_of(name) for name in MODULES}


def layer(name):
    """Index of ``name``'s layer in LAYERS (0 = top), from the longest matching prefix."""
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def circles(graph):
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


PARSER_CASE = """
import numpy as np
import gpunn.losses
from gpunn import callbacks
from gpunn.layers import Dense
from . import step
from .backends import get_backend
if np:
    from gpunn.optim import SGD

def late():
    from gpunn.schedules import Constant

class Lazy:
    def method(self):
        import gpunn.comm.mpi
"""


def test_the_parser_sees_every_kind_of_import():
    """The checks below are only as good as the parser: module-level, conditional, function-
    and method-level, relative and ``from package import module`` arrows are all found."""
    assert imports_in(PARSER_CASE, "gpunn.train") == {
        "gpunn.losses", "gpunn.callbacks", "gpunn.layers", "gpunn.step", "gpunn.backends",
        "gpunn.optim", "gpunn.schedules", "gpunn.comm.mpi"}
    assert "gpunn.kernels.config" in GRAPH["gpunn.kernels.activations"]  # relative, kernels/
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert circles(GRAPH) == []


def test_every_module_has_a_layer():
    missing = sorted(name for name in MODULES if layer(name) is None)
    assert missing == [], f"give these modules a row in LAYERS: {missing}"


def upward_arrows():
    return sorted((a, b) for a, targets in GRAPH.items() for b in targets
                  if None not in (layer(a), layer(b)) and layer(b) < layer(a))


def test_no_upward_arrows():
    unexpected = [arrow for arrow in upward_arrows() if arrow not in KNOWN_UPWARD]
    named = [f"{a} ({LAYERS[layer(a)][0]}) -> {b} ({LAYERS[layer(b)][0]})" for a, b in unexpected]
    assert named == []


def test_known_upward_arrows_still_exist():
    """A fixed arrow must leave KNOWN_UPWARD, so the list cannot hide a new one."""
    assert KNOWN_UPWARD - set(upward_arrows()) == set(), "fixed: delete them from KNOWN_UPWARD"


@pytest.mark.parametrize("old, new, names", [
    ("gpunn.validation", "gpunn._checks", ["check_choice", "check_int", "as_host_array"]),
    ("gpunn.comm_nccl", "gpunn.comm.nccl", ["NCCLComm", "choose_device"]),
    ("gpunn.fileio", "gpunn._files", ["atomic_write", "check_target", "remove_stale_temps"]),
    ("gpunn.checkpoint_write", "gpunn.checkpoint", ["CheckpointError", "crc", "text_crc"]),
    ("gpunn.checkpoint_content", "gpunn.checkpoint.format", ["check_index", "short"]),
    ("gpunn.resume", "gpunn.checkpoint.resume", ["check_checkpointing", "resume"])],
    ids=["validation-is-now-_checks", "comm_nccl-is-now-comm.nccl", "fileio-is-now-_files",
         "checkpoint_write-is-now-checkpoint", "checkpoint_content-is-now-checkpoint.format",
         "resume-is-now-checkpoint.resume"])
def test_renamed_modules_keep_a_deprecated_alias(old, new, names):
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        alias = importlib.import_module(old)
    target = importlib.import_module(new)
    assert all(getattr(alias, name) is getattr(target, name) for name in names)


def test_every_package_is_installed():
    """setup.cfg lists packages by hand (``find:`` cannot also map ``kernels/`` to
    ``gpunn.kernels``): a package folder missing there would be missing from every wheel."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    folders = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert folders - listed == set()


def test_nothing_imports_a_deprecated_alias():
    aliases = {"gpunn.validation", "gpunn.comm_nccl", "gpunn.fileio", "gpunn.checkpoint_write",
               "gpunn.checkpoint_content", "gpunn.resume"}
    assert sorted((a, b) for a, targets in GRAPH.items() for b in targets & aliases) == []

"""Checks of what a checkpoint's JSON header claims, made before any tensor data is read.

Kept apart from :mod:`gpunn.checkpoint` (the reader and writer) so each stays short. Nothing
here allocates more than the header itself: the architecture is checked as a list of layer
sizes and its parameter layout computed from them, never built.
"""

import numbers

import numpy as np

from gpunn._checks import check_int
from gpunn.backends import check_dtype
from gpunn.backends.gemm_precision import check_precision
from gpunn.checkpoint_write import BIT_GENERATORS, CheckpointError
from gpunn.history import History
from gpunn.layers import Dense, param_entries
from gpunn.losses import check_output
from gpunn.optim import OPTIMIZERS
from gpunn.params import layout
from gpunn.schedules import get_schedule

_CONFIG_KEYS = ["dtype", "layers", "output", "seed"]  # and "precision" (optional: fp32)
_DTYPES = {"F32": np.dtype(np.float32), "F64": np.dtype(np.float64), "I64": np.dtype(np.int64)}
_HISTORY_LISTS = ("cost", "seconds", "samples_per_second", "lr", "val_loss", "val_accuracy",
                  "step_cost")
SHOWN = 8  # names listed in a message at most; the rest are counted


def _error(message):
    return CheckpointError(message)


def short(value, limit=300):
    """``repr``-like text of ``value`` cut to ``limit`` characters."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def short_list(names):
    """The sorted names (or the type of a non-collection) for a message, at most SHOWN of them."""
    if not isinstance(names, (dict, list, tuple, set)):
        return type(names).__name__
    shown = sorted((short(n, 40) for n in names), key=str)
    if len(shown) <= SHOWN:
        return str(shown)
    return f"{shown[:SHOWN]} and {len(shown) - SHOWN} more ({len(shown)} in all)"


def check_header(header, format_name, version):
    """Raise CheckpointError unless ``header`` is a dict of the format and version given."""
    if not isinstance(header, dict) or header.get("format") != format_name:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise _error(f"expected format {format_name!r}, got {short(got, 60)!r}")
    if header.get("version") != version:
        raise _error(f"expected {format_name} version {version}, "
                     f"got version {short(header.get('version'), 60)!r}")
    for key in ("model", "layout"):
        if key not in header:
            raise _error(f"header: expected a {key!r} entry, got none")


def normalized_config(header):
    """``(config, n)``: the header's architecture checked and normalized, and the length of
    its flat parameter buffer; the layout stored must be the one the architecture gives."""
    config = header["model"]
    if not isinstance(config, dict) or sorted(set(config) - {"precision"}) != _CONFIG_KEYS:
        got = short_list(config)
        raise _error(f"model: expected a config with keys {_CONFIG_KEYS}, got {got}")
    if not isinstance(config["layers"], list) or not config["layers"]:
        raise _error(f"model: expected a non-empty list of layers, got "
                     f"{short(config['layers'], 60)}")
    if not isinstance(config["dtype"], str):
        raise _error(f"model: expected dtype 'float32' or 'float64', got "
                     f"{short(config['dtype'], 60)}")
    layers = []
    for i, spec in enumerate(config["layers"]):
        if not isinstance(spec, dict):
            raise _error(f"model: layers[{i}]: expected a dict, got {type(spec).__name__}")
        layers.append(Dense(**spec))
    for i in range(1, len(layers)):
        if layers[i].n_in != layers[i - 1].n_out:
            raise _error(f"model: layers[{i}].n_in: expected {layers[i - 1].n_out}, "
                         f"got {layers[i].n_in}")
    ranges = layout(param_entries(layers))
    if header["layout"] != [list(r) for r in ranges]:
        raise _error(f"layout: expected {short(ranges)} for this architecture, "
                     f"got {short(header['layout'])}")
    normalized = {"layers": [layer.config() for layer in layers],
                  "output": check_output(config["output"]),
                  "dtype": check_dtype(config["dtype"]).name,
                  "seed": check_int("seed", config["seed"], low=0),
                  "precision": check_precision(config.get("precision", "fp32"))}
    return normalized, ranges[-1][2]


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_history(saved):
    """The keyword arguments of a :class:`History`, each of the type fit writes."""
    fields = sorted(History.__dataclass_fields__)
    if not isinstance(saved, dict) or sorted(saved) != fields:
        raise _error(f"history: expected the fields {fields}, got {short_list(saved)}")
    for key in _HISTORY_LISTS + ("epoch",):
        value = saved[key]
        number = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if key == "epoch" \
            else _is_number
        if not isinstance(value, list) or not all(number(v) for v in value):
            raise _error(f"history.{key}: expected a list of "
                         f"{'integers' if key == 'epoch' else 'numbers'}, got "
                         f"{short(value, 60)}")
    for key in ("skipped_steps", "batch_size", "n_samples"):
        check_int(f"history.{key}", saved[key], low=0)
    if not isinstance(saved["backend"], str):
        raise _error(f"history.backend: expected a name, got {type(saved['backend']).__name__}")
    return saved


def check_rng_state(state):
    """``state`` if a bit generator of :data:`BIT_GENERATORS` accepts it unchanged, or None."""
    if state is None:
        return None
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise _error(f"rng_state: expected a bit generator in {list(BIT_GENERATORS)}, "
                     f"got {short(name, 60)!r}")
    try:
        bit_generator = getattr(np.random, name)()
        bit_generator.state = state
        np.random.Generator(bit_generator).random()
    except Exception as exc:  # noqa: BLE001 - NumPy raises many kinds for a bad state
        raise _error(f"rng_state: not a valid {name} state ({type(exc).__name__}: "
                     f"{short(exc, 200)})") from None
    bit_generator.state = state  # the draw above advanced it; compare what setting gives
    if _plain(bit_generator.state) != _plain(state):
        raise _error(f"rng_state: {name} does not keep the saved state as given (values out "
                     "of range)")
    return state


def _plain(value):
    """Nested state with arrays as lists, for comparing."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def checked_optimizer(saved, dtype):
    """``(optimizer with the saved hyperparameters, state_dict without arrays)`` or Nones."""
    if saved is None:
        return None, None
    if not isinstance(saved, dict) or saved.get("name") not in OPTIMIZERS:
        got = saved.get("name") if isinstance(saved, dict) else type(saved).__name__
        raise _error(f"optimizer: expected a name in {sorted(OPTIMIZERS)}, "
                              f"got {str(got)[:60]!r}")
    state_dict = dict(saved)
    names = state_dict.pop("state_names", None)
    hyper = state_dict.get("hyperparameters")
    optimizer = OPTIMIZERS[saved["name"]](lr=state_dict.get("base_lr"),
                                          **(hyper if isinstance(hyper, dict) else {}))
    optimizer.lr = state_dict.get("lr")
    optimizer.check_dtype(dtype)
    t = check_int("optimizer t", state_dict.get("t"), low=0)
    expected = sorted(optimizer.state_names) if t else []
    if names != expected:
        raise _error(f"optimizer: expected state {expected} after {t} steps, "
                              f"got {short_list(names)}")
    state_dict["state"] = dict.fromkeys(expected)
    return optimizer, state_dict


def check_index(index, expected):
    """The container holds exactly ``expected``, each 1-D of the expected dtype and length."""
    if sorted(index) != sorted(expected):
        raise _error(f"expected entries {sorted(expected)}, got {short_list(index)}")
    for name, (dtype, shape) in expected.items():
        got_dtype, got_shape = index[name]
        if _DTYPES.get(got_dtype) != dtype or got_shape != shape or len(shape) != 1:
            raise _error(f"entry {name!r}: expected {dtype} of shape {shape}, got "
                                  f"{str(got_dtype)[:10]} of shape {got_shape}")


def checked_schedule(config):
    """The saved schedule (a config dict) built, or None."""
    if config is None:
        return None
    if not isinstance(config, dict):
        raise _error(f"schedule: expected a config dict, got {type(config).__name__}")
    return get_schedule(config)


def checked_extra(extra):
    """The saved ``extra`` metadata: a dict."""
    if not isinstance(extra, dict):
        raise _error(f"extra: expected a JSON object, got {type(extra).__name__}")
    return extra

"""The gpunn checkpoint format 2: the JSON header, part by part, each written and checked side
by side, and the tensors each part implies.

A header is ``{"format", "version", "model", "layout", "epoch", "extra", "crc32"}`` plus the
optional parts ``optimizer``, ``schedule``, ``history`` and ``rng_state``; tensors are
``params``, ``optimizer.<state>``, ``fit.order`` and, written mid-epoch, ``fit.step_totals``
and ``fit.step_status``. Checking never builds more than the
header itself holds: the architecture is checked as a list of layer sizes and its parameter
layout computed from them; every number a header claims is bounded before it is used.
"""

import json
import math
import numbers

import numpy as np

from gpunn._checks import check_int
from gpunn.backends import check_dtype
from gpunn.backends.gemm_precision import check_precision
from gpunn.checkpoint.container import CheckpointError
from gpunn.history import History
from gpunn.layers import Dense, param_entries
from gpunn.losses import check_output
from gpunn.optim import OPTIMIZERS
from gpunn.optim.base import saved_hyperparameters
from gpunn.params import layout, pack
from gpunn.schedules import get_schedule

FORMAT, VERSION = "gpunn-checkpoint", 2
# Bit generators whose state is plain integers / integer arrays (JSON after tolist()).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")
SHOWN = 8  # names listed in a message at most; the rest are counted
# Counts a header may claim (epochs, steps, rows, batch sizes): exact as a float64 and far
# inside an int64 (the device's step counter), so no claim overflows after a model changed.
MAX_COUNT = 2 ** 53
_DTYPES = {"F32": np.dtype(np.float32), "F64": np.dtype(np.float64), "I64": np.dtype(np.int64)}


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


def json_checked(name, value):
    """``value`` if JSON can store it, else TypeError naming ``name``."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected JSON-serializable values, got {exc}") from None
    return value


# --- format and version -----------------------------------------------------------------------

def check_format(header):
    """Raise CheckpointError unless ``header`` is a dict of this format and version."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"expected format {FORMAT!r}, got {short(got, 60)!r}")
    if header.get("version") != VERSION:
        raise CheckpointError(f"expected {FORMAT} version {VERSION}, "
                              f"got version {short(header.get('version'), 60)!r}")
    for key in ("model", "layout"):
        if key not in header:
            raise CheckpointError(f"header: expected a {key!r} entry, got none")


# --- part "model" + "layout" + tensor "params": the architecture and its parameters ----------

_CONFIG_KEYS = ["dtype", "layers", "output", "seed"]  # and "precision" (optional: fp32)


def model_part(model):
    """``(header entries, arrays)`` of a model: its config, layout and flat parameters."""
    return model_header(model), {"params": model.params.host()}


def model_header(model):
    """The header entries of a model: its config and layout."""
    return {"format": FORMAT, "version": VERSION, "model": model.config(),
            "layout": [list(r) for r in model.param_ranges]}


def legacy_layout(layers):
    """The layout of files written before decayed weights came first: each layer's blocks
    together, in layer order (``W0, b0, W1, b1, ...``). Such files load converted."""
    return pack([(name, size) for name, size, _ in param_entries(layers)])


def checked_model(header):
    """``(config, saved, ranges)``: the header's architecture checked and normalized, the
    layout of the file's flat arrays and the one the architecture gives today; the saved one
    must be today's or :func:`legacy_layout` (convert with :func:`gpunn.params.relayout`)."""
    config = header["model"]
    if not isinstance(config, dict) or sorted(set(config) - {"precision"}) != _CONFIG_KEYS:
        got = short_list(config)
        raise CheckpointError(f"model: expected a config with keys {_CONFIG_KEYS}, got {got}")
    if not isinstance(config["layers"], list) or not config["layers"]:
        raise CheckpointError(f"model: expected a non-empty list of layers, got "
                              f"{short(config['layers'], 60)}")
    if not isinstance(config["dtype"], str):
        raise CheckpointError(f"model: expected dtype 'float32' or 'float64', got "
                              f"{short(config['dtype'], 60)}")
    layers = []
    for i, spec in enumerate(config["layers"]):
        if not isinstance(spec, dict):
            raise CheckpointError(f"model: layers[{i}]: expected a dict, got "
                                  f"{type(spec).__name__}")
        layers.append(Dense(**spec))
    for i in range(1, len(layers)):
        if layers[i].n_in != layers[i - 1].n_out:
            raise CheckpointError(f"model: layers[{i}].n_in: expected {layers[i - 1].n_out}, "
                                  f"got {layers[i].n_in}")
    ranges = layout(param_entries(layers))
    saved = next((known for known in (ranges, legacy_layout(layers))
                  if header["layout"] == [list(r) for r in known]), None)
    if saved is None:
        raise CheckpointError(f"layout: expected {short(ranges)} for this architecture, "
                              f"got {short(header['layout'])}")
    normalized = {"layers": [layer.config() for layer in layers],
                  "output": check_output(config["output"]),
                  "dtype": check_dtype(config["dtype"]).name,
                  "seed": check_int("seed", config["seed"], low=0),
                  "precision": check_precision(config.get("precision", "fp32"))}
    return normalized, saved, ranges


# --- part "optimizer" + tensors "optimizer.<state>" -------------------------------------------

def optimizer_part(optimizer):
    """``(header value, arrays)`` of an optimizer: scalars and hyperparameters, state arrays."""
    state_dict = optimizer.state_dict()
    state = state_dict.pop("state")
    state_dict["state_names"] = sorted(state)
    return json_checked("optimizer", state_dict), {f"optimizer.{k}": v for k, v in state.items()}


def checked_optimizer(saved, dtype):
    """``(optimizer with the saved hyperparameters, state_dict without arrays)`` or Nones."""
    if saved is None:
        return None, None
    if not isinstance(saved, dict) or saved.get("name") not in OPTIMIZERS:
        got = saved.get("name") if isinstance(saved, dict) else type(saved).__name__
        raise CheckpointError(f"optimizer: expected a name in {sorted(OPTIMIZERS)}, "
                              f"got {str(got)[:60]!r}")
    state_dict = dict(saved)
    names = state_dict.pop("state_names", None)
    hyper = state_dict.get("hyperparameters")
    cls = OPTIMIZERS[saved["name"]]
    hyper = saved_hyperparameters(cls, hyper) if isinstance(hyper, dict) else {}
    optimizer = cls(lr=state_dict.get("base_lr"), **hyper)
    optimizer.lr = state_dict.get("lr")
    optimizer.check_dtype(dtype)
    t = check_int("optimizer t", state_dict.get("t"), low=0, high=MAX_COUNT)
    expected = sorted(optimizer.state_names) if t else []
    if names != expected:
        raise CheckpointError(f"optimizer: expected state {expected} after {t} steps, "
                              f"got {short_list(names)}")
    state_dict["state"] = dict.fromkeys(expected)
    return optimizer, state_dict


# --- part "schedule" ------------------------------------------------------------------------

def schedule_part(schedule):
    """The header value of a schedule: its config."""
    return get_schedule(schedule).config()


def checked_schedule(config):
    """The saved schedule (a config dict) built, or None."""
    if config is None:
        return None
    if not isinstance(config, dict):
        raise CheckpointError(f"schedule: expected a config dict, got {type(config).__name__}")
    try:
        return get_schedule(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"schedule: {exc}") from None


# --- part "history" -------------------------------------------------------------------------

def history_part(history):
    """The header value of a :class:`~gpunn.History`: its fields."""
    return json_checked("history", history.as_dict())


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def checked_history(saved):
    """The saved :class:`~gpunn.History`, each field of the type fit writes, or None."""
    if saved is None:
        return None
    fields = sorted(History.__dataclass_fields__)
    if isinstance(saved, dict):
        saved = History.upgrade(saved)  # files from before "cost" became "loss"
    if not isinstance(saved, dict) or sorted(saved) != fields:
        raise CheckpointError(f"history: expected the fields {fields}, got {short_list(saved)}")
    for key in History.lists():
        value, number = saved[key], _is_int if key == "epoch" else _is_number
        if not isinstance(value, list) or not all(number(v) for v in value):
            raise CheckpointError(f"history.{key}: expected a list of "
                                  f"{'integers' if key == 'epoch' else 'numbers'}, got "
                                  f"{short(value, 60)}")
    for key in ("skipped_steps", "batch_size", "n_samples"):
        check_int(f"history.{key}", saved[key], low=0, high=MAX_COUNT)
    weight_sum = saved["weight_sum"]
    if weight_sum is not None and not (_is_number(weight_sum) and 0 < weight_sum < math.inf):
        raise CheckpointError(f"history.weight_sum: expected None or a positive finite number, "
                              f"got {short(weight_sum, 60)}")
    if not isinstance(saved["backend"], str):
        raise CheckpointError(f"history.backend: expected a name, got "
                              f"{type(saved['backend']).__name__}")
    return History(**saved)


# --- part "rng_state" -------------------------------------------------------------------------

def rng_part(rng):
    """The header value of the shuffling generator: its bit generator's state."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    state = rng.bit_generator.state
    if state["bit_generator"] not in BIT_GENERATORS:
        raise ValueError(f"rng: expected a bit generator in {list(BIT_GENERATORS)}, "
                         f"got {state['bit_generator']!r}")
    return json.loads(json.dumps(state, default=lambda a: np.asarray(a).tolist()))


def checked_rng_state(state):
    """``state`` if a bit generator of :data:`BIT_GENERATORS` accepts it unchanged, or None."""
    if state is None:
        return None
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise CheckpointError(f"rng_state: expected a bit generator in {list(BIT_GENERATORS)}, "
                              f"got {short(name, 60)!r}")
    try:
        bit_generator = getattr(np.random, name)()
        bit_generator.state = state
        np.random.Generator(bit_generator).random()
    except Exception as exc:  # noqa: BLE001 - NumPy raises many kinds for a bad state
        raise CheckpointError(f"rng_state: not a valid {name} state ({type(exc).__name__}: "
                              f"{short(exc, 200)})") from None
    bit_generator.state = state  # the draw above advanced it; compare what setting gives
    if _plain(bit_generator.state) != _plain(state):
        raise CheckpointError(f"rng_state: {name} does not keep the saved state as given "
                              "(values out of range)")
    return state


def _plain(value):
    """Nested state with arrays as lists, for comparing."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


# --- parts "epoch", "extra" and tensor "fit.order" --------------------------------------------

def checked_epoch(epoch):
    """Epochs completed, an integer in [0, MAX_COUNT]."""
    return check_int("epoch", epoch, low=0, high=MAX_COUNT)


def checked_extra(extra):
    """The saved ``extra`` metadata: a dict."""
    if not isinstance(extra, dict):
        raise CheckpointError(f"extra: expected a JSON object, got {type(extra).__name__}")
    return extra


def order_part(order):
    """The tensor of the shuffle's row order."""
    return np.array(order, dtype=np.int64).reshape(-1)


# --- tensors "fit.step_totals", "fit.step_status": a checkpoint written mid-epoch ------------

def steps_part(totals, status):
    """The records of the steps done in the epoch under way: each one's loss total (float64;
    NaN for a step whose loss was not finite) and status."""
    return {"fit.step_totals": np.array(totals, dtype=np.float64).reshape(-1),
            "fit.step_status": np.array(status, dtype=np.int64).reshape(-1)}


def checked_steps(arrays, statuses):
    """``(totals, status)`` of a mid-epoch checkpoint, or None; statuses among ``statuses``."""
    totals, status = arrays.get("fit.step_totals"), arrays.get("fit.step_status")
    if totals is None:
        return None
    if not np.isin(status, statuses).all():
        raise CheckpointError(f"fit.step_status: expected step statuses {sorted(statuses)}, "
                              f"got {short(sorted(set(status.tolist())))}")
    return totals, status


# --- tensors ----------------------------------------------------------------------------------

def expected_entries(dtype, size, state_dict, index):
    """``{name: (dtype, shape)}`` of the tensors the checked header implies."""
    expected = {"params": (dtype, (size,))}
    for key in [] if state_dict is None else state_dict["state"]:
        expected[f"optimizer.{key}"] = (dtype, (size,))
    if "fit.order" in index:
        expected["fit.order"] = (np.dtype(np.int64), index["fit.order"][1])
    if "fit.step_totals" in index or "fit.step_status" in index:  # both, of one length
        steps = index.get("fit.step_totals", index.get("fit.step_status"))[1]
        expected["fit.step_totals"] = (np.dtype(np.float64), steps)
        expected["fit.step_status"] = (np.dtype(np.int64), steps)
    return expected


def check_index(index, expected):
    """The container holds exactly ``expected``, each 1-D of the expected dtype and length."""
    if sorted(index) != sorted(expected):
        raise CheckpointError(f"expected entries {sorted(expected)}, got {short_list(index)}")
    for name, (dtype, shape) in expected.items():
        got_dtype, got_shape = index[name]
        known = _DTYPES.get(got_dtype)  # None compares equal to float64 (np.dtype(None))
        if known is None or known != dtype or got_shape != shape or len(shape) != 1:
            raise CheckpointError(f"entry {name!r}: expected {dtype} of shape {shape}, got "
                                  f"{str(got_dtype)[:10]} of shape {got_shape}")

"""Checkpoints: a model, its optimizer, schedule, history, epoch and shuffling RNG in one .npz.

The file is a plain (uncompressed) NumPy ``.npz``: an entry ``header`` holds UTF-8 JSON as a
``uint8`` array (format name and version, architecture, optimizer scalars and hyperparameters,
schedule config, history, epoch, RNG state, extra metadata); the other entries are 1-D host
arrays (``params``, ``optimizer.<state>``, ``fit.order``). Nothing is pickled: files are read
with ``allow_pickle=False``. Writes go to a temporary file in the same folder, flushed and
fsynced, then renamed over the target, so a crash mid-save leaves the previous file intact.
Every problem found while reading raises :class:`CheckpointError` naming the file and what is
wrong. Arrays are stored on the host, so a checkpoint written on one backend loads on any.
"""

import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from gpunn.history import History
from gpunn.model import Sequential
from gpunn.optim import OPTIMIZERS, Optimizer
from gpunn.schedules import Schedule, get_schedule
from gpunn.validation import check_int

FORMAT, VERSION = "gpunn-checkpoint", 1
# Bit generators whose state is plain integers / integer arrays (JSON after tolist()).
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error,
                UnicodeDecodeError)


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit: the message names the file and why."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns; absent parts are None.

    Attributes:
        model: a :class:`~gpunn.Sequential` on the current backend with the saved parameters.
        optimizer: the optimizer with its state and step count, or None.
        schedule: the learning-rate schedule, or None.
        history: the :class:`~gpunn.History` so far, or None.
        epoch: epochs completed when saved (0 if not given).
        rng_state: ``bit_generator.state`` of the shuffling generator (a dict), or None.
        order: the row order of the last shuffle (int64 array), or None.
        extra: the ``**extra`` metadata given to :func:`save_checkpoint`.
    """

    model: Sequential
    optimizer: Optimizer = None
    schedule: Schedule = None
    history: History = None
    epoch: int = 0
    rng_state: dict = None
    order: np.ndarray = None
    extra: dict = field(default_factory=dict)

    def rng(self):
        """A ``numpy.random.Generator`` in the saved state, or None if none was saved."""
        if self.rng_state is None:
            return None
        bit_generator = getattr(np.random, self.rng_state["bit_generator"])()
        bit_generator.state = self.rng_state
        return np.random.Generator(bit_generator)


def save_checkpoint(path, model, optimizer=None, schedule=None, history=None, *, epoch=0,
                    rng=None, order=None, **extra):
    """Write ``model`` and any training state given to ``path`` atomically.

    Args:
        path: target file (conventionally ``*.npz``); its folder must exist.
        model: a :class:`~gpunn.Sequential`.
        optimizer: an :class:`~gpunn.optim.Optimizer` (state, step count, hyperparameters).
        schedule: a schedule (its config is stored).
        history: a :class:`~gpunn.History`.
        epoch: epochs completed (>= 0).
        rng: the shuffling ``numpy.random.Generator`` (its bit generator's state is stored).
        order: the current row order of the shuffle (1-D integers).
        **extra: JSON-serializable metadata, returned as ``Checkpoint.extra``.

    Returns:
        ``path``.
    """
    header, arrays = _model_part(model)
    header.update(epoch=check_int("epoch", epoch, low=0), extra=_json_checked("extra", extra))
    if optimizer is not None:
        header["optimizer"], state = _optimizer_part(optimizer)
        arrays.update({f"optimizer.{k}": v for k, v in state.items()})
    if schedule is not None:
        header["schedule"] = get_schedule(schedule).config()
    if history is not None:
        if not isinstance(history, History):
            raise TypeError(f"history: expected a History, got {type(history).__name__}")
        header["history"] = _json_checked("history", history.as_dict())
    if rng is not None:
        header["rng_state"] = _rng_state(rng)
    if order is not None:
        arrays["fit.order"] = np.asarray(order, dtype=np.int64).reshape(-1)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    _atomic_write(os.fspath(path), arrays)
    return path


def load_checkpoint(path, model=None):
    """Read a checkpoint written by :func:`save_checkpoint` (or ``model.save``).

    Args:
        path: the file.
        model: if given, the saved parameters are loaded into it (its architecture and dtype
            must match), else a new model is built on the current backend.

    Returns:
        A :class:`Checkpoint`.

    Raises:
        CheckpointError: unreadable, truncated or corrupted file, another format or version,
            missing or unexpected entries, wrong shapes or dtypes, a different architecture.
    """
    path = os.fspath(path)
    try:
        return _build(*_read(path), model)
    except FileNotFoundError:
        raise
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path}: invalid checkpoint content "
                              f"({type(exc).__name__}: {exc})") from None


def load(path):
    """The model saved in ``path`` (by ``model.save`` or :func:`save_checkpoint`)."""
    return load_checkpoint(path).model


# --- writing ---------------------------------------------------------------------------------

def _model_part(model):
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected a Sequential or MLP, got {type(model).__name__}")
    header = {"format": FORMAT, "version": VERSION, "model": model.config(),
              "layout": [list(r) for r in model.param_ranges]}
    return header, {"params": np.array(model.backend.to_numpy(model.flat_params))}


def _optimizer_part(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected an Optimizer, got {type(optimizer).__name__}")
    state_dict = optimizer.state_dict()
    state = state_dict.pop("state")
    state_dict["state_names"] = sorted(state)
    return _json_checked("optimizer", state_dict), state


def _rng_state(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    state = rng.bit_generator.state
    if state["bit_generator"] not in _BIT_GENERATORS:
        raise ValueError(f"rng: expected a bit generator in {list(_BIT_GENERATORS)}, "
                         f"got {state['bit_generator']!r}")
    return json.loads(json.dumps(state, default=lambda a: np.asarray(a).tolist()))


def _json_checked(name, value):
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected JSON-serializable values, got {exc}") from None
    return value


def _write_npz(file, arrays):
    """The writer :func:`_atomic_write` calls (a seam for crash tests)."""
    np.savez(file, **arrays)


def _atomic_write(path, arrays):
    """Write to a temporary file beside ``path``, fsync it, rename it over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            _write_npz(file, arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- reading ---------------------------------------------------------------------------------

def _read(path):
    """``(header dict, {name: array})`` of a gpunn checkpoint file; every entry read in full."""
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise CheckpointError("expected a .npz archive, got a single .npy array")
        with npz:
            arrays = {name: npz[name] for name in npz.files}  # reading checks each CRC
    except (CheckpointError, FileNotFoundError):
        raise
    except _READ_ERRORS as exc:
        raise CheckpointError(f"not a readable gpunn checkpoint "
                              f"({type(exc).__name__}: {exc})") from None
    raw = arrays.pop("header", None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"expected a 'header' entry of uint8 JSON, got "
                              f"{'none' if raw is None else f'{raw.dtype} {raw.shape}'}")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"header is not UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"expected format {FORMAT!r}, got {got!r}")
    if header.get("version") != VERSION:
        raise CheckpointError(f"expected {FORMAT} version {VERSION}, "
                              f"got version {header.get('version')!r}")
    _check_entries(path, header, arrays)
    return header, arrays


def _check_entries(path, header, arrays):
    """Exactly the entries the header implies, each 1-D of the expected length and dtype."""
    dtype, size = np.dtype(header["model"]["dtype"]), header["layout"][-1][2]
    expected = {"params": (dtype, size)}
    if header.get("optimizer") is not None:
        names = header["optimizer"]["state_names"] if header["optimizer"]["t"] else []
        expected.update({f"optimizer.{k}": (dtype, size) for k in names})
    if "fit.order" in arrays:
        expected["fit.order"] = (np.dtype(np.int64), arrays["fit.order"].size)
    if sorted(arrays) != sorted(expected):
        raise CheckpointError(f"expected entries {sorted(expected)} besides 'header', "
                              f"got {sorted(arrays)}")
    for name, (want_dtype, want_size) in expected.items():
        array = arrays[name]
        if array.dtype != want_dtype or array.shape != (want_size,):
            raise CheckpointError(f"entry {name!r}: expected {want_dtype} of shape "
                                  f"({want_size},), got {array.dtype} of shape {array.shape}")


def _build(header, arrays, model):
    """The :class:`Checkpoint` of checked entries; parameters go into ``model`` if given."""
    saved = Sequential.from_config(header["model"])
    if [list(r) for r in saved.param_ranges] != header["layout"]:
        raise CheckpointError(f"layout: expected {saved.param_ranges} for this architecture, "
                              f"got {header['layout']}")
    if model is None:
        model = saved
    elif not isinstance(model, Sequential) or _architecture(model) != _architecture(saved):
        got = _architecture(model) if isinstance(model, Sequential) else type(model).__name__
        raise CheckpointError(f"model: expected the saved architecture {_architecture(saved)}, "
                              f"got {got}")
    optimizer = None
    if header.get("optimizer") is not None:
        state_dict = dict(header["optimizer"])
        names = state_dict.pop("state_names")
        state_dict["state"] = {k: arrays[f"optimizer.{k}"] for k in names if state_dict["t"]}
        optimizer = OPTIMIZERS[state_dict["name"]](lr=state_dict["base_lr"])
        optimizer.load_state_dict(state_dict, model=model)
    schedule = header.get("schedule")
    history = header.get("history")
    rng_state = header.get("rng_state")
    if rng_state is not None and rng_state.get("bit_generator") not in _BIT_GENERATORS:
        raise CheckpointError(f"rng_state: expected a bit generator in {list(_BIT_GENERATORS)}, "
                              f"got {rng_state.get('bit_generator')!r}")
    model.flat_params[...] = model.backend.asarray(arrays["params"])  # last: all checked
    return Checkpoint(model=model, optimizer=optimizer,
                      schedule=None if schedule is None else get_schedule(schedule),
                      history=None if history is None else History(**history),
                      epoch=check_int("epoch", header["epoch"], low=0), rng_state=rng_state,
                      order=arrays.get("fit.order"), extra=header.get("extra", {}))


def _architecture(model):
    """The config without the initialization seed, which does not change what is computed."""
    return {k: v for k, v in model.config().items() if k != "seed"}

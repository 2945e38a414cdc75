"""Checkpoints: a model, its optimizer, schedule, history, epoch and shuffling RNG in one file.

A safetensors container (gpunn checkpoint format 2): 1-D tensors ``params``,
``optimizer.<state>`` and ``fit.order`` as raw little-endian buffers; the metadata entry
``gpunn`` holds JSON (format, version, architecture, layout, optimizer scalars and
hyperparameters, schedule, history, epoch, RNG state, extra, CRC32 of every tensor) and
``gpunn.crc32`` its own checksum. No code is stored or run (no pickle). Reading checks, in this
order, before anything is built or changed: the container (offsets inside the file), the
header (checksum, structure, architecture, layout), the entries it implies (names, dtypes,
shapes), then the data (checksums, finite values, a valid RNG state). Every problem raises a
short :class:`CheckpointError` naming the file. Writing is atomic (:mod:`gpunn._files`).
Format 1 files (``.npz``) are refused with a CheckpointError that says so.

The package: this module is the public API; :mod:`~gpunn.checkpoint.format` holds each header
part's writer and checker side by side; :mod:`~gpunn.checkpoint.container` the safetensors
file; :mod:`~gpunn.checkpoint.resume` what ``fit`` saves and resumes from.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from gpunn import _files
from gpunn.checkpoint import container, format

# The container's and format's names (crc, text_crc, ...), importable from here as before.
from gpunn.checkpoint.container import CRC_KEY, METADATA_KEY, CheckpointError, crc, text_crc
from gpunn.checkpoint.format import FORMAT, VERSION, short, short_list
from gpunn.control import STATUSES
from gpunn.history import History
from gpunn.model import Sequential
from gpunn.optim import Optimizer
from gpunn.params import relayout
from gpunn.schedules import Schedule

__all__ = ["CRC_KEY", "FORMAT", "METADATA_KEY", "VERSION", "Checkpoint", "CheckpointError",
           "check_saveable",
           "crc", "load", "load_checkpoint", "read_checkpoint", "read_parts", "save",
           "save_checkpoint", "text_crc"]

_CONTENT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
                   RecursionError)


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns; absent parts are None.

    Attributes:
        model: a :class:`~gpunn.Sequential` with the saved parameters (None from
            :func:`read_checkpoint`).
        optimizer: the optimizer with its state and step count, or None.
        schedule: the learning-rate schedule, or None.
        history: the :class:`~gpunn.History` so far, or None.
        epoch: epochs completed when saved (0 if not given).
        rng_state: ``bit_generator.state`` of the shuffling generator (a dict), or None.
        order: the row order of the last shuffle (int64 array), or None.
        steps: written mid-epoch: ``(totals, status)`` of the steps done in epoch
            ``epoch + 1`` (float64 loss totals, NaN where not finite; step statuses), else None.
        extra: the ``**extra`` metadata given to :func:`save_checkpoint`.
        config: the saved architecture (as ``Sequential.config()``).
        params: the saved flat parameters, a host NumPy array.
    """

    model: Sequential = None
    optimizer: Optimizer = None
    schedule: Schedule = None
    history: History = None
    epoch: int = 0
    rng_state: dict = None
    order: np.ndarray = None
    steps: tuple = None
    extra: dict = field(default_factory=dict)
    config: dict = None
    params: np.ndarray = None

    def rng(self):
        """A ``numpy.random.Generator`` in the saved state, or None if none was saved."""
        if self.rng_state is None:
            return None
        bit_generator = getattr(np.random, self.rng_state["bit_generator"])()
        bit_generator.state = self.rng_state
        return np.random.Generator(bit_generator)


def save_checkpoint(path, model, optimizer=None, schedule=None, history=None, *, epoch=0,
                    rng=None, order=None, steps=None, **extra):
    """Write ``model`` and any training state given to ``path`` atomically.

    An existing ``path`` is handled as ``open(path, "w")`` would (:mod:`gpunn._files`).

    Args:
        path: target file (conventionally ``*.safetensors``); its folder must exist.
        model: a :class:`~gpunn.Sequential`.
        optimizer: an :class:`~gpunn.optim.Optimizer` (state, step count, hyperparameters).
        schedule: a schedule (its config is stored).
        history: a :class:`~gpunn.History`.
        epoch: epochs completed (>= 0).
        rng: the shuffling ``numpy.random.Generator`` (its bit generator's state is stored).
        order: the current row order of the shuffle (1-D integers).
        steps: mid-epoch (``fit(checkpoint_steps=)``): ``(totals, status)`` of the steps done
            in epoch ``epoch + 1``.
        **extra: JSON-serializable metadata, returned as ``Checkpoint.extra``.

    Returns:
        ``path``.
    """
    target = _files.check_target("path", path)  # once, before any work
    for name, value, cls, expected in (
            ("model", model, Sequential, "a Sequential or MLP"),
            ("optimizer", optimizer, Optimizer, "an Optimizer"),
            ("history", history, History, "a History")):
        if (value is not None or name == "model") and not isinstance(value, cls):
            raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")
    header, arrays = format.model_part(model)
    header.update(epoch=format.checked_epoch(epoch),
                  extra=format.json_checked("extra", extra))
    if optimizer is not None:
        header["optimizer"], state = format.optimizer_part(optimizer)
        arrays.update(state)
    if schedule is not None:
        header["schedule"] = format.schedule_part(schedule)
    if history is not None:
        header["history"] = format.history_part(history)
    if rng is not None:
        header["rng_state"] = format.rng_part(rng)
    if order is not None:
        arrays["fit.order"] = format.order_part(order)
    if steps is not None:
        arrays.update(format.steps_part(*steps))
    return container.write(target, header, arrays)


def check_saveable(model, **extra):
    """Raise ValueError now if ``save_checkpoint(path, model, **extra)`` would refuse its
    header (``extra`` too long, too many JSON containers or too deep), for a caller that saves
    after long work (``gpunn train --save``); TypeError for ``extra`` JSON cannot store."""
    header = format.model_header(model)
    header.update(epoch=0, extra=format.json_checked("extra", extra))
    header["crc32"] = {"params": 0xFFFFFFFF}  # as container.write adds it: one more container
    container.check_fits(header)


def save(model, path):
    """Write ``model`` alone (architecture and parameters) to ``path`` atomically; what
    ``model.save(path)`` does. Read it back with :func:`load`.

    Returns:
        ``path``.
    """
    return save_checkpoint(path, model)


def load_checkpoint(path, model=None):
    """Read a checkpoint written by :func:`save_checkpoint` (or ``model.save``).

    Args:
        path: the file.
        model: if given, the saved parameters are loaded into it (its architecture and dtype
            must match), else a new model is built on the current backend. It is changed only
            once the whole file has been checked.

    Returns:
        A :class:`Checkpoint`.

    Raises:
        CheckpointError: unreadable, truncated or corrupted file, another format or version,
            missing or unexpected entries, wrong shapes or dtypes, non-finite parameters, a
            different architecture.
    """
    saved, state = read_parts(path, like=model)
    target = model
    if target is None:
        try:
            target = Sequential.from_config(saved.config, initialize=False)  # loaded next
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{os.fspath(path)}: model: {exc}") from None
    with target.exclusive("load_checkpoint"):  # not while another thread trains it
        if state is not None:  # first: the state moves onto the model's backend, owned by it
            saved.optimizer.load_state_dict(state, model=target, copy=False)
        target.params.load_host(saved.params)
    saved.model = target
    return saved


def read_checkpoint(path, like=None):
    """Read and check a whole checkpoint without building or changing any model.

    Args:
        path: the file.
        like: a model whose architecture the saved one must match, or None.

    Returns:
        A :class:`Checkpoint` with ``model=None``, ``config`` and ``params`` set.
    """
    return read_parts(path, like)[0]


def read_parts(path, like=None):
    """:func:`read_checkpoint` and the optimizer's checked state_dict: ``(checkpoint, state)``.

    ``state`` (or None) holds the very arrays the checkpoint's optimizer took without a copy,
    for loading into a model the same way (``load_state_dict(state, model, copy=False)``): a
    load peaks near the file's size."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if like is not None and not isinstance(like, Sequential):
        raise TypeError(f"model: expected a Sequential or MLP, got {type(like).__name__}")
    try:
        with container.open_container(path) as (header, index, read):
            return _read(header, index, read, like)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except _CONTENT_ERRORS as exc:
        raise CheckpointError(f"{path}: invalid checkpoint content "
                              f"({type(exc).__name__}: {str(exc)[:300]})") from None


def load(path):
    """The model saved in ``path`` (by ``model.save`` or :func:`save_checkpoint`)."""
    return load_checkpoint(path).model


# --- reading ---------------------------------------------------------------------------------

def _read(header, index, read, like):
    """``(checked Checkpoint, optimizer state_dict or None)`` of an open container; nothing
    is built or changed."""
    format.check_format(header)
    config, saved, ranges = format.checked_model(header)
    if like is not None:
        _check_like(like, config)
    optimizer, state_dict = format.checked_optimizer(header.get("optimizer"), config["dtype"])
    expected = format.expected_entries(np.dtype(config["dtype"]), saved[-1][2], state_dict,
                                       index)
    format.check_index(index, expected)
    checksums = header.get("crc32")
    if not isinstance(checksums, dict) or sorted(checksums) != sorted(expected):
        raise CheckpointError(f"crc32: expected checksums of {sorted(expected)}, got "
                              f"{short_list(checksums)}")
    arrays = {name: _checked(name, read(name), checksums[name]) for name in expected}
    if saved != ranges:  # a file of the legacy layout: params and state move into today's
        arrays.update({name: relayout(array, saved, ranges) for name, array in arrays.items()
                       if name == "params" or name.startswith("optimizer.")})
    if state_dict is not None:
        state_dict["state"] = {k: arrays[f"optimizer.{k}"] for k in state_dict["state"]}
        optimizer.load_state_dict(state_dict, copy=False)
    return Checkpoint(
        optimizer=optimizer, schedule=format.checked_schedule(header.get("schedule")),
        history=format.checked_history(header.get("history")),
        epoch=format.checked_epoch(header.get("epoch", 0)),
        rng_state=format.checked_rng_state(header.get("rng_state")),
        order=arrays.get("fit.order"), steps=format.checked_steps(arrays, list(STATUSES.values())),
        extra=format.checked_extra(header.get("extra", {})),
        config=config, params=arrays["params"]), state_dict


_CHUNK = 1 << 16  # elements checked at a time: the check's own memory stays small


def _checked(name, array, checksum):
    """``array`` if its checksum is the saved one and, for floats, every value is finite."""
    if container.crc(array) != checksum:
        raise CheckpointError(f"entry {name!r}: checksum mismatch (the data is damaged)")
    if array.dtype.kind == "f" and name != "fit.step_totals":  # a skipped step's is NaN
        bad = sum(int(np.count_nonzero(~np.isfinite(array[i:i + _CHUNK])))
                  for i in range(0, array.size, _CHUNK))
        if bad:
            raise CheckpointError(f"entry {name!r}: expected finite values, got {bad} NaN/inf")
    return array


def _check_like(model, config):
    if _architecture(model) != _architecture(config):
        raise CheckpointError(f"model: expected the saved architecture "
                              f"{short(_architecture(config))}, got {_architecture(model)}")


def _architecture(model_or_config):
    """The config without the initialization seed, which does not change what is computed."""
    config = (model_or_config.config() if isinstance(model_or_config, Sequential)
              else model_or_config)
    return {k: v for k, v in config.items() if k != "seed"}


Sequential.writer = staticmethod(save)  # model.save hands itself here (see Sequential.save)

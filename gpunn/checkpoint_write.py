"""Writing checkpoints (gpunn checkpoint format 2, safetensors): what ``model.save`` and
``gpunn.save_checkpoint`` store, below the model in the dependency order.

It needs only what a model, optimizer, schedule and history offer (``config()``,
``param_ranges``, ``flat_params``, ``state_dict()``, ``as_dict()``), so ``gpunn.model`` can save
itself without importing :mod:`gpunn.checkpoint`, which reads checkpoints and builds models
(and so imports ``gpunn.model``). The format is described in :mod:`gpunn.checkpoint`.
"""

import json
import zlib

import numpy as np

from gpunn import fileio
from gpunn._checks import check_int
from gpunn.schedules import get_schedule

FORMAT, VERSION = "gpunn-checkpoint", 2
METADATA_KEY, CRC_KEY = "gpunn", "gpunn.crc32"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit: the message names the file and why."""


# Bit generators whose state is plain integers / integer arrays (JSON after tolist()).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def write_checkpoint(path, model, optimizer=None, schedule=None, history=None, *, epoch=0,
                     rng=None, order=None, **extra):
    """Write ``model`` and any training state given to ``path`` atomically (the arguments of
    :func:`gpunn.checkpoint.save_checkpoint`, whose types that function checks).

    Returns:
        ``path``.
    """
    fileio.check_target("path", path)  # before any work: a bad path costs nothing
    header, arrays = _model_part(model)
    header.update(epoch=check_int("epoch", epoch, low=0), extra=_json_checked("extra", extra))
    if optimizer is not None:
        header["optimizer"], state = _optimizer_part(optimizer)
        arrays.update({f"optimizer.{k}": v for k, v in state.items()})
    if schedule is not None:
        header["schedule"] = get_schedule(schedule).config()
    if history is not None:
        header["history"] = _json_checked("history", history.as_dict())
    if rng is not None:
        header["rng_state"] = _rng_state(rng)
    if order is not None:
        arrays["fit.order"] = np.array(order, dtype=np.int64).reshape(-1)
    header["crc32"] = {name: crc(array) for name, array in arrays.items()}
    text = json.dumps(header)
    metadata = {METADATA_KEY: text, CRC_KEY: text_crc(text)}
    return fileio.atomic_write(path, lambda file: _write(file, arrays, metadata))


def crc(array):
    """CRC32 of an array's bytes, as stored for every tensor."""
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1))


def text_crc(text):
    """The header's own checksum, as stored under ``CRC_KEY``."""
    return f"{zlib.crc32(text.encode()):08x}"


def _model_part(model):
    header = {"format": FORMAT, "version": VERSION, "model": model.config(),
              "layout": [list(r) for r in model.param_ranges]}
    return header, {"params": np.array(model.backend.to_numpy(model.flat_params))}


def _optimizer_part(optimizer):
    state_dict = optimizer.state_dict()
    state = state_dict.pop("state")
    state_dict["state_names"] = sorted(state)
    return _json_checked("optimizer", state_dict), state


def _rng_state(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    state = rng.bit_generator.state
    if state["bit_generator"] not in BIT_GENERATORS:
        raise ValueError(f"rng: expected a bit generator in {list(BIT_GENERATORS)}, "
                         f"got {state['bit_generator']!r}")
    return json.loads(json.dumps(state, default=lambda a: np.asarray(a).tolist()))


def _json_checked(name, value):
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected JSON-serializable values, got {exc}") from None
    return value


def _write(file, arrays, metadata):
    """The writer :func:`write_checkpoint` gives :func:`fileio.atomic_write` (a test seam)."""
    from safetensors.numpy import save

    file.write(save(arrays, metadata=metadata))

"""The one place gpunn writes and opens checkpoint files: atomic replace, safetensors container.

Writing goes to a temporary file beside the target, ``.gpunn-<host>-<pid>-<random>.tmp`` (a
short fixed-length name, so any valid target name works), flushed, fsynced and renamed over
the target; a crash keeps the previous file. What is already at the path is treated the way
``open(path, "w")`` would: a symlink is followed (the file it points to is replaced, the link
kept), a read-only file is refused (``PermissionError``) unless the caller could write it
anyway (root), a replaced file keeps its permission bits (a new one gets ``0o666 & ~umask``),
and anything that is not a regular file (device, pipe, socket, directory) is refused with
``ValueError`` instead of being replaced. After a successful save, temporary files of this
naming left in that folder by writers that died (their process is gone on this host, or the
file is untouched for a day) are removed.
"""

import contextlib
import errno
import os
import re
import secrets
import socket
import stat
import time
import zlib

_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFFFF:08x}"
_TEMP = re.compile(r"\.gpunn-([0-9a-f]{8})-([0-9]{1,10})-[0-9a-f]{8}\.tmp\Z")
STALE_SECONDS = 24 * 3600  # a temp file untouched this long is stale whoever wrote it
_CREATE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
           | getattr(os, "O_BINARY", 0))
_KINDS = {stat.S_ISDIR: "directory", stat.S_ISCHR: "character device",
          stat.S_ISBLK: "block device", stat.S_ISFIFO: "named pipe", stat.S_ISSOCK: "socket"}


def _kind(mode):
    return next((name for test, name in _KINDS.items() if test(mode)), "non-regular file")


def check_target(name, path):
    """``(real path, stat or None)`` of a file about to be written; refuses what ``open(path,
    "w")`` would refuse and whatever is not a regular file.

    Args:
        name: the argument's name, for messages.
        path: str or os.PathLike.

    Returns:
        The path with symlinks resolved, and its ``os.stat_result`` if it exists.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path, got {type(path).__name__}")
    target = os.path.realpath(os.fspath(path))
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, f"{name}: no such folder", folder)
    if not _writable(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{name}: the folder is not writable (saving "
                              "writes a temporary file beside the target)", folder)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return target, None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{name}: expected a regular file or a new file name, got a "
                         f"{_kind(info.st_mode)}: {os.fspath(path)!r}")
    if not _writable(target, os.W_OK):
        raise PermissionError(errno.EACCES, f"{name}: the file is read-only", os.fspath(path))
    return target, info


def _writable(path, mode):
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _create_temp(folder):
    for _ in range(16):
        tmp = os.path.join(folder, f".gpunn-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, _CREATE, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)


def atomic_write(path, write, name="path"):
    """Write a file through ``write(binary_file)`` and rename it over ``path`` atomically.

    Args:
        path: the target (see the module docstring for what may already be there).
        write: called with the open temporary file.
        name: the argument's name, for messages.

    Returns:
        ``path``.
    """
    target, existing = check_target(name, path)
    folder = os.path.dirname(target)
    tmp, fd = _create_temp(folder)
    try:
        with os.fdopen(fd, "wb") as file:
            if existing is not None:
                _keep_owner_and_mode(file.fileno(), existing)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):  # Ctrl-C after the rename: tmp is already gone
            os.unlink(tmp)
        raise
    _fsync_folder(folder)
    remove_stale_temps(folder)
    return path


def _keep_owner_and_mode(fd, existing):
    if not hasattr(os, "fchmod"):  # Windows: only a read-only flag, already refused
        return
    os.fchmod(fd, stat.S_IMODE(existing.st_mode))
    if (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(OSError):  # only root may give a file away
            os.fchown(fd, existing.st_uid, existing.st_gid)


def _fsync_folder(folder):
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _pid_alive(pid):
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there: only the age rule applies
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def remove_stale_temps(folder, now=None):
    """Delete gpunn temporary files in ``folder`` whose writer is gone; the names removed."""
    now = time.time() if now is None else now
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMP.match(entry.name)
            if match is None:
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                dead = match[1] == _HOST and not _pid_alive(int(match[2]))
                if stat.S_ISREG(info.st_mode) and (dead or now - info.st_mtime > STALE_SECONDS):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@contextlib.contextmanager
def open_container(path, error, max_entries=16):
    """Open a safetensors file lazily: ``(metadata dict, {name: (dtype, shape)}, read)``.

    The library validates the header (its length against the file's, every tensor's offsets
    inside the data and covering it without overlap) before anything else; no tensor data is
    read until ``read(name)``.

    Args:
        path: the file (must be a regular file).
        error: the exception class raised for files that are not readable safetensors.
        max_entries: more tensors than this and the file is refused before they are listed.
    """
    from safetensors import safe_open

    _check_readable(path, error)
    try:
        # pread, not a memory map: a file truncated in place while it is read gives an error
        # here, where a mapped file would kill the process with SIGBUS (safetensors >= 0.8).
        handle = safe_open(path, framework="np", backend="pread")
        keys = handle.keys()
        if len(keys) > max_entries:  # before looking at each: a crafted file may hold millions
            raise error(f"expected at most {max_entries} entries, got {len(keys)}")
        index = {key: _entry(handle, key) for key in keys}
        metadata = handle.metadata() or {}
    except error:
        raise
    except Exception as exc:  # noqa: BLE001 - the Rust reader raises its own error classes
        raise error(f"not a readable gpunn checkpoint (a safetensors file; "
                    f"{type(exc).__name__}: {str(exc)[:200]})") from None

    def read(name):
        try:
            return handle.get_tensor(name)
        except Exception as exc:  # noqa: BLE001 - a damaged file, whatever the library says
            raise error(f"entry {name!r}: unreadable ({type(exc).__name__}: "
                        f"{str(exc)[:200]})") from None

    with handle:
        yield metadata, index, read


def _check_readable(path, error):
    """A regular file (a pipe would block, a device never end) and not a format 1 .npz."""
    info = os.stat(path)  # FileNotFoundError stays what it is
    if not stat.S_ISREG(info.st_mode):
        raise error(f"expected a regular file, got a {_kind(info.st_mode)}")
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic in _ZIP_MAGIC:
        raise error("this is a .npz (zip) file, e.g. a checkpoint of gpunn 0.1's format 1; "
                    "this version reads and writes safetensors checkpoints (format 2) only")


def _entry(handle, key):
    view = handle.get_slice(key)
    return view.get_dtype(), tuple(view.get_shape())

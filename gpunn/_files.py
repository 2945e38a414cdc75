"""The one place gpunn writes files: path checks made once, then an atomic replace.

Used by checkpoints, ``gpunn predict --out`` and plots. Writing goes to a temporary file beside
the target, ``.gpunn-<host>-<pid>-<random>.tmp`` (a short fixed-length name, so any valid target
name works), flushed, fsynced and renamed over the target; a crash keeps the previous file. What
is already at the path is treated the way ``open(path, "w")`` would: a symlink is followed (the
file it points to is replaced, the link kept), a read-only file is refused (``PermissionError``)
unless the caller could write it anyway (root), a replaced file keeps its permission bits (a new
one gets ``0o666 & ~umask``), and anything that is not a regular file (device, pipe, socket,
directory) is refused with ``ValueError`` instead of being replaced. After a successful save,
temporary files of this naming left in that folder by writers that died (their process is gone
on this host, or the file is untouched for a day) are removed.
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


def file_kind(mode):
    """What a ``st_mode`` is, in words (\"named pipe\", \"directory\", ...)."""
    return next((name for test, name in _KINDS.items() if test(mode)), "non-regular file")


class Target:
    """An output path checked by :func:`check_target`: what to replace, and what was there.

    Attributes:
        name: the argument's name, for messages.
        path: the path as given (str or os.PathLike), what a save returns.
        real: the path with symlinks resolved: the file that will be replaced.
        existing: ``os.stat_result`` of the file there, or None for a new file.
    """

    __slots__ = ("name", "path", "real", "existing")

    def __init__(self, name, path, real, existing):
        self.name, self.path, self.real, self.existing = name, path, real, existing

    def __repr__(self):
        return f"Target({self.name!r}, {self.path!r})"


def check_target(name, path):
    """Check a file about to be written: refuse what ``open(path, "w")`` would refuse and
    whatever is not a regular file, before any work is done.

    Args:
        name: the argument's name, for messages.
        path: str or os.PathLike (a :class:`Target` is returned as it is).

    Returns:
        A :class:`Target` to give :func:`atomic_write`.
    """
    if isinstance(path, Target):
        return path
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path, got {type(path).__name__}")
    given = os.fspath(path)
    if isinstance(given, bytes):
        given = os.fsdecode(given)
    if not given or given.endswith((os.sep, "/")) or os.path.basename(given) in (".", ".."):
        raise ValueError(f"{name}: expected a file name, got {given!r}")
    real = os.path.realpath(given)
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, f"{name}: no such folder", folder)
    if not _writable(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{name}: the folder is not writable (saving "
                              "writes a temporary file beside the target)", folder)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        return Target(name, path, real, None)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{name}: expected a regular file or a new file name, got a "
                         f"{file_kind(info.st_mode)}: {given!r}")
    if not _writable(real, os.W_OK):
        raise PermissionError(errno.EACCES, f"{name}: the file is read-only", given)
    return Target(name, path, real, info)


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


def atomic_write(target, write, name="path"):
    """Write a file through ``write(binary_file)`` and rename it over the target atomically.

    Args:
        target: a :class:`Target` from :func:`check_target` (checked once, before the work
            that produced the content), or a path, checked now.
        write: called with the open temporary file.
        name: the argument's name, for messages (when ``target`` is a path).

    Returns:
        The path as given.

    Raises:
        OSError: as the system reports it, naming the target (a full disk: ``ENOSPC``).
    """
    target = check_target(name, target)
    folder = os.path.dirname(target.real)
    tmp, fd = _create_temp(folder)
    try:
        with os.fdopen(fd, "wb") as file:
            if target.existing is not None:
                _keep_owner_and_mode(file.fileno(), target.existing)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target.real)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # Ctrl-C after the rename: tmp is already gone
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):
            raise type(exc)(exc.errno, f"{target.name}: {exc.strerror}",
                            os.fspath(target.path)) from None
        raise
    _fsync_folder(folder)
    remove_stale_temps(folder)
    return target.path


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

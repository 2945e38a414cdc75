"""The one place gpunn writes files: output paths checked once, before the work, then written
atomically.

Used by checkpoints, ``gpunn train --save/--plot``, ``gpunn predict --out`` and exports.
Writing goes to a temporary file beside the target, ``.gpunn-<host>-<pid>-<random>.tmp`` (a
short fixed-length name, so any valid target name works), flushed, fsynced and renamed over
the target; a crash or a full disk keeps the previous file.

What is already at the path is treated the way ``open(path, "w")`` would treat it, with the
kernel's own rules: a symlink is followed (the file it points to is replaced, the link kept)
unless the kernel's ``fs.protected_symlinks`` rule forbids it -- a link in a sticky,
world-writable folder (such as /tmp) that belongs neither to the caller nor to the folder's
owner is refused (``PermissionError``), even for root and whatever the sysctl says. The folder
is opened once and every later step (checks, the temporary file, the rename, the fsync) goes
through that descriptor (``openat``), so a path changed by someone else between the check and
the write cannot redirect it. A read-only file is refused (``PermissionError``) unless the
caller could write it anyway (root); a replaced file keeps its permission bits (a new one gets
``0o666 & ~umask``); anything that is not a regular file (device, pipe, socket, directory) is
refused with ``ValueError`` instead of being replaced. After a successful save, temporary
files of this naming left in that folder by writers that died (their process is gone on this
host, or the file is untouched for a day) are removed.
"""

import contextlib
import errno
import os
import re
import secrets
import signal
import socket
import stat
import threading
import time
import zlib

_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFFFF:08x}"
_TEMP = re.compile(r"\.gpunn-([0-9a-f]{8})-([0-9]{1,10})-[0-9a-f]{8}\.tmp\Z")
STALE_SECONDS = 24 * 3600  # a temp file untouched this long is stale whoever wrote it
_CREATE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
           | getattr(os, "O_BINARY", 0))
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS
_KINDS = {stat.S_ISDIR: "directory", stat.S_ISCHR: "character device",
          stat.S_ISBLK: "block device", stat.S_ISFIFO: "named pipe", stat.S_ISSOCK: "socket"}


def file_kind(mode):
    """What a ``st_mode`` is, in words (\"named pipe\", \"directory\", ...)."""
    return next((name for test, name in _KINDS.items() if test(mode)), "non-regular file")


class Target:
    """An output checked by :func:`check_target`: the open folder, the name in it and what
    was there. Written (and closed) by :func:`atomic_write`; :meth:`close` if it is not.

    Attributes:
        name: the argument's name, for messages.
        path: the path as given (str or os.PathLike), what a save returns.
        folder: the folder the file is in, symlinks followed (for messages).
        base: the file's name in that folder.
        dir_fd: the folder, open (None once closed).
        existing: ``os.stat_result`` of the file there, or None for a new file.
    """

    __slots__ = ("name", "path", "folder", "base", "dir_fd", "existing")

    def __init__(self, name, path, folder, base, dir_fd, existing):
        self.name, self.path, self.folder, self.base = name, path, folder, base
        self.dir_fd, self.existing = dir_fd, existing

    @property
    def real(self):
        """The file that will be replaced (symlinks followed)."""
        return os.path.join(self.folder, self.base)

    def key(self):
        """What two targets share exactly when they name the same file."""
        if self.existing is not None:
            return self.existing.st_dev, self.existing.st_ino
        folder = os.fstat(self.dir_fd)
        return folder.st_dev, folder.st_ino, self.base

    def close(self):
        """Release the folder's descriptor (idempotent)."""
        fd, self.dir_fd = self.dir_fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self):
        self.close()

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
    with _interrupts_deferred():  # a Ctrl-C must not leave the folder open, unowned
        folder, base, dir_fd, info = _resolve(name, given)
        target = Target(name, path, folder, base, dir_fd, info)
    try:
        if not _writable(".", os.W_OK | os.X_OK, dir_fd):
            raise PermissionError(errno.EACCES, f"{name}: the folder is not writable (saving "
                                  "writes a temporary file beside the target)", folder)
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{name}: expected a regular file or a new file name, got a "
                             f"{file_kind(info.st_mode)}: {given!r}")
        if info is not None and not _writable(base, os.W_OK, dir_fd):
            raise PermissionError(errno.EACCES, f"{name}: the file is read-only", given)
    except BaseException:
        target.close()
        raise
    return target


def check_outputs(outputs, inputs=None):
    """Check every output a run will write before it starts: each as :func:`check_target`
    does, no two the same file, and none one of the run's inputs (which it would destroy).

    Args:
        outputs: ``{argument name: path or None}``.
        inputs: ``{argument name: path or None}`` of files the run reads.

    Returns:
        ``{argument name: Target}`` for the outputs given.
    """
    targets = {}
    try:
        for option, path in outputs.items():
            if path is None:
                continue
            target = check_target(option, path)
            targets[option] = target
            for other, seen in targets.items():
                if other != option and seen.key() == target.key():
                    raise ValueError(f"{option}: expected a file apart from {other}'s, got the "
                                     f"same file {os.fspath(path)!r}")
        for option, path in (inputs or {}).items():
            _check_not_overwritten(option, path, targets)
    except BaseException:
        for target in targets.values():
            target.close()
        raise
    return targets


def check_folder(name, path):
    """Check (and create, with its parents, if missing) a folder that files will be written
    into, before the work: refuse a path that is not a folder or a folder not writable.

    Returns:
        The path as given.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"{name}: expected a folder path, got {path!r}")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise type(exc)(exc.errno, f"{name}: cannot create the folder ({exc.strerror})",
                            os.fspath(path)) from None
        info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        kind = "file" if stat.S_ISREG(info.st_mode) else file_kind(info.st_mode)
        raise ValueError(f"{name}: expected a folder, got a {kind}: {os.fspath(path)!r}")
    if not os.access(path, os.W_OK | os.X_OK,
                     effective_ids=os.access in os.supports_effective_ids):
        raise PermissionError(errno.EACCES, f"{name}: the folder is not writable",
                              os.fspath(path))
    return path


def _check_not_overwritten(option, path, targets):
    """Refuse an output that is the input file ``path``, or that lies in the input folder
    ``path`` (at any depth: a shard the run reads, or a file a later run would take as one)."""
    if path is None:
        return
    try:
        info = os.stat(path)
    except (OSError, ValueError, TypeError):  # a missing input is its reader's error
        return
    for output, target in targets.items():
        if target.key() == (info.st_dev, info.st_ino):
            raise ValueError(f"{output}: expected a file apart from the input {option} "
                             f"{os.fspath(path)!r}, got the same file (writing it would "
                             "destroy the input)")
        if stat.S_ISDIR(info.st_mode) and _inside(target.folder, info):
            raise ValueError(f"{output}: expected a file outside the input folder {option} "
                             f"{os.fspath(path)!r}, got {os.fspath(target.path)!r} inside it "
                             "(writing it would replace or add a file the data is read from)")


def _inside(folder, info):
    """Whether ``folder`` is the folder whose stat is ``info``, or lies below it."""
    folder = os.path.realpath(folder)
    while True:
        here = os.stat(folder)
        if (here.st_dev, here.st_ino) == (info.st_dev, info.st_ino):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


def _resolve(name, path):
    """``(folder, name, open folder, stat or None)`` of the file ``open(path, "w")`` writes,
    following a symlink at the end as the kernel does, protected_symlinks rule included."""
    for _ in range(_MAX_LINKS):
        folder, base = os.path.split(os.path.abspath(path))
        if not base or base in (".", ".."):
            raise ValueError(f"{name}: expected a file, got a link to a folder: {path!r}")
        try:  # the kernel follows (and guards) any links in the folder's own path
            dir_fd = os.open(folder, _DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(errno.ENOENT, f"{name}: no such folder", folder) from None
        try:
            info = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISLNK(info.st_mode):
                return folder, base, dir_fd, info
            _check_link(name, path, info, os.fstat(dir_fd))
            path = os.path.join(folder, os.readlink(base, dir_fd=dir_fd))
        except FileNotFoundError:
            return folder, base, dir_fd, None
        except BaseException:
            os.close(dir_fd)
            raise
        os.close(dir_fd)
    raise OSError(errno.ELOOP, f"{name}: too many levels of symbolic links", path)


def _check_link(name, path, link, folder):
    """The kernel's fs.protected_symlinks rule: in a sticky, world-writable folder, follow
    only links owned by the follower or by the folder's owner."""
    shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    if shared and link.st_uid not in (os.geteuid(), folder.st_uid):
        raise PermissionError(errno.EACCES, f"{name}: refusing to follow a symlink owned by "
                              f"another user (uid {link.st_uid}) in a shared sticky folder",
                              path)


def _writable(name, mode, dir_fd):
    return os.access(name, mode, dir_fd=dir_fd,
                     effective_ids=os.access in os.supports_effective_ids)


def _create_temp(dir_fd):
    for _ in range(16):
        tmp = f".gpunn-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            return tmp, os.open(tmp, _CREATE, 0o666, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name")


def atomic_write(target, write, name="path"):
    """Write a file through ``write(binary_file)`` and rename it over the target atomically.

    Args:
        target: a :class:`Target` from :func:`check_target` (checked once, before the work
            that produced the content; closed here), or a path, checked now.
        write: called with the open temporary file.
        name: the argument's name, for messages (when ``target`` is a path).

    Returns:
        The path as given.

    Raises:
        OSError: as the system reports it, naming the target (a full disk: ``ENOSPC``).
    """
    target = check_target(name, target)
    if target.dir_fd is None:
        raise ValueError(f"{target.name}: this checked target was already written or closed")
    try:
        _replace(target, write)
        remove_stale_temps(target.dir_fd)
    finally:
        target.close()
    return target.path


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold a Ctrl-C (SIGINT) until the block is done, then raise it: a file or descriptor
    created inside is recorded before the interrupt can leave it behind, unowned. Only the
    main thread receives Python's signals, so elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])
        elif caught and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def _replace(target, write):
    dir_fd, tmp, file = target.dir_fd, None, None
    try:
        with _interrupts_deferred():
            tmp, fd = _create_temp(dir_fd)
            file = os.fdopen(fd, "wb")
        with file:
            if target.existing is not None:
                _keep_owner_and_mode(file.fileno(), target.existing)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target.base, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as exc:
        if file is not None:
            file.close()
        with contextlib.suppress(OSError, TypeError):  # after the rename: tmp is gone
            os.unlink(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):
            raise type(exc)(exc.errno, f"{target.name}: {exc.strerror}",
                            os.fspath(target.path)) from None
        raise
    os.fsync(dir_fd)  # make the rename itself durable


def _keep_owner_and_mode(fd, existing):
    if not hasattr(os, "fchmod"):  # Windows: only a read-only flag, already refused
        return
    os.fchmod(fd, stat.S_IMODE(existing.st_mode))
    if (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(OSError):  # only root may give a file away
            os.fchown(fd, existing.st_uid, existing.st_gid)


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
    """Delete gpunn temporary files in ``folder`` (a path or an open folder's descriptor)
    whose writer is gone; the names removed."""
    now = time.time() if now is None else now
    removed = []
    dir_fd = folder if isinstance(folder, int) else None
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMP.match(entry.name)
            if match is None:
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                dead = match[1] == _HOST and not _pid_alive(int(match[2]))
                if stat.S_ISREG(info.st_mode) and (dead or now - info.st_mtime > STALE_SECONDS):
                    os.unlink(entry.name if dir_fd is not None else entry.path, dir_fd=dir_fd)
                    removed.append(entry.name)
    return removed

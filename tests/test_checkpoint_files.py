"""What saving does to what is already at the path, temporary files, and interrupted saves."""

import errno
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import gpunn
from gpunn import _files


def net():
    return gpunn.MLP([3, 4, 2], activation="tanh", output="softmax", dtype="float64", seed=1)


def params(model):
    return np.array(model.backend.to_numpy(model.flat_params))


def test_a_device_or_pipe_is_refused_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="path: expected a regular file or a new file name, "
                                         "got a named pipe"):
        net().save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe"]
    if os.path.exists("/dev/null"):
        with pytest.raises(ValueError, match="got a character device"):
            net().save("/dev/null")
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(ValueError, match="got a directory"):
        net().save(tmp_path)


def test_a_replaced_file_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path):
    path = tmp_path / "m.safetensors"
    net().save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    os.chmod(path, 0o640)
    net().save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_a_read_only_file_is_refused_as_open_would(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    net().save(path)
    os.chmod(path, 0o444)
    try:
        open(path, "a").close()
        writable = True
    except PermissionError:
        writable = False
    if writable:  # root: open(path, "w") works, so saving does too
        net().save(path)
    # Whoever runs the test: a file the user cannot write is left alone.
    # access() is asked about names inside the open folder (faccessat): the file's is refused.
    monkeypatch.setattr(_files.os, "access",
                        lambda name, *args, **kwargs: name != "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(PermissionError) as caught:
        gpunn.MLP([3, 5, 2]).save(path)
    assert caught.value.errno == errno.EACCES and "read-only" in str(caught.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.safetensors"]


def path_of(folder, name):
    return os.path.realpath(folder / name)


def test_a_read_only_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(_files.os, "access", lambda name, *args, **kwargs: name != ".")
    with pytest.raises(PermissionError, match="the folder is not writable"):
        net().save(tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


def test_a_symlink_is_followed_and_kept(tmp_path):
    target = tmp_path / "real.safetensors"
    net().save(target)
    link = tmp_path / "link.safetensors"
    link.symlink_to(target.name)
    model = gpunn.MLP([3, 7, 2], output="softmax", seed=3)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == target.name
    np.testing.assert_array_equal(params(gpunn.load(target)), params(model))


def test_a_missing_folder_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        net().save(tmp_path / "absent" / "m.safetensors")


def test_names_up_to_255_characters_work(tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    path = tmp_path / ("m" * (limit - len(".st")) + ".st")
    model = net()
    model.save(path)
    np.testing.assert_array_equal(params(gpunn.load(path)), params(model))
    assert os.listdir(tmp_path) == [path.name]


def test_ctrl_c_after_the_rename_surfaces_as_keyboard_interrupt(tmp_path, monkeypatch):
    """The interrupt lands after the temporary file was renamed: cleanup must not fail."""
    path = tmp_path / "m.safetensors"
    real_replace = os.replace

    def replace_then_interrupt(src, dst, **kwargs):
        real_replace(src, dst, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(_files.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        net().save(path)
    assert os.listdir(tmp_path) == ["m.safetensors"]


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temp_files_of_dead_writers_are_removed_on_the_next_save(tmp_path):
    host = _files._HOST
    other = "0" * 8 if host != "0" * 8 else "1" * 8
    names = {"dead": f".gpunn-{host}-{dead_pid()}-0badf00d.tmp",
             "alive": f".gpunn-{host}-{os.getpid()}-0badf00d.tmp",
             "old elsewhere": f".gpunn-{other}-1-0badf00d.tmp",
             "new elsewhere": f".gpunn-{other}-2-0badf00d.tmp",
             "not ours": ".gpunn-notours.tmp"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"x" * 100)
    old = time.time() - _files.STALE_SECONDS - 60
    os.utime(tmp_path / names["old elsewhere"], (old, old))
    net().save(tmp_path / "m.safetensors")
    left = set(os.listdir(tmp_path))
    assert left == {"m.safetensors", names["alive"], names["new elsewhere"], names["not ours"]}


def test_a_crash_before_the_rename_leaves_only_a_temp_file_that_a_save_removes(tmp_path):
    """kill -9 in the middle of a save: the previous file stays, the temp file goes later."""
    path = tmp_path / "m.safetensors"
    net().save(path)
    before = path.read_bytes()
    script = ("import os, gpunn, gpunn.checkpoint.container as c\n"
              "c.write_file = lambda file, blob: (file.write(b'half'), file.flush(), "
              "os._exit(9))\n"
              f"gpunn.MLP([3, 4, 2], seed=5).save({str(path)!r})\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert path.read_bytes() == before and len(os.listdir(tmp_path)) == 2
    net().save(path)
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_a_file_truncated_in_place_while_loading_is_an_error_not_a_crash(tmp_path):
    """Someone rewrites the file in place (cp, not an atomic rename) while it is read: a
    memory-mapped reader would die of SIGBUS; this one raises CheckpointError."""
    path = tmp_path / "m.safetensors"
    gpunn.MLP([300, 300, 10]).save(path)
    script = ("import os, gpunn\n"
              "from gpunn.checkpoint import container\n"
              f"path = {str(path)!r}\n"
              "with container.open_container(path) as (_, _, read):\n"
              "    os.truncate(path, 200)\n"
              "    try:\n"
              "        read('params')\n"
              "    except gpunn.CheckpointError as exc:\n"
              "        print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: entry 'params': unreadable")


def test_loading_a_pipe_or_a_folder_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(gpunn.CheckpointError, match="expected a regular file, got a named pipe"):
        gpunn.load(fifo)
    with pytest.raises(gpunn.CheckpointError, match="expected a regular file, got a directory"):
        gpunn.load(tmp_path)


def shared_sticky_folder(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o1777)  # as /tmp: sticky and world-writable
    return folder


def test_a_symlink_planted_by_another_user_in_a_sticky_folder_is_refused(tmp_path):
    """The kernel's fs.protected_symlinks rule: open(path, "w") would refuse to follow it,
    so save must not replace the file it points to (root included)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a symlink to another user")
    victim = tmp_path / "victim"
    victim.write_bytes(b"secret")
    os.chmod(victim, 0o600)
    link = shared_sticky_folder(tmp_path) / "m.safetensors"
    link.symlink_to(victim)
    os.lchown(link, 54321, 54321)
    with pytest.raises(PermissionError, match="refusing to follow a symlink owned by another"):
        net().save(link)
    assert victim.read_bytes() == b"secret" and link.is_symlink()
    assert os.listdir(link.parent) == ["m.safetensors"]


def test_a_symlink_of_ones_own_in_a_sticky_folder_is_followed(tmp_path):
    target = tmp_path / "real.safetensors"
    link = shared_sticky_folder(tmp_path) / "m.safetensors"
    link.symlink_to(target)  # dangling: open(path, "w") would create the file it names
    model = net()
    model.save(link)
    assert link.is_symlink() and target.is_file()
    np.testing.assert_array_equal(params(gpunn.load(target)), params(model))


def test_the_checked_folder_is_the_one_written_even_if_the_path_moves(tmp_path):
    """Checked once, written through the folder opened then (openat): renaming the folder
    and planting another in its place between the check and the write changes nothing."""
    from gpunn._files import atomic_write, check_target

    (tmp_path / "a").mkdir()
    target = check_target("path", tmp_path / "a" / "m.bin")
    (tmp_path / "a").rename(tmp_path / "b")
    (tmp_path / "a").mkdir()
    atomic_write(target, lambda file: file.write(b"data"))
    assert (tmp_path / "b" / "m.bin").read_bytes() == b"data"
    assert os.listdir(tmp_path / "a") == []


@pytest.mark.parametrize("path", ["", "folder/", ".", "folder/.."],
                         ids=["empty", "trailing-slash", "dot", "dot-dot"])
def test_a_path_that_names_no_file_is_refused(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"path: expected a file name, got {path!r}"):
        net().save(path)
    assert os.listdir(tmp_path) == []


def test_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    from gpunn.checkpoint import container

    path = tmp_path / "m.safetensors"
    net().save(path)
    before = path.read_bytes()

    def full_disk(file, blob):
        file.write(blob[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(container, "write_file", full_disk)
    with pytest.raises(OSError) as caught:
        gpunn.MLP([3, 6, 2]).save(path)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.safetensors"]


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("where", ["creating the temp file", "opening the folder"])
def test_a_ctrl_c_while_files_are_opened_leaves_no_file_or_descriptor(tmp_path, monkeypatch,
                                                                       where):
    """SIGINT arriving between a file's creation and its recording (an early Ctrl-C in a
    long-lived process) is held until the file is owned, then raised: nothing leaks."""
    import signal

    real_open = os.open
    wanted = os.O_CREAT if where == "creating the temp file" else os.O_DIRECTORY

    def open_then_interrupt(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if flags & wanted:
            os.kill(os.getpid(), signal.SIGINT)  # delivered right after the system call
        return fd

    path = tmp_path / "m.safetensors"
    model = net()
    before = open_fds()
    # Python's own Ctrl-C handler, whatever the runner inherited (a shell starts background
    # jobs with SIGINT ignored, and Python then installs none)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr(_files.os, "open", open_then_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            model.save(path)
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGINT, inherited)
    assert os.listdir(tmp_path) == [] and open_fds() == before

"""benchmarks/gpu_check.sh, the one-command GPU check, dry-run here so it cannot rot.

The dry run (``GPUNN_CHECK_DRY_RUN=1``) runs every part of the script on the cpu backend:
install offline from a copy of the checkout into a throwaway environment, ``gpunn info``, the
smoke script, a slice of the suite with junit XML, the benchmark at smoke size. What only a GPU
can show (nvidia-smi, capture, the cuda matrix, the benchmarks' GPU sections) is left to the
real run; the script says so in its output.
"""

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
# Inside the script's own suite (on the GPU machine) the real run is the check: no dry run
# of a copy there, it would only spend the GPU's time.
pytestmark = pytest.mark.skipif(os.environ.get("GPUNN_CHECK_RUNNING") == "1",
                                reason="run by benchmarks/gpu_check.sh itself")


def _copy_checkout(dest):
    """The files git would commit (tracked and untracked, not ignored), as a fresh clone
    holds them; the whole tree minus build outputs where git is missing."""
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard",
                                 "-z"], capture_output=True, check=True, timeout=60).stdout
        names = [n for n in listed.decode().split("\0") if n and (ROOT / n).is_file()]
    except (OSError, subprocess.CalledProcessError):
        ignored = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build")
        shutil.copytree(ROOT, dest, ignore=ignored)
        return
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)


def _environment(dest):
    """A venv of its own (the install must not touch this one) that sees this interpreter's
    packages: a .pth that adds every site directory of ours after its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True,
                   timeout=120)
    python = dest / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True).stdout
    ours = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    lines = [f"import site; site.addsitedir({p!r})" for p in ours]
    (Path(site.strip()) / "zz_parent_environment.pth").write_text("\n".join(lines) + "\n")
    return python


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu_check")
    clone, out = base / "clone", base / "out"
    clone.mkdir()
    _copy_checkout(clone)
    python = _environment(base / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNN_")}
    env.update(PYTHON=str(python), GPUNN_CHECK_DRY_RUN="1", GPUNN_CHECK_SECONDS="400",
               GPUNN_CHECK_TESTS="tests/test_install.py")
    done = subprocess.run(["bash", str(clone / "benchmarks" / "gpu_check.sh"), str(out)],
                          cwd=base, env=env, capture_output=True, text=True, timeout=600)
    where = subprocess.run([str(python), "-c", "import gpunn; print(gpunn.__file__)"],
                           cwd=base, env=env, capture_output=True, text=True, timeout=120)
    return done, out, clone, where.stdout.strip()


def test_dry_run_passes_every_part(dry_run):
    done, out, _, _ = dry_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    status = (out / "status.txt").read_text()
    for part in ("env", "install", "info", "smoke", "tests", "bench", "precision"):
        assert f"{part}: exit 0" in status, status
    assert "DRY RUN" in done.stdout and "ALL PARTS PASSED" in done.stdout


def test_dry_run_installs_the_copy_not_this_checkout(dry_run):
    _, _, clone, where = dry_run
    assert Path(where).resolve().is_relative_to(clone.resolve()), where


def test_dry_run_writes_logs_junit_and_reports(dry_run):
    done, out, _, _ = dry_run
    suite = ET.parse(out / "tests.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert int(suite.get("tests")) > 0 and int(suite.get("failures")) == 0
    for name in ("env", "install", "info", "smoke", "tests", "bench", "precision"):
        assert (out / f"{name}.log").stat().st_size > 0, name
    smoke = (out / "smoke.log").read_text()
    assert "PASS graph == eager to the bit" in smoke and "NOT CHECKED capture" in smoke
    assert (out / "bench.json").stat().st_size > 0
    assert "== gpu_check summary" in (out / "summary.txt").read_text()


def _script_with(tmp_path, line):
    """The script's own set-up and helpers, then ``line`` instead of its parts."""
    script = SCRIPT.read_text()
    test = tmp_path / "check.sh"
    test.write_text(script[:script.index("part env 30 versions")] + line + "\nexit $status\n")
    return test


def test_a_suite_out_of_time_still_writes_its_junit_xml(tmp_path):
    """SIGINT first: pytest stops as on Ctrl-C and writes its XML and summary (bash starts
    background commands with SIGINT ignored; the script restores it)."""
    tests = tmp_path / "test_slow.py"
    tests.write_text("import time\ndef test_fast():\n    pass\n"
                     "def test_slow():\n    time.sleep(600)\n")
    script = _script_with(tmp_path, f'part tests 4 "$PY" -m pytest -q -p no:cacheprovider '
                                    f'-p no:randomly --junitxml="$OUT/tests.xml" {tests}')
    env = {**os.environ, "PYTHON": sys.executable, "GPUNN_CHECK_SECONDS": "120"}
    done = subprocess.run(["bash", str(script), str(tmp_path / "out")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "tests: exit 124" in done.stdout
    log = (tmp_path / "out" / "tests.log").read_text()
    assert "KeyboardInterrupt" in log and "SIGABRT" not in log
    suite = ET.parse(tmp_path / "out" / "tests.xml").getroot()
    assert [case.get("name") for case in suite.iter("testcase")][:1] == ["test_fast"]


def test_a_part_out_of_time_is_stopped_with_its_stacks(tmp_path):
    """The script's time limit: SIGINT, then SIGABRT (faulthandler prints every thread's
    stack), then SIGKILL; the part reads as timed out and the run fails."""
    fake = tmp_path / "hang.py"
    fake.write_text("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                    "def stuck_here():\n    time.sleep(600)\nstuck_here()\n")
    test = _script_with(tmp_path, f'part hang 2 "$PY" {fake}')
    env = {**os.environ, "PYTHON": sys.executable, "GPUNN_CHECK_SECONDS": "120"}
    done = subprocess.run(["bash", str(test), str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "hang: exit 124" in done.stdout and "TIMED OUT after 2 s" in done.stdout
    log = (tmp_path / "out" / "hang.log").read_text()
    assert "SIGABRT" in log and "stuck_here" in log and "Fatal Python error: Aborted" in log


def test_without_a_usable_gpu_the_real_run_fails_at_info(tmp_path):
    """Not a dry run, on a machine where cuda cannot be used: `gpunn info` fails, the run
    stops there with a failing status instead of testing the CPU and calling it a pass."""
    from gpunn.backends import cuda_status

    if cuda_status()[0] is not None:
        pytest.skip("cuda works here: the real run would run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNN_")}
    env.update(PYTHON=sys.executable, GPUNN_CHECK_NO_INSTALL="1")
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout
    assert "info: exit 1" in done.stdout and "parts after it not run" in done.stdout
    assert "backend 'cuda' was requested but cannot be used" in (
        tmp_path / "out" / "info.log").read_text()
    assert not (tmp_path / "out" / "tests.log").exists()

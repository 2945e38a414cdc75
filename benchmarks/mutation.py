"""Mutation testing of one set of modules with mutmut, outside the work tree.

    python benchmarks/mutation.py SET [--sample N] [--seed S] [--only GLOB ...]

SET is a row of :data:`SETS`: the modules mutated and the tests that judge them (mutmut runs,
per mutant, only the selected tests that reach the mutated function). The git-tracked files
(and untracked ones git does not ignore) are copied into ``--workdir`` (default
``$TMPDIR/gpunn-mutation/SET``), where mutmut writes its ``mutants/`` folder: nothing lands in
the tree. One worker, niced: the machine is shared. ``--sample N`` runs N mutants drawn with
``--seed`` from all of the set's (say so when reporting a score); ``--only`` runs those named
(fnmatch patterns, e.g. ``'gpunn.sklearn.x__checked*'``). Prints the count of each outcome
per module and the survivors' names; ``mutmut show NAME`` in the workdir gives a diff.

The Numba twins (set ``twins``) run as Python: mutmut wraps each function in a trampoline that
``@njit`` cannot compile, and mutates no decorated function, so the set runs with
``NUMBA_DISABLE_JIT=1`` (``njit`` is then the identity and ``prange`` is ``range``) from a copy
whose ``kernels/`` sits at ``gpunn/kernels`` (where mutmut's copy of the package finds it),
the ``@njit(...)`` lines of the twin files removed there. The tests compare each twin with its
float64 reference on small shapes, so a mutant of the per-element math or the indexing fails
them.
"""

import argparse
import fnmatch
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Every run: stop at the first failure; without the test that sends itself SIGINT (mutmut's
# workers handle SIGINT themselves, so the KeyboardInterrupt it expects never comes).
PYTEST_ARGS = ["-p", "no:cacheprovider", "-x", "-q", "--deselect",
               "tests/test_checkpoint_files.py::"
               "test_a_ctrl_c_while_files_are_opened_leaves_no_file_or_descriptor"]
# The files of Numba twins (kernels/__init__.py loads the .cu sources, config.py holds flags).
TWINS = ["activations", "clip", "counter_rng", "losses", "norm", "optimizers", "precision",
         "step", "vecmath"]
# set: (modules to mutate, tests selected, extra environment)
SETS = {
    "optim": (["gpunn/schedules.py", "gpunn/optim/*.py"],
              ["tests/test_schedules.py", "tests/test_schedules_fit.py",
               "tests/test_public_inputs.py", "tests/test_checkpoint.py",
               "tests/test_checkpoint_bounds.py", "tests/test_checkpoint_files.py",
               "tests/test_optim.py", "tests/test_optim_state.py", "tests/test_optim_owner.py",
               "tests/test_model_safety.py",
               # the optimizers pass clip_norm / clip_value on; the update launches the clip
               "tests/test_clip.py::test_bad_clip_arguments_name_the_argument",
               "tests/test_clip.py::test_a_nonfinite_norm_skips_the_update",
               "tests/test_clip.py::test_the_step_leaves_the_clipped_gradient",
               # the clip's own parts, and clip_norm / clip_value through copies and pickles
               "tests/test_clip.py::test_the_reduction_shape_depends_on_the_size_alone",
               "tests/test_clip.py::test_the_scratch_is_made_once_per_backend_dtype_and_size",
               "tests/test_clip.py::test_a_clip_is_true_when_it_clips",
               "tests/test_clip.py::test_copies_and_pickles_keep_the_clipping_apart",
               "tests/test_clip.py::test_optimizers_saved_before_clipping_load_without_it",
               "tests/test_optim_survivors.py",
               # mutmut's trampoline is one more frame: the warning's stacklevel moves
               "--deselect", "tests/test_optim_survivors.py::"
               "test_setting_an_owned_scalar_warns_at_the_callers_line"],
              {}),
    "checkpoint": (["gpunn/checkpoint/*.py"],
                   ["tests/test_checkpoint.py", "tests/test_checkpoint_bounds.py",
                    "tests/test_checkpoint_files.py", "tests/test_checkpoint_reader.py",
                    "tests/test_resume.py", "tests/test_resume_checks.py",
                    "tests/test_param_layout.py", "tests/test_checkpoint_survivors.py"], {}),
    "estimators": (["gpunn/sklearn.py"],
                   ["tests/test_sklearn.py", "tests/test_sklearn_weights.py",
                    "tests/test_sklearn_stream.py", "tests/test_sklearn_state.py",
                    "tests/test_sklearn_survivors.py",
                    "tests/test_clip.py::test_the_estimators_clip",
                    "tests/test_norm.py::test_estimators_take_norm_and_residual",
                    "tests/test_dropout.py::test_estimators_take_dropout",
                    # mutmut's trampoline is one more frame: the warning's stacklevel moves
                    "--deselect", "tests/test_sklearn_state.py::"
                    "test_the_convergence_warning_names_max_iter_and_points_at_the_caller"], {}),
    "step": (["gpunn/step.py"],
             ["tests/test_step.py", "tests/test_step_checks.py", "tests/test_resume.py",
              "tests/test_resume_checks.py",
              "tests/test_schedules_fit.py", "tests/test_divergence_honest.py",
              "tests/test_weights.py", "tests/test_dropout_training.py",
              "tests/test_fit.py::test_a_training_step_allocates_nothing",
              "tests/test_streaming.py::test_unshuffled_stream_equals_in_memory",
              "--deselect", "tests/test_step_checks.py::"  # a warning's frame, as above
              "test_the_old_batch_size_warning_points_at_the_caller"], {}),
    "twins": ([f"gpunn/kernels/{name}.py" for name in TWINS],
              ["tests/test_kernels.py", "tests/test_twin_edges.py", "tests/test_vecmath.py",
               "-k", "cpu or twin_edges or vecmath"],
              {"NUMBA_DISABLE_JIT": "1"}),
}


# Sets whose mutants run in children of a fresh fork server, not of mutmut's own process: a
# worker forked from the process that ran the step set's tests once hung on a lock (a futex
# some thread of that process held when it forked).
FORKSERVER = {"step": "forkserver"}


def copy_tree(workdir, strip_njit=False):
    """The repository's files (tracked, and untracked ones not ignored) into ``workdir``,
    with ``kernels/`` also at ``gpunn/kernels`` (the package's place once installed);
    ``strip_njit``: without the ``@njit(...)`` lines of the twin files there (mutmut mutates
    no decorated function; under NUMBA_DISABLE_JIT=1 ``njit`` is the identity anyway)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in names)):
        source = ROOT / name
        if source.is_file():
            for target in [workdir / name] + ([workdir / "gpunn" / name] if
                                              name.startswith("kernels/") else []):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    if strip_njit:
        for name in TWINS:
            path = workdir / "gpunn" / "kernels" / f"{name}.py"
            path.write_text(re.sub(r"(?m)^@njit\(.*\)\n", "", path.read_text()))


def mutmut_config(modules, tests, isolation="fork"):
    """The ``[mutmut]`` section of the workdir's setup.cfg."""
    lines = ["", "[mutmut]", "source_paths = gpunn", f"process_isolation = {isolation}",
             "only_mutate ="]
    lines += [f"    {m}" for m in modules]
    lines += ["pytest_add_cli_args ="] + [f"    {a}" for a in PYTEST_ARGS]
    lines += ["pytest_add_cli_args_test_selection ="]
    return "\n".join(lines + [f"    {t}" for t in tests]) + "\n"


def outcomes(workdir):
    """``{mutant name: outcome}`` from mutmut's per-file records (its table of exit codes)."""
    from mutmut.stats import status_by_exit_code

    result = {}
    for meta in (workdir / "mutants").rglob("*.meta"):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        result.update({name: status_by_exit_code[code] for name, code in codes.items()})
    return result


def _positive(text):
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("--sample", type=_positive, help="mutants to run, drawn at random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", help="mutant names (fnmatch patterns) to run")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--fresh", action="store_true", help="start from a new copy")
    args = parser.parse_args(argv)
    modules, tests, env = SETS[args.set]
    workdir = (args.workdir or Path(tempfile.gettempdir()) / "gpunn-mutation" / args.set).resolve()
    if workdir == ROOT or ROOT in workdir.parents:
        parser.error(f"--workdir: expected a folder outside the repository (mutmut writes its "
                     f"mutants/ there), got {workdir}")
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    # refreshed each time: mutmut re-mutates the files that changed
    copy_tree(workdir, strip_njit=env.get("NUMBA_DISABLE_JIT") == "1")
    with open(workdir / "setup.cfg", "a") as cfg:
        cfg.write(mutmut_config(modules, tests, FORKSERVER.get(args.set, "fork")))
    mutmut = [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", "1"]
    env = dict(os.environ, **env, PYTHONPATH=str(workdir))
    names = args.only or []
    if args.sample:
        if not (workdir / "mutants").exists() or not outcomes(workdir):  # generate only
            subprocess.run(["nice", "-n", "10", *mutmut, "no-such-mutant"], cwd=workdir,
                           env=env, capture_output=True)
        everything = sorted(outcomes(workdir))
        names = random.Random(args.seed).sample(everything, min(args.sample, len(everything)))
        print(f"sample: {len(names)} of {len(everything)} mutants (seed {args.seed})")
    with open(workdir / "mutmut-run.log", "w") as log:  # its progress display
        subprocess.run(["nice", "-n", "10", *mutmut, *names], cwd=workdir, env=env,
                       check=False, stdout=log, stderr=subprocess.STDOUT)
    found = outcomes(workdir)
    if not found:
        sys.exit(f"mutmut recorded no mutant: see {workdir / 'mutmut-run.log'}")
    ran = {n: o for n, o in found.items()
           if not names or any(fnmatch.fnmatch(n, p) for p in names)}
    by_module = Counter((n.split(".x")[0], o) for n, o in ran.items())
    for module in sorted({m for m, _ in by_module}):
        counts = {o: c for (m, o), c in by_module.items() if m == module}
        print(f"{module}: {sum(counts.values())} mutants: {dict(sorted(counts.items()))}")
    for name in sorted(n for n, o in ran.items() if o != "killed"):
        print(f"  {ran[name]}: {name}")


if __name__ == "__main__":
    main()

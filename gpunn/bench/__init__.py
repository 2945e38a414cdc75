"""``gpunn bench``: gpunn against its peers and against the machine's own limits.

Sections (``--sections``): ``updates`` (fused optimizer updates vs PyTorch and NumPy, and the
stream bandwidth), ``step`` (an MLP training step vs its GEMM floor, PyTorch eager and
NumPy), ``gpu`` (on CUDA: the step vs PyTorch eager, PyTorch CUDA graph and JAX jit, each in
its own process), ``vectorization`` (per-sample loops vs vectorized), ``batch`` (batch vs
mini-batch vs stochastic gradient descent) and ``imports`` (the CPU step in fresh processes
per import order). Contenders of a comparison run interleaved; figures are min / median /
max, comparisons ratios of medians; the JSON records machine, BLAS, threads, versions, commit.
"""

import os
import subprocess
import sys

SECTIONS = ("updates", "step", "gpu", "vectorization", "batch", "imports")
DEFAULT = {"cpu": ("updates", "step", "vectorization", "batch", "imports"),
           "cuda": ("updates", "step", "gpu", "vectorization", "batch")}
# BLAS kernel overrides a CI machine may set for reproducible tests; the benchmark measures
# the machine's own kernel unless --keep-blas-env.
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def add_parser(subparsers):
    """Register ``bench`` on the ``gpunn`` command line's subparsers."""
    parser = subparsers.add_parser("bench", help="benchmark gpunn against its peers and the "
                                   "machine's limits", description=__doc__.splitlines()[0])
    add_arguments(parser).set_defaults(func=run)
    return parser


def add_arguments(parser):
    """The options of ``gpunn bench``; returns ``parser``."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      default="full", help="a shorter run (< 3 minutes on 2 cores)")
    mode.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                      help="tiny sizes, seconds: checks that everything runs, not speed")
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR")
    parser.add_argument("--markdown", metavar="PATH", help="write the tables to PATH")
    parser.add_argument("--backend", choices=("auto", "cpu", "cuda"),
                        default=os.environ.get("GPUNN_BACKEND", "auto").strip() or "auto",
                        help="backend of gpunn's contenders (default: $GPUNN_BACKEND, else auto)")
    parser.add_argument("--threads", type=int, help="threads for Numba, BLAS and PyTorch "
                        "alike (default: all usable CPUs)")
    parser.add_argument("--sections", help=f"comma-separated subset of {','.join(SECTIONS)} "
                        "(default: all that apply to the backend)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--report-from", metavar="JSON", help="measure nothing: re-render an "
                        "earlier run's JSON (tables, plots)")
    parser.add_argument("--keep-blas-env", action="store_true", help=f"keep "
                        f"{' and '.join(BLAS_OVERRIDES)} (otherwise removed, in a child process)")
    return parser


def _argv(args):
    """The command-line options that give ``args`` again."""
    argv = [] if args.mode == "full" else [f"--{args.mode}"]
    for option in ("json", "plots", "markdown", "backend", "threads", "sections"):
        if getattr(args, option) is not None:
            argv += [f"--{option}", str(getattr(args, option))]
    return argv + ["--no-torch"] * args.no_torch


def _sections(args):
    if args.sections is None:
        from gpunn.backends import use_backend

        return list(DEFAULT["cpu" if use_backend(args.backend).backend.name == "cpu"
                            else "cuda"])
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not sections or set(sections) - set(SECTIONS):
        raise ValueError(f"--sections: expected names among {list(SECTIONS)}, "
                         f"got {args.sections!r}")
    return sections


def run(args):
    """Run the benchmark for parsed ``args``; the exit status."""
    if args.report_from:
        from gpunn.bench.runner import report_from

        return report_from(args)
    try:
        import pytest_benchmark  # noqa: F401 - its statistics and machine records are used
    except ImportError as missing:
        raise ImportError("gpunn bench needs pytest-benchmark: pip install "
                          "'gpunn[bench]'") from missing
    sections = _sections(args)
    args.sections = ",".join(sections)
    if not args.keep_blas_env and any(k in os.environ for k in BLAS_OVERRIDES):
        print(f"gpunn bench: running without {', '.join(BLAS_OVERRIDES)} (--keep-blas-env "
              "keeps them)", file=sys.stderr)
        env = {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}
        command = [sys.executable, "-m", "gpunn.bench", *_argv(args), "--keep-blas-env"]
        return subprocess.run(command, env=env, check=False).returncode
    from gpunn.bench.runner import run_all

    return run_all(args, sections)

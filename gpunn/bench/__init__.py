"""``gpunn bench``: gpunn against NumPy, PyTorch and the machine's own limits, in one process.

Sections (``--sections``): ``kernels`` (optimizer updates at N parameters, with the memory
bandwidth ceiling), ``peers`` (an MLP training step vs PyTorch, NumPy and its GEMM floor),
``vectorization`` (per-sample loops vs vectorized steps), ``training`` (batch vs mini-batch vs
stochastic gradient descent) and ``gpu`` (an H100 model, and measurements when a GPU is used).
Every comparison interleaves its contenders and reports min / median / max and ratios of
medians; the JSON carries the machine, BLAS, threads, versions and git commit.
"""

import os
import subprocess
import sys

SECTIONS = ("kernels", "peers", "vectorization", "training", "gpu")
DESCRIPTION = ("Benchmark gpunn against NumPy, PyTorch and the machine's own limits: optimizer "
               "updates (kernels), an MLP training step (peers), per-sample loops "
               "(vectorization), batch sizes (training) and a GPU model (gpu). Contenders run "
               "interleaved in one process; figures are min / median / max, comparisons ratios "
               "of medians.")
# BLAS kernel overrides a CI machine may set for reproducible tests; the benchmark measures
# the machine's own kernel unless --keep-blas-env.
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def add_parser(subparsers):
    """Register ``bench`` on the ``gpunn`` command line's subparsers."""
    parser = subparsers.add_parser("bench", help="benchmark gpunn against NumPy, PyTorch and "
                                   "the machine's limits", description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def add_arguments(parser):
    """The options of ``gpunn bench``."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a shorter run (< 3 minutes)")
    mode.add_argument("--smoke", action="store_true",
                      help="tiny sizes, seconds: checks that everything runs, not speed")
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR")
    parser.add_argument("--markdown", metavar="PATH", help="write a results page to PATH")
    parser.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda"),
                        help="backend of the gpunn contenders (default: auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for Numba, BLAS and PyTorch alike (default: all usable "
                        "CPUs)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--report-from", metavar="JSON",
                        help="measure nothing: print the tables and write the plots and page "
                        "of an earlier run's JSON")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help=f"keep {' and '.join(BLAS_OVERRIDES)} if set (they are "
                        "otherwise removed for the run, in a child process)")
    return parser


def _argv(args):
    """The command-line options that give ``args`` again."""
    argv = ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
    for option in ("json", "plots", "markdown", "backend", "threads", "sections"):
        value = getattr(args, option)
        if value is not None:
            argv += [f"--{option}", str(value)]
    return argv + (["--no-torch"] if args.no_torch else [])


def _rerun_without_blas_overrides(args):
    """Run the benchmark again in a child process without the BLAS overrides; its status."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}
    command = [sys.executable, "-m", "gpunn.bench", *_argv(args), "--keep-blas-env"]
    print(f"gpunn bench: removing {', '.join(k for k in BLAS_OVERRIDES if k in os.environ)} "
          "for the run (use --keep-blas-env to keep them)", file=sys.stderr)
    return subprocess.run(command, env=env, check=False).returncode


def run(args):
    """Run the benchmark for parsed ``args``; the exit status."""
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        raise ValueError(f"--sections: expected names among {list(SECTIONS)}, "
                         f"got {args.sections!r}")
    if args.report_from:
        from gpunn.bench.runner import report_from

        return report_from(args)
    if not args.keep_blas_env and any(k in os.environ for k in BLAS_OVERRIDES):
        return _rerun_without_blas_overrides(args)
    from gpunn.bench.runner import run_all

    return run_all(args, sections)

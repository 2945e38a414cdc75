"""``gpunn bench``: gpunn against its peers and against the machine's own limits.

Its sections are registered in :mod:`gpunn.bench.sections` (``gpunn bench --help`` lists
them). Contenders of a comparison run interleaved; figures are min / median / max,
comparisons ratios of medians; the JSON records machine, BLAS, threads, versions, commit.
"""

import argparse
import os
import sys

from gpunn._checks import choice_key
from gpunn.backends import CHOICES
from gpunn.bench.sections import SECTIONS, defaults

# BLAS kernel overrides a CI machine may set for reproducible tests.
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def add_parser(subparsers):
    """Register ``bench`` on the ``gpunn`` command line's subparsers."""
    parser = subparsers.add_parser("bench", help="benchmark gpunn against its peers and the "
                                   "machine's limits", **_texts())
    add_arguments(parser).set_defaults(func=run)
    return parser


def main_parser():
    """The parser of ``python -m gpunn.bench`` (the same options and help)."""
    return add_arguments(argparse.ArgumentParser(prog="python -m gpunn.bench", **_texts()))


def _texts():
    return {"description": __doc__.splitlines()[0], "epilog": _epilog(),
            "formatter_class": argparse.RawDescriptionHelpFormatter}


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
    parser.add_argument("--backend", choices=CHOICES, type=choice_key,
                        default=choice_key(os.environ.get("GPUNN_BACKEND", "auto")) or "auto",
                        help="backend of gpunn's contenders (default: $GPUNN_BACKEND, else auto)")
    parser.add_argument("--threads", type=int, help="threads for Numba, BLAS and PyTorch "
                        "alike (default: all usable CPUs)")
    parser.add_argument("--sections", help=f"comma-separated subset of {','.join(SECTIONS)} "
                        "(default: all that apply to the backend)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--report-from", metavar="JSON", help="measure nothing: re-render an "
                        "earlier run's JSON (tables, plots)")
    return parser


def _epilog():
    def when(section):
        backends = ", ".join(section.backends)
        return f"default on {backends}" if backends else "only when asked for"

    return "sections:\n" + "\n".join(f"  {name:<14}{s.summary} ({when(s)})"
                                      for name, s in SECTIONS.items())


def _sections(args):
    if args.sections is None:
        from gpunn.backends import use_backend

        return defaults("cpu" if use_backend(args.backend).backend.name == "cpu" else "cuda")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not sections or set(sections) - set(SECTIONS):
        raise ValueError(f"--sections: expected names among {list(SECTIONS)}, "
                         f"got {args.sections!r}")
    return sections


def check_files(args):
    """Every file the run will write, checked before anything is measured (they were once
    checked only when written, after the whole run): ``--json`` (its folder created, as
    ever), ``--markdown`` as files to replace, ``--plots`` as a writable folder."""
    from gpunn._files import check_folder, check_outputs

    if args.json:
        check_folder("--json", os.path.dirname(os.path.abspath(args.json)))
    for target in check_outputs({"--json": args.json, "--markdown": args.markdown}).values():
        target.close()  # written (atomically, checked again) when the report is done
    if args.plots:
        check_folder("--plots", args.plots)


def run(args):
    """Run the benchmark for parsed ``args``; the exit status."""
    check_files(args)
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
    overrides = [k for k in BLAS_OVERRIDES if k in os.environ]
    if overrides:
        print(f"gpunn bench: {', '.join(overrides)} set: measuring the BLAS kernel chosen "
              "there (recorded); unset to measure the machine's own", file=sys.stderr)
    from gpunn.bench.runner import run_all

    return run_all(args, sections)

"""The ``gpunn`` command line."""

import argparse
import json
import sys


def _cmd_info(args):
    from gpunn.info import info

    report = info()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        print(f"{key:>24}: {value}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="gpunn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="show the backend, device, versions, BLAS and threads")
    p_info.add_argument("--json", action="store_true", help="print the report as JSON")
    p_info.set_defaults(func=_cmd_info)
    return parser


def main(argv=None):
    """Entry point of the ``gpunn`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

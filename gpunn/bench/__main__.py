"""``python -m gpunn.bench``: the same as ``gpunn bench``."""

import argparse
import sys

from gpunn.bench import DESCRIPTION, add_arguments, run


def main(argv=None):
    """Parse ``argv`` (default: the command line) and run the benchmark."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = add_arguments(argparse.ArgumentParser(prog="python -m gpunn.bench",
                                                   description=DESCRIPTION))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

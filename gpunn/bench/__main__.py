"""``python -m gpunn.bench``: the same as ``gpunn bench``."""

import sys

from gpunn.bench.command import main_parser, run

if __name__ == "__main__":
    sys.exit(run(main_parser().parse_args()))

"""``python -m gpunn.bench``: the same as ``gpunn bench``."""

import argparse
import sys

from gpunn.bench import add_arguments, run

if __name__ == "__main__":
    sys.exit(run(add_arguments(argparse.ArgumentParser(prog="python -m gpunn.bench"))
                 .parse_args()))

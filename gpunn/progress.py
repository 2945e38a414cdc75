"""What :func:`gpunn.fit` tells the user while it trains: a bar, a line per epoch, log records.

Every epoch goes to the ``logging`` logger ``"gpunn"`` at INFO level (shown once the
application configures logging, e.g. ``logging.basicConfig(level=logging.INFO)``).
``verbose`` decides what is printed besides: 0 nothing, 1 a tqdm bar on a terminal and a line
per epoch elsewhere (logs, notebooks, CI), 2 a line per epoch.
"""

import logging
import sys

from gpunn._checks import check_bool, check_choice

logger = logging.getLogger("gpunn")


def check_verbose(verbose, progress):
    """``(bar, lines)``: whether to show a tqdm bar and whether to print a line per epoch.

    Args:
        verbose: None (decided by ``progress``), 0, 1 or 2.
        progress: the older switch: True a bar, False nothing, None a bar on a terminal.
    """
    terminal = sys.stderr.isatty()
    if verbose is None:
        return (terminal if progress is None else check_bool("progress", progress)), False
    verbose = check_choice("verbose", verbose, (0, 1, 2))
    if progress is not None:
        raise ValueError(f"progress: expected None when verbose is given, got {progress!r}")
    return verbose == 1 and terminal, verbose == 2 or (verbose == 1 and not terminal)


def epoch_line(epoch, epochs, logs, labels=None, cli=False):
    """One line for the epoch: ``epoch 3/20  loss 0.1234  val_loss ...  lr ...  time 0.41 s
    total 1.23 s`` (the epoch's training time, then the run's so far; kernel compiles are in
    neither).

    The one epoch printer (``fit(verbose=...)``, the log records, ``gpunn train``).

    Args:
        epoch, epochs: this epoch (from 1) and the number asked for.
        logs: :meth:`gpunn.History.logs` of the epoch.
        labels: ``{log name: label}`` for the names shown differently (default none).
        cli: the ``gpunn train`` form: loss and accuracy to 4 decimals, accuracy instead of
            the validation loss when both exist, no learning rate.
    """
    labels = labels or {}
    shown = ["loss", "val_loss", "val_accuracy"]
    if cli:
        shown.remove("val_loss" if "val_accuracy" in logs else "val_accuracy")
    parts = [f"epoch {epoch:>{len(str(epochs))}}/{epochs}"]
    for key in (key for key in shown if key in logs):
        value = f"{logs[key]:.4f}" if cli and key != "val_loss" else f"{logs[key]:.4g}"
        parts.append(f"{labels.get(key, key)} {value}")
    if not cli:
        parts.append(f"lr {logs['lr']:.3g}")
    # the epoch's own time, then the running total (the column this line always ended with)
    parts.append(f"time {logs['epoch_seconds']:.2f} s  total {logs['seconds']:.2f} s")
    return "  ".join(parts)


def report_epoch(epoch, epochs, logs, lines):
    """Log the epoch (INFO on ``"gpunn"``) and print it to stdout if ``lines``."""
    if lines or logger.isEnabledFor(logging.INFO):
        text = epoch_line(epoch, epochs, logs)
        logger.info(text)
        if lines:
            print(text, flush=True)


def announce_compile():
    """Say, once, that the kernels are being compiled (on stderr: stdout keeps its lines)."""
    print("gpunn: compiling kernels (first run, a few seconds; Numba caches them for later "
          "runs)", file=sys.stderr, flush=True)


def report_compile(seconds):
    """Say how long the first run's compile took, and that the epoch times leave it out."""
    print(f"gpunn: compiled kernels in {seconds:.1f} s (not counted in epoch times)",
          file=sys.stderr, flush=True)

"""The ``gpunn`` command line."""

import argparse
import contextlib
import json
import os
import signal
import sys
import time

# Defaults of `gpunn train`: digits and breast_cancer reach >= 0.95 test accuracy in seconds.
TRAIN_DEFAULTS = {"hidden": "128", "activation": "relu", "optimizer": "adam", "batch_size": "32",
                  "epochs": 20, "test_size": 0.25, "seed": 0, "dtype": "float32",
                  "precision": "fp32"}


# The widest layer --hidden takes: GEMM dimensions are 32-bit in cuBLAS (and wider layers
# need gigabytes per row anyway).
MAX_WIDTH = 2 ** 31 - 1


def _cmd_info(args):
    from gpunn.backends.info import info

    report = info()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>24}: {value}")
    # The report either way; a failing status when the backend asked for cannot be used.
    return 1 if report["backend"] == "unavailable" else 0


def _parse_hidden(text):
    """``"64,64"`` -> ``[64, 64]``; ``"none"`` -> ``[]`` (no hidden layer, asked for by name)."""
    if text.strip().lower() == "none":
        return []
    parts = [part.strip() for part in text.split(",")]
    try:
        if not all(parts):
            raise ValueError
        sizes = [int(part) for part in parts]
        if not 1 <= min(sizes) <= max(sizes) <= MAX_WIDTH:
            raise ValueError
        return sizes
    except ValueError:
        raise ValueError(f"--hidden: expected comma-separated layer sizes from 1 to "
                         f"{MAX_WIDTH} such as 64,64 (or 'none' for no hidden layer), got "
                         f"{text!r}") from None


def _parse_batch_size(text):
    if text.strip().lower() == "full":
        return None
    try:
        size = int(text)
        if size < 1:
            raise ValueError
        return size
    except ValueError:
        raise ValueError(f"--batch-size: expected a positive integer or 'full', "
                         f"got {text!r}") from None


def _check_numbers(args):
    """The options of ``gpunn train`` that need no data (numbers, the activation and norm
    names) checked by their option names before any data is read (fit and MLP would name
    their own arguments, after loading)."""
    import numpy as np

    from gpunn._checks import check_choice, check_int, check_number, check_positive
    from gpunn.layernorm import NORMS
    from gpunn.layers import ACTIVATIONS
    from gpunn.train import MAX_EPOCHS

    if args.lr is not None:  # a normal number of the model's dtype (the update's precision)
        info = np.finfo(args.dtype)
        check_number("--lr", args.lr, low=float(info.tiny), high=float(info.max))
    check_int("--epochs", args.epochs, low=1, high=MAX_EPOCHS)
    check_int("--seed", args.seed, low=0)
    check_choice("--activation", args.activation, ACTIVATIONS)
    if args.norm is not None:
        check_choice("--norm", args.norm, NORMS)
    check_number("--test-size", args.test_size, low=0.0, high=1.0, high_open=True)
    if args.val_split is not None:
        check_number("--val-split", args.val_split, low=0.0, high=1.0, low_open=True,
                     high_open=True)
    if args.early_stopping is not None:
        check_int("--early-stopping", args.early_stopping, low=0)
    if args.comm_timeout is not None:
        check_positive("--comm-timeout", args.comm_timeout)


def _parse_schedule(text):
    """``"name"`` or ``"name,key=value,..."`` -> ``(name, {key: value})`` (JSON values)."""
    if text is None:
        return None, {}
    name, *pairs = [part.strip() for part in text.split(",")]
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key.strip() in kwargs:
            raise ValueError(f"--schedule: expected name,key=value,... with each key once, "
                             f"got {text!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value.strip()
    return name, kwargs


def _load_data(args):
    """Train/test parts of the data, standardized; the preprocessing to save with the model."""
    from gpunn import cli_data

    return cli_data.load(args)


def _build_model(hidden, args, n_features, data):
    from gpunn.model import MLP

    n_out, output = data.output_spec()
    return MLP([n_features, *hidden, n_out], activation=args.activation, output=output,
               dtype=args.dtype, seed=args.seed, precision=args.precision, norm=args.norm,
               residual=args.residual, dropout=args.dropout)


def _print_epoch(epochs, name):
    """The CLI's epoch line, through gpunn.progress's one printer: the held-out set is called
    ``name`` (test or val) and the loss keeps the label ``cost`` that scripts parse."""
    from gpunn.progress import epoch_line

    labels = {"loss": "cost", "val_accuracy": f"{name}_acc", "val_loss": f"{name}_loss"}

    def callback(epoch, history, model):
        print(epoch_line(epoch, epochs, history.logs(), labels, cli=True), flush=True)

    return callback


def _get_comm(args):
    """The communicator ``--distributed`` asks for (auto: NCCL for the CUDA backend, else MPI,
    even for one rank); one process without ``--distributed``."""
    from gpunn.comm import auto_kind, get_comm

    kind = auto_kind() if args.distributed == "auto" else args.distributed
    return get_comm(kind, timeout=args.comm_timeout)


def _silent(*args, **kwargs):
    pass


def _check_outputs(args):
    """Check the output paths before training (a bad path must not cost the run): writable,
    apart from each other and from the input data. Returns ``{option: Target}``."""
    from gpunn._files import check_outputs

    inputs = {f"--{kind}": getattr(args, kind, None)
              for kind in ("csv", "npz", "npy", "parquet", "targets")}
    if args.plot is not None:
        _plot_format(args.plot)
    return check_outputs({"--save": args.save, "--plot": args.plot}, inputs)


def _plot_format(path):
    """The image format of ``--plot`` from its suffix (PNG without one), one matplotlib
    writes by itself (not ``pgf``, which runs LaTeX); checked before training."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise ValueError("--plot: needs matplotlib (install the 'plot' extra: pip install "
                         "'gpunn[plot]'), got none") from None
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if not suffix:
        return "png"
    formats = sorted(set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"})
    if suffix not in formats:
        raise ValueError(f"--plot: expected a file name ending in an image format matplotlib "
                         f"writes ({', '.join(formats)}), got {path!r}")
    return suffix


class _ProgressOut:
    """A stream of progress lines (``gpunn train``'s stdout and stderr) that a reader may stop
    taking (``| head``) or a full disk refuse. Then the lines are dropped and the work goes on
    (the model is saved): :attr:`lost` holds the error, said at the end where it still can be."""

    def __init__(self, stream):
        self.stream, self.lost = stream, None

    def _lose(self, exc):
        self.lost = exc
        try:  # the stream's buffer would fail again at exit: its fd goes to /dev/null
            _to_devnull(self.stream.fileno())
        except (OSError, ValueError, AttributeError):  # no fd (a test's capture)
            pass

    def write(self, text):
        if self.lost is None:
            try:
                return self.stream.write(text)
            except OSError as exc:  # BrokenPipeError, ENOSPC, EIO
                self._lose(exc)
        return len(text)

    def flush(self):
        if self.lost is None:
            try:
                self.stream.flush()
            except OSError as exc:
                self._lose(exc)

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the stream's
        return getattr(self.stream, name)


def _to_devnull(fd):
    """Point ``fd`` at /dev/null (without keeping another descriptor open)."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


@contextlib.contextmanager
def _progress_streams(command):
    """stdout and stderr of a command whose printing is only progress (its results go to
    files): a failing stream drops its lines instead of stopping the work; one line on stderr
    at the end says which stream failed, if stderr still works."""
    guarded = {name: _ProgressOut(getattr(sys, name)) for name in ("stdout", "stderr")
               if getattr(sys, name) is not None}  # a stream started closed prints nothing
    for name, stream in guarded.items():
        setattr(sys, name, stream)
    try:
        yield
    finally:
        for name, stream in guarded.items():
            setattr(sys, name, stream.stream)
        err = guarded.get("stderr")
        for name, stream in guarded.items():
            if stream.lost is not None and (err is None or err.lost is None):
                try:
                    print(f"gpunn {command}: {name}: {stream.lost.strerror or stream.lost}; "
                          "the lines after it were dropped, the work went on",
                          file=sys.stderr)
                except OSError:
                    pass


def _cmd_train(args):
    with _progress_streams("train"):
        return _train(args)


def _cmd_predict(args):
    from gpunn import cli_data

    if args.out is None:  # stdout is the output: a failure there is the command's
        return cli_data.predict_command(args)
    with _progress_streams("predict"):  # the output is the file; stdout only says so
        return cli_data.predict_command(args)


def _train(args):
    from gpunn import cli_data
    from gpunn.backends import use_backend
    from gpunn.layers import check_dropout
    from gpunn.train import fit

    check_dropout("--dropout", args.dropout)  # before the data is read
    _check_numbers(args)
    optimizer, lr = _optimizer(args)
    schedule, schedule_kwargs = _parse_schedule(args.schedule)
    if schedule is not None:
        from gpunn.schedules import get_schedule

        try:
            schedule = get_schedule(schedule, **schedule_kwargs)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"--schedule: {exc}") from None
    batch_size = _parse_batch_size(args.batch_size)
    hidden = _parse_hidden(args.hidden)
    class_weight = cli_data.parse_class_weight(args.class_weight)
    targets = _check_outputs(args)
    if args.backend is not None:
        use_backend(args.backend)
    comm = _get_comm(args)
    say = print if comm.rank == 0 else _silent  # rank 0 alone prints, plots and saves
    data = _load_data(args)
    class_weight = cli_data.class_weight(class_weight, data)
    try:
        model = _build_model(hidden, args, data.X_train.shape[1], data)
    except (ValueError, TypeError) as exc:
        raise _as_option(exc, args) from None
    if args.save and comm.rank == 0:
        cli_data.check_save(model, data)
    say(f"backend: {model.backend.name} ({model.backend.device})")
    if args.distributed is not None:
        say(f"distributed: {comm.size} rank(s) through {comm.name}, each "
            f"{batch_size or 'its share of all'} rows of every global batch")
    say(f"data: {data.describe()}")
    say(f"model: {model}, {model.n_params} parameters")
    validation, split, name, callbacks = cli_data.validation(args, data, say)
    started = time.perf_counter()
    printer = [_print_epoch(args.epochs, name)] if comm.rank == 0 else []
    compiled = _announce_compile(comm.rank == 0)
    try:
        history = fit(model, data.X_train, data.y_train, optimizer=optimizer, lr=lr,
                      epochs=args.epochs, batch_size=batch_size, schedule=schedule,
                      seed=args.seed, validation_data=validation, validation_split=split,
                      progress=False, comm=comm, callbacks=[*printer, *callbacks],
                      class_weight=class_weight)
    except ValueError as exc:  # fit names its arguments; here they are options
        raise _as_option(exc, args) from None
    elapsed = time.perf_counter() - started
    compiled()
    if comm.rank == 0:
        _report(args, model, history, elapsed, data, callbacks, targets)
    return 0


def _optimizer(args):
    """``(optimizer, lr)`` for fit: the name and --lr, or with --clip-norm / --clip-value the
    optimizer object that clips (checked here, before the data is read)."""
    from gpunn.optim import get_optimizer
    from gpunn.optim.clip import check_clip

    clip = {"clip_norm": check_clip("--clip-norm", args.clip_norm),
            "clip_value": check_clip("--clip-value", args.clip_value)}
    none = clip == {"clip_norm": None, "clip_value": None}
    optimizer = get_optimizer(args.optimizer, args.lr, **({} if none else clip))
    try:  # every value the update takes, in the model's precision: refused now, by option
        optimizer.check_dtype(args.dtype)
    except ValueError as exc:
        raise _as_option(exc, args) from None
    return (args.optimizer, args.lr) if none else (optimizer, None)


def _announce_compile(say):
    """Have the first run's kernel compile said once on stderr (when ``say``); returns
    ``done()``, which says how long it took and drops the announcement."""
    from gpunn.backends.compile_watch import compile_seconds, forget_announcement, watch_compiles
    from gpunn.progress import announce_compile, report_compile

    watch_compiles(announce_compile if say else None)
    before = compile_seconds()

    def done():
        forget_announcement()
        if say and compile_seconds() > before:
            report_compile(compile_seconds() - before)

    return done


def _report(args, model, history, elapsed, data, callbacks, targets):
    """Scores, early stopping, the plot and the saved model (rank 0's job), each written
    atomically to the target checked before training."""
    from gpunn import cli_data
    from gpunn._files import atomic_write

    for cb in callbacks:
        if cb.stopped_epoch:
            print(f"early stopping: stopped after epoch {cb.stopped_epoch}, kept epoch "
                  f"{cb.best_epoch} (val_loss {cb.best:.4g})")
    print(f"{data.scores(model)}  ({elapsed:.2f} s in all, {history.seconds[-1]:.2f} s "
          "training)")
    if args.save:  # the model first: a failing plot must not lose it
        cli_data.save(targets["--save"], model, data)
        print(f"saved: {args.save} (takes raw rows: gpunn predict --model {args.save} ..., "
              "or gpunn.load)")
    if args.plot:
        atomic_write(targets["--plot"],
                     lambda file: history.plot(file, image_format=_plot_format(args.plot)))
        print(f"plot: {args.plot}")


def _names(choices):
    """``"a, b or c"``: the names of a registry, for help text."""
    names = [str(name) for name in choices]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _add_train_parser(sub):
    from gpunn._checks import choice_key
    from gpunn.backends.gemm_precision import PRECISIONS
    from gpunn.comm import KINDS
    from gpunn.datasets import DATASETS
    from gpunn.layernorm import NORMS
    from gpunn.layers import ACTIVATIONS
    from gpunn.optim import OPTIMIZERS
    from gpunn.schedules import SCHEDULES

    d = TRAIN_DEFAULTS
    p = sub.add_parser("train", allow_abbrev=False,
                       help="train an MLP on a bundled dataset or your own file")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--dataset", choices=DATASETS, default=None,
                        help="a bundled dataset (default digits)")
    _add_data_arguments(p, source)
    p.add_argument("--hidden", default=d["hidden"],
                   help="hidden layer sizes, comma-separated, or 'none' (default %(default)s)")
    # Checked by the library (exit 1 with its message naming the choices), not by argparse.
    p.add_argument("--activation", default=d["activation"], metavar="NAME",
                   help=f"{_names(sorted(ACTIVATIONS))} (default %(default)s)")
    p.add_argument("--norm", default=None, metavar="NAME",
                   help=f"{_names(sorted(NORMS))}: every layer after the first normalizes its "
                        "input (default: none)")
    p.add_argument("--residual", action="store_true",
                   help="hidden layers after the first are pre-norm residual blocks (equal "
                        "--hidden widths, at least two)")
    p.add_argument("--dropout", type=float, default=0.0, metavar="P",
                   help="drop probability of every hidden layer's outputs while training "
                        "(inverted dropout; the same units on every backend) (default "
                        "%(default)s)")
    p.add_argument("--optimizer", default=d["optimizer"], metavar="NAME",
                   help=f"{_names(sorted(OPTIMIZERS))} (default %(default)s)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: the optimizer's; required for sgd, momentum)")
    p.add_argument("--clip-norm", type=float, default=None, metavar="MAX",
                   help="clip each step's gradient to this global norm (PyTorch's "
                        "clip_grad_norm_) (default: no clipping)")
    p.add_argument("--clip-value", type=float, default=None, metavar="MAX",
                   help="clamp each gradient entry to [-MAX, MAX] (PyTorch's clip_grad_value_) "
                        "(default: no clamping)")
    p.add_argument("--batch-size", default=d["batch_size"],
                   help="rows per mini-batch, or 'full' (default %(default)s)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="(default %(default)s)")
    p.add_argument("--schedule", default=None, metavar="NAME[,KEY=VALUE...]",
                   help=f"learning-rate schedule: {_names(sorted(SCHEDULES))}, with its "
                        "arguments, e.g. exponential,rate=0.95 or inverse_time,decay=0.1,per=step "
                        "or cosine,period=100,per=step,warmup=10 (warmup= wraps any schedule in "
                        "a linear warm-up) (default: constant)")
    p.add_argument("--seed", type=int, default=d["seed"], help="(default %(default)s)")
    p.add_argument("--class-weight", default=None, metavar="balanced|LABEL=W,...",
                   help="weight the training loss by class: balanced (n / (classes * count), "
                        "as scikit-learn) or LABEL=WEIGHT pairs, others 1 (default: none)")
    _add_backend_argument(p)
    p.add_argument("--dtype", choices=("float32", "float64"), default=d["dtype"])
    p.add_argument("--precision", choices=PRECISIONS, type=choice_key, default=d["precision"],
                   help="what the GEMMs compute in: fp32, tf32 (TF32 inputs) or bf16 (bfloat16 "
                        "inputs, float32 master weights); float32 only (default %(default)s)")
    p.add_argument("--test-size", type=float, default=d["test_size"],
                   help="held-out fraction (of every class) for the final score; 0 for none "
                        "(default %(default)s)")
    p.add_argument("--val-split", type=float, default=None, metavar="FRACTION",
                   help="fraction of the training rows (shuffled) validated after each epoch")
    p.add_argument("--early-stopping", type=int, nargs="?", const=10, default=None,
                   metavar="PATIENCE", help="stop when the validation loss has not improved "
                   "for PATIENCE epochs (default 10; 0 stops at the first epoch that does not "
                   "improve, as Keras' patience=0) and keep the best epoch; needs a "
                   "validation split (--val-split, 0.1 if not given)")
    p.add_argument("--plot", metavar="PATH", help="write cost vs epoch and vs seconds (the "
                   "format from the suffix: .png, .pdf, .svg, ...; PNG without one)")
    p.add_argument("--save", metavar="PATH",
                   help="write the trained model (safetensors checkpoint, gpunn.load reads it)")
    p.add_argument("--distributed", nargs="?", const="auto", choices=KINDS,
                   help="data-parallel over the ranks mpiexec/srun started: --batch-size rows "
                        "per rank; auto: NCCL for the cuda backend, else MPI (needs the 'mpi' "
                        "extra)")
    p.add_argument("--comm-timeout", type=float, default=None, metavar="SECONDS",
                   help="how long a rank waits for the others in a collective before all "
                        "stop (default: GPUNN_COMM_TIMEOUT, else 300)")
    p.set_defaults(func=_cmd_train)


def _add_data_arguments(p, source):
    source.add_argument("--csv", metavar="FILE", help="your data: CSV with a header row")
    source.add_argument("--npz", metavar="FILE", help="your data: .npz with arrays X and y")
    source.add_argument("--npy", metavar="FILE",
                        help="your data, streamed (not loaded whole): 2-D .npy (or a folder of "
                             ".npy shards), the target in a column (default last) or --targets")
    source.add_argument("--parquet", metavar="FILE",
                        help="your data, streamed: a Parquet file (or folder of them) of "
                             "numeric columns, the target a column (default last) or --targets")
    p.add_argument("--target", metavar="COL",
                   help="target column: a CSV or Parquet column name (default the last "
                        "column), a .npy column index, an .npz array name (default y)")
    p.add_argument("--targets", metavar="FILE",
                   help="with --npy/--parquet: the targets in their own .npy or Parquet file, "
                        "one per row of the data (then every data column is a feature)")
    p.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="default: classes for text or few integer values, else regression")


def _add_predict_parser(sub):

    p = sub.add_parser("predict", allow_abbrev=False,
                       help="predict with a saved model for the rows of a file")
    p.add_argument("--model", required=True, metavar="FILE", help="a model saved by train")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="FILE", help="rows to predict (CSV with a header)")
    source.add_argument("--npz", metavar="FILE", help="rows to predict (.npz with array X)")
    source.add_argument("--npy", metavar="FILE", help="rows to predict (2-D .npy)")
    p.add_argument("--out", metavar="FILE", help="CSV of predictions (default: stdout)")
    _add_backend_argument(p)
    p.set_defaults(func=_cmd_predict)


def _add_backend_argument(p):
    from gpunn._checks import choice_key
    from gpunn.backends import CHOICES

    p.add_argument("--backend", choices=CHOICES, type=choice_key, default=None,
                   help="default: GPUNN_BACKEND, else auto")


def build_parser():
    parser = argparse.ArgumentParser(prog="gpunn", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", allow_abbrev=False,
                            help="show the backend, device, versions, BLAS and threads")
    p_info.add_argument("--json", action="store_true", help="print the report as JSON")
    p_info.set_defaults(func=_cmd_info)
    _add_train_parser(sub)
    _add_predict_parser(sub)
    from gpunn.backends.precompile import add_parser as add_compile_parser
    from gpunn.bench.command import add_parser as add_bench_parser

    add_bench_parser(sub)
    add_compile_parser(sub)
    return parser


def main(argv=None):
    """Entry point of the ``gpunn`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # stdout's reader stopped early (gpunn predict ... | head): end quietly with the
        # status of a filter that SIGPIPE ended, and keep the exit's flush from failing too
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        _to_devnull(sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:  # Ctrl-C: what the work wrote atomically is whole or absent
        print(f"gpunn {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except MemoryError as exc:  # numpy's names the size it could not allocate
        print(f"gpunn {args.command}: error: out of memory: {exc or 'an allocation failed'} "
              "(a smaller model, batch or data set needs less)", file=sys.stderr)
        return 1
    except (ValueError, TypeError, ImportError, RuntimeError, OSError) as exc:
        print(f"gpunn {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 1


# fit's argument names and the options that set them.
_OPTIONS = {"batch_size": "--batch-size", "epochs": "--epochs", "lr": "--lr",
            "class_weight": "--class-weight", "seed": "--seed", "clip_norm": "--clip-norm",
            "clip_value": "--clip-value", "activation": "--activation", "norm": "--norm",
            "residual": "--residual", "dropout": "--dropout", "precision": "--precision"}


def _as_option(exc, args=None):
    """``exc`` with a leading fit or MLP argument name replaced by its option's (the learning
    rate named with --schedule where a schedule gives it)."""
    name, sep, rest = str(exc).partition(": ")
    if not sep or name not in _OPTIONS:
        return exc
    option = _OPTIONS[name]
    if name == "lr" and args is not None and args.schedule is not None:
        option = "--lr or --schedule (a learning rate the schedule gives)"
    return type(exc)(f"{option}: {rest}")


def _message(exc):
    """An error's text for a person: an OSError without Python's ``[Errno N]`` prefix."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + ("" if exc.filename is None else f": {exc.filename!r}")
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())

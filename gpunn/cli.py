"""The ``gpunn`` command line."""

import argparse
import json
import sys
import time

# Defaults of `gpunn train`: digits and breast_cancer reach >= 0.95 test accuracy in seconds.
TRAIN_DEFAULTS = {"hidden": "128", "activation": "relu", "optimizer": "adam", "batch_size": "32",
                  "epochs": 20, "test_size": 0.25, "seed": 0, "dtype": "float32"}


def _cmd_info(args):
    from gpunn.backends.info import info

    report = info()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        print(f"{key:>24}: {value}")
    return 0


def _parse_hidden(text):
    """``"64,64"`` -> ``[64, 64]``; ``"none"`` -> ``[]`` (no hidden layer, asked for by name)."""
    if text.strip().lower() == "none":
        return []
    parts = [part.strip() for part in text.split(",")]
    try:
        if not all(parts):
            raise ValueError
        return [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"--hidden: expected comma-separated layer sizes such as 64,64 (or "
                         f"'none' for no hidden layer), got {text!r}") from None


def _parse_batch_size(text):
    if text.strip().lower() == "full":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--batch-size: expected a positive integer or 'full', "
                         f"got {text!r}") from None


def _parse_schedule(text):
    """``"name"`` or ``"name,key=value,..."`` -> ``(name, {key: value})`` (JSON values)."""
    if text is None:
        return None, {}
    name, *pairs = [part.strip() for part in text.split(",")]
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--schedule: expected name,key=value,..., got {text!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value.strip()
    return name, kwargs


def _load_data(args):
    from gpunn import datasets

    X, y = datasets.load(args.dataset, seed=args.seed)
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, args.test_size, args.seed)
    X_train, X_test = datasets.standardize(X_train, X_test)
    return X_train, X_test, y_train, y_test


def _build_model(hidden, args, n_features, n_classes):
    from gpunn.model import MLP

    binary = n_classes == 2
    sizes = [n_features, *hidden, 1 if binary else n_classes]
    return MLP(sizes, activation=args.activation, output="sigmoid" if binary else "softmax",
               dtype=args.dtype, seed=args.seed)


def _print_epoch(epochs):
    def callback(epoch, history, model):
        line = f"epoch {epoch:>{len(str(epochs))}}/{epochs}  cost {history.cost[-1]:.4f}"
        if history.val_accuracy:
            line += f"  test_acc {history.val_accuracy[-1]:.4f}"
        print(f"{line}  {history.seconds[-1]:.2f} s", flush=True)

    return callback


def _get_comm(args):
    """The communicator ``--distributed`` asks for: NCCL for the CUDA backend, else MPI."""
    from gpunn.backends import get_backend
    from gpunn.comm import get_comm

    kind = args.distributed
    if kind == "auto":
        kind = "nccl" if get_backend().name == "cuda" else "mpi"
    return get_comm(kind, timeout=args.comm_timeout)


def _silent(*args, **kwargs):
    pass


def _check_outputs(args):
    """Refuse output paths that cannot be written before training: a bad path must not cost
    the run."""
    from gpunn.fileio import check_target

    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path is not None:
            check_target(option, path)


def _cmd_train(args):
    import numpy as np

    from gpunn.backends import use_backend
    from gpunn.train import fit

    schedule, schedule_kwargs = _parse_schedule(args.schedule)
    batch_size = _parse_batch_size(args.batch_size)
    hidden = _parse_hidden(args.hidden)
    _check_outputs(args)
    if args.backend is not None:
        use_backend(args.backend)
    comm = _get_comm(args)
    say = print if comm.rank == 0 else _silent  # rank 0 alone prints, plots and saves
    X_train, X_test, y_train, y_test = _load_data(args)
    model = _build_model(hidden, args, X_train.shape[1], int(np.max(y_train)) + 1)
    say(f"backend: {model.backend.name} ({model.backend.device})")
    if args.distributed is not None:
        say(f"distributed: {comm.size} rank(s) through {comm.name}, each "
            f"{batch_size or 'its share of all'} rows of every global batch")
    say(f"data: {args.dataset}, {len(y_train)} train / {len(y_test)} test rows, "
        f"{X_train.shape[1]} features, {int(np.max(y_train)) + 1} classes")
    say(f"model: {model}, {model.n_params} parameters")
    if schedule is not None:
        from gpunn.schedules import get_schedule

        schedule = get_schedule(schedule, **schedule_kwargs)
    started = time.perf_counter()
    history = fit(model, X_train, y_train, optimizer=args.optimizer, lr=args.lr,
                  epochs=args.epochs, batch_size=batch_size, schedule=schedule, seed=args.seed,
                  validation_data=(X_test, y_test), progress=False, comm=comm,
                  callbacks=[_print_epoch(args.epochs)] if comm.rank == 0 else [])
    elapsed = time.perf_counter() - started
    if comm.rank == 0:
        _report(args, model, history, elapsed, (X_train, X_test, y_train, y_test))
    return 0


def _report(args, model, history, elapsed, data):
    """Accuracies, the plot and the saved model (rank 0's job)."""
    import numpy as np

    X_train, X_test, y_train, y_test = data
    train_acc = float(np.mean(model.predict(X_train) == y_train))
    test_acc = float(np.mean(model.predict(X_test) == y_test))
    print(f"train accuracy {train_acc:.4f}  test accuracy {test_acc:.4f}  "
          f"({elapsed:.2f} s in all, {history.seconds[-1]:.2f} s training)")
    if args.save:  # the model first: a failing plot must not lose it
        model.save(args.save)
        print(f"saved: {args.save} (read it back with gpunn.load)")
    if args.plot:
        history.plot(args.plot)
        print(f"plot: {args.plot}")


def _add_train_parser(sub):
    from gpunn.datasets import DATASETS

    d = TRAIN_DEFAULTS
    p = sub.add_parser("train", help="train an MLP on a bundled dataset and report accuracy")
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--hidden", default=d["hidden"],
                   help="hidden layer sizes, comma-separated, or 'none' (default %(default)s)")
    p.add_argument("--activation", default=d["activation"],
                   help="identity, sigmoid, relu or tanh (default %(default)s)")
    p.add_argument("--optimizer", default=d["optimizer"],
                   help="sgd, momentum, rmsprop, adam or adamw (default %(default)s)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: the optimizer's; required for sgd, momentum)")
    p.add_argument("--batch-size", default=d["batch_size"],
                   help="rows per mini-batch, or 'full' (default %(default)s)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="(default %(default)s)")
    p.add_argument("--schedule", default=None, metavar="NAME[,KEY=VALUE...]",
                   help="learning-rate schedule, e.g. exponential,rate=0.95 or "
                        "inverse_time,decay=0.1,per=step (default: constant)")
    p.add_argument("--seed", type=int, default=d["seed"], help="(default %(default)s)")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda"), default=None,
                   help="default: GPUNN_BACKEND, else auto")
    p.add_argument("--dtype", choices=("float32", "float64"), default=d["dtype"])
    p.add_argument("--test-size", type=float, default=d["test_size"],
                   help="held-out fraction of every class (default %(default)s)")
    p.add_argument("--plot", metavar="PATH", help="write cost vs epoch and vs seconds (PNG)")
    p.add_argument("--save", metavar="PATH",
                   help="write the trained model (safetensors checkpoint, gpunn.load reads it)")
    p.add_argument("--distributed", nargs="?", const="auto", choices=("auto", "mpi", "nccl"),
                   help="data-parallel over the ranks mpiexec/srun started: --batch-size rows "
                        "per rank; auto: NCCL for the cuda backend, else MPI (needs the 'mpi' "
                        "extra)")
    p.add_argument("--comm-timeout", type=float, default=None, metavar="SECONDS",
                   help="how long a rank waits for the others in a collective before all "
                        "stop (default: GPUNN_COMM_TIMEOUT, else 300)")
    p.set_defaults(func=_cmd_train)


def build_parser():
    parser = argparse.ArgumentParser(prog="gpunn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="show the backend, device, versions, BLAS and threads")
    p_info.add_argument("--json", action="store_true", help="print the report as JSON")
    p_info.set_defaults(func=_cmd_info)
    _add_train_parser(sub)
    from gpunn.bench import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def main(argv=None):
    """Entry point of the ``gpunn`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError, RuntimeError, OSError) as exc:
        print(f"gpunn {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

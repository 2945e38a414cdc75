"""Real data: MNIST (:mod:`gpunn.bench.mnist`) trained by gpunn and its peers, end to end.

The same model everywhere: 784-256-128-10, relu, softmax cross-entropy, Adam (lr 1e-3), each
library's own initialization, inputs scaled to [0, 1]. Contenders: ``gpunn`` (``gpunn.fit``
with the test set as ``validation_data``), ``pytorch`` (an eager loop: shuffle, index_select,
zero_grad, forward, loss, backward, step; bf16 under CPU/CUDA autocast), ``sklearn``
(``MLPClassifier.partial_fit``, one epoch a call; fp32 only) and ``keras`` (Keras 3 ``fit``)
when installed. Each (contender, precision, batch) trains in a fresh process; processes run
round-robin, the contender order rotating each round. Per epoch: training seconds (test
evaluation excluded) and test accuracy. Figures: steady samples/s (training rows over the
median epoch time after the first, which holds compiles and warm-up), test accuracy after
the last epoch, and seconds of training to the first epoch whose test accuracy reaches the
target. Ratios are of medians over rounds.
"""

import json
import sys
import time

import numpy as np

from gpunn.bench import harness, processes

SIZES = (784, 256, 128, 10)
LR = 1e-3
TARGET_ACCURACY = 0.97
CONTENDERS = ("gpunn", "pytorch", "sklearn", "keras")


def _data(rows):
    from gpunn.bench import mnist

    X, y, Xt, yt = mnist.load()
    scale = np.float32(1 / 255)
    return X[:rows].astype(np.float32) * scale, y[:rows], Xt.astype(np.float32) * scale, yt


def _gpunn(spec, X, y, Xt, yt):
    import gpunn
    from gpunn.backends.cpu import start_numba_threads

    with gpunn.use_backend(spec["device"]):
        start_numba_threads()
        harness.set_threads(spec["threads"])
        model = gpunn.MLP(list(SIZES), activation="relu", output="softmax", seed=0,
                          precision=spec["precision"])
        history = gpunn.fit(model, X, y, optimizer="adam", lr=LR, epochs=spec["epochs"],
                            batch_size=spec["batch"], validation_data=(Xt, yt), progress=False)
    return np.diff([0.0, *history.seconds]).tolist(), list(history.val_accuracy)


def _pytorch(spec, X, y, Xt, yt):
    torch = harness.import_optional("torch")
    if torch is None:
        raise processes.Skip("PyTorch is not installed")
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = "cuda" if spec["device"] == "cuda" else "cpu"
    layers = [torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.ReLU(),
              torch.nn.Linear(SIZES[1], SIZES[2]), torch.nn.ReLU(),
              torch.nn.Linear(SIZES[2], SIZES[3])]
    net = torch.nn.Sequential(*layers).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    Xd, yd = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    Xtd = torch.from_numpy(Xt).to(device)
    bf16 = spec["precision"] == "bf16"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    seconds, accuracy = [], []
    for _ in range(spec["epochs"]):
        sync()
        begun = time.perf_counter()
        for idx in torch.randperm(X.shape[0], device=device).split(spec["batch"]):
            optimizer.zero_grad()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                logits = net(Xd.index_select(0, idx))
            torch.nn.functional.cross_entropy(logits.float(), yd.index_select(0, idx)).backward()
            optimizer.step()
        sync()
        seconds.append(time.perf_counter() - begun)
        with torch.no_grad():
            predicted = net(Xtd).argmax(1).cpu().numpy()
        accuracy.append(float(np.mean(predicted == yt)))
    return seconds, accuracy


def _sklearn(spec, X, y, Xt, yt):
    if harness.import_optional("sklearn") is None:
        raise processes.Skip("scikit-learn is not installed")
    if spec["precision"] != "fp32":
        raise processes.Skip("scikit-learn trains in the inputs' float dtype only")
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(SIZES[1:-1], activation="relu", solver="adam", batch_size=spec["batch"],
                        learning_rate_init=LR, random_state=0)
    seconds, accuracy = [], []
    for _ in range(spec["epochs"]):
        begun = time.perf_counter()
        clf.partial_fit(X, y, classes=np.arange(10))
        seconds.append(time.perf_counter() - begun)
        accuracy.append(float(clf.score(Xt, yt)))
    return seconds, accuracy


def _keras(spec, X, y, Xt, yt):
    keras = harness.import_optional("keras")
    if keras is None or not keras.__version__.startswith("3"):
        raise processes.Skip("Keras 3 is not installed")
    if spec["precision"] == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = keras.Sequential([keras.Input((SIZES[0],)),
                              keras.layers.Dense(SIZES[1], activation="relu"),
                              keras.layers.Dense(SIZES[2], activation="relu"),
                              keras.layers.Dense(SIZES[3])])
    model.compile(keras.optimizers.Adam(LR), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    seconds, accuracy = [], []
    for _ in range(spec["epochs"]):
        begun = time.perf_counter()
        model.fit(X, y, batch_size=spec["batch"], epochs=1, verbose=0)
        seconds.append(time.perf_counter() - begun)
        accuracy.append(float(model.evaluate(Xt, yt, verbose=0, batch_size=4096)[1]))
    return seconds, accuracy


TRAINERS = {"gpunn": _gpunn, "pytorch": _pytorch, "sklearn": _sklearn, "keras": _keras}


def main(argv=None):
    """Child process: train one contender; print ``{"row", "seconds", "accuracy"}`` and then
    ``{"versions"}`` as JSON lines, or ``{"skipped"}``."""
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    row = [spec["contender"], spec["precision"], spec["batch"]]
    try:
        train = TRAINERS[spec["contender"]]
        harness.say(f"mnist: {' '.join(map(str, row))}: loading")
        data = _data(spec["rows"])
        harness.say(f"mnist: {' '.join(map(str, row))}: {spec['epochs']} epochs")
        seconds, accuracy = train(spec, *data)
    except processes.Skip as why:
        print(json.dumps({"skipped": str(why)}), flush=True)
        return 0
    print(json.dumps({"row": row, "seconds": seconds, "accuracy": accuracy,
                      "rows": len(data[1])}), flush=True)
    print(json.dumps({"versions": harness.versions()}), flush=True)
    return 0


def run(device, threads, batches, precisions=("fp32", "bf16"), contenders=CONTENDERS,
        epochs=3, rounds=2, rows=60000, timeout=600):
    """Every (contender, precision) at every batch, each a fresh process, round-robin.

    Returns:
        ``{"skipped": why}`` when MNIST cannot be had, else ``{"device", "epochs", "rows",
        "rounds", "target_accuracy", "runs": [per contender, precision, batch: samples_per_s,
        accuracy, time_to_target_s (medians over rounds), epoch_s, accuracies (each round's)],
        "skipped": {contender precision: why}, "errors": {...}}``.
    """
    from gpunn.bench import mnist

    try:
        mnist.load()  # fetched and checked once, here; the processes read the cache
    except mnist.Unreachable as why:
        return {"skipped": str(why)}
    except ValueError as why:  # an archive or cache that is not MNIST: said, not trained on
        return {"skipped": f"MNIST refused: {why}"}
    found, skipped, errors = {}, {}, {}
    group = [(c, p) for p in precisions for c in contenders]
    for r in range(rounds):
        for batch in batches:
            for contender, precision in group[r % len(group):] + group[:r % len(group)]:
                if f"{contender} {precision}" in skipped:
                    continue
                spec = {"contender": contender, "precision": precision, "batch": batch,
                        "epochs": epochs, "rows": rows, "device": device, "threads": threads}
                answer = processes.measure(spec, timeout, entry="gpunn.bench.realdata")
                if "skipped" in answer:
                    skipped[f"{contender} {precision}"] = answer["skipped"]
                if "error" in answer:
                    errors[f"{contender} {precision} {batch}"] = answer["error"]
                for row in answer["rows"]:
                    found.setdefault(tuple(row["row"]), []).append(row)
    return {"device": device, "epochs": epochs, "rows": rows, "rounds": rounds,
            "target_accuracy": TARGET_ACCURACY, "skipped": skipped, "errors": errors,
            "runs": [summary(key, done) for key, done in found.items()]}


def summary(key, done):
    """One (contender, precision, batch): medians over its processes."""
    rates = [row["rows"] / float(np.median(row["seconds"][1:] or row["seconds"]))
             for row in done]
    reached = [_time_to(row["seconds"], row["accuracy"]) for row in done]
    reached = [t for t in reached if t is not None]
    return {"contender": key[0], "precision": key[1], "batch": key[2],
            "samples_per_s": float(np.median(rates)),
            "accuracy": float(np.median([row["accuracy"][-1] for row in done])),
            "time_to_target_s": float(np.median(reached)) if len(reached) == len(done)
            else None, "epoch_s": [row["seconds"] for row in done],
            "accuracies": [row["accuracy"] for row in done]}


def _time_to(seconds, accuracy):
    """Training seconds until the first epoch whose test accuracy reaches the target."""
    hit = next((i for i, a in enumerate(accuracy) if a >= TARGET_ACCURACY), None)
    return None if hit is None else float(np.sum(seconds[:hit + 1]))

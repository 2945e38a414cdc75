"""PNG plots of a benchmark run (matplotlib, no display needed; small files)."""

from pathlib import Path

DPI = 80


def _figure(panels, width=5.0, height=3.8):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * panels, height), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    return figure, axes


def _plain_numbers(ax):
    """Tick labels as plain numbers (0.3, 2, 1e+04), not powers of ten, on log axes."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    if ax.yaxis.get_scale() == "log":  # a few labelled minor ticks where decades are tall
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda value, _: f"{value:g}" if f"{value:g}"[0] in "25" else ""))


def _label(batch, rows):
    if batch == "full" or batch == rows:
        return f"batch GD (full, {rows})"
    return "stochastic GD (1)" if batch == 1 else f"mini-batch ({batch})"


def _pick(runs):
    """Full batch, a mini-batch near 64, and batch 1 (those present)."""
    by_batch = {r["batch"]: r for r in runs}
    minis = sorted((b for b in by_batch if b not in ("full", 1)), key=lambda b: abs(b - 64))
    return [by_batch[b] for b in ("full", *minis[:1], 1) if b in by_batch]


def cost_vs_epoch(sweeps, path):
    """Cost against epochs for batch, mini-batch and stochastic gradient descent."""
    figure, axes = _figure(len(sweeps))
    for ax, sweep in zip(axes, sweeps):
        for run in _pick(sweep["runs"]):
            epochs = [p["samples"] / sweep["rows"] for p in run["curve"]]
            ax.plot(epochs, [p["cost"] for p in run["curve"]], marker=".", markersize=3,
                    label=_label(run["batch"], sweep["rows"]))
        ax.set(xlabel="epochs (passes over the training set)", ylabel="training cost",
               yscale="log", title=f"{sweep['data']}, MLP {'-'.join(map(str, sweep['sizes']))}")
        ax.legend(fontsize=8)
        _plain_numbers(ax)
    figure.savefig(path, dpi=DPI)


def cost_vs_seconds(sweeps, path):
    """Cost against training seconds for every batch size, with the target cost."""
    from matplotlib import colormaps

    figure, axes = _figure(len(sweeps))
    for ax, sweep in zip(axes, sweeps):
        colors = colormaps["viridis"].resampled(len(sweep["runs"]))
        for i, run in enumerate(sweep["runs"]):
            points = [p for p in run["curve"] if p["seconds"] > 0]
            ax.plot([p["seconds"] for p in points], [p["cost"] for p in points],
                    color=colors(i), label=str(run["batch"]))
        ax.axhline(sweep["target_cost"], color="red", linestyle="--", linewidth=1,
                   label="target cost")
        ax.set(xlabel="training time (s)", ylabel="training cost", xscale="log", yscale="log",
               title=f"{sweep['data']}, MLP {'-'.join(map(str, sweep['sizes']))}")
        ax.legend(title="batch size", fontsize=7, ncol=2)
        _plain_numbers(ax)
    figure.savefig(path, dpi=DPI)


def throughput_vs_batch(results, path):
    """Training samples per second against batch size: sweeps and the step comparison."""
    sections = results["sections"]
    sweeps = sections.get("training", {}).get("sweeps", [])
    peers = sections.get("peers", {}).get("comparisons", [])
    figure, axes = _figure(2 if peers else 1)
    for sweep in sweeps:
        points = sorted((sweep["rows"] if r["batch"] == "full" else r["batch"],
                         r["samples_per_s"]) for r in sweep["runs"])
        axes[0].plot(*zip(*points), marker="o",
                     label=f"{sweep['data']} {'-'.join(map(str, sweep['sizes']))}")
    axes[0].set(xlabel="batch size (rows per step; full batch at the data set size)",
                ylabel="training samples / s", xscale="log", yscale="log",
                title="gpunn.fit throughput")
    axes[0].legend(fontsize=8)
    _plain_numbers(axes[0])
    if peers:
        for name in peers[0]["contenders"]:
            axes[1].plot([c["batch"] for c in peers],
                         [c["contenders"][name]["samples_per_s"] for c in peers], marker="o",
                         linestyle="--" if name == "GEMM floor" else "-", label=name)
        axes[1].set(xlabel="batch size", ylabel="samples / s", xscale="log", yscale="log",
                    title=f"step of MLP {'-'.join(map(str, peers[0]['sizes']))}")
        axes[1].legend(fontsize=8)
        _plain_numbers(axes[1])
    figure.savefig(path, dpi=DPI)


def kernel_bandwidth(section, path):
    """Effective GB/s of every optimizer update against N, with the bandwidth ceiling."""
    kinds = list(dict.fromkeys(c["kind"] for c in section["comparisons"]))
    figure, axes = _figure(len(kinds), width=4.6)
    for ax, kind in zip(axes, kinds):
        comparisons = [c for c in section["comparisons"] if c["kind"] == kind]
        for name in comparisons[0]["contenders"]:
            ax.plot([c["n"] for c in comparisons],
                    [c["contenders"][name]["gb_per_s"] for c in comparisons], marker="o",
                    linewidth=2.5 if name == "gpunn" else 1.2, label=name)
        ax.axhline(section["ceiling"]["ceiling_gb_per_s"], color="black", linestyle="--",
                   linewidth=1, label="in-place stream ceiling")
        ax.set(xlabel="parameters N (float32)", ylabel="effective GB/s (bytes that must move)",
               xscale="log", yscale="log", title=kind)
        ax.legend(fontsize=6)
        _plain_numbers(ax)
    figure.savefig(path, dpi=DPI)


def write_all(results, directory):
    """Every plot the run has data for, into ``directory``; ``{name: path}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sections, written = results["sections"], {}
    sweeps = sections.get("training", {}).get("sweeps", [])
    jobs = []
    if sweeps:
        jobs += [("cost_vs_epoch", lambda p: cost_vs_epoch(sweeps[:2], p)),
                 ("cost_vs_seconds", lambda p: cost_vs_seconds(sweeps, p))]
    if sweeps or sections.get("peers"):
        jobs.append(("throughput_vs_batch", lambda p: throughput_vs_batch(results, p)))
    if sections.get("kernels"):
        jobs.append(("kernel_bandwidth", lambda p: kernel_bandwidth(sections["kernels"], p)))
    for name, job in jobs:
        path = directory / f"{name}.png"
        job(path)
        written[name] = str(path)
    return written

"""PNG plots of a benchmark run (matplotlib, no display needed; small files)."""

from pathlib import Path

DPI = 80


def _axes(panels, width=5.0, height=3.8):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * panels, height), layout="constrained")
    return figure, figure.subplots(1, panels, squeeze=False)[0]


def _finish(ax, title, xlabel, ylabel, xlog=True, ylog=True, legend="in"):
    """Labels, log scales with plain tick numbers (0.3, 2, 1e+04), grid and legend."""
    from matplotlib.ticker import FuncFormatter

    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xscale="log" if xlog else "linear",
           yscale="log" if ylog else "linear")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    some = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25" else "")
    for axis, log in ((ax.xaxis, xlog), (ax.yaxis, ylog)):
        if log:  # labelled minor ticks at 2 and 5 where a decade is tall (the y axis)
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(some if axis is ax.yaxis else FuncFormatter(
                lambda value, _: ""))
    ax.grid(True, which="both", alpha=0.3)
    if legend:
        ax.legend(fontsize=7, title=None if legend == "in" else legend, ncol=2)


def _label(batch, rows):
    if batch in ("full", rows):
        return f"full batch ({rows})"
    return "stochastic (1)" if batch == 1 else f"mini-batch {batch}"


def cost_curves(sweeps, path, x):
    """Training cost against epochs (``x="epochs"``) or seconds, every batch size."""
    from matplotlib import colormaps

    figure, axes = _axes(len(sweeps))
    for ax, sweep in zip(axes, sweeps):
        colors = colormaps["viridis"].resampled(len(sweep["runs"]))
        for i, run in enumerate(sweep["runs"]):
            points = [p for p in run["curve"] if x == "epochs" or p["seconds"] > 0]
            xs = [p["samples"] / sweep["rows"] if x == "epochs" else p["seconds"]
                  for p in points]
            ax.plot(xs, [p["cost"] for p in points], color=colors(i), marker=".",
                    markersize=3, label=_label(run["batch"], sweep["rows"]))
        ax.axhline(sweep["target_cost"], color="red", linestyle="--", linewidth=1,
                   label="target cost")
        # Early SGD steps can overshoot far above the start; cut there so the rest is readable.
        ax.set_ylim(top=1.25 * sweep["initial_cost"])
        _finish(ax, f"{sweep['data']}, MLP {'-'.join(map(str, sweep['sizes']))}",
                "epochs (passes over the training set)" if x == "epochs" else
                "training time (s)", "training cost (mean cross-entropy)",
                xlog=x != "epochs", ylog=False, legend="batch size")
    figure.savefig(path, dpi=DPI)


def throughput_vs_batch(results, path):
    """Training samples per second against batch size: the sweeps and the step contenders."""
    sections = results["sections"]
    steps = sections.get("step", {}).get("comparisons", [])
    figure, axes = _axes(2 if steps else 1)
    for sweep in sections.get("batch", {}).get("sweeps", []):
        points = sorted((sweep["rows"] if r["batch"] == "full" else r["batch"],
                         r["samples_per_s"]) for r in sweep["runs"])
        axes[0].plot(*zip(*points), marker="o",
                     label=f"{sweep['data']} {'-'.join(map(str, sweep['sizes']))}")
    _finish(axes[0], "gpunn.fit throughput", "batch size (full batch at the data set size)",
            "training samples / s")
    if steps:
        for name in steps[0]["contenders"]:
            axes[1].plot([c["batch"] for c in steps],
                         [c["contenders"][name]["samples_per_s"] for c in steps], marker="o",
                         linestyle="--" if name == "GEMM floor" else "-", label=name)
        _finish(axes[1], f"step of MLP {'-'.join(map(str, steps[0]['sizes']))}",
                "batch size", "samples / s")
    figure.savefig(path, dpi=DPI)


def update_bandwidth(comparisons, path):
    """Effective GB/s of every optimizer update against N, with the axpy stream (dashed)."""
    kinds = list(dict.fromkeys(c["kind"] for c in comparisons))
    names = list(dict.fromkeys(name for c in comparisons for name in c["contenders"]))
    figure, axes = _axes(len(kinds), width=4.6, height=4.8)
    handles = {}
    for ax, kind in zip(axes, kinds):
        rows = [c for c in comparisons if c["kind"] == kind]
        for name in rows[0]["contenders"]:
            handles[name], = ax.plot(
                [c["n"] for c in rows], [c["contenders"][name]["gb_per_s"] for c in rows],
                marker="o", color=f"C{names.index(name) % 10}", label=name,
                linewidth=2.5 if name == "gpunn" else 1.2,
                linestyle="--" if name.startswith("axpy") else "-")
        _finish(ax, kind, "parameters N (float32)", "effective GB/s (bytes that must move)",
                legend=None)
    figure.legend([handles[n] for n in names], names, loc="outside lower center", ncol=4,
                  fontsize=8)
    figure.savefig(path, dpi=DPI)


def write_all(results, directory):
    """Every plot the run has data for, into ``directory``; ``{name: path}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sections = results["sections"]
    sweeps = sections.get("batch", {}).get("sweeps", [])
    jobs = {}
    if sweeps:
        jobs["cost_vs_epoch"] = lambda p: cost_curves(sweeps, p, "epochs")
        jobs["cost_vs_seconds"] = lambda p: cost_curves(sweeps, p, "seconds")
    if sweeps or "step" in sections:
        jobs["throughput_vs_batch"] = lambda p: throughput_vs_batch(results, p)
    if "updates" in sections:
        jobs["update_bandwidth"] = lambda p: update_bandwidth(
            sections["updates"]["comparisons"], p)
    for name, job in jobs.items():
        job(directory / f"{name}.png")
    return {name: str(directory / f"{name}.png") for name in jobs}

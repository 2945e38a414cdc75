"""The benchmark's tables and targets, built from the results, rendered as text or Markdown.

Targets are ratios against the hardware floor (the axpy stream, the GEMM floor) or the
best peer measured in the same run; only targets whose figures were measured are listed.
"""

import os

OWN = " (own process)"
TORCH_UPDATES = [name + own for name in ("torch fused", "torch default",
                                         "torch foreach, 100 tensors") for own in ("", OWN)]
TORCH_CPU_STEPS = ("torch eager", "torch eager, fused Adam", "torch eager, fused Adam" + OWN)


def _f(value, digits=3):
    """A number with ``digits`` significant digits, or '-'."""
    if value is None or isinstance(value, str):
        return value or "-"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.{digits}g}"
    return f"{value:.2e}"


def _span(t, scale):
    return f"{_f(t['min'] * scale)}-{_f(t['max'] * scale)}"


def machine_lines(results):
    """Where and how the run happened."""
    m, v = results["machine"], results["machine"]["versions"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernel, "
                     f"{b['num_threads']} threads, {os.path.basename(b['filepath'] or '?')})"
                     for b in m["blas"]) or "none found"
    commit = m["commit"]
    return [f"CPU: {m['cpu'].get('brand_raw')}, {m['usable_cpus']} usable of "
            f"{m['logical_cpus']} logical CPUs; backend {results['backend']} "
            f"({results['device']})",
            f"BLAS: {blas}; Numba {v['numba']} ({m['threads']['numba']} threads, "
            f"{m['threads']['numba_layer']} layer); torch {v['torch']}; jax {v['jax']}; "
            f"NumPy {v['numpy']}",
            f"gpunn {v['gpunn']} at {str(commit.get('id'))[:12]}"
            f"{' (uncommitted changes)' if commit.get('dirty') else ''}; mode "
            f"{results['mode']}; {_f(results.get('runtime_s'))} s; load average {m['loadavg']}"]


def updates_tables(s):
    """The tables of the ``updates`` section."""
    rows = [[c["kind"], f"{c['n']:.0e}", name, _f(t["median"] * 1e6), _span(t, 1e6),
             _f(t["gb_per_s"]), _f(t["of_axpy"]), _f(c["ratios"].get(f"{name} / gpunn", 1))]
            for c in s["comparisons"] for name, t in c["contenders"].items()]
    return [("Optimizer updates (float32, one step through the public API; GB/s of the bytes "
             "that must move), with the backend's axpy stream at the same N" + _own(s)
             + _missing(s["comparisons"], "kind"),
             ["update", "N", "contender", "median us", "min-max us", "GB/s", "of axpy",
              "time / gpunn's"], rows)]


def _own(section):
    """A note when PyTorch's own-process run did not give figures (its reason)."""
    why = next(iter(section.get("own_process", {}).values()), None)
    return f"; PyTorch in its own process did not run: {_last(why)}" if why else ""


def _missing(comparisons, key):
    """A note naming each contender that could not run (a peer's version lacks it), and why."""
    seen = {}
    for c in comparisons:
        for name, why in c.get("not_available", {}).items():
            seen.setdefault((name, why), []).append(str(c[key]))
    return "".join(f"; {name} ({', '.join(dict.fromkeys(where))}): {why}"
                   for (name, why), where in seen.items())


def _last(text):
    return text.strip().splitlines()[-1] if text.strip() else text


def _steps(title, comparisons):
    rows = [["-".join(map(str, c["sizes"])), c["batch"], name, _f(t["median"] * 1e3),
             _span(t, 1e3), _f(t["samples_per_s"]), _f(t["gflop_per_s"]),
             _f(c["ratios"].get(f"{name} / gpunn", 1))]
            for c in comparisons for name, t in c["contenders"].items()]
    return (title + _missing(comparisons, "batch"),
            ["MLP", "batch", "contender", "median ms", "min-max ms", "samples/s", "GEMM GFLOP/s",
             "time / gpunn's"], rows)


def gpu_tables(s):
    """The tables of the ``gpu`` section."""
    if "skipped" in s and "comparisons" not in s:
        return [(f"GPU step: skipped ({s['skipped']})", [], [])]
    notes = [f"{peer}: {_last(why)}" for peer, why in {**s["skipped"], **s["errors"]}.items()]
    spent = ", ".join(f"{peer} {_f(t, 2)}" for peer, t in s.get("process_seconds", {}).items())
    return [_steps(f"GPU training step ({s['device']}), each peer in its own process"
                   + (f" (seconds: {spent})" if spent else "")
                   + (f"; not run: {'; '.join(notes)}" if notes else ""), s["comparisons"])]


def vectorization_tables(s):
    """The tables of the ``vectorization`` section."""
    rows = [[c["model"], "-".join(map(str, c["sizes"])), name, t["samples"],
             _f(t["seconds_per_sample"] * 1e6),
             " / ".join(_f(v) for k, v in c["ratios"].items() if k.endswith(f"/ {name}"))
             or "-"] for c in s["comparisons"] for name, t in c["contenders"].items()]
    return [("Vectorization: per-sample loops vs vectorized (same gradient; gpunn: a whole "
             "step)", ["model", "sizes", "contender", "samples", "us / sample",
                       "loop(s) time / this"], rows)]


def batch_tables(s):
    """The tables of the ``batch`` section."""
    return [(f"Batch sizes: {w['data']} ({w['rows']} rows), MLP {'-'.join(map(str, w['sizes']))}"
             f", {w['optimizer']} lr {w['lr']}, <= {w['budget_s']} s or {w['max_epochs']} "
             f"epochs; target cost {_f(w['target_cost'])} (from {_f(w['initial_cost'])}), "
             f"reached first by batch {w['fastest_to_target']}; * extrapolated",
             ["batch", "steps", "samples/s", "s / epoch", "epochs", "final cost",
              "s to target"],
             [[r["batch"], r["steps"], _f(r["samples_per_s"]),
               _f(r["seconds_per_epoch"]) + " *" * r["extrapolated"], _f(r["epochs"]),
               _f(r["final_cost"]), _f(r["time_to_target_s"])] for r in w["runs"]])
            for w in s["sweeps"]]


def imports_tables(s):
    """The tables of the ``imports`` section."""
    rows = [[r["order"], r["batch"], _f(r["step_over_floor"]),
             " ".join(_f(x) for x in r["runs"]), _f(r["step_s"] * 1e3)] for r in s["rows"]]
    return [(f"CPU step of MLP {'-'.join(map(str, s['sizes']))} in fresh processes, per "
             "import order" + (f"; failed: {s['errors']}" if s["errors"] else ""),
             ["imports", "batch", "step / GEMM floor", "each process", "step ms"], rows)]


def mnist_tables(s):
    """The table of the ``mnist`` section."""
    if "runs" not in s:
        return [(f"MNIST: skipped ({s['skipped']})", [], [])]
    notes = [f"{k}: {_last(v)}" for k, v in {**s["skipped"], **s["errors"]}.items()]
    pytorch = {(r["precision"], r["batch"]): r["samples_per_s"] for r in s["runs"]
               if r["contender"] == "pytorch"}
    rows = [[r["batch"], r["contender"], r["precision"], _f(r["samples_per_s"]),
             _f(r["samples_per_s"] / pytorch[(r["precision"], r["batch"])])
             if (r["precision"], r["batch"]) in pytorch else "-", _f(r["accuracy"], 4),
             _f(r["time_to_target_s"]), " ".join(_f(sum(e)) for e in r["epoch_s"])]
            for r in sorted(s["runs"], key=lambda r: (r["batch"], r["precision"]))]
    return [(f"MNIST ({s['rows']} training rows, {s['epochs']} epochs, {s['rounds']} rounds "
             f"of fresh processes; MLP 784-256-128-10 relu, Adam; {s['device']}): steady "
             f"samples/s after the first epoch, test accuracy, seconds to "
             f"{s['target_accuracy']} test accuracy" + (f"; not run: {'; '.join(notes)}"
                                                        if notes else ""),
             ["batch", "contender", "precision", "samples/s", "over PyTorch's", "test acc",
              "s to target", "training s per process"], rows)]


def step_tables(s):
    """The table of the ``step`` section."""
    return [_steps("MLP training step (gather, forward, softmax loss, backward, Adam)" + _own(s),
                   s["comparisons"])]


def _target(found, name, value, needed, at_most=False):
    found.append({"name": name, "value": value, "needed": needed,
                  "comparison": "<=" if at_most else ">=",
                  "met": value <= needed if at_most else value >= needed})


def _best_peer(comparison, names):
    """The fastest named peer's median over gpunn's (None when none of them ran)."""
    ratios = [v for k, v in comparison["ratios"].items() if k[:-len(" / gpunn")] in names]
    return min(ratios) if ratios else None


def _update_targets(found, s):
    for c in (c for c in s["comparisons"] if c["kind"] in ("adam", "rmsprop")):
        best = _best_peer(c, TORCH_UPDATES)
        if best is not None:
            _target(found, f"{c['kind']} N={c['n']:.0e}: best PyTorch time / gpunn's", best,
                    0.95)
        if c["n"] >= 10_000_000:
            _target(found, f"{c['kind']} N={c['n']:.0e}: GB/s over the axpy stream's",
                    c["contenders"]["gpunn"]["of_axpy"], 0.9)


def _step_targets(found, comparisons, gpu=False):
    for c in comparisons:
        where = f"MLP {'-'.join(map(str, c['sizes']))} batch {c['batch']}"
        floor = c["ratios"].get("GEMM floor / gpunn")
        limit = 1.1 if gpu else 1.4 if c["batch"] == 128 else 1.15
        if floor and (c["batch"] == 128 and not gpu or c["batch"] >= (8192 if gpu else 2048)):
            _target(found, f"{where}: step / GEMM floor", 1 / floor, limit, at_most=True)
        best = _best_peer(c, ("jax jit", "torch cuda graph") if gpu else TORCH_CPU_STEPS)
        if best is not None:
            _target(found, f"{where}: best {'GPU peer' if gpu else 'PyTorch eager'} time / "
                    "gpunn's", best, 1.0)
        eager = c["ratios"].get("torch eager, fused Adam / gpunn")
        if gpu and c["batch"] == 128 and eager:
            _target(found, f"{where}: PyTorch eager time / gpunn's", eager, 4.0)


def _import_targets(found, s):
    by = {(r["order"], r["batch"]): r["step_s"] for r in s["rows"]}
    for batch in sorted({r["batch"] for r in s["rows"]}):
        if ("torch first", batch) in by and ("gpunn first", batch) in by:
            _target(found, f"CPU step batch {batch}: torch first / gpunn first",
                    by[("torch first", batch)] / by[("gpunn first", batch)], 1.05, True)


def _mnist_targets(found, s):
    rate = {(r["contender"], r["precision"], r["batch"]): r["samples_per_s"] for r in s["runs"]}
    for (contender, precision, batch), value in rate.items():
        if contender != "gpunn":
            continue
        peer = rate.get(("pytorch", precision, batch))
        if peer and precision == "fp32":
            _target(found, f"MNIST fp32 batch {batch}: gpunn samples/s over PyTorch's",
                    value / peer, 1.3 if batch == 128 else 1.0)
        fp32 = rate.get(("gpunn", "fp32", batch))
        if precision == "bf16" and fp32:
            _target(found, f"MNIST batch {batch}: gpunn bf16 time / fp32 time", fp32 / value,
                    1.15, at_most=True)


def targets(results):
    """The targets of benchmarks/RESULTS.md that this run measured, each with its value."""
    found, sections = [], results["sections"]
    if "updates" in sections:
        _update_targets(found, sections["updates"])
    if "step" in sections and results["backend"] == "cpu":
        _step_targets(found, sections["step"]["comparisons"])
    if sections.get("gpu", {}).get("device") == "cuda":
        _step_targets(found, sections["gpu"]["comparisons"], gpu=True)
    if "imports" in sections:
        _import_targets(found, sections["imports"])
    if "runs" in sections.get("mnist", {}):
        _mnist_targets(found, sections["mnist"])
    if results["mode"] == "quick" and {"updates", "step", "batch"} <= set(sections):
        _target(found, "gpunn bench --quick seconds", results["runtime_s"], 180, True)
    return found


def _text(title, headers, rows):
    if not headers:
        return title
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w)
                        in enumerate(zip(row, widths))) for row in cells[1:]]
    return "\n".join(line.rstrip() for line in lines)


def _markdown(title, headers, rows):
    if not headers:
        return f"**{title}**"
    return "\n".join([f"**{title}**", "", "| " + " | ".join(headers) + " |",
                      "|" + "---|" * len(headers)]
                     + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def target_table(results):
    """``[(title, headers, rows)]``: the targets of ``results``, if any were measured."""
    rows = [[t["name"], _f(t["value"]), f"{t['comparison']} {t['needed']}",
             "met" if t["met"] else "MISSED"] for t in results["targets"]]
    return [("Targets (ratios of medians in this run)",
             ["target", "value", "needed", "verdict"], rows)] * bool(rows)


def render(results, tables, markdown=False):
    """The report: machine lines, then the sections' ``tables`` and the targets, as text or
    Markdown."""
    lines = machine_lines(results)
    head = "\n".join(f"- {line}" for line in lines) if markdown else "\n".join(lines)
    table = _markdown if markdown else _text
    return "\n\n".join([head] + [table(*t) for t in tables + target_table(results)]) + "\n"

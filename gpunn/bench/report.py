"""The benchmark's tables: built once from the results, rendered as text or Markdown."""

import os

from gpunn.bench import targets as _targets


def targets(results):
    """The issue's targets judged on ``results`` (see :mod:`gpunn.bench.targets`)."""
    return _targets.evaluate(results)


def _f(value, digits=3):
    """A number with ``digits`` significant digits, or '-'."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.{digits}g}"
    return f"{value:.2e}"


def _span(t, scale):
    return f"{_f(t['min_s'] * scale)}-{_f(t['max_s'] * scale)}"


def machine_lines(results):
    """Short description of where and how the run happened."""
    m = results["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernel, "
                     f"{b['num_threads']} threads, {os.path.basename(b['filepath'] or '?')})"
                     for b in m["blas"]) or "none found"
    versions = m["versions"]
    git = m["git"]
    return [f"CPU: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs; "
            f"backend {results['backend']} ({results['device']})",
            f"BLAS: {blas}; Numba {versions['numba']} ({m['threads']['numba']} threads, "
            f"{m['threads']['numba_layer']} layer); torch {versions['torch']} "
            f"({m['threads']['torch']} threads); NumPy {versions['numpy']}",
            f"gpunn {versions['gpunn']} at {str(git['commit'])[:12]}"
            f"{' (uncommitted changes)' if git['dirty'] else ''}; mode {results['mode']}; "
            f"{_f(results.get('runtime_s'))} s; load average before/after "
            f"{m['loadavg_before']} / {m['loadavg_after']}"]


def _kernel_table(section):
    ceiling = section["ceiling"]["ceiling_gb_per_s"]
    rows = []
    for c in section["comparisons"]:
        for name, t in c["contenders"].items():
            speedup = c["ratios"].get(f"gpunn vs {name}")
            rows.append([c["kind"], f"{c['n']:.0e}", name, _f(t["median_s"] * 1e6),
                         _span(t, 1e6), _f(t["gb_per_s"]), _f(100 * t["gb_per_s"] / ceiling),
                         "1" if name == "gpunn" else _f(speedup)])
    title = (f"Optimizer updates (float32, one step, Python included); bandwidth ceiling "
             f"{_f(ceiling)} GB/s ({section['ceiling']['ceiling_by']}, in-place a += s*b over "
             f"{section['ceiling']['bytes_footprint'] / 1e6:.0f} MB)")
    return (title, ["update", "N", "contender", "median us", "min-max us", "GB/s",
                    "% ceiling", "gpunn x faster"], rows)


def _peer_table(section):
    rows = []
    for c in section["comparisons"]:
        for name, t in c["contenders"].items():
            speedup = c["ratios"].get(f"gpunn vs {name}")
            rows.append([c["batch"], name, _f(t["median_s"] * 1e3), _span(t, 1e3),
                         _f(t["samples_per_s"]), _f(t["gemm_gflop_per_s"]),
                         "1" if name == "gpunn" else _f(speedup)])
    sizes = "-".join(map(str, section["comparisons"][0]["sizes"]))
    return (f"MLP {sizes} training step (gather, forward, loss, backward, Adam)",
            ["batch", "contender", "median ms", "min-max ms", "samples/s", "GEMM GFLOP/s",
             "gpunn x faster"], rows)


def _vector_table(section):
    rows = []
    for c in section["comparisons"]:
        for name, t in c["contenders"].items():
            speedups = [v for k, v in c["ratios"].items() if k.startswith(f"{name} vs ")]
            rows.append([c["model"], "-".join(map(str, c["sizes"])), name, t["samples"],
                         _f(t["seconds_per_sample"] * 1e6),
                         " / ".join(_f(s) for s in speedups) or "-"])
    return ("Vectorization: per-sample loop vs vectorized (same gradient)",
            ["model", "sizes", "contender", "samples", "us / sample",
             "x faster than the loop(s)"], rows)


def _sweep_tables(section):
    tables = []
    for s in section["sweeps"]:
        rows = [[r["batch"], r["steps"], _f(r["samples_per_s"]),
                 _f(r["seconds_per_epoch"]) + (" *" if r["extrapolated"] else ""),
                 _f(r["epochs"]), _f(r["final_cost"]), _f(r["cost_drop_per_s"]),
                 _f(r["time_to_target_s"])] for r in s["runs"]]
        title = (f"Batch size sweep: {s['data']} ({s['rows']} rows), MLP "
                 f"{'-'.join(map(str, s['sizes']))}, {s['optimizer']} lr {s['lr']}, "
                 f"<= {s['budget_s']} s or {s['max_epochs']} epochs each; target cost "
                 f"{_f(s['target_cost'])} (initial {_f(s['initial_cost'])}), reached first by "
                 f"batch {s['fastest_to_target']}; * extrapolated from part of an epoch")
        tables.append((title, ["batch", "steps", "samples/s", "s / epoch", "epochs",
                               "final cost", "cost drop / s", "s to target"], rows))
    return tables


def _gpu_table(section):
    measured = {(r["kernel"], r["n"]): r for r in section.get("measured") or []}
    rows = [[r["kernel"], r["bytes_per_element"], r["flops_per_element"], f"{r['n']:.0e}",
             _f(r["model_s"] * 1e6), _f(r["model_gb_per_s"]),
             _f(measured[(r["kernel"], r["n"])]["measured_s"] * 1e6)
             if (r["kernel"], r["n"]) in measured else "-"] for r in section["kernels"]]
    gpu = section["gpu"]
    title = (f"MODEL, not a measurement: {gpu['name']}, {gpu['hbm_bytes_per_s'] / 1e12} TB/s "
             f"HBM, {gpu['fp32_flops_per_s'] / 1e12:.0f} TFLOP/s FP32, "
             f"{gpu['launch_s'] * 1e6:.0f} us launch")
    return (title, ["kernel", "B/elem", "FLOP/elem", "N", "model us", "model GB/s",
                    "measured us"], rows)


def _step_model_table(section):
    rows = [[s["batch"], _f(s["model_gemm_s"] * 1e3), _f(s["model_elementwise_s"] * 1e3),
             _f(s["model_samples_per_s"])] for s in section["steps"]]
    return ("MODEL: MLP training step on the GPU above (SGEMM at "
            f"{section['gpu']['sgemm_efficiency']:.0%} of peak)",
            ["batch", "GEMM ms", "elementwise ms", "samples/s"], rows)


def _target_table(results):
    rows = [[t["name"], _f(t["value"]), f"{t['comparison']} {t['needed']}",
             {True: "met", False: "MISSED", None: "not measured"}[t["met"]]]
            for t in results["targets"]]
    return ("Targets (ratios of medians in this run)", ["target", "value", "needed", ""], rows)


def tables(results):
    """``[(title, headers, rows)]`` of every section present, then the targets."""
    builders = {"kernels": lambda s: [_kernel_table(s)], "peers": lambda s: [_peer_table(s)],
                "vectorization": lambda s: [_vector_table(s)], "training": _sweep_tables,
                "gpu": lambda s: [_gpu_table(s), _step_model_table(s)]}
    found = []
    for name, section in results["sections"].items():
        found += builders[name](section)
    return found + [_target_table(results)]


def _text_table(title, headers, rows):
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i > 2 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))) for row in cells[1:]]
    return "\n".join(lines)


def render(results):
    """The readable report printed on stdout."""
    blocks = ["\n".join(machine_lines(results))]
    blocks += [_text_table(*table) for table in tables(results)]
    return "\n\n".join(blocks)


def _markdown_table(title, headers, rows):
    lines = [f"**{title}**", "", "| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results, base="."):
    """The results page: machine, every table, the plots (linked relative to ``base``, the
    page's folder)."""
    blocks = ["# gpunn benchmark results", "",
              "Generated by `gpunn bench"
              + (f" --{results['mode']}" if results["mode"] != "full" else "") + "`.",
              "", *[f"- {line}" for line in machine_lines(results)]]
    for name, path in (results.get("plots") or {}).items():
        blocks += ["", f"![{name}]({os.path.relpath(path, base)})"]
    text = "\n".join(blocks)
    return text + "\n\n" + "\n\n".join(_markdown_table(*t) for t in tables(results)) + "\n"

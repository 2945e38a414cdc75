"""The performance targets of the benchmark issue, checked against one run's figures.

Each target is judged on ratios of medians measured side by side in that run. Against PyTorch
the faster of its variants counts (fused or default; default or foreach over 100 tensors; in
this process or in its own, where its OpenMP runtime keeps its defaults), so a target is never
met by picking a weak peer. A target whose figures were not measured in this
mode (``--smoke`` sizes, no PyTorch) is reported with ``met: None``.
"""

BIG = [784, 1024, 1024, 10]


def _target(name, value, needed, higher_is_better=True, detail=""):
    met = None if value is None else (value >= needed if higher_is_better else value <= needed)
    return {"name": name, "value": value, "needed": needed,
            "comparison": ">=" if higher_is_better else "<=", "met": met, "detail": detail}


def _kernel(results, kind, n):
    section = results["sections"].get("kernels") or {}
    for comparison in section.get("comparisons", []):
        if comparison["kind"] == kind and comparison["n"] == n:
            return comparison, section["ceiling"]
    return None, None


def _best_ratio(comparison, names):
    """gpunn's speedup over the fastest of the named contenders present (None if none is)."""
    ratios = [comparison["ratios"][f"gpunn vs {name}"] for name in names
              if f"gpunn vs {name}" in comparison["ratios"]]
    return min(ratios) if ratios else None


def _kernel_targets(results):
    found = []
    one = {"adam": ["torch fused (1 tensor)", "torch fused (1 tensor) (own process)"],
           "rmsprop": ["torch default (1 tensor)", "torch default (1 tensor) (own process)"]}
    hundred = ["torch default (100 tensors)", "torch foreach (100 tensors)"]
    for kind, label in (("adam", "fused Adam"), ("rmsprop", "fused RMSprop")):
        peer = one[kind][0].replace(" (1 tensor)", "").replace("torch ", "")
        for n, needed in ((100_000, 2.0), (1_000_000, 2.0), (10_000_000, 1.0)):
            comparison, ceiling = _kernel(results, kind, n)
            value = _best_ratio(comparison, one[kind]) if comparison else None
            found.append(_target(f"{label} N={n:.0e} vs PyTorch {peer} (here or in its own "
                                 "process)", value, needed))
            value = _best_ratio(comparison, hundred) if comparison else None
            found.append(_target(f"{label} N={n:.0e} vs PyTorch over 100 tensors (best of "
                                 "default, foreach)", value, 2.0))
            if n == 10_000_000:
                value = (comparison["contenders"]["gpunn"]["gb_per_s"]
                         / ceiling["ceiling_gb_per_s"]) if comparison else None
                found.append(_target(f"{label} N=1e+07 fraction of the in-place bandwidth "
                                     "ceiling", value, 0.9))
    return found


def _peer_targets(results):
    section = results["sections"].get("peers") or {}
    found = []
    for comparison in section.get("comparisons", []):
        if comparison["sizes"] != BIG:
            continue
        batch = comparison["batch"]
        if batch >= 128:
            value = _best_ratio(comparison, ["torch default", "torch fused",
                                             "torch default (own process)",
                                             "torch fused (own process)"])
            found.append(_target(f"MLP step batch {batch} vs PyTorch CPU (best of default, "
                                 "fused Adam; here or in its own process)", value, 1.5))
        if 32 <= batch <= 2048:
            found.append(_target(f"MLP step batch {batch} vs plain NumPy",
                                 _best_ratio(comparison, ["numpy"]), 1.2))
        if batch >= 512:
            found.append(_target(f"MLP step batch {batch} / its GEMM floor",
                                 comparison["step_over_gemm_floor"], 1.15,
                                 higher_is_better=False))
    return found


def evaluate(results):
    """Every target with its value from ``results`` and whether it was met."""
    found = _kernel_targets(results) + _peer_targets(results)
    if results.get("mode") == "quick" and "runtime_s" in results:
        found.append(_target("gpunn bench --quick runtime (s)", results["runtime_s"], 180.0,
                             higher_is_better=False))
    return found

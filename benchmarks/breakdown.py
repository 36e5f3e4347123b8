"""Suite ``breakdown``: where a network's time goes, per layer and per layer type (Figure 8.14).

The book's Figure 8.14 (from Jia 2014) shows AlexNet's forward time per layer type: convolution
takes 89% on the CPU and 95% on the GPU. This suite measures the same split for xpnet's AlexNet
(forward) and for DeepConvNet (forward and backward), on every backend asked for.
"""

import os

from benchmarks import plots, workloads
from benchmarks.report import fmt, not_measured, pct, shape_text, table
from xpnet.profile import profile, summarize

REPEATS = 10
PLAN = (("alexnet", False), ("deep_convnet", True))  # (model, with backward)
REFERENCE = {"source": "Jia 2014 via Deep Learning from Scratch, Figure 8.14 (AlexNet forward)",
             "conv_share": {"cpu": 0.89, "gpu": 0.95}}
METHOD = ("xpnet.profile.profile: every layer timed on its own with the backend's timer() (perf_counter on "
          "the CPU; CUDA events, which synchronize, on the GPU), forward in training mode (dropout draws "
          "masks), after warm-up passes; medians over the repeats (min/max kept). DeepConvNet's backward "
          "starts from its softmax cross-entropy loss (the 'loss' row, type 'other'); AlexNet is timed "
          "forward only, as in the figure, so it has no loss row. Random inputs and labels.")


def run(settings):
    """Profile every model of :data:`PLAN` on every backend; returns the suite's JSON-ready result."""
    models = {key: _profile_model(key, backward, settings) for key, backward in PLAN}
    return {"method": METHOD, "reference": REFERENCE, "models": models}


def _profile_model(key, backward, settings):
    dim, batch = workloads.input_dim(key, settings), settings.batch(key)
    out = {"title": workloads.MODEL_TITLES[key], "input": list(dim), "batch": batch,
           "note": workloads.describe_input(key, settings),
           "phases": ["forward", "backward"] if backward else ["forward"], "backends": {}}
    for name in settings.backends:
        model = workloads.build(key, settings, name)
        x, t = workloads.random_batch(name, dim, batch, workloads.classes_of(model))
        rows = profile(model, x, t if backward else None, backward=backward,
                       repeats=settings.n_repeats(REPEATS), warmup=settings.n_warmup())
        out["backends"][name] = {
            "rows": rows,
            "by_type": summarize(rows),
            "forward_total_ms": sum(r["forward_ms"] for r in rows),
            "backward_total_ms": sum(r["backward_ms"] for r in rows) if backward else None,
        }
        del model, x, t
    return out


def render(result, unavailable=None):
    """Per-layer and per-type tables of every model and backend, as text."""
    parts = []
    for model in result["models"].values():
        for name, res in model["backends"].items():
            head = f"{model['title']} on {name}: batch {model['batch']}, {model['note']}"
            parts.append(_layer_table(head, res, model["phases"]))
            parts.append(_type_table(res, model["phases"]))
    parts += not_measured(unavailable)
    ref = result["reference"]
    parts.append(f"Reference ({ref['source']}): conv {pct(ref['conv_share']['cpu'])} of CPU time, "
                 f"{pct(ref['conv_share']['gpu'])} of GPU time.")
    return "\n\n".join(parts)


def _layer_table(title, res, phases):
    fwd_total, bwd_total = res["forward_total_ms"], res["backward_total_ms"]
    rows = []
    for r in res["rows"]:
        row = [r["name"], r["type"], shape_text(r["output_shape"]), fmt(r["forward_ms"], 3),
               pct(r["forward_ms"] / fwd_total if fwd_total else None)]
        if "backward" in phases:
            row += [fmt(r["backward_ms"], 3), pct(r["backward_ms"] / bwd_total if bwd_total else None)]
        rows.append(row)
    total = ["total", "", "", fmt(fwd_total, 3), "100.0%"]
    headers = ["layer", "type", "output", "fwd ms", "fwd %"]
    if "backward" in phases:
        total += [fmt(bwd_total, 3), "100.0%"]
        headers += ["bwd ms", "bwd %"]
    return table(headers, rows + [total], title=title + " (medians)")


def _type_table(res, phases):
    rows = []
    for r in res["by_type"]:
        row = [r["type"], r["layers"], fmt(r["forward_ms"], 3), pct(r["forward_share"])]
        if "backward" in phases:
            row += [fmt(r["backward_ms"], 3), pct(r["backward_share"])]
        rows.append(row)
    headers = ["type", "layers", "fwd ms", "fwd %"] + (["bwd ms", "bwd %"] if "backward" in phases else [])
    return table(headers, rows, title="by layer type")


def plot(result, settings):
    """Pie pairs (CPU | GPU) per model and phase under ``settings.plots_dir``; returns the paths."""
    paths = []
    for key, model in result["models"].items():
        for phase in model["phases"]:
            panels = [_panel(name, model, phase, settings) for name in ("numpy", "cuda")]
            title = f"{model['title']} {phase} time by layer type\nbatch {model['batch']}, {model['note']}"
            path = os.path.join(settings.plots_dir, f"breakdown_{key}_{phase}.png")
            paths.append(plots.pie_pair(path, title, panels, phase))
    return paths


def _panel(name, model, phase, settings):
    res = model["backends"].get(name)
    if res is None:
        reason = settings.unavailable.get(name)
        if reason is None:
            return name, None, f"{name}: not measured (not selected with --backend)"
        return name, None, f"not available on this machine: {reason.split(' (')[0]}"
    total = res[f"{phase}_total_ms"]
    return name, res["by_type"], f"total {total:,.1f} ms per batch"

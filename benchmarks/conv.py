"""Suite ``conv``: every conv layer of DeepConvNet and AlexNet, forward and backward.

For each layer: achieved GFLOP/s (2 * N * FN * OH * OW * C * KH * KW per forward, twice that per
backward: the dW and dx GEMMs) against the backend's measured GEMM peak (a large square float32
matrix product), and how the layer's time splits between im2col, GEMM and the rest.
"""

import os

import numpy as np

from benchmarks import plots, timing, workloads
from benchmarks.report import fmt, not_measured, pct, shape_text, table
from xpnet import backends
from xpnet.layers import Conv2D

REPEATS = 10
METHOD = (
    "Layer times: Conv2D.forward / Conv2D.backward called alone on the layer's real input (captured from one "
    "forward pass of the model) and a random dout, timed with the backend's timer() after warm-up calls; "
    "medians. The layer runs its pieces back to back, so they are timed separately. GEMM: the backend's own "
    "conv_gemm_probe, i.e. exactly the matrix products its conv runs for the layer (same shapes, layout, "
    "batch slices and threads), on random float32 arrays, nothing else. im2col (forward only): "
    "the backend's own conv2d_forward run with a single filter (FN = 1: the column copy in full, GEMMs "
    "reduced to matrix-vector products), minus those products timed alone. rest = layer time - GEMM "
    "(- im2col) (backward: col2im or the dout im2col, whichever the backend picks for the layer, plus db, "
    "allocations, reshapes), floored at 0; '*' marks layers "
    "where the pieces' medians add up to more than the layer's. Peak = median GFLOP/s of an n x n float32 "
    "A @ B through backend.matmul (all the backend's threads). Totals: the sum over a model's conv layers; "
    "'GEMM alone' is the time the matrix products take by themselves at the rates measured above, a floor "
    "for any im2col + GEMM convolution on this BLAS.")


def gemm_peak(backend, n, repeats, warmup):
    """Median GFLOP/s of an ``n`` x ``n`` float32 matrix product on ``backend`` (a name)."""
    be = backends.get(backend)
    rng = be.rng(0)
    A, B = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    stats = timing.measure(lambda: be.matmul(A, B), be.timer, repeats, warmup)
    return {"n": n, **stats, "gflops": 2.0 * n**3 / stats["median_ms"] / 1e6}


def _conv_inputs(model, x):
    """``[(name, Conv2D layer, its input)]`` from one inference-mode forward pass."""
    found = []
    for name, layer in model.net.layers.items():
        if isinstance(layer, Conv2D):
            found.append((name, layer, x))
        x = layer.forward(x, False)
    return found


def _measure_layer(be, model_key, name, layer, x, settings):
    """Times and FLOP rates of one conv layer; see :data:`METHOD`."""
    reps, warm = settings.n_repeats(REPEATS), settings.n_warmup()
    N, C, H, W = x.shape
    _, FN, OH, OW = layer.output_shape(x.shape)
    K, P = C * layer.KH * layer.KW, OH * OW
    flop = 2.0 * N * FN * P * K
    fwd = timing.measure(lambda: layer.forward(x, True), be.timer, reps, warm)
    dout = be.rng(2).random((N, FN, OH, OW), dtype=np.float32)
    bwd = timing.measure(lambda: layer.backward(dout), be.timer, reps, warm)
    gemm_f, gemm_b = be.conv_gemm_probe(x.shape, layer.params["W"].shape, layer.stride, layer.pad)
    gemm_fwd = timing.measure(gemm_f, be.timer, reps, warm)
    gemm_bwd = timing.measure(gemm_b, be.timer, reps, warm)
    del gemm_f, gemm_b
    im2col = _im2col_time(be, layer, x, reps, warm)
    return {
        "backend": be.name, "model": model_key, "layer": name, "input_shape": list(x.shape),
        "output_shape": [N, FN, OH, OW], "kernel": [layer.KH, layer.KW], "stride": list(layer.stride),
        "pad": list(layer.pad), "gemm_mnk": [FN, N * P, K], "forward_gflop": flop / 1e9,
        "forward": _phase(fwd, flop, {"im2col": im2col, "gemm": gemm_fwd["median_ms"]}),
        "backward": _phase(bwd, 2 * flop, {"gemm": gemm_bwd["median_ms"]}),
    }


def _im2col_time(be, layer, x, reps, warm):
    """ms of the backend's own conv forward with one filter, less that conv's tiny GEMMs: its column copy.

    With FN = 1 the backend runs its column copy in full while its GEMMs shrink to matrix-vector
    products, which are timed on their own and subtracted. (Backward has no such split: a backend may
    compute dx by col2im or by an im2col of dout, depending on the layer.)
    """
    W1, b1 = layer.params["W"][:1].copy(), layer.params["b"][:1].copy()
    ws, geometry = {}, (layer.stride, layer.pad)
    fwd = timing.measure(lambda: be.conv2d_forward(x, W1, b1, *geometry, ws), be.timer, reps, warm)
    gemv = be.conv_gemm_probe(x.shape, W1.shape, *geometry)[0]
    return max(0.0, fwd["median_ms"] - timing.measure(gemv, be.timer, reps, warm)["median_ms"])


def _phase(total, flop, pieces):
    ms = total["median_ms"]
    out = {**total, "gflops": flop / ms / 1e6, "gemm_gflops": flop / pieces["gemm"] / 1e6}
    used = 0.0
    for key, piece_ms in pieces.items():
        out[f"{key}_ms"] = piece_ms
        used += piece_ms
    out["rest_ms"] = max(0.0, ms - used)
    out["pieces_exceed_total"] = used > ms
    return out


def run(settings):
    """GEMM peak and every conv layer on every backend; returns the suite's JSON-ready result."""
    out = {"method": METHOD, "peak": {}, "models": {}, "layers": []}
    for name in settings.backends:
        be = backends.get(name)
        out["peak"][name] = gemm_peak(name, settings.gemm_n(name), settings.n_repeats(5), settings.n_warmup(1))
        for key in ("deep_convnet", "alexnet"):
            out["models"][key] = {"input": list(workloads.input_dim(key, settings)), "batch": settings.batch(key),
                                  "note": workloads.describe_input(key, settings)}
            model = workloads.build(key, settings, name)
            x, _ = workloads.random_batch(name, workloads.input_dim(key, settings), settings.batch(key), 10)
            for lname, layer, xin in _conv_inputs(model, x):
                row = _measure_layer(be, key, lname, layer, xin, settings)
                for phase in ("forward", "backward"):
                    row[phase]["peak_fraction"] = row[phase]["gflops"] / out["peak"][name]["gflops"]
                out["layers"].append(row)
            del model, x
    out["totals"] = totals(out["layers"])
    return out


def totals(layers):
    """``{backend: {model: sums}}``: each model's conv layers and their GEMMs alone, forward and backward."""
    sums = {}
    for r in layers:
        t = sums.setdefault(r["backend"], {}).setdefault(r["model"], {"gflop": 0.0, "layers": 0})
        t["layers"] += 1
        t["gflop"] += 3 * r["forward_gflop"]
        for phase in ("forward", "backward"):
            t[f"{phase}_ms"] = t.get(f"{phase}_ms", 0.0) + r[phase]["median_ms"]
            t[f"{phase}_gemm_ms"] = t.get(f"{phase}_gemm_ms", 0.0) + r[phase]["gemm_ms"]
    return sums


def render(result, unavailable=None):
    """Forward and backward tables per backend, as text."""
    parts = []
    for name, peak in result["peak"].items():
        rows = [r for r in result["layers"] if r["backend"] == name]
        parts.append(f"{name}: GEMM peak {peak['gflops']:,.1f} GFLOP/s (float32 {peak['n']}x{peak['n']} A @ B, "
                     f"median of {peak['repeats']})")
        for phase in ("forward", "backward"):
            parts.append(table(_HEADERS[phase], [_cells(r, phase) for r in rows],
                               title=f"{name} conv {phase} (medians)"))
        sums = result.get("totals", {}).get(name, {})
        parts.append(table(_TOTAL_HEADERS, [_total_cells(key, t) for key, t in sums.items()],
                           title=f"{name} conv layers summed (forward + backward)"))
    notes = [f"{key}: batch {m['batch']}, {m['note']}" for key, m in result["models"].items()]
    parts.append("; ".join(notes))
    parts.append("Method: " + result["method"])
    return "\n\n".join(parts + not_measured(unavailable))


_COMMON = ["model", "layer", "input", "kernel/s/p", "GFLOP", "ms", "GFLOP/s", "% peak", "GEMM GFLOP/s"]
_HEADERS = {"forward": _COMMON + ["im2col %", "GEMM %", "rest %"], "backward": _COMMON + ["GEMM %", "rest %"]}


_TOTAL_HEADERS = ["model", "layers", "GFLOP", "fwd ms", "GEMM alone", "bwd ms", "GEMM alone", "fwd+bwd ms",
                  "GEMM alone", "GEMM GFLOP/s"]


def _total_cells(model, t):
    ms, gemm = t["forward_ms"] + t["backward_ms"], t["forward_gemm_ms"] + t["backward_gemm_ms"]
    return [model, t["layers"], fmt(t["gflop"], 3), fmt(t["forward_ms"], 2), fmt(t["forward_gemm_ms"], 2),
            fmt(t["backward_ms"], 2), fmt(t["backward_gemm_ms"], 2), fmt(ms, 2), fmt(gemm, 2),
            fmt(t["gflop"] / gemm * 1e3, 1)]


def _cells(r, phase):
    p = r[phase]
    ms = p["median_ms"]
    geometry = f"{r['kernel'][0]}x{r['kernel'][1]}/{r['stride'][0]}/{r['pad'][0]}"
    gflop = r["forward_gflop"] * (1 if phase == "forward" else 2)
    flag = "*" if p["pieces_exceed_total"] else ""
    return [r["model"], r["layer"], shape_text(r["input_shape"]), geometry, fmt(gflop, 3), fmt(ms, 3),
            fmt(p["gflops"], 1), pct(p["peak_fraction"]), fmt(p["gemm_gflops"], 1)] + \
        ([pct(p["im2col_ms"] / ms)] if phase == "forward" else []) + \
        [pct(p["gemm_ms"] / ms), pct(p["rest_ms"] / ms) + flag]


def plot(result, settings):
    """One stacked-bar figure per backend of each layer's time split; returns the paths."""
    paths = []
    for name, peak in result["peak"].items():
        labels, copy, gemm, rest, notes = [], [], [], [], []
        for r in (r for r in result["layers"] if r["backend"] == name):
            for phase, tag in (("forward", "fwd"), ("backward", "bwd")):
                p = r[phase]
                labels.append(f"{r['model']} {r['layer']} {tag}")
                copy.append(p.get("im2col_ms", 0.0))
                gemm.append(p["gemm_ms"])
                rest.append(p["rest_ms"])
                notes.append(f"{p['gflops']:,.0f} GFLOP/s ({100 * p['peak_fraction']:.0f}%)")
        title = f"conv layers on {name}: time split; GEMM peak {peak['gflops']:,.0f} GFLOP/s"
        path = os.path.join(settings.plots_dir, f"conv_split_{name}.png")
        paths.append(plots.split_bars(path, title, labels, {"im2col (forward)": copy, "GEMM": gemm,
                                                            "rest": rest}, notes))
    return paths

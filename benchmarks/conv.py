"""Suite ``conv``: every conv layer of DeepConvNet and AlexNet, forward and backward.

For each layer: achieved GFLOP/s (2 * N * FN * OH * OW * C * KH * KW per forward, twice that per
backward: the dW and dx GEMMs) against the backend's measured GEMM peak (a large square float32
matrix product), which algorithm the backend's plan picked (im2col + GEMM, or the compiled direct
convolution), and how the layer's time splits between the copies, the products (GEMMs or the direct
kernel) and the rest.
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
    "medians. Pieces: the backend's own stage times of those very calls (backend.conv_stages(): each stage "
    "of the layer's plan timed where it runs, summed over the stage's calls and averaged over the batch "
    "slices that run side by side; the mean over as many calls again). algorithm: im2col (column copies + "
    "GEMMs) or direct (the compiled direct convolution, whose kernel builds its per-image shifted rows "
    "itself, so it has no separate copy stage) or direct s2d (a strided layer as the direct convolution of its "
    "space-to-depth). im2col (forward): the column copy, or the space-to-depth; products: every matrix "
    "product of the plan (backward: dW, and dx's dcol or the full convolution's), or the direct kernel's "
    "calls (forward, dW, dx); "
    "dx copy (backward): col2im's strided adds or the im2col of dout for the full convolution, whichever the "
    "plan picks for the layer, or the inverse space-to-depth; rest = layer time - the pieces (bias, db, "
    "partial sums, allocations, threads "
    "handing over), floored at 0; '*' marks layers where the pieces add up to more than the layer's median. "
    "A backend that times no stages (CUDA) gets its GEMM share from conv_gemm_probe (its products on random "
    "arrays) and no copy share. Peak = median GFLOP/s of an n x n float32 A @ B through backend.matmul (all "
    "the backend's threads). Totals: the sum over a model's conv layers; 'products alone' is the time the "
    "products take inside the layers.")

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
    fwd_stages = _stage_means(be, lambda: layer.forward(x, True), reps)
    bwd_stages = _stage_means(be, lambda: layer.backward(dout), reps)
    if fwd_stages:
        forward = {"im2col": fwd_stages.get("im2col", 0.0) + fwd_stages.get("space-to-depth", 0.0),
                   "products": _products_ms(fwd_stages)}
        backward = {"dx_copy": sum(bwd_stages.get(k, 0.0) for k in ("col2im", "dx: im2col", "depth-to-space")),
                    "products": _products_ms(bwd_stages)}
    else:
        forward, backward = _probed_gemm(be, x, layer, reps, warm)
    return {
        "backend": be.name, "model": model_key, "layer": name, "input_shape": list(x.shape),
        "output_shape": [N, FN, OH, OW], "kernel": [layer.KH, layer.KW], "stride": list(layer.stride),
        "pad": list(layer.pad), "algorithm": _algorithm(fwd_stages),
        "gemm_mnk": [FN, N * P, K], "forward_gflop": flop / 1e9,
        "forward_stages_ms": fwd_stages, "backward_stages_ms": bwd_stages,
        "forward": _phase(fwd, flop, forward), "backward": _phase(bwd, 2 * flop, backward),
    }


def _algorithm(fwd_stages):
    """The plan's algorithm, from its forward stages' names."""
    return "direct s2d" if "space-to-depth" in fwd_stages else "direct" if "direct" in fwd_stages else "im2col"


def _stage_means(be, fn, reps):
    """``{stage: ms per call}`` of the backend's conv stages over ``reps`` calls of ``fn`` ({} if it times none)."""
    be.synchronize()
    with be.conv_stages() as ms:
        for _ in range(reps):
            fn()
    be.synchronize()
    return {name: total / reps for name, total in ms.items()}


def _products_ms(stages):
    """The plan's multiply-add stages: its GEMMs, or the direct kernel's calls."""
    return sum(ms for name, ms in stages.items() if "gemm" in name or "direct" in name)


def _probed_gemm(be, x, layer, reps, warm):
    """``(forward, backward)`` pieces from conv_gemm_probe: the backend's products on random arrays."""
    gemm_f, gemm_b = be.conv_gemm_probe(x.shape, layer.params["W"].shape, layer.stride, layer.pad)
    return ({"products": timing.measure(gemm_f, be.timer, reps, warm)["median_ms"]},
            {"products": timing.measure(gemm_b, be.timer, reps, warm)["median_ms"]})


def _phase(total, flop, pieces):
    ms = total["median_ms"]
    out = {**total, "gflops": flop / ms / 1e6, "products_gflops": flop / pieces["products"] / 1e6}
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
    """``{backend: {model: sums}}``: each model's conv layers and their products alone, forward and backward."""
    sums = {}
    for r in layers:
        t = sums.setdefault(r["backend"], {}).setdefault(r["model"], {"gflop": 0.0, "layers": 0})
        t["layers"] += 1
        t["gflop"] += 3 * r["forward_gflop"]
        for phase in ("forward", "backward"):
            t[f"{phase}_ms"] = t.get(f"{phase}_ms", 0.0) + r[phase]["median_ms"]
            t[f"{phase}_products_ms"] = t.get(f"{phase}_products_ms", 0.0) + r[phase]["products_ms"]
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


_COMMON = ["model", "layer", "input", "kernel/s/p", "algorithm", "GFLOP", "ms", "GFLOP/s", "% peak",
           "products GFLOP/s"]
_HEADERS = {"forward": _COMMON + ["im2col %", "products %", "rest %"],
            "backward": _COMMON + ["dx copy %", "products %", "rest %"]}
_COPY = {"forward": "im2col_ms", "backward": "dx_copy_ms"}


_TOTAL_HEADERS = ["model", "layers", "GFLOP", "fwd ms", "products alone", "bwd ms", "products alone",
                  "fwd+bwd ms", "products alone", "products GFLOP/s"]


def _total_cells(model, t):
    ms, products = t["forward_ms"] + t["backward_ms"], t["forward_products_ms"] + t["backward_products_ms"]
    return [model, t["layers"], fmt(t["gflop"], 3), fmt(t["forward_ms"], 2), fmt(t["forward_products_ms"], 2),
            fmt(t["backward_ms"], 2), fmt(t["backward_products_ms"], 2), fmt(ms, 2), fmt(products, 2),
            fmt(t["gflop"] / products * 1e3, 1)]


def _cells(r, phase):
    p = r[phase]
    ms = p["median_ms"]
    geometry = f"{r['kernel'][0]}x{r['kernel'][1]}/{r['stride'][0]}/{r['pad'][0]}"
    gflop = r["forward_gflop"] * (1 if phase == "forward" else 2)
    flag = "*" if p["pieces_exceed_total"] else ""
    return [r["model"], r["layer"], shape_text(r["input_shape"]), geometry, r.get("algorithm", "-"), fmt(gflop, 3),
            fmt(ms, 3), fmt(p["gflops"], 1), pct(p["peak_fraction"]), fmt(p["products_gflops"], 1)] + \
        [pct(p[_COPY[phase]] / ms) if _COPY[phase] in p else "-", pct(p["products_ms"] / ms),
         pct(p["rest_ms"] / ms) + flag]


def plot(result, settings):
    """One stacked-bar figure per backend of each layer's time split; returns the paths."""
    paths = []
    for name, peak in result["peak"].items():
        labels, copy, gemm, rest, notes = [], [], [], [], []
        for r in (r for r in result["layers"] if r["backend"] == name):
            for phase, tag in (("forward", "fwd"), ("backward", "bwd")):
                p = r[phase]
                labels.append(f"{r['model']} {r['layer']} {tag}")
                copy.append(p.get(_COPY[phase], 0.0))
                gemm.append(p["products_ms"])
                rest.append(p["rest_ms"])
                notes.append(f"{p['gflops']:,.0f} GFLOP/s ({100 * p['peak_fraction']:.0f}%)")
        title = f"conv layers on {name}: time split; GEMM peak {peak['gflops']:,.0f} GFLOP/s"
        path = os.path.join(settings.plots_dir, f"conv_split_{name}.png")
        paths.append(plots.split_bars(path, title, labels, {"copies (im2col, dx)": copy, "products": gemm,
                                                            "rest": rest}, notes))
    return paths

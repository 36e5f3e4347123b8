"""Suite ``conv``: every conv layer of DeepConvNet and AlexNet, forward and backward.

For each layer: achieved GFLOP/s (2 * N * FN * OH * OW * C * KH * KW per forward, twice that per
backward: the dW and dx GEMMs) against the backend's measured GEMM peak (a large square float32
matrix product), and how the layer's time splits between im2col/col2im, GEMM and the rest.
"""

import os

import numpy as np

from benchmarks import plots, timing, workloads
from benchmarks.report import fmt, pct, shape_text, table
from xpnet import backends
from xpnet.layers import Conv2D

REPEATS = 10
METHOD = (
    "Layer times: Conv2D.forward / Conv2D.backward called alone on the layer's real input (captured from one "
    "forward pass of the model) and a random dout, timed with the backend's timer() after warm-up calls; "
    "medians. The layer runs its pieces back to back, so they are timed separately. GEMM: matrix products of "
    "exactly the shapes the backend's conv uses, on random float32 arrays (numpy: per-image batched "
    "W(FN, C*KH*KW) @ col(N, C*KH*KW, OH*OW), dW = sum over images of dout @ col^T, dcol = W^T @ dout; "
    "other backends: col(N*OH*OW, C*KH*KW) @ W^T, dW = dout^T @ col, dcol = dout @ W). im2col / col2im: "
    "the backend's own conv2d_forward / conv2d_backward run with a single filter (FN = 1: padding, column "
    "copy and col2im in full, GEMMs reduced to matrix-vector products), minus those matrix-vector products "
    "timed alone; this measures the layer's real copy code (the numpy backend's channel-major copy is up to "
    "4x faster than backend.im2col's row-major layout, so timing backend.im2col would mislead). rest = "
    "layer time - GEMM - im2col/col2im (bias, db, allocations, reshapes), floored at 0; '*' marks layers "
    "where the pieces' medians add up to more than the layer's. Peak = median GFLOP/s of an n x n float32 "
    "A @ B on the backend.")


def gemm_peak(backend, n, repeats, warmup):
    """Median GFLOP/s of an ``n`` x ``n`` float32 matrix product on ``backend`` (a name)."""
    be = backends.get(backend)
    rng = be.rng(0)
    A, B = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    stats = timing.measure(lambda: A @ B, be.timer, repeats, warmup)
    return {"n": n, **stats, "gflops": 2.0 * n**3 / stats["median_ms"] / 1e6}


def _conv_inputs(model, x):
    """``[(name, Conv2D layer, its input)]`` from one inference-mode forward pass."""
    found = []
    for name, layer in model.net.layers.items():
        if isinstance(layer, Conv2D):
            found.append((name, layer, x))
        x = layer.forward(x, False)
    return found


def _gemms(be, N, K, FN, P):
    """Zero-argument callables ``(forward, backward)`` doing the conv's GEMMs on random arrays."""
    rng = be.rng(1)
    W = rng.random((FN, K), dtype=np.float32)
    if be.name == "numpy":  # channel-major, one GEMM per image (NumpyBackend.conv2d_forward/backward)
        col, d = rng.random((N, K, P), dtype=np.float32), rng.random((N, FN, P), dtype=np.float32)
        colT = col.transpose(0, 2, 1)
        return (lambda: be.xp.matmul(W, col)), (lambda: (be.xp.matmul(d, colT).sum(axis=0),
                                                         be.xp.matmul(W.T, d)))
    col, d = rng.random((N * P, K), dtype=np.float32), rng.random((N * P, FN), dtype=np.float32)
    return (lambda: col @ W.T), (lambda: (d.T @ col, d @ W))  # Backend.conv2d_forward/backward


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
    gemm_f, gemm_b = _gemms(be, N, K, FN, P)
    gemm_fwd = timing.measure(gemm_f, be.timer, reps, warm)
    gemm_bwd = timing.measure(gemm_b, be.timer, reps, warm)
    del gemm_f, gemm_b
    im2col, col2im = _copy_times(be, layer, x, reps, warm)
    return {
        "backend": be.name, "model": model_key, "layer": name, "input_shape": list(x.shape),
        "output_shape": [N, FN, OH, OW], "kernel": [layer.KH, layer.KW], "stride": list(layer.stride),
        "pad": list(layer.pad), "gemm_mnk": [FN, N * P, K], "forward_gflop": flop / 1e9,
        "forward": _phase(fwd, flop, {"im2col": im2col, "gemm": gemm_fwd["median_ms"]}),
        "backward": _phase(bwd, 2 * flop, {"col2im": col2im, "gemm": gemm_bwd["median_ms"]}),
    }


def _copy_times(be, layer, x, reps, warm):
    """``(im2col ms, col2im ms)``: the backend's own conv with one filter, less that conv's tiny GEMMs.

    With FN = 1 the backend runs its padding, column copy and col2im in full while its GEMMs shrink to
    matrix-vector products, which are timed on their own and subtracted.
    """
    N, C, _, _ = x.shape
    _, _, OH, OW = layer.output_shape(x.shape)
    W1, b1 = layer.params["W"][:1].copy(), layer.params["b"][:1].copy()
    ws, geometry = {}, (layer.stride, layer.pad)
    fwd = timing.measure(lambda: be.conv2d_forward(x, W1, b1, *geometry, ws), be.timer, reps, warm)
    _, cache = be.conv2d_forward(x, W1, b1, *geometry, ws)
    d1 = be.rng(3).random((N, 1, OH, OW), dtype=np.float32)
    bwd = timing.measure(lambda: be.conv2d_backward(d1, cache, W1, *geometry, ws), be.timer, reps, warm)
    gemv_f, gemv_b = _gemms(be, N, C * layer.KH * layer.KW, 1, OH * OW)
    gf = timing.measure(gemv_f, be.timer, reps, warm)["median_ms"]
    gb = timing.measure(gemv_b, be.timer, reps, warm)["median_ms"]
    return max(0.0, fwd["median_ms"] - gf), max(0.0, bwd["median_ms"] - gb)


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
    return out


def render(result, unavailable=None):
    """Forward and backward tables per backend, as text."""
    parts = []
    for name, peak in result["peak"].items():
        rows = [r for r in result["layers"] if r["backend"] == name]
        parts.append(f"{name}: GEMM peak {peak['gflops']:,.1f} GFLOP/s (float32 {peak['n']}x{peak['n']} A @ B, "
                     f"median of {peak['repeats']})")
        for phase, piece in (("forward", "im2col"), ("backward", "col2im")):
            parts.append(table(_HEADERS[phase], [_cells(r, phase, piece) for r in rows],
                               title=f"{name} conv {phase} (medians)"))
    notes = [f"{key}: batch {m['batch']}, {m['note']}" for key, m in result["models"].items()]
    parts.append("; ".join(notes))
    parts.append("Method: " + result["method"])
    return "\n\n".join(parts + [f"{n}: not measured ({why})" for n, why in (unavailable or {}).items()])


_HEADERS = {
    phase: ["model", "layer", "input", "kernel/s/p", "GFLOP", "ms", "GFLOP/s", "% peak", "GEMM GFLOP/s",
            piece + " %", "GEMM %", "rest %"]
    for phase, piece in (("forward", "im2col"), ("backward", "col2im"))
}


def _cells(r, phase, piece):
    p = r[phase]
    ms = p["median_ms"]
    geometry = f"{r['kernel'][0]}x{r['kernel'][1]}/{r['stride'][0]}/{r['pad'][0]}"
    gflop = r["forward_gflop"] * (1 if phase == "forward" else 2)
    flag = "*" if p["pieces_exceed_total"] else ""
    return [r["model"], r["layer"], shape_text(r["input_shape"]), geometry, fmt(gflop, 3), fmt(ms, 3),
            fmt(p["gflops"], 1), pct(p["peak_fraction"]), fmt(p["gemm_gflops"], 1),
            pct(p[f"{piece}_ms"] / ms), pct(p["gemm_ms"] / ms), pct(p["rest_ms"] / ms) + flag]


def plot(result, settings):
    """One stacked-bar figure per backend of each layer's time split; returns the paths."""
    paths = []
    for name, peak in result["peak"].items():
        labels, copy, gemm, rest, notes = [], [], [], [], []
        for r in (r for r in result["layers"] if r["backend"] == name):
            for phase, piece, tag in (("forward", "im2col", "fwd"), ("backward", "col2im", "bwd")):
                p = r[phase]
                labels.append(f"{r['model']} {r['layer']} {tag}")
                copy.append(p[f"{piece}_ms"])
                gemm.append(p["gemm_ms"])
                rest.append(p["rest_ms"])
                notes.append(f"{p['gflops']:,.0f} GFLOP/s ({100 * p['peak_fraction']:.0f}%)")
        title = f"conv layers on {name}: time split; GEMM peak {peak['gflops']:,.0f} GFLOP/s"
        path = os.path.join(settings.plots_dir, f"conv_split_{name}.png")
        paths.append(plots.split_bars(path, title, labels, {"im2col / col2im": copy, "GEMM": gemm,
                                                            "rest": rest}, notes))
    return paths

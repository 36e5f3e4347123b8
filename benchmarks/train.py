"""Suite ``train``: DeepConvNet training-step throughput per backend and batch size, optionally against PyTorch.

One step is what :class:`xpnet.training.Trainer` does per batch: loss (forward in training mode),
backward, and an Adam update of every parameter. With ``--compare torch`` an identical PyTorch
network (built from the xpnet one, same initial weights, float32, same thread count) takes the same
step on the matching device (NumPy backend vs torch CPU, CUDA backend vs torch CUDA), and the two
are timed in alternating turns in one run.
"""

import os

import numpy as np

from benchmarks import machine, plots, timing, torch_peer
from benchmarks.report import fmt, not_measured, table
from xpnet import backends
from xpnet.models import DeepConvNet
from xpnet.optim import Adam

REPEATS = 20
BLOCK = 5  # timed calls per turn when alternating with PyTorch, after one untimed call (timing.interleaved)
INPUT = (1, 28, 28)
METHOD = ("One training step = model.loss(x, t, train=True) + model.backward() + Adam(lr=1e-3).step over all "
          "parameters, on a fixed random batch already on the device (no data loading). Timed per step with "
          "the backend's timer() (perf_counter on the CPU; CUDA events, which synchronize, on the GPU) after "
          "warm-up steps; images/s = batch / median step time. With --compare torch the PyTorch twin "
          "(torch.nn with the same layers, copied initial weights, CrossEntropyLoss, torch.optim.Adam with the "
          "same hyperparameters, float32, torch.set_num_threads = xpnet's CPU threads, TF32 off unless "
          "CUPY_TF32=1) is timed in the same run, alternating with xpnet in turns of 5 timed steps (A B, B A, "
          "...), each turn opened by one untimed step that absorbs what the other side left running (PyTorch's "
          "spinning OpenMP workers); ratio = xpnet images/s / torch images/s (1.0 = parity, below 1 = xpnet slower).")


def torch_missing():
    """None when torch is importable, else how to install it."""
    return torch_peer.missing()


def run(settings):
    """Measure every (backend, batch size); returns the suite's JSON-ready result."""
    threads, source = machine.blas_threads()
    out = {"method": METHOD, "model": "deep_convnet", "input": list(INPUT), "dtype": "float32",
           "optimizer": {"name": "Adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
           "blas_threads": threads, "blas_threads_source": source, "compare": settings.compare, "rows": []}
    if settings.compare == "torch":
        out["torch"] = torch_peer.configure(threads)
    for name in settings.backends:
        for batch in settings.train_batches():
            out["rows"].append(_measure(name, batch, settings))
    return out


def _measure(name, batch, settings):
    be = backends.get(name)
    rng = np.random.default_rng(0)
    x = rng.random((batch, *INPUT), dtype=np.float32)
    t = rng.integers(0, 10, size=batch)
    model = DeepConvNet(input_dim=INPUT, dtype="float32", backend=name)
    xd, td, opt = be.asarray(x), be.asarray(t), Adam(lr=1e-3)

    def step():
        model.loss(xd, td, train=True)
        model.backward()
        opt.step(model.params, model.grads)

    contenders = {"xpnet": (step, be.timer)}
    row = {"backend": name, "batch": batch}
    device = torch_peer.device_of(name)
    if settings.compare == "torch" and torch_peer.unavailable(device):
        row["torch_skipped"] = torch_peer.unavailable(device)
    elif settings.compare == "torch":
        net = torch_peer.twin(model, device)  # before any step: same initial weights
        row["torch_device"] = device
        row["max_score_difference"] = torch_peer.max_score_difference(model, net, x)
        contenders["torch"] = (torch_peer.training_step(net, x, t), torch_peer.timer_factory(device))
    return finish(row, contenders, batch, settings)


def finish(row, contenders, batch, settings):
    """Time the contenders in alternating turns of BLOCK calls (see timing.interleaved); add images/s per
    contender and the xpnet/torch ratio to ``row``."""
    results = timing.interleaved(contenders, settings.n_repeats(REPEATS), settings.n_warmup(3), BLOCK)
    for key, stats in results.items():
        stats["images_per_s"] = batch / (stats["median_ms"] / 1e3)
        row[key] = stats
    if "torch" in row:
        row["ratio_xpnet_over_torch"] = row["xpnet"]["images_per_s"] / row["torch"]["images_per_s"]
    return row


def render(result, unavailable=None):
    """The throughput table as text."""
    compare = result["compare"] == "torch"
    headers = ["backend", "batch", "xpnet ms", "min", "max", "xpnet img/s"]
    if compare:
        headers += ["torch ms", "min", "max", "torch img/s", "xpnet/torch"]
    rows = []
    for r in result["rows"]:
        x = r["xpnet"]
        row = [r["backend"], r["batch"], fmt(x["median_ms"]), fmt(x["min_ms"]), fmt(x["max_ms"]),
               fmt(x["images_per_s"], 0)]
        if compare and "torch" not in r:
            row += ["-", "-", "-", "-", "-"]
        elif compare:
            t = r["torch"]
            row += [fmt(t["median_ms"]), fmt(t["min_ms"]), fmt(t["max_ms"]), fmt(t["images_per_s"], 0),
                    f"{r['ratio_xpnet_over_torch']:.2f}x"]
        rows.append(row)
    title = result.get("title") or (f"DeepConvNet training step (forward + backward + Adam), float32, input "
             f"{'x'.join(map(str, result['input']))}, threads {result['blas_threads']}")
    lines = [table(headers, rows, title=title)]
    if compare:
        diffs = ", ".join(f"{r['backend']}/{r['batch']}: {r['max_score_difference']:.1e}"
                          for r in result["rows"] if "torch" in r)
        lines.append(f"torch {result['torch']['torch']}, {result['torch']['threads']} threads, fp32 precision "
                     f"{result['torch']['fp32_precision']}; max |score difference| before timing: {diffs}")
        skipped = {r["backend"]: r["torch_skipped"] for r in result["rows"] if "torch_skipped" in r}
        lines += not_measured({f"torch on {name}": why for name, why in skipped.items()})
    lines += not_measured(unavailable)
    return "\n".join(lines)


def plot(result, settings):
    """Grouped throughput bars (one series per backend, and per torch device) under plots_dir."""
    batches = sorted({r["batch"] for r in result["rows"]})
    series = {}
    for r in result["rows"]:
        series.setdefault(f"xpnet {r['backend']}", {})[r["batch"]] = r["xpnet"]["images_per_s"]
        if "torch" in r:
            series.setdefault(f"torch {r['torch_device']}", {})[r["batch"]] = r["torch"]["images_per_s"]
    name = result.get("plot_name", "train_throughput.png")
    title = result.get("plot_title", "DeepConvNet training throughput (forward + backward + Adam)")
    return [plots.throughput_bars(os.path.join(settings.plots_dir, name), title, series, batches)]

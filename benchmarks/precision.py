"""Suite ``precision``: DeepConvNet inference speed and accuracy per dtype (float64/32/16) per backend.

Accuracy: with ``XPNET_PRECISION_MODEL=path/to/model.npz`` (a trained DeepConvNet) and MNIST at hand,
the test accuracy on all 10,000 images (the first 200 with ``--quick``); otherwise the top-1 agreement
of each dtype's predictions with float64's on the timed random batch (a randomly initialised model).
bfloat16 is listed as unsupported with the backend's reason (see :mod:`xpnet.precision`).
"""

import os

import numpy as np

from benchmarks import machine, plots, timing, train
from benchmarks.report import fmt, not_measured, table
from xpnet import backends, precision
from xpnet.errors import DTypeError
from xpnet.models import DeepConvNet

DTYPES = ("float64", "float32", "float16", "bfloat16")
REPEATS = 10
METHOD = ("One inference = model.predict(x) in eval mode on a fixed batch already on the device, with the "
          "model cast by model.astype(dtype); timed with the backend's timer() after warm-up; images/s = batch / "
          "median time. Accuracy: XPNET_PRECISION_MODEL's test accuracy on MNIST, else top-1 agreement with "
          "float64 on the timed batch; max |score - float64 score| on the timed batch.")


def run(settings):
    """Measure every (backend, dtype, batch); returns the suite's JSON-ready result."""
    threads, source = machine.blas_threads()
    model_path = os.environ.get("XPNET_PRECISION_MODEL")
    out = {"method": METHOD, "model": model_path or "deep_convnet (random weights)", "input": list(train.INPUT),
           "blas_threads": threads, "blas_threads_source": source, "rows": [],
           "accuracy_kind": "mnist_test" if model_path else "agreement_with_float64",
           "title": f"DeepConvNet inference per dtype, input {'x'.join(map(str, train.INPUT))}, threads {threads}",
           "plot_name": "precision_throughput.png"}
    data = _mnist(settings) if model_path else None
    for name in settings.backends:
        for batch in settings.infer_batches():
            out["rows"] += _measure(name, batch, settings, model_path, data)
    return out


def _mnist(settings):
    from xpnet.datasets import load_mnist

    _, (x, t) = load_mnist(normalize=True, flatten=False)
    return (x[:200], t[:200]) if settings.quick else (x, t)


def _model(name, path):
    if path:
        import xpnet

        return xpnet.load(path, backend=name)
    return DeepConvNet(input_dim=train.INPUT, dtype="float64", backend=name)


def _measure(name, batch, settings, model_path, data):
    be = backends.get(name)
    x = be.asarray(np.random.default_rng(0).random((batch, *train.INPUT)))
    ref = be.asnumpy(_model(name, model_path).astype("float64").predict(x)).astype(np.float64)
    rows = []
    for dtype in DTYPES:
        row = {"backend": name, "dtype": dtype, "batch": batch}
        model = _model(name, model_path)
        try:
            model.astype(dtype)
        except DTypeError as e:
            rows.append({**row, "unsupported": str(e)})
            continue
        xd = x.astype(precision.resolve(dtype, name))
        stats = timing.measure(_predictor(model, xd), be.timer, settings.n_repeats(REPEATS), settings.n_warmup())
        scores = be.asnumpy(model.predict(xd)).astype(np.float64)
        row.update(stats, images_per_s=batch / (stats["median_ms"] / 1e3),
                   max_score_difference=float(np.abs(scores - ref).max()),
                   accuracy=(model.accuracy(*data, batch_size=max(batch, 100)) if data is not None
                             else float((scores.argmax(1) == ref.argmax(1)).mean())))
        rows.append(row)
    return rows


def _predictor(model, x):
    return lambda: model.predict(x)


def render(result, unavailable=None):
    """The per-dtype table as text."""
    headers = ["backend", "dtype", "batch", "ms", "img/s", "accuracy" if result["accuracy_kind"] == "mnist_test"
               else "agree f64", "max |dscore|"]
    rows = []
    for r in result["rows"]:
        if "unsupported" in r:
            rows.append([r["backend"], r["dtype"], r["batch"], "-", "-", "-", "unsupported"])
            continue
        rows.append([r["backend"], r["dtype"], r["batch"], fmt(r["median_ms"]), fmt(r["images_per_s"], 0),
                     f"{r['accuracy']:.4f}", f"{r['max_score_difference']:.1e}"])
    lines = [table(headers, rows, title=result["title"])]
    reasons = {r["unsupported"] for r in result["rows"] if "unsupported" in r}
    lines += sorted(reasons)
    lines += not_measured(unavailable)
    return "\n".join(lines)


def plot(result, settings):
    """Throughput bars, one series per (backend, dtype)."""
    batches = sorted({r["batch"] for r in result["rows"]})
    series = {}
    for r in result["rows"]:
        if "unsupported" not in r:
            series.setdefault(f"{r['backend']} {r['dtype']}", {})[r["batch"]] = r["images_per_s"]
    path = os.path.join(settings.plots_dir, result["plot_name"])
    return [plots.throughput_bars(path, "DeepConvNet inference throughput per dtype", series, batches)]

"""The book's half_float_network.py done properly: real float16 arithmetic, not float16 storage.

The book (ch. 8) rounds float64 weights to float16 and keeps computing in float64. Here the trained
model is cast with ``model.astype(dtype)``, so inputs, weights, activations and GEMM outputs are all in
that dtype (softmax and BatchNorm statistics run in float32 internally; see ``xpnet.precision``). The
table gives the accuracy on all 10,000 MNIST test images and the inference speed, per dtype and backend.

Usage:
    xpnet train --out runs/deepnet            # or any model.npz that xpnet saved
    python examples/half_float_network.py runs/deepnet/model.npz [--batch-size 1000]

One dtype on one backend is also ``xpnet eval MODEL --dtype float16``.
"""

import argparse
import time

import xpnet
from xpnet import backends
from xpnet.datasets import load_mnist
from xpnet.errors import DTypeError

DTYPES = ("float64", "float32", "float16", "bfloat16")


def measure(path, backend, dtype, x, t, batch_size):
    """``(accuracy, images per second)`` of the model at ``path`` cast to ``dtype`` on ``backend``."""
    model = xpnet.load(path, backend=backend).astype(dtype)
    model.accuracy(x[:batch_size], t[:batch_size], batch_size=batch_size)  # warm-up (CuPy compiles kernels)
    start = time.perf_counter()
    acc = model.accuracy(x, t, batch_size=batch_size)  # reads the count back: the device has finished
    return acc, len(x) / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="a model file saved by xpnet (xpnet train writes RUN/model.npz)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--limit", type=int, default=None, help="only the first N test images (default: all 10,000)")
    args = p.parse_args(argv)
    _, (x, t) = load_mnist(normalize=True, flatten=False)
    x, t = x[: args.limit], t[: args.limit]
    print(f"{'backend':8} {'dtype':9} {'accuracy':>9} {'vs float32':>11} {'images/s':>9}")
    for name in backends.available():
        base = None
        for dtype in DTYPES:
            try:
                acc, speed = measure(args.model, name, dtype, x, t, args.batch_size)
            except DTypeError as e:
                print(f"{name:8} {dtype:9} {'-':>9} {'-':>11} {'-':>9}  ({e})")
                continue
            base = acc if dtype == "float32" else base
            delta = f"{100 * (acc - base):+.2f} pt" if base is not None else "-"
            print(f"{name:8} {dtype:9} {acc:9.4f} {delta:>11} {speed:9.0f}", flush=True)


if __name__ == "__main__":
    main()

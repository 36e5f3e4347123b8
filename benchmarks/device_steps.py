"""Pieces of the device check that run in their own process: the profile of one step, the data it trains on.

``python -m benchmarks.device_steps profile OUT.json``: DeepConvNet, batch 100, one training step (forward,
backward, Adam) timed whole with the backend's timer, and per layer by the device's clock
(:func:`xpnet.profile.profile`), written as JSON and printed as a table.
"""

import gzip
import json
import os
import struct
import sys

import numpy as np

BATCH = 100


def profile_step(path, backend="cuda", repeats=5, warmup=2):
    """Profile one DeepConvNet training step on ``backend``; writes ``path`` (JSON) and returns its document."""
    from xpnet import backends, optim
    from xpnet.models import DeepConvNet
    from xpnet.profile import profile, summarize

    be = backends.get(backend)
    rng = np.random.default_rng(0)
    x, t = rng.random((BATCH, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, BATCH)
    model, opt = DeepConvNet(backend=be), optim.Adam(lr=0.001)
    xd, td = be.asarray(x), be.asarray(t)
    steps = []
    for i in range(warmup + repeats):
        with be.timer() as tm:
            model.loss(xd, td, train=True)
            model.backward()
            opt.step(model.params, model.grads)
        if i >= warmup:
            steps.append(tm.elapsed_ms)
    rows = profile(model, x, t, repeats=repeats, warmup=warmup)
    layers_ms = sum(r["forward_ms"] + r["backward_ms"] for r in rows)
    doc = {"model": "deep_convnet", "batch": BATCH, "backend": be.info(), "step_ms": sorted(steps)[len(steps) // 2],
           "step_ms_all": steps, "layers_device_ms": layers_ms, "device_only": all(r["device_only"] for r in rows),
           "rows": rows, "by_type": summarize(rows)}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, default=str)
    return doc


def render(doc):
    lines = [f"{'layer':<10} {'type':<8} {'forward ms':>11} {'backward ms':>12} device-only"]
    for r in doc["rows"]:
        lines.append(f"{r['name']:<10} {r['type']:<8} {r['forward_ms']:>11.4f} {r['backward_ms']:>12.4f} "
                     f"{r['device_only']}")
    lines.append(f"one training step (forward + backward + Adam, batch {doc['batch']}): {doc['step_ms']:.3f} ms "
                 f"wall by the backend's timer; the layers' device time adds up to {doc['layers_device_ms']:.3f} ms")
    return "\n".join(lines)


def synthetic_idx(directory, n_train=6000, n_test=1000, seed=0):
    """A 28x28, 10-class IDX set (class k: a bright block in cell k of a 4x3 grid), for when MNIST is absent."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        t = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 80).astype(np.uint8)
        for k in range(10):
            r, c = divmod(k, 3)
            x[t == k, 2 + 6 * r : 8 + 6 * r, 2 + 8 * c : 10 + 8 * c] += 170
        _write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), x)
        _write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), t)


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def prepare_data(directory):
    """Write MNIST (from ``$XPNET_DATA``'s cache, verified) compressed into ``directory/mnist.npz``; its line."""
    from xpnet.datasets.mnist import CACHE_NAME, load_raw_mnist

    raw = load_raw_mnist()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, CACHE_NAME)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **raw)
    os.replace(tmp, path)
    return (f"wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB): carry {directory} to the GPU machine and "
            f"run there with XPNET_DATA={directory}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["profile"] and len(sys.argv) == 3:
        print(render(profile_step(sys.argv[2])))
    else:
        sys.exit("usage: python -m benchmarks.device_steps profile OUT.json")

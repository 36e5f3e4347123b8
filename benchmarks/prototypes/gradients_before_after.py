"""One float32 DeepConvNet training step's gradients, for comparing two versions of the code (issue 6).

Dropout off, seed 0, one thread, a fixed random batch of 100. Run once per version (PYTHONPATH naming a
tree with that version's xpnet/ and xpnet/backends/), from a directory outside the checkout:

    XPNET_NUM_THREADS=1 PYTHONPATH=/tmp/old python gradients_before_after.py /tmp/before.npz
    XPNET_NUM_THREADS=1 PYTHONPATH=/path/to/checkout python gradients_before_after.py /tmp/after.npz
    python gradients_before_after.py --compare /tmp/before.npz /tmp/after.npz

(/tmp/old: `git archive 5e6acaf xpnet backends | tar -x -C /tmp/old`, then link /tmp/old/backends as
/tmp/old/xpnet/backends.)

Output of the run reported in issue 6: benchmarks/results/issue6/session3/gradients_before_after.txt.
"""

import sys

import numpy as np


def gradients(path):
    from xpnet.models import DeepConvNet

    rng = np.random.default_rng(0)
    x, t = rng.random((100, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 100)
    model = DeepConvNet(input_dim=(1, 28, 28), dtype="float32", backend="numpy")
    for layer in model.net.layers.values():
        if hasattr(layer, "ratio"):
            layer.ratio = 0.0  # dropout off: both versions see the same network
    loss = model.loss(x, t)
    model.backward()
    np.savez(path, loss=float(loss), **{k: np.asarray(v) for k, v in model.grads.items()})


def compare(path_a, path_b):
    a, b = np.load(path_a), np.load(path_b)
    for key in a.files:
        rel = np.max(np.abs(a[key] - b[key])) / max(float(np.max(np.abs(a[key]))), 1e-30)
        print(f"{key:8s} max |difference| / max |gradient| = {rel:.1e}")


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        gradients(sys.argv[1])

"""The networks the suites measure, and random batches for them (timing does not need real images)."""

import numpy as np

from xpnet import backends
from xpnet.models import AlexNet, DeepConvNet

MODEL_TITLES = {"alexnet": "AlexNet", "deep_convnet": "DeepConvNet"}


def input_dim(model_key, settings):
    """(C, H, W) the suites feed ``model_key`` under ``settings``."""
    return settings.alexnet_input() if model_key == "alexnet" else (1, 28, 28)


def build(model_key, settings, backend):
    """A float32 model on ``backend`` with the input size ``settings`` asks for."""
    dim = input_dim(model_key, settings)
    if model_key == "alexnet":
        return AlexNet(input_dim=dim, dtype="float32", backend=backend)
    if model_key == "deep_convnet":
        return DeepConvNet(input_dim=dim, dtype="float32", backend=backend)
    raise ValueError(f"unknown benchmark model {model_key!r}")


def random_batch(backend, dim, batch, classes, seed=0):
    """``(x (batch, *dim) float32 on the device, t (batch,) int labels on the device)``."""
    be = backends.get(backend)
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *dim), dtype=np.float32)
    t = rng.integers(0, classes, size=batch)
    return be.asarray(x), be.asarray(t)


def classes_of(model):
    """Number of output classes (the config's ``output_size``)."""
    return int(model.config["output_size"])


def describe_input(model_key, settings):
    """A note for tables and JSON saying when the input is reduced."""
    dim = input_dim(model_key, settings)
    if model_key == "alexnet" and settings.quick:
        return f"input {'x'.join(map(str, dim))} (reduced for --quick; the paper's is 3x227x227)"
    return f"input {'x'.join(map(str, dim))}"

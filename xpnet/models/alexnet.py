"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) on one device: the network of the book's Figure 8.14."""

import numpy as np

from xpnet import checks
from xpnet.backends.shapes import out_length
from xpnet.errors import ShapeError
from xpnet.layers import (
    Affine,
    Conv2D,
    Dropout,
    LocalResponseNormalization,
    MaxPool2D,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)
from xpnet.models.base import Model

# (name, out_channels, kernel, stride, pad, followed by LRN, followed by max-pool 3/2)
CONV_SPECS = (
    ("conv1", 96, 11, 4, 0, True, True),
    ("conv2", 256, 5, 1, 2, True, True),
    ("conv3", 384, 3, 1, 1, False, False),
    ("conv4", 384, 3, 1, 1, False, False),
    ("conv5", 256, 3, 1, 1, False, True),
)


class AlexNet(Model):
    """Five convolutions with ReLU, LRN after the first two, overlapping 3x3/2 max-pools, three affine layers.

    conv 11x11/4 96 - ReLU - LRN - pool - conv 5x5 256 (pad 2) - ReLU - LRN - pool - conv 3x3 384 -
    ReLU - conv 3x3 384 - ReLU - conv 3x3 256 - ReLU - pool - fc 4096 - ReLU - dropout - fc 4096 -
    ReLU - dropout - fc 1000. The single-GPU form: no grouped convolutions, so conv2, conv4 and conv5
    see every input channel (about 62.4 million parameters at 3x227x227). LRN uses the paper's
    size 5, alpha 1e-4, beta 0.75, k 2. He initialisation and zero biases (the paper used N(0, 0.01)
    and ones for some biases; irrelevant for timing, and He trains without tuning).

    Args:
        input_dim: (C, H, W); 3x227x227 in the paper. Smaller inputs (e.g. 3x67x67) keep every layer
            type and reach the head with a 1x1 map; the input must survive all three pools.
        output_size: classes (1000). hidden_size: width of fc6 and fc7 (4096).
        dropout_ratio: both dropout layers. seed: initialisation and dropout seed.
        dtype, backend: where and in what the parameters live.

    Shapes:
        x (N, 3, 227, 227) -> scores (N, 1000).
    """

    arch = "alexnet"

    def __init__(self, input_dim=(3, 227, 227), output_size=1000, hidden_size=4096, dropout_ratio=0.5, seed=0,
                 dtype="float32", backend=None):
        checks.common("AlexNet", input_dim, output_size, seed, dropout_ratio)
        checks.integer("AlexNet", "hidden_size", hidden_size)
        config = dict(input_dim=list(input_dim), output_size=output_size, hidden_size=hidden_size,
                      dropout_ratio=dropout_ratio, seed=seed, dtype=str(dtype))
        rng = np.random.default_rng(seed)
        kw = dict(rng=rng, dtype=dtype, backend=backend)
        layers, (channels, H, W) = _features(input_dim, kw)
        seeds = rng.integers(2**31, size=2)
        layers += [
            ("fc6", Affine(channels * H * W, hidden_size, "he", **kw)),
            ("relu6", ReLU()),
            ("dropout6", Dropout(dropout_ratio, seed=int(seeds[0]))),
            ("fc7", Affine(hidden_size, hidden_size, "he", **kw)),
            ("relu7", ReLU()),
            ("dropout7", Dropout(dropout_ratio, seed=int(seeds[1]))),
            ("fc8", Affine(hidden_size, output_size, "he", **kw)),
        ]
        super().__init__(Sequential(*layers), SoftmaxCrossEntropy(), config, input_shape=input_dim)


def _features(input_dim, kw):
    """The convolutional part as (name, layer) pairs, and its output (C, H, W)."""
    channels, H, W = (int(v) for v in input_dim)
    layers = []
    for name, fn, k, stride, pad, lrn, pool in CONV_SPECS:
        i = name[-1]
        layers += [(name, Conv2D(channels, fn, k, stride, pad, "he", **kw)), (f"relu{i}", ReLU())]
        H, W, channels = out_length(H, k, stride, pad), out_length(W, k, stride, pad), fn
        if lrn:
            layers.append((f"norm{i}", LocalResponseNormalization(5, 1e-4, 0.75, 2.0)))
        if pool:
            layers.append((f"pool{i}", MaxPool2D(3, 2)))
            H, W = out_length(H, 3, 2, 0), out_length(W, 3, 2, 0)
        if H < 1 or W < 1:
            raise ShapeError(f"AlexNet: input {tuple(input_dim)} is too small; the feature map vanishes "
                             f"after {name} (at least 67x67 is needed)")
    return layers, (channels, H, W)

"""VGG16 (Simonyan & Zisserman 2015), with a width multiplier and pool skipping for small inputs."""

import numpy as np

from xpnet import checks
from xpnet.layers import Affine, BatchNorm, Conv2D, Dropout, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy
from xpnet.models.base import Model

# Configuration "D": channels of the 3x3 convolutions, "M" a 2x2 max pool.
CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(Model):
    """Thirteen 3x3 convolutions (pad 1) in five stages, each followed by a 2x2 max pool, then
    fc6-ReLU-dropout-fc7-ReLU-dropout-fc8.

    A pool is skipped when it would shrink H or W below 1: a 28x28 input has room for four
    (28 -> 14 -> 7 -> 3 -> 1), a 32x32 one for all five. He initialisation, zero biases.

    Layer names: ``conv<s>_<i>``, ``bn<s>_<i>`` (with ``batchnorm``), ``relu<s>_<i>``, ``pool<s>``,
    ``fc6``, ``relu6``, ``dropout6``, ``fc7``, ``relu7``, ``dropout7``, ``fc8``.

    Args:
        input_dim: (C, H, W). output_size: classes. width: multiplies every conv's channel count
            (0.25 gives 16, 16, 32, ...; at least 1 channel). hidden_size: width of fc6 and fc7.
        batchnorm: BatchNorm after every convolution. dropout_ratio: after fc6 and fc7.
        seed: initialisation and dropout seed. dtype, backend: where the parameters live.

    Shapes:
        x (N, C, H, W) -> scores (N, output_size).
    """

    arch = "vgg16"

    def __init__(self, input_dim=(1, 28, 28), output_size=10, width=1.0, hidden_size=4096, batchnorm=False,
                 dropout_ratio=0.5, seed=0, dtype="float32", backend=None):
        checks.common("VGG16", input_dim, output_size, seed, dropout_ratio)
        checks.number("VGG16", "width", width, high=1024, low_open=True)
        checks.integer("VGG16", "hidden_size", hidden_size)
        checks.flag("VGG16", "batchnorm", batchnorm)
        config = dict(input_dim=list(input_dim), output_size=output_size, width=float(width),
                      hidden_size=int(hidden_size), batchnorm=bool(batchnorm), dropout_ratio=dropout_ratio,
                      seed=seed, dtype=str(dtype))
        C, H, W = input_dim
        rng = np.random.default_rng(seed)
        kw = dict(dtype=dtype, backend=backend)
        layers, stage, i = [], 1, 0
        for item in CONFIG_D:
            if item == "M":
                if H // 2 >= 1 and W // 2 >= 1:
                    layers.append((f"pool{stage}", MaxPool2D(2, 2)))
                    H, W = H // 2, W // 2
                stage, i = stage + 1, 0
                continue
            i += 1
            fn = max(1, int(round(item * float(width))))
            tag = f"{stage}_{i}"
            layers.append((f"conv{tag}", Conv2D(C, fn, 3, 1, 1, "he", rng=rng, **kw)))
            if batchnorm:
                layers.append((f"bn{tag}", BatchNorm(fn, **kw)))
            layers.append((f"relu{tag}", ReLU()))
            C = fn
        seeds = rng.integers(2**31, size=2)
        layers += [
            ("fc6", Affine(C * H * W, hidden_size, "he", rng=rng, **kw)), ("relu6", ReLU()),
            ("dropout6", Dropout(dropout_ratio, seed=int(seeds[0]))),
            ("fc7", Affine(hidden_size, hidden_size, "he", rng=rng, **kw)), ("relu7", ReLU()),
            ("dropout7", Dropout(dropout_ratio, seed=int(seeds[1]))),
            ("fc8", Affine(hidden_size, output_size, "he", rng=rng, **kw)),
        ]
        super().__init__(Sequential(*layers), SoftmaxCrossEntropy(), config, input_shape=input_dim)

"""A small GoogLeNet-style network (Szegedy et al. 2015) of inception blocks, for 28x28 or 32x32 images."""

import numpy as np

from xpnet import checks
from xpnet.layers import (
    Affine,
    BatchNorm,
    Conv2D,
    Dropout,
    GlobalAvgPool2D,
    MaxPool2D,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
    inception_block,
)
from xpnet.models.base import Model

# (c1, c3r, c3, c5r, c5, pool_proj) per block; outputs 64 and 112 channels at 14x14, 176 at 7x7.
STAGE1 = ((16, 16, 32, 8, 8, 8), (32, 32, 48, 8, 16, 16))
STAGE2 = ((48, 48, 64, 16, 32, 32),)


class Inception(Model):
    """stem conv3x3-BN-ReLU, maxpool, inception blocks, maxpool, inception blocks, GAP, dropout, affine.

    Every convolution is followed by BatchNorm and ReLU. For 1x28x28 input the first blocks run at
    14x14 and the second at 7x7. Defaults: 32-channel stem, the blocks in ``STAGE1`` and ``STAGE2``:
    90,570 parameters and about 17.9 MFLOP (9.0 M multiply-adds) per 1x28x28 image.

    Layer names: ``stem_conv``, ``stem_bn``, ``stem_relu``, ``pool1``, ``inc1a``, ``inc1b``...,
    ``pool2``, ``inc2a``..., ``gap``, ``dropout``, ``fc``; inception parameters read
    ``inc1a.b3x3.conv2.W`` (branches ``b1x1``, ``b3x3``, ``b5x5``, ``pool``).

    Args:
        input_dim: (C, H, W). output_size: classes. stem: channels of the stem convolution.
        stage1, stage2: lists of (c1, c3r, c3, c5r, c5, pool_proj), one per inception block, before
            and after the second max pool. dropout_ratio: before the affine layer (0 disables it).
        seed: initialisation and dropout seed. dtype, backend: where the parameters live.

    Shapes:
        x (N, C, H, W) -> scores (N, output_size).
    """

    arch = "inception"

    def __init__(self, input_dim=(1, 28, 28), output_size=10, stem=32, stage1=STAGE1, stage2=STAGE2,
                 dropout_ratio=0.2, seed=0, dtype="float32", backend=None):
        checks.common("Inception", input_dim, output_size, seed, dropout_ratio)
        checks.integer("Inception", "stem", stem)
        stage1, stage2 = _specs(stage1, "stage1"), _specs(stage2, "stage2")
        config = dict(input_dim=list(input_dim), output_size=output_size, stem=int(stem), stage1=stage1,
                      stage2=stage2, dropout_ratio=dropout_ratio, seed=seed, dtype=str(dtype))
        rng = np.random.default_rng(seed)
        kw = dict(dtype=dtype, backend=backend)
        layers = [("stem_conv", Conv2D(input_dim[0], stem, 3, 1, 1, "he", rng=rng, **kw)),
                  ("stem_bn", BatchNorm(stem, **kw)), ("stem_relu", ReLU()), ("pool1", MaxPool2D(2, 2))]
        channels = int(stem)
        for s, specs in enumerate((stage1, stage2), start=1):
            if s == 2:
                layers.append(("pool2", MaxPool2D(2, 2)))
            for i, spec in enumerate(specs):
                layers.append((f"inc{s}{chr(ord('a') + i)}", inception_block(channels, *spec, rng=rng, **kw)))
                channels = spec[0] + spec[2] + spec[4] + spec[5]
        seed_drop = int(rng.integers(2**31))
        layers += [("gap", GlobalAvgPool2D()), ("dropout", Dropout(dropout_ratio, seed=seed_drop)),
                   ("fc", Affine(channels, output_size, "he", rng=rng, **kw))]
        super().__init__(Sequential(*layers), SoftmaxCrossEntropy(), config, input_shape=input_dim)


def _specs(specs, where):
    out = [[int(c) for c in spec] for spec in specs]
    if any(len(spec) != 6 or min(spec) < 1 for spec in out):
        raise ValueError(f"Inception: {where} must be a list of (c1, c3r, c3, c5r, c5, pool_proj) with positive "
                         f"ints, got {specs!r}")
    return out

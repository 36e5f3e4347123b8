"""A small ResNet (He et al. 2016) of BasicBlocks for 28x28 or 32x32 images."""

import numpy as np

from xpnet import checks
from xpnet.layers import Affine, BatchNorm, Conv2D, GlobalAvgPool2D, ReLU, Sequential, SoftmaxCrossEntropy, basic_block
from xpnet.models.base import Model


class ResNet(Model):
    """stem conv3x3-BN-ReLU, three stages of BasicBlocks, global average pooling, affine.

    Each BasicBlock is conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (identity, or 1x1 conv + BN when
    the shape changes), then ReLU. The first block of stages 2 and 3 halves H and W (stride 2).
    Defaults: widths (16, 32, 64), one block per stage: 78,090 parameters and about 18.7 MFLOP
    (9.4 M multiply-adds) per 1x28x28 image.

    Layer names: ``stem_conv``, ``stem_bn``, ``stem_relu``, then ``block<k>`` (a Residual, parameters
    ``block<k>.body.conv1.W``, ``block<k>.shortcut.conv.W``...) and ``relu<k>`` for k = 1, 2...,
    ``gap``, ``fc``.

    Args:
        input_dim: (C, H, W). output_size: classes. widths: channels of the stem/stage 1, stage 2, stage 3.
        blocks: BasicBlocks per stage. seed: initialisation seed. dtype, backend: where the parameters live.

    Shapes:
        x (N, C, H, W) -> scores (N, output_size).
    """

    arch = "resnet"

    def __init__(self, input_dim=(1, 28, 28), output_size=10, widths=(16, 32, 64), blocks=(1, 1, 1), seed=0,
                 dtype="float32", backend=None):
        checks.common("ResNet", input_dim, output_size, seed)
        widths, blocks = checks.integers("ResNet", "widths", widths), checks.integers("ResNet", "blocks", blocks)
        if len(widths) != len(blocks) or not widths or min(widths) < 1 or min(blocks) < 1:
            raise ValueError(f"ResNet: widths and blocks must be equally long lists of positive ints, "
                             f"got widths={widths}, blocks={blocks}")
        config = dict(input_dim=list(input_dim), output_size=output_size, widths=widths, blocks=blocks, seed=seed,
                      dtype=str(dtype))
        C = input_dim[0]
        rng = np.random.default_rng(seed)
        kw = dict(dtype=dtype, backend=backend)
        layers = [("stem_conv", Conv2D(C, widths[0], 3, 1, 1, "he", rng=rng, **kw)),
                  ("stem_bn", BatchNorm(widths[0], **kw)), ("stem_relu", ReLU())]
        channels, k = widths[0], 0
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            for i in range(count):
                k += 1
                stride = 2 if stage > 0 and i == 0 else 1
                layers += [(f"block{k}", basic_block(channels, width, stride, rng=rng, **kw)), (f"relu{k}", ReLU())]
                channels = width
        layers += [("gap", GlobalAvgPool2D()), ("fc", Affine(channels, output_size, "he", rng=rng, **kw))]
        super().__init__(Sequential(*layers), SoftmaxCrossEntropy(), config, input_shape=input_dim)

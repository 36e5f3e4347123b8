"""DCGAN (Radford et al. 2016) for 28x28 images: a generator of transposed convolutions and a
discriminator of strided convolutions."""

import numpy as np

from xpnet.layers import (
    Affine,
    BatchNorm,
    Conv2D,
    Conv2DTranspose,
    Flatten,
    LeakyReLU,
    ReLU,
    Sequential,
    SigmoidBinaryCrossEntropy,
    Tanh,
)
from xpnet.models.base import Model

INIT_STD = 0.02  # DCGAN's N(0, 0.02) weights


class Generator(Model):
    """z (N, z_dim, 1, 1) -> images (N, C, 28, 28) in [-1, 1].

    ``deconv1`` 7x7 (1 -> 7), BatchNorm, ReLU; ``deconv2`` 4x4 stride 2 (7 -> 14), BatchNorm, ReLU;
    ``deconv3`` 4x4 stride 2 (14 -> 28), tanh. It has no loss of its own: a GAN trains it by passing the
    discriminator's input gradient to ``net.backward``. ``loss`` and ``accuracy`` are not defined.

    Args:
        z_dim: length of the noise vector. widths: channels after deconv1 and deconv2. channels: C out.
        seed: initialisation seed. dtype, backend: parameters.
    """

    arch = "dcgan_generator"

    def __init__(self, z_dim=100, widths=(128, 64), channels=1, seed=0, dtype="float32", backend=None):
        w1, w2 = (int(w) for w in widths)
        config = dict(z_dim=int(z_dim), widths=[w1, w2], channels=int(channels),
                      seed=seed, dtype=str(dtype))
        kw = dict(rng=np.random.default_rng(seed), dtype=dtype, backend=backend)
        bn = dict(dtype=dtype, backend=backend)
        net = Sequential(
            ("deconv1", Conv2DTranspose(z_dim, w1, 7, 1, 0, weight_init=INIT_STD, **kw)), ("bn1", BatchNorm(w1, **bn)),
            ("relu1", ReLU()),
            ("deconv2", Conv2DTranspose(w1, w2, 4, 2, 1, weight_init=INIT_STD, **kw)), ("bn2", BatchNorm(w2, **bn)),
            ("relu2", ReLU()),
            ("deconv3", Conv2DTranspose(w2, channels, 4, 2, 1, weight_init=INIT_STD, **kw)), ("tanh", Tanh()),
        )
        super().__init__(net, None, config, input_shape=(z_dim, 1, 1))

    def noise(self, n, rng):
        """``n`` standard normal noise vectors (n, z_dim, 1, 1) on the host, from NumPy Generator ``rng``."""
        return rng.standard_normal((n, self.config["z_dim"], 1, 1)).astype(self.dtype)

    def loss(self, x, t, train=True):
        raise TypeError("Generator has no loss of its own; train it through a discriminator (see examples/dcgan.py)")


class Discriminator(Model):
    """images (N, C, 28, 28) in [-1, 1] -> one logit per image (N, 1): real (1) or generated (0).

    ``conv1`` 4x4 stride 2 (28 -> 14), LeakyReLU 0.2; ``conv2`` 4x4 stride 2 (14 -> 7), BatchNorm,
    LeakyReLU 0.2; ``fc`` to one logit. The loss is :class:`SigmoidBinaryCrossEntropy` on the logits.

    Args:
        widths: channels of conv1 and conv2. channels: C in. seed, dtype, backend: as elsewhere.
    """

    arch = "dcgan_discriminator"

    def __init__(self, widths=(64, 128), channels=1, seed=0, dtype="float32", backend=None):
        w1, w2 = (int(w) for w in widths)
        config = dict(widths=[w1, w2], channels=int(channels), seed=seed,
                      dtype=str(dtype))
        kw = dict(rng=np.random.default_rng(seed), dtype=dtype, backend=backend)
        net = Sequential(
            ("conv1", Conv2D(channels, w1, 4, 2, 1, weight_init=INIT_STD, **kw)), ("lrelu1", LeakyReLU(0.2)),
            ("conv2", Conv2D(w1, w2, 4, 2, 1, weight_init=INIT_STD, **kw)),
            ("bn2", BatchNorm(w2, dtype=dtype, backend=backend)), ("lrelu2", LeakyReLU(0.2)),
            ("flatten", Flatten()), ("fc", Affine(w2 * 7 * 7, 1, weight_init=INIT_STD, **kw)),
        )
        super().__init__(net, SigmoidBinaryCrossEntropy(), config, input_shape=(channels, 28, 28))

"""A fully convolutional network for semantic segmentation (Long et al. 2015), sized for 64x64 canvases."""

import numpy as np

from xpnet import metrics
from xpnet.layers import Conv2D, Conv2DTranspose, MaxPool2D, ReLU, Residual, Sequential, SoftmaxCrossEntropy2D
from xpnet.models.base import Model


class FCN(Model):
    """Convolutions and pooling down to 1/8 of the input, a 1x1 classifier, transposed convolutions back up.

    As FCN-16s does, the coarse class scores are upsampled once (to 1/2 of the input: the 1/8 map
    enlarged 4x), added to the scores a 1x1 convolution reads from a finer stage (the first pooling,
    1/2) and upsampled again to the input's size. Both transposed convolutions start as bilinear
    interpolation (FCN's initialisation) and are learned.

    Layers: ``conv1``-``relu1``-``pool1`` (1/2), then the ``fuse`` Residual whose body is ``conv2``..
    ``pool3`` (1/8), ``conv4``, ``score`` (1x1) and ``up4`` (4x), and whose shortcut is ``score_pool1``
    (1x1 on the pool1 features); then ``up2`` (2x).

    Args:
        input_dim: (C, H, W), H and W multiples of 8. num_classes: K (11 for the MNIST canvases).
        widths: channels of the four 3x3 stages. seed: initialisation seed. dtype, backend: parameters.

    Shapes:
        x (N, C, H, W) -> scores (N, K, H, W); labels t (N, H, W).
    """

    arch = "fcn"

    def __init__(self, input_dim=(1, 64, 64), num_classes=11, widths=(16, 32, 64, 64), seed=0, dtype="float32",
                 backend=None):
        C, H, W = (int(d) for d in input_dim)
        widths = [int(w) for w in widths]
        if H % 8 or W % 8 or len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"FCN: input height and width must be multiples of 8 and widths four positive "
                             f"ints, got input_dim={tuple(input_dim)}, widths={widths}")
        config = dict(input_dim=[C, H, W], num_classes=num_classes, widths=widths, seed=seed, dtype=str(dtype))
        K = int(num_classes)
        rng = np.random.default_rng(seed)
        kw = dict(rng=rng, dtype=dtype, backend=backend)
        w1, w2, w3, w4 = widths
        coarse = Sequential(
            ("conv2", Conv2D(w1, w2, 3, 1, 1, **kw)), ("relu2", ReLU()), ("pool2", MaxPool2D(2)),
            ("conv3", Conv2D(w2, w3, 3, 1, 1, **kw)), ("relu3", ReLU()),
            ("conv3b", Conv2D(w3, w3, 3, 1, 1, **kw)), ("relu3b", ReLU()), ("pool3", MaxPool2D(2)),
            ("conv4", Conv2D(w3, w4, 3, 1, 1, **kw)), ("relu4", ReLU()),
            ("score", Conv2D(w4, K, 1, **kw)),
            ("up4", Conv2DTranspose(K, K, 8, 4, 2, weight_init="bilinear", **kw)),
        )
        net = Sequential(
            ("conv1", Conv2D(C, w1, 3, 1, 1, **kw)), ("relu1", ReLU()), ("pool1", MaxPool2D(2)),
            ("fuse", Residual(coarse, Conv2D(w1, K, 1, weight_init=0.01, **kw))),
            ("up2", Conv2DTranspose(K, K, 4, 2, 1, weight_init="bilinear", **kw)),
        )
        super().__init__(net, SoftmaxCrossEntropy2D(), config, input_shape=(C, H, W))

    def segment(self, x, batch_size=50):
        """Predicted class per pixel: NumPy (N, H, W)."""
        return metrics.segment(self.predict, x, batch_size)

    def scores(self, x, t, batch_size=50):
        """``{"mean_iou", "pixel_accuracy", "iou"}`` of the predictions for ``x`` against labels ``t``."""
        cm = metrics.confusion_matrix(self.segment(x, batch_size), t, self.config["num_classes"])
        return {"mean_iou": metrics.mean_iou(cm), "pixel_accuracy": metrics.pixel_accuracy(cm),
                "iou": [float(v) for v in metrics.iou_per_class(cm)]}

    def accuracy(self, x, t, batch_size=50):
        """Pixel accuracy (the share of pixels predicted as their label)."""
        return self.scores(x, t, batch_size)["pixel_accuracy"]

"""The book's convolutional networks: SimpleConvNet (chapter 7) and DeepConvNet (Figure 8.1)."""

import numpy as np

from xpnet import checks
from xpnet.backends.shapes import out_length
from xpnet.layers import Affine, Conv2D, Dropout, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy
from xpnet.models.base import Model


class SimpleConvNet(Model):
    """conv - ReLU - pool - affine - ReLU - affine - softmax (the book's chapter 7).

    Shapes:
        x (N, C, H, W), default (N, 1, 28, 28) -> scores (N, output_size).
    """

    arch = "simple_convnet"

    def __init__(self, input_dim=(1, 28, 28), filter_num=30, filter_size=5, pad=0, stride=1, hidden_size=100,
                 output_size=10, weight_init_std=0.01, seed=0, dtype="float32", backend=None):
        owner = "SimpleConvNet"
        checks.common(owner, input_dim, output_size, seed)
        for name, value, low in (("filter_num", filter_num, 1), ("filter_size", filter_size, 1), ("pad", pad, 0),
                                 ("stride", stride, 1), ("hidden_size", hidden_size, 1)):
            checks.integer(owner, name, value, low)
        checks.weight_init(owner, "weight_init_std", weight_init_std)
        if min(out_length(d, filter_size, stride, pad) for d in input_dim[1:]) < 2:
            raise ValueError(f"{owner}: input_dim {list(input_dim)} is too small for filter_size {filter_size}, "
                             f"stride {stride}, pad {pad} and the 2x2 pooling after it")
        config = dict(input_dim=list(input_dim), filter_num=filter_num, filter_size=filter_size, pad=pad,
                      stride=stride, hidden_size=hidden_size, output_size=output_size,
                      weight_init_std=weight_init_std, seed=seed, dtype=str(dtype))
        C, H, W = input_dim
        rng = np.random.default_rng(seed)
        kw = dict(rng=rng, dtype=dtype, backend=backend)
        OH = out_length(H, filter_size, stride, pad)
        OW = out_length(W, filter_size, stride, pad)
        pooled = filter_num * (OH // 2) * (OW // 2)
        net = Sequential(
            ("conv1", Conv2D(C, filter_num, filter_size, stride, pad, weight_init_std, **kw)),
            ("relu1", ReLU()),
            ("pool1", MaxPool2D(2, 2)),
            ("fc1", Affine(pooled, hidden_size, weight_init_std, **kw)),
            ("relu2", ReLU()),
            ("fc2", Affine(hidden_size, output_size, weight_init_std, **kw)),
        )
        super().__init__(net, SoftmaxCrossEntropy(), config, input_shape=input_dim)


class DeepConvNet(Model):
    """The book's Figure 8.1: six 3x3 convolutions in three stages, then two affine layers.

    stage 1: conv16-ReLU-conv16-ReLU-pool; stage 2: conv32-ReLU-conv32(pad 2)-ReLU-pool;
    stage 3: conv64-ReLU-conv64-ReLU-pool; head: affine 50-ReLU-dropout-affine 10-dropout.
    He initialisation, zero biases; 123,552 parameters for 1x28x28 input.

    Args:
        input_dim: (C, H, W). hidden_size: width of the first affine layer. output_size: classes.
        dropout_ratio: both dropout layers. seed: initialisation and dropout seed.
        dtype, backend: where and in what the parameters live.

    Shapes:
        x (N, 1, 28, 28) -> scores (N, 10).
    """

    arch = "deep_convnet"

    def __init__(self, input_dim=(1, 28, 28), hidden_size=50, output_size=10, dropout_ratio=0.5, seed=0,
                 dtype="float32", backend=None):
        checks.common("DeepConvNet", input_dim, output_size, seed, dropout_ratio)
        checks.integer("DeepConvNet", "hidden_size", hidden_size)
        config = dict(input_dim=list(input_dim), hidden_size=hidden_size, output_size=output_size,
                      dropout_ratio=dropout_ratio, seed=seed, dtype=str(dtype))
        C, H, W = input_dim
        rng = np.random.default_rng(seed)
        kw = dict(rng=rng, dtype=dtype, backend=backend)
        layers, channels = [], C
        specs = [(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]
        for i, (fn, pad) in enumerate(specs, start=1):
            layers += [(f"conv{i}", Conv2D(channels, fn, 3, 1, pad, "he", **kw)), (f"relu{i}", ReLU())]
            H, W = out_length(H, 3, 1, pad), out_length(W, 3, 1, pad)
            channels = fn
            if i % 2 == 0:
                layers.append((f"pool{i // 2}", MaxPool2D(2, 2)))
                H, W = H // 2, W // 2
        seeds = rng.integers(2**31, size=2)
        layers += [
            ("fc1", Affine(channels * H * W, hidden_size, "he", **kw)),
            ("relu7", ReLU()),
            ("dropout1", Dropout(dropout_ratio, seed=int(seeds[0]))),
            ("fc2", Affine(hidden_size, output_size, "he", **kw)),
            ("dropout2", Dropout(dropout_ratio, seed=int(seeds[1]))),
        ]
        super().__init__(Sequential(*layers), SoftmaxCrossEntropy(), config, input_shape=input_dim)

"""Branching blocks: Residual (ResNet), Concat (Inception), global average pooling, and block builders."""

import numpy as np

from xpnet import precision
from xpnet.errors import ShapeError
from xpnet.layers.activation import ReLU
from xpnet.layers.base import Layer, xp_of
from xpnet.layers.container import Container, Sequential
from xpnet.layers.conv import Conv2D
from xpnet.layers.norm import BatchNorm
from xpnet.layers.pool import MaxPool2D


class Residual(Container):
    """y = body(x) + shortcut(x) (He et al. 2016); the shortcut is the identity when None.

    Args:
        body: a Layer (usually a Sequential) mapping x to the residual.
        shortcut: None for the identity, else a Layer (a projection such as 1x1 Conv2D + BatchNorm)
            whose output has the body's shape.

    Children are named ``body`` and ``shortcut``, so parameters read ``"<block>.body.conv1.W"``.

    Shapes:
        x (N, C, H, W) -> (N, FN, OH, OW), the body's output shape; the shortcut must match it.
    """

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.add("body", body)
        if shortcut is not None:
            self.add("shortcut", shortcut)

    def forward(self, x, train=False):
        out = self.layers["body"].forward(x, train)
        skip = self.layers["shortcut"].forward(x, train) if "shortcut" in self.layers else x
        if tuple(out.shape) != tuple(skip.shape):
            what = "shortcut" if "shortcut" in self.layers else "identity shortcut (input)"
            raise ShapeError(f"{self._label()}: body output {tuple(out.shape)} and {what} output "
                             f"{tuple(skip.shape)} differ; use a projection shortcut to match them")
        self.out_shape = out.shape
        return out + skip

    def backward(self, dout):
        self.check_grad(dout, self.out_shape)
        dx = self.layers["body"].backward(dout)
        skip = self.layers["shortcut"].backward(dout) if "shortcut" in self.layers else dout
        return dx + skip  # a new array: neither dout nor a branch's result is written to


class Concat(Container):
    """Run every branch on the same input and concatenate the outputs along channels (axis 1).

    Args:
        *branches: Layer objects (named ``branch1``, ``branch2``...) or ``(name, layer)`` pairs. Their
            outputs must agree on every axis but axis 1.

    Shapes:
        x (N, C, H, W) -> (N, sum of the branches' FN, OH, OW).
    """

    def __init__(self, *branches):
        super().__init__()
        if not branches:
            raise ValueError("Concat: needs at least one branch")
        for k, item in enumerate(branches, start=1):
            name, layer = item if isinstance(item, tuple) else (f"branch{k}", item)
            self.add(name, layer)

    def forward(self, x, train=False):
        outs = [branch.forward(x, train) for branch in self.layers.values()]
        rest = {(o.ndim, tuple(o.shape[:1]) + tuple(o.shape[2:])) for o in outs}
        if len(rest) != 1 or outs[0].ndim < 2:
            shapes = ", ".join(f"{k} {tuple(o.shape)}" for k, o in zip(self.layers, outs))
            raise ShapeError(f"{self._label()}: branch outputs must agree on every axis but channels (1), "
                             f"got {shapes}")
        self.widths = [int(o.shape[1]) for o in outs]
        out = xp_of(outs[0]).concatenate(outs, axis=1)
        self.out_shape = out.shape
        return out

    def backward(self, dout):
        self.check_grad(dout, self.out_shape)
        xp = xp_of(dout)
        dx, start = None, 0
        for branch, width in zip(self.layers.values(), self.widths):
            part = xp.ascontiguousarray(dout[:, start:start + width])
            start += width
            g = branch.backward(part)
            dx = g if dx is None else dx + g  # out of place: a branch may hand back its own input
        return dx


class GlobalAvgPool2D(Layer):
    """Mean over the spatial axes (sums accumulate in float32 at least; the output keeps x's dtype).

    Shapes:
        x (N, C, H, W) -> (N, C).
    """

    def forward(self, x, train=False):
        self.check_input(x, 4, "(N, C, H, W)")
        self.x_shape = x.shape
        return x.mean(axis=(2, 3), dtype=precision.compute_dtype(x.dtype)).astype(x.dtype, copy=False)

    def backward(self, dout):
        N, C, H, W = self.x_shape
        self.check_grad(dout, (N, C))
        dx = xp_of(dout).empty(self.x_shape, dtype=dout.dtype)
        dx[...] = (dout * dout.dtype.type(1.0 / (H * W)))[:, :, None, None]
        return dx


def conv_unit(in_ch, out_ch, kernel_size, stride=1, pad=0, batchnorm=True, relu=True, rng=None,
              dtype=np.float32, backend=None):
    """``[("conv", Conv2D), ("bn", BatchNorm)?, ("relu", ReLU)?]`` pairs with He initialisation."""
    kw = dict(dtype=dtype, backend=backend)
    layers = [("conv", Conv2D(in_ch, out_ch, kernel_size, stride, pad, "he", rng=rng, **kw))]
    if batchnorm:
        layers.append(("bn", BatchNorm(out_ch, **kw)))
    if relu:
        layers.append(("relu", ReLU()))
    return layers


def basic_block(in_ch, out_ch, stride=1, batchnorm=True, rng=None, dtype=np.float32, backend=None):
    """ResNet BasicBlock without its final ReLU: conv3x3-BN-ReLU-conv3x3-BN + shortcut.

    The shortcut is the identity when the shape is kept, else a projection (1x1 conv, stride
    ``stride``, + BatchNorm). Parameters: ``body.conv1.W``, ``body.bn1.gamma``, ``shortcut.conv.W``...

    Shapes:
        x (N, in_ch, H, W) -> (N, out_ch, OH, OW), OH = (H - 1) // stride + 1.
    """
    kw = dict(batchnorm=batchnorm, rng=rng, dtype=dtype, backend=backend)
    first = conv_unit(in_ch, out_ch, 3, stride, 1, **kw)
    second = conv_unit(out_ch, out_ch, 3, 1, 1, relu=False, **kw)
    body = Sequential(*[(f"{n}1", l) for n, l in first], *[(f"{n}2", l) for n, l in second])
    shortcut = None
    if stride != 1 or in_ch != out_ch:
        shortcut = Sequential(*conv_unit(in_ch, out_ch, 1, stride, 0, relu=False, **kw))
    return Residual(body, shortcut)


def inception_block(in_ch, c1, c3r, c3, c5r, c5, pool_proj, batchnorm=True, rng=None, dtype=np.float32,
                    backend=None):
    """GoogLeNet's inception module: four branches concatenated along channels.

    Branches: ``b1x1`` 1x1 conv; ``b3x3`` 1x1 (c3r) -> 3x3 (c3); ``b5x5`` 1x1 (c5r) -> 5x5 (c5);
    ``pool`` 3x3 max pool (stride 1, pad 1) -> 1x1 (pool_proj). Every conv is followed by BatchNorm
    (when ``batchnorm``) and ReLU.

    Shapes:
        x (N, in_ch, H, W) -> (N, c1 + c3 + c5 + pool_proj, H, W).
    """
    kw = dict(batchnorm=batchnorm, rng=rng, dtype=dtype, backend=backend)

    def chain(*units, head=()):
        return Sequential(*head, *[(f"{n}{k}", l) for k, unit in enumerate(units, start=1) for n, l in unit])

    return Concat(
        ("b1x1", chain(conv_unit(in_ch, c1, 1, **kw))),
        ("b3x3", chain(conv_unit(in_ch, c3r, 1, **kw), conv_unit(c3r, c3, 3, 1, 1, **kw))),
        ("b5x5", chain(conv_unit(in_ch, c5r, 1, **kw), conv_unit(c5r, c5, 5, 1, 2, **kw))),
        ("pool", chain(conv_unit(in_ch, pool_proj, 1, **kw), head=[("pool", MaxPool2D(3, 1, 1))])),
    )

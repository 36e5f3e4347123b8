"""One small function per xpnet layer class, each writing that layer's ONNX nodes.

A converter is called as ``fn(g, layer, x, shape, path)``: ``g`` is the :class:`GraphBuilder`, ``x`` the
name of the input tensor, ``shape`` its shape (``None`` for a dynamic batch axis) and ``path`` the
layer's dotted name. It returns ``(y, shape)`` of its output. Layers are matched by their exact class:
a subclass may compute something else, so it needs a converter of its own (:func:`converter`).
"""

import numpy as np

from xpnet.backends.shapes import out_size
from xpnet.errors import ExportError
from xpnet.layers import (
    Affine,
    AvgPool2D,
    BatchNorm,
    Concat,
    Conv2D,
    Conv2DTranspose,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    LocalResponseNormalization,
    MaxPool2D,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Tanh,
    Upsample2D,
)

CONVERTERS = {}


def converter(*classes):
    """Register the decorated function as the converter of each layer class in ``classes``."""

    def register(fn):
        for cls in classes:
            CONVERTERS[cls] = fn
        return fn

    return register


def convert(g, layer, x, shape, path):
    """Write ``layer``'s nodes reading tensor ``x`` of ``shape``; returns ``(output name, output shape)``.

    Raises:
        ExportError: no converter is registered for the layer's class (the message names the layer).
    """
    fn = CONVERTERS.get(type(layer))
    if fn is None:
        known = ", ".join(sorted(cls.__name__ for cls in CONVERTERS))
        raise ExportError(f"cannot export layer '{path or 'net'}' ({type(layer).__name__}) to ONNX: no converter for "
                          f"{type(layer).__name__}; the exporter knows {known}")
    return fn(g, layer, x, tuple(shape), path)


def _child(path, local):
    return f"{path}.{local}" if path else local


# -- containers ---------------------------------------------------------------------------------------
@converter(Sequential)
def sequential(g, layer, x, shape, path):
    for local, child in layer.layers.items():
        x, shape = convert(g, child, x, shape, _child(path, local))
    return x, shape


@converter(Residual)
def residual(g, layer, x, shape, path):
    body, out_shape = convert(g, layer.layers["body"], x, shape, _child(path, "body"))
    skip = x
    if "shortcut" in layer.layers:
        skip, _ = convert(g, layer.layers["shortcut"], x, shape, _child(path, "shortcut"))
    return g.node("Add", [body, skip], path), out_shape


@converter(Concat)
def concat(g, layer, x, shape, path):
    outs = [convert(g, branch, x, shape, _child(path, local)) for local, branch in layer.layers.items()]
    first = outs[0][1]
    out_shape = (first[0], sum(s[1] for _, s in outs), *first[2:])
    return g.node("Concat", [name for name, _ in outs], path, axis=1), out_shape


# -- convolution, pooling ---------------------------------------------------------------------------
def _conv_node(g, layer, x, shape, path, op, **extra):
    """Conv or ConvTranspose: xpnet's W layouts, (FN, C, KH, KW) and (C, FN, KH, KW), are ONNX's too."""
    W = g.const(f"{path}.W", layer.params["W"])
    b = g.const(f"{path}.b", layer.params["b"])
    (PH, PW) = layer.pad
    y = g.node(op, [x, W, b], path, kernel_shape=[layer.KH, layer.KW], strides=list(layer.stride),
               pads=[PH, PW, PH, PW], dilations=[1, 1], group=1, **extra)
    return y, layer.output_shape(shape)


@converter(Conv2D)
def conv2d(g, layer, x, shape, path):
    return _conv_node(g, layer, x, shape, path, "Conv")


@converter(Conv2DTranspose)
def conv2d_transpose(g, layer, x, shape, path):
    return _conv_node(g, layer, x, shape, path, "ConvTranspose", output_padding=list(layer.output_pad))


@converter(Upsample2D)
def upsample2d(g, layer, x, shape, path):
    SH, SW = layer.scale
    scales = g.const(f"{path}.scales", [1.0, 1.0, SH, SW], np.float32)
    if layer.mode == "nearest":  # output row i copies input row i // scale
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:  # source coordinate (i + 0.5) / scale - 0.5, clamped to the edge, as xpnet's interpolation matrix
        attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    N, C, H, W = shape
    return g.node("Resize", [x, "", scales], path, **attrs), (N, C, H * SH, W * SW)


def _pool_shape(layer, shape):
    N, C, H, W = shape
    return (N, C, *out_size(H, W, layer.KH, layer.KW, layer.stride, layer.pad))


def _pool_attrs(layer):
    (PH, PW) = layer.pad
    # ceil_mode 0: output sizes are floored, as xpnet's conv_output_size does
    return dict(kernel_shape=[layer.KH, layer.KW], strides=list(layer.stride), pads=[PH, PW, PH, PW], ceil_mode=0)


@converter(MaxPool2D)
def maxpool2d(g, layer, x, shape, path):
    # ONNX MaxPool never picks a padded position, as xpnet's -inf padding never wins a window
    return g.node("MaxPool", [x], path, **_pool_attrs(layer)), _pool_shape(layer, shape)


@converter(AvgPool2D)
def avgpool2d(g, layer, x, shape, path):
    # xpnet divides every window by KH*KW, padding counted as zeros: ONNX's count_include_pad=1
    return g.node("AveragePool", [x], path, count_include_pad=1, **_pool_attrs(layer)), _pool_shape(layer, shape)


@converter(GlobalAvgPool2D)
def global_avgpool2d(g, layer, x, shape, path):
    pooled = g.node("GlobalAveragePool", [x], f"{path}.pool")  # (N, C, 1, 1); xpnet gives (N, C)
    return g.node("Flatten", [pooled], path, axis=1), shape[:2]


# -- normalisation ----------------------------------------------------------------------------------
@converter(BatchNorm)
def batchnorm(g, layer, x, shape, path):
    inputs = [x] + [g.const(f"{path}.{k}", store[k]) for store, k in (
        (layer.params, "gamma"), (layer.params, "beta"),
        (layer.buffers, "running_mean"), (layer.buffers, "running_var"))]
    # inference form: the running statistics, as xpnet's forward(x, train=False)
    return g.node("BatchNormalization", inputs, path, epsilon=layer.eps), shape


@converter(LocalResponseNormalization)
def lrn(g, layer, x, shape, path):
    if layer.size % 2:
        # ONNX: y = x / (bias + alpha / size * sum) ** beta; xpnet's alpha multiplies the plain sum. For an
        # odd size both windows reach (size - 1) / 2 channels either way.
        return g.node("LRN", [x], path, size=layer.size, alpha=layer.alpha * layer.size, beta=layer.beta,
                      bias=layer.k), shape
    return _lrn_even(g, layer, x, shape, path), shape


def _lrn_even(g, layer, x, shape, path):
    """xpnet's LRN from primitives: for an even size the windows differ (xpnet reaches size // 2 channels
    below and size // 2 - 1 above, ONNX the mirror image) and onnxruntime runs odd sizes only."""
    dtype = g.dtype
    squares, axis = g.node("Mul", [x, x], f"{path}.squares"), g.ints(f"{path}.axis", [1])
    stacked = g.node("Unsqueeze", [squares, axis], f"{path}.stacked")  # (N, 1, C, H, W)
    window = g.const(f"{path}.window", np.ones((1, 1, layer.size, 1, 1)), dtype)
    # a 3-D convolution with a ones kernel over (C, H, W): the window sum along channels, zeros outside
    summed = g.node("Conv", [stacked, window], f"{path}.sum", kernel_shape=[layer.size, 1, 1],
                    pads=[layer.lo, 0, 0, layer.hi, 0, 0])
    summed = g.node("Squeeze", [summed, axis], f"{path}.window_sum")
    scaled = g.node("Mul", [summed, g.const(f"{path}.alpha", np.array(layer.alpha), dtype)], f"{path}.scaled")
    scale = g.node("Add", [scaled, g.const(f"{path}.k", np.array(layer.k), dtype)], f"{path}.scale")
    inv = g.node("Pow", [scale, g.const(f"{path}.neg_beta", np.array(-layer.beta), dtype)], f"{path}.inv")
    return g.node("Mul", [x, inv], path)


# -- dense, reshaping, elementwise ----------------------------------------------------------------------
@converter(Affine)
def affine(g, layer, x, shape, path):
    if len(shape) != 2:  # Affine flattens (N, ...) to (N, prod(...)) first
        x = g.node("Flatten", [x], f"{path}.flatten", axis=1)
    W = g.const(f"{path}.W", layer.params["W"])
    b = g.const(f"{path}.b", layer.params["b"])
    return g.node("Gemm", [x, W, b], path), (shape[0], layer.out_features)


@converter(Flatten)
def flatten(g, layer, x, shape, path):
    return g.node("Flatten", [x], path, axis=1), (shape[0], int(np.prod(shape[1:])))


@converter(Dropout)
def dropout(g, layer, x, shape, path):
    return g.node("Identity", [x], path), shape  # inverted dropout: the identity at inference


@converter(LeakyReLU)
def leaky_relu(g, layer, x, shape, path):
    return g.node("LeakyRelu", [x], path, alpha=layer.slope), shape


def _elementwise(op):
    def fn(g, layer, x, shape, path):
        return g.node(op, [x], path), shape

    fn.__name__ = op.lower()
    return fn


for _cls, _op in ((ReLU, "Relu"), (Sigmoid, "Sigmoid"), (Tanh, "Tanh")):
    converter(_cls)(_elementwise(_op))

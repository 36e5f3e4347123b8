"""Transposed 2-D convolution ("deconvolution"): the adjoint of Conv2D, to enlarge feature maps."""

import numpy as np

from xpnet import backends, init
from xpnet.backends.shapes import transposed_length as transposed_output_size
from xpnet.errors import ShapeError
from xpnet.layers.base import Layer
from xpnet.layers.conv import window
from xpnet.utils import pair


class Conv2DTranspose(Layer):
    """The gradient of a convolution with respect to its input, used as a layer (learnable upsampling).

    Each input pixel scatters a KH x KW filter into the output, ``stride`` pixels apart; ``pad`` crops
    that many pixels from each side of the result and ``output_pad`` adds rows/columns at the bottom
    and right (they receive only the bias), so that a Conv2D with the same kernel, stride and pad maps
    the output shape back to the input shape. It runs as that Conv2D's passes the other way round
    (the backend's ``conv2d_transpose_forward``): forward is the convolution's input gradient; backward
    is the convolution's forward (dx) and its filter gradient (dW).

    Args:
        in_channels: C. out_channels: FN. kernel_size: int or (KH, KW).
        stride: int or pair. pad: int or pair, cropped from each side. output_pad: int or pair, each
            smaller than the stride on its axis.
        weight_init: ``"he"``, ``"xavier"``, a float std, or ``"bilinear"`` (bilinear interpolation
            per channel, FCN's initialisation; needs C == FN, see :func:`xpnet.init.bilinear_kernel`).
        rng: NumPy Generator for initialisation. dtype, backend: parameter dtype and device.

    Shapes:
        x (N, C, H, W) -> (N, FN, OH, OW), OH = (H - 1) * SH - 2 * PH + KH + OPH.
        Parameters: W (C, FN, KH, KW) (PyTorch's layout for transposed convolutions), b (FN,).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, pad=0, output_pad=0, weight_init="he",
                 rng=None, dtype=np.float32, backend=None):
        super().__init__()
        be = backends.get(backend) if backend is not None else backends.current()
        self.C, self.FN = int(in_channels), int(out_channels)
        (self.KH, self.KW), self.stride, self.pad = window(type(self).__name__, kernel_size, stride, pad)
        self.output_pad = pair(output_pad, "output_pad")
        if self.output_pad[0] >= self.stride[0] or self.output_pad[1] >= self.stride[1]:
            raise ValueError(f"Conv2DTranspose: output_pad must be smaller than the stride on each axis, got "
                             f"output_pad={output_pad!r} for stride={stride!r}")
        shape = (self.C, self.FN, self.KH, self.KW)
        if isinstance(weight_init, str) and weight_init.lower() == "bilinear":
            W = init.bilinear_kernel(shape)
        else:
            # fan-in of one output pixel: each sees about C * KH * KW / (SH * SW) inputs
            fan_in = max(1, self.C * self.KH * self.KW // (self.stride[0] * self.stride[1]))
            W = init.initialize(weight_init, shape, fan_in, rng)
        self.params["W"] = be.asarray(W, dtype=dtype)
        self.params["b"] = be.xp.zeros(self.FN, dtype=dtype)
        self._ws = {}  # the backend's plans and buffers, reused across steps

    def extra_repr(self):
        return (f"{self.C}, {self.FN}, kernel_size=({self.KH}, {self.KW}), stride={self.stride}, pad={self.pad}, "
                f"output_pad={self.output_pad}")

    def output_shape(self, x_shape):
        N, _, H, W = x_shape
        OH = transposed_output_size(H, self.KH, self.stride[0], self.pad[0], self.output_pad[0])
        OW = transposed_output_size(W, self.KW, self.stride[1], self.pad[1], self.output_pad[1])
        return N, self.FN, OH, OW

    def forward(self, x, train=False):
        self.check_input(x, 4, "(N, C, H, W)")
        if x.shape[1] != self.C:
            raise ShapeError(f"{self._label()}: expected {self.C} input channels, got shape {tuple(x.shape)}")
        out_shape = self.output_shape(x.shape)
        if out_shape[2] < 1 or out_shape[3] < 1:
            raise ShapeError(f"{self._label()}: input {tuple(x.shape)} gives an empty output with pad {self.pad}")
        self.out_shape = out_shape
        out, self.cache = backends.of(x).conv2d_transpose_forward(x, self.params["W"], self.params["b"], self.stride,
                                                                  self.pad, self.output_pad, self._ws)
        return out

    def backward(self, dout):
        return self._backward(dout, True)

    def backward_params(self, dout):
        self._backward(dout, False)

    def _backward(self, dout, input_grad):
        self.check_grad(dout, self.out_shape)
        dx, self.grads["W"], self.grads["b"] = backends.of(dout).conv2d_transpose_backward(
            dout, self.cache, self.params["W"], self.stride, self.pad, self._ws, input_grad=input_grad)
        return dx

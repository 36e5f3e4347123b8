"""Transposed 2-D convolution ("deconvolution"): the adjoint of Conv2D, to enlarge feature maps."""

import numpy as np

from xpnet import backends, init, precision
from xpnet.errors import ShapeError
from xpnet.layers.base import Layer
from xpnet.layers.conv import window
from xpnet.utils import pair


def transposed_output_size(size, kernel, stride, pad, output_pad):
    """Output length along one axis: ``(size - 1) * stride - 2 * pad + kernel + output_pad``."""
    return (size - 1) * stride - 2 * pad + kernel + output_pad


class Conv2DTranspose(Layer):
    """The gradient of a convolution with respect to its input, used as a layer (learnable upsampling).

    Each input pixel scatters a KH x KW filter into the output, ``stride`` pixels apart; ``pad`` crops
    that many pixels from each side of the result and ``output_pad`` adds rows/columns at the bottom
    and right (they receive only the bias), so that a Conv2D with the same kernel, stride and pad maps
    the output shape back to the input shape. Forward is one GEMM then the backend's ``col2im``;
    backward is ``im2col`` then two GEMMs: Conv2D's passes the other way round.

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
        be = backends.of(x)
        N, C, H, W = x.shape
        self.x_shape, self.out_shape = x.shape, out_shape
        # channels first on both sides of the GEMM: the columns come out as col2im reads them fastest
        self.xcolT = x.transpose(1, 0, 2, 3).reshape(C, N * H * W)
        col = be.matmul(self.params["W"].reshape(C, -1).T, self.xcolT).T  # (N*H*W, FN*KH*KW)
        out = be.col2im(col, out_shape, self.KH, self.KW, self.stride, self.pad)
        out += self.params["b"].reshape(1, -1, 1, 1)
        return out

    def backward(self, dout):
        self.check_grad(dout, self.out_shape)
        be = backends.of(dout)
        N, C, H, W = self.x_shape
        dcol = be.im2col(dout, self.KH, self.KW, self.stride, self.pad)  # (N*H*W, FN*KH*KW)
        self.grads["W"] = be.matmul(self.xcolT, dcol).reshape(self.params["W"].shape)
        self.grads["b"] = dout.sum(axis=(0, 2, 3), dtype=precision.compute_dtype(dout.dtype)).astype(dout.dtype)
        dx = be.matmul(self.params["W"].reshape(C, -1), dcol.T)  # (C, N*H*W)
        return dx.reshape(C, N, H, W).transpose(1, 0, 2, 3)

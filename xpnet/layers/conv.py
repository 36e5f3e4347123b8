"""2-D convolution by im2col + one GEMM."""

import numpy as np

from xpnet import backends, checks, init
from xpnet.backends.shapes import out_length
from xpnet.errors import ShapeError
from xpnet.layers.base import Layer
from xpnet.utils import pair


def window(owner, kernel_size, stride, pad):
    """``((KH, KW), (SH, SW), (PH, PW))`` from ints or pairs; ValueError naming ``owner`` unless kernel and
    stride are >= 1."""
    kernel, stride_, pad_ = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(pad, "pad")
    if min(*stride_, *kernel) < 1:
        raise ValueError(f"{owner}: kernel_size and stride must be >= 1, got {kernel_size!r}, {stride!r}")
    return kernel, stride_, pad_


class Conv2D(Layer):
    """Cross-correlation of (N, C, H, W) inputs with FN filters of size KH x KW.

    Args:
        in_channels: C. out_channels: FN. kernel_size: int or (KH, KW).
        stride: int or pair. pad: int or pair of zero padding on each side.
        weight_init: ``"he"``, ``"xavier"`` or a float std. rng: NumPy Generator for initialisation.
        dtype, backend: parameter dtype and device (default: current backend).

    Shapes:
        x (N, C, H, W) -> (N, FN, OH, OW), OH = (H + 2*PH - KH) // SH + 1.
        Parameters: W (FN, C, KH, KW), b (FN,).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, pad=0, weight_init="he",
                 rng=None, dtype=np.float32, backend=None):
        super().__init__()
        be = backends.get(backend) if backend is not None else backends.current()
        self.C = checks.integer("Conv2D", "in_channels", in_channels)
        self.FN = checks.integer("Conv2D", "out_channels", out_channels)
        (self.KH, self.KW), self.stride, self.pad = window(type(self).__name__, kernel_size, stride, pad)
        fan_in = self.C * self.KH * self.KW
        W = init.initialize(weight_init, (self.FN, self.C, self.KH, self.KW), fan_in, rng)
        self.params["W"] = be.asarray(W, dtype=dtype)
        self.params["b"] = be.xp.zeros(self.FN, dtype=dtype)
        self._ws = {}  # scratch buffers the backend reuses across steps

    def extra_repr(self):
        return f"{self.C}, {self.FN}, kernel_size=({self.KH}, {self.KW}), stride={self.stride}, pad={self.pad}"

    def output_shape(self, x_shape):
        N, _, H, W = x_shape
        OH = out_length(H, self.KH, self.stride[0], self.pad[0])
        OW = out_length(W, self.KW, self.stride[1], self.pad[1])
        return N, self.FN, OH, OW

    def forward(self, x, train=False):
        return self.forward_fused(x, train)

    def forward_fused(self, x, train=False, relu=False, pool=None):
        """:meth:`forward`, with ``relu=True`` a ReLU after the bias in the same step, and with ``pool`` (a
        MaxPool2D) that max pool after the ReLU (see :mod:`xpnet.layers.fusion`); :meth:`backward` then
        takes dL/d(the last one's output)."""
        self.check_input(x, 4, "(N, C, H, W)")
        if x.shape[1] != self.C:
            raise ShapeError(f"{self._label()}: expected {self.C} input channels, got shape {tuple(x.shape)}")
        N, FN, OH, OW = self.output_shape(x.shape)
        if OH < 1 or OW < 1:
            raise ShapeError(f"{self._label()}: input {tuple(x.shape)} is smaller than the kernel "
                             f"({self.KH}, {self.KW}) with pad {self.pad}")
        self.x_shape = x.shape
        self._out_shape = (N, FN, OH, OW) if pool is None else pool.output_shape((N, FN, OH, OW))
        # train=False lets the backend skip what only backward needs (it rebuilds it if backward comes anyway)
        out, self.cache = backends.of(x).conv2d_forward(x, self.params["W"], self.params["b"], self.stride,
                                                        self.pad, self._ws, keep=train, relu=relu,
                                                        reuse=train and self.reuse_output,
                                                        pool=None if pool is None else pool.window())
        return out

    def backward(self, dout):
        return self._backward(dout, True)

    def backward_params(self, dout):
        self._backward(dout, False)

    def _backward(self, dout, input_grad):
        self.check_grad(dout, self._out_shape)
        dx, self.grads["W"], self.grads["b"] = backends.of(dout).conv2d_backward(
            dout, self.cache, self.params["W"], self.stride, self.pad, self._ws, input_grad=input_grad,
            out=self.grad_dests("W", "b"), reuse=self.reuse_input_grad)
        return dx

"""Max and average pooling with any window, stride and padding (the kernels live in the backends)."""

from xpnet import backends
from xpnet.backends.shapes import out_length
from xpnet.errors import ShapeError
from xpnet.layers.base import Layer
from xpnet.utils import pair


class _Pool2D(Layer):
    """Shared window bookkeeping."""

    def __init__(self, size=2, stride=None, pad=0):
        super().__init__()
        self.KH, self.KW = pair(size, "size")
        self.stride = pair(stride if stride is not None else (self.KH, self.KW), "stride")
        self.pad = pair(pad, "pad")
        if min(self.KH, self.KW, *self.stride) < 1:
            raise ValueError(f"{type(self).__name__}: size and stride must be >= 1, got {size!r}, {stride!r}")
        if self.pad[0] > self.KH // 2 or self.pad[1] > self.KW // 2:
            raise ValueError(f"{type(self).__name__}: pad must be at most half the window, "
                             f"got pad={pad!r} for size={size!r}")

    def extra_repr(self):
        return f"size=({self.KH}, {self.KW}), stride={self.stride}, pad={self.pad}"

    def output_shape(self, x_shape):
        N, C, H, W = x_shape
        return N, C, out_length(H, self.KH, self.stride[0], self.pad[0]), out_length(W, self.KW, self.stride[1],
                                                                                    self.pad[1])

    def window(self):
        """``(KH, KW, stride, pad)``, as a backend's fused pool takes it."""
        return self.KH, self.KW, self.stride, self.pad

    def _setup(self, x):
        self.check_input(x, 4, "(N, C, H, W)")
        N, C, OH, OW = self.output_shape(x.shape)
        if OH < 1 or OW < 1:
            raise ShapeError(f"{self._label()}: input {tuple(x.shape)} is smaller than the window "
                             f"({self.KH}, {self.KW}) with pad {self.pad}")
        self.x_shape, self.out_shape = x.shape, (N, C, OH, OW)
        return backends.of(x), OH, OW


class MaxPool2D(_Pool2D):
    """Maximum over each window; padding counts as -inf. Ties send the gradient to the first maximum.

    Args:
        size: window, int or (KH, KW). stride: defaults to the window. pad: at most half the window.

    Shapes:
        x (N, C, H, W) -> (N, C, OH, OW), OH = (H + 2*PH - KH) // SH + 1.
    """

    def __init__(self, size=2, stride=None, pad=0):
        super().__init__(size, stride, pad)
        self._ws = {}  # buffers the backend reuses across steps

    def forward(self, x, train=False):
        be, OH, OW = self._setup(x)
        out, self.cache = be.maxpool2d_forward(x, self.KH, self.KW, self.stride, self.pad, OH, OW, ws=self._ws,
                                               reuse=train and self.reuse_output)
        return out

    def backward(self, dout):
        self.check_grad(dout, self.out_shape)
        return backends.of(dout).maxpool2d_backward(dout, self.cache, self.x_shape, self.KH, self.KW, self.stride,
                                                    self.pad, ws=self._ws, reuse=self.reuse_input_grad)


class AvgPool2D(_Pool2D):
    """Mean over each window; padding counts as zeros and is included in the mean.

    Args:
        size: window, int or (KH, KW). stride: defaults to the window. pad: at most half the window.

    Shapes:
        x (N, C, H, W) -> (N, C, OH, OW).
    """

    def forward(self, x, train=False):
        be, OH, OW = self._setup(x)
        return be.avgpool2d_forward(x, self.KH, self.KW, self.stride, self.pad, OH, OW)

    def backward(self, dout):
        self.check_grad(dout, self.out_shape)
        return backends.of(dout).avgpool2d_backward(dout, self.x_shape, self.KH, self.KW, self.stride, self.pad)

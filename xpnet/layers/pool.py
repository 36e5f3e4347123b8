"""Max and average pooling with any window, stride and padding."""

from xpnet import backends
from xpnet.errors import ShapeError
from xpnet.layers.base import Layer
from xpnet.utils import conv_output_size, pair


class _Pool2D(Layer):
    """Shared window bookkeeping. Non-overlapping, unpadded windows take a reshape fast path."""

    pad_value = 0.0

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

    def _setup(self, x):
        self.check_input(x, 4, "(N, C, H, W)")
        N, C, H, W = x.shape
        OH = conv_output_size(H, self.KH, self.stride[0], self.pad[0])
        OW = conv_output_size(W, self.KW, self.stride[1], self.pad[1])
        if OH < 1 or OW < 1:
            raise ShapeError(f"{self._label()}: input {tuple(x.shape)} is smaller than the window")
        self.x_shape, self.out_shape = x.shape, (N, C, OH, OW)
        self.fast = (self.pad == (0, 0) and self.stride == (self.KH, self.KW)
                     and H % self.KH == 0 and W % self.KW == 0)

    def _windows(self, x):
        """(N*C*OH*OW, KH*KW) windows, row order (n, c, oh, ow), column order (kh, kw)."""
        N, C, H, W = x.shape
        if self.fast:
            _, _, OH, OW = self.out_shape
            w = x.reshape(N, C, OH, self.KH, OW, self.KW).transpose(0, 1, 2, 4, 3, 5)
            return w.reshape(-1, self.KH * self.KW)
        be = backends.of(x)
        return be.im2col(x.reshape(N * C, 1, H, W), self.KH, self.KW, self.stride, self.pad, self.pad_value)

    def _unwindows(self, dcol):
        """Adjoint of _windows: (N*C*OH*OW, KH*KW) -> (N, C, H, W)."""
        N, C, H, W = self.x_shape
        if self.fast:
            _, _, OH, OW = self.out_shape
            d = dcol.reshape(N, C, OH, OW, self.KH, self.KW).transpose(0, 1, 2, 4, 3, 5)
            return d.reshape(N, C, H, W)
        be = backends.of(dcol)
        return be.col2im(dcol, (N * C, 1, H, W), self.KH, self.KW, self.stride, self.pad).reshape(N, C, H, W)


class MaxPool2D(_Pool2D):
    """Maximum over each window; padding counts as -inf. Ties send the gradient to the first maximum.

    Shapes:
        x (N, C, H, W) -> (N, C, OH, OW).
    """

    pad_value = float("-inf")

    def forward(self, x, train=False):
        self._setup(x)
        xp = backends.of(x).xp
        col = self._windows(x)
        self.arg = col.argmax(axis=1)
        out = xp.take_along_axis(col, self.arg[:, None], axis=1)
        return out.reshape(self.out_shape)

    def backward(self, dout):
        self.check_grad(dout, self.out_shape)
        xp = backends.of(dout).xp
        hot = xp.arange(self.KH * self.KW, dtype=self.arg.dtype) == self.arg[:, None]
        dcol = hot * dout.reshape(-1, 1)
        return self._unwindows(dcol)


class AvgPool2D(_Pool2D):
    """Mean over each window; padding counts as zeros and is included in the mean.

    Shapes:
        x (N, C, H, W) -> (N, C, OH, OW).
    """

    def forward(self, x, train=False):
        self._setup(x)
        return self._windows(x).mean(axis=1).reshape(self.out_shape)

    def backward(self, dout):
        self.check_grad(dout, self.out_shape)
        xp = backends.of(dout).xp
        share = dout.reshape(-1, 1) / dout.dtype.type(self.KH * self.KW)
        dcol = xp.broadcast_to(share, (share.shape[0], self.KH * self.KW))
        return self._unwindows(dcol)

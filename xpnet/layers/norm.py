"""Batch normalisation (Ioffe & Szegedy 2015) with running statistics."""

import numpy as np

from xpnet import backends
from xpnet.errors import ShapeError
from xpnet.layers.base import Layer


class BatchNorm(Layer):
    """Normalise per feature (2-D input) or per channel (4-D input), then scale and shift.

    Args:
        num_features: D for (N, D) input, C for (N, C, H, W) input.
        momentum: running = momentum * running + (1 - momentum) * batch statistic (the book's 0.9).
        eps: added to the variance.

    Shapes:
        x (N, D) or (N, C, H, W) -> same. Parameters gamma, beta (D,); buffers running_mean,
        running_var (D,).
    """

    def __init__(self, num_features, momentum=0.9, eps=1e-5, dtype=np.float32, backend=None):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1), got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"BatchNorm: eps must be positive, got {eps!r}")
        be = backends.get(backend) if backend is not None else backends.current()
        self.D, self.momentum, self.eps = int(num_features), float(momentum), float(eps)
        self.params["gamma"] = be.xp.ones(self.D, dtype=dtype)
        self.params["beta"] = be.xp.zeros(self.D, dtype=dtype)
        self.buffers["running_mean"] = be.xp.zeros(self.D, dtype=dtype)
        self.buffers["running_var"] = be.xp.ones(self.D, dtype=dtype)

    def extra_repr(self):
        return f"{self.D}, momentum={self.momentum}, eps={self.eps}"

    def _layout(self, x):
        if x.ndim not in (2, 4) or x.shape[1] != self.D:
            raise ShapeError(f"{self._label()}: expected (N, {self.D}) or (N, {self.D}, H, W), "
                             f"got shape {tuple(x.shape)}")
        return ((0,), (1, -1)) if x.ndim == 2 else ((0, 2, 3), (1, -1, 1, 1))

    def forward(self, x, train=False):
        self.check_input(x, (2, 4))
        self.axes, bshape = self._layout(x)
        xp = backends.of(x).xp
        gamma = self.params["gamma"].reshape(bshape)
        beta = self.params["beta"].reshape(bshape)
        if not train:
            std = xp.sqrt(self.buffers["running_var"] + self.eps).reshape(bshape)
            return (x - self.buffers["running_mean"].reshape(bshape)) / std * gamma + beta
        mu = x.mean(axis=self.axes, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=self.axes, keepdims=True)
        self.std = xp.sqrt(var + self.eps)
        self.xn = xc / self.std
        m = self.momentum
        self.buffers["running_mean"] = m * self.buffers["running_mean"] + (1 - m) * mu.reshape(-1)
        self.buffers["running_var"] = m * self.buffers["running_var"] + (1 - m) * var.reshape(-1)
        return self.xn * gamma + beta

    def backward(self, dout):
        self.check_grad(dout, self.xn.shape)
        bshape = self.std.shape
        self.grads["gamma"] = (dout * self.xn).sum(axis=self.axes)
        self.grads["beta"] = dout.sum(axis=self.axes)
        dxn = dout * self.params["gamma"].reshape(bshape)
        mean_dxn = dxn.mean(axis=self.axes, keepdims=True)
        mean_dxn_xn = (dxn * self.xn).mean(axis=self.axes, keepdims=True)
        return (dxn - mean_dxn - self.xn * mean_dxn_xn) / self.std

"""Elementwise activations: ReLU, LeakyReLU, Sigmoid, Tanh."""

from xpnet import backends
from xpnet.layers.base import Layer, xp_of


class ReLU(Layer):
    """max(x, 0). Any shape."""

    def forward(self, x, train=False):
        self.check_input(x)
        if train:
            out, self.mask = backends.of(x).relu_forward(x)
            self.out = None
        else:  # inference: no mask pass; a backward pass after all derives the mask from out
            out = self.out = backends.of(x).relu(x)
            self.mask = None
        return out

    def backward(self, dout):
        mask = self.out > 0 if self.mask is None else self.mask  # out > 0 exactly where x > 0
        self.check_grad(dout, mask.shape)
        return backends.of(dout).relu_backward(dout, mask)


class LeakyReLU(Layer):
    """x where x > 0, else ``slope * x`` (DCGAN's discriminator uses slope 0.2). Any shape.

    Args:
        slope: the gradient for negative inputs, in [0, 1).
    """

    def __init__(self, slope=0.2):
        super().__init__()
        if not 0.0 <= slope < 1.0:
            raise ValueError(f"LeakyReLU: slope must be in [0, 1), got {slope!r}")
        self.slope = float(slope)

    def extra_repr(self):
        return f"slope={self.slope}"

    def forward(self, x, train=False):
        self.check_input(x)
        if train:
            out, self.mask = backends.of(x).leaky_relu_forward(x, self.slope)
            self.out = None
        else:  # inference: no mask pass; a backward pass after all derives the mask from out
            out = self.out = backends.of(x).leaky_relu(x, self.slope)
            self.mask = None
        return out

    def backward(self, dout):
        mask = self.out > 0 if self.mask is None else self.mask  # slope >= 0: out > 0 exactly where x > 0
        self.check_grad(dout, mask.shape)
        return backends.of(dout).leaky_relu_backward(dout, mask, self.slope)


class Sigmoid(Layer):
    """1 / (1 + exp(-x)), computed without overflow. Any shape."""

    def forward(self, x, train=False):
        self.check_input(x)
        xp = xp_of(x)
        # tanh form avoids exp overflow for large |x|
        self.out = (xp.tanh(x * 0.5) + 1) * 0.5
        return self.out

    def backward(self, dout):
        self.check_grad(dout, self.out.shape)
        return dout * self.out * (1 - self.out)


class Tanh(Layer):
    """tanh(x). Any shape."""

    def forward(self, x, train=False):
        self.check_input(x)
        self.out = xp_of(x).tanh(x)
        return self.out

    def backward(self, dout):
        self.check_grad(dout, self.out.shape)
        return dout * (1 - self.out * self.out)

"""Affine (fully connected) and Flatten."""

import numpy as np

from xpnet import backends, checks, init
from xpnet.layers.base import Layer, xp_of


class Affine(Layer):
    """y = x @ W + b, with x flattened to (N, in_features) as in the book.

    Args:
        in_features: size of one flattened input.
        out_features: size of one output.
        weight_init: ``"he"``, ``"xavier"`` or a float standard deviation.
        rng: NumPy Generator for initialisation (a fresh default one if None).
        dtype: parameter dtype. backend: where parameters live (default: the current backend).

    Half precision: the GEMMs run in the input's dtype (see :mod:`xpnet.precision` for how each
    backend accumulates); the bias gradient, a sum over the batch, accumulates in float32.

    Shapes:
        x (N, ...) with prod(...) == in_features -> (N, out_features).
    """

    def __init__(self, in_features, out_features, weight_init="he", rng=None, dtype=np.float32, backend=None):
        super().__init__()
        be = backends.get(backend) if backend is not None else backends.current()
        self.in_features = checks.integer("Affine", "in_features", in_features)
        self.out_features = checks.integer("Affine", "out_features", out_features)
        W = init.initialize(weight_init, (self.in_features, self.out_features), self.in_features, rng)
        self.params["W"] = be.asarray(W, dtype=dtype)
        self.params["b"] = be.xp.zeros(self.out_features, dtype=dtype)
        self._ws = {}  # scratch buffers the backend reuses across steps

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"

    def forward(self, x, train=False):
        return self.forward_fused(x, train)

    def forward_fused(self, x, train=False, relu=False, dropout=0.0, rng=None):
        """:meth:`forward`, then (in the same step) ReLU if ``relu`` and inverted dropout of ratio ``dropout``
        drawn from ``rng`` (see :mod:`xpnet.layers.fusion`); :meth:`backward` then takes dL/d(the last)."""
        self.check_input(x)
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.in_features:
            from xpnet.errors import ShapeError

            raise ShapeError(
                f"{self._label()}: expected input (N, {self.in_features}) or (N, ...) with "
                f"{self.in_features} values per example, got shape {tuple(x.shape)}"
            )
        self.x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        out, self.cache = backends.of(x).affine_forward(self.x, self.params["W"], self.params["b"], relu, dropout,
                                                         rng, ws=self._ws, reuse=train and self.reuse_output)
        return out

    def backward(self, dout):
        return self._backward(dout, True)

    def backward_params(self, dout):
        self._backward(dout, False)

    def _backward(self, dout, input_grad):
        self.check_grad(dout, (self.x.shape[0], self.out_features))
        dx, self.grads["W"], self.grads["b"] = backends.of(dout).affine_backward(
            dout, self.cache, self.x, self.params["W"], input_grad=input_grad, out=self.grad_dests("W", "b"),
            ws=self._ws, reuse=self.reuse_input_grad)
        return None if dx is None else dx.reshape(self.x_shape)


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, x, train=False):
        self.check_input(x)
        self.x_shape = x.shape
        return xp_of(x).reshape(x, (x.shape[0], -1))

    def backward(self, dout):
        return dout.reshape(self.x_shape)

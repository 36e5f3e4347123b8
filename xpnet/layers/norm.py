"""Batch normalisation (Ioffe & Szegedy 2015) with running statistics."""

import numpy as np

from xpnet import backends, precision
from xpnet.errors import ShapeError
from xpnet.layers.base import Layer


class BatchNorm(Layer):
    """Normalise per feature (2-D input) or per channel (4-D input), then scale and shift.

    Args:
        num_features: D for (N, D) input, C for (N, C, H, W) input.
        momentum: running = momentum * running + (1 - momentum) * batch statistic (the book's 0.9).
        eps: added to the variance.

    Half precision: for float16 input the statistics, the normalisation and the parameter gradients
    are computed in float32 (squares of activations above 256 overflow float16) and the output and
    dL/dx are cast back to float16; the running statistics stay in float32 (a variance above 65,504
    would be stored as inf). The arithmetic is the backend's (``batchnorm_forward``, ``batchnorm_backward``):
    compiled kernels for float32 (N, C, H, W) input on the NumPy backend.

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

    def astype(self, dtype):
        """Cast gamma and beta to ``dtype``; the running statistics to float32 at least; returns self."""
        super().astype(dtype)
        self.buffers = {k: v.astype(precision.compute_dtype(dtype)) for k, v in self.buffers.items()}
        return self

    def extra_repr(self):
        return f"{self.D}, momentum={self.momentum}, eps={self.eps}"

    def _check_layout(self, x):
        if x.ndim not in (2, 4) or x.shape[1] != self.D:
            raise ShapeError(f"{self._label()}: expected (N, {self.D}) or (N, {self.D}, H, W), "
                             f"got shape {tuple(x.shape)}")

    def forward(self, x, train=False):
        """Normalise with the batch's statistics (train, updating the running ones) or the running ones.

        Either way ``backward`` then gives the derivative of the transform this call applied: in
        inference mode the statistics are constants (PyTorch's eval mode; fine-tuning with frozen
        statistics).
        """
        self.check_input(x, (2, 4))
        self._check_layout(x)
        stats = None if train else (self.buffers["running_mean"], self.buffers["running_var"])
        y, (mu, var), self.cache = backends.of(x).batchnorm_forward(x, self.params["gamma"], self.params["beta"],
                                                                    self.eps, stats)
        if train:
            self._update_running(mu, var)
        self.x_shape = x.shape
        return y

    def _update_running(self, mu, var):
        m = self.momentum
        for name, stat in (("running_mean", mu), ("running_var", var)):
            old = self.buffers[name]
            self.buffers[name] = (m * precision.widen(old) + (1 - m) * stat).astype(old.dtype, copy=False)

    def backward(self, dout):
        self.check_grad(dout, self.x_shape)
        dx, dgamma, dbeta = backends.of(dout).batchnorm_backward(dout, self.cache, self.params["gamma"])
        pdtype = self.params["gamma"].dtype
        self.grads["gamma"] = dgamma.astype(pdtype, copy=False)
        self.grads["beta"] = dbeta.astype(pdtype, copy=False)
        return dx

"""Loss layers: ``forward(y, t)`` returns a 0-d array (no host sync); ``backward()`` returns dL/dy."""

import numpy as np

from xpnet import backends, precision
from xpnet.errors import ShapeError
from xpnet.layers.base import Layer


class SoftmaxCrossEntropy(Layer):
    """Mean cross-entropy of softmax(y) against labels, via a stable log-sum-exp.

    Half precision: for float16 scores the softmax, the log-sum-exp and the mean are computed in
    float32 (:func:`xpnet.precision.compute_dtype`), so logits up to float16's maximum give finite
    probabilities and losses; the loss is returned in float32 and dL/dy is cast back to y's dtype.

    Shapes:
        y (N, K) scores; t (N,) integer class indices or (N, K) one-hot / probabilities.
        Returns a 0-d array of y's dtype (float32 for float16 scores).

    Integer labels given as a NumPy array are checked to lie in [0, K) on the host; labels already on
    the device are not checked here (reading them back would cost a host sync every step); the CUDA
    backend's fused kernel gives a NaN loss for a label outside [0, K).
    """

    classifies = True  # y are class scores: accuracy means something

    def forward(self, y, t, train=False):
        self.check_input(y, 2, "(N, classes)")
        be = backends.of(y)
        xp = be.xp
        N, K = y.shape
        host = t if isinstance(t, np.ndarray) else None  # checked on the host (free), not read back
        if not be.owns(t):
            t = be.asarray(t)
        if N == 0:
            raise ShapeError(f"{self._label()}: expected a batch of at least one example, got shape {(N, K)}")
        self.out_dtype = y.dtype
        if t.ndim == 2:
            if t.shape != y.shape:
                raise ShapeError(f"{self._label()}: one-hot labels must have shape {(N, K)}, got {t.shape}")
            y = precision.widen(y)
            s = y - y.max(axis=1, keepdims=True)
            logp = s - xp.log(xp.exp(s).sum(axis=1, keepdims=True))
            self.p = xp.exp(logp)
            self.t = t.astype(y.dtype, copy=False)
            return -(self.t * logp).sum() / y.dtype.type(N)
        if t.shape != (N,):
            raise ShapeError(f"{self._label()}: expected labels of shape ({N},) or ({N}, {K}), got {t.shape}")
        if t.dtype.kind not in "iu":
            raise ShapeError(f"{self._label()}: integer labels expected, got dtype {t.dtype}")
        if host is not None:
            self._check_labels(host, K)
        self.t = t
        loss, self.p = be.softmax_cross_entropy(y, t)
        return loss

    def _check_labels(self, t, K):
        """Host integer labels (N,) must lie in [0, K). Device labels are not read back (each read is a host
        sync): the Trainer checks its datasets once, before the first step."""
        if t.size and (t.min() < 0 or t.max() >= K):
            raise ShapeError(f"{self._label()}: labels must be in [0, {K}), got values in [{t.min()}, {t.max()}]")

    def backward(self, dout=1.0):
        be = backends.of(self.p)
        N = self.p.shape[0]
        if self.t.ndim == 1 and not hasattr(dout, "shape"):
            return be.softmax_cross_entropy_backward(self.p, self.t, dout, self.out_dtype)
        if self.t.ndim == 2:
            dy = self.p - self.t
        else:
            dy = self.p.copy()
            dy[be.xp.arange(N), self.t] -= 1
        dy = dy * self.p.dtype.type(dout / N) if not hasattr(dout, "shape") else dy * (dout / N)
        return dy.astype(self.out_dtype, copy=False)


class MeanSquaredError(Layer):
    """0.5 * sum((y - t)^2) / N: the book's sum of squares, averaged over the batch.

    Shapes:
        y (N, ...) and t of the same shape. Returns a 0-d array.
    """


    def forward(self, y, t, train=False):
        self.check_input(y)
        be = backends.of(y)
        if not be.owns(t):
            t = be.asarray(t)
        if t.shape != y.shape:
            raise ShapeError(f"{self._label()}: targets must have shape {tuple(y.shape)}, got {tuple(t.shape)}")
        if y.ndim == 0 or y.shape[0] == 0:
            raise ShapeError(f"{self._label()}: expected a batch of at least one example, got shape {tuple(y.shape)}")
        self.diff = y - t.astype(y.dtype, copy=False)
        return 0.5 * (self.diff * self.diff).sum() / y.dtype.type(y.shape[0])

    def backward(self, dout=1.0):
        N = self.diff.shape[0]
        return self.diff * self.diff.dtype.type(dout / N) if not hasattr(dout, "shape") else self.diff * (dout / N)

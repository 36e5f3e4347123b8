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

    def __init__(self):
        super().__init__()
        self._ws = {}  # the probabilities' buffer, which the backend may reuse across steps

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
        loss, self.p = be.softmax_cross_entropy(y, t, ws=self._ws, reuse=train and self.reuse_output)
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
            return be.softmax_cross_entropy_backward(self.p, self.t, dout, self.out_dtype, ws=self._ws,
                                                     reuse=self.reuse_input_grad)
        if self.t.ndim == 2:
            dy = self.p - self.t
        else:
            dy = self.p.copy()
            dy[be.xp.arange(N), self.t] -= 1
        return _scaled(dy, dout, N).astype(self.out_dtype, copy=False)


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
        return _scaled(self.diff, dout, N)


def _scaled(dy, dout, count):
    """``dy * dout / count`` in dy's dtype (``dout`` a Python number or a 0-d array)."""
    return dy * dy.dtype.type(dout / count) if not hasattr(dout, "shape") else dy * (dout / count)


class SoftmaxCrossEntropy2D(Layer):
    """Per-pixel softmax cross-entropy over the channel axis, averaged over the pixels that count.

    For segmentation: every pixel of ``y`` holds K class scores, every pixel of ``t`` one class index;
    pixels labelled ``ignore_index`` add nothing to the loss or the gradient and are not counted in
    the mean (a batch with no counted pixel has loss 0). Half precision as in
    :class:`SoftmaxCrossEntropy`.

    Args:
        ignore_index: the label of pixels to leave out (default -100, PyTorch's); None: none.

    Shapes:
        y (N, K, H, W) scores; t (N, H, W) integers in [0, K) or ``ignore_index``. Returns a 0-d array.
    """

    def __init__(self, ignore_index=-100):
        super().__init__()
        self.ignore_index = None if ignore_index is None else int(ignore_index)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}"

    def forward(self, y, t, train=False):
        self.check_input(y, 4, "(N, classes, H, W)")
        be = backends.of(y)
        xp = be.xp
        t = t if be.owns(t) else be.asarray(t)
        N, K, H, W = y.shape
        if tuple(t.shape) != (N, H, W):
            raise ShapeError(f"{self._label()}: expected labels of shape {(N, H, W)}, got {tuple(t.shape)}")
        if t.dtype.kind not in "iu":
            raise ShapeError(f"{self._label()}: integer labels expected, got dtype {t.dtype}")
        valid = t != self.ignore_index if self.ignore_index is not None else xp.ones(t.shape, dtype=bool)
        tt = xp.where(valid, t, 0).astype(xp.intp)
        if t.size and (int(tt.min()) < 0 or int(tt.max()) >= K):
            raise ShapeError(f"{self._label()}: labels must be in [0, {K}) or {self.ignore_index}, got values "
                             f"in [{int(t.min())}, {int(t.max())}]")
        self.out_dtype = y.dtype
        y = precision.widen(y)
        s = y - y.max(axis=1, keepdims=True)
        logp = s - xp.log(xp.exp(s).sum(axis=1, keepdims=True))
        self.p, self.t, self.valid = xp.exp(logp), tt, valid
        self.count = max(int(valid.sum()), 1)
        picked = xp.take_along_axis(logp, tt[:, None], axis=1)[:, 0]
        return -(picked * valid).sum() / y.dtype.type(self.count)

    def backward(self, dout=1.0):
        xp = backends.of(self.p).xp
        K = self.p.shape[1]
        onehot = xp.arange(K).reshape(1, K, 1, 1) == self.t[:, None]
        dy = (self.p - onehot) * self.valid[:, None]
        return _scaled(dy, dout, self.count).astype(self.out_dtype, copy=False)


class SigmoidBinaryCrossEntropy(Layer):
    """Binary cross-entropy of sigmoid(y) against targets in [0, 1], from the logits y, averaged over
    every element.

    Computed as ``max(y, 0) - y * t + log(1 + exp(-|y|))``, which never overflows and keeps its
    precision for large |y| (a sigmoid followed by log would give log(0) = -inf); dL/dy is
    ``(sigmoid(y) - t) / y.size``. float16 logits are computed in float32 as in
    :class:`SoftmaxCrossEntropy`.

    Shapes:
        y (N, ...) logits; t the same shape (a real/fake label per element for a GAN). Returns a 0-d array.
    """

    def forward(self, y, t, train=False):
        self.check_input(y)
        be = backends.of(y)
        xp = be.xp
        t = t if be.owns(t) else be.asarray(t)
        if tuple(t.shape) != tuple(y.shape):
            raise ShapeError(f"{self._label()}: targets must have shape {tuple(y.shape)}, got {tuple(t.shape)}")
        if y.ndim == 0 or y.size == 0:
            raise ShapeError(f"{self._label()}: expected a batch of at least one example, got shape {tuple(y.shape)}")
        self.out_dtype = y.dtype
        y = precision.widen(y)
        self.t = t.astype(y.dtype, copy=False)
        self.p = (xp.tanh(y * y.dtype.type(0.5)) + 1) * y.dtype.type(0.5)
        losses = xp.maximum(y, 0) - y * self.t + xp.log1p(xp.exp(-xp.abs(y)))
        return losses.sum() / y.dtype.type(y.size)

    def backward(self, dout=1.0):
        return _scaled(self.p - self.t, dout, self.p.size).astype(self.out_dtype, copy=False)

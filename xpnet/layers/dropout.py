"""Inverted dropout: scale by 1 / (1 - ratio) at train time, identity at inference.

The book scales by (1 - ratio) at inference instead; :func:`xpnet.serialization.load_book_params`
folds that difference into the imported weights.
"""

from xpnet import backends, precision
from xpnet.layers.base import Layer


class Dropout(Layer):
    """Zero each element with probability ``ratio`` while training.

    Args:
        ratio: drop probability in [0, 1).
        seed: seed of this layer's generator (created on the input's device at first use).

    Shapes:
        any -> same.
    """

    def __init__(self, ratio=0.5, seed=None):
        super().__init__()
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"Dropout: ratio must be in [0, 1), got {ratio!r}")
        self.ratio, self.seed = float(ratio), seed
        self._rng = None
        self._pending_state = None

    def extra_repr(self):
        return f"ratio={self.ratio}"

    def rng_for(self, be):
        """This layer's generator on backend ``be`` (re-created if the model moved device)."""
        if self._rng is None or self._rng_backend is not be:
            self._rng, self._rng_backend = be.rng(self.seed), be
            if self._pending_state is not None:
                self._rng.set_state(self._pending_state)
                self._pending_state = None
        return self._rng

    def get_rng_state(self):
        return self._rng.get_state() if self._rng is not None else self._pending_state

    def set_rng_state(self, state):
        self._rng, self._pending_state = None, state

    def forward(self, x, train=False):
        self.check_input(x)
        if not train or self.ratio == 0.0:
            self.mask = None
            return x
        be = backends.of(x)
        draw = precision.compute_dtype(x.dtype)  # the generators draw float32 or float64 only
        keep = self.rng_for(be).random(x.shape, dtype=draw) >= self.ratio
        self.mask = keep * x.dtype.type(1.0 / (1.0 - self.ratio))
        return x * self.mask

    def backward(self, dout):
        return dout if self.mask is None else dout * self.mask

"""Inverted dropout: scale by 1 / (1 - ratio) at train time, identity at inference.

The book scales by (1 - ratio) at inference instead; :func:`xpnet.serialization.load_book_params`
folds that difference into the imported weights.
"""

from xpnet import backends
from xpnet.layers.base import Layer
from xpnet.utils import LazyGenerator


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
        self._generator = LazyGenerator(seed)

    def extra_repr(self):
        return f"ratio={self.ratio}"

    def rng_for(self, be):
        """This layer's generator on backend ``be`` (re-created if the model moved device)."""
        return self._generator.on(be)

    def get_rng_state(self):
        return self._generator.get_state()

    def set_rng_state(self, state):
        self._generator.set_state(state)

    def forward(self, x, train=False):
        self.check_input(x)
        if not train or self.ratio == 0.0:
            self.mask = None
            return x
        be = backends.of(x)
        out, self.mask = be.dropout_forward(x, self.ratio, self.rng_for(be))
        return out

    def backward(self, dout):
        return dout if self.mask is None else dout * self.mask

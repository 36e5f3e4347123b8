"""Shuffled mini-batches: every example once per epoch, seedable, resumable, on the chosen device."""

import numpy as np

from xpnet import backends
from xpnet.errors import ShapeError


class BatchIterator:
    """Iterate ``(x_batch, t_batch)`` over real epochs of a dataset kept on ``backend``.

    Args:
        x, t: inputs (N, ...) and labels (N,) or (N, K); host or device arrays.
        batch_size: examples per batch (the last batch of an epoch may be smaller unless drop_last).
        shuffle: reshuffle every epoch with a host generator (the same order on every backend).
        seed: the shuffle generator's seed. backend: where batches live (default: current).
    """

    def __init__(self, x, t, batch_size=100, shuffle=True, seed=0, drop_last=False, backend=None):
        if len(x) != len(t):
            raise ShapeError(f"BatchIterator: {len(x)} inputs but {len(t)} labels")
        if len(x) == 0:
            raise ShapeError("BatchIterator: the dataset is empty")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"BatchIterator: batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and batch_size > len(x):
            raise ValueError(f"BatchIterator: batch_size {batch_size} is larger than the dataset ({len(x)}) "
                             "and drop_last would leave no batch")
        self.be = backends.get(backend) if backend is not None else backends.current()
        self.x, self.t = self.be.asarray(x), self.be.asarray(t)  # the whole set stays on the device
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def __len__(self):
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self):
        """Yield one epoch of batches."""
        n = len(self.x)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        order = self.be.asarray(order)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.t[idx]

    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state

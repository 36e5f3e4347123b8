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
        rank, world_size: data-parallel sharding. Every rank shuffles with the same seed, so all see the
            same order; each global batch of ``batch_size * world_size`` examples is split into
            ``world_size`` disjoint contiguous shards and this iterator yields shard ``rank``
            (``batch_size`` is per rank). A last global batch with fewer examples than ranks is dropped.
        reuse_buffers: each batch may be written into the previous one's buffers (no allocation per step on
            a GPU): for a loop done with a batch when it asks for the next, as the Trainer's is.
    """

    def __init__(self, x, t, batch_size=100, shuffle=True, seed=0, drop_last=False, backend=None, rank=0,
                 world_size=1, reuse_buffers=False):
        if len(x) != len(t):
            raise ShapeError(f"BatchIterator: {len(x)} inputs but {len(t)} labels")
        if len(x) == 0:
            raise ShapeError("BatchIterator: the dataset is empty")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"BatchIterator: batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and batch_size > len(x):
            raise ValueError(f"BatchIterator: batch_size {batch_size} is larger than the dataset ({len(x)}) "
                             "and drop_last would leave no batch")
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"BatchIterator: rank must be in [0, {world_size}), got {rank!r}")
        self.rank, self.world_size = int(rank), int(world_size)
        self.be = backends.get(backend) if backend is not None else backends.current()
        self.x, self.t = self.be.asarray(x), self.be.asarray(t)  # the whole set stays on the device
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._ws = {} if reuse_buffers else None

    @property
    def global_batch_size(self):
        """Examples per step over all ranks: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    def __len__(self):
        n, size = len(self.x), self.global_batch_size
        rest = n % size
        return n // size + (1 if rest >= self.world_size and not self.drop_last else 0)

    def epoch(self):
        """Yield one epoch of batches (this rank's shard of each global batch)."""
        n, size = len(self.x), self.global_batch_size
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        spans = []
        for i in range(len(self)):
            start = i * size
            m = min(size, n - start)  # the global batch; its shards differ by at most one example
            spans.append((start + m * self.rank // self.world_size, start + m * (self.rank + 1) // self.world_size))
        if not spans:
            return
        # this rank's examples, batch after batch: each batch starts where the last ended (a backend then
        # keeps them on the device and moves the position on there)
        mine = self.be.asarray(np.concatenate([order[lo:hi] for lo, hi in spans]))
        at = 0
        for lo, hi in spans:
            yield self.be.gather_batch(self.x, self.t, mine, ws=self._ws, start=at, count=hi - lo)
            at += hi - lo

    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state
